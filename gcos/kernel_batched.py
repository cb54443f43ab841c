"""The client of the kernel's batched commit (gcos/sql/013_kernel_batched.sql): a batched step (mode: batched,
seed 002 step 9) is started, run batch by batch and closed INSIDE the database.

The client registers the spec and plan, then calls ``gcos.batch_start`` once, ``gcos.batch_next`` in a loop (one
short transaction per batch, under seed 002's 5 s statement limit) until the kernel says done, and
``gcos.batch_close`` once. The kernel gates every phase, chooses every keyset range from the cursor row, judges
every batch and writes every record; this module only counts for the progress bar and renders what the kernel
returns as a :class:`gcos.results.BatchedResult`. A killed or
interrupted client leaves the run open at its last committed batch: `gcos commit STEP` resumes it (same run id).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from gcos import blockers, kernel, ledger, registry
from gcos.domain import BatchPhase, Outcome
from gcos.errors import (
    DatabaseUnavailable,
    GateRefused,
    GcosError,
    Interrupted,
    ReverifyMismatch,
    SpecError,
    StopHeld,
    from_database,
    reason,
    sentence,
)
from gcos.install import require_installed
from gcos.results import BatchedResult, BatchProgress, StopResult
from gcos.spec import PlanSpec, Project, StepSpec
from gcos.target import SessionSettings, Target, connect, set_local_timeouts

_ERRORS: dict[str, type[GcosError]] = {
    **kernel.OUTCOME_ERRORS,
    Outcome.TIMEOUT: StopHeld,  # a batch over the seed's statement limit stops the run
    Outcome.NO_CURSOR: StopHeld,
    Outcome.CURSOR_MISMATCH: StopHeld,
    Outcome.CURSOR_MOVED: StopHeld,
}
"""The exit of each outcome the kernel's batched functions return (CONTRACT.md exit codes)."""
BATCH_STATEMENT_LIMIT = "5s"  # seed 002 step 9: "non-resumable/blanket full scan that times out (5s statement limit)"


@dataclass
class _Run:
    """What this process saw of the run (the kernel keeps the run's own counters)."""

    step: StepSpec
    run_id: str = ""
    trace_id: str = ""
    resumed_from: int | None = None
    watermark: int | None = None
    total: int = 0
    done: int = 0
    batches: int = 0
    rows_seen: int = 0
    rows_written: int = 0
    max_batch_ms: int = 0
    decision: Any = None
    deltas: dict[str, dict[str, int]] = field(default_factory=dict)

    def result(self, outcome: str, message: str, **extra: Any) -> BatchedResult:
        return BatchedResult(
            step=self.step.id,
            ref=self.step.ref,
            spec_hash=self.step.hash,
            run_id=self.run_id,
            outcome=outcome,
            message=sentence(message),
            batches=self.batches,
            rows_seen=self.rows_seen,
            rows_written=self.rows_written,
            resumed_from=self.resumed_from,
            max_batch_ms=self.max_batch_ms,
            decision=self.decision,
            row_deltas={k: dict(v) for k, v in self.deltas.items()},
            **extra,
        )


def commit_batched(
    target: Target,
    project: Project,
    step: StepSpec,
    *,
    settings: SessionSettings,
    progress: Callable[[BatchProgress], None] | None = None,
    after_batch: Callable[[int], None] | None = None,
    break_glass: bool = False,
) -> BatchedResult:
    """Commit batched `step` through the kernel: start (or resume) its run, one batch per call, close it.

    `progress` is called before the first batch and after each committed one; `after_batch(n)` (a test hook)
    after batch n of this process committed. Raises GateRefused (3) / ReverifyMismatch (6) when a gate
    refuses (at the start, at a batch or at the close), StopHeld (4) when a batch or the close is stopped
    (the batches before it stay, idempotent), ResidueFound (5), DatabaseUnavailable (8) on a lock timeout, a
    lost connection or a run taken over by another `gcos commit` (run it again: the run resumes after its
    last committed batch). The error's ``details`` is the :class:`BatchedResult`."""
    if step.mode != "batched" or step.batch is None:
        raise SpecError(f"{step.id} is not a batched step (mode {step.mode}); commit it with `gcos commit`.")
    plan = project.plan_of(step.id)
    if plan is None:
        raise SpecError(f"{step.id} is in no plan; add it to one under plans/ first.")
    kernel.static_check(step, plan)  # early feedback: the kernel judges what actually changes
    run = _Run(step, trace_id=ledger.new_trace_id())
    try:
        closed = _run(target, settings, run, plan, break_glass, progress, after_batch)
    except KeyboardInterrupt:
        raise _interrupted(run) from None
    if closed.get("outcome") != Outcome.APPLIED:
        raise _failure(run, closed)
    stops = tuple(StopResult.from_payload(s) for s in closed.get("stops") or [])
    outcome = Outcome.RESUMED_APPLIED if closed.get("resumed") else Outcome.APPLIED
    how = f"; resumed after key {run.resumed_from}, this process ran {run.batches}" if closed.get("resumed") else ""
    message = f"{closed.get('message')}{how}"
    return run.result(
        outcome,
        message,
        ledger_seq=closed.get("ledger_seq"),
        stops=stops,
        success=kernel.checks_of(step.success, closed.get("success") or []),
    )


