"""Commit and rollback: one transaction, every gate re-checked inside it, the step and its record together.

Commit (issue 5, CONTRACT.md "Gates"): on a fresh idle connection, the spec and plan registered (when the
role may: the database judges registered documents only), then BEGIN (READ COMMITTED, so that every read
after a lock sees what committed before it) → SET LOCAL timeouts → the database's one transaction-scoped
commit lock (every commit, rollback and batched start or close of any plan serializes here, so gate 4's
fingerprint, read after it, sees every commit that went before) → the approval rows locked FOR SHARE (a
revocation must wait for us, or we see it) → the schema fingerprint, re-verify and the plan's global stops,
measured now → the seven gates, decided by the database on that world (``gcos.evaluate_gates``, gates.py)
→ the mutation → stop conditions (step and plan) and success evidence → the policy decision record → the
gates once more by the database clock (an approval or decision that expired meanwhile refuses it) → the
commit record → COMMIT with synchronous_commit on.
Any failure rolls everything back; the refusal or stop is then recorded in a separate transaction
(a refusal exits 3, or 6 when it is about re-verify). If the connection drops around COMMIT, the outcome
is settled from the ledger by the run id once the commit lock shows the dropped transaction has ended,
never by re-applying.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import errors as pgerrors

from gcos import approvals, execute, fingerprint, gates, history, ledger, sqlcheck
from gcos.checks import CheckResult, evaluate_all
from gcos.errors import (
    DatabaseUnavailable,
    GateRefused,
    GcosError,
    ResidueFound,
    ReverifyMismatch,
    SpecError,
    StopHeld,
)
from gcos.install import require_installed
from gcos.spec import PlanSpec, Project, StepSpec
from gcos.target import SessionSettings, Target, connect

FORMAT_VERSION = 1


@dataclass(frozen=True)
class ApplyHooks:
    """Test-only levers: act after the gates passed and the policy decision was recorded, before the last check
    of the gates, the commit record and COMMIT (e.g. race a revocation, outlive an approval)."""

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
    stops: tuple[execute.StopResult, ...] = ()
    success: tuple[CheckResult, ...] = ()
    footprint: execute.Footprint | None = None
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


COMMIT_LOCK_KEY = "gcos:commit"
"""The advisory lock (hashtextextended of this text) every commit, rollback and batched start or close
holds for its whole transaction: one per database, not per plan, so commits of steps in different plans
never both read the fingerprint before the other applied (issue 9, item 3)."""
_LOCK = "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended(%s, 0))"  # qualified: no shadowing


def take_commit_lock(conn: psycopg.Connection[Any]) -> None:
    """Wait (up to lock_timeout) for the database's commit lock, held until this transaction ends."""
    conn.execute(_LOCK, (COMMIT_LOCK_KEY,))


def set_local_timeouts(conn: psycopg.Connection[Any], settings: SessionSettings) -> None:
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
    execute.static_check(step, plan)
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
        require_installed(conn)
        gates.register(conn, step, plan)  # the database judges registered documents only
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
        except _CommitBusy as busy:
            raise commit_busy(busy.holders, settings, step.id) from None
        except pgerrors.LockNotAvailable as exc:
            who = execute.blockers(conn, statements)
            message = (
                f"{action} of {step.id} could not get a lock within lock_timeout {settings.lock_timeout}: "
                f"{who}; nothing was applied, retry when they are done."
            )
            _record_stop(conn, step, action, run_id, trace_id, message)
            raise DatabaseUnavailable(message) from exc
        except psycopg.OperationalError as exc:
            if not conn.broken:
                # The server answered with an error (e.g. statement_timeout): the transaction rolled back.
                first = (exc.diag.message_primary or str(exc)).strip().splitlines()[0]
                raise DatabaseUnavailable(
                    f"{action} of {step.id} failed in the database ({first}); the transaction was rolled back, "
                    "nothing was applied; retry."
                ) from exc
            return settle_in_doubt(target, settings, base, exc)
        except DatabaseUnavailable as exc:
            if conn.broken:
                return settle_in_doubt(target, settings, base, exc)
            _record_stop(conn, step, action, run_id, trace_id, exc.message)
            raise
        except SpecError as exc:
            # A check that cannot run inside the transaction (it errored, or is not one value): rolled back,
            # recorded, and reported as the step's evidence failing (exit 4), never as bad input after the fact.
            _record_stop(conn, step, action, run_id, trace_id, exc.message)
            raise StopHeld(f"{exc.message.rstrip('.')}; the {action} of {step.id} was rolled back.") from exc
        return result
    finally:
        conn.close()


