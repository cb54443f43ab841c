"""The rehearsal: run a step inside BEGIN..ROLLBACK and prove that the database at exit equals the entry.

Order (issue 4, seed 002 §70.0): static checks (sqlcheck) → re-verify (read-only; mismatch stops before
any mutation) → entry fingerprint → BEGIN REPEATABLE READ → SET LOCAL timeouts → the mutation, one
statement at a time, checking after each that the transaction is open and the role unchanged → inside
fingerprint and footprint → stop conditions (step and plan) and success evidence → the rollback evidence,
whose fingerprint must equal the entry one (the rollback is proven, not trusted) → ROLLBACK → exit
fingerprint, which must equal the entry one. Sequences advanced by nextval are non-transactional: they are
reported by name as residue, never as a failure, and never hide any other difference. Session state is
residue too (issue 9 item 9): a setting changed by anything but a top-level SET LOCAL (checked inside the
transaction, since ROLLBACK undoes SET and SET LOCAL alike) and a session advisory lock still held after
ROLLBACK fail the rehearsal with exit 5, and the connection is reset.

Every rehearsal, whatever its outcome, becomes a ledger record and evidence files under rehearsals/.
This module orchestrates only: running SQL is gcos.execute's, the record and its files gcos.rehearsal_evidence's.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from gcos import execute, fingerprint, ledger, sqlcheck
from gcos.checks import CheckResult, evaluate_all, mismatch_sentence
from gcos.errors import (
    Condition,
    GcosError,
    ResidueFound,
    ReverifyMismatch,
    SpecError,
    StopHeld,
    condition_of,
    from_database,
)
from gcos.install import require_installed
from gcos.rehearsal_evidence import RehearsalResult as RehearsalResult
from gcos.rehearsal_evidence import payload
from gcos.rehearsal_evidence import write_evidence as _write_evidence
from gcos.spec import PlanSpec, Project, StepSpec
from gcos.target import SessionSettings


@dataclass(frozen=True)
class RehearsalHooks:
    """Test-only levers: commit instead of rolling back, or act while the transaction is open."""

    force_commit: bool = False
    inside: Callable[[psycopg.Connection[Any]], None] | None = None


@dataclass
class _Run:
    """One rehearsal in progress: what it has learned so far, and its outcome once decided."""

    step: StepSpec
    plan: PlanSpec | None
    settings: SessionSettings
    hooks: RehearsalHooks
    base: dict[str, Any]
    started: int
    entry: fingerprint.Fingerprint
    mutation: list[sqlcheck.Statement]
    rollback: list[sqlcheck.Statement]
    stops: tuple[execute.StopResult, ...] = ()
    success: tuple[CheckResult, ...] = ()
    footprint: execute.Footprint | None = None
    inside: fingerprint.Fingerprint | None = None
    after_rollback: fingerprint.Fingerprint | None = None
    outcome: str = "passed"
    message: str = ""
    error: type[GcosError] | None = None
    local: frozenset[str] = field(default_factory=frozenset)

    def end(self, stop: execute.Outcome) -> None:
        self.outcome, self.message, self.error = stop.outcome, stop.message, stop.error


def rehearse(
    conn: psycopg.Connection[Any],
    project: Project,
    step: StepSpec,
    *,
    settings: SessionSettings,
    evidence_dir: Path | None = None,
    hooks: RehearsalHooks | None = None,
) -> RehearsalResult:
    """Rehearse `step` on an idle autocommit connection; record the outcome; raise its error if it failed."""
    hooks = hooks or RehearsalHooks()
    plan = project.plan_of(step.id)
    execute.static_check(step, plan)
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise SpecError(
            "a rehearsal must start on an idle connection (a transaction() inside another would "
            "silently become a savepoint)."
        )
    require_installed(conn)  # rehearsals are ledger records
    started = time.perf_counter_ns()
    base: dict[str, Any] = {
        "step": step.id,
        "ref": step.ref,
        "spec_hash": step.hash,
        "plan_id": plan.id if plan else None,
        "plan_hash": plan.hash if plan else None,
        "run_id": uuid.uuid4().hex,
    }
    reverify = _reverify(conn, step, base, started, evidence_dir)
    mutation = sqlcheck.split(step.mutation.sql) if step.mutation else []
    rollback = sqlcheck.split(step.rollback_sql)
    entry = fingerprint.take(conn, watch=step.watch)
    run = _Run(step, plan, settings, hooks, base, started, entry, mutation, rollback)
    before, run.local = execute.session_state(conn), execute.set_locally([*mutation, *rollback])
    _transaction(conn, run)
    left = execute.clear_session_residue(conn, before)
    result = _judge(run, fingerprint.take(conn, watch=step.watch), left, reverify)
    result = _record(conn, result, evidence_dir)
    if run.error is not None:
        raise run.error(result.message, details=result)
    return result


def _reverify(
    conn: psycopg.Connection[Any], step: StepSpec, base: dict[str, Any], started: int, evidence_dir: Path | None
) -> tuple[CheckResult, ...]:
    """Re-verify first, in a read-only snapshot: a mismatch is recorded and stops before any mutation."""
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        reverify = tuple(evaluate_all(conn, step.reverify, section="re-verify check"))
    if not all(r.ok for r in reverify):
        result = RehearsalResult(
            **base,
            outcome="reverify_mismatch",
            message=mismatch_sentence(step, reverify),
            reverify=reverify,
            duration_us=execute.micros_since(started),
        )
        result = _record(conn, result, evidence_dir)
        raise ReverifyMismatch(result.message, details=result)
    return reverify


def _transaction(conn: psycopg.Connection[Any], run: _Run) -> None:
    """BEGIN REPEATABLE READ .. ROLLBACK (COMMIT only with hooks.force_commit) around the step; the
    outcome lands in `run`. A lock not granted in time names who holds the step's tables."""
    previous_isolation = conn.isolation_level
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    try:
        with conn.transaction(force_rollback=not run.hooks.force_commit):
            execute.set_local_timeouts(conn, run.settings)
            identity, baseline = execute.session_identity(conn), execute.session_state(conn).settings
            try:
                _mutate(conn, run, identity, baseline)
                if not run.hooks.force_commit:
                    _prove_rollback(conn, run, identity, baseline)
            except execute.Outcome as stop:
                run.end(stop)
                if run.hooks.force_commit:
                    raise
    except psycopg.Error as exc:
        if condition_of(exc) is not Condition.LOCK:
            raise
        conn.isolation_level = previous_isolation
        holders = execute.blockers(conn, [*run.mutation, *run.rollback])
        message = (
            f"{run.step.id} could not get a lock within lock_timeout {run.settings.lock_timeout}: {holders}; "
            "nothing was changed, retry when they are done."
        )
        failure = from_database(exc, say={Condition.LOCK: message})
        assert failure is not None
        run.outcome, run.message, run.error = "lock_timeout", failure.message, type(failure)
    except execute.Outcome as stop:  # only with force_commit: the transaction was rolled back by the exception
        run.end(stop)
    finally:
        conn.isolation_level = previous_isolation