def _run(
    target: Target,
    settings: SessionSettings,
    run: _Run,
    plan: PlanSpec,
    break_glass: bool,
    progress: Callable[[BatchProgress], None] | None,
    after_batch: Callable[[int], None] | None,
) -> dict[str, Any]:
    """Start (or resume) the run, batch it, close it; the close's body."""
    step = run.step
    with connect(target, settings) as conn:
        require_installed(conn)
        kernel.require_adopted(conn, step, "commit")
        spec_hash = registry.register_spec(conn, step, trace_id=run.trace_id)
        plan_hash = registry.register_plan(conn, plan, trace_id=run.trace_id)
        conn.isolation_level = psycopg.IsolationLevel.READ_COMMITTED  # every read after a lock sees what came before
        call = (
            spec_hash,
            plan_hash,
            kernel.derive_run_id(conn, spec_hash, plan_hash, "commit"),
            run.trace_id,
            break_glass,
        )
        started = _call(conn, run, settings, "SELECT gcos.batch_start(%s, %s, %s, %s, %s)", call)
        _started(run, started)
        closing = (run.run_id, run.trace_id, break_glass)
        closed: dict[str, Any] = {"outcome": BatchPhase.MORE}
        while closed.get("outcome") == BatchPhase.MORE:  # keys that arrived after the last batch are batched too
            _batches(conn, run, settings, break_glass, progress, after_batch)
            closed = _call(conn, run, settings, "SELECT gcos.batch_close(%s, %s, %s)", closing)
    return closed


def _interrupted(run: _Run) -> Interrupted:
    """Ctrl-C during a batched commit: each batch is its own committed transaction, so what stays is every
    batch up to the last one the kernel confirmed; the one in flight was rolled back. Say so, and how to go on."""
    step = run.step.id
    if not run.run_id:
        said = f"Interrupted (Ctrl-C) before the batched run of {step} started: nothing was applied"
    elif run.watermark is None:
        said = (
            f"Interrupted (Ctrl-C) before the first batch of {step} committed: run {run.run_id} is open, no row "
            "of it was applied"
        )
    else:
        said = (
            f"Interrupted (Ctrl-C): run {run.run_id} of {step} is committed up to key {run.watermark} "
            f"({run.batches} batches of this process), the batch in flight was rolled back and nothing after "
            "that key was applied"
        )
    message = f"{said}; `gcos commit {step}` resumes the run after its last committed batch."
    return Interrupted(message, details=run.result(Outcome.STOPPED, message))


def _started(run: _Run, body: dict[str, Any]) -> None:
    run.run_id = str(body.get("run_id") or "")
    run.decision = kernel.decision_of(body.get("decision"))
    if body.get("outcome") not in (BatchPhase.STARTED, BatchPhase.RESUMED):
        raise _failure(run, body)
    run.watermark = _int(body.get("watermark"))
    run.resumed_from = run.watermark if body.get("outcome") == BatchPhase.RESUMED else None
    run.total, run.done = int(body.get("total_rows") or 0), int(body.get("done_rows") or 0)


def _batches(
    conn: psycopg.Connection[Any],
    run: _Run,
    settings: SessionSettings,
    break_glass: bool,
    progress: Callable[[BatchProgress], None] | None,
    after_batch: Callable[[int], None] | None,
) -> None:
    """Call gcos.batch_next until the kernel says done, reporting progress after each committed batch."""
    began = time.perf_counter()

    def report() -> None:
        if progress is None:
            return
        elapsed = time.perf_counter() - began
        rate = int(run.rows_seen / elapsed) if elapsed > 0 and run.rows_seen else 0
        left = max(run.total - run.done, 0)
        eta = int(left / rate) if rate else (0 if left == 0 else None)
        progress(BatchProgress(run.done, run.total, run.batches, run.watermark, rate, eta))

    report()
    while True:
        body = _call(
            conn,
            run,
            settings,
            "SELECT gcos.batch_next(%s, %s, %s)",
            (run.run_id, run.trace_id, break_glass),
            batch=True,
        )
        if body.get("outcome") == BatchPhase.DONE:
            return
        if body.get("outcome") != BatchPhase.BATCH:
            raise _failure(run, body)
        run.batches += 1
        run.rows_seen += int(body["rows"])
        run.rows_written += max(int(body.get("written") or 0), 0)
        run.max_batch_ms = max(run.max_batch_ms, int(body.get("batch_ms") or 0))
        run.watermark = _int(body.get("watermark"))
        run.done += int(body["rows"])
        if after_batch is not None:
            after_batch(run.batches)
        report()


