"""Static check of a step's SQL with PostgreSQL's own parser (pglast), before anything runs.

Every statement is classified by walking its parse tree (never by matching text, so a string, a
comment or a dollar-quoted body that merely mentions COMMIT is not refused) and is refused with
exit 2 when it is outside the spec's allow list, creates a forbidden column or object, controls the
transaction, changes the session or its identity, cannot run inside a transaction block, or does
something a gated step must never do. Nothing is executed here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

import pglast
import pglast.ast

from gcos.errors import SpecError
from gcos.spec import StepSpec


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# Settings gcos guards for the whole rehearsal and commit: no step may change them.
GUARDED = frozenset(
    _words(
        "lock_timeout statement_timeout idle_in_transaction_session_timeout idle_session_timeout transaction_timeout "
        "search_path role session_authorization transaction_read_only default_transaction_read_only "
        "session_replication_role transaction_isolation transaction_deferrable"
    )
)
NO_TX = "cannot run inside a transaction block"
BUS = "would open a new bus, and seed 002 §70.2 #7 forbids a new notifier"
PRIVILEGES = "privileges are not in the allow list: a gated step never grants or revokes"
IDENTITY = "roles, ownership and identities are never changed by a gated step"
EXTENSIONS = "extensions are installed by the operator, never by a gated step"
PREPARED = "prepared statements are session state that outlives the step"
# Kinds refused whatever the allow list says, with the reason given to the operator.
REFUSED: dict[str, str] = {
    "transaction": "transaction control belongs to gcos, which runs the step inside its own transaction",
    "call": "CALL runs a procedure that can COMMIT or change the session, which gcos cannot check",
    "do": "a DO block is opaque code that gcos cannot check; write the DDL/DML itself",
    "discard": "DISCARD resets gcos's session",
    **dict.fromkeys(("listen", "unlisten", "notify"), f"LISTEN/NOTIFY {BUS}"),
    "vacuum": f"VACUUM {NO_TX}",
    "analyze": "ANALYZE is maintenance, not a build step",
    "cluster": "CLUSTER is maintenance that rewrites a table (and without a table name it " + NO_TX + ")",
    "reindex": "REINDEX is maintenance, not a build step",
    "reindex_concurrently": f"REINDEX CONCURRENTLY {NO_TX}",
    "create_index_concurrently": f"CREATE INDEX CONCURRENTLY {NO_TX}",
    "drop_index_concurrently": f"DROP INDEX CONCURRENTLY {NO_TX}",
    "alter_system": f"ALTER SYSTEM {NO_TX} and changes the server's configuration",
    **{k: f"{k.replace('_', ' ').upper()} {NO_TX}" for k in ("create_database", "drop_database")},
    **{k: f"{k.replace('_', ' ').upper()} {NO_TX}" for k in ("create_tablespace", "drop_tablespace")},
    **{f"{v}_subscription": f"{v.upper()} SUBSCRIPTION {NO_TX}" for v in ("create", "alter", "drop")},
    "alter_database": "databases are never changed by a gated step",
    **dict.fromkeys(("grant", "revoke", "grant_role", "alter_default_privileges"), PRIVILEGES),
    **dict.fromkeys(("create_role", "alter_role", "drop_role", "alter_role_set", "reassign_owned"), IDENTITY),
    **dict.fromkeys(("drop_owned", "alter_owner"), IDENTITY),
    "copy": "COPY reads or writes server files, programs or a client stream, none of which a gated step may use",
    **dict.fromkeys(("create_extension", "alter_extension", "alter_extension_contents"), EXTENSIONS),
    **dict.fromkeys(("prepare", "execute", "deallocate"), PREPARED),
    **dict.fromkeys(("declare_cursor", "fetch", "close_portal"), "cursors are session state, not a build step"),
    "check_point": "CHECKPOINT is server maintenance, not a build step",
    "load": "LOAD loads a shared library into the session",
    "select_into": "SELECT ... INTO creates a table hidden in a query; write CREATE TABLE and INSERT",
}
# Functions that write outside the transaction: no ROLLBACK undoes them, so no rehearsal can prove them.
# Refused in every statement of a step and in every check (CHECK_WRITE_CALLS below includes them).
NON_TRANSACTIONAL_CALLS: dict[str, str] = {
    "setval": "setval() sets a sequence outside the transaction, so no ROLLBACK undoes it and no rehearsal can "
    "prove it; a step may only advance sequences with nextval()",
}
# Functions refused anywhere in any statement (set_config is checked by its setting name and scope).
UNSAFE_CALLS: dict[str, str] = {
    **NON_TRANSACTIONAL_CALLS,
    "pg_notify": f"pg_notify() {BUS}",
    **{
        f: f"{f}() takes a session-level lock that outlives the transaction"
        for f in _words("pg_advisory_lock pg_advisory_lock_shared pg_try_advisory_lock pg_try_advisory_lock_shared")
    },
    **{
        f: f"{f}() changes the session or the server outside the transaction"
        for f in _words(
            "pg_advisory_unlock pg_advisory_unlock_all pg_advisory_unlock_shared pg_terminate_backend "
            "pg_cancel_backend pg_reload_conf pg_promote pg_switch_wal pg_create_restore_point "
            "pg_create_logical_replication_slot pg_create_physical_replication_slot pg_drop_replication_slot "
            "lo_import lo_export"
        )
    },
}
READ_KINDS = frozenset({"select", "show", "explain"})
FREE_KINDS = frozenset({"set_local", "set_constraints"})  # transaction-scoped, write nothing
# Kinds the schema has no name for, allowed through their nearest allow kind.
ALIASES = {"alter_type": "create_type", "create_trigger": "alter_table", "alter_view": "create_view"}
# What a rollback may do to undo each allowed mutation kind (on the same names).
UNDO: dict[str, tuple[str, ...]] = {
    "create_table": ("drop_table", "delete"),
    "create_view": ("drop_view", "create_view"),
    "create_index": ("drop_index",),
    "create_function": ("drop_function", "create_function"),
    "create_type": ("drop_type",),
    "insert": ("delete",),
    "update": ("update",),
    "delete": ("insert",),
    "alter_table": ("alter_table",),
    "comment": ("comment",),
    "drop_table": ("create_table", "insert", "comment", "create_index"),
    "drop_view": ("create_view", "comment"),
}
# Statement kinds whose parse-node name does not say it well.
RENAMED = dict(
    pair.split("=")
    for pair in _words(
        "createdb=create_database dropdb=drop_database create_table_space=create_tablespace "
        "drop_table_space=drop_tablespace constraints_set=set_constraints variable_show=show "
        "create_trig=create_trigger create_seq=create_sequence alter_seq=alter_sequence create=create_table "
        "view=create_view composite_type=create_type rule=create_rule"
    )
)
ast: Any = pglast.ast  # nodes are walked generically: their optional fields are read as Any
PLACEHOLDER = re.compile(r"%\((\w+)\)s")
Allow = Mapping[str, frozenset[str]]


@dataclass(frozen=True)
class Statement:
    """One parsed statement: its text, its kind, the objects it writes and the line it starts on."""

    text: str
    kind: str
    targets: tuple[str, ...]
    line: int
    writes: tuple[tuple[str, str], ...] = ()  # (kind, object) pairs checked against the allow list


@dataclass
class _Info:
    kind: str
    targets: list[str] = field(default_factory=list)
    writes: list[tuple[str, str]] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)  # columns created (forbid_columns)
    creates: list[str] = field(default_factory=list)  # objects created/altered/renamed (forbid_objects)
    refusal: str | None = None
    table: str | None = None  # the table of a CREATE INDEX


def _norm(name: str) -> str:
    return name.removeprefix("public.")


def _rv(rv: Any) -> str:
    return _norm(f"{rv.schemaname}.{rv.relname}" if rv.schemaname else str(rv.relname))


def _dotted(obj: Any) -> str:
    """The name of an object reference: a String, a list of them, ObjectWithArgs or TypeName."""
    if isinstance(obj, ast.String):
        return _norm(obj.sval)
    if isinstance(obj, ast.ObjectWithArgs):
        obj = obj.objname
    elif isinstance(obj, ast.TypeName):
        obj = obj.names
    elif isinstance(obj, ast.RangeVar):
        return _rv(obj)
    return _norm(".".join(s.sval for s in obj if isinstance(s, ast.String))) if obj else "?"


def _suffix(enum: Any) -> str:
    return str(getattr(enum, "name", enum)).removeprefix("OBJECT_").lower()


def _walk(node: Any, *, bodies: bool = True) -> Iterator[Any]:
    if isinstance(node, ast.Node):
        yield node
        for attr in node:
            if bodies or attr != "sql_body":
                yield from _walk(getattr(node, attr), bodies=bodies)
    elif isinstance(node, tuple | list):
        for item in node:
            yield from _walk(item, bodies=bodies)


def _writes(stmt: Any) -> list[tuple[str, str]]:
    """Every table written by a DML node anywhere in the statement (data-modifying CTEs included)."""
    out: list[tuple[str, str]] = []
    for n in _walk(stmt, bodies=False):
        if isinstance(n, ast.InsertStmt):
            out.append(("insert", _rv(n.relation)))
            if n.onConflictClause is not None and _suffix(n.onConflictClause.action) == "onconflict_update":
                out.append(("update", _rv(n.relation)))
        elif isinstance(n, ast.UpdateStmt | ast.DeleteStmt):
            out.append((type(n).__name__.removesuffix("Stmt").lower(), _rv(n.relation)))
        elif isinstance(n, ast.MergeStmt):
            for clause in n.mergeWhenClauses or ():
                if (cmd := _suffix(clause.commandType).removeprefix("cmd_")) != "nothing":
                    out.append((cmd, _rv(n.relation)))
    return list(dict.fromkeys(out))


def _select_columns(select: Any) -> list[str]:
    """Output column names of a SELECT as far as the text shows them (aliases, plain column refs)."""
    out = []
    for target in getattr(select, "targetList", None) or ():
        if target.name:
            out.append(target.name)
        elif isinstance(target.val, ast.ColumnRef) and isinstance(target.val.fields[-1], ast.String):
            out.append(target.val.fields[-1].sval)
    return out


def _set(stmt: Any) -> _Info:
    kind, name, local = _suffix(stmt.kind), (stmt.name or "").lower(), stmt.is_local
    verb = "RESET" if kind.startswith("var_reset") else "SET LOCAL" if local else "SET"
    info = _Info("reset" if verb == "RESET" else "set")
    if kind == "var_reset_all":
        info.refusal = "RESET ALL resets gcos's session guards (timeouts, role, search_path)"
    elif kind == "var_set_multi":
        info.refusal = f"SET {stmt.name} changes gcos's transaction or session characteristics"
    elif name in GUARDED:
        what = "the session's identity" if name in ("role", "session_authorization") else "a gcos session guard"
        info.refusal = f"{verb} {name} changes {what}"
    elif not local:
        info.refusal = f"{verb} {name} outlives the step's transaction; use SET LOCAL"
    else:
        info.kind, info.targets = "set_local", [name]  # the setting: the rehearsal lets it differ inside
    return info


def _classify(stmt: Any) -> _Info:
    """Kind, targets, writes, new columns/objects and any unconditional refusal of one statement."""
    name = type(stmt).__name__
    kind = re.sub(r"(?<!^)(?=[A-Z])", "_", name.removesuffix("Stmt")).lower()
    kind = RENAMED.get(kind, kind)
    info = _Info(kind)
    if isinstance(stmt, ast.InsertStmt | ast.UpdateStmt | ast.DeleteStmt | ast.MergeStmt):
        info.kind = name.removesuffix("Stmt").lower()
    elif isinstance(stmt, ast.SelectStmt):
        if stmt.intoClause is not None:
            info.kind, info.targets = "select_into", [_rv(stmt.intoClause.rel)]
    elif isinstance(stmt, ast.VariableSetStmt):
        return _set(stmt)
    elif isinstance(stmt, ast.GrantStmt):
        info.kind = "grant" if stmt.is_grant else "revoke"
    elif isinstance(stmt, ast.VacuumStmt):
        info.kind = "vacuum" if stmt.is_vacuumcmd else "analyze"
    elif isinstance(stmt, ast.ReindexStmt):
        concurrently = any(p.defname == "concurrently" for p in stmt.params or ())
        info.kind = "reindex_concurrently" if concurrently else "reindex"
    elif isinstance(stmt, ast.CreateStmt | ast.CreateSeqStmt | ast.CompositeTypeStmt | ast.ViewStmt):
        rel = getattr(stmt, "view", None) or getattr(stmt, "typevar", None) or getattr(stmt, "sequence", None)
        rel = rel or stmt.relation
        info.targets = [_rv(rel)]
        if isinstance(stmt, ast.ViewStmt):
            info.columns = [a.sval for a in stmt.aliases or ()] + _select_columns(stmt.query)
    elif isinstance(stmt, ast.CreateTableAsStmt):
        info.kind = "create_table" if _suffix(stmt.objtype) == "table" else f"create_{_suffix(stmt.objtype)}"
        info.targets = [_rv(stmt.into.rel)]
        info.columns = [c.sval for c in stmt.into.colNames or ()] + _select_columns(stmt.query)
    elif isinstance(stmt, ast.IndexStmt):
        info.kind = "create_index_concurrently" if stmt.concurrent else "create_index"
        info.table = _rv(stmt.relation)
        info.targets = [*([_norm(stmt.idxname)] if stmt.idxname else []), info.table]
        info.writes = [(info.kind, info.targets[0])]  # allowed by the index's name or its table's
    elif isinstance(stmt, ast.CreateTrigStmt):
        info.targets, info.creates = [_rv(stmt.relation)], [stmt.trigname]
    elif isinstance(stmt, ast.CreateFunctionStmt):
        info.kind = "create_procedure" if stmt.is_procedure else "create_function"
        info.targets = [_dotted(stmt.funcname)]
    elif isinstance(stmt, ast.CreateEnumStmt | ast.CreateRangeStmt | ast.CreateDomainStmt | ast.AlterEnumStmt):
        info.kind = "alter_type" if isinstance(stmt, ast.AlterEnumStmt) else "create_type"
        info.targets = [_dotted(getattr(stmt, "domainname", None) or stmt.typeName)]
    elif isinstance(stmt, ast.DefineStmt):
        info.kind, info.targets = f"create_{_suffix(stmt.kind)}", [_dotted(stmt.defnames)]
    elif isinstance(stmt, ast.AlterTableStmt):
        info.kind, info.targets = f"alter_{_suffix(stmt.objtype)}", [_rv(stmt.relation)]
        for cmd in stmt.cmds or ():
            sub = _suffix(cmd.subtype)
            if sub.startswith("at_disabletrig"):
                info.refusal = "ALTER TABLE ... DISABLE TRIGGER switches off the database's own guards"
            elif sub in ("at_disablerowsecurity", "at_noforcerowsecurity"):
                info.refusal = "switching off row-level security is never part of a gated step"
            elif sub == "at_changeowner":
                info.refusal = IDENTITY
            elif _suffix(cmd.behavior) == "drop_cascade":
                info.refusal = "CASCADE would drop dependent objects the allow list does not name"
            elif sub == "at_detachpartition" and getattr(cmd.def_, "concurrent", False):
                info.refusal = f"DETACH PARTITION CONCURRENTLY {NO_TX}"
    elif isinstance(stmt, ast.RenameStmt):
        rename, rel = _suffix(stmt.renameType), stmt.relation
        relkind = rename if rename in ("table", "index", "view", "matview", "sequence", "foreign_table") else "table"
        info.kind = f"alter_{relkind if rel is not None else rename}"
        info.targets = [_rv(rel) if rel is not None else _dotted(stmt.object)]
        (info.columns if rename == "column" else info.creates).append(stmt.newname)
    elif isinstance(stmt, ast.DropStmt):
        info.kind = f"drop_{_suffix(stmt.removeType)}" + ("_concurrently" if stmt.concurrent else "")
        info.targets = [_dotted(o) for o in stmt.objects or ()]
        if _suffix(stmt.behavior) == "drop_cascade":
            info.refusal = "DROP ... CASCADE would drop dependent objects the allow list does not name"
    elif isinstance(stmt, ast.TruncateStmt):
        info.targets = [_rv(r) for r in stmt.relations]
        info.writes = [("delete", t) for t in info.targets]
        if _suffix(stmt.behavior) == "drop_cascade":
            info.refusal = "TRUNCATE ... CASCADE would empty tables the allow list does not name"
    elif isinstance(stmt, ast.CommentStmt):
        obj: Any = stmt.object
        if _suffix(stmt.objtype) in ("column", "tabconstraint", "trigger", "policy", "rule") and isinstance(
            obj, tuple | list
        ):
            obj = obj[:-1]  # the table the sub-object belongs to
        info.targets = [_dotted(obj)]
    elif isinstance(stmt, ast.LockStmt):
        info.targets = [_rv(r) for r in stmt.relations]
    if not info.writes:
        info.writes = _writes(stmt)
        if info.kind not in READ_KINDS | FREE_KINDS | {"lock"} and not isinstance(
            stmt, ast.InsertStmt | ast.UpdateStmt | ast.DeleteStmt | ast.MergeStmt
        ):
            info.writes[:0] = [(info.kind, t) for t in info.targets or ["*"]]
    if info.kind.startswith(("create_", "alter_")):
        info.creates += info.targets
    if isinstance(stmt, ast.CreateStmt | ast.AlterTableStmt | ast.CompositeTypeStmt):
        info.columns += [n.colname for n in _walk(stmt) if isinstance(n, ast.ColumnDef)]
    info.targets = list(dict.fromkeys([*info.targets, *(t for _, t in info.writes if t != "*")]))
    info.refusal = info.refusal or REFUSED.get(info.kind)
    return info


def _is_true(args: Sequence[Any]) -> bool:
    """Whether the one argument in `args` is the constant true (set_config's is_local); fail closed."""
    arg = args[0] if args else None
    while isinstance(arg, ast.TypeCast):
        arg = arg.arg
    value = getattr(arg, "val", None) if isinstance(arg, ast.A_Const) else None
    if isinstance(value, ast.Boolean):
        return bool(value.boolval)
    return isinstance(value, ast.String) and value.sval.strip().lower() in ("t", "true", "on", "y", "yes", "1")


def _call_refusal(stmt: Any) -> str | None:
    """A reason to refuse a session-changing function call anywhere in the statement, or None."""
    for n in _walk(stmt):
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
            if not _is_true((n.args or ())[2:3]):
                name = arg.val.sval
                return f"set_config('{name}', ..., false) outlives the step's transaction; pass true (SET LOCAL)"
        elif func in UNSAFE_CALLS or func.startswith("dblink"):
            return UNSAFE_CALLS.get(func, f"{func}() works on another connection, outside gcos's transaction")
    return None


# Functions a read-only check must not call: they write, and some (setval, nextval) even outside the
# transaction. Checks also run inside the commit's read-write transaction.
CHECK_WRITE_CALLS = frozenset(NON_TRANSACTIONAL_CALLS) | frozenset(
    _words(
        "nextval lo_create lo_creat lo_unlink lo_put lo_from_bytea lo_truncate lo_truncate64 lowrite "
        "pg_file_write pg_file_rename pg_file_unlink pg_file_sync pg_logical_emit_message"
    )
)


def _check_write_call(node: Any) -> str | None:
    for n in _walk(node):
        if isinstance(n, ast.FuncCall) and n.funcname[-1].sval.lower() in CHECK_WRITE_CALLS:
            return f"a check must not call {n.funcname[-1].sval}(), which writes"
    return None


def _parse(sql: str, where: str, *, original: str | None = None) -> list[tuple[Statement, _Info, Any]]:
    shown = original if original is not None else sql
    try:
        raws = pglast.parse_sql(sql)
    except pglast.parser.ParseError as exc:
        pos = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], int) else 0
        raise SpecError(
            f"{where} line {shown.count(chr(10), 0, pos) + 1}: SQL does not parse: {exc.args[0]}; fix the SQL."
        ) from exc
    out = []
    for raw in raws:
        start = raw.stmt_location or 0
        text = shown[start : start + raw.stmt_len] if raw.stmt_len else shown[start:]
        info = _classify(raw.stmt)
        st = Statement(
            text.strip(), info.kind, tuple(info.targets), shown.count("\n", 0, start) + 1, tuple(info.writes)
        )
        out.append((st, info, raw.stmt))
    return out


