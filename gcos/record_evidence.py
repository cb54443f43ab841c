"""Evidence files of the records that change or judge the world after a rehearsal: commits, rollbacks, their
refusals and stops, and drift. They sit beside the rehearsals' (gcos/rehearsal_evidence.py), in
``rehearsals/<STEP>/<time>-seq<N>-<kind>.json`` and ``.md``, so a step's folder tells its whole story in order.

The JSON holds the whole ledger record (canonical text included, whose sha256 is the record's hash), so each
file can be checked against the chain by hand; the Markdown is what a reader looks at first: outcome, what it
rested on (causation: rehearsal, approvals, policy decision), the gates, fingerprints, footprint, differences.

``written_since`` is the hook the commands call after commit, rollback or drift, successful or refused: it
writes the files of every such record the action appended (seq above the head read before it)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import psycopg

from gcos import ledger
from gcos.domain import Kind

FORMAT_VERSION = 1
KINDS = (Kind.COMMIT, Kind.ROLLBACK, Kind.COMMIT_REFUSED, Kind.ROLLBACK_REFUSED, Kind.STOP, Kind.DRIFT)
NO_STEP = "_world"  # the folder of a record that names no step


def file_stem(entry: ledger.LedgerEntry) -> str:
    """``<time>-seq<N>-<kind>``: sorts with the rehearsals' ``<time>-seq<N>`` files of the same folder."""
    stamp = str(entry.record.get("recorded_at", "")).replace(":", "").replace("-", "")
    return f"{stamp}-seq{entry.seq}-{entry.kind}"


def document(entry: ledger.LedgerEntry) -> dict[str, Any]:
    """The JSON evidence of one record: the record itself, and its canonical text to hash."""
    return {
        "format_version": FORMAT_VERSION,
        "ledger": {
            "seq": entry.seq,
            "hash": entry.hash,
            "prev_hash": entry.prev_hash,
            "recorded_at": entry.record.get("recorded_at"),
        },
        "kind": entry.kind,
        "step_id": entry.record.get("step_id"),
        "spec_hash": entry.record.get("spec_hash"),
        "trace_id": entry.record.get("trace_id"),
        "actor": entry.record.get("actor"),
        "payload": entry.payload,
        "canonical": entry.canonical,
    }


def write_evidence(evidence_dir: Path, entry: ledger.LedgerEntry) -> tuple[str, ...]:
    """rehearsals/<STEP>/<time>-seq<N>-<kind>.json and .md for one record of KINDS."""
    folder = evidence_dir / str(entry.record.get("step_id") or NO_STEP)
    folder.mkdir(parents=True, exist_ok=True)
    json_path = folder / f"{file_stem(entry)}.json"
    json_path.write_text(json.dumps(document(entry), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    md_path = folder / f"{file_stem(entry)}.md"
    md_path.write_text(markdown(entry), encoding="utf-8")
    return (str(json_path), str(md_path))


@cache
def _template() -> jinja2.Template:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("gcos.evidence", "templates"),
        autoescape=False,  # Markdown, written as the values are (as the rehearsals' files)
        undefined=jinja2.ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return env.get_template("record.md.j2")


def markdown(entry: ledger.LedgerEntry) -> str:
    """The record's Markdown evidence."""
    p = entry.payload
    decision = p if entry.kind == Kind.POLICY_DECISION else p.get("policy_decision")
    return _template().render(
        entry=entry,
        p=p,
        decision=decision if isinstance(decision, dict) else None,
        causation=p.get("causation") if isinstance(p.get("causation"), dict) else None,
        actor=entry.record.get("actor") if isinstance(entry.record.get("actor"), dict) else {},
    )


def head_seq(conn: psycopg.Connection[Any]) -> int:
    """The last seq of the ledger (0 when empty)."""
    row = conn.execute("SELECT COALESCE(max(seq), 0) FROM gcos.ledger").fetchone()
    return int(row[0]) if row else 0


def written_since(conn: psycopg.Connection[Any], evidence_dir: Path, after: int, step_id: str | None) -> list[str]:
    """Write the evidence files of every record of KINDS after seq `after` (of `step_id`, or any step when
    None); return their paths."""
    rows = conn.execute("SELECT seq FROM gcos.ledger WHERE seq > %s ORDER BY seq", (after,)).fetchall()
    files: list[str] = []
    for row in rows:
        entry = ledger.read_one(conn, int(row[0]))
        if entry.kind in KINDS and (step_id is None or entry.record.get("step_id") == step_id):
            files += write_evidence(evidence_dir, entry)
    return files


@contextmanager
def recorded(
    connect: Callable[[], psycopg.Connection[Any]], evidence_dir: Path, step_id: str | None
) -> Iterator[list[str]]:
    """Around a commit, rollback or drift: read the head first, then write the files of what the action
    appended, whether it returned or raised (the files of a refusal are evidence too). A failure to write them
    after a refusal is added as a note to the refusal, which is still what the caller sees."""
    with connect() as conn:
        before = head_seq(conn)
    files: list[str] = []
    try:
        yield files
    except BaseException as exc:
        try:
            with connect() as conn:
                files += written_since(conn, evidence_dir, before, step_id)
        except Exception as late:  # the refusal is the news; say the files are missing too
            exc.add_note(f"Its evidence files could not be written to {evidence_dir}: {late}")
        raise
    with connect() as conn:
        files += written_since(conn, evidence_dir, before, step_id)
