"""Batched steps on a real server (issue 6 item 3; seed 002 step 9): keyset batches over birth_registry, each
its own transaction under the 5 s statement limit, a cursor advanced in the same transaction, resumable after
SIGKILL with the same final counts as an uninterrupted run, Birth never written, high-risk verdicts unknown.

Each world is a fresh copy of the reference world (1,043,000 Birth rows) where steps 1-4, 6 and 8 are
committed the way tests/test_rehearsal.py applies them (their mutation, then a ``commit`` ledger record with
the real fingerprints, as apply.py writes it), step 9 is rehearsed for real (``commands.rehearse``), and a
sovereign approves it and decides A-5, A-3, A-4 on their own connection - so every gate passes for real."""

from __future__ import annotations

import secrets
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import PROJECT_DIRS, REPO, _fresh_database
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from gcos import approvals, batched, commands, execute, fingerprint, ledger, state
from gcos.batched import BATCH_STATEMENT_LIMIT_MS, BatchedResult, BatchProgress, apply_batched
from gcos.errors import ExitCode, GateRefused, StopHeld
from gcos.install import install
from gcos.principals import add_principal
from gcos.spec import Project, StepSpec, load_project
from gcos.target import SessionSettings, Target

STEP = "BACKFILL-SEED"
DEPENDENCIES = ("SB-12", "SB-13", "SB-10", "SB-11", "T6-T7", "ACTIVATION")  # steps 1-4, 6 and 8
SIZE = 50_000  # 21 batches over the 1,043,000 rows (the spec's 10,000 makes 105)
KILL_AT = 10
DAY = timedelta(hours=24)


@dataclass(frozen=True)
class Sovereign:
    name: str
    dsn: str  # a DSN template: the database is chosen per world


@dataclass(frozen=True)
class World:
    target: Target
    project_dir: Path
    project: Project
    step: StepSpec
    sovereign: Sovereign

    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.target.dsn, autocommit=True)

    def as_sovereign(self) -> psycopg.Connection[Any]:
        dbname = conninfo_to_dict(self.target.dsn)["dbname"]
        return psycopg.connect(make_conninfo(self.sovereign.dsn, dbname=dbname), autocommit=True)


@contextmanager
def sovereign_role(admin_dsn: str) -> Iterator[Sovereign]:
    """A LOGIN role (cluster-wide) in the gcos_sovereign group; a principal per world (see `prepare`)."""
    name = f"gcos_t_{uuid.uuid4().hex[:8]}_sovereign"
    password = secrets.token_hex(12)
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(name), sql.Literal(password)))
    try:
        yield Sovereign(name, make_conninfo(admin_dsn, user=name, password=password))
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def copy_project(root: Path) -> Path:
    for name in PROJECT_DIRS:
        shutil.copytree(REPO / name, root / name)
    return root


def commit_directly(conn: psycopg.Connection[Any], project: Project, step_id: str) -> None:
    """What `gcos commit` leaves behind, without its gates: the mutation, then the commit record."""
    step = project.steps[step_id]
    plan = project.plan_of(step_id)
    assert plan is not None and step.mutation is not None
    before = fingerprint.take(conn, watch=step.watch)
    with conn.transaction():
        conn.execute(step.mutation.sql)
    after = fingerprint.take(conn, watch=step.watch)
    payload = {
        "format_version": 1,
        "run_id": uuid.uuid4().hex,
        "outcome": "applied",
        "plan_id": plan.id,
        "plan_hash": plan.hash,
        "fingerprint_before": execute.fingerprint_summary(before),
        "fingerprint_after": execute.fingerprint_summary(after),
    }
    # a commit counts only with the allowing policy decision of its own trace (what gcos commit writes)
    trace = ledger.new_trace_id()
    decision = ledger.append(
        conn, "policy_decision", {"allow": True}, step_id=step_id, spec_hash=step.hash, trace_id=trace
    )
    payload["policy_decision_seq"] = decision.seq
    ledger.append(conn, "commit", execute.ledger_safe(payload), step_id=step_id, spec_hash=step.hash, trace_id=trace)


