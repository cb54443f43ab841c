"""Step states: a projection of the ledger, never stored beside it (CONTRACT.md "Step states"; seed 003).

``planned → rehearsed → approved → committed → rolled_back``:

* **rehearsed** — the step's latest rehearsal since its last commit or rollback passed, on the CURRENT spec
  hash and plan hash (editing the spec or plan, or a later failed rehearsal, falls back to planned);
* **approved** — rehearsed, and enough approvals are in force by the gate-5 rules (``gates.count_approvals``),
  except the "not the committer" rule, since nobody is committing yet; an expired or revoked approval
  returns the step to rehearsed;
* **committed** — a ``commit`` record with outcome ``applied`` not followed by a ``rollback`` record with
  outcome ``applied``;
* **rolled_back** — the last commit was rolled back and nothing was rehearsed since.

Refusals, stops and policy decisions are events, not states. Everything here is a pure function of ledger
entries (what ``gcos status`` reads) plus, optionally, live facts about principals.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gcos.gates import (
    SUBJECT_ROLLBACK,
    SUBJECT_STEP,
    ApprovalFact,
    DecisionFact,
    RehearsalFact,
    count_approvals,
    rollback_subject_hash,
)
from gcos.ledger import LedgerEntry
from gcos.spec import Project

PLANNED, REHEARSED, APPROVED, COMMITTED, ROLLED_BACK = "planned", "rehearsed", "approved", "committed", "rolled_back"
STATES = (PLANNED, REHEARSED, APPROVED, COMMITTED, ROLLED_BACK)
APPLIED = "applied"


# --------------------------------------------------------------------------- the ledger, read as facts


@dataclass(frozen=True)
class PrincipalNow:
    """A principal as it stands now: from the last ``principal`` ledger record, or live from the database."""

    role_oid: int
    name: str | None
    kind: str | None  # None: the role no longer exists
    roles: tuple[str, ...]
    is_superuser: bool = False


@dataclass(frozen=True)
class CommitFact:
    seq: int
    spec_hash: str | None
    plan_hash: str | None
    run_id: str | None
    outcome: str | None
    schema_hash_before: str | None
    schema_hash_after: str | None
    actor_role_oid: int | None


@dataclass(frozen=True)
class RollbackFact:
    seq: int
    of_commit_seq: int | None
    run_id: str | None
    outcome: str | None


@dataclass
class StepHistory:
    rehearsals: list[RehearsalFact] = field(default_factory=list)
    commits: list[CommitFact] = field(default_factory=list)  # outcome applied only
    rollbacks: list[RollbackFact] = field(default_factory=list)  # outcome applied only
    approvals: list[ApprovalFact] = field(default_factory=list)

    @property
    def last_commit(self) -> CommitFact | None:
        return self.commits[-1] if self.commits else None

    @property
    def last_rollback(self) -> RollbackFact | None:
        return self.rollbacks[-1] if self.rollbacks else None

    @property
    def committed(self) -> bool:
        commit, rollback = self.last_commit, self.last_rollback
        return commit is not None and (rollback is None or rollback.seq < commit.seq)

    @property
    def epoch_seq(self) -> int:
        """The seq of the last commit or rollback: rehearsals and approvals before it are spent."""
        seqs = [x.seq for x in (self.last_commit, self.last_rollback) if x is not None]
        return max(seqs, default=0)

    def latest_rehearsal(self, *, after: int = 0, before: int | None = None) -> RehearsalFact | None:
        found = [r for r in self.rehearsals if r.seq > after and (before is None or r.seq < before)]
        return found[-1] if found else None


@dataclass(frozen=True)
class LedgerView:
    steps: dict[str, StepHistory]
    decisions: tuple[DecisionFact, ...]
    principals: dict[int, PrincipalNow]

    def history(self, step_id: str) -> StepHistory:
        return self.steps.get(step_id, StepHistory())


def parse_time(text: Any) -> datetime:
    """A ledger time ("2025-01-01T00:00:00.000000Z") as an aware datetime."""
    if not isinstance(text, str):
        raise ValueError(f"not a ledger time: {text!r}")
    return datetime.fromisoformat(text)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dig(mapping: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(mapping, dict):
            return None
        mapping = mapping.get(key)
    return mapping


def read_ledger(
    entries: Iterable[LedgerEntry],
    *,
    principals: Mapping[int, PrincipalNow] | None = None,
    current_spec_hashes: Mapping[str, str] | None = None,
) -> LedgerView:
    """Read every step's rehearsals, commits, rollbacks and approvals, and every decision, from the ledger.

    `principals` (live, by role OID) overrides what the ``principal`` records say about approvers now (kind,
    roles, superuser). `current_spec_hashes` (step id -> spec hash on disk) lets a rollback approval of the
    current spec be recognised even before anything about that spec was recorded."""
    entries = sorted(entries, key=lambda e: e.seq)
    allowing: dict[int, tuple[str | None, str | None]] = {}  # policy decision seq -> (step, trace) that allowed
    recorded: dict[int, PrincipalNow] = {}
    steps: dict[str, StepHistory] = {}
    known_specs: dict[str, set[str]] = {k: {v} for k, v in (current_spec_hashes or {}).items()}
    approvals: list[tuple[LedgerEntry, dict[str, Any]]] = []
    revoked_approvals: set[int] = set()
    decisions: list[tuple[LedgerEntry, dict[str, Any]]] = []
    revoked_decisions: set[int] = set()

    for e in entries:
        rec, payload, kind = e.record, e.payload, e.kind
        step_id = _str(rec.get("step_id"))
        spec_hash = _str(rec.get("spec_hash"))
        actor = _dict(rec.get("actor"))
        if kind == "principal":
            oid = _int(payload.get("role_oid"))
            if oid is not None:
                roles = _list(payload.get("roles"))
                recorded[oid] = PrincipalNow(
                    oid, _str(payload.get("display_name")), _str(payload.get("kind")), tuple(str(r) for r in roles)
                )
            continue
        if kind == "approval":
            approvals.append((e, payload))
            continue
        if kind == "approval_revocation":
            if (aid := _int(payload.get("approval_id"))) is not None:
                revoked_approvals.add(aid)
            continue
        if kind == "decision":
            decisions.append((e, payload))
            continue
        if kind == "decision_revocation":
            if (did := _int(payload.get("decision_id"))) is not None:
                revoked_decisions.add(did)
            continue
        if step_id is None:
            continue
        if kind == "policy_decision" and payload.get("allow") is True:
            allowing[e.seq] = (step_id, _str(e.record.get("trace_id")))
        if kind in ("commit", "rollback") and allowing.get(_int(payload.get("policy_decision_seq")) or 0) != (
            step_id,
            _str(e.record.get("trace_id")),
        ):
            continue  # an outcome without the allowing policy decision of its own trace never counts
        history = steps.setdefault(step_id, StepHistory())
        if kind in ("rehearsal", "commit") and spec_hash:
            known_specs.setdefault(step_id, set()).add(spec_hash)
        if kind == "rehearsal":
            history.rehearsals.append(
                RehearsalFact(
                    seq=e.seq,
                    spec_hash=spec_hash,
                    plan_hash=_str(payload.get("plan_hash")),
                    outcome=_str(payload.get("outcome")),
                    entry_schema_hash=_str(_dig(payload, "fingerprints", "entry", "schema_hash")),
                    actor_role_oid=_int(actor.get("role_oid")),
                    actor_principal=_str(actor.get("principal")),
                )
            )
        elif kind == "commit" and payload.get("outcome") == APPLIED:
            history.commits.append(
                CommitFact(
                    seq=e.seq,
                    spec_hash=spec_hash,
                    plan_hash=_str(payload.get("plan_hash")),
                    run_id=_str(payload.get("run_id")),
                    outcome=APPLIED,
                    schema_hash_before=_str(_dig(payload, "fingerprint_before", "schema_hash")),
                    schema_hash_after=_str(_dig(payload, "fingerprint_after", "schema_hash")),
                    actor_role_oid=_int(actor.get("role_oid")),
                )
            )
        elif kind == "rollback" and payload.get("outcome") == APPLIED:
            history.rollbacks.append(
                RollbackFact(e.seq, _int(payload.get("of_commit_seq")), _str(payload.get("run_id")), APPLIED)
            )

    now = {**recorded, **(principals or {})}
    for e, payload in approvals:
        step_id = _str(e.record.get("step_id"))
        aid = _int(payload.get("approval_id"))
        if step_id is None or aid is None:
            continue
        bound = _str(e.record.get("spec_hash")) or ""
        subject, spec_hash = SUBJECT_STEP, bound
        for candidate in known_specs.get(step_id, ()):
            if rollback_subject_hash(candidate) == bound:
                subject, spec_hash = SUBJECT_ROLLBACK, candidate
        steps.setdefault(step_id, StepHistory()).approvals.append(
            _approval(e, payload, aid, step_id, subject, spec_hash, now, aid in revoked_approvals)
        )
    decision_facts = []
    for e, payload in decisions:
        did = _int(payload.get("decision_id"))
        if did is None:
            continue
        actor = _dict(e.record.get("actor"))
        oid = _int(actor.get("role_oid")) or 0
        who = now.get(oid)
        decision_facts.append(
            DecisionFact(
                id=did,
                decision=str(payload.get("decision")),
                verdict=str(payload.get("verdict")),
                principal=_str(actor.get("principal")),
                role_oid=oid,
                kind=who.kind if who else None,
                is_superuser=who.is_superuser if who else False,
                expires_at=parse_time(payload.get("expires_at")),
                revoked=did in revoked_decisions,
                ledger_seq=e.seq,
            )
        )
    return LedgerView(steps, tuple(decision_facts), now)


def _approval(
    e: LedgerEntry,
    payload: dict[str, Any],
    aid: int,
    step_id: str,
    subject: str,
    spec_hash: str,
    principals: Mapping[int, PrincipalNow],
    revoked: bool,
) -> ApprovalFact:
    actor = _dict(e.record.get("actor"))
    oid = _int(actor.get("role_oid")) or 0
    who = principals.get(oid)
    signed_as = _list(payload.get("approver_roles"))
    # The roles it signed with AND still holds: a sovereign stripped of the role stops counting.
    roles = tuple(str(r) for r in signed_as if who is not None and r in who.roles)
    return ApprovalFact(
        id=aid,
        step_id=step_id,
        verdict=str(payload.get("verdict")),
        principal=_str(actor.get("principal")),
        role_oid=oid,
        kind=who.kind if who else None,
        roles=roles,
        is_superuser=who.is_superuser if who else False,
        spec_hash=spec_hash,
        plan_hash=str(payload.get("plan_hash")),
        system_identifier=str(_dig(payload, "target", "system_identifier")),
        database=str(_dig(payload, "target", "database")),
        expires_at=parse_time(payload.get("expires_at")),
        revoked=revoked,
        subject=subject,
        ledger_seq=e.seq,
        role=_str(actor.get("role")),
    )


# --------------------------------------------------------------------------- the projection


@dataclass(frozen=True)
class StepState:
    step_id: str
    state: str
    spec_hash_current: str
    last_rehearsal_seq: int | None  # the latest rehearsal of the step, any outcome or spec
    last_rehearsal_outcome: str | None
    last_rehearsal_spec_hash: str | None
    commit_seq: int | None  # the commit in force (state committed), else the last one rolled back
    committed_spec_hash: str | None
    rollback_seq: int | None
    approval_ids: tuple[int, ...]  # the approvals that count now (state approved)
    epoch_seq: int
    detail: str  # one sentence: why the step is in this state


def project_states(
    entries: Sequence[LedgerEntry],
    project: Project,
    *,
    db_now: datetime,
    target: tuple[str, str] | None = None,
    principals: Mapping[int, PrincipalNow] | None = None,
) -> dict[str, StepState]:
    """Every step's state, rebuilt from the ledger alone. `target` (system identifier, database) makes
    approvals recorded in another database (a cloned ledger) not count; `principals` are live facts about
    approvers (kind, roles, superuser) that override the ledger's ``principal`` records."""
    view = read_ledger(
        entries, principals=principals, current_spec_hashes={s.id: s.hash for s in project.steps.values()}
    )
    return project_view(view, project, db_now=db_now, target=target)


