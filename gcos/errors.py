"""One error hierarchy, one exit code each: the CLI maps them in exactly one place (gcos/cli/app.py).

And the ONE translation of database errors into that hierarchy: `condition_of` sorts a psycopg error into a
`Condition` by its SQLSTATE, `ERROR_OF` gives each condition its GcosError class (so its exit code cannot
drift between call sites), and `from_database` / `translated()` build the error with a sentence that says
what to do next. A call site may word the sentence for its context (`say=`), never choose the class.
`connection_failed` does the same for a failed login, telling "the server is down" (retry, exit 8) from
"wrong password, unknown role or database" (retrying will not help, exit 2: CONTRACT.md, "Exit codes").
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from enum import IntEnum, StrEnum

import psycopg


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
    INTERRUPTED = 130  # Ctrl-C (SIGINT), the shells' 128 + 2; the sentence says what was and was not applied


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


class Interrupted(GcosError):
    """The user pressed Ctrl-C: the message says what the database kept (only what a committed transaction
    wrote) and what to run next."""

    exit_code = ExitCode.INTERRUPTED


class LoginRefused(GcosError):
    """The server answered and refused this login (password, role, database, CONNECT right): retrying
    the same DSN will not help, so it is bad input (exit 2), not an unreachable database."""

    exit_code = ExitCode.BAD_INPUT


# --------------------------------------------------------------------------- the translation


class Condition(StrEnum):
    """What a database error means for gcos, whatever statement raised it."""

    REFUSED = "refused"  # 42501: a privilege wall or a gcos refusal
    BAD_INPUT = "bad_input"  # 22023 and other values the database rejects
    NOT_SUPPORTED = "not_supported"  # 0A000
    NOT_INSTALLED = "not_installed"  # the gcos schema, a table or a function is missing
    NOT_READY = "not_ready"  # 55000: a precondition the database enforces
    NEW_ENUM_VALUE = "new_enum_value"  # 55P04: an enum value used in the transaction that added it
    LEDGER = "ledger"  # GC007: the approvals/decisions tables and the ledger disagree
    LOCK = "lock"  # 55P03: lock_timeout
    TIMEOUT = "timeout"  # 57014: statement_timeout (or a cancel)
    CONFLICT = "conflict"  # 40001, 40P01: serialization failure, deadlock
    LOST = "lost"  # the connection broke, or the server is shutting down or full
    OTHER = "other"  # not gcos's to interpret: raised unchanged


_STATES: dict[str, Condition] = {
    "42501": Condition.REFUSED,
    "22023": Condition.BAD_INPUT,
    "22P05": Condition.BAD_INPUT,
    "0A000": Condition.NOT_SUPPORTED,
    "42P01": Condition.NOT_INSTALLED,
    "42883": Condition.NOT_INSTALLED,
    "3F000": Condition.NOT_INSTALLED,
    "55000": Condition.NOT_READY,
    "55P04": Condition.NEW_ENUM_VALUE,
    "GC007": Condition.LEDGER,
    "55P03": Condition.LOCK,
    "57014": Condition.TIMEOUT,
    "40001": Condition.CONFLICT,
    "40P01": Condition.CONFLICT,
    "25P03": Condition.LOST,
    "53300": Condition.LOST,
    "57P01": Condition.LOST,
    "57P02": Condition.LOST,
    "57P03": Condition.LOST,
}

ERROR_OF: Mapping[Condition, type[GcosError]] = {
    Condition.REFUSED: GateRefused,
    Condition.BAD_INPUT: SpecError,
    Condition.NOT_SUPPORTED: SpecError,
    Condition.NOT_INSTALLED: SpecError,
    Condition.NOT_READY: GateRefused,
    Condition.NEW_ENUM_VALUE: StopHeld,  # the step as written can never pass: split it (exit 4, the seed's stop)
    Condition.LEDGER: LedgerBroken,
    Condition.LOCK: DatabaseUnavailable,
    Condition.TIMEOUT: DatabaseUnavailable,
    Condition.CONFLICT: DatabaseUnavailable,
    Condition.LOST: DatabaseUnavailable,
}


def condition_of(exc: psycopg.Error) -> Condition:
    """The condition of one database error: by SQLSTATE, else a connection-level failure is LOST."""
    state = exc.sqlstate or ""
    if state in _STATES:
        return _STATES[state]
    if state.startswith("08") or (not state and isinstance(exc, psycopg.OperationalError)):
        return Condition.LOST
    return Condition.OTHER


def reason(exc: psycopg.Error) -> str:
    """The server's primary message (or psycopg's first line), without gcos's "gcos: " prefix."""
    primary = exc.diag.message_primary if isinstance(exc, psycopg.DatabaseError) else None
    text = (primary or (str(exc).strip().splitlines() or [type(exc).__name__])[0]).strip()
    return text.removeprefix("gcos: ").strip()


def sentence(text: str) -> str:
    """`text` as one sentence: capitalised, ending with a full stop."""
    text = text.removeprefix("gcos: ").strip()
    text = text[:1].upper() + text[1:]
    return text if text.endswith(".") else text + "."


