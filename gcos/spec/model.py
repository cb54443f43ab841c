"""The spec model: what a validated step spec and plan say, as frozen dataclasses.

Nothing here reads files or validates: gcos.spec.load builds these only from documents that passed the
JSON Schema, so every field can be trusted as typed. `Expectation` is also the Python reference for the
kernel's gcos.expect_holds (tests/test_kernel_checks.py proves they agree).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Expectation:
    """What a check's single value must be: `expect: 140` or `expect: {gte: 1000000}`."""

    op: str
    value: Any

    @classmethod
    def parse(cls, raw: Any) -> Expectation:
        if isinstance(raw, dict):
            ((op, value),) = raw.items()
            return cls(op, value)
        return cls("eq", raw)

    def describe(self) -> str:
        shown = self.value if isinstance(self.value, str) else json.dumps(self.value)
        return shown if self.op == "eq" else f"{self.op} {shown}"

    def holds(self, actual: Any) -> bool:
        if isinstance(actual, Decimal):
            actual = int(actual) if actual == actual.to_integral_value() else float(actual)
        if self.op in ("eq", "ne"):
            same = _same(actual, self.value)
            return same if self.op == "eq" else not same
        if self.op == "in":
            return any(_same(actual, v) for v in self.value)
        if not _is_number(actual):
            return False
        if self.op == "between":
            low, high = self.value
            return bool(low <= actual <= high)
        return bool(
            {
                "gt": actual > self.value,
                "gte": actual >= self.value,
                "lt": actual < self.value,
                "lte": actual <= self.value,
            }[self.op]
        )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _same(actual: Any, expected: Any) -> bool:
    """Equality without Python's bool/int confusion: `expect: 1` never matches a boolean true."""
    if isinstance(expected, bool) or isinstance(actual, bool):
        return isinstance(expected, bool) and isinstance(actual, bool) and actual == expected
    if _is_number(expected) and _is_number(actual):
        return bool(actual == expected)
    if expected is None or actual is None:
        return actual is expected
    return type(actual) is type(expected) and bool(actual == expected)


@dataclass(frozen=True)
class Check:
    """A named read-only query returning one row of one column, and what that value must be."""

    name: str
    sql: str
    expect: Expectation


@dataclass(frozen=True)
class StopCondition:
    """One stop item: an SQL predicate, forbidden columns or objects, or a new-table limit."""

    name: str
    kind: str  # sql | forbid_columns | forbid_objects | max_new_tables
    sql: str | None = None
    names: tuple[str, ...] = ()
    limit: int | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> StopCondition:
        if "sql" in raw:
            return cls(raw["name"], "sql", sql=raw["sql"])
        if "forbid_columns" in raw:
            names = tuple(raw["forbid_columns"])
            return cls(raw.get("name", f"no column named {', '.join(names)}"), "forbid_columns", names=names)
        if "forbid_objects" in raw:
            names = tuple(raw["forbid_objects"])
            return cls(raw.get("name", f"no object named {', '.join(names)}"), "forbid_objects", names=names)
        limit = int(raw["max_new_tables"])
        return cls(raw.get("name", f"at most {limit} new tables"), "max_new_tables", limit=limit)


@dataclass(frozen=True)
class Mutation:
    sql: str
    allow: tuple[tuple[str, tuple[str, ...]], ...]


@dataclass(frozen=True)
class Batch:
    table: str
    key: str
    size: int
    cursor_worker: str
    cursor_source: str
    sql: str
    finish: str | None = None  # run as gcos_kernel when the run completes: the worker rows say so (issue 10 item 4)
    on_stop: str | None = None  # likewise when the run stops


@dataclass(frozen=True)
class StepSpec:
    """A validated step spec; `document` is the spec with SQL files inlined, `hash` its content hash."""

    id: str
    order: int
    title: str
    source: str | None  # where it comes from; optional
    depends_on: tuple[str, ...]
    signers: int
    signer_roles: tuple[str, ...]
    signer_require: tuple[tuple[str, int], ...]  # (role, distinct persons) among the signers; sovereign >= 1 (M-1)
    decisions: tuple[str, ...]
    fold_ins: tuple[str, ...]
    watch: tuple[str, ...]
    reverify: tuple[Check, ...]
    mutation: Mutation | None
    stop: tuple[StopCondition, ...]
    success: tuple[Check, ...]
    rollback_sql: str
    mode: str
    batch: Batch | None
    path: Path
    document: dict[str, Any] = field(repr=False)
    hash: str = ""

    @property
    def ref(self) -> str:
        return f"step-{self.order}"


@dataclass(frozen=True)
class PlanSpec:
    id: str
    title: str
    source: str | None  # where it comes from; optional
    steps: tuple[str, ...]
    fold_ins: dict[str, tuple[str, ...]]
    global_stop: tuple[StopCondition, ...]
    decisions: dict[str, str]  # decision name -> its text; a decision record is bound to sha256(text)
    path: Path
    document: dict[str, Any] = field(repr=False)
    hash: str = ""
