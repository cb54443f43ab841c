"""`gcos install`: create or upgrade the gcos schema from the versioned files in ``gcos/sql/``.

``NNN_name.sql`` files (001, 002, ... with no gaps) are applied in order, each recorded in
``gcos.schema_version`` with its sha256, all in ONE transaction holding a transaction-scoped advisory
lock, so two concurrent installs into the same database serialize and the second one finds nothing to
do. Re-running on an installed database changes nothing; a newer gcos applies only the files past the
installed version (upgrade in place); an install that actually applies files appends an ``install``
record to the ledger. The cluster-wide roles (``gcos_owner`` and the NOLOGIN group roles) are created
idempotently, so installing into several databases of one cluster, even concurrently, is safe.

Install also loads the fingerprint's catalog queries (``gcos/fingerprint_sql``, adapted to the server) into
``gcos.fingerprint_queries`` for the server-side ``gcos.fingerprint``, and reloads them when this package's
differ (a gcos or PostgreSQL upgrade); ``require_installed`` refuses a database whose loaded queries differ.

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
from psycopg.types.json import Jsonb

from gcos import fingerprint, ledger
from gcos.canonical import content_hash
from gcos.errors import Condition, GateRefused, GcosError, SpecError, translated

LOCK_KEY = 0x67636F73_696E7374  # "gcosinst": the advisory lock every install takes (per database)
_FILE = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")
SEQUENCE_QUERIES = ("sequence_state", "sequence_state_legacy")
"""The fingerprint queries loaded beside the schema categories (``fingerprint.CATEGORIES``)."""
_PARAMETERS = (("%(exclude)s", "$1"), ("%(no_extensions)s", "$2"))
_HAS_QUERIES = "SELECT pg_catalog.to_regclass('gcos.fingerprint_queries') IS NOT NULL"


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
    queries_reloaded: bool = False
    """The fingerprint queries were (re)loaded (a fresh install, or this package's differ)."""

    @property
    def changed(self) -> bool:
        return bool(self.applied) or self.queries_reloaded


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
    if _loaded_queries(conn) != _query_digests(fingerprint_queries(conn.info.server_version)):
        raise SpecError(
            "the fingerprint queries loaded in this database differ from this gcos's (gcos or PostgreSQL "
            "was upgraded); run `gcos install` to reload them first."
        )
    return version


def fingerprint_queries(server_version: int) -> dict[str, str]:
    """The fingerprint's catalog queries by name as ``gcos.fingerprint`` runs them on a server of
    ``server_version``: the package's texts (``fingerprint.query``), their named placeholders turned into $1
    (exclude) and $2 (no_extensions)."""
    texts: dict[str, str] = {}
    for name in (*fingerprint.CATEGORIES, *SEQUENCE_QUERIES):
        text = fingerprint.query(name, server_version)
        for placeholder, parameter in _PARAMETERS:
            text = text.replace(placeholder, parameter)
        if "%" in text:
            raise GcosError(f"fingerprint query {name} holds a % that is not a known placeholder; fix the query.")
        texts[name] = text
    return texts


def _query_digests(texts: dict[str, str]) -> dict[str, str]:
    return {name: hashlib.sha256(text.encode("utf-8")).hexdigest() for name, text in texts.items()}


def _loaded_queries(conn: psycopg.Connection[Any]) -> dict[str, str]:
    """The loaded fingerprint queries' sha256 by name (empty when the table is missing)."""
    if conn.execute(_HAS_QUERIES).fetchone() != (True,):
        return {}
    return {str(n): str(h) for n, h in conn.execute("SELECT name, sha256 FROM gcos.fingerprint_queries")}


def _load_queries(conn: psycopg.Connection[Any]) -> bool:
    """Load this package's fingerprint queries when they differ from the loaded ones (install only, under
    its lock); True when they were (re)loaded."""
    if conn.execute(_HAS_QUERIES).fetchone() != (True,):
        return False
    texts = fingerprint_queries(conn.info.server_version)
    digests = _query_digests(texts)
    if _loaded_queries(conn) == digests:
        return False
    conn.execute("DELETE FROM gcos.fingerprint_queries")
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO gcos.fingerprint_queries (name, category, query, sha256) VALUES (%s, %s, %s, %s)",
            [(name, name in fingerprint.CATEGORIES, text, digests[name]) for name, text in texts.items()],
        )
    return True


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
    busy = "Another gcos install (or a long transaction) holds the install lock; wait for it and retry."
    # A missing object inside a migration is a bug in it, not "gcos is not installed": raised unchanged.
    with translated({Condition.LOCK: busy}, keep={Condition.NOT_INSTALLED}), conn.transaction():
        return _install(conn, chosen, target)


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
    had_queries = conn.execute(_HAS_QUERIES).fetchone() == (True,)
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
    reloaded = _load_queries(conn)
    if applied or reloaded:
        payload: dict[str, Any] = {"version_before": before, "version_after": after, "applied": applied}
        if reloaded and had_queries:  # a reload of changed queries is recorded as such
            payload["fingerprint_queries"] = content_hash(_loaded_queries(conn))
        conn.execute(
            "SELECT * FROM gcos._ledger_write('install', NULL, NULL, %s, NULL, %s)",
            (ledger.new_trace_id(), Jsonb(payload)),
        )
    return InstallResult(version_before=before, version_after=after, applied=applied, queries_reloaded=reloaded)
