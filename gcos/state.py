"""Step states: a projection of the ledger, never stored beside it (CONTRACT.md "Step states"; seed 003).

``planned → rehearsed → approved → committed → rolled_back``:

* **rehearsed** — the step's latest rehearsal since its last commit or rollback passed, on the CURRENT spec
  hash and plan hash (editing the spec or plan, or a later failed rehearsal, falls back to planned);
* **approved** — rehearsed, and gate 5 holds as the database decides it for ``gcos status``
  (``gcos.evaluate_gates`` with ``as_actor`` false: nobody is committing yet); its evidence (the approvals
  that count) is passed in as `approved`, since no approval rule is decided here. An expired or revoked
  approval returns the step to rehearsed;
* **committed** — a ``commit`` record with outcome ``applied`` not followed by a ``rollback`` record with
  outcome ``applied``;
* **rolled_back** — the last commit was rolled back and nothing was rehearsed since.

Refusals, stops and policy decisions are events, not states. :func:`project_states` is a pure function of
ledger entries and gate 5's evidence; :func:`read_states` reads both from a database.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from gcos import gates, ledger
from gcos.ledger import LedgerEntry
from gcos.spec import Project

PLANNED, REHEARSED, APPROVED, COMMITTED, ROLLED_BACK = "planned", "rehearsed", "approved", "committed", "rolled_back"
STATES = (PLANNED, REHEARSED, APPROVED, COMMITTED, ROLLED_BACK)
APPLIED = "applied"


# --------------------------------------------------------------------------- the ledger, read as facts


@dataclass(frozen=True)
class PrincipalNow:
    """A principal as it stands now, live from the database (report.py lists them)."""

    role_oid: int
    name: str | None
    kind: str | None  # None: the role no longer exists
    roles: tuple[str, ...]
    is_superuser: bool = False


@dataclass(frozen=True)
class RehearsalFact:
    seq: int
    spec_hash: str | None
    plan_hash: str | None
    outcome: str | None
    entry_schema_hash: str | None
    actor_role_oid: int | None
    actor_principal: str | None = None


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


def _dig(mapping: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(mapping, dict):
            return None
        mapping = mapping.get(key)
    return mapping


def read_ledger(entries: Iterable[LedgerEntry]) -> LedgerView:
    """Every step's rehearsals, and the commits and rollbacks that count: outcome applied, naming an earlier
    allowing policy decision of the same step and trace (an outcome without it never counts)."""
    allowing: dict[int, tuple[str | None, str | None]] = {}  # policy decision seq -> (step, trace) that allowed
    steps: dict[str, StepHistory] = {}
    for e in sorted(entries, key=lambda e: e.seq):
        rec, payload, kind = e.record, e.payload, e.kind
        step_id = _str(rec.get("step_id"))
        if step_id is None or kind not in ("policy_decision", "rehearsal", "commit", "rollback"):
            continue
        trace = _str(rec.get("trace_id"))
        if kind == "policy_decision":
            if payload.get("allow") is True:
                allowing[e.seq] = (step_id, trace)
            continue
        if kind != "rehearsal" and allowing.get(_int(payload.get("policy_decision_seq")) or 0) != (step_id, trace):
            continue
        history = steps.setdefault(step_id, StepHistory())
        spec_hash = _str(rec.get("spec_hash"))
        if kind == "rehearsal":
            actor = _dict(rec.get("actor"))
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
        elif payload.get("outcome") != APPLIED:
            continue
        elif kind == "commit":
            history.commits.append(
                CommitFact(
                    seq=e.seq,
                    spec_hash=spec_hash,
                    plan_hash=_str(payload.get("plan_hash")),
                    run_id=_str(payload.get("run_id")),
                    outcome=APPLIED,
                    schema_hash_before=_str(_dig(payload, "fingerprint_before", "schema_hash")),
                    schema_hash_after=_str(_dig(payload, "fingerprint_after", "schema_hash")),
                    actor_role_oid=_int(_dict(rec.get("actor")).get("role_oid")),
                )
            )
        else:
            history.rollbacks.append(
                RollbackFact(e.seq, _int(payload.get("of_commit_seq")), _str(payload.get("run_id")), APPLIED)
            )
    return LedgerView(steps)


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
    entries: Sequence[LedgerEntry], project: Project, *, approved: Mapping[str, tuple[int, ...]] | None = None
) -> dict[str, StepState]:
    """Every step's state, rebuilt from the ledger. `approved` maps a step id to the evidence of gate 5 (the
    approvals that count) where the database says gate 5 holds for ``gcos status``; a rehearsed step not in
    it is not approved (:func:`read_states` asks the database)."""
    view = read_ledger(entries)
    return {step_id: _project_step(view, project, step_id, approved or {}) for step_id in project.steps}


def read_states(
    conn: psycopg.Connection[Any], project: Project, entries: Sequence[LedgerEntry] | None = None
) -> dict[str, StepState]:
    """Every step's state, from the ledger (`entries`, else read now) and, for each rehearsed step, gate 5 as
    the database decides it for ``gcos status`` (nobody committing), in the caller's transaction if one is open."""
    entries = ledger.read_all(conn) if entries is None else entries
    states = project_states(entries, project)
    approved = {}
    for step_id, current in states.items():
        if current.state == REHEARSED:
            step = project.steps[step_id]
            measured = gates.world(as_actor=False)
            decision = gates.evaluate(
                conn, step, project.plan_of(step_id), action="commit", measured=measured, trace_id=ledger.new_trace_id()
            )
            approvals = decision.gate("approvals")
            if approvals.allow:
                approved[step_id] = approvals.evidence
    return project_states(entries, project, approved=approved) if approved else states


def _project_step(
    view: LedgerView, project: Project, step_id: str, approved: Mapping[str, tuple[int, ...]]
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
    if step_id in approved:
        ids = approved[step_id]
        listed = ", ".join(str(i) for i in ids)
        return make(APPROVED, f"{step_id} is rehearsed (seq {r.seq}) and approved (approval {listed})", ids)
    return make(REHEARSED, f"{step_id} passed rehearsal seq {r.seq}; gate 5 (approvals) does not hold yet")
