"""Batched steps run inside the kernel (gcos/sql/013_kernel_batched.sql; issue 9 item 2): where schema public
is adopted, `gcos commit` of seed 002 step 9 is started, run batch by batch and closed by the database, as a
named human operator, every record written by the kernel; a killed client resumes the same run; a revocation
stops it at the next batch; a batch that writes outside its allow list or its source table is undone.

The world is a small reference world (50,000 Birth rows: five batches of the spec's 10,000 keys), built once
per module as a template where gcos is installed, steps 1-4, 6 and 8 are committed the way
tests/test_batched.py commits them, and schema public is adopted; each test clones it, makes its own roles,
and rehearses and approves step 9 for real."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import MakeRole, Role, _fresh_database, _role_maker
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.conninfo import make_conninfo
from test_batched import DEPENDENCIES, STEP, commit_directly

from gcos import approvals, commands, fingerprint, ledger, reference_world, registry
from gcos.adopt import adopt
from gcos.batched import BatchedResult, BatchProgress
from gcos.errors import ExitCode, GateRefused, StopHeld
from gcos.install import install
from gcos.kernel_batched import commit_batched
from gcos.spec import StepSpec, load_project
from gcos.target import SessionSettings, Target

ROWS = 50_000
BATCHES = 5  # 50,000 keys in batches of the spec's 10,000
DAY = timedelta(hours=24)


@pytest.fixture(scope="module")
def small_world(pg_admin_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A template database: the small world, gcos installed, step 9's dependencies committed, public adopted."""
    project = load_project(_copy_project(tmp_path_factory.mktemp("template")))
    name = f"gcos_kworld_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        with psycopg.connect(make_conninfo(pg_admin_dsn, dbname=name), autocommit=True) as conn:
            reference_world.build_world(conn, rows=ROWS)
            install(conn)
            for step_id in DEPENDENCIES:
                commit_directly(conn, project, step_id)
                registry.register_spec(conn, project.steps[step_id])  # a rollback's gate 2 reads their depends_on
            adopt(conn, ["public"])
        yield name
    finally:
        with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


def _copy_project(root: Path) -> Path:
    from test_batched import copy_project

    return copy_project(root)


@dataclass
class Kit:
    dsn: str
    admin: psycopg.Connection[Any]
    project_dir: Path
    people: dict[str, Role]

    @property
    def step(self) -> StepSpec:
        return load_project(self.project_dir).steps[STEP]

    def target(self, who: str | None = "operator") -> Target:
        return Target(self.people[who].dsn if who else self.dsn, "--dsn")

    def rehearse(self) -> None:
        assert commands.rehearse(self.target(), self.project_dir, STEP).ok

    def approve(self, step: StepSpec | None = None) -> int:
        step = step or self.step
        project = load_project(self.project_dir)
        with self.people["sovereign"].connect() as conn:
            receipt = approvals.approve(conn, project, step, verdict="approve", expires_in=DAY)
            for decision in step.decisions:
                approvals.decide(conn, decision, verdict="approve", expires_in=DAY)
        return receipt.approval_id

    def commit(self, who: str | None = "operator", **kw: Any) -> Any:
        return commands.commit(self.target(who), self.project_dir, STEP, **kw)

    def records(self) -> list[ledger.LedgerEntry]:
        return [e for e in ledger.read_all(self.admin) if e.record.get("step_id") == STEP]

    def kinds(self) -> list[str]:
        return [e.kind for e in self.records()]

    def key_at(self, n: int) -> str:
        """The n-th Birth key (ids have gaps): where the cursor stands after n keys."""
        row = self.admin.execute("SELECT id FROM birth_registry ORDER BY id OFFSET %s LIMIT 1", (n - 1,)).fetchone()
        assert row is not None
        return str(row[0])

    def counts(self) -> tuple[int, int, str | None, list[tuple[Any, ...]]]:
        """Candidates, duplicates by idempotency key, the cursor's watermark, the sweep's scan runs."""
        row = self.admin.execute(
            "SELECT count(*), count(*) - count(DISTINCT (idempotency_key, ruleset_version)) "
            "FROM governance_candidate_state"
        ).fetchone()
        mark = self.admin.execute(
            "SELECT watermark FROM gov_worker_cursor "
            "WHERE worker_name = 'gov_backfill_sweep' AND source = 'birth_registry'"
        ).fetchone()
        runs = self.admin.execute(
            "SELECT batches, first_after, last_key FROM candidate_scan_run WHERE worker_name = 'gov_backfill_sweep'"
        ).fetchall()
        assert row is not None and mark is not None
        return int(row[0]), int(row[1]), mark[0], [tuple(r) for r in runs]


