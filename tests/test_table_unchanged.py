"""A rehearsal proves its watched tables unchanged instead of re-hashing them (gcos/sql/048_table_unchanged.sql):
the mark holds each watched table's row count and its young row versions; where the same count and no new row
version are seen later (and the catalogs are proved unchanged, 047), the table's {rows, content} is the entry's.
Fail safe: whatever another session (or the marking transaction) writes between mark and check is measured."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import MakeRole, Role
from psycopg import sql
from psycopg.types.json import Jsonb

from gcos import commands, ledger
from gcos.domain import Kind, Outcome
from gcos.spec import load_project
from gcos.target import Target

SETUP = """
CREATE TABLE public.kept (id integer PRIMARY KEY, v text);
INSERT INTO public.kept SELECT g, 'v' || g FROM generate_series(1, 300) AS g;
CREATE TABLE public.parted (id integer, v text) PARTITION BY RANGE (id);
CREATE TABLE public.parted_lo PARTITION OF public.parted FOR VALUES FROM (0) TO (100);
CREATE TABLE public.parted_hi PARTITION OF public.parted FOR VALUES FROM (100) TO (1000);
INSERT INTO public.parted SELECT g, 'p' FROM generate_series(1, 200) AS g;
CREATE TABLE public.parent (id integer, v text);
CREATE TABLE public.child () INHERITS (public.parent);
INSERT INTO public.parent VALUES (1, 'a');
INSERT INTO public.child VALUES (2, 'b');
CREATE VIEW public.a_view AS SELECT id FROM public.kept;
ALTER TABLE public.kept OWNER TO gcos_kernel;
ALTER TABLE public.parted OWNER TO gcos_kernel;
ALTER TABLE public.parted_lo OWNER TO gcos_kernel;
ALTER TABLE public.parted_hi OWNER TO gcos_kernel;
ALTER TABLE public.parent OWNER TO gcos_kernel;
ALTER TABLE public.child OWNER TO gcos_kernel;
ALTER VIEW public.a_view OWNER TO gcos_kernel;
"""
WATCH = ["kept", "parted", "parent", "a_view", "nowhere"]
PROVABLE = ["public.kept", "public.parted", "public.parent"]  # (the view has no row versions; nowhere is missing)


@pytest.fixture
def world(conn: psycopg.Connection[Any], gcos_installed: None) -> Iterator[psycopg.Connection[Any]]:
    """A small world of watched tables owned by the kernel, and a session acting as gcos_owner (the role the
    rehearsal runs as, which calls the kernel-owned mark and proof)."""
    conn.execute(SETUP)
    with psycopg.connect(conn.info.dsn, autocommit=True) as owner:
        owner.execute("SET ROLE gcos_owner")
        yield owner


def one(conn: psycopg.Connection[Any], query: str, *args: Any) -> Any:
    row = conn.execute(query, args).fetchone()
    assert row is not None
    return row[0]


def entry(owner: psycopg.Connection[Any]) -> dict[str, Any]:
    """A full measurement of the fingerprint, as the rehearsal's after_rollback/exit took it before 048."""
    return dict(one(owner, "SELECT gcos._kernel_digests(%s)", WATCH))


def mark(owner: psycopg.Connection[Any]) -> dict[str, Any]:
    return dict(one(owner, "SELECT gcos._kernel_tables_mark(%s)", WATCH))


def proved(owner: psycopg.Connection[Any], known: dict[str, Any], taken: dict[str, Any]) -> dict[str, Any]:
    return dict(one(owner, "SELECT gcos._kernel_digests_proved(%s, %s, %s)", WATCH, Jsonb(known), Jsonb(taken)))


def test_unchanged_tables_are_proved_and_hash_as_a_full_measurement(world: psycopg.Connection[Any]) -> None:
    taken = mark(world)
    assert taken["tables"]["public.a_view"] is None  # a view: measured, never proved
    assert taken["tables"]["public.kept"][0] == 300
    known = entry(world)
    got = proved(world, known, taken)
    assert got["tables_proved"] == PROVABLE
    assert got["hash"] == known["hash"] == entry(world)["hash"]
    assert got["tables"] == known["tables"] and got["missing"] == ["nowhere"]


WRITES = {
    "update": "UPDATE public.kept SET v = 'changed' WHERE id = 7",
    "insert": "INSERT INTO public.kept VALUES (1000, 'new')",
    "delete": "DELETE FROM public.kept WHERE id = 7",
    "truncate": "TRUNCATE public.kept",
    "insert_and_delete": "INSERT INTO public.kept VALUES (1000, 'new'); DELETE FROM public.kept WHERE id = 7",
    "partition": "UPDATE public.parted SET v = 'q' WHERE id = 150",
    "partition_move": "UPDATE public.parted SET id = 50 WHERE id = 150",
    "inheritance_child": "UPDATE public.child SET v = 'c'",
}
WRITTEN = {"partition": "public.parted", "partition_move": "public.parted", "inheritance_child": "public.parent"}


