"""A rehearsal proves the catalogs unchanged instead of re-reading them (gcos/sql/047_catalog_unchanged.sql):
gcos._catalog_mark() before the entry fingerprint, gcos._catalog_unchanged(mark) before after_rollback and exit.
The proof must fail safe: whatever another session (or the marking one) commits to the catalogs between mark and
check reads "changed", so the fingerprint is taken in full; ANALYZE and VACUUM, which change no definition, do not."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import MakeRole, Role, fingerprint
from psycopg import sql
from psycopg.types.json import Jsonb

from gcos import commands, ledger
from gcos.domain import Kind, Outcome
from gcos.target import Target

SETUP = """
CREATE TABLE public.t1 (id integer);
CREATE TABLE public.t2 (id integer);
CREATE TABLE public.kept (id integer PRIMARY KEY, v text);
CREATE ROLE gcos_test_cu_role NOLOGIN;
"""


@pytest.fixture
def world(conn: psycopg.Connection[Any], gcos_installed: None) -> Iterator[psycopg.Connection[Any]]:
    """A small world and a session acting as gcos_owner, the role the kernel's rehearsal proves it as."""
    conn.execute(SETUP)
    with psycopg.connect(conn.info.dsn, autocommit=True) as owner:
        owner.execute("SET ROLE gcos_owner")
        yield owner
    for role in ("gcos_test_cu_role", "gcos_test_cu_role2"):  # (renamed by one test)
        if conn.execute("SELECT to_regrole(%s)", (role,)).fetchone() != (None,):
            conn.execute(sql.SQL("DROP OWNED BY {0}; DROP ROLE {0}").format(sql.Identifier(role)))


def mark(owner: psycopg.Connection[Any]) -> dict[str, Any]:
    row = owner.execute("SELECT gcos._catalog_mark()").fetchone()
    assert row is not None
    return dict(row[0])


def unchanged(owner: psycopg.Connection[Any], taken: dict[str, Any]) -> bool:
    row = owner.execute("SELECT gcos._catalog_unchanged(%s)", (Jsonb(taken),)).fetchone()
    assert row is not None
    return bool(row[0])


def test_an_unchanged_world_is_proved_unchanged(world: psycopg.Connection[Any]) -> None:
    taken = mark(world)
    assert taken["unreadable"] == []  # gcos_owner reads every catalog the proof needs
    assert unchanged(world, taken)
    assert unchanged(world, taken)  # and again: the check changes nothing itself


CHANGES = {
    "create": "CREATE TABLE public.t3 (id integer)",
    "drop": "DROP TABLE public.t2",
    "alter": "ALTER TABLE public.t1 ADD COLUMN v text",
    "alter_type": "ALTER TABLE public.t1 ALTER COLUMN id TYPE bigint",
    "rename": "ALTER TABLE public.t1 RENAME TO t9",
    "rename_column": "ALTER TABLE public.t1 RENAME COLUMN id TO key",
    "comment": "COMMENT ON TABLE public.t1 IS 'now described'",
    "grant": "GRANT SELECT ON public.t1 TO gcos_test_cu_role",
    "role_attribute": "ALTER ROLE gcos_test_cu_role CREATEDB",
    "role_rename": "ALTER ROLE gcos_test_cu_role RENAME TO gcos_test_cu_role_renamed; "
    "ALTER ROLE gcos_test_cu_role_renamed RENAME TO gcos_test_cu_role2; CREATE ROLE gcos_test_cu_role NOLOGIN",
    "role_setting": "ALTER ROLE gcos_test_cu_role SET work_mem = '8MB'",
    "database_setting": "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET work_mem = ''8MB''', current_database());"
    " END $$",
    "drop_and_recreate": "DROP TABLE public.t2; CREATE TABLE public.t2 (id integer)",
}


@pytest.mark.parametrize("ddl", CHANGES.values(), ids=CHANGES.keys())
def test_ddl_another_session_commits_after_the_mark_is_a_change(
    conn: psycopg.Connection[Any], world: psycopg.Connection[Any], ddl: str
) -> None:
    taken = mark(world)
    conn.execute(ddl)
    assert not unchanged(world, taken)


def test_a_committed_subtransaction_that_creates_and_drops_changes_nothing(
    conn: psycopg.Connection[Any], world: psycopg.Connection[Any]
) -> None:
    taken = mark(world)
    with conn.transaction(), conn.transaction():  # a savepoint
        conn.execute("CREATE TABLE public.passing (id integer PRIMARY KEY)")
        conn.execute("DROP TABLE public.passing")
    assert unchanged(world, taken)