def split(sql: str) -> list[Statement]:
    """Parse SQL with PostgreSQL's parser and classify each statement; SpecError if it does not parse."""
    return [st for st, _, _ in _parse(sql, "SQL")]


def _refuse(where: str, st: Statement, reason: str) -> NoReturn:
    quoted = " ".join(st.text.split())
    quoted = quoted if len(quoted) <= 120 else quoted[:119] + "…"
    raise SpecError(
        f'{where} line {st.line}: {reason}; refused: "{quoted}".',
        details={"where": where, "line": st.line, "kind": st.kind, "reason": reason, "statement": st.text},
    )


def _allowed(kind: str, name: str, info: _Info, allow: Allow) -> bool:
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
    parsed = _parse(sql, where)
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
        out.setdefault(kind, set()).update(_norm(n) for n in names)
    return {k: frozenset(v) for k, v in out.items()}


def check_mutation(
    step: StepSpec, *, extra_forbid_columns: Sequence[str] = (), extra_forbid_objects: Sequence[str] = ()
) -> list[Statement]:
    """Check the mutation SQL against the step's allow list and every refusal class; [] without one."""
    if step.mutation is None:
        return []
    stmts = _check(
        step, "mutation", step.mutation.sql, _allow_of(step), columns=extra_forbid_columns, objects=extra_forbid_objects
    )
    if not stmts:
        raise SpecError(f"step {step.id} mutation: the SQL holds no statement; write the step's DDL/DML.")
    return stmts


