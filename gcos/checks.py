"""Evaluating checks: one SQL query, one value, compared with what the spec expects.

Shared by verify, rehearse and commit, so "re-verify holds" means the same thing everywhere.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import errors as pgerrors

from gcos.errors import Condition, SpecError, condition_of, from_database, reason
from gcos.spec import Check, Expectation, StepSpec

# A check that names an object the world does not have is a mismatch of the world, not a bad spec.
WORLD_MISMATCH_STATES = (
    pgerrors.UndefinedTable,
    pgerrors.UndefinedColumn,
    pgerrors.UndefinedFunction,
    pgerrors.UndefinedObject,
    pgerrors.InvalidSchemaName,
)


@dataclass(frozen=True)
class CheckResult:
    name: str
    sql: str
    expected: str
    actual: Any
    ok: bool
    error: str | None = None
    waived: dict[str, Any] | None = None  # the exception (025) that waived it when it failed: id, by, until, why
    type_note: str | None = None  # a failed check whose value has another type than expected: both types

    @property
    def shown_actual(self) -> str:
        if self.error:
            return f"error: {self.error}"
        shown = repr_value(self.actual)
        return f"{shown} ({self.type_note})" if self.type_note else shown


def value_type(value: Any) -> str:
    """The type of a check value as a spec author reads it: a YAML/JSON scalar, or what the query returned."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float | Decimal):
        return "number"
    if isinstance(value, str):
        return "text"
    return "array" if isinstance(value, list | tuple) else type(value).__name__


def type_note(expect: Expectation, actual: Any, ok: bool) -> str | None:
    """`text, expected integer` when a check failed and its value's type is none the expectation allows, so
    `expected 1000, got 1000` never hides a text-vs-integer mismatch; None otherwise."""
    if ok:
        return None
    values = expect.value if expect.op in ("in", "between") and isinstance(expect.value, list) else [expect.value]
    wanted = {value_type(v) for v in values}
    got = value_type(plain_value(actual))
    numeric = {"integer", "number"}
    if got in wanted or (got in numeric and wanted & numeric):
        return None
    return f"{got}, expected {' or '.join(sorted(wanted))}"


def plain_value(value: Any) -> Any:
    """A database value as plain JSON (Decimal -> int/float, timestamps -> ISO text, uuid -> text)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, list | tuple):
        return [plain_value(v) for v in value]
    return value


def repr_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def evaluate(conn: psycopg.Connection[Any], check: Check, *, section: str = "check") -> CheckResult:
    """Run one check inside the caller's transaction, in a savepoint so one failure spoils nothing else."""
    try:
        with conn.transaction() as savepoint, conn.cursor() as cur:
            cur.execute(check.sql)  # spec SQL, parsed and validated as one SELECT at load time
            rows = cur.fetchall()
            width = len(cur.description or ())
            raise psycopg.Rollback(savepoint)  # a check never keeps anything it might have written
    except WORLD_MISMATCH_STATES as exc:
        message = (exc.diag.message_primary or str(exc)).strip()
        return CheckResult(check.name, check.sql, check.expect.describe(), None, False, error=message)
    except psycopg.Error as exc:
        said: dict[Condition | str, str] = {
            Condition.LOCK: f"{section} {check.name!r} could not get a lock within lock_timeout; retry when the other "
            "session is done.",
            Condition.TIMEOUT: f"{section} {check.name!r} hit statement_timeout; retry, or raise "
            "GCOS_STATEMENT_TIMEOUT.",
            Condition.CONFLICT: f"{section} {check.name!r} met a concurrent change; retry.",
            Condition.LOST: f"the connection was lost during {section} {check.name!r}; retry.",
        }
        if condition_of(exc) in said:
            error = from_database(exc, say=said)
            assert error is not None
            raise error from exc
        raise SpecError(f"{section} {check.name!r} failed in the database: {reason(exc)}; fix its SQL.") from exc
    if len(rows) != 1 or width != 1:
        raise SpecError(
            f"{section} {check.name!r} must return one row of one column, got {len(rows)} row(s) of {width} "
            "column(s); fix its SQL."
        )
    actual = plain_value(rows[0][0])
    ok = check.expect.holds(actual)
    note = type_note(check.expect, actual, ok)
    return CheckResult(check.name, check.sql, check.expect.describe(), actual, ok, type_note=note)


def evaluate_all(conn: psycopg.Connection[Any], checks: Sequence[Check], *, section: str) -> list[CheckResult]:
    return [evaluate(conn, c, section=section) for c in checks]


def mismatch_sentence(step: StepSpec, results: Sequence[CheckResult]) -> str:
    failed = [r for r in results if not r.ok]
    first = failed[0]
    more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
    why = (
        f"it depends on {', '.join(step.depends_on)} — are they committed?"
        if step.depends_on
        else "find out why before going on."
    )
    return (
        f"re-verify of {step.id} failed: {first.name!r} expected {first.expected}, got {first.shown_actual}{more}; "
        f"the live world is not what {step.path.name} expects: {why}"
    )