@dataclass(frozen=True)
class WorldNow:
    """What the gates need to know about the live world, read in the caller's transaction."""

    fingerprint: fingerprint.Fingerprint
    reverify: tuple[CheckResult, ...]
    global_stops: tuple[execute.StopResult, ...]  # the plan's, but the new-table footprint

    @property
    def reverify_ok(self) -> bool:
        return all(c.ok for c in self.reverify)

    @property
    def global_stops_held(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.global_stops if s.held)

    def measured(self, step: StepSpec, *, as_actor: bool = True) -> dict[str, Any]:
        """This world as ``gcos.evaluate_gates`` takes it: re-verify in ``gcos.evaluate_check``'s result shape
        (the spec's own `expect`), the global stops in ``gcos.stop_holds``'s."""
        expects = [c.get("expect") for c in step.document.get("reverify") or []]
        reverify = [
            {"name": c.name, "expected": expect, "actual": c.actual, "ok": c.ok, "error": c.error}
            for c, expect in zip(self.reverify, expects, strict=True)
        ]
        stops = [{"name": s.name, "holds": s.held, "detail": s.detail} for s in self.global_stops]
        return gates.world(
            schema_hash=self.fingerprint.schema_hash, reverify=reverify, global_stops=stops, as_actor=as_actor
        )


def read_world_now(
    conn: psycopg.Connection[Any], step: StepSpec, plan: PlanSpec | None, *, watch: bool = True
) -> WorldNow:
    """The fingerprint (with the step's watched tables unless `watch` is False), re-verify, and the plan's
    global stop conditions that can be judged before any mutation (all but the new-table footprint)."""
    taken = fingerprint.take(conn, watch=step.watch if watch else ())
    reverify = tuple(evaluate_all(conn, step.reverify, section="re-verify check"))
    no_footprint = execute.Footprint((), (), {})
    stops = tuple(
        execute.evaluate_stop(conn, s, no_footprint) for s in execute.plan_stops(plan) if s.kind != "max_new_tables"
    )
    return WorldNow(taken, reverify, stops)


