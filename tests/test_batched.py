"""`gcos commit` of a batched step, run by the kernel (gcos/sql/013_kernel_batched.sql; seed 002 step 9): the
backfill commits batch by batch under the 5 s statement limit with progress; an interrupted run resumes from its
cursor as the same run; a revocation between batches stops it with exit 3; a stop or failing success evidence
stops it with exit 4; a second runner takes it over; a closed run is not committed again.

The world is small: seed 002's reference world with 4,000 Birth rows, the world steps 1-4, 6 and 8 leave (their
mutations applied by the superuser), then schema public adopted - a module template each test clones. The
scratch project is the repository's with step 9 in batches of 1,000 keys and without `depends_on` (gate 2 is
tests/test_kernel_commit.py's), so a run is four batches. Faults come through the database, between two batches
(the progress report follows each committed one): a revocation, a terminated connection, a held lock, a
superuser's tampering. The run on the full 1,043,000-row world is tests/test_demo.py's."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import REPO, MakeRole, Role, _fresh_database, _role_maker, fingerprint
from psycopg import sql
from psycopg.conninfo import make_conninfo
from typer.testing import CliRunner

from gcos import approvals, commands, kernel_batched, ledger, reference_world
from gcos.adopt import adopt
from gcos.cli import app
from gcos.domain import Gate, Kind, Outcome, StepState
from gcos.errors import ExitCode, GcosError, Interrupted
from gcos.install import install
from gcos.spec import StepSpec, load_project
from gcos.target import SessionSettings, Target

STEP = "BACKFILL-SEED"
SPEC = "steps/09-backfill-seed.yaml"
DEPENDENCIES = ("SB-12", "SB-13", "SB-10", "SB-11", "T6-T7", "ACTIVATION")  # steps 1-4, 6 and 8
ROWS, SIZE = 4_000, 1_000
BATCHES = ROWS // SIZE
DAY = timedelta(hours=24)
GROUP_KEYS = (
    "SELECT count(DISTINCT COALESCE(canonical_address, collection_name || ':' || entity_code)) FROM birth_registry"
)


def scratch_project(root: Path) -> Path:
    """The repository's steps, plans and rollback evidence; step 9 in batches of SIZE, without depends_on."""
    for name in ("steps", "plans", "rollback"):
        shutil.copytree(REPO / name, root / name)
    spec = root / SPEC
    text = spec.read_text()
    for old, new in (
        ("\ndepends_on: [SB-10, SB-12, SB-13, ACTIVATION]", "\ndepends_on: []"),
        ("size: 25000", f"size: {SIZE}"),
    ):
        assert old in text
        text = text.replace(old, new, 1)
    spec.write_text(text)
    return root


@contextmanager
def world_template(admin_dsn: str, root: Path) -> Iterator[str]:
    """A template database: the small world after steps 1-4, 6 and 8, gcos installed, public adopted."""
    project = load_project(scratch_project(root))
    name = f"gcos_bworld_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        with psycopg.connect(make_conninfo(admin_dsn, dbname=name), autocommit=True) as conn:
            reference_world.build_world(conn, rows=ROWS)
            install(conn)
            for step_id in DEPENDENCIES:
                mutation = project.steps[step_id].mutation
                assert mutation is not None
                with conn.transaction():
                    conn.execute(mutation.sql)
            adopt(conn, ["public"])
        yield name
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


PEOPLE = {  # who: (role name hint, principal kind, gcos group and principal role)
    "operator": ("op", "human", "operator"),
    "sovereign": ("sov", "human", "sovereign"),
    "council": ("council", "human", "council"),
    "agent": ("agent", "agent", "operator"),
}


