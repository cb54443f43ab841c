"""The record of one rehearsal: its result, its ledger payload, and the evidence files an auditor reads
(rehearsals/<STEP>/<time>-seq<N>.json and .md, the Markdown from evidence/templates/rehearsal.md.j2).

Shared by the client rehearsal (rehearsal.py) and the kernel's (kernel.py): both write the same files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from gcos import ledger
from gcos.checks import CheckResult
from gcos.execute import Footprint, StopResult, ledger_safe

FORMAT_VERSION = 1


@dataclass(frozen=True)
class RehearsalResult:
    step: str
    ref: str
    spec_hash: str
    plan_id: str | None
    plan_hash: str | None
    run_id: str
    outcome: str  # passed | stopped | success_failed | mutation_failed | rollback_unproven | residue | ...
    message: str
    reverify: tuple[CheckResult, ...] = ()
    stops: tuple[StopResult, ...] = ()
    success: tuple[CheckResult, ...] = ()
    footprint: Footprint | None = None
    entry: dict[str, Any] = field(default_factory=dict)
    inside: dict[str, Any] = field(default_factory=dict)
    after_rollback: dict[str, Any] = field(default_factory=dict)
    exit: dict[str, Any] = field(default_factory=dict)
    differences: tuple[str, ...] = ()
    residue: tuple[str, ...] = ()
    duration_us: int = 0
    ledger_seq: int | None = None
    evidence: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.outcome == "passed"


def _check(c: CheckResult) -> dict[str, Any]:
    return {"name": c.name, "expected": c.expected, "actual": c.actual, "ok": c.ok, "error": c.error}


def payload(result: RehearsalResult) -> dict[str, Any]:
    """The rehearsal as a ledger payload and evidence document."""
    fp = result.footprint
    body: dict[str, Any] = ledger_safe(
        {
            "format_version": FORMAT_VERSION,
            "run_id": result.run_id,
            "step": result.step,
            "ref": result.ref,
            "plan_id": result.plan_id,
            "plan_hash": result.plan_hash,
            "outcome": result.outcome,
            "message": result.message,
            "fingerprints": {
                "entry": result.entry,
                "inside": result.inside,
                "after_rollback": result.after_rollback,
                "exit": result.exit,
            },
            "footprint": {
                "new_tables": list(fp.new_tables),
                "dropped_tables": list(fp.dropped_tables),
                "row_deltas": fp.row_deltas,
            }
            if fp
            else None,
            "checks": {
                "reverify": [_check(c) for c in result.reverify],
                "stop": [{"name": s.name, "kind": s.kind, "held": s.held, "detail": s.detail} for s in result.stops],
                "success": [_check(c) for c in result.success],
            },
            "differences": list(result.differences[:50]),
            "residue": {"sequences": list(result.residue)},
            "duration_us": result.duration_us,
        }
    )
    return body


def write_evidence(
    evidence_dir: Path, result: RehearsalResult, entry: ledger.LedgerEntry, body: dict[str, Any]
) -> tuple[str, ...]:
    """rehearsals/<STEP>/<time>-seq<N>.json and .md: what an auditor reads, tied to the ledger record."""
    stamp = str(entry.record.get("recorded_at", "")).replace(":", "").replace("-", "")
    folder = evidence_dir / result.step
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{stamp}-seq{entry.seq}"
    document = {
        "format_version": FORMAT_VERSION,
        "ledger": {"seq": entry.seq, "hash": entry.hash, "recorded_at": entry.record.get("recorded_at")},
        "spec_hash": result.spec_hash,
        **body,
    }
    json_path = folder / f"{name}.json"
    json_path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    md_path = folder / f"{name}.md"
    md_path.write_text(markdown(result, entry), encoding="utf-8")
    return (str(json_path), str(md_path))


@cache
def _template() -> jinja2.Template:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("gcos.evidence", "templates"),
        autoescape=False,  # Markdown, written as the values are (the evidence files are hashed)
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return env.get_template("rehearsal.md.j2")


def markdown(result: RehearsalResult, entry: ledger.LedgerEntry) -> str:
    """The rehearsal's Markdown evidence: outcome, hashes, differences, footprint, checks, stops."""
    return _template().render(
        result=result,
        entry=entry,
        recorded_at=entry.record.get("recorded_at"),
        seconds=f"{result.duration_us / 1e6:.3f}",
        tables=(("Re-verify", result.reverify), ("Success evidence", result.success)),
    )
