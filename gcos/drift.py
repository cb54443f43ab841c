"""Drift: the live world against the fingerprint recorded by the last commit or rollback.

Seed 000: "Drift becomes ledger artifacts." The kernel does it (``gcos.record_drift``, gcos/sql/015): it finds
the baseline (the last commit or rollback that counts, history.py's rule), measures the live world as
gcos_kernel, compares and, when anything differs, appends the ``drift`` record naming what changed itself.
This module only asks and reports: a readable diff and exit 6. No difference appends nothing. No client can
write a drift record of its own (gcos.ledger_append is a superuser's alone).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from gcos import ledger
from gcos.errors import LedgerBroken, ReverifyMismatch, translated

FORMAT_VERSION = 1


@dataclass(frozen=True)
class DriftResult:
    baseline_seq: int | None  # the commit/rollback record compared against
    baseline_step: str | None
    baseline_hash: str | None
    live_hash: str | None
    differences: tuple[str, ...]
    ledger_seq: int | None = None
    baseline_kind: str | None = None  # commit or rollback
    compared: str | None = None  # "full" (object by object) or "summary" (a baseline without the whole fingerprint)

    @property
    def ok(self) -> bool:
        return not self.differences


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def result_of(body: Any) -> DriftResult:
    """The DriftResult of what gcos.record_drift returned."""
    if not isinstance(body, dict):
        raise LedgerBroken("gcos.record_drift returned no result; run `gcos ledger verify`.")
    differences = body.get("differences")
    return DriftResult(
        baseline_seq=_int(body.get("baseline_seq")),
        baseline_step=_text(body.get("baseline_step")),
        baseline_hash=_text(body.get("baseline_hash")),
        live_hash=_text(body.get("live_hash")),
        differences=tuple(str(d) for d in differences) if isinstance(differences, list) else (),
        ledger_seq=_int(body.get("ledger_seq")),
        baseline_kind=_text(body.get("baseline_kind")),
        compared=_text(body.get("compared")),
    )


def detect(conn: psycopg.Connection[Any]) -> DriftResult:
    """Ask the kernel to compare the live world with the last counted commit's (or rollback's) fingerprint and
    record any drift; ReverifyMismatch (exit 6, the DriftResult in ``details``) when it found some. GateRefused
    (exit 3) where a baseline exists but schema public is not adopted: the kernel cannot read that world."""
    with translated():
        row = conn.execute("SELECT gcos.record_drift(%s)", (ledger.new_trace_id(),)).fetchone()
    result = result_of(row[0] if row else None)
    if result.ok:
        return result
    diffs = result.differences
    shown = "; ".join(diffs[:3]) + (f" (and {len(diffs) - 3} more)" if len(diffs) > 3 else "")
    raise ReverifyMismatch(
        f"the live world drifted from the fingerprint recorded after ledger record {result.baseline_seq} "
        f"({result.baseline_step} {result.baseline_kind}): {shown}; recorded as drift at seq {result.ledger_seq} — "
        "find out who changed it before going on.",
        details=result,
    )
