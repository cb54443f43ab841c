"""Approvals, decisions and revocations through the write aperture.

Who approves is the connection's database role (``session_user``), never an argument: ``approve``,
``decide`` and ``revoke`` call the SECURITY DEFINER functions of ``gcos/sql/002_approvals.sql``, which
stamp the principal, refuse superusers, agents, services and roles without the sovereign or council role
(GateRefused, exit 3), and append the ledger record in the same statement. Expiry is computed by the
DATABASE clock (``clock_timestamp() + interval``), never the client's.

Whether they count is decided by the database (``gcos.evaluate_gates``, gates 5 and 6; see gates.py); the
kernel's commit locks the rows it relies on (``gcos.lock_approvals``) before it judges them. Since gcos schema 8 the
functions also refuse a session whose login role is not its session role (SET SESSION AUTHORIZATION) and
a principal in conflict with gcos's own roles, and bind approvals and decisions to the database incarnation.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

from gcos import ledger
from gcos.errors import LedgerBroken, SpecError, translated
from gcos.gates import SUBJECT_ROLLBACK, SUBJECT_STEP, VERDICTS, rollback_subject_hash
from gcos.spec import Project, StepSpec
from gcos.state import COMMITTED, project_states

MAX_EXPIRY = timedelta(days=365)
_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_DECISION = re.compile(r"[A-Z][A-Z0-9]*-[0-9]+(\.[0-9]+)*")


# --------------------------------------------------------------------------- receipts


@dataclass(frozen=True)
class ApprovalReceipt:
    approval_id: int
    ledger_seq: int
    step_id: str
    spec_hash: str  # the step's spec hash the approval is about
    plan_hash: str
    expires_at: datetime
    verdict: str
    principal: str  # the approver's principal name, from the session role
    rehearsal_seq: int | None  # the latest rehearsal of this spec hash, when it passed under this plan: the evidence
    role: str = ""  # the session role
    subject: str = SUBJECT_STEP  # step | rollback
    bound_hash: str = ""  # what was recorded in spec_hash (rollback_subject_hash(spec_hash) for a rollback)
    rehearsal_outcome: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class DecisionReceipt:
    decision_id: int
    ledger_seq: int
    decision: str
    verdict: str
    expires_at: datetime
    principal: str
    role: str = ""
    note: str | None = None
    text_hash: str = ""  # sha256 of the decision's text in the project's plan, what the record is bound to


@dataclass(frozen=True)
class RevocationReceipt:
    revocation_id: int
    ledger_seq: int
    kind: str  # approval | decision
    revoked_id: int  # the approval id or decision record id
    subject: str  # the step id (approval) or decision name
    revoked_by: str
    reason: str | None


# --------------------------------------------------------------------------- input


def parse_duration(text: str) -> timedelta:
    """'24h', '30m', '7d', '90s', '1h30m' (units in the order d h m s) as a timedelta; SpecError on anything
    else, on zero, or beyond 365 days (authority always expires, and soon enough to be re-examined)."""
    raw = text.strip().lower() if isinstance(text, str) else ""
    match = _DURATION.fullmatch(raw)
    if not raw or match is None:
        raise SpecError(f"expiry {text!r} is not a duration; write it like 24h, 30m, 7d, 90s or 1h30m.")
    days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    try:
        delta = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    except OverflowError:
        delta = MAX_EXPIRY * 2
    _check_expiry(delta, text)
    return delta


def _check_expiry(delta: timedelta, shown: object) -> None:
    if not isinstance(delta, timedelta) or delta <= timedelta(0):
        raise SpecError(f"expiry {shown!r} must be in the future: authority always expires, but not at once.")
    if delta > MAX_EXPIRY:
        raise SpecError(f"expiry {shown!r} is longer than 365 days; approve again later instead.")


def _check_verdict(verdict: str) -> None:
    if verdict not in VERDICTS:
        raise SpecError(f"verdict {verdict!r} is not one of {', '.join(VERDICTS)}.")


def aperture_row(conn: psycopg.Connection[Any], query: str, params: tuple[Any, ...]) -> tuple[Any, ...]:
    """The one row a write aperture (gcos.record_*, gcos.revoke_*) returns, or LedgerBroken when it returns none."""
    row = conn.execute(query, params).fetchone()
    if row is None:  # pragma: no cover - the aperture returns a row or raises
        raise LedgerBroken("the write aperture returned nothing; run `gcos ledger verify`.")
    return tuple(row)


# --------------------------------------------------------------------------- approve / decide / revoke


def approve(
    conn: psycopg.Connection[Any],
    project: Project,
    step: StepSpec,
    *,
    verdict: str,
    expires_in: timedelta,
    note: str | None = None,
    rollback: bool = False,
    trace_id: str | None = None,
) -> ApprovalReceipt:
    """Record the session principal's verdict on `step` (or, with `rollback`, on the rollback of its current
    commit), bound to its current spec hash, its plan's hash and this database, expiring `expires_in` after
    the database clock's now. GateRefused if the session role may not approve; SpecError on bad input."""
    _check_verdict(verdict)
    _check_expiry(expires_in, expires_in)
    plan = project.plan_of(step.id)
    if plan is None:
        raise SpecError(f"{step.id} is in no plan; an approval binds the plan's hash, so add it to a plan first.")
    rehearsal_seq: int | None = None
    rehearsal_outcome: str | None = None
    with translated():
        if rollback:
            bound = rollback_subject_hash(step.hash)
            _require_committed(conn, project, step)
        else:
            bound = step.hash
            row = conn.execute(
                "SELECT seq, record -> 'payload' ->> 'outcome', record -> 'payload' ->> 'plan_hash' FROM gcos.ledger "
                "WHERE kind = 'rehearsal' AND step_id = %s AND spec_hash = %s ORDER BY seq DESC LIMIT 1",
                (step.id, step.hash),
            ).fetchone()
            if row is not None:  # an approval rests only on a passing rehearsal of its plan (031): else on none
                rehearsal_outcome = row[1]
                rehearsal_seq = int(row[0]) if (row[1], row[2]) == ("passed", plan.hash) else None
        approval_id, ledger_seq = aperture_row(
            conn,
            "SELECT approval_id, ledger_seq FROM gcos.record_approval(%s, %s, %s, %s, "
            "pg_catalog.clock_timestamp() + %s::interval, %s, %s, %s)",
            (step.id, bound, plan.hash, verdict, expires_in, note, rehearsal_seq, _trace(trace_id, rehearsal_seq)),
        )[:2]
        expires_at, principal, role = aperture_row(
            conn,
            "SELECT expires_at, approver, approver_role::text FROM gcos.os_proposal_approvals WHERE id = %s",
            (approval_id,),
        )
    return ApprovalReceipt(
        approval_id=int(approval_id),
        ledger_seq=int(ledger_seq),
        step_id=step.id,
        spec_hash=step.hash,
        plan_hash=plan.hash,
        expires_at=expires_at,
        verdict=verdict,
        principal=principal,
        rehearsal_seq=rehearsal_seq,
        role=role,
        subject=SUBJECT_ROLLBACK if rollback else SUBJECT_STEP,
        bound_hash=bound,
        rehearsal_outcome=rehearsal_outcome,
        note=note,
    )


