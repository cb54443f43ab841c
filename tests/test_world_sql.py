"""The reference world of seed 002 and the nine step specs that run against it.

Builds the world in a fresh database, checks the seed's numbers, and walks the main chain (and
the SB-1/SB-2 line) the way a rehearsal does: re-verify, mutation, stop conditions, success,
rollback back to the entry state, then the mutation again so the next step sees its predecessors.
Everything runs in one transaction that is rolled back at the end.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from gcos import reference_world as rw
from gcos.checks import evaluate
from gcos.spec import PlanSpec, Project, StepSpec, StopCondition, load_project

REPO = Path(__file__).resolve().parent.parent
MAIN_CHAIN = ("SB-12", "SB-13", "SB-10", "SB-11", "T6-T7", "ACTIVATION")
BIG = frozenset({"birth_registry"})  # never written by any step (its stops say so); too big to digest each time


def _digest(conn: psycopg.Connection[Any], skip: frozenset[str] = frozenset()) -> dict[str, str]:
    """Content digest of every public table but `skip` (row text, order-independent)."""
    tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")]
    out: dict[str, str] = {}
    for table in (t for t in tables if t not in skip):
        query = sql.SQL(
            "SELECT count(*)::text || ':' || COALESCE(md5(string_agg(md5(x::text), '' ORDER BY md5(x::text))), '') "
            "FROM {} AS x"
        ).format(sql.Identifier(table))
        row = conn.execute(query).fetchone()
        out[table] = str(row[0]) if row else ""
    return out


def _tables(conn: psycopg.Connection[Any]) -> set[str]:
    return {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


def _held(conn: psycopg.Connection[Any], items: tuple[StopCondition, ...], entry: set[str]) -> list[str]:
    """The names of the stop conditions that hold (a test-side reading of the four stop forms)."""
    held = []
    for item in items:
        if item.kind == "sql":
            assert item.sql is not None
            with conn.transaction():
                row = conn.execute(item.sql).fetchone()
            value = row[0] if row else None
        elif item.kind == "forbid_columns":
            row = conn.execute(
                "SELECT count(*) > 0 FROM information_schema.columns "
                "WHERE table_schema = 'public' AND column_name = ANY(%s)",
                (list(item.names),),
            ).fetchone()
            value = row[0] if row else None
        elif item.kind == "forbid_objects":
            row = conn.execute(
                "SELECT (SELECT count(*) FROM pg_class WHERE relname = ANY(%s))"
                " + (SELECT count(*) FROM pg_proc WHERE proname = ANY(%s)) > 0",
                (list(item.names), list(item.names)),
            ).fetchone()
            value = row[0] if row else None
        else:
            assert item.limit is not None
            value = len(_tables(conn) - entry) > item.limit
        if value is not False:
            held.append(f"{item.name} ({value!r})")
    return held


def _failed(conn: psycopg.Connection[Any], step: StepSpec, section: str) -> list[str]:
    checks = step.reverify if section == "reverify" else step.success
    results = [evaluate(conn, c, section=section) for c in checks]
    return [f"{r.name}: got {r.shown_actual}, want {r.expected}" for r in results if not r.ok]


def _run_step(conn: psycopg.Connection[Any], step: StepSpec, plan: PlanSpec) -> None:
    assert step.mutation is not None
    assert _failed(conn, step, "reverify") == [], step.id
    assert _held(conn, plan.global_stop, _tables(conn)) == [], step.id
    entry_tables, entry = _tables(conn), _digest(conn, BIG)
    conn.execute(step.mutation.sql)
    assert _held(conn, step.stop, entry_tables) == [], step.id
    assert _held(conn, plan.global_stop, entry_tables) == [], step.id
    assert _failed(conn, step, "success") == [], step.id
    conn.execute(step.rollback_sql)
    assert _digest(conn, BIG) == entry, f"{step.id}: rollback did not return to the entry state"
    conn.execute(step.mutation.sql)


@pytest.fixture(scope="module")
def project() -> Project:
    return load_project(REPO)


@pytest.fixture
def world(world_dsn: str, gcos_installed: None) -> Iterator[psycopg.Connection[Any]]:
    """A copy of the session's default world (built by `rw.build_world` once, not once per test), with gcos
    installed: the plans' stop #6 asks gcos.sessions_in_transaction()."""
    with psycopg.connect(world_dsn, autocommit=True) as conn:
        yield conn


