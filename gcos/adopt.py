"""`gcos adopt`: put schemas under gcos, the single write aperture (issue 9 item 1).

After ``gcos adopt SCHEMA``, the schema and every object in it are owned by the NOLOGIN role
``gcos_kernel``; every other role keeps its read privileges (SELECT, USAGE, EXECUTE of ordinary routines;
the previous owner is granted those it held as owner) and loses its write and DDL privileges, its grant
options and EXECUTE of SECURITY DEFINER routines, so an operator, sovereign, council member or agent (or
the schema's previous owner) who writes to it directly gets *permission denied*. A schema linked to what
others control outside it (a partition, inheritance or foreign key across the edge; a type, relation,
routine... owned by a role that is not a superuser) is refused: adopt the linked schemas together.
``gcos adopt --release SCHEMA`` hands everything back.

The work is done by ``gcos.adopt`` / ``gcos.release`` (gcos/sql/007_adopt.sql) with the CALLER's rights,
so PostgreSQL itself authorizes every ownership change: run it as a superuser, or as a member of the
objects' owners who may become gcos_kernel for the transaction (ADMIN OPTION on it). The ``adopt`` and
``release`` ledger records are written by a SECURITY DEFINER function that re-reads the facts from the
catalog, so they list exactly who owned what and which privileges were revoked. Everything happens in
one transaction: a refusal or failure changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import psycopg

from gcos import ledger
from gcos.errors import Condition, SpecError, condition_of, from_database, reason
from gcos.install import require_installed

KERNEL_ROLE = "gcos_kernel"


class Status(StrEnum):
    ADOPTED = "adopted"
    ALREADY_ADOPTED = "already_adopted"
    RELEASED = "released"


@dataclass(frozen=True)
class Privilege:
    """One privilege on one object (or column) as PostgreSQL's ACL holds it."""

    object: str
    type: str
    column: str | None
    grantee: str  # a role name, or PUBLIC
    privilege: str
    grantable: bool
    grantor: str


@dataclass(frozen=True)
class OwnerChange:
    object: str
    type: str
    previous_owner: str
    owner: str


@dataclass(frozen=True)
class DefaultPrivilege:
    """ALTER DEFAULT PRIVILEGES FOR ROLE gcos_kernel IN SCHEMA s GRANT privilege ON on TO grantee."""

    on: str
    grantee: str
    privilege: str


@dataclass(frozen=True)
class SchemaChange:
    """What adopting (or releasing) one schema did, as its ledger record says."""

    schema: str
    status: Status
    ledger_seq: int  # the adopt (release) record; for already_adopted, the adoption's record
    owners: tuple[OwnerChange, ...] = ()
    revoked: tuple[Privilege, ...] = ()
    revoked_execute: tuple[Privilege, ...] = ()  # EXECUTE of SECURITY DEFINER routines
    granted: tuple[Privilege, ...] = ()  # given instead (a read privilege re-granted by the kernel) or back
    default_privileges: tuple[DefaultPrivilege, ...] = ()
    extension_members: tuple[str, ...] = ()  # left alone
    kernel_admins: tuple[str, ...] = ()  # roles that could make themselves gcos_kernel (ADMIN OPTION, CREATEROLE < 16)
    database_creators: tuple[str, ...] = ()  # CREATE on the database: could create schemas, extensions elsewhere
    violations: tuple[str, ...] = ()  # already_adopted: what no longer holds (a superuser's change, drift)

    @property
    def changed(self) -> bool:
        return self.status is not Status.ALREADY_ADOPTED


@dataclass(frozen=True)
class AdoptResult:
    action: str  # adopt | release
    schemas: tuple[SchemaChange, ...]

    @property
    def changed(self) -> bool:
        return any(s.changed for s in self.schemas)


def adopt(conn: psycopg.Connection[Any], schemas: Sequence[str]) -> AdoptResult:
    """Adopt `schemas` (exact names) in one transaction; a schema already adopted is left as it is.

    GateRefused (exit 3) when the session may not (not a superuser nor a human gcos admin, not a member of
    the objects' owners, cannot become gcos_kernel, someone is a member of gcos_kernel); SpecError (exit 2)
    for a schema that does not exist, belongs to PostgreSQL or gcos, holds objects gcos cannot adopt, has
    views the kernel could not read through, or is linked to what others control outside the schemas named
    (each link listed). Nothing changes then."""
    return AdoptResult("adopt", _run(conn, "adopt", schemas))


