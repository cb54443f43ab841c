"""Approvals, decisions and revocations through the write aperture; the facts the gates are evaluated on.

Who approves is the connection's database role (``session_user``), never an argument: ``approve``,
``decide`` and ``revoke`` call the SECURITY DEFINER functions of ``gcos/sql/002_approvals.sql``, which
stamp the principal, refuse superusers, agents, services and roles without the sovereign or council role
(GateRefused, exit 3), and append the ledger record in the same statement. Expiry is computed by the
DATABASE clock (``clock_timestamp() + interval``), never the client's.

``gather_facts`` reads everything the gates need - the ledger (approvals, decisions, revocations,
rehearsals, commits, rollbacks: the truth), the approvals tables (cross-checked against the ledger), who the
principals are now, the target's identity and ``clock_timestamp()`` - as plain statements in the caller's
transaction. Inside a commit, call ``lock_approvals`` first, then ``gather_facts`` (READ COMMITTED: each
statement sees every revocation that committed before the lock was granted). Since gcos schema 8 the
functions also refuse a session whose login role is not its session role (SET SESSION AUTHORIZATION) and
a principal in conflict with gcos's own roles, and bind approvals and decisions to the database incarnation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from dataclasses import replace as dc_replace
from datetime import datetime, timedelta
from typing import Any

import psycopg

from gcos import ledger
from gcos.errors import LedgerBroken, SpecError
from gcos.gates import (
    ACTIONS,
    SUBJECT_ROLLBACK,
    SUBJECT_STEP,
    VERDICTS,
    ApprovalFact,
    DecisionFact,
    Facts,
    rollback_subject_hash,
)
from gcos.spec import Project, StepSpec
from gcos.state import COMMITTED, PrincipalNow, project_view, read_ledger

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
    rehearsal_seq: int | None  # the latest rehearsal record of this spec hash, the evidence the approver saw
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


def _fetch_one(conn: psycopg.Connection[Any], query: str, params: tuple[Any, ...]) -> tuple[Any, ...]:
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
    with ledger.map_db_errors():
        if rollback:
            bound = rollback_subject_hash(step.hash)
            _require_committed(conn, project, step)
        else:
            bound = step.hash
            row = conn.execute(
                "SELECT seq, record -> 'payload' ->> 'outcome' FROM gcos.ledger "
                "WHERE kind = 'rehearsal' AND step_id = %s AND spec_hash = %s ORDER BY seq DESC LIMIT 1",
                (step.id, step.hash),
            ).fetchone()
            if row is not None:
                rehearsal_seq, rehearsal_outcome = int(row[0]), row[1]
        approval_id, ledger_seq = _fetch_one(
            conn,
            "SELECT approval_id, ledger_seq FROM gcos.record_approval(%s, %s, %s, %s, "
            "pg_catalog.clock_timestamp() + %s::interval, %s, %s, %s)",
            (step.id, bound, plan.hash, verdict, expires_in, note, rehearsal_seq, trace_id),
        )[:2]
        expires_at, principal, role = _fetch_one(
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
    entries = ledger.read_all(conn)
    now = _fetch_one(conn, "SELECT pg_catalog.clock_timestamp()", ())[0]
    view = read_ledger(entries, current_spec_hashes={step.id: step.hash})
    state = project_view(view, project, db_now=now)[step.id]
    if state.state != COMMITTED:
        raise SpecError(
            f"{step.id} is not committed (state {state.state}): there is no commit to approve a rollback of."
        )


def decide(
    conn: psycopg.Connection[Any],
    decision: str,
    *,
    verdict: str,
    expires_in: timedelta,
    note: str | None = None,
    trace_id: str | None = None,
) -> DecisionReceipt:
    """Record the session principal's verdict on a named decision (A-4, C-7.1, ...)."""
    _check_verdict(verdict)
    _check_expiry(expires_in, expires_in)
    name = decision.strip().upper() if isinstance(decision, str) else ""
    if not _DECISION.fullmatch(name):
        raise SpecError(f"decision {decision!r} is not a decision name; use one such as A-4 or C-7.1.")
    with ledger.map_db_errors():
        decision_id, ledger_seq = _fetch_one(
            conn,
            "SELECT decision_id, ledger_seq FROM gcos.record_decision(%s, %s, "
            "pg_catalog.clock_timestamp() + %s::interval, %s, %s)",
            (name, verdict, expires_in, note, trace_id),
        )[:2]
        expires_at, principal, role = _fetch_one(
            conn, "SELECT expires_at, decider, decider_role::text FROM gcos.decisions WHERE id = %s", (decision_id,)
        )
    return DecisionReceipt(int(decision_id), int(ledger_seq), name, verdict, expires_at, principal, role, note)