def check_rollback(step: StepSpec) -> list[Statement]:
    """Check the rollback SQL: it may only undo what the mutation's allow list lets the step do."""
    where = f"step {step.id} rollback"
    if step.mutation is None:  # a verification-only step: nothing to undo, so only comments or reads
        parsed = _parse(step.rollback_sql, where)
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
    parsed = _parse(as_params, where, original=sql)
    if len(parsed) != 1 or parsed[0][1].kind != "insert":
        kinds = ", ".join(st.kind for st, _, _ in parsed) or "nothing"
        raise SpecError(f"{where}: the batch SQL must be exactly one INSERT, found {kinds}; write one INSERT.")
    st, info, node = parsed[0]
    if reason := info.refusal or _call_refusal(node):
        _refuse(where, st, reason)
    allow = _allow_of(step)
    for kind, name in st.writes:
        if name == _norm(step.batch.table):
            _refuse(where, st, f"the batch writes its own source table {name} ({kind}); a backfill never modifies it")
        if step.mutation is not None and not _allowed(kind, name, info, allow):
            _refuse(where, st, f"{kind} {name} is not in the allow list of the mutation")
    return [st]


def check_query(sql: str, *, label: str) -> None:
    """Refuse anything but a read-only SELECT in a check run inside a rehearsal (reverify/stop/success)."""
    for st, info, node in _parse(sql, label):
        if info.kind != "select":
            _refuse(label, st, info.refusal or f"a check must be a read-only SELECT, not {info.kind}")
        if info.writes:
            _refuse(label, st, f"a check must not write ({info.writes[0][0]} {info.writes[0][1]})")
        if any(isinstance(n, ast.SelectStmt) and n.lockingClause for n in _walk(node)):
            _refuse(label, st, "a check must not lock rows (FOR UPDATE/SHARE)")
        if reason := _check_write_call(node) or _call_refusal(node):
            _refuse(label, st, reason)