@dataclass
class Kit:
    dsn: str
    admin: psycopg.Connection[Any]
    project_dir: Path
    make: MakeRole
    made: dict[str, Role] = field(default_factory=dict)

    def person(self, who: str) -> Role:
        """The LOGIN role and principal of `who` (made on first use)."""
        if who not in self.made:
            hint, kind, role = PEOPLE[who]
            self.made[who] = self.make(hint, kind=kind, roles=(role,), grant=(role,))
        return self.made[who]

    @property
    def step(self) -> StepSpec:
        return load_project(self.project_dir).steps[STEP]

    def target(self, who: str | None = "operator") -> Target:
        return Target(self.person(who).dsn if who else self.dsn, "--dsn")

    def rehearse(self) -> None:
        assert commands.rehearse(self.target(), self.project_dir, STEP).ok

    def approve(self, step: StepSpec | None = None) -> int:
        """The sovereign approves step 9 and decides A-5, A-3, A-4; the approval's id."""
        step = step or self.step
        with self.person("sovereign").connect() as conn:
            project = load_project(self.project_dir)
            receipt = approvals.approve(conn, project, step, verdict="approve", expires_in=DAY)
            for decision in step.decisions:
                approvals.decide(conn, project, decision, verdict="approve", expires_in=DAY)
        return receipt.approval_id

    def commit(self, who: str | None = "operator", **kw: Any) -> Any:
        return commands.commit(self.target(who), self.project_dir, STEP, **kw)

    def fails(self, exit_code: ExitCode, who: str | None = "operator", **kw: Any) -> GcosError:
        with pytest.raises(GcosError) as info:
            self.commit(who, **kw)
        assert info.value.exit_code == exit_code, info.value
        return info.value

    def records(self) -> list[ledger.LedgerEntry]:
        return [e for e in ledger.read_all(self.admin) if e.record.get("step_id") == STEP]

    def kinds(self) -> list[str]:
        return [e.kind for e in self.records()]

    def state(self) -> str:
        (status,) = commands.status(self.target(None), self.project_dir, STEP).steps
        return str(status.state)

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

    def after_batches(self, n: int) -> tuple[str, list[tuple[Any, ...]]]:
        """The cursor and scan runs when exactly the first n batches of the run are in."""
        key = self.key_at(n * SIZE)
        return key, [(n, 0, int(key))]

    def complete(self) -> None:
        """Every key batched once, in one scan run, one candidate per group key."""
        candidates, duplicates, watermark, runs = self.counts()
        (groups,) = self.admin.execute(GROUP_KEYS).fetchone() or (0,)
        assert candidates == groups > 0 and duplicates == 0
        assert (watermark, runs) == self.after_batches(BATCHES)


def make_kit(admin_dsn: str, template: str, root: Path) -> Iterator[Kit]:
    """A clone of the small world, a scratch project and the people of a batched commit."""
    with (
        contextmanager(_fresh_database)(admin_dsn, template=template) as dsn,
        psycopg.connect(dsn, autocommit=True) as admin,
    ):
        maker = _role_maker(admin, dsn)
        make: MakeRole = next(maker)
        try:
            yield Kit(dsn, admin, scratch_project(root), make)
        finally:
            next(maker, None)


@pytest.fixture
def kit(pg_admin_dsn: str, small_world: str, tmp_path: Path) -> Iterator[Kit]:
    yield from make_kit(pg_admin_dsn, small_world, tmp_path / "project")


def at_batch(n: int, act: Callable[[], None]) -> Callable[[Any], None]:
    """A progress callback that acts once, right after batch n of this process committed."""

    def progress(p: Any) -> None:
        if p.batches == n:
            act()

    return progress


# --------------------------------------------------------------------------- the run


