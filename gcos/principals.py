"""Principals: which database role is which named human, agent or service, and what it may do.

Identity is the database role of the connection (``session_user``), compared by role OID; it is
never taken from a flag or an argument. The mapping is written only through the SECURITY DEFINER
function ``gcos.add_principal`` (callable by a superuser, for the bootstrap, or by a human admin
principal, never for itself); every change is kept in ``gcos.principals_history`` and the ledger.

A principal names the ``person`` it belongs to (by default its display name): one human may hold several
principals (a laptop role, a database role), and the gates count persons, never principals, as signers; the
rehearser and the committer are compared as persons too (no self-approval through a second principal).

A principal's ``roles`` (sovereign, council, company_admin, domain_admin, operator, auditor, admin) are its
authority in gcos; the NOLOGIN group roles ``gcos_<role>`` are the database privileges that let it call the
functions (company_admin and domain_admin approve through ``gcos_council``'s privileges; gate 5 counts them
only where a spec's ``approvals.roles`` names them). With
``grant=True`` (the default) ``add_principal`` also grants those group roles, in the same transaction,
which needs a superuser (or a role holding ADMIN OPTION on them).

Superusers are outside this model: one can reset anyone's password and log in as them. gcos refuses
superusers as approvers and deciders, refuses a session that ``SET SESSION AUTHORIZATION`` turned into
someone else (the login role, from ``pg_stat_activity``, must be the session role), and keeps anyone who
can change gcos itself from approving (separation of duties, ``gcos.principal_conflicts``); approvals are
still only as trustworthy as the people holding superuser on the cluster.

``Principal.overlaps`` names what a listing should flag: the conflicts that bar approving and deciding
(``superuser``, ``createrole`` before PostgreSQL 16, membership of ``gcos_kernel``, ``gcos_owner``,
``gcos_admin``, ``pg_write_all_data`` or ``pg_maintain`` (17+), the gcos ``admin`` role) and
``operator_approver``, a note for a human who may both commit and approve (allowed; the gates never let them
approve their own commit).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from gcos import ledger
from gcos.errors import Condition, SpecError, translated

KINDS = ("human", "agent", "service")
ROLES = ("sovereign", "council", "company_admin", "domain_admin", "operator", "auditor", "admin")
APPROVER_ROLES = frozenset({"sovereign", "council", "company_admin", "domain_admin"})
# The group role that carries a gcos role's database privileges (seed 004's admins sign as council members do).
GROUP_ROLE = {role: f"gcos_{role}" for role in ROLES} | {
    "company_admin": "gcos_council",
    "domain_admin": "gcos_council",
}
OPERATOR_APPROVER = "operator_approver"  # a note, not a conflict
OVERLAP_TEXT = {
    "superuser": "superuser",
    "createrole": "CREATEROLE (can grant itself gcos_owner before PostgreSQL 16)",
    "gcos_kernel": "member of gcos_kernel",
    "gcos_owner": "member of gcos_owner",
    "gcos_admin": "member of gcos_admin",
    "pg_write_all_data": "member of pg_write_all_data (writes every table around the grants)",
    "pg_maintain": "member of pg_maintain (locks and maintains every table)",
    "admin": "gcos admin",
    OPERATOR_APPROVER: "both operator and approver (allowed; never for their own commit)",
}


@dataclass(frozen=True)
class Principal:
    role_oid: int
    role: str  # the database role's current name
    name: str  # the display name
    kind: str
    roles: tuple[str, ...]
    created_at: datetime | None = None
    updated_at: datetime | None = None
    overlaps: tuple[str, ...] = ()  # codes, see OVERLAP_TEXT; empty from whoami() for a role without gcos roles
    person: str = ""  # the human this principal belongs to (default: its display name); one person signs once

    @property
    def conflicts(self) -> tuple[str, ...]:
        """The overlaps that bar approving and deciding (separation of duties)."""
        return tuple(o for o in self.overlaps if o != OPERATOR_APPROVER)

    @property
    def may_approve(self) -> bool:
        """Whether gcos.record_approval would accept this principal (superusers are refused there too)."""
        return self.kind == "human" and bool(APPROVER_ROLES & set(self.roles)) and not self.conflicts


_COLUMNS = sql.SQL(
    "SELECT p.role_oid::bigint, COALESCE(r.rolname, p.role_name)::text, p.display_name, p.kind, p.roles, "
    "p.created_at, p.updated_at, p.person, gcos.principal_conflicts(p.role_oid) "
    "FROM gcos.principals AS p LEFT JOIN pg_catalog.pg_roles AS r ON r.oid = p.role_oid"
)


def _principal(row: tuple[Any, ...]) -> Principal:
    """(role_oid, role, name, kind, roles, created_at, updated_at, person[, conflicts]) as a Principal."""
    roles = tuple(row[4])
    overlaps = tuple(row[8]) if len(row) > 8 and row[8] is not None else ()
    if row[3] == "human" and "operator" in roles and APPROVER_ROLES & set(roles):
        overlaps += (OPERATOR_APPROVER,)
    return Principal(int(row[0]), row[1], row[2], row[3], roles, row[5], row[6], overlaps, row[7] or row[2])


def add_principal(
    conn: psycopg.Connection[Any],
    role: str,
    *,
    name: str,
    kind: str,
    roles: Iterable[str],
    grant: bool = True,
    person: str | None = None,
) -> Principal:
    """Map database role `role` to a principal (or change its mapping) and, with `grant`, grant it the
    matching ``gcos_<role>`` group roles. `person` names the human it belongs to: principals of one person
    count as one signer (None: a new principal's own name, a changed one's person as it was). GateRefused
    unless the session is a superuser or a human admin principal acting on someone else; SpecError for an
    unknown role, kind or gcos role, or a bad name or person."""
    wanted = sorted(set(roles))
    if kind not in KINDS:
        raise SpecError(f"Principal kind {kind!r} is not one of {', '.join(KINDS)}.")
    unknown = [r for r in wanted if r not in ROLES]
    if unknown:
        raise SpecError(f"Unknown gcos role(s) {', '.join(unknown)}; choose among {', '.join(ROLES)}.")
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise SpecError("add_principal must start outside a transaction; commit or roll back first.")
    with conn.transaction(), translated():
        conn.execute(
            "SELECT * FROM gcos.add_principal(%s, %s, %s, %s, p_trace_id => %s, p_person => %s)",
            (role, name, kind, wanted, ledger.new_trace_id(), person),
        )
        if grant:
            for group in sorted({GROUP_ROLE[r] for r in wanted}):
                statement = sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(role))
                refused = (
                    f"You may record principals but cannot grant the database role {group} to {role}; "
                    "ask a superuser to grant it, or add the principal without granting."
                )
                with translated({Condition.REFUSED: refused}):
                    conn.execute(statement)
        row = conn.execute(_COLUMNS + sql.SQL(" WHERE r.rolname = %s"), (role,)).fetchone()
    assert row is not None
    return _principal(row)


def whoami(conn: psycopg.Connection[Any]) -> Principal | None:
    """The principal of this session's role (session_user), or None if the role is not one."""
    with translated():
        # gcos.principal_conflicts is for gcos roles only (a role without one cannot approve anyway).
        may = conn.execute("SELECT pg_catalog.has_function_privilege('gcos.principal_conflicts(oid)', 'EXECUTE')")
        extra = sql.SQL(", gcos.principal_conflicts(role_oid)" if may.fetchone() == (True,) else "")
        row = conn.execute(
            sql.SQL(
                "SELECT role_oid::bigint, role_name, display_name, kind, roles, created_at, updated_at, person{} "
                "FROM gcos.whoami()"
            ).format(extra)
        ).fetchone()
    if row is None or row[2] is None:
        return None
    return _principal(row)


def list_principals(conn: psycopg.Connection[Any]) -> list[Principal]:
    """Every principal, by role name (needs a gcos group role, e.g. gcos_auditor, to read)."""
    with translated():
        rows = conn.execute(_COLUMNS + sql.SQL(" ORDER BY 2")).fetchall()
    return [_principal(row) for row in rows]
