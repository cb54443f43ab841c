"""One error hierarchy, one exit code each: the CLI maps them in exactly one place (cli.py)."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """The contract's exit codes (CONTRACT.md, "Exit codes")."""

    OK = 0
    INTERNAL = 1
    BAD_INPUT = 2
    GATE_REFUSED = 3
    STOP_HELD = 4
    RESIDUE = 5
    REVERIFY_MISMATCH = 6
    LEDGER_BROKEN = 7
    DATABASE_UNAVAILABLE = 8


class GcosError(Exception):
    """Base of every error gcos raises on purpose; its message is one plain sentence."""

    exit_code: ExitCode = ExitCode.INTERNAL

    def __init__(self, message: str, *, details: object | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class SpecError(GcosError):
    """Bad input: usage, an invalid spec or plan, an unknown step."""

    exit_code = ExitCode.BAD_INPUT


class GateRefused(GcosError):
    exit_code = ExitCode.GATE_REFUSED


class StopHeld(GcosError):
    exit_code = ExitCode.STOP_HELD


class ResidueFound(GcosError):
    exit_code = ExitCode.RESIDUE


class ReverifyMismatch(GcosError):
    exit_code = ExitCode.REVERIFY_MISMATCH


class LedgerBroken(GcosError):
    exit_code = ExitCode.LEDGER_BROKEN


class DatabaseUnavailable(GcosError):
    """The database cannot be reached, or a lock was not granted in time: retry later."""

    exit_code = ExitCode.DATABASE_UNAVAILABLE