def revoke(
    conn: psycopg.Connection[Any], approval_id: int, reason: str | None = None, *, trace_id: str | None = None
) -> RevocationReceipt:
    """Withdraw an approval (an append: the approval stays, a revocation joins it and the ledger)."""
    with ledger.map_db_errors():
        revocation_id, ledger_seq = _fetch_one(
            conn,
            "SELECT revocation_id, ledger_seq FROM gcos.revoke_approval(%s, %s, %s)",
            (approval_id, reason, trace_id),
        )[:2]
        step_id, revoked_by = _fetch_one(
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
    with ledger.map_db_errors():
        revocation_id, ledger_seq = _fetch_one(
            conn,
            "SELECT revocation_id, ledger_seq FROM gcos.revoke_decision(%s, %s, %s)",
            (decision_id, reason, trace_id),
        )[:2]
        name, revoked_by = _fetch_one(
            conn,
            "SELECT d.decision, r.revoked_by FROM gcos.decision_revocations r "
            "JOIN gcos.decisions d ON d.id = r.decision_id WHERE r.id = %s",
            (revocation_id,),
        )
    return RevocationReceipt(int(revocation_id), int(ledger_seq), "decision", decision_id, name, revoked_by, reason)


# --------------------------------------------------------------------------- the commit's lock and facts


@dataclass(frozen=True)
class LockResult:
    approvals: int  # approval rows of the step now locked FOR SHARE
    decisions: int  # decision records locked FOR SHARE


def lock_approvals(conn: psycopg.Connection[Any], step_id: str, decisions: tuple[str, ...] = ()) -> LockResult:
    """Lock the step's approval rows and its decisions' rows FOR SHARE until the caller's transaction ends,
    so no revocation can commit between the gate check and COMMIT (it waits; one that committed first is
    seen by the next statement). Waits up to lock_timeout (then DatabaseUnavailable, exit 8)."""
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.INTRANS:
        raise SpecError("lock_approvals must run inside the commit's transaction (the lock ends with it).")
    with ledger.map_db_errors():
        approvals, locked = _fetch_one(
            conn, "SELECT approvals, decisions FROM gcos.lock_approvals(%s, %s::text[])", (step_id, list(decisions))
        )
    return LockResult(int(approvals), int(locked))


def gather_facts(
    conn: psycopg.Connection[Any],
    project: Project,
    step: StepSpec,
    *,
    action: str,
    reverify_ok: bool | None,
    reverify_reason: str,
    current_schema_hash: str | None,
    global_stops_held: tuple[str, ...],
    as_actor: bool = True,
) -> Facts:
    """Everything the gates need about `step`, read now (in the caller's transaction, if one is open).
    LedgerBroken if the approvals tables and the ledger disagree.

    Each approval and decision carries the incarnation it was recorded in (from its ledger record) and its
    signer's separation-of-duties conflicts as they are NOW (``gcos.principal_conflicts``); the facts carry
    this database's incarnation (``gcos.database_incarnation``), so gates 5 and 6 compare all three parts.

    `as_actor=False` (for ``gcos status``): the session is only looking, not committing, so its own approvals
    are not discounted as self-approval (``actor_role_oid`` 0, no role has it)."""
    if action not in ACTIONS:
        raise SpecError(f"action must be one of {', '.join(ACTIONS)}, not {action!r}.")
    with ledger.map_db_errors():
        rows = _read(conn, step)
    sysid, database, database_oid, actor_oid, actor_name, db_now = rows.identity
    view = read_ledger(
        rows.entries, principals=rows.principals, current_spec_hashes={s.id: s.hash for s in project.steps.values()}
    )
    history = view.history(step.id)
    targets = _targets(rows.entries)
    found = [dc_replace(a, database_oid=targets.get(("approval", a.id), _NO_TARGET)[2]) for a in history.approvals]
    decided = [_decision_target(d, targets) for d in view.decisions if d.decision in step.decisions]
    _cross_check(step.id, found, rows.approvals, decided, rows.decisions)
    states = project_view(view, project, db_now=db_now, target=(sysid, database))
    plan = project.plan_of(step.id)
    commit = history.last_commit if history.committed else None
    if action == "rollback":
        rehearsal = history.latest_rehearsal(before=commit.seq) if commit else None
    else:
        rehearsal = history.latest_rehearsal(after=history.epoch_seq)
    return Facts(
        step_id=step.id,
        spec_hash=step.hash,
        plan_id=plan.id if plan else None,
        plan_hash=plan.hash if plan else None,
        action=action,
        mandatory_fold_ins=plan.fold_ins.get(step.id, ()) if plan else (),
        declared_fold_ins=step.fold_ins,
        dependency_states={d: states[d].state if d in states else "unknown" for d in step.depends_on},
        reverify_ok=reverify_ok,
        reverify_reason=reverify_reason,
        rehearsal=rehearsal,
        current_schema_hash=current_schema_hash,
        approvals=tuple(dc_replace(a, conflicts=rows.conflicts.get(a.role_oid, ())) for a in found),
        signers_required=step.signers,
        signer_roles=step.signer_roles,
        decisions_required=step.decisions,
        decisions=tuple(dc_replace(d, conflicts=rows.conflicts.get(d.role_oid, ())) for d in decided),
        global_stops_held=tuple(global_stops_held),
        state=states[step.id].state,
        actor_role_oid=int(actor_oid) if as_actor else 0,
        target_system_identifier=str(sysid),
        target_database=str(database),
        db_now=db_now,
        actor_principal=actor_name if as_actor else None,
        dependents_committed=tuple(
            s.id for s in project.steps.values() if step.id in s.depends_on and states[s.id].state == COMMITTED
        ),
        epoch_seq=history.epoch_seq,
        commit_seq=commit.seq if commit else None,
        committed_spec_hash=commit.spec_hash if commit else None,
        commit_schema_hash=commit.schema_hash_after if commit else None,
        target_database_oid=int(database_oid),
    )


@dataclass(frozen=True)
class _Rows:
    """What gather_facts reads, statement by statement, in the caller's transaction."""

    entries: list[ledger.LedgerEntry]
    principals: dict[int, PrincipalNow]
    conflicts: dict[int, tuple[str, ...]]  # principal role OID -> gcos.principal_conflicts now
    approvals: list[Any]  # the step's rows of gcos.os_proposal_approvals, in _cross_check's order
    decisions: list[Any]  # the rows of gcos.decisions for the step's decisions
    identity: tuple[Any, ...]  # system identifier, database, database OID, actor OID, actor name, db clock


def _read(conn: psycopg.Connection[Any], step: StepSpec) -> _Rows:
    entries = ledger.read_all(conn)
    people = conn.execute(
        "SELECT p.role_oid::bigint, p.display_name, p.kind, p.roles, r.rolsuper, r.oid IS NOT NULL, "
        "gcos.principal_conflicts(p.role_oid) FROM gcos.principals p LEFT JOIN pg_catalog.pg_roles r "
        "ON r.oid = p.role_oid"
    ).fetchall()
    table = conn.execute(
        "SELECT a.id, a.spec_hash, a.plan_hash, a.verdict, a.approver_oid::bigint, a.expires_at, a.ledger_seq, "
        "r.id IS NOT NULL, a.system_identifier, a.database_name::text, a.database_oid::bigint "
        "FROM gcos.os_proposal_approvals a LEFT JOIN gcos.approval_revocations r "
        "ON r.approval_id = a.id WHERE a.step_id = %s ORDER BY a.id",
        (step.id,),
    ).fetchall()
    decision_rows = conn.execute(
        "SELECT d.id, d.decision, d.verdict, d.decider_oid::bigint, d.expires_at, d.ledger_seq, "
        "r.id IS NOT NULL, d.system_identifier, d.database_name::text, d.database_oid::bigint "
        "FROM gcos.decisions d LEFT JOIN gcos.decision_revocations r ON r.decision_id = d.id "
        "WHERE d.decision = ANY(%s::text[]) ORDER BY d.id",
        (list(step.decisions),),
    ).fetchall()
    identity = _fetch_one(
        conn,
        "SELECT i.system_identifier, i.database_name, i.database_oid::bigint, r.oid::bigint, p.display_name, "
        "pg_catalog.clock_timestamp() FROM gcos.database_incarnation() i, pg_catalog.pg_roles r "
        "LEFT JOIN gcos.principals p ON p.role_oid = r.oid WHERE r.rolname = session_user",
        (),
    )
    principals = {  # one whose database role was dropped has kind None
        int(oid): PrincipalNow(int(oid), name, kind if exists else None, tuple(roles), bool(superuser))
        for oid, name, kind, roles, superuser, exists, _ in people
    }
    conflicts = {int(row[0]): tuple(row[6]) for row in people}
    return _Rows(entries, principals, conflicts, table, decision_rows, identity)


_Target = tuple[str | None, str | None, int | None]  # system identifier, database name, database OID
_NO_TARGET: _Target = (None, None, None)


def _targets(entries: list[ledger.LedgerEntry]) -> dict[tuple[str, int], _Target]:
    """Where each approval and decision was recorded, from its ledger record's payload "target" (records
    from before gcos schema 8 have no OID, and decisions had no target at all)."""
    found: dict[tuple[str, int], _Target] = {}
    for e in entries:
        rid = e.payload.get(f"{e.kind}_id") if e.kind in ("approval", "decision") else None
        target = e.payload.get("target")
        if type(rid) is not int or not isinstance(target, dict):
            continue
        sysid, name, oid = target.get("system_identifier"), target.get("database"), target.get("database_oid")
        found[(e.kind, rid)] = (
            sysid if isinstance(sysid, str) else None,
            name if isinstance(name, str) else None,
            oid if type(oid) is int else None,
        )
    return found


def _decision_target(d: DecisionFact, targets: dict[tuple[str, int], _Target]) -> DecisionFact:
    sysid, name, oid = targets.get(("decision", d.id), _NO_TARGET)
    return dc_replace(d, system_identifier=sysid, database=name, database_oid=oid)


def _where(x: ApprovalFact | DecisionFact) -> _Target:
    return (x.system_identifier, x.database, x.database_oid)


def _bound_hash(a: ApprovalFact) -> str:
    return rollback_subject_hash(a.spec_hash) if a.subject == SUBJECT_ROLLBACK else a.spec_hash


def _cross_check(
    step_id: str,
    approvals: list[ApprovalFact],
    table: list[Any],
    decisions: list[DecisionFact],
    decision_rows: list[Any],
) -> None:
    """The approvals and decisions tables must say what the ledger says (they are written together)."""
    from_ledger = {
        (a.id, _bound_hash(a), a.plan_hash, a.verdict, a.role_oid, a.expires_at, a.ledger_seq, a.revoked, *_where(a))
        for a in approvals
    }
    from_table = {tuple(r) for r in table}
    if from_ledger != from_table:
        odd = sorted({x[0] for x in from_ledger ^ from_table})
        raise LedgerBroken(
            f"the approvals of {step_id} in gcos.os_proposal_approvals and in the ledger disagree (approval "
            f"{', '.join(map(str, odd))}); run `gcos ledger verify` and keep the database as evidence."
        )
    ledger_decisions = {
        (d.id, d.decision, d.verdict, d.role_oid, d.expires_at, d.ledger_seq, d.revoked, *_where(d)) for d in decisions
    }
    table_decisions = {tuple(r) for r in decision_rows}
    if ledger_decisions != table_decisions:
        odd = sorted({x[0] for x in ledger_decisions ^ table_decisions})
        raise LedgerBroken(
            f"decision records {', '.join(map(str, odd))} in gcos.decisions and in the ledger disagree; "
            "run `gcos ledger verify` and keep the database as evidence."
        )