def test_the_named_operator_commits_the_backfill_batch_by_batch_under_the_limit(kit: Kit) -> None:
    kit.rehearse()
    kit.approve()
    birth = fingerprint(kit.admin, ["birth_registry"])["tables"]["public.birth_registry"]["content"]
    seen: list[Any] = []
    result = kit.commit(progress=seen.append)
    assert result.ok and result.outcome == Outcome.APPLIED, result.message
    assert result.batches == BATCHES and result.rows_seen == ROWS and result.resumed_from is None
    assert 0 < result.max_batch_ms < 5000
    kit.complete()
    candidates, _, _, _ = kit.counts()
    assert result.rows_written == candidates
    high = kit.admin.execute(
        "SELECT count(*), count(*) FILTER (WHERE verdict <> 'unknown') FROM governance_candidate_state "
        "WHERE risk_tier = 'high'"
    ).fetchone()
    assert high is not None and high[0] > 0 and high[1] == 0  # high-risk verdicts stay unknown
    assert fingerprint(kit.admin, ["birth_registry"])["tables"]["public.birth_registry"]["content"] == birth
    # progress: before the first batch, then after each one
    last = int(kit.key_at(ROWS))
    assert [p.batches for p in seen] == list(range(BATCHES + 1))
    assert (seen[0].done_rows, seen[0].total_rows) == (0, ROWS)
    assert (seen[-1].done_rows, seen[-1].last_key) == (ROWS, last)

    records = kit.records()
    assert [e.kind for e in records][-3:] == [Kind.POLICY_DECISION, Kind.BATCH_STARTED, Kind.COMMIT]
    decision, started, commit = records[-3:]
    for e in (decision, started, commit):  # a named human operator acted, through the kernel, in one trace
        assert e.record["actor"]["role"] == kit.person("operator").name and e.record["actor"]["principal"] == "Op"
        assert e.record["trace_id"] == commit.record["trace_id"]
    payload = commit.payload
    assert payload["kernel"] is True and payload["break_glass"] is False and payload["outcome"] == Outcome.APPLIED
    assert payload["run_id"] == started.payload["run_id"] == result.run_id
    assert payload["policy_decision_seq"] == decision.seq and payload["batch_started_seq"] == started.seq
    assert payload["fingerprint_before"] == started.payload["fingerprint_before"]
    batch = payload["batch"]
    assert (batch["batches"], batch["rows_written"], batch["statement_limit_ms"]) == (BATCHES, candidates, 5000)
    assert batch["max_batch_ms"] < 5000
    assert payload["footprint"]["rows_net"]["public.governance_candidate_state"] == candidates
    assert "public.birth_registry" not in payload["footprint"]["row_deltas"]
    assert kit.state() == StepState.COMMITTED

    # Committing the closed run again is refused (exit 3) and changes nothing.
    runner = CliRunner()
    args = ["commit", STEP, "--dsn", kit.person("operator").dsn, "--project", str(kit.project_dir), "--json"]
    again = runner.invoke(app, args)
    assert again.exit_code == ExitCode.GATE_REFUSED, again.output
    assert kit.kinds()[-1] == Kind.COMMIT_REFUSED and kit.kinds().count(Kind.BATCH_STARTED) == 1
    assert Gate.STATE in kit.records()[-1].payload["policy_decision"]["failed"]
    kit.complete()

    # The rollback (its own approval) goes through the kernel and gives back the world before the run.
    with kit.person("sovereign").connect() as conn:
        approvals.approve(
            conn, load_project(kit.project_dir), kit.step, verdict="approve", expires_in=DAY, rollback=True
        )
    rolled = commands.rollback(kit.target(), kit.project_dir, STEP)
    assert rolled.ok and rolled.outcome == Outcome.APPLIED, rolled.message
    assert kit.counts() == (0, 0, None, [])
    assert kit.records()[-1].kind == Kind.ROLLBACK and kit.records()[-1].payload["kernel"] is True


def test_a_run_starts_only_approved_and_for_a_named_human_operator_or_a_superuser_breaking_glass(kit: Kit) -> None:
    kit.rehearse()
    kit.fails(ExitCode.GATE_REFUSED)  # before any approval
    refused = kit.records()[-1]
    assert refused.kind == Kind.COMMIT_REFUSED and refused.payload["policy_decision"]["failed"] == [
        Gate.APPROVALS,
        Gate.DECISIONS,
    ]
    row = kit.admin.execute(
        "SELECT status, started_at FROM gov_worker_cursor WHERE worker_name = 'gov_backfill_sweep'"
    ).fetchone()
    assert row == ("idle", None)  # the mutation did not run
    kit.approve()
    for who in ("agent", "sovereign", "council", None):  # None: a superuser without --break-glass
        kit.fails(ExitCode.GATE_REFUSED, who)
    assert Kind.BATCH_STARTED not in kit.kinds() and kit.counts()[0] == 0

    result = kit.commit(who=None, break_glass=True)
    assert result.ok and result.batches == BATCHES
    run = [e for e in kit.records() if e.kind in (Kind.BATCH_STARTED, Kind.COMMIT)]
    assert [(e.payload["break_glass"], e.payload["kernel"]) for e in run] == [(True, True), (True, True)]


# --------------------------------------------------------------------------- interrupted, taken over


