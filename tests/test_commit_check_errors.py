"""A kernel commit that cannot finish applies nothing (CONTRACT.md "Exit codes"; gcos/sql/012_kernel_commit.sql):
what the kernel finds only once the step is applied inside the commit's transaction (a stop condition that
holds, a success check that fails or cannot run) undoes the step, a recorded stop, exit 4, or 2 where the
check's SQL errored (011_kernel_rehearse.sql "Outcomes"); a commit that waits too long for the commit lock
or whose connection is killed mid-step leaves no transaction, no record and no table behind (exit 8).
World, fixtures and helpers: test_commit.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import fingerprint
from test_commit import COMMIT_LOCK, World, adopted_world, in_thread, wait_for_lock_waits

from gcos.domain import Kind, Outcome, StepState
from gcos.errors import DatabaseUnavailable, ExitCode
from gcos.target import SessionSettings

# Each holds at rehearsal (6 owner agencies) and not at commit, once a superuser has added a seventh.
STOP = "stop:\n  - name: a seventh owner agency\n    sql: SELECT count(*) > 6 FROM owner_agencies\n"
FAILS = "success:\n  - name: six owner agencies\n    sql: SELECT count(*) FROM owner_agencies\n    expect: 6\n"
ERRORS = (
    "success:\n  - name: errors at commit\n"
    "    sql: SELECT 1 / (7 - (SELECT count(*) FROM owner_agencies))::int\n    expect: 1\n"
)


@pytest.fixture
def world(world_dsn: str, gcos_adopted: None, project_dir: Path) -> Iterator[World]:
    yield from adopted_world(world_dsn, project_dir)


@pytest.mark.parametrize(
    ("section", "outcome", "exit_code"),
    [
        (STOP, Outcome.STOPPED, ExitCode.STOP_HELD),
        (FAILS, Outcome.SUCCESS_FAILED, ExitCode.STOP_HELD),
        (ERRORS, "commit_failed", ExitCode.BAD_INPUT),
    ],
    ids=["stop holds", "success fails", "success errors"],
)
def test_what_fails_inside_the_commit_is_a_recorded_stop_and_the_world_stays(
    world: World, section: str, outcome: str, exit_code: ExitCode
) -> None:
    spec = world.project / "steps" / "01-sb-12.yaml"
    head = section.split("\n", 1)[0] + "\n"
    spec.write_text(spec.read_text().replace(head, section, 1))
    world.rehearse()
    world.approve()
    world.admin.execute("INSERT INTO owner_agencies VALUES ('T-7', 'A seventh agency', 'office')")
    before = fingerprint(world.admin)
    mark = world.head()
    code, out = world.cli("commit", "SB-12")
    assert code == exit_code and out["details"]["outcome"] == outcome, out
    (stop,) = world.entries(after=mark)
    assert stop.kind == Kind.STOP and stop.payload["outcome"] == outcome and stop.payload["kernel"] is True
    assert stop.seq == out["details"]["ledger_seq"]
    assert stop.payload["policy_decision"]["allow"] is True  # 019: what the gates allowed before the stop
    assert fingerprint(world.admin)["hash"] == before["hash"] and world.owner("governance_ruleset") is None


def test_a_commit_waiting_too_long_for_the_commit_lock_names_who_holds_it(world: World) -> None:
    world.rehearse()
    world.approve()
    head = world.head()
    operator = world.person("operator")
    with psycopg.connect(world.dsn, autocommit=True) as holder, holder.transaction():
        holder.execute(COMMIT_LOCK)
        code, out = world.cli("commit", "SB-12", env={"GCOS_LOCK_TIMEOUT": "100ms"})
        assert code == ExitCode.DATABASE_UNAVAILABLE and out["exit_code"] == code
        assert f"pid {holder.info.backend_pid}" in out["error"]
        # the commit's transaction ended with it: no session of the operator is in a transaction or waits
        left = world.admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = %s "
            "AND (xact_start IS NOT NULL OR wait_event_type = 'Lock')",
            (operator.name,),
        )
        assert left.fetchone() == (0,)
    assert world.entries(after=head) == [] and world.owner("governance_ruleset") is None


def test_a_connection_killed_mid_commit_leaves_nothing_half_applied(world: World) -> None:
    """The committer's backend is terminated while the kernel applies the step (its CREATE TABLE done, its
    INSERT waiting for a lock another session holds): the transaction dies whole; the client settles the run
    from the ledger (exit 8, nothing applied); status and the ledger say approved, not committed; a retry
    commits once."""
    world.rehearse()
    world.approve()
    head = world.head()
    outcomes: dict[str, Any] = {}
    with psycopg.connect(world.dsn, autocommit=True) as holder:
        with holder.transaction():
            holder.execute("LOCK TABLE public.evolution_snapshots IN SHARE MODE")
            thread = in_thread(outcomes, "commit", lambda: world.commit(settings=SessionSettings(lock_timeout="60s")))
            (pid,) = wait_for_lock_waits(world, 1, world.person("operator"))
            waits = world.admin.execute(
                "SELECT relation::regclass::text FROM pg_locks WHERE pid = %s AND NOT granted", (pid,)
            )
            assert waits.fetchall() == [("evolution_snapshots",)]  # the step's INSERT: its SQL has begun
            assert world.admin.execute("SELECT pg_terminate_backend(%s, 30000)", (pid,)).fetchone() == (True,)
        thread.join(30)
    exc = outcomes["commit"]
    assert isinstance(exc, DatabaseUnavailable) and exc.exit_code == ExitCode.DATABASE_UNAVAILABLE, outcomes
    assert world.entries(after=head) == []  # no policy decision, no commit, no stop
    assert world.owner("governance_ruleset") is None
    assert world.state("SB-12") == StepState.APPROVED
    assert world.commit().ok and len(world.records(Kind.COMMIT)) == 1