def _mutate(conn: psycopg.Connection[Any], run: _Run, identity: tuple[Any, ...], baseline: dict[str, str]) -> None:
    """The mutation (and first batches), then what it did: fingerprint, footprint, stops, success."""
    step = run.step
    execute.run_statements(conn, step, "mutation", run.mutation, identity)
    if step.batch:
        execute.run_batches(conn, step, run.base["run_id"], identity)
    if run.hooks.inside:
        run.hooks.inside(conn)
    execute.check_settings(conn, step, "mutation", baseline, run.local)
    run.inside = fingerprint.take(conn, watch=step.watch)
    run.footprint = execute.footprint_of(conn, run.entry, run.inside)
    stops = (*step.stop, *execute.plan_stops(run.plan))
    run.stops = tuple(execute.evaluate_stop(conn, s, run.footprint) for s in stops)
    run.success = tuple(evaluate_all(conn, step.success, section="success check"))
    held = [s for s in run.stops if s.held]
    failed = [c for c in run.success if not c.ok]
    if held:
        raise execute.Outcome(
            "stopped",
            f"stop condition {held[0].name!r} of {step.id} held ({held[0].detail}); the step was rolled back.",
            StopHeld,
        )
    if failed:
        raise execute.Outcome(
            "success_failed",
            f"success check {failed[0].name!r} of {step.id} expected "
            f"{failed[0].expected}, got {failed[0].shown_actual}; the step was rolled back.",
            StopHeld,
        )