def _default(condition: Condition, exc: psycopg.Error) -> str:
    """The sentence when the call site has none better: the database's words and the next step."""
    said = sentence(reason(exc))
    hint = (exc.diag.message_hint or "").strip() if isinstance(exc, psycopg.DatabaseError) else ""
    if condition is Condition.REFUSED:
        primary = (exc.diag.message_primary or "") if isinstance(exc, psycopg.DatabaseError) else ""
        if primary.startswith("gcos:"):
            return said
        return f"{said[:-1]}; the session role lacks the gcos group role this needs, ask a gcos admin."
    if condition is Condition.NOT_INSTALLED:
        return "gcos is not installed in this database; run `gcos install` first."
    if condition is Condition.NEW_ENUM_VALUE:
        return (
            f"{said[:-1]}: PostgreSQL cannot use an enum value in the transaction that adds it, so split this "
            "into two steps, the first with only the ALTER TYPE ... ADD VALUE, the second (depends_on the first) "
            "using the value."
        )
    if condition is Condition.LEDGER:
        return f"{said[:-1]}; run `gcos ledger verify` and keep the database as evidence."
    if condition is Condition.TIMEOUT and "statement timeout" in said:
        return f"{said[:-1]}; retry, or raise GCOS_STATEMENT_TIMEOUT."
    if condition in (Condition.LOCK, Condition.TIMEOUT, Condition.CONFLICT):
        return f"{said[:-1]}; retry."
    if condition is Condition.LOST:
        return f"The database connection failed ({reason(exc)}); retry."
    if hint:
        return f"{said[:-1]}; {hint[:1].lower()}{hint[1:].rstrip('.')}."
    return said


Say = Mapping[Condition | str, str]  # a sentence per condition, or per SQLSTATE (which wins)


def from_database(exc: psycopg.Error, *, say: Say | None = None) -> GcosError | None:
    """The GcosError for `exc` (its class from ERROR_OF), worded by `say` where the caller knows better;
    None for an error gcos does not interpret (the caller re-raises it unchanged: exit 1, a bug to report)."""
    condition = condition_of(exc)
    error = ERROR_OF.get(condition)
    if error is None:
        return None
    words = (say or {}).get(exc.sqlstate or "", (say or {}).get(condition))
    return error(words if words is not None else _default(condition, exc))


@contextmanager
def translated(say: Say | None = None, *, keep: Collection[Condition] = ()) -> Iterator[None]:
    """Run the block; a database error leaves it as its GcosError (see from_database), chained. Errors of
    a condition in `keep` (and those gcos does not interpret) leave unchanged."""
    try:
        yield
    except psycopg.Error as exc:
        error = None if condition_of(exc) in keep else from_database(exc, say=say)
        if error is None:
            raise
        raise error from exc


_NEW_ENUM_VALUE = re.compile(r"unsafe use of new value .* of enum type")


def kernel_outcome(error: type[GcosError], message: str, body: Mapping[str, object]) -> tuple[type[GcosError], str]:
    """The error class and sentence of a kernel outcome that failed, where the error the kernel caught says more
    than the outcome: 55P04 can never pass as written, so exit 4 and two steps. The kernel's rehearse and commit
    bodies keep the caught error's text but not its SQLSTATE (011/012), so the server's English message is
    matched too (a server with another lc_messages keeps the plain `mutation failed`, exit 2)."""
    if body.get("sqlstate") == "55P04" or _NEW_ENUM_VALUE.search(message):
        advice = (
            "PostgreSQL cannot use an enum value in the transaction that adds it, so split this into two steps, the "
            "first with only the ALTER TYPE ... ADD VALUE, the second (depends_on the first) using the value"
        )
        return StopHeld, f"{message.rstrip('.')}; {advice}."
    return error, message


# --------------------------------------------------------------------------- logins

# The server's FATAL messages (lc_messages English) and libpq's own, for a login that reached a server.
_LOGIN_REFUSED: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"password authentication failed|no password supplied|authentication failed|no pg_hba\.conf entry"),
        "check the user name and password (the DSN, PGPASSWORD or ~/.pgpass) and that pg_hba.conf lets this "
        "host in; retrying will not help",
    ),
    (re.compile(r'role "[^"]*" does not exist'), "check the user name in the DSN; retrying will not help"),
    (
        re.compile(r'database "[^"]*" does not exist'),
        "check the database name in the DSN (or create the database); retrying will not help",
    ),
    (
        re.compile(r"permission denied for database|is not permitted to log in"),
        "ask the database owner to GRANT CONNECT (or LOGIN) to this role; retrying will not help",
    ),
)
_BUSY = re.compile(r"too many clients|remaining connection slots|starting up|shutting down|in recovery mode")


def connection_failed(
    exc: psycopg.OperationalError,
    where: str,
    *,
    embedded: bool = False,
    secrets: Iterable[str] = (),
    details: object | None = None,
) -> GcosError:
    """The error for a connection that could not be opened to `where` (a redacted DSN): LoginRefused
    (exit 2) when the server refused the login, DatabaseUnavailable (exit 8) when it could not be reached
    or is busy. No secret in `secrets` reaches the sentence."""
    full = str(exc).strip()
    first = (full.splitlines() or ["unknown error"])[0].strip()
    for secret in secrets:
        if secret:
            full, first = full.replace(secret, "***"), first.replace(secret, "***")
    for pattern, advice in _LOGIN_REFUSED:
        if pattern.search(full):
            return LoginRefused(f"The server at {where} refused the login ({first}); {advice}.", details=details)
    if _BUSY.search(full):
        hint = "the server is up but not accepting connections now; retry in a moment"
    elif embedded:
        hint = "run `gcos db up`, then retry"
    else:
        hint = "check that the server is running and that host and port in the DSN are right, then retry"
    return DatabaseUnavailable(f"Cannot connect to the database at {where} ({first}); {hint}.", details=details)
