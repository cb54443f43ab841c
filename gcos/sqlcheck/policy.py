"""The allow/refuse policy: hold each classified statement against the step's allow list and the rules.

A statement is refused (SpecError, exit 2) when it is outside the spec's allow list, creates a
forbidden column or object, controls the transaction, changes the session or its identity, cannot
run inside a transaction block, or does something a gated step must never do (gcos.sqlcheck.rules).
Nothing is executed here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from gcos.errors import SpecError
from gcos.spec import StepSpec
from gcos.sqlcheck import online
from gcos.sqlcheck.classify import Info, Statement, ast, norm, parse, walk
from gcos.sqlcheck.rules import (
    ALIASES,
    CHECK_WRITE_CALLS,
    FREE_KINDS,
    GUARDED,
    READ_KINDS,
    UNDO,
    UNSAFE_CALLS,
)

PLACEHOLDER = re.compile(r"%\((\w+)\)s")
Allow = Mapping[str, frozenset[str]]


def _is_true(args: Sequence[Any]) -> bool:
    """Whether the one argument in `args` is the constant true (set_config's is_local); fail closed."""
    arg = args[0] if args else None
    while isinstance(arg, ast.TypeCast):
        arg = arg.arg
    value = getattr(arg, "val", None) if isinstance(arg, ast.A_Const) else None
    if isinstance(value, ast.Boolean):
        return bool(value.boolval)
    return isinstance(value, ast.String) and value.sval.strip().lower() in ("t", "true", "on", "y", "yes", "1")


def _call_refusal(stmt: Any, *, in_step: bool = True) -> str | None:
    """A reason to refuse a session-changing function call anywhere in the statement, or None. A check
    (`in_step` false) may set a setting for its own transaction, which the kernel always rolls back."""
    for n in walk(stmt):
        if not isinstance(n, ast.FuncCall) or not isinstance(n.funcname[-1], ast.String):
            continue
        func = n.funcname[-1].sval.lower()
        if func == "set_config":
            arg = (n.args or (None,))[0]
            while isinstance(arg, ast.TypeCast):
                arg = arg.arg
            if not (isinstance(arg, ast.A_Const) and isinstance(arg.val, ast.String)):
                return "set_config() with a computed setting name could change gcos's session guards"
            if arg.val.sval.lower() in GUARDED:
                return f"set_config('{arg.val.sval}') changes gcos's session guard {arg.val.sval}"
            name = arg.val.sval
            if not _is_true((n.args or ())[2:3]):
                return f"set_config('{name}', ..., false) outlives the step's transaction; a step does not change them"
            if in_step:
                return (
                    f"set_config('{name}', ..., true) changes a setting, which the kernel cannot tell from a "
                    "session-level change (it fails the rehearsal as residue); a step does not change settings"
                )
        elif func in UNSAFE_CALLS or func.startswith("dblink"):
            return UNSAFE_CALLS.get(func, f"{func}() works on another connection, outside gcos's transaction")
    return None


def _check_write_call(node: Any) -> str | None:
    for n in walk(node):
        if isinstance(n, ast.FuncCall) and n.funcname[-1].sval.lower() in CHECK_WRITE_CALLS:
            return f"a check must not call {n.funcname[-1].sval}(), which writes"
    return None


def _refuse(where: str, st: Statement, reason: str) -> NoReturn:
    quoted = " ".join(st.text.split())
    quoted = quoted if len(quoted) <= 120 else quoted[:119] + "…"
    raise SpecError(
        f'{where} line {st.line}: {reason}; refused: "{quoted}".',
        details={"where": where, "line": st.line, "kind": st.kind, "reason": reason, "statement": st.text},
    )


def _allowed(kind: str, name: str, info: Info, allow: Allow) -> bool:
    names = allow.get(kind, frozenset()) | allow.get(ALIASES.get(kind, ""), frozenset())
    return name in names or (info.table is not None and info.table in names)


def _forbidden(step: StepSpec, kind: str, extra: Sequence[str]) -> dict[str, str]:
    out = {n.lower(): "the plan's global stop conditions" for n in extra}
    out.update({n.lower(): f"stop condition '{s.name}'" for s in step.stop if s.kind == kind for n in s.names})
    return out


def _check(
    step: StepSpec, section: str, sql: str, allow: Allow, *, columns: Sequence[str] = (), objects: Sequence[str] = ()
) -> list[Statement]:
    where = f"step {step.id} {section}"
    parsed = parse(sql, where)
    bad_columns = _forbidden(step, "forbid_columns", columns)
    bad_objects = _forbidden(step, "forbid_objects", objects)
    for st, info, node in parsed:
        if reason := info.refusal or _call_refusal(node):
            _refuse(where, st, reason)
        for col in info.columns:
            if col.lower() in bad_columns:
                _refuse(where, st, f"column {col} is forbidden by {bad_columns[col.lower()]}")
        for obj in info.creates:
            if obj.lower().rsplit(".", 1)[-1] in bad_objects:
                _refuse(where, st, f"object {obj} is forbidden by {bad_objects[obj.lower().rsplit('.', 1)[-1]]}")
        if info.kind in READ_KINDS:
            _refuse(where, st, f"the {section} is DDL and DML: a top-level {info.kind.upper()} is not a build step")
        if info.kind == "lock":
            named = frozenset[str]().union(*allow.values())
            if outside := [t for t in info.targets if t not in named]:
                _refuse(where, st, f"LOCK TABLE {outside[0]} names a table outside the {section}'s allow list")
        for kind, name in [] if info.kind in FREE_KINDS else st.writes:
            if not _allowed(kind, name, info, allow):
                hidden = "" if kind == info.kind else f" (written inside this {info.kind.upper()})"
                hidden = " (TRUNCATE deletes every row)" if info.kind == "truncate" else hidden
                what = f"{kind} statements are" if name == "*" else f"{kind} {name}{hidden} is"
                _refuse(where, st, f"{what} not in the allow list of the {section}")
    return [st for st, _, _ in parsed]


def _allow_of(step: StepSpec) -> dict[str, frozenset[str]]:
    out: dict[str, set[str]] = {}
    for kind, names in step.mutation.allow if step.mutation else ():
        out.setdefault(kind, set()).update(norm(n) for n in names)
    return {k: frozenset(v) for k, v in out.items()}


def check_mutation(
    step: StepSpec, *, extra_forbid_columns: Sequence[str] = (), extra_forbid_objects: Sequence[str] = ()
) -> list[Statement]:
    """Check the mutation SQL against the step's allow list and every refusal class; [] without one."""
    if step.mutation is None:
        return []
    sql, online_stmts = step.mutation.sql, None
    online.enum_use_refusal(step.id, "mutation", parse(sql, f"step {step.id} mutation"))
    if step.mode == "online":  # concurrent statements checked there, the rest as their transactional equivalent
        sql, online_stmts = online.online_sql(step.id, sql, _allow_of(step))
    stmts = _check(step, "mutation", sql, _allow_of(step), columns=extra_forbid_columns, objects=extra_forbid_objects)
    if online_stmts:
        return online_stmts
    if not stmts:
        raise SpecError(f"step {step.id} mutation: the SQL holds no statement; write the step's DDL/DML.")
    return stmts


def check_rollback(step: StepSpec) -> list[Statement]:
    """Check the rollback SQL: it may only undo what the mutation's allow list lets the step do."""
    where = f"step {step.id} rollback"
    if step.mutation is None:  # a verification-only step: nothing to undo, so only comments or reads
        parsed = parse(step.rollback_sql, where)
        for st, info, node in parsed:
            if reason := info.refusal or _call_refusal(node):
                _refuse(where, st, reason)
            if info.kind != "select" or info.writes:
                _refuse(where, st, "a step without mutation may roll back only with comments and read-only SELECTs")
        return [st for st, _, _ in parsed]
    undo: dict[str, set[str]] = {}
    for kind, names in _allow_of(step).items():
        for derived in UNDO.get(kind, ()):
            undo.setdefault(derived, set()).update(names)
    stmts = _check(step, "rollback", step.rollback_sql, {k: frozenset(v) for k, v in undo.items()})
    if not stmts:
        raise SpecError(f"{where}: the SQL holds no statement, but the step has a mutation to undo; write its undo.")
    return stmts


def check_batch(step: StepSpec) -> list[Statement]:
    """Check the batched step's per-batch SQL: one INSERT that never writes the batch's source table."""
    if step.batch is None:
        return []
    where, sql = f"step {step.id} batch", step.batch.sql
    counter = iter(range(1, 1000))
    as_params = PLACEHOLDER.sub(lambda m: f"${next(counter)}".ljust(len(m.group(0))), sql)  # keeps every offset
    parsed = parse(as_params, where, original=sql)
    if len(parsed) != 1 or parsed[0][1].kind != "insert":
        kinds = ", ".join(st.kind for st, _, _ in parsed) or "nothing"
        raise SpecError(f"{where}: the batch SQL must be exactly one INSERT, found {kinds}; write one INSERT.")
    st, info, node = parsed[0]
    if reason := info.refusal or _call_refusal(node):
        _refuse(where, st, reason)
    allow = _allow_of(step)
    for kind, name in st.writes:
        if name == norm(step.batch.table):
            _refuse(where, st, f"the batch writes its own source table {name} ({kind}); a backfill never modifies it")
        if step.mutation is not None and not _allowed(kind, name, info, allow):
            _refuse(where, st, f"{kind} {name} is not in the allow list of the mutation")
    for section, worker_sql in (("batch.finish", step.batch.finish), ("batch.on_stop", step.batch.on_stop)):
        if worker_sql:  # the worker rows of a run that ended: DML within the mutation's allow list
            _check(step, section, worker_sql, _allow_of(step))
    return [st]


def check_query(sql: str, *, label: str) -> None:
    """Refuse anything but a read-only SELECT in a check run inside a rehearsal (reverify/stop/success)."""
    for st, info, node in parse(sql, label):
        if info.kind != "select":
            _refuse(label, st, info.refusal or f"a check must be a read-only SELECT, not {info.kind}")
        if info.writes:
            _refuse(label, st, f"a check must not write ({info.writes[0][0]} {info.writes[0][1]})")
        if any(isinstance(n, ast.SelectStmt) and n.lockingClause for n in walk(node)):
            _refuse(label, st, "a check must not lock rows (FOR UPDATE/SHARE)")
        if reason := _check_write_call(node) or _call_refusal(node, in_step=False):
            _refuse(label, st, reason)