@pytest.fixture
def kit(pg_admin_dsn: str, small_world: str, tmp_path: Path) -> Iterator[Kit]:
    with (
        contextmanager(_fresh_database)(pg_admin_dsn, template=small_world) as dsn,
        psycopg.connect(dsn, autocommit=True) as admin,
    ):
        maker = _role_maker(admin, dsn)
        make: MakeRole = next(maker)
        people = {
            "operator": make("op", kind="human", roles=("operator",), grant=("operator",)),
            "sovereign": make("sov", kind="human", roles=("sovereign",), grant=("sovereign",)),
            "council": make("council", kind="human", roles=("council",), grant=("council",)),
            "agent": make("agent", kind="agent", roles=("operator",), grant=("operator",)),
        }
        try:
            yield Kit(dsn, admin, _copy_project(tmp_path / "project"), people)
        finally:
            next(maker, None)


# --------------------------------------------------------------------------- the kernel commits step 9


def test_the_named_operator_commits_the_backfill_batch_by_batch_in_the_kernel(kit: Kit) -> None:
    kit.rehearse()
    kit.approve()
    birth = fingerprint.take(kit.admin, watch=("birth_registry",)).tables["public.birth_registry"].content
    seen: list[BatchProgress] = []
    result = kit.commit(progress=seen.append)
    assert isinstance(result, BatchedResult) and result.outcome == "applied", result.message
    assert result.batches == BATCHES and result.rows_seen == ROWS and result.resumed_from is None
    candidates, duplicates, watermark, runs = kit.counts()
    assert candidates == result.rows_written > 0 and duplicates == 0
    last = int(kit.key_at(ROWS))
    assert watermark == str(last) and runs == [(BATCHES, 0, last)]
    assert [p.batches for p in seen] == list(range(BATCHES + 1))
    assert seen[-1].done_rows == seen[-1].total_rows == ROWS and seen[-1].last_key == last
    assert fingerprint.take(kit.admin, watch=("birth_registry",)).tables["public.birth_registry"].content == birth

    records = kit.records()
    assert [e.kind for e in records][-3:] == ["policy_decision", "batch_started", "commit"]
    decision, started, commit = records[-3:]
    operator = kit.people["operator"].name
    for e in (decision, started, commit):  # a named human operator acted, through the kernel
        assert e.record["actor"]["role"] == operator and e.record["actor"]["principal"] == "Op"
        assert e.record["trace_id"] == commit.record["trace_id"]
    payload = commit.payload
    assert payload["kernel"] is True and payload["break_glass"] is False and payload["outcome"] == "applied"
    assert payload["run_id"] == started.payload["run_id"] == result.run_id
    assert payload["policy_decision_seq"] == decision.seq and payload["batch_started_seq"] == started.seq
    assert payload["fingerprint_before"] == started.payload["fingerprint_before"]
    assert payload["batch"]["batches"] == BATCHES and payload["batch"]["rows_written"] == candidates
    assert payload["footprint"]["rows_net"]["public.governance_candidate_state"] == candidates
    assert payload["footprint"]["row_deltas"]["public.governance_candidate_state"]["inserted"] == candidates
    assert "public.birth_registry" not in payload["footprint"]["row_deltas"]
    (status,) = commands.status(kit.target(None), kit.project_dir, STEP).steps
    assert status.state == "committed"

    # The rollback goes through gcos.commit (action rollback) and proves the world before the run.
    with kit.people["sovereign"].connect() as conn:
        approvals.approve(
            conn, load_project(kit.project_dir), kit.step, verdict="approve", expires_in=DAY, rollback=True
        )
    rolled = commands.rollback(kit.target(), kit.project_dir, STEP)
    assert rolled.ok and rolled.outcome == "applied", rolled.message
    assert kit.counts() == (0, 0, None, [])
    assert kit.records()[-1].kind == "rollback" and kit.records()[-1].payload["kernel"] is True


