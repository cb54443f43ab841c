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

Install needs a superuser session (it creates roles and hands the schema to ``gcos_owner``), or a role with
CREATEROLE that owns the database, as managed services hand out (gcos/managed.py): then what only a superuser
may do is skipped and said (``InstallResult.missing``), and the installing role becomes the first gcos admin.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, TypeVar

import psycopg
from psycopg.types.json import Jsonb

from gcos import fingerprint, ledger, managed
from gcos.canonical import content_hash
from gcos.errors import Condition, GcosError, SpecError, translated

LOCK_KEY = 0x67636F73_696E7374  # "gcosinst": the advisory lock every install takes (per database)
_FILE = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")
SEQUENCE_QUERIES = ("sequence_state", "sequence_state_legacy")
"""The fingerprint queries loaded beside the schema categories (``fingerprint.CATEGORIES``)."""
_PARAMETERS = (("%(exclude)s", "$1"), ("%(no_extensions)s", "$2"))
_T = TypeVar("_T")
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
    superuser: bool = True
    """Installed by a superuser; False: by a CREATEROLE database owner (a managed service), see `missing`."""
    missing: tuple[str, ...] = ()
    """One sentence per protection this database lacks because no superuser installed it (managed.MISSING)."""
    skipped: tuple[str, ...] = ()
    """The superuser-only statements this install left out."""
    restored: tuple[str, ...] = ()
    """What a superuser's install put back that an earlier managed install had skipped."""
    bootstrap_admin_seq: int | None = None
    """The ledger record registering the installing role as the first human gcos admin (managed only)."""

    @property
    def changed(self) -> bool:
        return bool(self.applied) or self.queries_reloaded or bool(self.restored)


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
    superuser = managed.installer_is_superuser(conn)
    if not superuser:
        managed.begin(conn)
    before = installed_version(conn)
    if before is None and conn.execute("SELECT pg_catalog.to_regnamespace('gcos') IS NOT NULL").fetchone() == (True,):
        raise SpecError("Schema gcos exists but was not created by gcos install; rename or drop it and retry.")
    if before is not None and before > len(files):
        raise SpecError(
            f"This database has gcos schema version {before}, newer than this gcos knows ({len(files)}); "
            "upgrade gcos and retry."
        )
    had_queries = conn.execute(_HAS_QUERIES).fetchone() == (True,)
    applied, skipped = _apply(conn, files[(before or 0) : target], superuser)
    after = max(before or 0, target)
    restored = managed.restore(conn, [(m.name, m.sql) for m in files], after) if superuser and before else []
    reloaded = _owned(conn, superuser, lambda: _load_queries(conn))
    trace = ledger.new_trace_id()
    admin_seq = None if superuser else managed.bootstrap_admin(conn, trace)
    if applied or reloaded or restored:
        payload: dict[str, Any] = {"version_before": before, "version_after": after, "applied": applied}
        if reloaded and had_queries:  # a reload of changed queries is recorded as such
            payload["fingerprint_queries"] = content_hash(_loaded_queries(conn))
        if skipped or restored:
            payload |= {"skipped": [s.statement for s in skipped], "restored": restored}
        _owned(
            conn,
            superuser,
            lambda: conn.execute(
                "SELECT * FROM gcos._ledger_write('install', NULL, NULL, %s, NULL, %s)", (trace, Jsonb(payload))
            ),
        )
    if not superuser:
        managed.end(conn)
    return InstallResult(
        version_before=before,
        version_after=after,
        applied=applied,
        queries_reloaded=reloaded,
        superuser=superuser,
        missing=tuple(managed.MISSING[key] for key in managed.missing(conn)),
        skipped=tuple(s.statement for s in skipped),
        restored=tuple(restored),
        bootstrap_admin_seq=admin_seq,
    )


def _owned(conn: psycopg.Connection[Any], superuser: bool, work: Callable[[], _T]) -> _T:
    """`work` as gcos_owner in a managed install (only it may write gcos tables there); as is for a superuser."""
    if not superuser:
        conn.execute("SET LOCAL ROLE gcos_owner")
    try:
        return work()
    finally:
        if not superuser:
            conn.execute("RESET ROLE")


def _apply(
    conn: psycopg.Connection[Any], todo: list[Migration], superuser: bool
) -> tuple[list[str], list[managed.Skipped]]:
    """Apply `todo` in order, each recorded in gcos.schema_version (its file's sha256); a managed install
    leaves out the superuser-only statements (listed)."""
    applied: list[str] = []
    skipped: list[managed.Skipped] = []
    for migration in todo:
        text = migration.sql
        if not superuser:
            managed.before_migration(conn)
            text, left_out = managed.without_superuser_statements(migration.name, text)
            skipped += left_out
        conn.execute(text.encode("utf-8"))
        conn.execute("RESET ROLE" if superuser else "SET LOCAL ROLE gcos_owner")  # only it writes gcos tables
        conn.execute(
            "INSERT INTO gcos.schema_version (version, name, sha256) VALUES (%s, %s, %s)",
            (migration.version, migration.name, migration.sha256),
        )
        conn.execute("RESET ROLE")
        applied.append(migration.name)
    return applied, skipped
