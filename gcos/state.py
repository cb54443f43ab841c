"""Step states: a projection of the ledger, never stored beside it (CONTRACT.md "Step states"; seed 003).

``planned → rehearsed → approved → committed → rolled_back``:

* **rehearsed** — the step's latest rehearsal since its last commit or rollback passed, on the CURRENT spec
  hash and plan hash (editing the spec or plan, or a later failed rehearsal, falls back to planned);
* **approved** — rehearsed, and gate 5 holds as the database decides it for ``gcos status``
  (``gcos.evaluate_gates`` with ``as_actor`` false: nobody is committing yet); its evidence (the approvals
  that count) is passed in as `approved`, since no approval rule is decided here. An expired or revoked
  approval returns the step to rehearsed;
* **committed** — the step has a commit in force (history.py: a ``commit`` record with outcome ``applied``,
  backed by an allowing policy decision of its step and trace, not followed by such a ``rollback``);
* **rolled_back** — the last commit was rolled back and nothing was rehearsed since.

Refusals, stops and policy decisions are events, not states. :func:`project_states` is a pure function of
ledger entries and gate 5's evidence; :func:`read_states` reads both from a database.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from gcos import domain, gates, history, ledger
from gcos.ledger import LedgerEntry
from gcos.spec import Project

# Aliases: domain.StepState holds the states (this module's StepState is a step's projected state).
PLANNED, REHEARSED, APPROVED, COMMITTED, ROLLED_BACK = (
    domain.StepState.PLANNED,
    domain.StepState.REHEARSED,
    domain.StepState.APPROVED,
    domain.StepState.COMMITTED,
    domain.StepState.ROLLED_BACK,
)
STATES = tuple(domain.StepState)


@dataclass(frozen=True)
class PrincipalNow:
    """A principal as it stands now, live from the database (report.py lists them)."""

    role_oid: int
    name: str | None
    kind: str | None  # None: the role no longer exists
    roles: tuple[str, ...]
    is_superuser: bool = False


def parse_time(text: Any) -> datetime:
    """A ledger time ("2025-01-01T00:00:00.000000Z") as an aware datetime."""
    if not isinstance(text, str):
        raise ValueError(f"not a ledger time: {text!r}")
    return datetime.fromisoformat(text)


# --------------------------------------------------------------------------- the projection


@dataclass(frozen=True)
class StepState:
    step_id: str
    state: domain.StepState
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
    read = history.read(entries)
    return {step_id: _project_step(read, project, step_id, approved or {}) for step_id in project.steps}


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
    read: history.History, project: Project, step_id: str, approved: Mapping[str, tuple[int, ...]]
) -> StepState:
    step = project.steps[step_id]
    plan = project.plan_of(step_id)
    h = read.step(step_id)
    last = h.rehearsals[-1] if h.rehearsals else None
    commit, rollback = h.last_commit, h.last_rollback

    def make(state: domain.StepState, detail: str, approvals: tuple[int, ...] = ()) -> StepState:
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
    if r.spec_hash != step.hash or plan is None or r.plan_hash != plan.hash or r.outcome != domain.Outcome.PASSED:
        if r.outcome != domain.Outcome.PASSED:
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