@pytest.mark.parametrize("who", ["agent", "sovereign", "council"])
def test_only_a_named_human_operator_commits_a_batched_step(kit: Kit, who: str) -> None:
    kit.rehearse()
    kit.approve()
    with pytest.raises(GateRefused) as info:
        kit.commit(who=who)
    assert info.value.exit_code == ExitCode.GATE_REFUSED
    assert "batch_started" not in kit.kinds() and kit.counts()[0] == 0


def test_a_superuser_commits_a_batched_step_only_breaking_glass_and_every_record_says_so(kit: Kit) -> None:
    kit.rehearse()
    kit.approve()
    with pytest.raises(GateRefused, match="break-glass"):
        kit.commit(who=None)
    assert "batch_started" not in kit.kinds()
    result = kit.commit(who=None, break_glass=True)
    assert result.ok and result.batches == BATCHES
    run = [e for e in kit.records() if e.kind in ("batch_started", "commit")]
    assert [e.payload["break_glass"] for e in run] == [True, True]
    assert all(e.payload["kernel"] is True for e in run)


# --------------------------------------------------------------------------- killed, then resumed

KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from gcos.kernel_batched import commit_batched
    from gcos.spec import load_project
    from gcos.target import SessionSettings, Target

    project_dir, dsn, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
    project = load_project(Path(project_dir))

    def after_batch(number):
        if number == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    commit_batched(Target(dsn, "--dsn"), project, project.step("BACKFILL-SEED"), settings=SessionSettings.from_env(),
                   after_batch=after_batch)
    sys.exit(99)  # never reached
    """
)


def test_a_killed_client_leaves_the_run_open_and_the_next_commit_resumes_it(kit: Kit) -> None:
    kit.rehearse()
    kit.approve()
    killed = subprocess.run(
        [sys.executable, "-c", KILLER, str(kit.project_dir), kit.people["operator"].dsn, "2"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    candidates, _, watermark, runs = kit.counts()
    two = kit.key_at(20_000)
    assert watermark == two and runs == [(2, 0, int(two))] and candidates > 0
    assert kit.kinds()[-2:] == ["policy_decision", "batch_started"]
    (status,) = commands.status(kit.target(None), kit.project_dir, STEP).steps
    assert status.state != "committed"

    spec = kit.project_dir / "steps" / "09-backfill-seed.yaml"  # a run is finished by the spec that started it
    original = spec.read_text()
    spec.write_text(original.replace("Backfill seed —", "Backfill seed (edited) —", 1))
    with pytest.raises(GateRefused) as info:
        kit.commit()
    assert "spec" in [g.gate for g in info.value.details.decision.failed]  # type: ignore[attr-defined]
    assert kit.counts()[2] == two
    spec.write_text(original)

    resumed = kit.commit()
    assert resumed.outcome == "resumed_applied", resumed.message
    assert resumed.resumed_from == int(two) and resumed.batches == BATCHES - 2
    final, duplicates, watermark, runs = kit.counts()
    last = kit.key_at(ROWS)
    assert duplicates == 0 and watermark == last and runs == [(BATCHES, 0, int(last))]  # every key once, one run
    records = kit.records()
    started = next(e for e in records if e.kind == "batch_started")
    again = next(e for e in records if e.kind == "batch_resumed")
    commit = next(e for e in records if e.kind == "commit")
    assert started.payload["run_id"] == again.payload["run_id"] == commit.payload["run_id"] == resumed.run_id
    assert again.payload["of_seq"] == started.seq and again.payload["kernel"] is True
    assert commit.payload["resumed"] is True and commit.payload["cursor"]["resumed_from"] == two
    assert commit.payload["batch"]["batches"] == BATCHES and commit.payload["batch"]["rows_written"] == final
    assert commit.payload["fingerprint_before"] == started.payload["fingerprint_before"]
    assert commit.record["trace_id"] == again.record["trace_id"] != started.record["trace_id"]


# --------------------------------------------------------------------------- authority between batches


def test_a_revocation_between_batches_stops_the_run_and_earlier_batches_stay(kit: Kit) -> None:
    kit.rehearse()
    approval = kit.approve()

    def revoke_after_two(number: int) -> None:
        if number == 2:
            with kit.people["sovereign"].connect() as conn:
                approvals.revoke(conn, approval, "stop the sweep")

    project = load_project(kit.project_dir)
    with pytest.raises(GateRefused) as info:
        commit_batched(
            kit.target(), project, kit.step, settings=SessionSettings.from_env(), after_batch=revoke_after_two
        )
    assert info.value.exit_code == ExitCode.GATE_REFUSED
    two = kit.key_at(20_000)
    assert kit.counts()[2:] == (two, [(2, 0, int(two))])  # the two batches before it stay
    refused = kit.records()[-1]
    assert refused.kind == "commit_refused" and refused.payload["at"] == "batch 3" and refused.payload["kernel"] is True
    decision = refused.payload["policy_decision"]
    assert decision["failed"] == ["approvals"] and decision["run_id"] == refused.payload["run_id"]
    assert refused.record["trace_id"] == decision["trace_id"]

    with pytest.raises(GateRefused):  # a resume is gated too
        kit.commit()
    assert kit.counts()[2:] == (two, [(2, 0, int(two))])


def test_no_client_claims_a_batch_record(kit: Kit) -> None:
    for who in ("operator", "agent", "sovereign", "council"):
        for kind in ("batch_started", "batch_resumed"):
            with kit.people[who].connect() as conn, pytest.raises(GateRefused):
                ledger.append(conn, kind, {"run_id": "0" * 32}, step_id=STEP, spec_hash=kit.step.hash)
    assert "batch_started" not in kit.kinds() and "batch_resumed" not in kit.kinds()
    for who in ("sovereign", "council"):  # approvers may not even call the kernel's batch functions
        with kit.people[who].connect() as conn, pytest.raises(pg_errors.InsufficientPrivilege):
            conn.execute("SELECT gcos.batch_next(%s, %s)", ("0" * 32, "1" * 32))
    with kit.people["operator"].connect() as conn, pytest.raises(pg_errors.InvalidParameterValue):
        conn.execute("SELECT gcos.batch_next(%s, %s)", ("0" * 32, "1" * 32))  # no such run


# --------------------------------------------------------------------------- a batch judged by what it changed

SNEAKS = {  # a data-modifying CTE, put before the batch's own, that writes from the third batch on
    "allow_list": "UPDATE governance_ruleset SET activated_at = activated_at WHERE",
    "source": "UPDATE birth_registry SET source_system = source_system WHERE id = 1 AND",
}


@pytest.mark.parametrize("sneak", sorted(SNEAKS))
def test_a_batch_that_writes_beyond_its_allow_list_or_its_source_is_undone_and_stops_the_run(
    kit: Kit, sneak: str
) -> None:
    """Called as a client without the CLI's static checks: only from the third batch on (the rehearsal runs
    two), the batch SQL also writes a table its allow list does not name, or its own source table."""
    path = kit.project_dir / "steps" / "09-backfill-seed.yaml"
    sneaky = f"    WITH sneak AS ({SNEAKS[sneak]} %(after)s::bigint >= 20000 RETURNING 1),\n    run AS ("
    path.write_text(path.read_text().replace("    WITH run AS (", sneaky, 1))
    step = kit.step
    project = load_project(kit.project_dir)
    plan = project.plan_of(STEP)
    assert plan is not None
    with kit.people["operator"].connect() as conn:
        spec_hash, plan_hash = registry.register_spec(conn, step), registry.register_plan(conn, plan)
        (rehearsed,) = conn.execute("SELECT gcos.rehearse(%s, %s, %s)", (spec_hash, plan_hash, "2" * 32)).fetchone()
    assert rehearsed["outcome"] == "passed", rehearsed["message"]
    kit.approve(step)
    ruleset = kit.admin.execute("SELECT count(*), max(xmin::text) FROM governance_ruleset").fetchone()
    run, trace = "a" * 32, "b" * 32
    with kit.people["operator"].connect() as conn:
        (started,) = conn.execute(
            "SELECT gcos.batch_start(%s, %s, %s, %s)", (spec_hash, plan_hash, run, trace)
        ).fetchone()
        assert started["outcome"] == "started", started["message"]
        with pytest.raises(pg_errors.InvalidParameterValue):  # a batch runs under the 5 s statement limit only
            conn.execute("SELECT gcos.batch_next(%s, %s)", (run, trace))
        outcomes = []
        for _ in range(3):
            with conn.transaction():
                conn.execute("SET LOCAL statement_timeout = '5s'")
                (body,) = conn.execute("SELECT gcos.batch_next(%s, %s)", (run, trace)).fetchone()
            outcomes.append(body["outcome"])
    assert outcomes == ["batch", "batch", "stopped"], body["message"]
    two = kit.key_at(20_000)
    assert kit.counts()[2:] == (two, [(2, 0, int(two))])  # batch 3 was undone, the two before it stay
    assert kit.admin.execute("SELECT count(*), max(xmin::text) FROM governance_ruleset").fetchone() == ruleset
    stop = kit.records()[-1]
    assert stop.kind == "stop" and stop.payload["kernel"] is True and stop.payload["run_id"] == run
    assert stop.payload["batch"] == 3 and stop.payload["outcome"] == "stopped"
    named = {v["identity"] for v in stop.payload["allow_violations"]}
    assert named == ({"public.governance_ruleset"} if sneak == "allow_list" else {"public.birth_registry"})
    assert stop.record["actor"]["role"] == kit.people["operator"].name


def test_the_client_maps_a_stopped_batch_to_exit_4(kit: Kit) -> None:
    """What `gcos commit` says when the kernel stops a batch: exit 4, the run left open at its last batch."""
    kit.rehearse()
    kit.approve()
    project = load_project(kit.project_dir)

    def move_cursor(number: int) -> None:  # a superuser moves the cursor behind the run's back
        if number == 1:
            kit.admin.execute(
                "UPDATE gov_worker_cursor SET watermark = '30000' WHERE worker_name = 'gov_backfill_sweep'"
            )

    with pytest.raises(StopHeld) as info:
        commit_batched(kit.target(), project, kit.step, settings=SessionSettings.from_env(), after_batch=move_cursor)
    assert info.value.exit_code == ExitCode.STOP_HELD
    assert kit.records()[-1].kind == "stop" and kit.records()[-1].payload["outcome"] == "cursor_moved"


def test_a_run_closes_only_when_every_key_is_batched_and_belongs_to_the_session_that_resumed_it(kit: Kit) -> None:
    """A client calling the kernel directly cannot close a run early (it would commit a partial backfill), and
    a second `gcos commit` that resumes a run takes it over: the first session's calls are refused."""
    kit.rehearse()
    kit.approve()
    project = load_project(kit.project_dir)
    plan = project.plan_of(STEP)
    assert plan is not None
    with kit.people["operator"].connect() as conn:
        spec_hash, plan_hash = registry.register_spec(conn, kit.step), registry.register_plan(conn, plan)
        first, second = "c" * 32, "d" * 32
        (started,) = conn.execute(
            "SELECT gcos.batch_start(%s, %s, %s, %s)", (spec_hash, plan_hash, "e" * 32, first)
        ).fetchone()
        assert started["outcome"] == "started"
        with conn.transaction():
            conn.execute("SET LOCAL statement_timeout = '5s'")
            (body,) = conn.execute("SELECT gcos.batch_next(%s, %s)", (started["run_id"], first)).fetchone()
        assert body["outcome"] == "batch"
        (early,) = conn.execute("SELECT gcos.batch_close(%s, %s)", (started["run_id"], first)).fetchone()
        assert early["outcome"] == "more" and "commit" not in kit.kinds()
        (again,) = conn.execute(
            "SELECT gcos.batch_start(%s, %s, %s, %s)", (spec_hash, plan_hash, "f" * 32, second)
        ).fetchone()
        assert again["outcome"] == "resumed" and again["run_id"] == started["run_id"]  # the open run, not a new one
        with pytest.raises(pg_errors.ObjectNotInPrerequisiteState):
            conn.execute("SELECT gcos.batch_close(%s, %s)", (started["run_id"], first))
    assert kit.kinds()[-4:] == ["policy_decision", "batch_started", "policy_decision", "batch_resumed"]
    assert kit.counts()[3][0][0] == 1  # one batch in, and it stays