def _record_stop(
    conn: psycopg.Connection[Any], step: StepSpec, action: str, run_id: str, trace_id: str, reason: str
) -> None:
    """Record why an attempt stopped, in its own transaction after the failed one rolled back."""
    ledger.append(
        conn,
        "stop",
        {"run_id": run_id, "action": action, "reason": reason},
        step_id=step.id,
        spec_hash=step.hash,
        trace_id=trace_id,
    )


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
            set_local_timeouts(conn, settings)
            try:
                with conn.transaction():  # a savepoint: a lock timeout here is told apart from one on a table
                    take_commit_lock(conn)
            except pgerrors.LockNotAvailable:
                raise _CommitBusy(commit_lock_holders(conn) or "its session has ended since") from None
            approvals.lock_approvals(conn, step.id, step.decisions)
            now = read_world_now(conn, step, plan)
            before, reverify = now.fingerprint, now.reverify

            def judge() -> gates.PolicyDecisionRecord:
                measured = now.measured(step)
                return gates.evaluate(conn, step, plan, action=action, measured=measured, trace_id=trace_id)

            decision = judge()
            if not decision.allow:
                refusal = _refusal(action, run_id, decision)
                raise _RollbackTransaction
            pre_commit = _commit_in_force(conn, step) if action == "rollback" else None
            identity = execute.session_identity(conn)
            footprint: execute.Footprint | None = None
            stops: tuple[execute.StopResult, ...] = ()
            success: tuple[CheckResult, ...] = ()
            try:
                execute.run_statements(conn, step, action, statements, identity)
                after = fingerprint.take(conn, watch=step.watch)
                if action == "commit":
                    footprint = execute.footprint_of(conn, before, after)
                    stops = tuple(
                        execute.evaluate_stop(conn, s, footprint) for s in (*step.stop, *execute.plan_stops(plan))
                    )
                    success = tuple(evaluate_all(conn, step.success, section="success check"))
                    _check_stops_and_success(step, stops, success)
                else:
                    _prove_rollback(step, pre_commit, after)
            except execute.Outcome as stop:
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
            if hooks.before_commit:
                hooks.before_commit(conn)
            # The last check before the commit record and COMMIT: the same gates on the same measured world, by
            # the database clock now (an approval or decision that expired while the step was applied refuses
            # it). It comes before the commit record, which the gates would read as this step's commit.
            final = judge()
            if not final.allow:
                refusal = _refusal(action, run_id, final, late=True)
                raise _RollbackTransaction
            record: dict[str, Any] = {
                "format_version": FORMAT_VERSION,
                "run_id": run_id,
                "outcome": "applied",
                "plan_id": plan.id if plan else None,
                "plan_hash": plan.hash if plan else None,
                "fingerprint_before": execute.fingerprint_summary(before),
                "fingerprint_after": execute.fingerprint_summary(after),
                # the whole fingerprint, so that `gcos drift` can name what changed since (not just that it did)
                "fingerprint_after_full": after.to_json(),
                "policy_decision_seq": decision_entry.seq,
            }
            if footprint is not None:
                record["footprint"] = {"new_tables": list(footprint.new_tables), "row_deltas": footprint.row_deltas}
            if pre_commit is not None:
                record["of_commit_seq"] = pre_commit.seq
            entry = ledger.append(
                conn, action, execute.ledger_safe(record), step_id=step.id, spec_hash=step.hash, trace_id=trace_id
            )
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
        fingerprint_before=execute.fingerprint_summary(before),
        fingerprint_after=execute.fingerprint_summary(after),
        ledger_seq=entry.seq,
        duration_us=execute.micros_since(started),
    )


class _RollbackTransaction(Exception):
    """Raised inside the transaction block to roll it back; the recorded reason travels separately."""


class _CommitBusy(Exception):
    def __init__(self, holders: str) -> None:
        super().__init__(holders)
        self.holders = holders


def commit_busy(holders: str, settings: SessionSettings, step_id: str) -> DatabaseUnavailable:
    """The error of a commit that waited lock_timeout for the commit lock (client's or kernel's)."""
    return DatabaseUnavailable(
        f"another commit or rollback is in progress in this database ({holders}), and it did not "
        f"end within lock_timeout {settings.lock_timeout}; nothing was applied, run `gcos status "
        f"{step_id}` when it is done."
    )


def commit_lock_holders(conn: psycopg.Connection[Any]) -> str:
    """Who holds the commit lock ("" when nobody else does); asked from a healthy transaction or an idle
    connection."""
    rows = conn.execute(
        "SELECT a.pid, a.usename::text, a.state FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a "
        "ON a.pid = l.pid, (SELECT pg_catalog.hashtextextended(%s, 0) AS k) AS key "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.pid <> pg_catalog.pg_backend_pid() AND l.objsubid = 1 "
        "AND l.classid::bigint = ((key.k >> 32) & 4294967295) AND l.objid::bigint = (key.k & 4294967295) ORDER BY 1",
        (COMMIT_LOCK_KEY,),
    ).fetchall()
    return "; ".join(f"pid {pid} of role {user} ({state})" for pid, user, state in rows)


def _refusal(action: str, run_id: str, decision: gates.PolicyDecisionRecord, *, late: bool = False) -> _Refused:
    """The refusal of a gate: exit 6 when the sentence is about re-verify (CONTRACT.md exit codes), else 3."""
    first = decision.first_failed
    error: type[GcosError] = ReverifyMismatch if first is not None and first.gate == "reverify" else GateRefused
    message = decision.refusal_sentence()
    if late:
        message = f"{message} (found at the last check before COMMIT; nothing was applied)"
    payload: dict[str, Any] = {"run_id": run_id, "action": action, "policy_decision": decision.to_payload()}
    if late:
        payload["at"] = "before_commit"
    return _Refused(f"{action}_refused", message, error, payload)