@pytest.mark.parametrize("write", WRITES, ids=WRITES.keys())
def test_a_write_another_session_commits_after_the_mark_is_measured(
    conn: psycopg.Connection[Any], world: psycopg.Connection[Any], write: str
) -> None:
    taken = mark(world)
    known = entry(world)
    conn.execute(WRITES[write])
    got = proved(world, known, taken)
    table = WRITTEN.get(write, "public.kept")
    assert table not in got["tables_proved"]
    assert got["tables_proved"] == [t for t in PROVABLE if t != table]
    assert got["tables"][table] != known["tables"][table]
    assert got["hash"] == entry(world)["hash"] != known["hash"]


def test_a_row_updated_and_updated_back_is_measured_and_hashes_the_same(
    conn: psycopg.Connection[Any], world: psycopg.Connection[Any]
) -> None:
    taken = mark(world)
    known = entry(world)
    conn.execute("UPDATE public.kept SET v = 'changed' WHERE id = 7")
    conn.execute("UPDATE public.kept SET v = 'v7' WHERE id = 7")
    got = proved(world, known, taken)
    assert "public.kept" not in got["tables_proved"]  # new row versions: measured, not proved
    assert got["hash"] == known["hash"]


def test_a_write_in_flight_at_the_mark_that_commits_afterwards_is_measured(
    conn: psycopg.Connection[Any], world: psycopg.Connection[Any]
) -> None:
    """The writer's xid is running at the mark (so not older than the mark snapshot's xmin): its rows are young,
    invisible to the mark, visible afterwards, and not among the marked ones."""
    with conn.transaction():
        conn.execute("UPDATE public.kept SET v = 'changed' WHERE id = 7")
        with conn.transaction():  # and a subtransaction's xid too
            conn.execute("UPDATE public.kept SET v = 'changed' WHERE id = 8")
        taken = mark(world)
        known = entry(world)
    got = proved(world, known, taken)
    assert "public.kept" not in got["tables_proved"]
    assert got["hash"] == entry(world)["hash"] != known["hash"]


def test_the_marking_transaction_itself_is_judged_too(world: psycopg.Connection[Any]) -> None:
    """A rehearsal marks and checks inside one transaction: a write it undoes (a rolled-back savepoint, as the
    rehearsal's mutation is) is no change; a write it keeps is measured."""
    with world.transaction():
        taken = mark(world)
        known = entry(world)
        world.execute("RESET ROLE")
        with pytest.raises(psycopg.errors.DivisionByZero), world.transaction():
            world.execute("UPDATE public.kept SET v = 'undone'")
            world.execute("DELETE FROM public.parted")
            world.execute("SELECT 1 / 0")
        world.execute("SET ROLE gcos_owner")
        assert proved(world, known, taken)["tables_proved"] == PROVABLE
        world.execute("RESET ROLE")
        world.execute("UPDATE public.kept SET v = 'kept' WHERE id = 1")
        world.execute("SET ROLE gcos_owner")
        got = proved(world, known, taken)
        assert got["tables_proved"] == ["public.parted", "public.parent"]
        assert got["hash"] == entry(world)["hash"] != known["hash"]


def test_vacuum_freeze_and_analyze_keep_the_proof(
    conn: psycopg.Connection[Any], world: psycopg.Connection[Any]
) -> None:
    """VACUUM FREEZE keeps a frozen row's raw xmin (PostgreSQL >= 9.4): a row young at the mark stays listed."""
    conn.execute("DELETE FROM public.kept WHERE id % 2 = 0")
    conn.execute("INSERT INTO public.kept VALUES (1000, 'young')")
    with psycopg.connect(conn.info.dsn, autocommit=True) as old:
        old.execute("BEGIN")
        old.execute("SELECT pg_current_xact_id()")  # holds the mark snapshot's xmin back: recent rows are young
        conn.execute("INSERT INTO public.kept VALUES (1001, 'younger')")
        taken = mark(world)
        known = entry(world)
        old.execute("ROLLBACK")
    assert len(taken["tables"]["public.kept"][1]) >= 1
    before = one(conn, "SELECT xmin::text FROM public.kept WHERE id = 1001")
    conn.execute("VACUUM (FREEZE, ANALYZE) public.kept")
    conn.execute("VACUUM (FREEZE, ANALYZE)")
    assert one(conn, "SELECT xmin::text FROM public.kept WHERE id = 1001") == before  # frozen, raw xmin kept
    got = proved(world, known, taken)
    assert got["tables_proved"] == PROVABLE
    assert got["hash"] == entry(world)["hash"] == known["hash"]


