"""Calls into the gcos kernel (gcos/sql/011_kernel_rehearse.sql, 012_kernel_commit.sql): the database rehearses,
commits and rolls back a REGISTERED spec as gcos_kernel, evaluates the gates and appends every record itself
(batched steps: gcos/kernel_batched.py). This is the only way gcos runs a step: where schema public is not
adopted, nothing is rehearsed or committed (an admin runs `gcos adopt public` first).
The client checks the SQL statically (early feedback), registers the spec and plan, passes their hashes, renders
what the kernel returns and writes the evidence files; nothing the kernel decides is decided again here."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import psycopg
from psycopg import errors as pgerrors

from gcos import blockers, gates, ledger, registry, rehearsal_evidence
from gcos.checks import CheckResult, type_note
from gcos.domain import Outcome
from gcos.errors import (
    DatabaseUnavailable,
    GateRefused,
    GcosError,
    ResidueFound,
    ReverifyMismatch,
    SpecError,
    StopHeld,
    kernel_outcome,
    translated,
)
from gcos.install import require_installed
from gcos.results import CommitResult, Footprint, RehearsalResult, StopResult
from gcos.spec import Check, Expectation, PlanSpec, Project, StepSpec
from gcos.target import SessionSettings, Target, connect, set_local_timeouts

OUTCOME_ERRORS: dict[str, type[GcosError]] = {
    Outcome.REVERIFY_MISMATCH: ReverifyMismatch,
    Outcome.STOPPED: StopHeld,
    Outcome.SUCCESS_FAILED: StopHeld,
    Outcome.ROLLBACK_UNPROVEN: ResidueFound,
    Outcome.RESIDUE: ResidueFound,
    Outcome.LOCK_TIMEOUT: DatabaseUnavailable,
    Outcome.TIMEOUT: DatabaseUnavailable,
    Outcome.MUTATION_FAILED: SpecError,
    Outcome.BATCH_FAILED: SpecError,
    Outcome.CHECK_FAILED: SpecError,
    Outcome.ROLLBACK_FAILED: SpecError,
    Outcome.COMMIT_FAILED: SpecError,
    Outcome.COMMIT_REFUSED: GateRefused,
    Outcome.ROLLBACK_REFUSED: GateRefused,
}
"""The exit of each kernel outcome (CONTRACT.md exit codes); "passed" is the only success."""


def adopted(conn: psycopg.Connection[Any], schema: str = "public") -> bool:
    """Whether `schema` is under the kernel (gcos adopt), so that the kernel runs its steps."""
    row = conn.execute(
        "SELECT pg_catalog.to_regclass('gcos.adopted_schemas') IS NOT NULL AND EXISTS ("
        " SELECT FROM gcos.adopted_schemas WHERE schema_name = %s AND released_at IS NULL)",
        (schema,),
    ).fetchone()
    return bool(row and row[0])


def require_adopted(conn: psycopg.Connection[Any], step: StepSpec, action: str) -> None:
    """Refuse (exit 3) before anything is registered or run where the kernel cannot run `step`: it runs steps in
    schema public as gcos_kernel, which governs public only once an admin adopted it."""
    if not adopted(conn):
        raise GateRefused(
            f"schema public is not adopted, so the kernel cannot {action} {step.id}: an admin runs "
            "`gcos adopt public` first (see README, The kernel)."
        )


def static_check(step: StepSpec, plan: PlanSpec) -> None:
    """Refuse, before anything runs, SQL the spec does not allow (exit 2, the statement quoted): early feedback
    only, since the kernel judges what the step actually changed. Documents that passed before (the same step
    and plan, the same checking code) have a voucher (gcos/spec/checked.py) and are not parsed again."""
    import json

    from gcos.spec import checked

    content = json.dumps([step.document, plan.document], sort_keys=True).encode()
    if checked.vouched("static", content):
        return
    _static_check(step, plan)
    checked.vouch("static", content)


def _static_check(step: StepSpec, plan: PlanSpec) -> None:
    from gcos import sqlcheck

    stops = (*step.stop, *plan.global_stop)
    forbid_columns = [n for s in stops if s.kind == "forbid_columns" for n in s.names]
    forbid_objects = [n for s in stops if s.kind == "forbid_objects" for n in s.names]
    if step.mutation:
        sqlcheck.check_mutation(step, extra_forbid_columns=forbid_columns, extra_forbid_objects=forbid_objects)
    sqlcheck.check_rollback(step)
    if step.batch:
        sqlcheck.check_batch(step)
    for section, checks in (("re-verify", step.reverify), ("success", step.success)):
        for check in checks:
            sqlcheck.check_query(check.sql, label=f"step {step.id} {section} check {check.name!r}")
    for stop in stops:
        if stop.sql:
            sqlcheck.check_query(stop.sql, label=f"step {step.id} stop condition {stop.name!r}")


def rehearse(
    conn: psycopg.Connection[Any], project: Project, step: StepSpec, *, settings: SessionSettings, evidence_dir: Path
) -> RehearsalResult:
    """Register the step and its plan, let the kernel rehearse them, write the evidence; raise the outcome's
    error (with the result as details) unless it passed."""
    plan = _plan(project, step)
    require_adopted(conn, step, "rehearse")
    static_check(step, plan)  # early feedback: the kernel judges what actually changes
    trace = ledger.new_trace_id()  # the step run's trace: its approvals and commit join it (026)
    spec_hash = registry.register_spec(conn, step, trace_id=trace)
    plan_hash = registry.register_plan(conn, plan, trace_id=trace)
    conn.isolation_level = psycopg.IsolationLevel.READ_COMMITTED  # its record follows what others appended meanwhile
    watch: blockers.Watch | None = None
    rehearsal_evidence.preload()  # the evidence template compiles while the kernel works
    try:
        with conn.transaction():
            set_local_timeouts(conn, settings)
            with blockers.watching(conn) as watch:
                row = conn.execute("SELECT gcos.rehearse(%s, %s, %s)", (spec_hash, plan_hash, trace)).fetchone()
    except psycopg.Error as exc:
        busy = commit_lock_busy(conn, exc, settings, step.id, watch)
        if busy is not None:
            raise busy from exc
        with translated():
            raise
    finally:
        conn.isolation_level = None
    assert row is not None
    body: dict[str, Any] = dict(row[0])
    seq = int(body.pop("ledger_seq"))
    body.pop("ledger_hash", None)
    result = result_of(step, spec_hash, body, seq)
    files = rehearsal_evidence.write_evidence(evidence_dir, result, ledger.read_one(conn, seq), body)
    result = dataclasses.replace(result, evidence=files)
    error = OUTCOME_ERRORS.get(result.outcome)
    if error is not None:
        error, message = kernel_outcome(error, blocked(result.message, result.outcome, watch), body)
        raise error(_sentence(message), details=result)
    return result


def commit(
    target: Target,
    project: Project,
    step: StepSpec,
    *,
    action: str,
    settings: SessionSettings,
    break_glass: bool = False,
) -> CommitResult:
    """Let the kernel commit (or roll back) the step in one transaction on a fresh connection; the outcome's
    error unless it applied. A connection lost around COMMIT is settled from the ledger by the run id."""
    plan = _plan(project, step)
    static_check(step, plan)
    with connect(target, settings) as conn:
        require_installed(conn)
        require_adopted(conn, step, action)
        trace = ledger.new_trace_id()  # the attempt's; a commit's records join its rehearsal's trace (026)
        spec_hash = registry.register_spec(conn, step, trace_id=trace)
        plan_hash = registry.register_plan(conn, plan, trace_id=trace)
        run_id = derive_run_id(conn, spec_hash, plan_hash, action)
        base = {"action": action, "step": step.id, "ref": step.ref, "spec_hash": step.hash, "run_id": run_id}
        conn.isolation_level = psycopg.IsolationLevel.READ_COMMITTED  # every read after the lock sees what came before
        call = (spec_hash, plan_hash, action, run_id, trace, break_glass)
        watch: blockers.Watch | None = None
        try:
            with conn.transaction():
                set_local_timeouts(conn, settings)
                with blockers.watching(conn) as watch:
                    row = conn.execute("SELECT gcos.commit(%s, %s, %s, %s, %s, %s)", call).fetchone()
        except psycopg.Error as exc:
            if conn.broken:
                return settle_in_doubt(target, settings, base, exc)
            busy = commit_lock_busy(conn, exc, settings, step.id, watch)
            if busy is not None:
                raise busy from exc
            with translated():
                raise
    assert row is not None
    return _applied(step, base, dict(row[0]), watch)


def derive_run_id(conn: psycopg.Connection[Any], spec_hash: str, plan_hash: str, action: str) -> str:
    """The run id of the attempt about to be made: gcos.run_id of its spec, plan and action at the ledger head read
    now (022). Known before the call, so a dropped COMMIT is settled by it; the kernel refuses any other id, and
    every record moves the head, so the next attempt gets a new one while a retry at the same position does not."""
    with translated():
        row = conn.execute(
            "SELECT gcos.run_id(%s, %s, %s, h.seq) FROM gcos.ledger_head AS h", (spec_hash, plan_hash, action)
        ).fetchone()
    assert row is not None
    return str(row[0])


def _applied(
    step: StepSpec, base: dict[str, Any], body: dict[str, Any], watch: blockers.Watch | None = None
) -> CommitResult:
    decision = decision_of(body.get("decision"))
    outcome = str(body.get("outcome"))
    body["message"] = blocked(str(body.get("message") or outcome), outcome, watch)
    prints = (body.get("fingerprint_before") or {}, body.get("fingerprint_after") or {})
    result = CommitResult(
        **base,
        outcome=outcome,
        message=_sentence(str(body.get("message") or outcome)),
        decision=decision,
        reverify=checks_of(step.reverify, body.get("reverify") or []),
        stops=tuple(StopResult.from_payload(s) for s in body.get("stops") or []),
        success=checks_of(step.success, body.get("success") or []),
        footprint=Footprint.from_payload(body.get("footprint")),
        fingerprint_before=prints[0],
        fingerprint_after=prints[1],
        ledger_seq=body.get("ledger_seq"),
    )
    if outcome == Outcome.APPLIED:
        return result
    error = OUTCOME_ERRORS.get(outcome, GcosError)
    if decision is not None and not decision.allow:
        first = next((g for g in decision.failed if g.decisive), decision.failed[0])
        error = ReverifyMismatch if first.gate == "reverify" else GateRefused
    details = {**base, "outcome": outcome, "ledger_seq": result.ledger_seq, "message": result.message}
    raise error(result.message, details={**details, "decision": body.get("decision")})


def decision_of(payload: Any) -> gates.PolicyDecisionRecord | None:
    """The kernel's policy decision as the client's type, for rendering (the kernel decided it)."""
    if not isinstance(payload, dict):
        return None
    return gates.PolicyDecisionRecord(
        allow=bool(payload["allow"]),
        action=str(payload["action"]),
        step_id=str(payload["step_id"]),
        spec_hash=str(payload["spec_hash"]),
        plan_hash=payload.get("plan_hash"),
        gates=tuple(
            gates.GateResult(
                gate=str(g["gate"]),
                allow=bool(g["allow"]),
                reason=str(g["reason"]),
                remedy=str(g.get("remedy") or ""),
                number=int(g["number"]),
                known=bool(g.get("known", True)),
                command=str(g.get("command") or ""),
                evidence=tuple(int(e) for e in g.get("evidence") or ()),
                decisive=bool(g.get("decisive", False)),
            )
            for g in payload["gates"]
        ),
        trace_id=str(payload.get("trace_id") or ""),
        evaluated_at=str(payload.get("evaluated_at") or ""),
        exceptions=tuple(dict(e) for e in payload.get("exceptions") or ()),
    )


def _plan(project: Project, step: StepSpec) -> PlanSpec:
    plan = project.plan_of(step.id)
    if plan is None:
        raise SpecError(f"{step.id} is in no plan; add it to one under plans/ first.")
    return plan


def result_of(step: StepSpec, spec_hash: str, body: dict[str, Any], seq: int) -> RehearsalResult:
    """The kernel's rehearsal payload as the client's result type (checks matched to the spec by position)."""
    checks = body.get("checks") or {}
    prints = body.get("fingerprints") or {}
    return RehearsalResult(
        step=step.id,
        ref=step.ref,
        spec_hash=spec_hash,
        plan_id=body.get("plan_id"),
        plan_hash=body.get("plan_hash"),
        run_id=str(body.get("run_id")),
        outcome=str(body.get("outcome")),
        message=str(body.get("message")),
        reverify=checks_of(step.reverify, checks.get("reverify") or []),
        stops=tuple(StopResult.from_payload(s) for s in checks.get("stop") or []),
        success=checks_of(step.success, checks.get("success") or []),
        footprint=Footprint.from_payload(body.get("footprint")),
        entry=prints.get("entry") or {},
        inside=prints.get("inside") or {},
        after_rollback=prints.get("after_rollback") or {},
        exit=prints.get("exit") or {},
        differences=tuple(body.get("differences") or ()),
        residue=tuple((body.get("residue") or {}).get("sequences") or ()),
        duration_us=int(body.get("duration_us") or 0),
        ledger_seq=seq,
    )


def checks_of(specs: tuple[Check, ...], results: list[dict[str, Any]]) -> tuple[CheckResult, ...]:
    out = []
    for check, found in zip(specs, results, strict=False):
        expectation = Expectation.parse(found.get("expected"))
        actual, ok = found.get("actual"), bool(found.get("ok"))
        note = None if found.get("error") else type_note(expectation, actual, ok)  # both types when they differ
        out.append(
            CheckResult(
                check.name, check.sql, expectation.describe(), actual, ok, found.get("error"), found.get("waived"), note
            )
        )
    return tuple(out)


# --------------------------------------------------------------------------- the commit lock, a dropped COMMIT

COMMIT_LOCK_KEY = "gcos:commit"
"""The advisory lock (hashtextextended of this text) the kernel holds for the whole transaction of every commit,
rollback and batched start or close: one per database, so commits of steps in different plans never both read
the fingerprint before the other applied (issue 9, item 3)."""


_TAKE_COMMIT_LOCK = "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended(%s, 0))"


def blocked(message: str, outcome: str, watch: blockers.Watch | None) -> str:
    """A kernel outcome `lock_timeout` (caught inside the kernel) with the sessions seen blocking it."""
    if watch is None or outcome != Outcome.LOCK_TIMEOUT:
        return message
    seen = watch.describe()
    if seen:
        return f"{message.rstrip('.')}; blocked by {seen} (seen while it waited)"
    return f"{message.rstrip('.')}{watch.unknown()}" if watch.unknown() else message


def commit_lock_busy(
    conn: psycopg.Connection[Any],
    exc: psycopg.Error,
    settings: SessionSettings,
    step_id: str,
    watch: blockers.Watch | None = None,
) -> DatabaseUnavailable | None:
    """The error of a kernel call that waited lock_timeout, naming who blocked it as `watch` saw WHILE it waited
    (else who holds the commit lock now); None when `exc` is not a lock timeout or nobody was seen (the caller
    translates it)."""
    if not isinstance(exc, pgerrors.LockNotAvailable):
        return None
    seen = watch.describe() if watch is not None else ""
    holders = commit_lock_holders(conn)
    if holders:
        return DatabaseUnavailable(
            f"another commit, rollback or rehearsal is in progress in this database ({seen or holders}), and it "
            f"did not end within lock_timeout {settings.lock_timeout}; nothing was applied, run `gcos status "
            f"{step_id}` when it is done."
        )
    if not seen and watch is not None and watch.unknown():
        return DatabaseUnavailable(
            f"{step_id} waited lock_timeout {settings.lock_timeout} for a lock{watch.unknown()}; its transaction "
            "was rolled back and nothing of it was applied; retry when the other session has ended."
        )
    if not seen:
        return None
    return DatabaseUnavailable(
        f"{step_id} waited lock_timeout {settings.lock_timeout} for a lock held by {seen} (seen while it waited), "
        "so its transaction was rolled back and nothing of it was applied; retry when that session has ended."
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


def settle_in_doubt(target: Target, settings: SessionSettings, base: dict[str, Any], exc: Exception) -> CommitResult:
    """The connection dropped around COMMIT: ask the ledger whether this run's record exists.

    The ledger is read only once the commit lock is ours: the dropped transaction held it until it ended, so a
    COMMIT that reached the server but was still being processed cannot be misread as "not applied". If the
    lock is not granted within lock_timeout, the outcome is reported as unknown."""
    step, action, run_id = base["step"], base["action"], base["run_id"]
    try:
        with connect(target, settings) as conn, conn.transaction():
            set_local_timeouts(conn, settings)
            conn.execute(
                "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended(%s, 0))", (COMMIT_LOCK_KEY,)
            )
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
        return CommitResult(
            **base,
            outcome=Outcome.IN_DOUBT_APPLIED,
            ledger_seq=int(found[0]),
            message=f"the connection dropped at COMMIT, but the ledger holds run {run_id} "
            f"(seq {found[0]}): {step} was applied.",
        )
    why = (str(exc).strip() or type(exc).__name__).splitlines()[0]
    raise DatabaseUnavailable(
        f"the connection dropped during {action} of {step} ({why}); "
        f"the ledger has no record of run {run_id}, so nothing was applied; retry when the database is back."
    ) from exc


def _sentence(message: str) -> str:
    text = message.strip()
    return text if text.endswith(".") else text + "."


__all__ = [
    "OUTCOME_ERRORS",
    "adopted",
    "checks_of",
    "commit",
    "commit_lock_busy",
    "commit_lock_holders",
    "decision_of",
    "derive_run_id",
    "rehearse",
    "require_adopted",
    "result_of",
    "settle_in_doubt",
    "static_check",
]