def test_small_world_has_the_seed_counts_and_reports_progress(conn: psycopg.Connection[Any]) -> None:
    calls: list[tuple[str, int, int]] = []
    summary = rw.build_world(conn, rows=1000, progress=lambda label, done, total: calls.append((label, done, total)))
    for table, count in rw.SEED_COUNTS.items():
        assert summary.counts[table] == count, table
    assert summary.counts["birth_registry"] == 1000
    assert [done for _, done, _ in calls] == list(range(1, len(calls) + 1))
    assert calls[-1][1] == calls[-1][2]
    assert sum(1 for label, _, _ in calls if label.startswith("birth_registry ")) > 1
    assert rw.world_exists(conn)
    with pytest.raises(rw.WorldExistsError):
        rw.build_world(conn, rows=10)


@pytest.mark.parametrize("rows", [0, -5, True, 1.5, "10"])
def test_rows_must_be_a_positive_integer(conn: psycopg.Connection[Any], rows: Any) -> None:
    with pytest.raises(ValueError):
        rw.build_world(conn, rows=rows)
    assert not rw.world_exists(conn)


def test_a_failed_build_leaves_nothing(conn: psycopg.Connection[Any]) -> None:
    conn.execute("CREATE TABLE dot_tools (code text)")  # a clash half way through the schema
    with pytest.raises(psycopg.errors.DuplicateTable):
        rw.build_world(conn, rows=10)
    assert conn.execute("SELECT to_regclass('public.laws')").fetchone() == (None,)
    assert not rw.world_exists(conn)


def test_two_builds_are_identical(conn: psycopg.Connection[Any], pg_admin_dsn: str) -> None:
    rw.build_world(conn, rows=5000)
    name = f"gcos_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        with psycopg.connect(make_conninfo(pg_admin_dsn, dbname=name), autocommit=True) as other:
            rw.build_world(other, rows=5000)
            assert _digest(other) == _digest(conn)
    finally:
        with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


def test_the_steps_run_in_order_on_the_default_world(world: psycopg.Connection[Any], project: Project) -> None:
    row = world.execute(
        "SELECT count(*), max(id), count(*) FILTER (WHERE canonical_address IS NULL) > 0 FROM birth_registry"
    ).fetchone()
    assert row == (rw.DEFAULT_ROWS, 1_055_575, True)  # seed step 2's integer watermark example
    first = world.execute("SELECT id::text FROM event_outbox ORDER BY id LIMIT 1").fetchone()
    assert first == ("00004a74-0000-4000-8000-000000000001",)  # ... and its uuid one

    build, line = project.plans["build"], project.plans["sb-1-2"]
    with world.transaction(force_rollback=True):
        for step_id in MAIN_CHAIN[:4]:
            _run_step(world, project.step(step_id), build)
        verify = project.step("VERIFY-1-4")
        assert verify.mutation is None
        # no approval was recorded through gcos here: step 5's os_proposal_approvals check fails for all four
        (approvals,) = _failed(world, verify, "reverify")
        assert approvals.startswith("os_proposal_approvals matches the recorded approvals") and approvals.endswith(
            ": got 4, want 0"
        )
        assert _held(world, verify.stop, _tables(world)) == []
        assert _failed(world, verify, "success") == []
        for step_id in MAIN_CHAIN[4:]:
            _run_step(world, project.step(step_id), build)
        _run_step(world, project.step("SB-1-2"), line)

        backfill = project.step("BACKFILL-SEED")
        assert backfill.mutation is not None and backfill.batch is not None
        assert _failed(world, backfill, "reverify") == []
        entry_tables, entry = _tables(world), _digest(world, BIG)
        world.execute(backfill.mutation.sql)
        params = {"after": None, "upto": 20_000, "run_id": str(uuid.uuid4())}
        seeded = world.execute(backfill.batch.sql, params).rowcount
        assert seeded > 0
        assert world.execute(backfill.batch.sql, params).rowcount == 0  # idempotent
        assert _held(world, backfill.stop, entry_tables) == []
        assert _held(world, build.global_stop, entry_tables) == []
        assert _failed(world, backfill, "success") == []
        world.execute(backfill.rollback_sql)
        assert _digest(world, BIG) == entry
