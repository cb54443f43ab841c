"""The view model: what md, html and the pack's ``steps/<STEP>.json`` show, built once from a snapshot so the
formats cannot disagree. Every value is copied from a ledger record (or a spec); the only derived facts are
the step states (``state.read_states``) and whether an approval or decision had expired at the snapshot's
database time. A step's dict is also its pack file: a key added here is a key auditors see."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from gcos import __version__ as gcos_version
from gcos import ledger, state
from gcos.domain import APPLY_KINDS, Kind
from gcos.evidence.common import FORMAT_VERSION, as_dict, as_list, utc_text
from gcos.evidence.rehearsals import actor_name, fingerprint_view, rehearsal_views
from gcos.evidence.snapshot import Snapshot, expired
from gcos.gates import rollback_subject_hash
from gcos.spec import Project, StepSpec

POLICY_KINDS = (Kind.POLICY_DECISION, Kind.COMMIT_REFUSED, Kind.ROLLBACK_REFUSED)


def record_view(e: ledger.LedgerEntry) -> dict[str, Any]:
    actor = as_dict(e.record.get("actor"))
    return {
        "seq": e.seq,
        "prev_hash": e.prev_hash,
        "hash": e.hash,
        "kind": e.kind,
        "recorded_at": e.record.get("recorded_at"),
        "trace_id": e.record.get("trace_id"),
        "step_id": e.record.get("step_id"),
        "spec_hash": e.record.get("spec_hash"),
        "actor": {k: actor.get(k) for k in ("principal", "role", "kind")},
        "canonical": e.canonical,
    }


def policy_view(e: ledger.LedgerEntry) -> dict[str, Any]:
    decision = e.payload if e.kind == Kind.POLICY_DECISION else as_dict(e.payload.get("policy_decision"))
    return {
        "seq": e.seq,
        "hash": e.hash,
        "kind": e.kind,
        "recorded_at": e.record.get("recorded_at"),
        "actor": actor_name(e),
        "action": decision.get("action"),
        "allow": decision.get("allow"),
        "trace_id": decision.get("trace_id"),
        "evaluated_at": decision.get("evaluated_at"),
        "spec_hash": decision.get("spec_hash"),
        "plan_hash": decision.get("plan_hash"),
        "refusal": decision.get("refusal"),
        "failed": as_list(decision.get("failed")),
        "gates": [as_dict(g) for g in as_list(decision.get("gates"))],
        "exceptions": [as_dict(x) for x in as_list(decision.get("exceptions"))],
    }


def apply_view(e: ledger.LedgerEntry) -> dict[str, Any]:
    p = e.payload
    return {
        "seq": e.seq,
        "hash": e.hash,
        "kind": e.kind,
        "recorded_at": e.record.get("recorded_at"),
        "spec_hash": e.record.get("spec_hash"),
        "actor": actor_name(e),
        "outcome": p.get("outcome"),
        "run_id": p.get("run_id"),
        "trace_id": e.record.get("trace_id"),
        "causation": _causation_view(p.get("causation")),
        "plan_hash": p.get("plan_hash"),
        "policy_decision_seq": p.get("policy_decision_seq"),
        "of_commit_seq": p.get("of_commit_seq"),
        "fingerprint_before": fingerprint_view(p.get("fingerprint_before")),
        "fingerprint_after": fingerprint_view(p.get("fingerprint_after")),
        "footprint": p.get("footprint") if isinstance(p.get("footprint"), dict) else None,
    }


def _causation_view(cause: Any) -> dict[str, Any]:
    """What a commit or rollback rests on (026): the rehearsal, the approvals (ids and ledger seqs) and the
    policy decision; empty lists and None for a record written before causation was recorded."""
    cause = as_dict(cause)
    return {
        "rehearsal_seq": cause.get("rehearsal_seq"),
        "approval_ids": as_list(cause.get("approval_ids")),
        "approval_seqs": as_list(cause.get("approval_seqs")),
        "policy_decision_seq": cause.get("policy_decision_seq"),
    }


def _revocation_view(revocation: ledger.LedgerEntry | None) -> dict[str, Any] | None:
    if revocation is None:
        return None
    return {
        "seq": revocation.seq,
        "hash": revocation.hash,
        "revocation_id": revocation.payload.get("revocation_id"),
        "reason": revocation.payload.get("reason"),
        "by": as_dict(revocation.record.get("actor")).get("principal"),
        "recorded_at": revocation.record.get("recorded_at"),
    }


def used_by(entries: Sequence[ledger.LedgerEntry]) -> dict[int, list[dict[str, Any]]]:
    """Approval id -> the applied commits and rollbacks whose causation (026) names it, in ledger order."""
    out: dict[int, list[dict[str, Any]]] = {}
    for e in entries:
        if e.kind in APPLY_KINDS:
            for aid in as_list(as_dict(e.payload.get("causation")).get("approval_ids")):
                if isinstance(aid, int):
                    out.setdefault(aid, []).append({"kind": e.kind, "seq": e.seq})
    return out


def approval_use(uses: Sequence[Mapping[str, Any]], counts_now: bool, revoked: bool, expired: bool) -> str:
    """One phrase for what an approval did or does: the commit or rollback it authorised, else whether it
    counts toward the next one, else why not."""
    if uses:
        return "; ".join(f"used by {u['kind']} seq {u['seq']}" for u in uses)
    if counts_now:
        return "counts toward the next commit"
    why = "revoked" if revoked else "expired" if expired else "bound to another spec, plan or rehearsal"
    return f"not used; does not count now ({why})"


def approval_views(
    entries: Sequence[ledger.LedgerEntry], step: StepSpec, counted: Iterable[int], db_now: datetime
) -> list[dict[str, Any]]:
    """The step's approvals in ledger order: whom they bind (the step or its rollback), which commit or
    rollback they authorised, whether they were revoked or expired, and whether the state projection counts
    them now."""
    revocations = {
        int(e.payload["approval_id"]): e
        for e in entries
        if e.kind == Kind.APPROVAL_REVOCATION and isinstance(e.payload.get("approval_id"), int)
    }
    spec_hashes = {step.hash} | {str(e.record["spec_hash"]) for e in entries if e.record.get("spec_hash")}
    rollback_hashes = {rollback_subject_hash(h) for h in spec_hashes}
    counting = set(counted)
    uses = used_by(entries)
    out = []
    for e in entries:
        if e.kind != Kind.APPROVAL or not isinstance(e.payload.get("approval_id"), int):
            continue
        aid = int(e.payload["approval_id"])
        actor = as_dict(e.record.get("actor"))
        revocation = revocations.get(aid)
        expires_at = e.payload.get("expires_at")
        bound = e.record.get("spec_hash")
        out.append(
            {
                "id": aid,
                "seq": e.seq,
                "hash": e.hash,
                "recorded_at": e.record.get("recorded_at"),
                "trace_id": e.record.get("trace_id"),
                "principal": actor.get("principal"),
                "db_role": actor.get("role"),
                "principal_kind": actor.get("kind"),
                "approver_roles": as_list(e.payload.get("approver_roles")),
                "verdict": e.payload.get("verdict"),
                "expires_at": expires_at,
                "expired": expired(expires_at, db_now),
                "bound_hash": bound,
                "subject": "rollback" if bound in rollback_hashes else "step",
                "bound_to_current_spec": bound == step.hash,
                "plan_hash": e.payload.get("plan_hash"),
                "rehearsal_seq": e.payload.get("rehearsal_seq"),
                "note": e.payload.get("note"),
                "revoked": revocation is not None,
                "revocation": _revocation_view(revocation),
                "counts_now": aid in counting,
                "used_by": uses.get(aid, []),
                "use": approval_use(
                    uses.get(aid, []), aid in counting, revocation is not None, expired(expires_at, db_now)
                ),
            }
        )
    return out


def decision_views(
    entries: Sequence[ledger.LedgerEntry], names: Sequence[str], db_now: datetime
) -> list[dict[str, Any]]:
    """The recorded decisions named `names` (those the step requires), revoked or expired as the ledger says."""
    revoked = {
        int(e.payload["decision_id"]): e
        for e in entries
        if e.kind == Kind.DECISION_REVOCATION and isinstance(e.payload.get("decision_id"), int)
    }
    out = []
    for e in entries:
        if e.kind != Kind.DECISION or e.payload.get("decision") not in names:
            continue
        did = e.payload.get("decision_id")
        expires_at = e.payload.get("expires_at")
        revocation = revoked.get(did) if isinstance(did, int) else None
        out.append(
            {
                "id": did,
                "seq": e.seq,
                "hash": e.hash,
                "decision": e.payload.get("decision"),
                "verdict": e.payload.get("verdict"),
                "principal": as_dict(e.record.get("actor")).get("principal"),
                "expires_at": expires_at,
                "expired": expired(expires_at, db_now),
                "revoked": revocation is not None,
                "revocation_seq": revocation.seq if revocation is not None else None,
            }
        )
    return out


def exception_views(own: Sequence[ledger.LedgerEntry], db_now: datetime) -> list[dict[str, Any]]:
    """The step's exceptions (025) in ledger order: which check they waive, whose, until when, revoked or expired."""
    revoked = {
        int(e.payload["exception_id"]): e
        for e in own
        if e.kind == Kind.EXCEPTION_REVOCATION and isinstance(e.payload.get("exception_id"), int)
    }
    out = []
    for e in own:
        if e.kind != Kind.EXCEPTION:
            continue
        xid = e.payload.get("exception_id")
        revocation = revoked.get(xid) if isinstance(xid, int) else None
        out.append(
            {
                "id": xid,
                "seq": e.seq,
                "spec_hash": e.record.get("spec_hash"),
                "check_kind": e.payload.get("check_kind"),
                "check": e.payload.get("check"),
                "reason": e.payload.get("reason"),
                "principal": as_dict(e.record.get("actor")).get("principal"),
                "expires_at": e.payload.get("expires_at"),
                "expired": expired(e.payload.get("expires_at"), db_now),
                "revoked": revocation is not None,
                "revocation_seq": revocation.seq if revocation is not None else None,
            }
        )
    return out


