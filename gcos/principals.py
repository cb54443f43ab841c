"""Principals: which database role is which named human, agent or service, and what it may do.

Identity is the database role of the connection (``session_user``), compared by role OID; it is
never taken from a flag or an argument. The mapping is written only through the SECURITY DEFINER
function ``gcos.add_principal`` (callable by a superuser, for the bootstrap, or by a human admin
principal, never for itself); every change is kept in ``gcos.principals_history`` and the ledger.

A principal's ``roles`` (sovereign, council, operator, auditor, admin) are its authority in gcos; the
NOLOGIN group roles ``gcos_<role>`` are the database privileges that let it call the functions. With
``grant=True`` (the default) ``add_principal`` also grants those group roles, in the same transaction,
which needs a superuser (or a role holding ADMIN OPTION on them).

Superusers are outside this model: one can ``SET SESSION AUTHORIZATION`` to any role and so act as
anyone. gcos therefore refuses superusers as approvers and deciders, and approvals are only as
trustworthy as the people holding superuser on the cluster.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from gcos.errors import GateRefused, SpecError
from gcos.ledger import map_db_errors

KINDS = ("human", "agent", "service")
ROLES = ("sovereign", "council", "operator", "auditor", "admin")
APPROVER_ROLES = frozenset({"sovereign", "council"})


@dataclass(frozen=True)
class Principal:
    role_oid: int
    role: str  # the database role's current name
    name: str  # the display name
    kind: str
    roles: tuple[str, ...]
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def may_approve(self) -> bool:
        """Whether gcos.record_approval would accept this principal (superusers are refused there too)."""
        return self.kind == "human" and bool(APPROVER_ROLES & set(self.roles))


_COLUMNS = sql.SQL(
    "SELECT p.role_oid::bigint, COALESCE(r.rolname, p.role_name)::text, p.display_name, p.kind, p.roles, "
    "p.created_at, p.updated_at FROM gcos.principals AS p LEFT JOIN pg_catalog.pg_roles AS r ON r.oid = p.role_oid"
)


def _principal(row: tuple[Any, ...]) -> Principal:
    return Principal(int(row[0]), row[1], row[2], row[3], tuple(row[4]), row[5], row[6])


def add_principal(
    conn: psycopg.Connection[Any],
    role: str,
    *,
    name: str,
    kind: str,
    roles: Iterable[str],
    grant: bool = True,
) -> Principal:
    """Map database role `role` to a principal (or change its mapping) and, with `grant`, grant it the
    matching ``gcos_<role>`` group roles. GateRefused unless the session is a superuser or a human admin
    principal acting on someone else; SpecError for an unknown role, kind or gcos role."""
    wanted = sorted(set(roles))
    if kind not in KINDS:
        raise SpecError(f"Principal kind {kind!r} is not one of {', '.join(KINDS)}.")
    unknown = [r for r in wanted if r not in ROLES]
    if unknown:
        raise SpecError(f"Unknown gcos role(s) {', '.join(unknown)}; choose among {', '.join(ROLES)}.")
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise SpecError("add_principal must start outside a transaction; commit or roll back first.")
    with conn.transaction(), map_db_errors():
        conn.execute("SELECT * FROM gcos.add_principal(%s, %s, %s, %s)", (role, name, kind, wanted))
        if grant:
            for gcos_role in wanted:
                statement = sql.SQL("GRANT {} TO {}").format(sql.Identifier(f"gcos_{gcos_role}"), sql.Identifier(role))
                try:
                    conn.execute(statement)
                except psycopg.errors.InsufficientPrivilege as exc:
                    raise GateRefused(
                        f"You may record principals but cannot grant the database role gcos_{gcos_role} to {role}; "
                        "ask a superuser to grant it, or add the principal without granting."
                    ) from exc
        row = conn.execute(_COLUMNS + sql.SQL(" WHERE r.rolname = %s"), (role,)).fetchone()
    assert row is not None
    return _principal(row)


def whoami(conn: psycopg.Connection[Any]) -> Principal | None:
    """The principal of this session's role (session_user), or None if the role is not one."""
    with map_db_errors():
        row = conn.execute(
            "SELECT role_oid::bigint, role_name, display_name, kind, roles, created_at, updated_at FROM gcos.whoami()"
        ).fetchone()
    if row is None or row[2] is None:
        return None
    return _principal(row)


def list_principals(conn: psycopg.Connection[Any]) -> list[Principal]:
    """Every principal, by role name (needs a gcos group role, e.g. gcos_auditor, to read)."""
    with map_db_errors():
        rows = conn.execute(_COLUMNS + sql.SQL(" ORDER BY 2")).fetchall()
    return [_principal(row) for row in rows]
