"""Drift: the live world against the fingerprint recorded by the last commit or rollback.

Seed 000: "Drift becomes ledger artifacts." Any difference is appended to the ledger as a ``drift``
record naming what changed, and reported as a readable diff (exit 6). No difference appends nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from gcos import fingerprint, history, ledger
from gcos.domain import Kind
from gcos.errors import ReverifyMismatch, SpecError

FORMAT_VERSION = 1


@dataclass(frozen=True)
class DriftResult:
    baseline_seq: int | None  # the commit/rollback record compared against
    baseline_step: str | None
    baseline_hash: str | None
    live_hash: str | None
    differences: tuple[str, ...]
    ledger_seq: int | None = None

    @property
    def ok(self) -> bool:
        return not self.differences


def detect(conn: psycopg.Connection[Any]) -> DriftResult:
    """Compare the live world with the last commit's (or rollback's) fingerprint; record drift if any. Only a
    commit or rollback that counts (history.py: applied and backed by an allowing policy decision) is a baseline."""
    base = history.read_now(conn).baseline
    if base is None:
        return DriftResult(None, None, None, None, ())
    payload = base.payload
    full = payload.get("fingerprint_after_full")
    summary = payload.get("fingerprint_after") or {}
    watch = tuple(sorted((full or summary).get("tables", {})))
    live = fingerprint.take(conn, watch=watch)
    if full:
        try:
            recorded = fingerprint.Fingerprint.from_json(full)
        except (ValueError, KeyError, TypeError) as exc:
            raise SpecError(f"the fingerprint in ledger record {base.seq} cannot be read ({exc}).") from exc
        diffs = [str(d) for d in fingerprint.diff(recorded, live) if d.category != fingerprint.RESIDUE_CATEGORY]
    else:
        diffs = []
        if summary.get("schema_hash") != live.schema_hash:
            diffs.append(f"schema {summary.get('schema_hash', '?')[:12]}… → {live.schema_hash[:12]}…")
        for table, state in sorted(summary.get("tables", {}).items()):
            now = live.tables.get(table)
            if now is None or (now.rows, now.content) != (state.get("rows"), state.get("content")):
                diffs.append(f"table_data {table} changed")
    result = DriftResult(base.seq, base.record.get("step_id"), summary.get("hash"), live.hash, tuple(diffs))
    if not diffs:
        return result
    entry = ledger.append(
        conn,
        Kind.DRIFT,
        {
            "format_version": FORMAT_VERSION,
            "baseline_seq": base.seq,
            "baseline_hash": summary.get("hash"),
            "live_hash": live.hash,
            "live_schema_hash": live.schema_hash,
            "differences": list(diffs[:200]),
        },
        step_id=base.record.get("step_id"),
    )
    drifted = DriftResult(
        result.baseline_seq, result.baseline_step, result.baseline_hash, live.hash, result.differences, entry.seq
    )
    shown = "; ".join(diffs[:3]) + (f" (and {len(diffs) - 3} more)" if len(diffs) > 3 else "")
    raise ReverifyMismatch(
        f"the live world drifted from the fingerprint recorded after ledger record {base.seq} "
        f"({base.record.get('step_id')} {base.kind}): {shown}; recorded as drift at seq {entry.seq} — "
        "find out who changed it before going on.",
        details=drifted,
    )