def prepare(dsn: str, project_dir: Path, sovereign: Sovereign, *, approve: bool = True) -> World:
    """gcos installed, steps 1-4, 6, 8 committed, step 9 rehearsed, and (by default) approved and decided."""
    project = load_project(project_dir)
    target = Target(dsn, "--dsn")
    with psycopg.connect(dsn, autocommit=True) as admin:
        install(admin)
        admin.execute(sql.SQL("GRANT gcos_sovereign TO {}").format(sql.Identifier(sovereign.name)))
        add_principal(admin, sovereign.name, name="Sovereign Sonia", kind="human", roles=("sovereign",), grant=False)
        for step_id in DEPENDENCIES:
            commit_directly(admin, project, step_id)
    assert commands.rehearse(target, project_dir, STEP).ok
    world = World(target, project_dir, project, project.steps[STEP], sovereign)
    if approve:
        with world.as_sovereign() as conn:
            approvals.approve(conn, project, world.step, verdict="approve", expires_in=DAY)
            for decision in world.step.decisions:
                approvals.decide(conn, decision, verdict="approve", expires_in=DAY)
    return world


@dataclass(frozen=True)
class Counts:
    candidates: int
    high: int
    high_not_unknown: int
    duplicates: int  # rows sharing an idempotency key or a group key within a ruleset version
    content: str  # md5 of every candidate row (without the run id and clock columns)
    watermark: str | None
    max_birth_id: int
    scan_runs: list[tuple[Any, ...]]  # (batches, first_after, last_key) per run


def counts(world: World) -> Counts:
    with world.connect() as conn:
        row = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE risk_tier = 'high'), "
            "count(*) FILTER (WHERE risk_tier = 'high' AND verdict <> 'unknown'), "
            "count(*) - count(DISTINCT (idempotency_key, ruleset_version)) "
            "  + count(*) - count(DISTINCT (group_key, ruleset_version)), "
            "md5(COALESCE(string_agg(concat_ws('|', group_key, ruleset_version, birth_id, risk_tier, verdict, "
            "  verdict_at IS NULL, verdict_expires_at IS NULL), ',' ORDER BY group_key, ruleset_version), '')) "
            "FROM governance_candidate_state"
        ).fetchone()
        cursor = conn.execute(
            "SELECT watermark FROM gov_worker_cursor "
            "WHERE worker_name = 'gov_backfill_sweep' AND source = 'birth_registry'"
        ).fetchone()
        birth = conn.execute("SELECT max(id) FROM birth_registry").fetchone()
        runs = conn.execute(
            "SELECT batches, first_after, last_key FROM candidate_scan_run WHERE worker_name = 'gov_backfill_sweep'"
        ).fetchall()
    assert row is not None and cursor is not None and birth is not None
    candidates, high, high_not_unknown, duplicates, content = row
    return Counts(
        candidates, high, high_not_unknown, duplicates, content, cursor[0], birth[0], [tuple(r) for r in runs]
    )


def step_records(world: World) -> list[ledger.LedgerEntry]:
    with world.connect() as conn:
        return [e for e in ledger.read_all(conn) if e.record.get("step_id") == STEP]


def step_state(world: World) -> str:
    with world.connect() as conn:
        return state.read_states(conn, world.project)[STEP].state


def birth_evidence(world: World) -> tuple[str, int, int]:
    """birth_registry's content fingerprint and its cumulative write counters."""
    with world.connect() as conn:
        fp = fingerprint.take(conn, watch=("birth_registry",))
        stats = conn.execute(
            "SELECT n_tup_ins + n_tup_upd + n_tup_del, n_tup_hot_upd FROM pg_stat_user_tables "
            "WHERE relid = 'public.birth_registry'::regclass"
        ).fetchone()
    assert stats is not None
    return fp.tables["public.birth_registry"].content, int(stats[0]), int(stats[1])


