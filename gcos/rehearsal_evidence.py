"""The record of one rehearsal: its result, its ledger payload, and the evidence files an auditor reads
(rehearsals/<STEP>/<time>-seq<N>.json and .md, the Markdown from evidence/templates/rehearsal.md.j2).

The kernel rehearses and records (gcos/sql/011); gcos/kernel.py writes these files from what it returned.
"""

from __future__ import annotations

import json
import threading
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gcos import ledger
from gcos.results import RehearsalResult

if TYPE_CHECKING:
    import jinja2

FORMAT_VERSION = 1


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
        "trace_id": entry.record.get("trace_id"),  # the step run's: its approvals and commit carry it too
        "spec_hash": result.spec_hash,
        **body,
    }
    json_path = folder / f"{name}.json"
    json_path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    md_path = folder / f"{name}.md"
    md_path.write_text(markdown(result, entry), encoding="utf-8")
    return (str(json_path), str(md_path))


def preload() -> None:
    """Import jinja2 and compile the template in a thread while the kernel rehearses (about 0.1 s the client
    would otherwise spend after the server's answer, idle meanwhile); write_evidence takes the same cached
    template, waiting for the thread if it is not done. Nothing is written before the result is in."""
    threading.Thread(target=_template, name="gcos-evidence-template", daemon=True).start()


_COMPILING = threading.Lock()  # one compile: the caller waits for preload's thread instead of doing it again


def _template() -> jinja2.Template:
    with _COMPILING:
        return _compiled()


@cache
def _compiled() -> jinja2.Template:
    import jinja2

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