def terminate(kit: Kit) -> None:
    """End the operator's backfill session in this database, as an admin would (pg_terminate_backend): the
    kernel's connection, named `gcos`, not the blocker watch's or the evidence hook's beside it."""
    query = (
        "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
        " WHERE usename = %s AND datname = %s AND application_name = 'gcos'"
    )
    assert kit.admin.execute(query, (kit.person("operator").name, kit.admin.info.dbname)).fetchall() == [(True,)]


def test_an_interrupted_run_resumes_from_its_cursor_as_the_same_run(kit: Kit) -> None:
    kit.rehearse()
    kit.approve()
    kit.fails(ExitCode.DATABASE_UNAVAILABLE, progress=at_batch(2, lambda: terminate(kit)))
    two = kit.after_batches(2)
    assert kit.counts()[2:] == two and kit.counts()[0] > 0  # the two batches before it stay
    assert kit.kinds()[-2:] == [Kind.POLICY_DECISION, Kind.BATCH_STARTED] and kit.state() != StepState.COMMITTED

    spec = kit.project_dir / SPEC  # a run is finished by the spec that started it
    original = spec.read_text()
    spec.write_text(original.replace("Backfill seed —", "Backfill seed (edited) —", 1))
    kit.fails(ExitCode.GATE_REFUSED)
    assert Gate.SPEC in kit.records()[-1].payload["policy_decision"]["failed"]
    assert kit.counts()[2:] == two
    spec.write_text(original)

    resumed = kit.commit()
    assert resumed.outcome == Outcome.RESUMED_APPLIED, resumed.message
    assert resumed.resumed_from == int(two[0]) and resumed.batches == BATCHES - 2
    kit.complete()
    records = kit.records()
    started, again, commit = (
        next(e for e in records if e.kind == k) for k in (Kind.BATCH_STARTED, Kind.BATCH_RESUMED, Kind.COMMIT)
    )
    assert started.payload["run_id"] == again.payload["run_id"] == commit.payload["run_id"] == resumed.run_id
    assert again.payload["of_seq"] == started.seq and again.payload["kernel"] is True
    assert commit.payload["resumed"] is True and commit.payload["cursor"]["resumed_from"] == two[0]
    assert (
        commit.payload["batch"]["batches"] == BATCHES
        and commit.payload["fingerprint_before"] == started.payload["fingerprint_before"]
    )
    # one run, one trace: the rehearsal's (029); each process's own is its segment's attempt_trace_id
    assert commit.record["trace_id"] == again.record["trace_id"] == started.record["trace_id"]
    assert commit.payload["attempt_trace_id"] == again.payload["attempt_trace_id"]
    assert again.payload["attempt_trace_id"] != started.payload["attempt_trace_id"]


def test_a_second_runner_takes_the_run_over_and_the_first_stops_at_its_next_batch(kit: Kit) -> None:
    """A second `gcos commit` of the same step resumes the open run (here: one batch, then Ctrl-C); the first
    one's next batch is refused (exit 8, retry) and it writes nothing more; committing again finishes the run."""
    kit.rehearse()
    kit.approve()

    def interrupt() -> None:
        raise KeyboardInterrupt

    def second_runner() -> None:
        with pytest.raises(Interrupted):  # Ctrl-C in a batched run says where it stands (test_error_truth.py)
            kit.commit(progress=at_batch(1, interrupt))

    kit.fails(ExitCode.DATABASE_UNAVAILABLE, progress=at_batch(1, second_runner))
    assert kit.counts()[2:] == kit.after_batches(2)  # one batch of each runner, none twice
    assert kit.kinds()[-4:] == [Kind.POLICY_DECISION, Kind.BATCH_STARTED, Kind.POLICY_DECISION, Kind.BATCH_RESUMED]

    result = kit.commit()
    assert result.outcome == Outcome.RESUMED_APPLIED and result.batches == BATCHES - 2
    kit.complete()
    runs = {
        e.payload["run_id"] for e in kit.records() if e.kind in (Kind.BATCH_STARTED, Kind.BATCH_RESUMED, Kind.COMMIT)
    }
    assert runs == {result.run_id}


# --------------------------------------------------------------------------- authority and stops between batches