def _call(
    conn: psycopg.Connection[Any],
    run: _Run,
    settings: SessionSettings,
    query: str,
    params: tuple[Any, ...],
    *,
    batch: bool = False,
) -> dict[str, Any]:
    """One kernel call in its own transaction, with the session's timeouts (a batch: the 5 s statement limit),
    watched for blockers while it runs (gcos/blockers.py)."""
    watch: blockers.Watch | None = None
    try:
        with conn.transaction():
            set_local_timeouts(conn, settings)
            if batch:
                conn.execute("SELECT set_config('statement_timeout', %s, true)", (BATCH_STATEMENT_LIMIT,))
            with blockers.watching(conn) as watch:
                row = conn.execute(query, params).fetchone()
    except psycopg.Error as exc:
        raise _database_error(conn, run, settings, exc, watch) from exc
    assert row is not None
    return dict(row[0])


def _database_error(
    conn: psycopg.Connection[Any],
    run: _Run,
    settings: SessionSettings,
    exc: psycopg.Error,
    watch: blockers.Watch | None = None,
) -> GcosError:
    """What a failed kernel call means for the run: it stays open at its last committed batch."""
    kept = _kept(run)
    if conn.broken:
        message = (
            f"the connection to the database was lost during {run.step.id} ({reason(exc)}){kept}; run "
            f"`gcos status {run.step.id}`, then commit it again: an unfinished run resumes after its last committed "
            "batch, a committed one is never re-applied"
        )
        return DatabaseUnavailable(sentence(message), details=run.result(Outcome.STOPPED, message))
    busy = kernel.commit_lock_busy(conn, exc, settings, run.step.id, watch)
    if busy is not None and run.run_id:  # the batches committed before stay: say so
        message = f"{busy.message.rstrip('.')}{kept}"
        return DatabaseUnavailable(sentence(message), details=run.result(Outcome.STOPPED, message))
    if busy is not None:
        return busy
    if isinstance(exc, psycopg.errors.ObjectNotInPrerequisiteState):  # another gcos commit resumed the run
        message = f"{reason(exc)}{kept}"
        return DatabaseUnavailable(sentence(message), details=run.result(Outcome.STOPPED, message))
    error = from_database(exc)
    if error is None:
        raise exc  # not a condition gcos interprets: a bug to report (exit 1)
    message = f"{error.message.rstrip('.')}{kept}" if run.run_id else error.message
    return type(error)(sentence(message), details=run.result(Outcome.STOPPED, message))


def _failure(run: _Run, body: dict[str, Any]) -> GcosError:
    """The error for a refused or stopped phase (the kernel recorded it already)."""
    outcome = str(body.get("outcome"))
    message = f"{str(body.get('message') or outcome).rstrip('.')}{_kept(run) if outcome != 'commit_refused' else ''}"
    error = _ERRORS.get(outcome, GcosError)
    decision = body.get("decision")
    if isinstance(decision, dict) and not decision.get("allow", True):
        failed = [g for g in decision.get("gates") or [] if not g.get("allow")]
        first = next((g for g in failed if g.get("decisive")), failed[0] if failed else {})
        if first.get("gate") == "reverify":
            error = StopHeld if first.get("stop_held") else ReverifyMismatch
        else:
            error = GateRefused
    kind = Outcome.REFUSED if outcome == Outcome.COMMIT_REFUSED else Outcome.STOPPED
    return error(sentence(message), details=run.result(kind, message, ledger_seq=body.get("ledger_seq")))


def _kept(run: _Run) -> str:
    if not run.run_id:
        return "; nothing was applied"
    if run.watermark is None:
        return f"; run {run.run_id} is open without a batch yet and resumes when committed again"
    return (
        f"; run {run.run_id} is committed up to key {run.watermark}, those batches stay and it resumes when "
        "committed again"
    )


def _int(value: Any) -> int | None:
    return None if value is None else int(value)
