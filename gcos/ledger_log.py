"""`gcos log [STEP]`: the ledger's history as rows (kind, seq, when, who, trace, outcome), oldest first. It
reads the records as they are; what counts (a commit in force, an approval that holds) is `gcos status`'s."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gcos import history
from gcos.ledger import LedgerEntry


@dataclass(frozen=True)
class LogRow:
    seq: int
    kind: str
    step_id: str | None
    when: str | None
    who: str | None
    trace_id: str | None
    outcome: str


@dataclass(frozen=True)
class LogReport:
    step: str | None  # None: the whole ledger
    rows: tuple[LogRow, ...]
    notes: tuple[str, ...] = ()  # a batched run interrupted, with the command that resumes it


def _outcome(e: LedgerEntry) -> str:
    """One or two words of what the record says happened."""
    p = e.payload
    if isinstance(p.get("outcome"), str):
        return str(p["outcome"])
    if isinstance(p.get("allow"), bool):
        refused = ", ".join(str(g) for g in p.get("failed") or ())
        return "allow" if p["allow"] else f"refused ({refused})" if refused else "refused"
    if isinstance(p.get("verdict"), str):
        return str(p["verdict"])
    decision = p.get("policy_decision")
    if isinstance(decision, dict) and decision.get("allow") is False:
        return f"refused ({', '.join(str(g) for g in decision.get('failed') or ())})"
    return "recorded"


def _who(e: LedgerEntry) -> str | None:
    actor: Any = e.record.get("actor")
    if not isinstance(actor, dict):
        return None
    name = actor.get("principal") or actor.get("role")
    return str(name) if name else None


def rows(entries: Sequence[LedgerEntry], step_id: str | None = None) -> LogReport:
    """Every record (of `step_id` when given) in seq order."""
    out = []
    for e in sorted(entries, key=lambda e: e.seq):
        step = e.record.get("step_id")
        if step_id is not None and step != step_id:
            continue
        at, trace = e.record.get("recorded_at"), e.record.get("trace_id")
        out.append(
            LogRow(
                e.seq,
                e.kind,
                step if isinstance(step, str) else None,
                at if isinstance(at, str) else None,
                _who(e),
                trace if isinstance(trace, str) else None,
                _outcome(e),
            )
        )
    read = history.read(entries)
    notes = tuple(
        f"{sid}: batched run {h.open_run.payload.get('run_id')} (seq {h.open_run.seq}) is interrupted, resumable: "
        f"gcos commit {sid}"
        for sid, h in sorted(read.steps.items())
        if h.interrupted and h.open_run is not None and step_id in (None, sid)
    )
    return LogReport(step_id, tuple(out), notes)