def project_view(
    view: LedgerView, project: Project, *, db_now: datetime, target: tuple[str, str] | None = None
) -> dict[str, StepState]:
    return {step_id: _project_step(view, project, step_id, db_now, target) for step_id in project.steps}


def _project_step(
    view: LedgerView, project: Project, step_id: str, db_now: datetime, target: tuple[str, str] | None
) -> StepState:
    step = project.steps[step_id]
    plan = project.plan_of(step_id)
    h = view.history(step_id)
    last = h.rehearsals[-1] if h.rehearsals else None
    commit, rollback = h.last_commit, h.last_rollback

    def make(state: str, detail: str, approvals: tuple[int, ...] = ()) -> StepState:
        return StepState(
            step_id=step_id,
            state=state,
            spec_hash_current=step.hash,
            last_rehearsal_seq=last.seq if last else None,
            last_rehearsal_outcome=last.outcome if last else None,
            last_rehearsal_spec_hash=last.spec_hash if last else None,
            commit_seq=commit.seq if commit else None,
            committed_spec_hash=commit.spec_hash if commit else None,
            rollback_seq=rollback.seq if rollback else None,
            approval_ids=approvals,
            epoch_seq=h.epoch_seq,
            detail=detail,
        )

    if h.committed:
        assert commit is not None
        return make(COMMITTED, f"{step_id} was committed by ledger record {commit.seq}")
    fallback = ROLLED_BACK if rollback is not None else PLANNED
    r = h.latest_rehearsal(after=h.epoch_seq)
    if r is None:
        if rollback is not None:
            return make(ROLLED_BACK, f"{step_id} was rolled back by ledger record {rollback.seq}")
        return make(PLANNED, f"{step_id} has not been rehearsed")
    if r.spec_hash != step.hash or plan is None or r.plan_hash != plan.hash or r.outcome != "passed":
        if r.outcome != "passed":
            why = f"its latest rehearsal (seq {r.seq}) did not pass ({r.outcome})"
        elif r.spec_hash != step.hash:
            why = f"its latest rehearsal (seq {r.seq}) is of another spec; the spec changed since"
        else:
            why = f"its latest rehearsal (seq {r.seq}) ran under another plan; the plan changed since"
        return make(fallback, f"{step_id} needs a rehearsal: {why}")
    count = count_approvals(
        h.approvals,
        step_id=step_id,
        spec_hash=step.hash,
        plan_hash=plan.hash,
        subject=SUBJECT_STEP,
        required=step.signers,
        signer_roles=step.signer_roles,
        db_now=db_now,
        system_identifier=target[0] if target else None,
        database=target[1] if target else None,
        rehearser=(r.actor_role_oid, r.actor_principal),
        actor=None,
        epoch_seq=h.epoch_seq,
    )
    if count.holds:
        ids = tuple(a.id for a in count.counted)
        return make(
            APPROVED,
            f"{step_id} is rehearsed (seq {r.seq}) and approved by "
            f"{', '.join(a.principal or str(a.role_oid) for a in count.counted)}",
            ids,
        )
    return make(
        REHEARSED,
        f"{step_id} passed rehearsal seq {r.seq}; {len(count.counted)} of {step.signers} approval(s) in force",
    )