def release(conn: psycopg.Connection[Any], schemas: Sequence[str]) -> AdoptResult:
    """Hand adopted `schemas` back (previous owners, revoked privileges re-granted) in one transaction.

    SpecError (exit 2) for a schema that is not adopted; GateRefused as for `adopt`."""
    return AdoptResult("release", _run(conn, "release", schemas))


def _run(conn: psycopg.Connection[Any], action: str, schemas: Sequence[str]) -> tuple[SchemaChange, ...]:
    names = _schema_names(schemas)
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise SpecError(f"gcos {action} must start outside a transaction; commit or roll back first.")
    query = "SELECT schema_name, status, ledger_seq, payload FROM gcos.adopt(%s)"
    if action == "release":
        query = "SELECT schema_name, status, ledger_seq, payload FROM gcos.release(%s)"
    with _refusals(action):
        require_installed(conn)
        with conn.transaction():
            ledger.trace_context(conn)  # adopt/release take no trace id: the transaction carries it
            rows = conn.execute(query, (names,)).fetchall()
    by_name = {str(row[0]): _schema_change(row) for row in rows}
    return tuple(by_name[name] for name in dict.fromkeys(names))


def _schema_names(schemas: Sequence[str]) -> list[str]:
    names = list(schemas)
    if not names:
        raise SpecError("Name at least one schema, e.g. gcos adopt public.")
    for name in names:
        if not name or "\x00" in name or len(name.encode("utf-8")) > 63:
            raise SpecError(f"{name!r} is not a schema name; give schema names exactly as they are spelled.")
    return names


@contextmanager
def _refusals(action: str) -> Iterator[None]:
    """The database's refusals as gcos errors (errors.translated). Ours carry their sentence; PostgreSQL's
    "must be owner of table t" or "must be able to SET ROLE" mean the caller lacked a right our checks did
    not foresee, and name who may run it instead."""
    try:
        yield
    except psycopg.Error as exc:
        said = reason(exc)
        say: dict[Condition | str, str] = {}
        if condition_of(exc) is Condition.REFUSED and said.startswith("must be"):
            say[Condition.REFUSED] = (
                f"PostgreSQL refused the {action} ({said}); run it as a superuser, or as a member of every "
                "object's owner who holds ADMIN OPTION on gcos_kernel."
            )
        error = from_database(exc, say=say)
        if error is None:
            raise
        raise error from exc


def _schema_change(row: tuple[Any, ...]) -> SchemaChange:
    name, status, seq, payload = str(row[0]), Status(row[1]), int(row[2]), row[3] or {}
    return SchemaChange(
        schema=name,
        status=status,
        ledger_seq=seq,
        owners=tuple(
            OwnerChange(o["object"], o["type"], o["previous_owner"], o["owner"]) for o in payload.get("owners", [])
        ),
        revoked=tuple(_privilege(p) for p in payload.get("revoked", [])),
        revoked_execute=tuple(_privilege(p) for p in payload.get("revoked_execute", [])),
        granted=tuple(_privilege(p) for p in payload.get("granted", [])),
        default_privileges=tuple(
            DefaultPrivilege(d["on"], d["grantee"], d["privilege"]) for d in payload.get("default_privileges", [])
        ),
        extension_members=tuple(
            f"{m['type']} {m['object']} ({m['extension']})" for m in payload.get("extension_members", [])
        ),
        kernel_admins=tuple(str(r) for r in payload.get("kernel_admins", [])),
        database_creators=tuple(str(r) for r in payload.get("database_creators", [])),
        violations=tuple(str(v) for v in payload.get("violations", [])),
    )


def _privilege(item: dict[str, Any]) -> Privilege:
    return Privilege(
        object=str(item["object"]),
        type=str(item["type"]),
        column=item.get("column"),
        grantee=str(item["grantee"]),
        privilege=str(item["privilege"]),
        grantable=bool(item["grantable"]),
        grantor=str(item["grantor"]),
    )
