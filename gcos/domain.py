"""The words gcos records and reads, as enums: ledger record kinds, outcomes, step states and the seven gates.

Each is a ``StrEnum`` whose values are the strings written today, so a member IS its string: ledger records,
JSON, reports and SQL parameters carry the same bytes as before, and a comparison with a plain string read
back from the ledger holds (``Kind.COMMIT == "commit"``).
"""

from __future__ import annotations

from enum import StrEnum


class Kind(StrEnum):
    """Every ledger record kind gcos writes (in Python or in its SQL functions) or reads."""

    INSTALL = "install"
    PRINCIPAL = "principal"
    APPROVAL = "approval"
    APPROVAL_REVOCATION = "approval_revocation"
    DECISION = "decision"
    DECISION_REVOCATION = "decision_revocation"
    EXCEPTION = "exception"  # 025: a sovereign waives one named check of one step
    EXCEPTION_REVOCATION = "exception_revocation"
    SPEC_REGISTERED = "spec_registered"
    PLAN_REGISTERED = "plan_registered"
    ADOPT = "adopt"
    RELEASE = "release"
    REHEARSAL = "rehearsal"
    POLICY_DECISION = "policy_decision"
    COMMIT = "commit"
    ROLLBACK = "rollback"
    COMMIT_REFUSED = "commit_refused"
    ROLLBACK_REFUSED = "rollback_refused"
    STOP = "stop"
    BATCH_STARTED = "batch_started"
    BATCH_RESUMED = "batch_resumed"
    DRIFT = "drift"


APPLY_KINDS = (Kind.COMMIT, Kind.ROLLBACK)
"""The records that change the world (counted only when applied and backed by an allowing policy decision)."""


class Outcome(StrEnum):
    """The ``outcome`` of rehearsal, commit, rollback, stop and refusal records, and of results in memory."""

    PASSED = "passed"
    APPLIED = "applied"
    RESUMED_APPLIED = "resumed_applied"
    IN_DOUBT_APPLIED = "in_doubt_applied"
    IN_DOUBT_NOT_APPLIED = "in_doubt_not_applied"
    REFUSED = "refused"
    COMMIT_REFUSED = "commit_refused"
    ROLLBACK_REFUSED = "rollback_refused"
    COMMIT_FAILED = "commit_failed"
    STOPPED = "stopped"
    SUCCESS_FAILED = "success_failed"
    REVERIFY_MISMATCH = "reverify_mismatch"
    ROLLBACK_UNPROVEN = "rollback_unproven"
    RESIDUE = "residue"
    MUTATION_FAILED = "mutation_failed"
    BATCH_FAILED = "batch_failed"
    CHECK_FAILED = "check_failed"
    ROLLBACK_FAILED = "rollback_failed"
    LOCK_TIMEOUT = "lock_timeout"
    TIMEOUT = "timeout"
    NO_CURSOR = "no_cursor"
    CURSOR_MISMATCH = "cursor_mismatch"
    CURSOR_MOVED = "cursor_moved"


class BatchPhase(StrEnum):
    """What one call of the kernel's batched run returns as its ``outcome`` when the run goes on
    (gcos.batch_start: started/resumed; gcos.batch_next: batch/done; gcos.batch_close: more, else an Outcome)."""

    STARTED = "started"
    RESUMED = "resumed"
    BATCH = "batch"
    DONE = "done"
    MORE = "more"


class StepState(StrEnum):
    """A step's state as the ledger projects it (state.py): never stored, always rebuilt."""

    PLANNED = "planned"
    REHEARSED = "rehearsed"
    APPROVED = "approved"
    COMMITTED = "committed"
    ROLLED_BACK = "rolled_back"


class Gate(StrEnum):
    """The seven commit and rollback gates in contract order: the value is the id ``gcos.evaluate_gates``
    returns, :attr:`number` the contract's number (1-7), :attr:`heading` the title people read."""

    SPEC = "spec"
    DEPENDENCIES = "dependencies"
    REVERIFY = "reverify"
    REHEARSAL = "rehearsal"
    APPROVALS = "approvals"
    DECISIONS = "decisions"
    STATE = "state"

    @property
    def number(self) -> int:
        return list(Gate).index(self) + 1

    @property
    def heading(self) -> str:
        return _GATE_HEADINGS[self]


_GATE_HEADINGS = {
    Gate.SPEC: "spec and plan valid, fold-ins declared",
    Gate.DEPENDENCIES: "dependencies committed",
    Gate.REVERIFY: "re-verify holds now",
    Gate.REHEARSAL: "rehearsed entry==exit on this spec and schema",
    Gate.APPROVALS: "approved by distinct named humans",
    Gate.DECISIONS: "required decisions hold",
    Gate.STATE: "global stops clear, step in the right state",
}