def _check_stops_and_success(
    step: StepSpec, stops: tuple[execute.StopResult, ...], success: tuple[CheckResult, ...]
) -> None:
    held = [s for s in stops if s.held]
    if held:
        raise execute.Outcome(
            "stopped",
            f"stop condition {held[0].name!r} of {step.id} held ({held[0].detail}); nothing was committed.",
            StopHeld,
        )
    bad = [c for c in success if not c.ok]
    if bad:
        raise execute.Outcome(
            "success_failed",
            f"success check {bad[0].name!r} of {step.id} expected {bad[0].expected}, got "
            f"{bad[0].shown_actual}; nothing was committed.",
            StopHeld,
        )


def _commit_in_force(conn: psycopg.Connection[Any], step: StepSpec) -> ledger.LedgerEntry | None:
    """The commit a rollback undoes: the step's commit in force as history.py (and gcos._commit_in_force) read it."""
    force = history.read_now(conn).step(step.id).commit_in_force
    return force.entry if force is not None else None


def _prove_rollback(step: StepSpec, pre_commit: ledger.LedgerEntry | None, after: fingerprint.Fingerprint) -> None:
    """The rollback must return the world to the fingerprint its commit recorded before applying."""
    expected = (pre_commit.payload.get("fingerprint_before") or {}) if pre_commit else {}
    actual = execute.fingerprint_summary(after)
    if not expected:
        raise execute.Outcome("rollback_unproven", f"{step.id} has no commit on record to roll back.", GateRefused)
    if expected.get("schema_hash") != actual["schema_hash"] or expected.get("tables") != actual["tables"]:
        tables = sorted(
            t
            for t in set(expected.get("tables", {})) | set(actual["tables"])
            if expected.get("tables", {}).get(t) != actual["tables"].get(t)
        )
        what = "schema" if expected.get("schema_hash") != actual["schema_hash"] else ""
        detail = ", ".join(filter(None, [what, *(f"table {t}" for t in tables)]))
        raise execute.Outcome(
            "rollback_unproven",
            f"the rollback of {step.id} does not return the world to its pre-commit fingerprint "
            f"(differs: {detail}); nothing was rolled back.",
            ResidueFound,
        )


def settle_in_doubt(target: Target, settings: SessionSettings, base: dict[str, Any], exc: Exception) -> ApplyResult:
    """The connection dropped around COMMIT: ask the ledger whether this run's record exists.

    The ledger is read only once the commit lock is ours: the dropped transaction held it until it
    ended, so a COMMIT that reached the server but was still being processed cannot be misread as "not
    applied". If the lock is not granted within lock_timeout, the outcome is reported as unknown."""
    step, action, run_id = base["step"], base["action"], base["run_id"]
    try:
        with connect(target, settings) as conn, conn.transaction():
            take_commit_lock(conn)
            found = conn.execute(
                "SELECT seq FROM gcos.ledger WHERE kind = %s AND record->'payload'->>'run_id' = %s",
                (action, run_id),
            ).fetchone()
    except pgerrors.LockNotAvailable as again:
        raise DatabaseUnavailable(
            f"the connection dropped during {action} of {step} and its transaction has not ended yet (the commit "
            f"lock is still held after {settings.lock_timeout}), so the outcome of run {run_id} is unknown; run "
            f"`gcos status {step}` in a minute (never re-apply blindly)."
        ) from again
    except (GcosError, psycopg.Error) as again:
        raise DatabaseUnavailable(
            f"the connection dropped during {action} of {step} and the database is still unreachable, so the "
            f"outcome of run {run_id} is unknown; run `gcos status {step}` when it is back (never re-apply blindly)."
        ) from again
    if found:
        return ApplyResult(
            **base,
            outcome="in_doubt_applied",
            ledger_seq=int(found[0]),
            message=f"the connection dropped at COMMIT, but the ledger holds run {run_id} "
            f"(seq {found[0]}): {step} was applied.",
        )
    why = (str(exc).strip() or type(exc).__name__).splitlines()[0]
    raise DatabaseUnavailable(
        f"the connection dropped during {action} of {step} ({why}); "
        f"the ledger has no record of run {run_id}, so nothing was applied; retry when the database is back."
    ) from exc