def _prove_rollback(
    conn: psycopg.Connection[Any], run: _Run, identity: tuple[Any, ...], baseline: dict[str, str]
) -> None:
    """Run the rollback evidence inside the same transaction: it must return the world to the entry."""
    step = run.step
    execute.run_statements(conn, step, "rollback", run.rollback, identity)
    execute.check_settings(conn, step, "rollback", baseline, run.local)
    run.after_rollback = fingerprint.take(conn, watch=step.watch)
    unproven = execute.real_differences(fingerprint.diff(run.entry, run.after_rollback))
    if unproven:
        raise execute.Outcome(
            "rollback_unproven",
            f"the rollback evidence of {step.id} does not return "
            f"the world to its entry fingerprint: {fingerprint.describe(unproven)}; fix "
            "its rollback SQL.",
            ResidueFound,
        )


def _judge(
    run: _Run, exit_fp: fingerprint.Fingerprint, left: tuple[str, ...], reverify: tuple[CheckResult, ...]
) -> RehearsalResult:
    """Entry against exit: a real difference or session residue overrides the outcome (exit 5)."""
    step = run.step
    all_diffs = fingerprint.diff(run.entry, exit_fp)
    residue = tuple(sorted({d.identity for d in all_diffs if d.category == execute.SEQUENCE_RESIDUE}))
    differences = execute.real_differences(all_diffs)
    if differences and run.outcome in ("passed", "stopped", "success_failed", "mutation_failed"):
        kept = f" (after: {run.message})" if run.message else ""
        run.outcome, run.error = "residue", ResidueFound
        run.message = (
            f"entry != exit after rehearsing {step.id}: {fingerprint.describe(differences)}{kept}; "
            "the database was changed outside the rolled-back transaction — investigate before going on."
        )
    run.outcome, run.message, run.error = execute.with_session_residue(step, left, run.outcome, run.message, run.error)
    if run.outcome == "passed":
        extra = f" (sequences advanced, non-transactional: {', '.join(residue)})" if residue else ""
        run.message = f"rehearsal of {step.id} passed: entry == exit{extra}."
    return RehearsalResult(
        **run.base,
        outcome=run.outcome,
        message=run.message,
        reverify=reverify,
        stops=run.stops,
        success=run.success,
        footprint=run.footprint,
        entry=execute.fingerprint_summary(run.entry),
        inside=execute.fingerprint_summary(run.inside),
        after_rollback=execute.fingerprint_summary(run.after_rollback),
        exit=execute.fingerprint_summary(exit_fp),
        differences=(*(f"{d.category} {d.identity} {d.change}" for d in differences), *left),
        residue=residue,
        duration_us=execute.micros_since(run.started),
    )


def _record(conn: psycopg.Connection[Any], result: RehearsalResult, evidence_dir: Path | None) -> RehearsalResult:
    body = payload(result)
    entry = ledger.append(conn, "rehearsal", body, step_id=result.step, spec_hash=result.spec_hash)
    files: tuple[str, ...] = ()
    if evidence_dir is not None:
        files = _write_evidence(evidence_dir, result, entry, body)
    return RehearsalResult(**{**result.__dict__, "ledger_seq": entry.seq, "evidence": files})