def wait_for_flushed_stats(world: World, inserted: int) -> None:
    """Wait (bounded, polling) until the writing sessions' counters are flushed to pg_stat_user_tables:
    a session flushes all its tables together, so once the candidates' inserts show, Birth's would too."""
    deadline = time.monotonic() + 30
    with world.connect() as conn:
        while True:
            conn.execute("SELECT pg_stat_clear_snapshot()")
            row = conn.execute(
                "SELECT n_tup_ins FROM pg_stat_user_tables WHERE relid = 'public.governance_candidate_state'::regclass"
            ).fetchone()
            if row is not None and row[0] >= inserted:
                return
            assert time.monotonic() < deadline, f"statistics not flushed: {row} < {inserted}"
            conn.execute("SELECT pg_sleep(0.05)")


def run(world: World, **kwargs: Any) -> BatchedResult:
    return apply_batched(
        world.target, world.project, world.step, settings=SessionSettings.from_env(), batch_size=SIZE, **kwargs
    )


# --------------------------------------------------------------------------- the reference: an uninterrupted run


@dataclass(frozen=True)
class Reference:
    result: BatchedResult
    counts: Counts
    kinds: list[str]
    progress: list[BatchProgress]
    birth_before: tuple[str, int, int]
    birth_after: tuple[str, int, int]
    state: str
    commit_payload: dict[str, Any]


@pytest.fixture(scope="module")
def reference(pg_admin_dsn: str, world_template: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reference]:
    """One uninterrupted run of step 9 on a fresh world, observed (shared by the tests that compare to it)."""
    project_dir = copy_project(tmp_path_factory.mktemp("reference"))
    with (
        sovereign_role(pg_admin_dsn) as sovereign,
        contextmanager(_fresh_database)(pg_admin_dsn, template=world_template) as dsn,
    ):
        world = prepare(dsn, project_dir, sovereign)
        birth_before = birth_evidence(world)
        seen: list[BatchProgress] = []
        result = run(world, progress=seen.append)
        observed = counts(world)
        wait_for_flushed_stats(world, result.rows_written)
        records = step_records(world)
        commit = next(e for e in records if e.kind == "commit")
        yield Reference(
            result,
            observed,
            [e.kind for e in records],
            seen,
            birth_before,
            birth_evidence(world),
            step_state(world),
            commit.payload,
        )


def test_an_uninterrupted_run_seeds_every_birth_row_in_batches_under_the_limit(reference: Reference) -> None:
    result, observed = reference.result, reference.counts
    assert result.ok and result.outcome == "applied", result.message
    assert result.batches == 21 and result.rows_seen == 1_043_000 and result.resumed_from is None
    assert observed.candidates == result.rows_written == 1_033_232  # one row per group key (canonical address)
    assert observed.duplicates == 0
    assert observed.watermark == str(observed.max_birth_id)
    assert observed.scan_runs == [(21, 0, observed.max_birth_id)]
    assert 0 < result.max_batch_ms < BATCH_STATEMENT_LIMIT_MS
    # the ledger: the gate's decision, the start, the commit - and the step projects as committed
    assert reference.kinds[-3:] == ["policy_decision", "batch_started", "commit"]
    assert reference.state == "committed"
    payload = reference.commit_payload
    assert payload["outcome"] == "applied" and payload["run_id"] == result.run_id
    assert payload["footprint"]["row_deltas"]["governance_candidate_state"]["inserted"] == 1_033_232
    assert payload["footprint"]["rows_net"]["public.governance_candidate_state"] == 1_033_232
    assert payload["footprint"]["new_tables"] == []
    assert payload["batch"]["max_batch_ms"] == result.max_batch_ms
    # progress: once before the first batch, then after each, with a rate and an ETA
    first, last = reference.progress[0], reference.progress[-1]
    assert (first.batches, first.done_rows, first.total_rows) == (0, 0, 1_043_000)
    assert [p.batches for p in reference.progress] == list(range(22))
    assert (last.done_rows, last.last_key, last.eta_s) == (1_043_000, observed.max_birth_id, 0)
    assert all(p.rate_rows_s > 0 and p.eta_s is not None for p in reference.progress[1:])