def test_the_marking_transaction_itself_is_judged_too(world: psycopg.Connection[Any]) -> None:
    """A rehearsal marks and checks inside one transaction: its own undone work is no change, its kept work is."""
    with world.transaction():
        taken = mark(world)
        world.execute("RESET ROLE")  # the login role (a superuser) works; gcos_owner checks
        with pytest.raises(psycopg.errors.DivisionByZero), world.transaction():  # a rolled-back savepoint
            world.execute("CREATE TABLE public.undone (id integer)")
            world.execute("SELECT 1 / 0")
        with world.transaction():  # a released one that creates and drops
            world.execute("CREATE TABLE public.passing (id integer)")
            world.execute("DROP TABLE public.passing")
        world.execute("SET ROLE gcos_owner")
        assert unchanged(world, taken)
        world.execute("RESET ROLE")
        world.execute("COMMENT ON TABLE public.t1 IS 'kept'")
        world.execute("SET ROLE gcos_owner")
        assert not unchanged(world, taken)


def test_ddl_in_flight_at_the_mark_with_equal_counts_is_a_change(
    conn: psycopg.Connection[Any], world: psycopg.Connection[Any]
) -> None:
    """A transaction running at the mark creates one table and drops another of the same shape: every catalog
    keeps its row count, and the proof still sees new row versions."""
    with conn.transaction():
        conn.execute("CREATE TABLE public.t3 (id integer)")
        conn.execute("DROP TABLE public.t2")
        taken = mark(world)
    now = mark(world)
    assert {k: v[0] for k, v in now["catalogs"].items()} == {k: v[0] for k, v in taken["catalogs"].items()}
    assert not unchanged(world, taken)


def test_ddl_in_a_savepoint_of_a_transaction_in_flight_at_the_mark_is_a_change(
    conn: psycopg.Connection[Any], world: psycopg.Connection[Any]
) -> None:
    """pg_current_snapshot() lists top-level xids only: a subtransaction's xid is in no snapshot's xip list, so
    a proof by "xmin visible in the mark's snapshot" would take this commit for an old one. The mark lists the
    row versions it saw instead, and this one is not among them."""
    with conn.transaction():
        conn.execute("SELECT pg_current_xact_id()")
        with conn.transaction():  # a savepoint: the DDL gets a subtransaction's xid
            conn.execute("COMMENT ON TABLE public.t1 IS 'in a savepoint'")
        taken = mark(world)
    assert not unchanged(world, taken)


def test_analyze_and_vacuum_change_nothing(conn: psycopg.Connection[Any], world: psycopg.Connection[Any]) -> None:
    conn.execute("INSERT INTO public.kept SELECT g, 'v' FROM generate_series(1, 500) AS g")
    conn.execute("DELETE FROM public.kept WHERE id % 2 = 0")
    taken = mark(world)
    conn.execute("ANALYZE public.kept")
    conn.execute("VACUUM public.kept")
    conn.execute("VACUUM (FREEZE, ANALYZE)")  # the whole database, catalogs included
    assert unchanged(world, taken)


def test_a_long_open_transaction_leaves_no_proof_rather_than_a_slow_one(
    conn: psycopg.Connection[Any], world: psycopg.Connection[Any]
) -> None:
    """Rows younger than the oldest running transaction are listed in the mark; past 5,000 of them the mark
    says it cannot prove anything, and the check answers "changed"."""
    with psycopg.connect(conn.info.dsn, autocommit=True) as old:
        old.execute("BEGIN")
        old.execute("SELECT pg_current_xact_id()")  # an xid that holds every snapshot's xmin back
        columns = ", ".join(f"c{i} integer" for i in range(1000))
        for n in range(6):
            conn.execute(f"CREATE TABLE public.wide{n} ({columns})")
        taken = mark(world)
        old.execute("ROLLBACK")
    assert "unprovable" in taken
    assert not unchanged(world, taken)


def wait_for(conn: psycopg.Connection[Any], query: str, what: str, timeout: float = 60) -> None:
    """Poll until `query` returns true (the state another session reaches), or fail saying what never came."""
    deadline = time.monotonic() + timeout
    while not (conn.execute(query).fetchone() or (False,))[0]:
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_create_index_concurrently_finishing_after_the_mark_is_a_change(
    conn: psycopg.Connection[Any], world: psycopg.Connection[Any]
) -> None:
    """CREATE INDEX CONCURRENTLY waits for a session holding an older snapshot after its index exists, not yet
    valid; the mark is taken then, and the index turning valid afterwards reads as a change."""
    failures: list[BaseException] = []

    def build() -> None:
        try:
            with psycopg.connect(conn.info.dsn, autocommit=True) as builder:
                builder.execute("CREATE INDEX CONCURRENTLY kept_v ON public.kept (v)")
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    with psycopg.connect(conn.info.dsn, autocommit=True) as holder:
        holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        holder.execute("SELECT 1")  # a snapshot the index build must wait out
        thread = threading.Thread(target=build)
        thread.start()
        wait_for(
            conn,
            "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE query LIKE 'CREATE INDEX CONCURRENTLY%%'"
            " AND wait_event_type = 'Lock')"
            " AND EXISTS (SELECT FROM pg_index WHERE indexrelid = to_regclass('public.kept_v') AND NOT indisvalid)",
            "the index build never waited for the snapshot",
        )
        taken = mark(world)
        holder.execute("COMMIT")
        thread.join()
    assert failures == []
    assert conn.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = 'public.kept_v'::regclass").fetchone() == (
        True,
    )
    assert not unchanged(world, taken)


