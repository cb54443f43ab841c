"""Commit and rollback: one transaction, every gate re-checked inside it, the step and its record together.

Commit (issue 5, CONTRACT.md "Gates"): on a fresh idle connection, BEGIN (READ COMMITTED, so that
every read after a lock sees what committed before it) → SET LOCAL timeouts → a transaction-scoped
advisory lock for the plan (two operators committing the same step serialize here) → the approval rows
locked FOR SHARE (a revocation must wait for us, or we see it) → the schema fingerprint, re-verify and
the facts the gates need, all read now → gates (pure functions) → the mutation → stop conditions (step and
plan) and success evidence → the policy decision and commit records → COMMIT with synchronous_commit on.
Any failure rolls everything back; the refusal or stop is then recorded in a separate transaction.
If the connection drops around COMMIT, the outcome is settled from the ledger by the run id, never by
re-applying.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import errors as pgerrors

from gcos import approvals, fingerprint, gates, ledger, rehearsal, sqlcheck
from gcos.checks import CheckResult, evaluate_all
from gcos.errors import DatabaseUnavailable, GateRefused, GcosError, ResidueFound, SpecError, StopHeld
from gcos.install import installed_version
from gcos.spec import Project, StepSpec
from gcos.target import SessionSettings, Target, connect

FORMAT_VERSION = 1


@dataclass(frozen=True)
class ApplyHooks:
    """Test-only levers: act after the gates passed and before COMMIT (e.g. race a revocation)."""

    before_commit: Callable[[psycopg.Connection[Any]], None] | None = None


@dataclass(frozen=True)
class ApplyResult:
    action: str  # commit | rollback
    step: str
    ref: str
    spec_hash: str
    run_id: str
    outcome: str  # applied | refused | stopped | in_doubt_applied | in_doubt_not_applied
    message: str
    decision: gates.PolicyDecisionRecord | None = None
    reverify: tuple[CheckResult, ...] = ()
    stops: tuple[rehearsal.StopResult, ...] = ()
    success: tuple[CheckResult, ...] = ()
    footprint: rehearsal.Footprint | None = None
    fingerprint_before: dict[str, Any] = field(default_factory=dict)
    fingerprint_after: dict[str, Any] = field(default_factory=dict)
    ledger_seq: int | None = None
    duration_us: int = 0

    @property
    def ok(self) -> bool:
        return self.outcome in ("applied", "in_doubt_applied")


class _Refused(Exception):
    def __init__(self, kind: str, message: str, error: type[GcosError], payload: dict[str, Any]) -> None:
        super().__init__(message)
        self.kind, self.message, self.error, self.payload = kind, message, error, payload


def _plan_lock_key(plan_id: str) -> str:
    return f"gcos:plan:{plan_id}"


def _set_local_timeouts(conn: psycopg.Connection[Any], settings: SessionSettings) -> None:
    for name, value in (
        ("lock_timeout", settings.lock_timeout),
        ("statement_timeout", settings.statement_timeout),
        ("idle_in_transaction_session_timeout", settings.idle_in_transaction_session_timeout),
        ("synchronous_commit", "on"),
    ):
        conn.execute("SELECT set_config(%s, %s, true)", (name, value))


def apply_step(
    target: Target,
    project: Project,
    step: StepSpec,
    *,
    action: str,
    settings: SessionSettings,
    hooks: ApplyHooks | None = None,
) -> ApplyResult:
    """Commit a step (action "commit") or apply its rollback evidence (action "rollback"), gated."""
    if action not in ("commit", "rollback"):
        raise SpecError(f"unknown action {action!r}.")
    hooks = hooks or ApplyHooks()
    plan = project.plan_of(step.id)
    rehearsal.static_check(step, plan)
    if step.mode == "batched" and action == "commit":
        raise SpecError(f"{step.id} is a batched step: it is applied in resumable batches, not by gcos commit yet.")
    statements = sqlcheck.split(step.mutation.sql) if (step.mutation and action == "commit") else []
    if action == "rollback":
        statements = sqlcheck.split(step.rollback_sql)
    run_id = uuid.uuid4().hex
    trace_id = ledger.new_trace_id()
    started = time.perf_counter_ns()
    base = {"action": action, "step": step.id, "ref": step.ref, "spec_hash": step.hash, "run_id": run_id}

    conn = connect(target, settings)
    try:
        if installed_version(conn) is None:
            raise SpecError("gcos is not installed in this database; run `gcos install` first.")
        try:
            result = _apply_in_transaction(
                conn,
                project,
                step,
                action=action,
                statements=statements,
                settings=settings,
                hooks=hooks,
                base=base,
                trace_id=trace_id,
                started=started,
            )
        except _Refused as refused:
            record = ledger.append(
                conn, refused.kind, refused.payload, step_id=step.id, spec_hash=step.hash, trace_id=trace_id
            )
            decision = refused.payload.get("policy_decision")
            raise refused.error(
                refused.message,
                details={
                    **base,
                    "outcome": refused.kind,
                    "ledger_seq": record.seq,
                    "message": refused.message,
                    "decision": decision,
                },
            ) from None
        except pgerrors.LockNotAvailable as exc:
            who = rehearsal.blockers(conn, statements)
            message = (
                f"{action} of {step.id} could not get a lock within lock_timeout {settings.lock_timeout}: "
                f"{who}; nothing was applied, retry when they are done."
            )
            ledger.append(
                conn,
                "stop",
                {"run_id": run_id, "action": action, "reason": message},
                step_id=step.id,
                spec_hash=step.hash,
                trace_id=trace_id,
            )
            raise DatabaseUnavailable(message) from exc
        except psycopg.OperationalError as exc:
            return _settle_in_doubt(target, settings, base, exc)
        except DatabaseUnavailable as exc:
            if not conn.broken:
                raise
            return _settle_in_doubt(target, settings, base, exc)
        return result
    finally:
        conn.close()


def _apply_in_transaction(
    conn: psycopg.Connection[Any],
    project: Project,
    step: StepSpec,
    *,
    action: str,
    statements: list[sqlcheck.Statement],
    settings: SessionSettings,
    hooks: ApplyHooks,
    base: dict[str, Any],
    trace_id: str,
    started: int,
) -> ApplyResult:
    plan = project.plan_of(step.id)
    run_id = base["run_id"]
    conn.isolation_level = psycopg.IsolationLevel.READ_COMMITTED
    refusal: _Refused | None = None
    try:
        with conn.transaction():
            _set_local_timeouts(conn, settings)
            conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (_plan_lock_key(plan.id if plan else step.id),)
            )
            approvals.lock_approvals(conn, step.id, step.decisions)
            before = fingerprint.take(conn, watch=step.watch)
            reverify = tuple(evaluate_all(conn, step.reverify, section="re-verify check"))
            failed = [c for c in reverify if not c.ok]
            reverify_reason = (
                f"re-verify check {failed[0].name!r} expected {failed[0].expected}, got {failed[0].shown_actual}"
                if failed
                else "all re-verify checks hold"
            )
            no_footprint = rehearsal.Footprint((), (), {})
            pre_stops = tuple(
                rehearsal.evaluate_stop(conn, s, no_footprint)
                for s in rehearsal.plan_stops(plan)
                if s.kind != "max_new_tables"
            )
            facts = approvals.gather_facts(
                conn,
                project,
                step,
                action=action,
                reverify_ok=not failed,
                reverify_reason=reverify_reason,
                current_schema_hash=before.schema_hash,
                global_stops_held=tuple(s.name for s in pre_stops if s.held),
            )
            decision = gates.evaluate(facts, trace_id=trace_id)
            if not decision.allow:
                refusal = _Refused(
                    f"{action}_refused",
                    decision.refusal_sentence(),
                    GateRefused,
                    {"run_id": run_id, "action": action, "policy_decision": decision.to_payload()},
                )
                raise _RollbackTransaction
            pre_commit = _last_commit(conn, step) if action == "rollback" else None
            identity = rehearsal.session_identity(conn)
            footprint: rehearsal.Footprint | None = None
            stops: tuple[rehearsal.StopResult, ...] = ()
            success: tuple[CheckResult, ...] = ()
            try:
                rehearsal.run_statements(conn, step, action, statements, identity)
                after = fingerprint.take(conn, watch=step.watch)
                if action == "commit":
                    footprint = rehearsal.footprint_of(conn, before, after)
                    stops = tuple(
                        rehearsal.evaluate_stop(conn, s, footprint) for s in (*step.stop, *rehearsal.plan_stops(plan))
                    )
                    success = tuple(evaluate_all(conn, step.success, section="success check"))
                    _check_stops_and_success(step, stops, success)
                else:
                    _prove_rollback(step, pre_commit, after)
            except rehearsal.Outcome as stop:
                refusal = _Refused(
                    "stop",
                    stop.message,
                    stop.error,
                    {"run_id": run_id, "action": action, "outcome": stop.outcome, "reason": stop.message},
                )
                raise _RollbackTransaction from None
            decision_entry = ledger.append(
                conn, "policy_decision", decision.to_payload(), step_id=step.id, spec_hash=step.hash, trace_id=trace_id
            )
            record: dict[str, Any] = {
                "format_version": FORMAT_VERSION,
                "run_id": run_id,
                "outcome": "applied",
                "plan_id": plan.id if plan else None,
                "plan_hash": plan.hash if plan else None,
                "fingerprint_before": rehearsal.fingerprint_summary(before),
                "fingerprint_after": rehearsal.fingerprint_summary(after),
                "policy_decision_seq": decision_entry.seq,
            }
            if footprint is not None:
                record["footprint"] = {"new_tables": list(footprint.new_tables), "row_deltas": footprint.row_deltas}
            if pre_commit is not None:
                record["of_commit_seq"] = pre_commit.seq
            entry = ledger.append(
                conn, action, rehearsal.ledger_safe(record), step_id=step.id, spec_hash=step.hash, trace_id=trace_id
            )
            if hooks.before_commit:
                hooks.before_commit(conn)
    except _RollbackTransaction:
        assert refusal is not None
        raise refusal from None
    verb = "committed" if action == "commit" else "rolled back"
    return ApplyResult(
        **base,
        outcome="applied",
        message=f"{step.id} {verb}: ledger seq {entry.seq}, run {run_id}.",
        decision=decision,
        reverify=reverify,
        stops=stops,
        success=success,
        footprint=footprint,
        fingerprint_before=rehearsal.fingerprint_summary(before),
        fingerprint_after=rehearsal.fingerprint_summary(after),
        ledger_seq=entry.seq,
        duration_us=rehearsal.micros_since(started),
    )


class _RollbackTransaction(Exception):
    """Raised inside the transaction block to roll it back; the recorded reason travels separately."""


def _check_stops_and_success(
    step: StepSpec, stops: tuple[rehearsal.StopResult, ...], success: tuple[CheckResult, ...]
) -> None:
    held = [s for s in stops if s.held]
    if held:
        raise rehearsal.Outcome(
            "stopped",
            f"stop condition {held[0].name!r} of {step.id} held ({held[0].detail}); nothing was committed.",
            StopHeld,
        )
    bad = [c for c in success if not c.ok]
    if bad:
        raise rehearsal.Outcome(
            "success_failed",
            f"success check {bad[0].name!r} of {step.id} expected {bad[0].expected}, got "
            f"{bad[0].shown_actual}; nothing was committed.",
            StopHeld,
        )


def _last_commit(conn: psycopg.Connection[Any], step: StepSpec) -> ledger.LedgerEntry | None:
    for entry in reversed(ledger.read_all(conn)):
        if entry.kind == "commit" and entry.record.get("step_id") == step.id:
            return entry
    return None


def _prove_rollback(step: StepSpec, pre_commit: ledger.LedgerEntry | None, after: fingerprint.Fingerprint) -> None:
    """The rollback must return the world to the fingerprint its commit recorded before applying."""
    expected = (pre_commit.payload.get("fingerprint_before") or {}) if pre_commit else {}
    actual = rehearsal.fingerprint_summary(after)
    if not expected:
        raise rehearsal.Outcome("rollback_unproven", f"{step.id} has no commit on record to roll back.", GateRefused)
    if expected.get("schema_hash") != actual["schema_hash"] or expected.get("tables") != actual["tables"]:
        tables = sorted(
            t
            for t in set(expected.get("tables", {})) | set(actual["tables"])
            if expected.get("tables", {}).get(t) != actual["tables"].get(t)
        )
        what = "schema" if expected.get("schema_hash") != actual["schema_hash"] else ""
        detail = ", ".join(filter(None, [what, *(f"table {t}" for t in tables)]))
        raise rehearsal.Outcome(
            "rollback_unproven",
            f"the rollback of {step.id} does not return the world to its pre-commit fingerprint "
            f"(differs: {detail}); nothing was rolled back.",
            ResidueFound,
        )


def _settle_in_doubt(target: Target, settings: SessionSettings, base: dict[str, Any], exc: Exception) -> ApplyResult:
    """The connection dropped around COMMIT: ask the ledger whether this run's record exists."""
    try:
        with connect(target, settings) as conn:
            found = conn.execute(
                "SELECT seq FROM gcos.ledger WHERE record->>'kind' = %s AND record->'payload'->>'run_id' = %s",
                (base["action"], base["run_id"]),
            ).fetchone()
    except GcosError as again:
        raise DatabaseUnavailable(
            f"the connection dropped during {base['action']} of {base['step']} and the database is still "
            f"unreachable, so the outcome of run {base['run_id']} is unknown; run `gcos status {base['step']}` "
            "when it is back (never re-apply blindly)."
        ) from again
    if found:
        return ApplyResult(
            **base,
            outcome="in_doubt_applied",
            ledger_seq=int(found[0]),
            message=f"the connection dropped at COMMIT, but the ledger holds run {base['run_id']} "
            f"(seq {found[0]}): {base['step']} was applied.",
        )
    raise DatabaseUnavailable(
        f"the connection dropped during {base['action']} of {base['step']} ({str(exc).strip().splitlines()[0]}); "
        f"the ledger has no record of run {base['run_id']}, so nothing was applied; retry when the database is back."
    ) from exc
