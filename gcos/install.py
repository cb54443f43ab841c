"""`gcos install`: create or upgrade the gcos schema from the versioned files in ``gcos/sql/``.

``NNN_name.sql`` files (001, 002, ... with no gaps) are applied in order, each recorded in
``gcos.schema_version`` with its sha256, all in ONE transaction holding a transaction-scoped advisory
lock, so two concurrent installs into the same database serialize and the second one finds nothing to
do. Re-running on an installed database changes nothing; a newer gcos applies only the files past the
installed version (upgrade in place); an install that actually applies files appends an ``install``
record to the ledger. The cluster-wide roles (``gcos_owner`` and the NOLOGIN group roles) are created
idempotently, so installing into several databases of one cluster, even concurrently, is safe.

Install needs a superuser session (it creates roles and hands the schema to ``gcos_owner``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.types.json import Jsonb

from gcos.errors import DatabaseUnavailable, GateRefused, GcosError, SpecError

LOCK_KEY = 0x67636F73_696E7374  # "gcosinst": the advisory lock every install takes (per database)
_FILE = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True)
class Migration:
    """One versioned SQL file."""

    version: int
    name: str
    sql: str = field(repr=False)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class InstallResult:
    version_before: int | None
    version_after: int
    applied: list[str]

    @property
    def changed(self) -> bool:
        return bool(self.applied)


def migrations() -> list[Migration]:
    """The SQL files shipped in the package, in version order (1, 2, ... without gaps)."""
    found: list[Migration] = []
    for entry in resources.files("gcos").joinpath("sql").iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), entry.name, entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    _check_sequence(found)
    return found


def _check_sequence(files: Sequence[Migration]) -> None:
    for expected, migration in enumerate(files, start=1):
        if migration.version != expected:
            raise GcosError(f"gcos SQL file {migration.name} is out of sequence: expected version {expected}.")


def installed_version(conn: psycopg.Connection[Any]) -> int | None:
    """The installed gcos schema version, or None when gcos is not installed in this database."""
    row = conn.execute("SELECT pg_catalog.to_regclass('gcos.schema_version') IS NOT NULL").fetchone()
    if row is None or not row[0]:
        return None
    row = conn.execute("SELECT pg_catalog.max(version) FROM gcos.schema_version").fetchone()
    return None if row is None else row[0]


def require_installed(conn: psycopg.Connection[Any]) -> int:
    """The installed version, refusing (exit 2) a database without gcos or with an older gcos schema than
    this package ships: its missing migrations may be the guards a command relies on."""
    version = installed_version(conn)
    latest = migrations()[-1].version
    if version is None:
        raise SpecError("gcos is not installed in this database; run `gcos install` first.")
    if version < latest:
        raise SpecError(
            f"this database has gcos schema version {version}, older than this gcos ({latest}); "
            "run `gcos install` to upgrade it in place first."
        )
    return version


def install(
    conn: psycopg.Connection[Any], *, upto: int | None = None, files: Sequence[Migration] | None = None
) -> InstallResult:
    """Install or upgrade gcos in the connected database, up to version `upto` (default: the newest).

    `files` replaces the shipped SQL files (tests use it to simulate a newer gcos). Never downgrades:
    a database newer than these files is refused (SpecError, exit 2)."""
    chosen = list(files) if files is not None else migrations()
    _check_sequence(chosen)
    newest = len(chosen)
    if upto is not None and not 1 <= upto <= newest:
        raise SpecError(f"Cannot install up to version {upto}: this gcos ships versions 1 to {newest}.")
    target = upto if upto is not None else newest
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise GcosError("gcos install must start outside a transaction; commit or roll back first.")
    try:
        with conn.transaction():
            return _install(conn, chosen, target)
    except pg_errors.LockNotAvailable as exc:
        raise DatabaseUnavailable(
            "Another gcos install (or a long transaction) holds the install lock; wait for it and retry."
        ) from exc


def _install(conn: psycopg.Connection[Any], files: list[Migration], target: int) -> InstallResult:
    conn.execute("SET LOCAL standard_conforming_strings = on")
    conn.execute("SELECT pg_catalog.pg_advisory_xact_lock(%s)", (LOCK_KEY,))
    row = conn.execute("SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user").fetchone()
    if row is None or not row[0]:
        raise GateRefused("gcos install needs a superuser connection (it creates roles); connect as one and retry.")
    before = installed_version(conn)
    if before is None and conn.execute("SELECT pg_catalog.to_regnamespace('gcos') IS NOT NULL").fetchone() == (True,):
        raise SpecError("Schema gcos exists but was not created by gcos install; rename or drop it and retry.")
    if before is not None and before > len(files):
        raise SpecError(
            f"This database has gcos schema version {before}, newer than this gcos knows ({len(files)}); "
            "upgrade gcos and retry."
        )
    applied: list[str] = []
    for migration in files[(before or 0) : target]:
        conn.execute(migration.sql.encode("utf-8"))
        conn.execute("RESET ROLE")
        conn.execute(
            "INSERT INTO gcos.schema_version (version, name, sha256) VALUES (%s, %s, %s)",
            (migration.version, migration.name, migration.sha256),
        )
        applied.append(migration.name)
    after = max(before or 0, target)
    if applied:
        conn.execute(
            "SELECT * FROM gcos._ledger_write('install', NULL, NULL, NULL, NULL, %s)",
            (Jsonb({"version_before": before, "version_after": after, "applied": applied}),),
        )
    return InstallResult(version_before=before, version_after=after, applied=applied)
