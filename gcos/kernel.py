"""Calls into the gcos kernel (gcos/sql/011_kernel_rehearse.sql, 012_kernel_commit.sql): the database rehearses,
commits and rolls back a REGISTERED spec as gcos_kernel, evaluates the gates and appends every record itself
(batched steps: gcos/kernel_batched.py).
The client registers the spec and plan, passes their hashes, renders what the kernel returns and writes the
evidence files; nothing the kernel decides is decided again here."""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path
from typing import Any

import psycopg

from gcos import apply, execute, gates, ledger, registry, rehearsal, rehearsal_evidence
from gcos.apply import set_local_timeouts
from gcos.checks import CheckResult
from gcos.domain import Outcome
from gcos.errors import (
    DatabaseUnavailable,
    GateRefused,
    GcosError,
    ResidueFound,
    ReverifyMismatch,
    SpecError,
    StopHeld,
    translated,
)
from gcos.install import require_installed
from gcos.spec import Check, Expectation, PlanSpec, Project, StepSpec
from gcos.target import SessionSettings, Target, connect

OUTCOME_ERRORS: dict[str, type[GcosError]] = {
    "reverify_mismatch": ReverifyMismatch,
    "stopped": StopHeld,
    "success_failed": StopHeld,
    "rollback_unproven": ResidueFound,
    "residue": ResidueFound,
    "lock_timeout": DatabaseUnavailable,
    "timeout": DatabaseUnavailable,
    "mutation_failed": SpecError,
    "batch_failed": SpecError,
    "check_failed": SpecError,
    "rollback_failed": SpecError,
    "commit_failed": SpecError,
    "commit_refused": GateRefused,
    "rollback_refused": GateRefused,
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


def rehearse(
    conn: psycopg.Connection[Any], project: Project, step: StepSpec, *, settings: SessionSettings, evidence_dir: Path
) -> rehearsal.RehearsalResult:
    """Register the step and its plan, let the kernel rehearse them, write the evidence; raise the outcome's
    error (with the result as details) unless it passed."""
    plan = _plan(project, step)
    execute.static_check(step, plan)  # early feedback: the kernel judges what actually changes
    spec_hash, plan_hash = registry.register_spec(conn, step), registry.register_plan(conn, plan)
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    try:
        with translated(), conn.transaction():
            set_local_timeouts(conn, settings)
            row = conn.execute(
                "SELECT gcos.rehearse(%s, %s, %s)", (spec_hash, plan_hash, ledger.new_trace_id())
            ).fetchone()
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
        raise error(_sentence(result.message), details=result)
    return result


def commit(
    target: Target,
    project: Project,
    step: StepSpec,
    *,
    action: str,
    settings: SessionSettings,
    break_glass: bool = False,
) -> apply.ApplyResult:
    """Let the kernel commit (or roll back) the step in one transaction on a fresh connection; the outcome's
    error unless it applied. A connection lost around COMMIT is settled from the ledger by the run id."""
    plan = _plan(project, step)
    execute.static_check(step, plan)
    run_id = uuid.uuid4().hex
    base = {"action": action, "step": step.id, "ref": step.ref, "spec_hash": step.hash, "run_id": run_id}
    with connect(target, settings) as conn:
        require_installed(conn)
        spec_hash, plan_hash = registry.register_spec(conn, step), registry.register_plan(conn, plan)
        conn.isolation_level = psycopg.IsolationLevel.READ_COMMITTED  # every read after the lock sees what came before
        call = (spec_hash, plan_hash, action, run_id, ledger.new_trace_id(), break_glass)
        try:
            with conn.transaction():
                set_local_timeouts(conn, settings)
                row = conn.execute("SELECT gcos.commit(%s, %s, %s, %s, %s, %s)", call).fetchone()
        except psycopg.Error as exc:
            if conn.broken:
                return apply.settle_in_doubt(target, settings, base, exc)
            holders = apply.commit_lock_holders(conn) if isinstance(exc, psycopg.errors.LockNotAvailable) else ""
            if holders:  # it waited for another commit, not for a table
                raise apply.commit_busy(holders, settings, step.id) from exc
            with translated():
                raise
    assert row is not None
    return _applied(step, base, dict(row[0]))


def _applied(step: StepSpec, base: dict[str, Any], body: dict[str, Any]) -> apply.ApplyResult:
    decision = decision_of(body.get("decision"))
    outcome = str(body.get("outcome"))
    prints = (body.get("fingerprint_before") or {}, body.get("fingerprint_after") or {})
    footprint = body.get("footprint")
    result = apply.ApplyResult(
        **base,
        outcome=outcome,
        message=_sentence(str(body.get("message") or outcome)),
        decision=decision,
        reverify=checks_of(step.reverify, body.get("reverify") or []),
        stops=tuple(
            execute.StopResult(str(s["name"]), str(s["kind"]), bool(s["held"]), str(s.get("detail") or ""))
            for s in body.get("stops") or []
        ),
        success=checks_of(step.success, body.get("success") or []),
        footprint=execute.Footprint(tuple(footprint["new_tables"]), (), dict(footprint["row_deltas"]))
        if footprint
        else None,
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
    )


def _plan(project: Project, step: StepSpec) -> PlanSpec:
    plan = project.plan_of(step.id)
    if plan is None:
        raise SpecError(f"{step.id} is in no plan; add it to one under plans/ first.")
    return plan


def result_of(step: StepSpec, spec_hash: str, body: dict[str, Any], seq: int) -> rehearsal.RehearsalResult:
    """The kernel's rehearsal payload as the client's result type (checks matched to the spec by position)."""
    checks = body.get("checks") or {}
    prints = body.get("fingerprints") or {}
    footprint = body.get("footprint")
    return rehearsal.RehearsalResult(
        step=step.id,
        ref=step.ref,
        spec_hash=spec_hash,
        plan_id=body.get("plan_id"),
        plan_hash=body.get("plan_hash"),
        run_id=str(body.get("run_id")),
        outcome=str(body.get("outcome")),
        message=str(body.get("message")),
        reverify=checks_of(step.reverify, checks.get("reverify") or []),
        stops=tuple(
            execute.StopResult(str(s["name"]), str(s["kind"]), bool(s["held"]), str(s.get("detail") or ""))
            for s in checks.get("stop") or []
        ),
        success=checks_of(step.success, checks.get("success") or []),
        footprint=execute.Footprint(
            tuple(footprint["new_tables"]), tuple(footprint["dropped_tables"]), dict(footprint["row_deltas"])
        )
        if footprint
        else None,
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
        expected = Expectation.parse(found.get("expected")).describe()
        actual = found.get("actual")
        out.append(CheckResult(check.name, check.sql, expected, actual, bool(found.get("ok")), found.get("error")))
    return tuple(out)


def _sentence(message: str) -> str:
    text = message.strip()
    return text if text.endswith(".") else text + "."


__all__ = ["OUTCOME_ERRORS", "adopted", "checks_of", "commit", "decision_of", "rehearse", "result_of"]