def _require_committed(conn: psycopg.Connection[Any], project: Project, step: StepSpec) -> None:
    state = project_states(ledger.read_all(conn), project)[step.id]
    if state.state != COMMITTED:
        raise SpecError(
            f"{step.id} is not committed (state {state.state}): there is no commit to approve a rollback of."
        )


def decision_text_hash(text: str) -> str:
    """What a decision record is bound to: sha256 over the UTF-8 text (gcos.decision_text_hash)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _trace(trace_id: str | None, rehearsal_seq: int | None = None) -> str | None:
    """The trace a record goes under: the caller's; an approval of a rehearsal, None (the database records it
    under the rehearsal's trace: one trace per step run); anything else, a trace of its own."""
    if trace_id is not None or rehearsal_seq is not None:
        return trace_id
    return ledger.new_trace_id()


def decide(
    conn: psycopg.Connection[Any],
    project: Project,
    decision: str,
    *,
    verdict: str,
    expires_in: timedelta,
    note: str | None = None,
    trace_id: str | None = None,
) -> DecisionReceipt:
    """Record the session principal's verdict on a named decision (A-4, C-1, ...), bound to the hash of its
    text in the project's plan: an edited text no longer counts. Only a sovereign may (GateRefused)."""
    _check_verdict(verdict)
    _check_expiry(expires_in, expires_in)
    name = decision.strip().upper() if isinstance(decision, str) else ""
    if not _DECISION.fullmatch(name):
        raise SpecError(f"decision {decision!r} is not a decision name; use one such as A-4 or C-7.1.")
    text_hash = decision_text_hash(project.decision_text(name))
    with translated():
        decision_id, ledger_seq = aperture_row(
            conn,
            "SELECT decision_id, ledger_seq FROM gcos.record_decision(%s, %s, %s, "
            "pg_catalog.clock_timestamp() + %s::interval, %s, %s)",
            (name, text_hash, verdict, expires_in, note, _trace(trace_id)),
        )[:2]
        expires_at, principal, role = aperture_row(
            conn, "SELECT expires_at, decider, decider_role::text FROM gcos.decisions WHERE id = %s", (decision_id,)
        )
    return DecisionReceipt(
        int(decision_id), int(ledger_seq), name, verdict, expires_at, principal, role, note, text_hash
    )


def revoke(
    conn: psycopg.Connection[Any], approval_id: int, reason: str | None = None, *, trace_id: str | None = None
) -> RevocationReceipt:
    """Withdraw an approval (an append: the approval stays, a revocation joins it and the ledger)."""
    with translated():
        revocation_id, ledger_seq = aperture_row(
            conn,
            "SELECT revocation_id, ledger_seq FROM gcos.revoke_approval(%s, %s, %s)",
            (approval_id, reason, _trace(trace_id)),
        )[:2]
        step_id, revoked_by = aperture_row(
            conn,
            "SELECT a.step_id, r.revoked_by FROM gcos.approval_revocations r "
            "JOIN gcos.os_proposal_approvals a ON a.id = r.approval_id WHERE r.id = %s",
            (revocation_id,),
        )
    return RevocationReceipt(int(revocation_id), int(ledger_seq), "approval", approval_id, step_id, revoked_by, reason)


def revoke_decision(
    conn: psycopg.Connection[Any], decision_id: int, reason: str | None = None, *, trace_id: str | None = None
) -> RevocationReceipt:
    """Withdraw a decision record."""
    with translated():
        revocation_id, ledger_seq = aperture_row(
            conn,
            "SELECT revocation_id, ledger_seq FROM gcos.revoke_decision(%s, %s, %s)",
            (decision_id, reason, _trace(trace_id)),
        )[:2]
        name, revoked_by = aperture_row(
            conn,
            "SELECT d.decision, r.revoked_by FROM gcos.decision_revocations r "
            "JOIN gcos.decisions d ON d.id = r.decision_id WHERE r.id = %s",
            (revocation_id,),
        )
    return RevocationReceipt(int(revocation_id), int(ledger_seq), "decision", decision_id, name, revoked_by, reason)
