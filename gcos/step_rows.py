"""One row per step for `gcos status`, in the style of `flyway info`: the state, when it got there, by whom,
and what is next, all read from the ledger (and the gates the database evaluated). A committed step is done:
its row says so and nothing is left to do; a batched run that began and neither finished nor stopped is
"interrupted, resumable" with the command that resumes it."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from gcos import domain, gates, history
from gcos.ledger import LedgerEntry
from gcos.state import StepState

INTERRUPTED = "interrupted, resumable"
EDITED = "committed, spec changed"


@dataclass(frozen=True)
class StepRow:
    shown: str  # the state as shown: a domain state, "interrupted, resumable" or "committed, spec changed"
    when: str | None  # the ledger time of the record that put the step there
    by: str | None  # the principal who wrote that record
    next: str  # what is next, ending with the command that does it ("done" for a committed step)
    done: bool
    resume: dict[str, Any] | None = None  # an interrupted run: run_id, watermark, batches, started_seq


def _who(entry: LedgerEntry | None) -> str | None:
    actor = entry.record.get("actor") if entry else None
    if not isinstance(actor, dict):
        return None
    name = actor.get("principal") or actor.get("role")
    return str(name) if name else None


def _at(entry: LedgerEntry | None) -> str | None:
    at = entry.record.get("recorded_at") if entry else None
    return at if isinstance(at, str) else None


def _latest_counted_approval(
    entries: dict[int, LedgerEntry], step_id: str, counted: tuple[int, ...]
) -> LedgerEntry | None:
    """The latest approval record among those gate 5 counts (`counted`: approval ids, its evidence): a revoked
    approval, an expired one or one of the rollback is not why the step is approved, so it names nobody."""
    found = [
        e
        for e in entries.values()
        if e.kind == domain.Kind.APPROVAL and e.record.get("step_id") == step_id and _approval_id(e) in counted
    ]
    return max(found, key=lambda e: e.seq) if found else None


def _approval_id(entry: LedgerEntry) -> int | None:
    found = entry.payload.get("approval_id")
    return found if isinstance(found, int) and not isinstance(found, bool) else None


def row(
    projected: StepState,
    h: history.StepHistory,
    entries: dict[int, LedgerEntry],
    decision: gates.PolicyDecisionRecord | None,
    run: dict[str, Any] | None = None,
) -> StepRow:
    """The row of one step: `entries` by seq, `decision` the gates as the database judged them (None: not
    judged), `run` the open run's row of gcos.batch_runs where one is open."""
    step_id = projected.step_id
    if projected.state == domain.StepState.COMMITTED:
        commit = entries.get(projected.commit_seq or 0)
        if projected.committed_spec_hash != projected.spec_hash_current:
            return StepRow(
                EDITED,
                _at(commit),
                _who(commit),
                history.edited_since_commit(step_id, projected.commit_seq, projected.committed_spec_hash),
                False,
            )
        return StepRow(str(projected.state), _at(commit), _who(commit), "done", True)
    if h.interrupted and h.open_run is not None:
        segment = h.run_segment or h.open_run
        mark = run.get("watermark") if run else None
        after = f" after key {mark} ({run.get('batches')} batch(es) committed)" if run and mark is not None else ""
        resume = {"run_id": h.open_run.payload.get("run_id"), "started_seq": h.open_run.seq, **(run or {})}
        return StepRow(
            INTERRUPTED, _at(segment), _who(segment), f"resume it{after}: gcos commit {step_id}", False, resume
        )
    by_state = {
        domain.StepState.PLANNED: None,
        domain.StepState.ROLLED_BACK: entries.get(projected.rollback_seq or 0),
        domain.StepState.REHEARSED: entries.get(projected.last_rehearsal_seq or 0),
        domain.StepState.APPROVED: _latest_counted_approval(entries, step_id, projected.approval_ids),
    }
    entry = by_state.get(projected.state)
    return StepRow(str(projected.state), _at(entry), _who(entry), _next(step_id, decision), False)


def _next(step_id: str, decision: gates.PolicyDecisionRecord | None) -> str:
    """What opens the first gate that does not hold, or the commit when all hold."""
    if decision is None:
        return f"gcos status {step_id}"
    if decision.allow:
        return f"commit it: gcos commit {step_id}"
    first = decision.first_failed
    assert first is not None
    said = first.remedy or first.command or f"gcos status {step_id}"
    return re.sub(r"\bSTEP\b", step_id, said)  # a remedy written for any step, said of this one


def open_run(conn: psycopg.Connection[Any], run_id: Any) -> dict[str, Any] | None:
    """Where an open kernel run stands (gcos.batch_runs: every gcos role may read it): its last committed batch."""
    found = conn.execute(
        "SELECT watermark, batches, rows_written, updated_at FROM gcos.batch_runs WHERE run_id = %s",
        (str(run_id),),
    ).fetchone()
    if found is None:
        return None
    return {"watermark": found[0], "batches": found[1], "rows_written": found[2], "updated_at": found[3].isoformat()}


def rows(
    conn: psycopg.Connection[Any],
    states: Mapping[str, StepState],
    entries: Sequence[LedgerEntry],
    decisions: Mapping[str, gates.PolicyDecisionRecord],
) -> dict[str, StepRow]:
    """The row of every step in `decisions`, reading the open runs' progress from the database."""
    read = history.read(entries)
    by_seq = {e.seq: e for e in entries}
    out = {}
    for step_id, decision in decisions.items():
        h = read.step(step_id)
        run = open_run(conn, h.open_run.payload.get("run_id")) if h.interrupted and h.open_run else None
        out[step_id] = row(states[step_id], h, by_seq, decision, run)
    return out