def step_entries(entries: Sequence[ledger.LedgerEntry], step: StepSpec) -> list[ledger.LedgerEntry]:
    """The step's own records and the records of the decisions it requires (gate 6 relied on them)."""
    return [
        e
        for e in entries
        if e.record.get("step_id") == step.id
        or (e.kind in (Kind.DECISION, Kind.DECISION_REVOCATION) and e.payload.get("decision") in step.decisions)
    ]


def _state_view(current: state.StepState) -> dict[str, Any]:
    return {
        "state": current.state,
        "detail": current.detail,
        "last_rehearsal_seq": current.last_rehearsal_seq,
        "commit_seq": current.commit_seq,
        "rollback_seq": current.rollback_seq,
        "approval_ids": list(current.approval_ids),
    }


def _stop_views(own: Sequence[ledger.LedgerEntry]) -> list[dict[str, Any]]:
    return [
        {
            "seq": e.seq,
            "hash": e.hash,
            "action": e.payload.get("action"),
            "outcome": e.payload.get("outcome"),
            "reason": e.payload.get("reason"),
        }
        for e in own
        if e.kind == Kind.STOP
    ]


def step_view(step: StepSpec, project: Project, snapshot: Snapshot, current: state.StepState) -> dict[str, Any]:
    """Everything the reports show of one step (and its pack file ``steps/<STEP>.json``)."""
    entries = step_entries(snapshot.entries, step)
    own = [e for e in entries if e.record.get("step_id") == step.id]
    plan = project.plan_of(step.id)
    try:
        spec_path = step.path.relative_to(project.root).as_posix()
    except ValueError:
        spec_path = step.path.name
    return {
        "format_version": FORMAT_VERSION,
        "id": step.id,
        "ref": step.ref,
        "order": step.order,
        "title": step.title,
        "source": step.source,
        "mode": step.mode,
        "depends_on": list(step.depends_on),
        "plan": None if plan is None else {"id": plan.id, "title": plan.title, "hash": plan.hash},
        "spec": {"hash": step.hash, "path": spec_path, "document": step.document},
        "state": _state_view(current),
        "approvals_required": {
            "signers": step.signers,
            "roles": list(step.signer_roles),
            "require": [f"at least {n} {role}" for role, n in step.signer_require],
        },
        "decisions_required": list(step.decisions),
        **rehearsal_views(own, step),
        "approvals": approval_views(own, step, current.approval_ids, snapshot.db_now),
        "decisions": decision_views(entries, step.decisions, snapshot.db_now),
        "exceptions": exception_views(own, snapshot.db_now),
        "policy_decisions": [policy_view(e) for e in own if e.kind in POLICY_KINDS],
        "applied": [apply_view(e) for e in own if e.kind in APPLY_KINDS],
        "stops": _stop_views(own),
        "records": [record_view(e) for e in entries],
    }