def test_too_many_young_rows_leave_the_table_measured(
    conn: psycopg.Connection[Any], world: psycopg.Connection[Any]
) -> None:
    with psycopg.connect(conn.info.dsn, autocommit=True) as old:
        old.execute("BEGIN")
        old.execute("SELECT pg_current_xact_id()")
        conn.execute("INSERT INTO public.kept SELECT g, 'x' FROM generate_series(1001, 7000) AS g")
        taken = mark(world)
        known = entry(world)
        old.execute("ROLLBACK")
    assert taken["tables"]["public.kept"] is None
    got = proved(world, known, taken)
    assert got["tables_proved"] == ["public.parted", "public.parent"]
    assert got["hash"] == known["hash"]


def test_a_table_the_kernel_cannot_read_is_measured_by_whoever_can(
    conn: psycopg.Connection[Any], world: psycopg.Connection[Any]
) -> None:
    """The mark reads as the kernel; a table it cannot read has no proof (and the measurement decides)."""
    conn.execute("ALTER TABLE public.parent OWNER TO CURRENT_USER")
    conn.execute("ALTER TABLE public.child OWNER TO CURRENT_USER")
    taken = mark(world)
    assert taken["tables"]["public.parent"] is None
    assert taken["tables"]["public.kept"] is not None


def test_the_proof_needs_the_catalogs_proved_too(conn: psycopg.Connection[Any], world: psycopg.Connection[Any]) -> None:
    """Through 047's gcos._kernel_fingerprint_proved: a row's text depends on its types, so a catalog change (an
    enum label renamed: every row's text changes, no row version does) makes the whole fingerprint measured."""
    conn.execute("CREATE TYPE public.mood AS ENUM ('calm', 'angry')")
    conn.execute("CREATE TABLE public.moods (id integer, m public.mood)")
    conn.execute("INSERT INTO public.moods VALUES (1, 'calm')")
    conn.execute("ALTER TABLE public.moods OWNER TO gcos_kernel")
    watch = ["moods"]
    taken = dict(one(world, "SELECT gcos._catalog_mark()"))
    taken["tables"] = one(world, "SELECT gcos._kernel_tables_mark(%s)", watch)
    known = dict(one(world, "SELECT gcos._kernel_digests(%s)", watch))
    same = dict(one(world, "SELECT gcos._kernel_fingerprint_proved(%s, %s, %s)", watch, Jsonb(known), Jsonb(taken)))
    assert same["established"] == "proved unchanged" and same["tables_proved"] == ["public.moods"]
    conn.execute("ALTER TYPE public.mood RENAME VALUE 'calm' TO 'serene'")
    got = dict(one(world, "SELECT gcos._kernel_fingerprint_proved(%s, %s, %s)", watch, Jsonb(known), Jsonb(taken)))
    assert got["established"] == "measured" and "tables_proved" not in got
    assert got["tables"]["public.moods"] != known["tables"]["public.moods"]


# --------------------------------------------------------------------------- in a rehearsal (gcos rehearse)


@pytest.fixture
def operator(world_dsn: str, gcos_adopted: None, world_role: MakeRole) -> Role:
    return world_role("op", kind="human", roles=("operator",), grant=("operator",))


def last_rehearsal(dsn: str) -> dict[str, Any]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return [e for e in ledger.read_all(conn) if e.kind == Kind.REHEARSAL][-1].payload


def full_tables(dsn: str, step: str) -> dict[str, Any]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET ROLE gcos_owner")
        watch = one(conn, "SELECT document -> 'watch' FROM gcos.specs WHERE document ->> 'id' = %s", step)
        return dict(one(conn, "SELECT gcos._kernel_digests(%s)", watch)["tables"])


