"""What the kernel's runs return to the client, as typed values the CLI, the demo and tests read.

The kernel (gcos/sql/011-013) rehearses, commits, rolls back and runs batches, and returns JSON; gcos/kernel.py
and gcos/kernel_batched.py turn that JSON into these values. Nothing here decides anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gcos.checks import CheckResult
from gcos.domain import Outcome
from gcos.gates import PolicyDecisionRecord


@dataclass(frozen=True)
class StopResult:
    """One stop condition the kernel judged inside the transaction: held means the step must not stand."""

    name: str
    kind: str
    held: bool
    detail: str
    waived: dict[str, Any] | None = None  # the exception that waived it when it held (025)

    @classmethod
    def from_payload(cls, s: dict[str, Any]) -> StopResult:
        return cls(str(s["name"]), str(s["kind"]), bool(s["held"]), str(s.get("detail") or ""), s.get("waived"))


@dataclass(frozen=True)
class Footprint:
    """What the step changed inside its transaction, as the kernel observed it: tables created and dropped,
    rows inserted/updated/deleted per table."""

    new_tables: tuple[str, ...]
    dropped_tables: tuple[str, ...]
    row_deltas: dict[str, dict[str, int]]

    @classmethod
    def from_payload(cls, f: dict[str, Any] | None) -> Footprint | None:
        if not f:
            return None
        return cls(tuple(f.get("new_tables") or ()), tuple(f.get("dropped_tables") or ()), dict(f["row_deltas"]))


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
        return self.outcome == Outcome.PASSED


@dataclass(frozen=True)
class CommitResult:
    """A transactional commit or a rollback, as the kernel returned it (or as the ledger settled it when the
    connection dropped around COMMIT)."""

    action: str  # commit | rollback
    step: str
    ref: str
    spec_hash: str
    run_id: str
    outcome: str  # applied | in_doubt_applied (a refusal or a stop is raised, never returned)
    message: str
    decision: PolicyDecisionRecord | None = None
    reverify: tuple[CheckResult, ...] = ()
    stops: tuple[StopResult, ...] = ()
    success: tuple[CheckResult, ...] = ()
    footprint: Footprint | None = None
    fingerprint_before: dict[str, Any] = field(default_factory=dict)
    fingerprint_after: dict[str, Any] = field(default_factory=dict)
    ledger_seq: int | None = None
    duration_us: int = 0
    evidence: tuple[str, ...] = ()  # the record's evidence files (gcos/record_evidence.py)
    evidence_missing: str | None = None  # the sentence naming a file that could not be written

    @property
    def ok(self) -> bool:
        return self.outcome in (Outcome.APPLIED, Outcome.IN_DOUBT_APPLIED)


@dataclass(frozen=True)
class BatchProgress:
    """Where a batched run stands, after each committed batch (and once before the first)."""

    done_rows: int  # rows of batch.table at or below the cursor (including a resumed run's earlier batches)
    total_rows: int  # rows of batch.table when this process started
    batches: int  # batches committed by this process
    last_key: int | None  # the cursor's watermark
    rate_rows_s: int  # rows of batch.table per second over this process's batches
    eta_s: int | None  # seconds left at that rate (None before the first batch)


@dataclass(frozen=True)
class BatchedResult:
    step: str
    ref: str
    spec_hash: str
    run_id: str
    outcome: str  # applied | resumed_applied (a refusal or a stop is raised, never returned)
    message: str
    batches: int = 0  # batches committed by this process
    rows_seen: int = 0  # rows of batch.table those batches covered
    rows_written: int = 0  # rows the batch statements inserted (their row count)
    resumed_from: int | None = None  # the watermark a resumed run continued after
    max_batch_ms: int = 0  # the slowest batch transaction, wall clock, COMMIT included
    ledger_seq: int | None = None  # the commit record (or the refusal / stop record)
    stops: tuple[StopResult, ...] = ()
    success: tuple[CheckResult, ...] = ()
    decision: PolicyDecisionRecord | None = None
    row_deltas: dict[str, dict[str, int]] = field(default_factory=dict)
    evidence: tuple[str, ...] = ()  # the records' evidence files (gcos/record_evidence.py)
    evidence_missing: str | None = None  # the sentence naming a file that could not be written

    @property
    def ok(self) -> bool:
        return self.outcome in (Outcome.APPLIED, Outcome.RESUMED_APPLIED)


__all__ = ["BatchProgress", "BatchedResult", "CommitResult", "Footprint", "RehearsalResult", "StopResult"]
