"""The rehearsals a step's report shows: the one its commit rested on (the causation the kernel records, 026)
first and in full, then later attempts, then earlier ones, each with its role; a step never committed leads with
its latest rehearsal. Issue 12: a committed step's report must not lead with a later, failed attempt."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gcos import ledger
from gcos.domain import Kind
from gcos.evidence.common import as_dict, as_list
from gcos.spec import StepSpec


def actor_name(e: ledger.LedgerEntry) -> Any:
    """Who wrote a record: the principal's name, else the database role."""
    return as_dict(e.record.get("actor")).get("principal") or as_dict(e.record.get("actor")).get("role")


def fingerprint_view(fp: Any) -> dict[str, Any]:
    """A record's fingerprint summary as reports show it; `established` says whether the kernel measured it or
    proved it unchanged (047/052), None in records that do not say."""
    fp = as_dict(fp)
    tables = as_dict(fp.get("tables"))
    return {
        "hash": fp.get("hash"),
        "schema_hash": fp.get("schema_hash"),
        "established": fp.get("established"),
        "tables": {name: as_dict(tables[name]) for name in sorted(tables)},
    }


def rehearsal_view(e: ledger.LedgerEntry, step: StepSpec) -> dict[str, Any]:
    p = e.payload
    checks = as_dict(p.get("checks"))
    fps = as_dict(p.get("fingerprints"))
    footprint = p.get("footprint")
    return {
        "seq": e.seq,
        "hash": e.hash,
        "recorded_at": e.record.get("recorded_at"),
        "spec_hash": e.record.get("spec_hash"),
        "of_current_spec": e.record.get("spec_hash") == step.hash,
        "actor": actor_name(e),
        "trace_id": e.record.get("trace_id"),
        "run_id": p.get("run_id"),
        "plan_id": p.get("plan_id"),
        "plan_hash": p.get("plan_hash"),
        "outcome": p.get("outcome"),
        "message": p.get("message"),
        "duration_us": p.get("duration_us"),
        "fingerprints": {
            name: fingerprint_view(fps.get(name)) for name in ("entry", "inside", "after_rollback", "exit")
        },
        "footprint": footprint if isinstance(footprint, dict) else None,
        "reverify": [as_dict(c) for c in as_list(checks.get("reverify"))],
        "stop": [as_dict(c) for c in as_list(checks.get("stop"))],
        "success": [as_dict(c) for c in as_list(checks.get("success"))],
        "residue": as_list(as_dict(p.get("residue")).get("sequences")),
        "differences": as_list(p.get("differences")),
    }


def rested_on(own: Sequence[ledger.LedgerEntry]) -> tuple[int, int] | None:
    """(rehearsal seq, commit seq) of the step's last applied commit: the rehearsal its causation names (026),
    else the last passed rehearsal of the committed spec before it (a record older than causation)."""
    commits = [e for e in own if e.kind == Kind.COMMIT and str(e.payload.get("outcome", "")).endswith("applied")]
    if not commits:
        return None
    commit = commits[-1]
    named = as_dict(commit.payload.get("causation")).get("rehearsal_seq")
    if isinstance(named, int) and any(e.seq == named and e.kind == Kind.REHEARSAL for e in own):
        return named, commit.seq
    before = [
        e
        for e in own
        if e.kind == Kind.REHEARSAL
        and e.seq < commit.seq
        and e.record.get("spec_hash") == commit.record.get("spec_hash")
        and e.payload.get("outcome") == "passed"
    ]
    return (before[-1].seq, commit.seq) if before else None


def rehearsal_views(own: Sequence[ledger.LedgerEntry], step: StepSpec) -> dict[str, Any]:
    """The rehearsal the report leads with, in full: the one the step's commit rested on, else the latest; and
    every rehearsal in brief, that one first, then later attempts, then earlier ones (each in ledger order)."""
    rehearsals = [e for e in own if e.kind == Kind.REHEARSAL]
    basis = rested_on(own)
    lead = next((e for e in rehearsals if basis and e.seq == basis[0]), rehearsals[-1] if rehearsals else None)

    if lead is None:
        return {"rehearsal": None, "rehearsals": []}
    first = lead

    def role(e: ledger.LedgerEntry) -> str:
        if e is first:
            return "latest" if basis is None else f"rested on by commit seq {basis[1]}"
        return "later attempt" if e.seq > first.seq else "earlier"

    ordered = [lead] + [e for e in rehearsals if e.seq > lead.seq] + [e for e in rehearsals if e.seq < lead.seq]
    lead_view = {**rehearsal_view(lead, step), "role": role(lead), "commit_seq": basis[1] if basis else None}
    return {
        "rehearsal": lead_view,
        "rehearsals": [
            {
                "seq": e.seq,
                "hash": e.hash,
                "outcome": e.payload.get("outcome"),
                "spec_hash": e.record.get("spec_hash"),
                "recorded_at": e.record.get("recorded_at"),
                "trace_id": e.record.get("trace_id"),
                "role": role(e),
            }
            for e in ordered
        ],
    }