def wait_for(conn: psycopg.Connection[Any], query: str, what: str, timeout: float = 60) -> None:
    """Poll until `query` returns true (the state another session reaches), or fail saying what never came."""
    deadline = time.monotonic() + timeout
    while not (conn.execute(query).fetchone() or (False,))[0]:
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def rehearse_while(operator: Role, project_dir: Path, meanwhile: Callable[[], None]) -> None:
    """SB-12 rehearsed with its mutation waiting for advisory lock 516 (after the marks and the entry) while
    `meanwhile` runs in another session."""
    spec = project_dir / "steps/01-sb-12.yaml"
    text = spec.read_text(encoding="utf-8")
    old = "    WHERE r.ruleset_version = 1;\n"
    assert text.count(old) == 1
    spec.write_text(
        text.replace(old, "    WHERE r.ruleset_version = 1 AND pg_advisory_xact_lock(516) IS NOT NULL;\n"), "utf-8"
    )
    failures: list[BaseException] = []

    def run() -> None:
        try:
            commands.rehearse(Target(operator.dsn, "--dsn"), project_dir, "SB-12")
        except BaseException as exc:  # a refusal is an outcome here: the record says which
            failures.append(exc)

    with psycopg.connect(operator.dsn, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(516)")
        thread = threading.Thread(target=run)
        thread.start()
        wait_for(
            holder,
            "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE application_name = 'gcos' AND wait_event_type = 'Lock'"
            " AND datname = current_database())",
            "the rehearsal never reached the advisory lock",
        )
        meanwhile()
        holder.execute("SELECT pg_advisory_unlock(516)")
        thread.join()


def test_a_row_committed_during_a_rehearsal_shows_at_its_exit(
    operator: Role, world_dsn: str, project_dir: Path
) -> None:
    """Another session updates a watched table while the rehearsal's mutation waits: the catalogs are proved
    unchanged but that table is not, so exit is measured and differs from the entry by that table."""

    def update() -> None:
        with psycopg.connect(world_dsn, autocommit=True) as other:
            other.execute("UPDATE laws SET title = title || ' (amended)' WHERE ctid = (SELECT min(ctid) FROM laws)")

    rehearse_while(operator, project_dir, update)
    prints = last_rehearsal(world_dsn)["fingerprints"]
    assert prints["exit"]["established"] == "measured"
    assert prints["exit"]["schema_hash"] == prints["entry"]["schema_hash"]
    assert prints["exit"]["tables"]["public.laws"] != prints["entry"]["tables"]["public.laws"]
    assert {k: v for k, v in prints["exit"]["tables"].items() if k != "public.laws"} == {
        k: v for k, v in prints["entry"]["tables"].items() if k != "public.laws"
    }
    assert prints["exit"]["tables"] == full_tables(world_dsn, "SB-12")


def function_calls(conn: psycopg.Connection[Any]) -> dict[str, int]:
    conn.execute("SELECT pg_stat_clear_snapshot()")
    rows = conn.execute(
        "SELECT funcname, calls FROM pg_stat_user_functions WHERE schemaname = 'gcos'"
        " AND funcname IN ('_rehearse_measured', '_fp_tables', '_table_state', '_fp_take_proved')"
    ).fetchall()
    return dict(rows)


def test_sb10_on_the_full_world_proves_its_exit_without_rehashing_its_tables(
    operator: Role, world_dsn: str, project_dir: Path
) -> None:
    """SB-10 on the full world: its exit takes the watched table present throughout (governance_ruleset; the
    three it creates are gone again) from the entry, proved, instead of hashing it again; the record's hashes are
    those of a full measurement. Counted by track_functions: the tables are hashed three times (entry, inside,
    after_rollback), not four."""
    project = load_project(project_dir)
    with psycopg.connect(world_dsn, autocommit=True) as admin:
        admin.execute("SET ROLE gcos_kernel")  # SB-10 needs SB-12/SB-13's tables, owned as a commit leaves them
        for step in ("SB-12", "SB-13"):
            mutation = project.steps[step].mutation
            assert mutation is not None
            admin.execute(mutation.sql)
        admin.execute("RESET ROLE")
        admin.execute(sql.SQL("ALTER DATABASE {} SET track_functions = 'pl'").format(sql.Identifier(admin.info.dbname)))
    commands.rehearse(Target(operator.dsn, "--dsn"), project_dir, "SB-10")
    payload = last_rehearsal(world_dsn)
    prints = payload["fingerprints"]
    assert payload["outcome"] == Outcome.PASSED, payload["message"]
    assert prints["exit"]["established"] == "proved unchanged"
    assert prints["entry"]["hash"] == prints["after_rollback"]["hash"] == prints["exit"]["hash"]
    assert prints["exit"]["tables"].keys() == {"public.governance_ruleset"}
    with psycopg.connect(world_dsn, autocommit=True) as conn:
        wait_for(
            conn,
            "SELECT count(*) = 4 FROM pg_stat_user_functions WHERE schemaname = 'gcos'"
            " AND funcname IN ('_rehearse_measured', '_fp_tables', '_table_state', '_fp_take_proved')",
            "the rehearsal's function statistics never arrived",
        )
        calls = function_calls(conn)
    assert calls["_rehearse_measured"] == 1
    # entry, inside and after_rollback (measured: inside the mutation's savepoint the catalogs differ); not exit
    assert calls["_fp_tables"] == 3
    assert calls["_fp_take_proved"] == 2  # exit, and the entry (052: its schema part through the stored proof)
    assert calls["_table_state"] == 2  # one watched table present at the mark: marked, then proved at exit
    assert prints["exit"]["tables"] == full_tables(world_dsn, "SB-10")  # (after the count: it hashes them too)