# --------------------------------------------------------------------------- in a rehearsal (gcos rehearse)


@pytest.fixture
def operator(world_dsn: str, gcos_adopted: None, world_role: MakeRole) -> Role:
    """A named human operator on a copy of the reference world whose schema public the kernel governs."""
    return world_role("op", kind="human", roles=("operator",), grant=("operator",))


def last_rehearsal(dsn: str) -> dict[str, Any]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return [e for e in ledger.read_all(conn) if e.kind == Kind.REHEARSAL][-1].payload


def test_a_rehearsal_of_an_unchanged_world_proves_its_exit(operator: Role, world_dsn: str, project_dir: Path) -> None:
    """SB-12 creates a table and its rollback drops it: after_rollback and exit are proved, not re-read, and their
    hashes are the ones a full fingerprint of the world gives."""
    commands.rehearse(Target(operator.dsn, "--dsn"), project_dir, "SB-12")
    payload = last_rehearsal(world_dsn)
    prints = payload["fingerprints"]
    assert payload["outcome"] == Outcome.PASSED, payload["message"]
    assert prints["entry"]["hash"] == prints["after_rollback"]["hash"] == prints["exit"]["hash"]
    assert prints["inside"]["schema_hash"] != prints["entry"]["schema_hash"]
    assert prints["exit"]["established"] == "proved unchanged"
    assert prints["after_rollback"]["established"] in ("proved unchanged", "measured")
    assert prints["entry"]["established"] in ("proved unchanged", "measured")  # 052: a stored proof
    assert "established" not in prints["inside"]
    with psycopg.connect(world_dsn, autocommit=True) as conn:
        watch = conn.execute("SELECT document -> 'watch' FROM gcos.specs WHERE document ->> 'id' = 'SB-12'").fetchone()
        assert watch is not None
        assert prints["exit"]["hash"] == fingerprint(conn, watch[0] or [])["hash"]


def rehearse_while(operator: Role, project_dir: Path, meanwhile: Callable[[], None]) -> None:
    """SB-12 rehearsed with its mutation waiting for advisory lock 515 (after the mark and the entry fingerprint)
    while `meanwhile` runs in another session."""
    spec = project_dir / "steps/01-sb-12.yaml"
    text = spec.read_text(encoding="utf-8")
    old = "    WHERE r.ruleset_version = 1;\n"
    assert text.count(old) == 1
    spec.write_text(
        text.replace(old, "    WHERE r.ruleset_version = 1 AND pg_advisory_xact_lock(515) IS NOT NULL;\n"), "utf-8"
    )
    failures: list[BaseException] = []

    def run() -> None:
        try:
            commands.rehearse(Target(operator.dsn, "--dsn"), project_dir, "SB-12")
        except BaseException as exc:  # a refusal is an outcome here: the record says which
            failures.append(exc)

    with psycopg.connect(operator.dsn, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(515)")
        thread = threading.Thread(target=run)
        thread.start()
        wait_for(
            holder,
            "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE application_name = 'gcos' AND wait_event_type = 'Lock'"
            " AND datname = current_database())",
            "the rehearsal never reached the advisory lock",
        )
        meanwhile()
        holder.execute("SELECT pg_advisory_unlock(515)")
        thread.join()


def test_ddl_committed_during_a_rehearsal_shows_at_its_exit(operator: Role, world_dsn: str, project_dir: Path) -> None:
    def create() -> None:
        with psycopg.connect(world_dsn, autocommit=True) as other:
            other.execute("CREATE TABLE public.meanwhile (id integer)")

    rehearse_while(operator, project_dir, create)
    payload = last_rehearsal(world_dsn)
    prints = payload["fingerprints"]
    assert prints["exit"]["established"] == "measured"
    assert prints["exit"]["schema_hash"] != prints["entry"]["schema_hash"]
    assert prints["after_rollback"]["established"] == "measured"
    assert "relation public.meanwhile added" in payload["differences"]


def test_analyze_and_vacuum_during_a_rehearsal_keep_the_proof(
    operator: Role, world_dsn: str, project_dir: Path
) -> None:
    def analyze() -> None:
        with psycopg.connect(world_dsn, autocommit=True) as other:
            other.execute("ANALYZE evolution_snapshots")
            other.execute("VACUUM measurement_registry")

    rehearse_while(operator, project_dir, analyze)
    prints = last_rehearsal(world_dsn)["fingerprints"]
    assert prints["entry"]["hash"] == prints["exit"]["hash"]
    assert prints["exit"]["established"] == "proved unchanged"