def test_a_revocation_between_batches_stops_the_run_with_exit_3_and_the_batches_before_stay(kit: Kit) -> None:
    kit.rehearse()
    approval = kit.approve()

    def revoke() -> None:
        with kit.person("sovereign").connect() as conn:
            approvals.revoke(conn, approval, "stop the sweep")

    kit.fails(ExitCode.GATE_REFUSED, progress=at_batch(2, revoke))
    two = kit.after_batches(2)
    assert kit.counts()[2:] == two
    refused = kit.records()[-1]
    assert (
        refused.kind == Kind.COMMIT_REFUSED and refused.payload["at"] == "batch 3" and refused.payload["kernel"] is True
    )
    decision = refused.payload["policy_decision"]
    assert decision["failed"] == [Gate.APPROVALS] and decision["run_id"] == refused.payload["run_id"]
    assert refused.record["trace_id"] == decision["trace_id"]

    kit.fails(ExitCode.GATE_REFUSED)  # a resume is gated too
    assert kit.counts()[2:] == two and kit.state() != StepState.COMMITTED


TAMPER = {  # a superuser's change after batch 1: (its SQL, the outcome of the stop it causes)
    "cursor_moved": (
        "UPDATE gov_worker_cursor SET watermark = '999999999' WHERE worker_name = 'gov_backfill_sweep'",
        "cursor_moved",
    ),
    "stop_condition": (
        "UPDATE finding_type_registry SET escalation = 'auto_remediate' WHERE domain = 'governance'",
        Outcome.STOPPED,
    ),
    "success": ("UPDATE candidate_scan_run SET worker_name = 'another_sweep'", Outcome.SUCCESS_FAILED),
    "timeout": ("LOCK TABLE governance_candidate_state IN SHARE MODE", Outcome.TIMEOUT),  # held until the run ends
}


@pytest.mark.parametrize("cause", sorted(TAMPER))
def test_a_stop_between_batches_or_at_close_exits_4_and_leaves_the_run_open(
    kit: Kit, cause: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After batch 1 the cursor moves, a held lock makes batch 2 run into the statement limit (the seed's
    "a blanket full scan that times out"), a stop condition starts to hold, or the scan runs are relabelled so
    success evidence fails. The kernel undoes the batch or refuses the close, records a `stop`, and the run
    stays open at its last committed batch."""
    assert kernel_batched.BATCH_STATEMENT_LIMIT == "5s"  # the seed's limit; the kernel takes any of 1 ms-5 s
    if cause == "timeout":  # the same wait, ended by a 1 s limit: not 5 s of a worker's time
        monkeypatch.setattr(kernel_batched, "BATCH_STATEMENT_LIMIT", "1s")
    kit.rehearse()
    kit.approve()
    change, outcome = TAMPER[cause]
    with psycopg.connect(kit.dsn) as other:  # a superuser's session (a transaction, for the lock)

        def tamper() -> None:
            assert other.execute(change).rowcount != 0
            if cause != "timeout":  # the lock is held, every other change is committed at once
                other.commit()

        settings = SessionSettings(lock_timeout="30s")  # the statement limit, not lock_timeout, ends a wait
        kit.fails(ExitCode.STOP_HELD, progress=at_batch(1, tamper), settings=settings)
    stop = kit.records()[-1]
    assert stop.kind == Kind.STOP and stop.payload["kernel"] is True and stop.payload["outcome"] == outcome
    assert stop.record["actor"]["role"] == kit.person("operator").name and kit.state() != StepState.COMMITTED
    if cause in ("timeout", "cursor_moved", "stop_condition"):  # batch 2 was undone, batch 1 stays
        assert stop.payload["batch"] == 2 and kit.counts()[3] == kit.after_batches(1)[1]
        if cause == "stop_condition":  # judged inside the batch (027), not first at close
            (held,) = [s["name"] for s in stop.payload["stops"]]
            assert held.startswith("a governance finding type set to auto-remediate")
        return
    assert kit.counts()[2] == kit.after_batches(BATCHES)[0] and Kind.COMMIT not in kit.kinds()  # the close refused
    held = [s["name"] for s in stop.payload["stops"] if s["held"]]
    failed = [c["name"] for c in stop.payload["success"] if not c["ok"]]
    assert held == [] and failed == ["candidate rows seeded incrementally"]