def report_context(
    project: Project,
    snapshot: Snapshot,
    states: Mapping[str, state.StepState],
    chosen: Sequence[StepSpec],
    scope: str | None,
) -> dict[str, Any]:
    """The context every template renders (and the pack's manifest reads): the reported steps' views, an
    overview of every step, the plans, the database and the ledger head."""
    last = snapshot.rows[-1] if snapshot.rows else None
    return {
        "format_version": FORMAT_VERSION,
        "gcos_version": gcos_version,
        "created_at": utc_text(snapshot.db_now),
        "database": {"system_identifier": snapshot.system_identifier, "name": snapshot.database},
        "ledger_head": None if last is None else {"seq": last.seq, "hash": last.hash},
        "ledger_records": len(snapshot.rows),
        "scope": scope,
        "steps": [step_view(s, project, snapshot, states[s.id]) for s in chosen],
        "overview": [
            {
                "id": s.id,
                "ref": s.ref,
                "title": s.title,
                "state": states[s.id].state,
                "detail": states[s.id].detail,
                "spec_hash": s.hash,
                "reported": s in chosen,
            }
            for s in project.steps.values()
        ],
        "plans": [
            {"id": p.id, "title": p.title, "hash": p.hash, "steps": list(p.steps)} for p in project.plans.values()
        ],
    }