def test_birth_is_never_written_and_high_risk_verdicts_stay_unknown(reference: Reference) -> None:
    content_before, writes_before, _ = reference.birth_before
    content_after, writes_after, _ = reference.birth_after
    assert content_after == content_before  # the table's content fingerprint
    assert writes_after == writes_before  # pg_stat_user_tables, after the writers' counters were flushed
    fp = reference.commit_payload
    birth = "public.birth_registry"
    assert fp["fingerprint_before"]["tables"][birth] == fp["fingerprint_after"]["tables"][birth]
    assert reference.counts.high > 0 and reference.counts.high_not_unknown == 0


# --------------------------------------------------------------------------- SIGKILL halfway, then resume

KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from gcos.batched import apply_batched
    from gcos.spec import load_project
    from gcos.target import SessionSettings, Target

    project_dir, dsn, kill_at, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    project = load_project(Path(project_dir))

    def after_batch(number):
        if number == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    apply_batched(Target(dsn, "--dsn"), project, project.step("BACKFILL-SEED"), settings=SessionSettings.from_env(),
                  after_batch=after_batch, batch_size=size)
    sys.exit(99)  # never reached: the process is killed at batch kill_at
    """
)


def test_sigkill_halfway_then_resume_gives_the_uninterrupted_counts(
    reference: Reference, pg_admin_dsn: str, world_dsn: str, tmp_path: Path
) -> None:
    with sovereign_role(pg_admin_dsn) as sovereign:
        world = prepare(world_dsn, copy_project(tmp_path / "project"), sovereign)
        killed = subprocess.run(
            [sys.executable, "-c", KILLER, str(world.project_dir), world_dsn, str(KILL_AT), str(SIZE)],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert killed.returncode == -signal.SIGKILL, killed.stderr

        # Killed right after batch 10 committed: exactly 10 batches are in, the cursor is at their last key.
        halfway = counts(world)
        assert halfway.scan_runs[0][0] == KILL_AT and halfway.watermark == str(halfway.scan_runs[0][2])
        with world.connect() as conn:
            row = conn.execute(
                "SELECT count(*) FROM birth_registry WHERE id <= %s", (int(str(halfway.watermark)),)
            ).fetchone()
        assert row == (KILL_AT * SIZE,)
        assert [e.kind for e in step_records(world)][-2:] == ["policy_decision", "batch_started"]
        assert step_state(world) == "approved"  # started, not committed

        # A resume with an edited spec is refused: a run is finished by the spec that started it.
        edited = copy_project(tmp_path / "edited")
        spec = edited / "steps" / "09-backfill-seed.yaml"
        spec.write_text(spec.read_text().replace("Backfill seed —", "Backfill seed (edited) —", 1))
        other = World(world.target, edited, load_project(edited), load_project(edited).steps[STEP], sovereign)
        with pytest.raises(GateRefused, match="a run is finished by the spec and plan that started it"):
            run(other)
        assert counts(world) == halfway

        resumed = run(world)
        assert resumed.outcome == "resumed_applied", resumed.message
        assert resumed.resumed_from == int(str(halfway.watermark))
        assert resumed.batches == 21 - KILL_AT
        assert resumed.max_batch_ms < BATCH_STATEMENT_LIMIT_MS

        final = counts(world)
        # The same rows as the uninterrupted run (content digest without run ids and clocks), no duplicate,
        # the cursor at the last key, and one scan run of 21 batches from 0 to that key.
        assert final == reference.counts
        assert final.duplicates == 0 and final.watermark == str(final.max_birth_id)

        records = step_records(world)
        kinds = [e.kind for e in records]
        assert kinds.count("batch_started") == 1 and kinds.count("batch_resumed") == 1 and kinds.count("commit") == 1
        started = next(e for e in records if e.kind == "batch_started")
        again = next(e for e in records if e.kind == "batch_resumed")
        commit = next(e for e in records if e.kind == "commit")
        assert started.payload["run_id"] == again.payload["run_id"] == commit.payload["run_id"] == resumed.run_id
        assert again.payload["of_seq"] == started.seq and commit.payload["batch_started_seq"] == started.seq
        assert commit.payload["fingerprint_before"] == started.payload["fingerprint_before"]
        assert commit.payload["footprint"]["rows_net"]["public.governance_candidate_state"] == final.candidates
        assert step_state(world) == "committed"


# --------------------------------------------------------------------------- refusals


def test_without_approval_the_run_is_refused_and_nothing_is_written(
    pg_admin_dsn: str, world_dsn: str, tmp_path: Path
) -> None:
    with sovereign_role(pg_admin_dsn) as sovereign:
        world = prepare(world_dsn, copy_project(tmp_path / "project"), sovereign, approve=False)
        before = counts(world)
        with pytest.raises(GateRefused, match="No approval for BACKFILL-SEED bound to spec") as caught:
            run(world)
        assert caught.value.exit_code == ExitCode.GATE_REFUSED and int(caught.value.exit_code) == 3
        assert caught.value.details.outcome == "refused"  # type: ignore[attr-defined]
        after = counts(world)
        assert after == before and after.candidates == 0 and after.watermark is None
        with world.connect() as conn:
            row = conn.execute(
                "SELECT status, started_at FROM gov_worker_cursor WHERE worker_name = 'gov_backfill_sweep'"
            ).fetchone()
        assert row == ("idle", None)  # the mutation did not run either
        kinds = [e.kind for e in step_records(world)]
        assert kinds[-1] == "commit_refused" and "batch_started" not in kinds


def test_a_revocation_stops_the_run_at_the_next_batch_and_the_resume_is_refused_too(
    pg_admin_dsn: str, world_dsn: str, tmp_path: Path
) -> None:
    with sovereign_role(pg_admin_dsn) as sovereign:
        world = prepare(world_dsn, copy_project(tmp_path / "project"), sovereign)
        with world.connect() as conn:
            (approval_id,) = conn.execute("SELECT max(id) FROM gcos.os_proposal_approvals").fetchone() or (0,)

        def revoke_after_two(number: int) -> None:
            if number == 2:
                with world.as_sovereign() as conn:
                    approvals.revoke(conn, approval_id, "stop the sweep")

        with pytest.raises(GateRefused, match="found at batch 3") as caught:
            run(world, after_batch=revoke_after_two)
        assert caught.value.exit_code == 3
        stopped = counts(world)
        assert stopped.scan_runs[0][0] == 2 and stopped.watermark == str(stopped.scan_runs[0][2])
        assert [e.kind for e in step_records(world)][-1] == "commit_refused"

        with pytest.raises(GateRefused, match="BACKFILL-SEED"):  # a resume is gated too
            run(world)
        assert counts(world) == stopped


def test_a_batch_over_the_statement_limit_is_rolled_back_and_stops_the_run(
    pg_admin_dsn: str, world_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seed 002 step 9's stop "a blanket full scan that times out (5s statement limit)": the limit is lowered
    here so that one 200,000-key batch must hit it."""
    monkeypatch.setattr(batched, "BATCH_STATEMENT_LIMIT", "100ms")
    with sovereign_role(pg_admin_dsn) as sovereign:
        world = prepare(world_dsn, copy_project(tmp_path / "project"), sovereign)
        with pytest.raises(StopHeld, match="hit statement_timeout") as caught:
            apply_batched(
                world.target, world.project, world.step, settings=SessionSettings.from_env(), batch_size=200_000
            )
        assert caught.value.exit_code == ExitCode.STOP_HELD
        after = counts(world)
        assert after.candidates == 0 and after.watermark is None and after.scan_runs == []
        kinds = [e.kind for e in step_records(world)]
        assert kinds[-2:] == ["batch_started", "stop"]  # the run is open: committing again resumes it
