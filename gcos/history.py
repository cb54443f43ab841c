"""The ONE reader of the ledger's history: every step's rehearsals, the commit in force, the last rollback and the
open batched run, all projected from ledger entries the same way (the drift baseline is the kernel's:
``gcos.record_drift``).

What counts (the definition ``gcos._step_history`` in gcos/sql/010_gates.sql uses, so the client and the
gates agree): a ``commit`` or ``rollback`` record counts only with outcome ``applied`` AND naming, in
``policy_decision_seq``, an earlier allowing ``policy_decision`` of the same step and the same trace. A
record without one (a superuser can append anything) never counts: it commits nothing, rolls nothing back
and is no drift baseline. "The commit in force" is the last counted commit when no counted rollback follows.

The open batched run mirrors ``gcos._batch_open`` (013): the step's latest ``batch_started`` record with no
later ``commit`` record of the step with outcome applied. It is *interrupted* (resumable with ``gcos commit``)
when no ``stop`` or ``commit_refused`` record of that run follows its latest start or resume: it began and
neither finished nor stopped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from gcos.domain import Kind, Outcome
from gcos.ledger import LedgerEntry


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
    entry: LedgerEntry | None = field(default=None, compare=False, repr=False)  # the record itself


@dataclass(frozen=True)
class RollbackFact:
    seq: int
    of_commit_seq: int | None
    run_id: str | None
    outcome: str | None
    entry: LedgerEntry | None = field(default=None, compare=False, repr=False)


@dataclass
class StepHistory:
    rehearsals: list[RehearsalFact] = field(default_factory=list)  # every rehearsal, any outcome
    commits: list[CommitFact] = field(default_factory=list)  # counted only (applied and backed)
    rollbacks: list[RollbackFact] = field(default_factory=list)  # counted only (applied and backed)
    open_run: LedgerEntry | None = None  # the batch_started record of an unfinished batched run
    run_segment: LedgerEntry | None = None  # the open run's latest batch_started or batch_resumed record
    run_ended: LedgerEntry | None = None  # a stop/commit_refused of the open run after its latest segment

    @property
    def interrupted(self) -> bool:
        """A batched run began (or resumed) and neither finished nor stopped: it resumes with gcos commit."""
        return self.open_run is not None and self.run_ended is None

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
    def commit_in_force(self) -> CommitFact | None:
        """The applied commit: the last counted commit when no counted rollback follows it."""
        return self.last_commit if self.committed else None

    @property
    def epoch_seq(self) -> int:
        """The seq of the last commit or rollback: rehearsals and approvals before it are spent."""
        seqs = [x.seq for x in (self.last_commit, self.last_rollback) if x is not None]
        return max(seqs, default=0)

    def latest_rehearsal(self, *, after: int = 0, before: int | None = None) -> RehearsalFact | None:
        found = [r for r in self.rehearsals if r.seq > after and (before is None or r.seq < before)]
        return found[-1] if found else None


@dataclass(frozen=True)
class History:
    steps: dict[str, StepHistory]

    def step(self, step_id: str) -> StepHistory:
        return self.steps.get(step_id, StepHistory())


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


def _trace(record: dict[str, Any]) -> tuple[bool, Any]:
    """A record's trace as SQL compares ``record -> 'trace_id'``: a missing key equals nothing."""
    return ("trace_id" in record, record.get("trace_id"))


def read(entries: Iterable[LedgerEntry]) -> History:
    """Every step's history, from ledger entries (any order; read in seq order)."""
    allowing: dict[int, tuple[str, tuple[bool, Any]]] = {}  # allowing policy decision seq -> (step, trace)
    steps: dict[str, StepHistory] = {}
    for e in sorted(entries, key=lambda e: e.seq):
        rec, payload, kind = e.record, e.payload, e.kind
        step_id = _str(rec.get("step_id"))
        if step_id is None:
            continue
        if kind == Kind.POLICY_DECISION:
            if payload.get("allow") is True:
                allowing[e.seq] = (step_id, _trace(rec))
            continue
        history = steps.setdefault(step_id, StepHistory())
        applied = payload.get("outcome") == Outcome.APPLIED
        _track_run(history, e, applied)
        if kind == Kind.REHEARSAL:
            history.rehearsals.append(_rehearsal(e))
            continue
        if kind not in (Kind.COMMIT, Kind.ROLLBACK) or not applied:
            continue
        backer = allowing.get(_int(payload.get("policy_decision_seq")) or 0)
        if backer is None or backer[0] != step_id or not backer[1][0] or backer[1] != _trace(rec):
            continue
        if kind == Kind.COMMIT:
            history.commits.append(_commit(e))
        else:
            of_commit = _int(payload.get("of_commit_seq"))
            history.rollbacks.append(RollbackFact(e.seq, of_commit, _str(payload.get("run_id")), Outcome.APPLIED, e))
    return History(steps)


def _track_run(history: StepHistory, e: LedgerEntry, applied: bool) -> None:
    """The open batched run (as gcos._batch_open: any applied commit record closes it), its latest segment and
    whether a stop or refusal of that run came after the segment (then it stopped, not interrupted)."""
    kind = e.kind
    if kind == Kind.BATCH_STARTED:
        history.open_run, history.run_segment, history.run_ended = e, e, None
    elif kind == Kind.COMMIT and applied:
        history.open_run = history.run_segment = history.run_ended = None
    elif history.open_run is not None and e.payload.get("run_id") == history.open_run.payload.get("run_id"):
        if kind == Kind.BATCH_RESUMED:
            history.run_segment, history.run_ended = e, None
        elif kind in (Kind.STOP, Kind.COMMIT_REFUSED):
            history.run_ended = e


def _rehearsal(e: LedgerEntry) -> RehearsalFact:
    actor = _dict(e.record.get("actor"))
    return RehearsalFact(
        seq=e.seq,
        spec_hash=_str(e.record.get("spec_hash")),
        plan_hash=_str(e.payload.get("plan_hash")),
        outcome=_str(e.payload.get("outcome")),
        entry_schema_hash=_str(_dig(e.payload, "fingerprints", "entry", "schema_hash")),
        actor_role_oid=_int(actor.get("role_oid")),
        actor_principal=_str(actor.get("principal")),
    )


def _commit(e: LedgerEntry) -> CommitFact:
    return CommitFact(
        seq=e.seq,
        spec_hash=_str(e.record.get("spec_hash")),
        plan_hash=_str(e.payload.get("plan_hash")),
        run_id=_str(e.payload.get("run_id")),
        outcome=Outcome.APPLIED,
        schema_hash_before=_str(_dig(e.payload, "fingerprint_before", "schema_hash")),
        schema_hash_after=_str(_dig(e.payload, "fingerprint_after", "schema_hash")),
        actor_role_oid=_int(_dict(e.record.get("actor")).get("role_oid")),
        entry=e,
    )


def edited_since_commit(step_id: str, commit_seq: int | None, committed_spec: str | None) -> str:
    """What to do about a committed step whose spec on disk is not the one committed (said by gcos status and
    gcos apply alike): the commit in force is of another spec, and the kernel rolls back only with the spec as
    committed, so skipping would call the new spec applied and committing over it would stack a second commit."""
    spec = (committed_spec or "?")[:12]
    return (
        f"the spec of {step_id} changed since its commit (ledger seq {commit_seq}, spec {spec}…): "
        f"restore the spec as committed, then either roll it back (gcos rollback {step_id}) and commit the new spec, "
        "or leave it and put the change in a new step (gcos new STEP --sql FILE)"
    )
