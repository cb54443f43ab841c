"""Installing gcos without a superuser: the role a managed service (RDS, Cloud SQL, Azure, Supabase, Neon)
hands out, which has CREATEROLE and owns the database (issue 11 item 4).

Such a role can do almost all an install does: it creates the cluster roles (and so holds ADMIN OPTION on
them, PostgreSQL 16+; before 16 CREATEROLE may grant any role that is not a superuser), becomes gcos_owner and
gcos_kernel for the install transaction only (the memberships are revoked before it commits), and gives
gcos_kernel CREATE on schema gcos for the same span, which PostgreSQL requires of a non-superuser handing a
function to another owner. What only a superuser may do is skipped, statement by statement, and said in one
sentence each (``MISSING``): event triggers (CREATE/ALTER EVENT TRIGGER) and granting a predefined ``pg_``
role. Because nobody else can register the first principal, a managed install registers the installing role
itself as a human gcos admin (``gcos._bootstrap_admin``, migration 034): on a managed service that role is the
trust root anyway (it can make itself gcos_owner, see README "Installing on a managed service").

A later install by a superuser puts back whatever was skipped (``restore``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from gcos.errors import GateRefused

INSTALL_ROLES = ("gcos_owner", "gcos_admin", "gcos_operator", "gcos_sovereign", "gcos_council", "gcos_auditor")
"""The cluster roles of 001 (NOLOGIN), created here first so that the installer holds ADMIN OPTION on them."""
KERNEL_ROLE = "gcos_kernel"  # 007: NOLOGIN NOINHERIT
BECOME = ("gcos_owner", KERNEL_ROLE)
"""What the installer is a member of during the install transaction only."""

MISSING: dict[str, str] = {
    "gcos_adopted_extensions": (
        "the event trigger gcos_adopted_extensions needs a superuser and was not installed: CREATE or ALTER "
        "EXTENSION into an adopted schema is not refused, so the database owner can put a trusted extension's "
        "objects into an adopted schema (gcos adopt run again lists it as a violation, after the fact)."
    ),
    "gcos_schema_guard": (
        "the schema guard event triggers (gcos_schema_guard, gcos_schema_guard_drop) need a superuser and were "
        "not installed: an owner of objects in schema gcos (gcos_kernel, as which every step's SQL runs) can "
        "alter, re-grant or drop the kernel's own functions, so a step's approvals are all that stop a hidden "
        "statement in it from changing how later steps run."
    ),
    "gcos_online_guard": (
        "the event trigger gcos_online_guard needs a superuser and was not installed: steps with mode: online "
        "(CREATE INDEX CONCURRENTLY ...) are refused, since nothing would confine the rights an online ticket lends "
        "to its one statement; write such steps without CONCURRENTLY, or install as a superuser."
    ),
    "pg_read_all_stats": (
        "granting pg_read_all_stats to gcos_owner needs a superuser (or ADMIN OPTION on it) and was skipped: the "
        "global stop for sessions left idle in transaction sees no other role's sessions and never holds."
    ),
}
"""What each skipped superuser-only piece protected, as install says it (keyed by event trigger or role)."""


@dataclass(frozen=True)
class Skipped:
    """A superuser-only statement of a migration that a non-superuser install left out."""

    migration: str
    statement: str
    guard: str  # a key of MISSING


def installer_is_superuser(conn: psycopg.Connection[Any]) -> bool:
    """True for a superuser session, False for a role with CREATEROLE that owns the database (managed mode);
    any other role is refused (GateRefused, exit 3) with what it lacks."""
    row = conn.execute(
        "SELECT r.rolsuper, r.rolcreaterole, d.datdba = r.oid FROM pg_catalog.pg_roles AS r, pg_catalog.pg_database"
        " AS d WHERE r.rolname = current_user AND d.datname = pg_catalog.current_database()"
    ).fetchone()
    if row is None:
        raise GateRefused("gcos install could not read its own role; connect as a superuser or the database owner.")
    superuser, createrole, owner = (bool(v) for v in row)
    if superuser:
        return True
    if not (createrole and owner):
        raise GateRefused(
            "gcos install needs a superuser, or a role with CREATEROLE that owns the database (as managed services "
            "hand out); connect as one and retry."
        )
    return False


def superuser_statements(name: str, text: str) -> Iterator[tuple[int, int, Skipped]]:
    """(start, end, what) of each statement of migration `name` that only a superuser may run: event
    triggers and GRANT of a predefined pg_ role. PostgreSQL's parser (pglast) finds them, never a regex
    (imported here: every command imports this module through gcos.install, only installs parse)."""
    from pglast import ast, parse_sql

    for raw in parse_sql(text):
        node = raw.stmt
        guard = None
        if isinstance(node, (ast.CreateEventTrigStmt, ast.AlterEventTrigStmt)):
            guard = str(node.trigname)
            guard = "gcos_schema_guard" if guard.startswith("gcos_schema_guard") else guard
        elif isinstance(node, ast.GrantRoleStmt):
            granted = [str(p.priv_name) for p in node.granted_roles or ()]
            guard = next((g for g in granted if g.startswith("pg_")), None)
        if guard is not None:
            start = int(raw.stmt_location or 0)
            end = start + int(raw.stmt_len or len(text) - start)
            if guard not in MISSING:
                raise GateRefused(f"{name} holds a superuser-only statement gcos does not know ({guard}).")
            yield start, end, Skipped(name, " ".join(text[start:end].split()), guard)


def without_superuser_statements(name: str, text: str) -> tuple[str, list[Skipped]]:
    """Migration `text` with its superuser-only statements replaced by empty ones, and what was left out."""
    found = list(superuser_statements(name, text))
    out = text
    for start, end, _ in reversed(found):
        out = out[:start] + "/* skipped: needs a superuser */ SELECT NULL" + out[end:]
    return out, [s for _, _, s in found]


def begin(conn: psycopg.Connection[Any]) -> None:
    """Managed install, in its transaction before the first migration: the cluster roles exist (created by
    this role when missing) and this role is a member of gcos_owner and gcos_kernel until `end`."""
    for role in (*INSTALL_ROLES, KERNEL_ROLE):
        exists = conn.execute("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s", (role,)).fetchone()
        if exists is None:
            extra = " NOINHERIT" if role == KERNEL_ROLE else ""
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN" + extra).format(sql.Identifier(role)))
    for role in BECOME:
        if _member(conn, role):
            raise GateRefused(
                f"role {conn.info.user} is already a member of {role}; gcos needs it not to be (REVOKE {role} FROM "
                f"{conn.info.user}), then retry."
            )
        try:
            with conn.transaction():
                conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(sql.Identifier(role)))
        except psycopg.errors.InsufficientPrivilege as exc:
            raise GateRefused(
                f"role {role} exists but this role may not grant it (it holds no ADMIN OPTION on it: another role "
                "created it); have its creator grant this role ADMIN OPTION on the gcos roles, or install as a "
                "superuser."
            ) from exc


def _member(conn: psycopg.Connection[Any], role: str) -> bool:
    """Whether this role may act as `role` already (SET ROLE or inherited rights); from PostgreSQL 16 the
    ADMIN OPTION its creator holds alone (no SET, no INHERIT) is no membership."""
    usable = "(m.set_option OR m.inherit_option)" if conn.info.server_version >= 160000 else "true"
    row = conn.execute(
        sql.SQL(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_auth_members AS m WHERE m.roleid = %s::regrole "
            "AND m.member = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user) AND {})"
        ).format(sql.SQL(usable)),
        (role,),
    ).fetchone()
    return bool(row and row[0])


def before_migration(conn: psycopg.Connection[Any]) -> None:
    """gcos_kernel may own functions of schema gcos (a non-superuser's ALTER FUNCTION ... OWNER TO needs it)."""
    if conn.execute("SELECT pg_catalog.to_regnamespace('gcos') IS NOT NULL").fetchone() == (True,):
        as_owner(conn, "GRANT CREATE ON SCHEMA gcos TO gcos_kernel")


def as_owner(conn: psycopg.Connection[Any], statement: str, params: tuple[Any, ...] = ()) -> list[Any]:
    """Run one install-time statement as gcos_owner (the write guard of 008 lets only it write gcos tables)."""
    conn.execute("SET LOCAL ROLE gcos_owner")
    try:
        cur = conn.execute(statement.encode("utf-8"), params)
        return cur.fetchall() if cur.description else []
    finally:
        conn.execute("RESET ROLE")


def bootstrap_admin(conn: psycopg.Connection[Any], trace_id: str) -> int | None:
    """Register the installing role as a human gcos admin when it is no principal yet (its ledger seq), and
    make it a member of gcos_admin (gcos adopt and gcos principals add need that role's grants)."""
    rows = as_owner(conn, "SELECT gcos._bootstrap_admin(%s)", (trace_id,))
    seq = None if not rows or rows[0][0] is None else int(rows[0][0])
    admin = conn.execute(
        "SELECT 'admin' = ANY (p.roles) FROM gcos.principals AS p JOIN pg_catalog.pg_roles AS r ON r.oid = p.role_oid"
        " WHERE r.rolname = current_user"
    ).fetchone()
    if admin and admin[0] and not _member(conn, "gcos_admin"):
        conn.execute("GRANT gcos_admin TO CURRENT_USER")
    return seq


def end(conn: psycopg.Connection[Any]) -> None:
    """Undo `begin` and `before_migration`: no lasting membership, no CREATE on schema gcos for gcos_kernel."""
    if conn.execute("SELECT pg_catalog.to_regnamespace('gcos') IS NOT NULL").fetchone() == (True,):
        as_owner(conn, "REVOKE CREATE ON SCHEMA gcos FROM gcos_kernel")
    for role in BECOME:
        conn.execute(sql.SQL("REVOKE {} FROM CURRENT_USER").format(sql.Identifier(role)))


def missing(conn: psycopg.Connection[Any]) -> list[str]:
    """The keys of MISSING whose protection this database lacks (read from the catalog, any installer)."""
    gone = [
        key
        for key in ("gcos_adopted_extensions", "gcos_schema_guard", "gcos_online_guard")
        if conn.execute("SELECT 1 FROM pg_catalog.pg_event_trigger WHERE evtname = %s", (key,)).fetchone() is None
    ]
    granted = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_auth_members AS m WHERE m.roleid = 'pg_read_all_stats'::regrole"
        " AND m.member = 'gcos_owner'::regrole)"
    ).fetchone()
    if not (granted and granted[0]):
        gone.append("pg_read_all_stats")
    return gone


def restore(conn: psycopg.Connection[Any], files: list[tuple[str, str]], upto: int) -> list[str]:
    """A superuser's install: run again the superuser-only statements a managed install skipped (those of
    migrations 1..`upto` whose guard is missing), in file order; the keys restored."""
    gone = set(missing(conn))
    done: set[str] = set()
    if not gone:
        return []
    for name, text in files[:upto]:
        for start, end_, skipped in superuser_statements(name, text):
            if skipped.guard in gone:
                conn.execute(text[start:end_].encode("utf-8"))
                done.add(skipped.guard)
    if "gcos_online_guard" in done:  # 035: the function that lends gcos_kernel is the superuser's, not the installer's
        conn.execute("ALTER FUNCTION gcos._online_member(name, boolean) OWNER TO CURRENT_USER")
    return sorted(done)
