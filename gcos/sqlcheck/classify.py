"""Classify each statement by walking its PostgreSQL parse tree (pglast), never by matching text.

A string, a comment or a dollar-quoted body that merely mentions COMMIT is therefore not a COMMIT.
One classifier per parse-node type (the CLASSIFIERS dispatch table) fills in what the policy needs:
the statement's kind, the objects it names and writes, the columns and objects it creates, and a
refusal the node itself carries (CASCADE, DISABLE TRIGGER, a session-level SET). Nothing runs here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pglast
import pglast.ast

from gcos.errors import SpecError
from gcos.sqlcheck.rules import FREE_KINDS, GUARDED, IDENTITY, NO_TX, ONLINE, READ_KINDS, REFUSED

# Statement kinds whose parse-node name does not say it well.
RENAMED = {
    "createdb": "create_database",
    "dropdb": "drop_database",
    "create_table_space": "create_tablespace",
    "drop_table_space": "drop_tablespace",
    "constraints_set": "set_constraints",
    "variable_show": "show",
    "create_trig": "create_trigger",
    "create_seq": "create_sequence",
    "alter_seq": "alter_sequence",
    "create": "create_table",
    "view": "create_view",
    "composite_type": "create_type",
    "rule": "create_rule",
}
ast: Any = pglast.ast  # nodes are walked generically: their optional fields are read as Any


@dataclass(frozen=True)
class Statement:
    """One parsed statement: its text, its kind, the objects it writes and the line it starts on."""

    text: str
    kind: str
    targets: tuple[str, ...]
    line: int
    writes: tuple[tuple[str, str], ...] = ()  # (kind, object) pairs checked against the allow list


@dataclass
class Info:
    """What the policy needs to know of one statement; filled in by its node's classifier."""

    kind: str
    targets: list[str] = field(default_factory=list)
    writes: list[tuple[str, str]] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)  # columns created (forbid_columns)
    creates: list[str] = field(default_factory=list)  # objects created/altered/renamed (forbid_objects)
    refusal: str | None = None
    table: str | None = None  # the table of a CREATE INDEX


# --------------------------------------------------------------------------- names in the parse tree


def norm(name: str) -> str:
    """An object name as allow lists spell it: schema public is implied."""
    return name.removeprefix("public.")


def _rv(rv: Any) -> str:
    return norm(f"{rv.schemaname}.{rv.relname}" if rv.schemaname else str(rv.relname))


def _dotted(obj: Any) -> str:
    """The name of an object reference: a String, a list of them, ObjectWithArgs or TypeName."""
    if isinstance(obj, ast.String):
        return norm(obj.sval)
    if isinstance(obj, ast.ObjectWithArgs):
        obj = obj.objname
    elif isinstance(obj, ast.TypeName):
        obj = obj.names
    elif isinstance(obj, ast.RangeVar):
        return _rv(obj)
    return norm(".".join(s.sval for s in obj if isinstance(s, ast.String))) if obj else "?"


def _suffix(enum: Any) -> str:
    return str(getattr(enum, "name", enum)).removeprefix("OBJECT_").lower()


def walk(node: Any, *, bodies: bool = True) -> Iterator[Any]:
    """Every node under `node`, itself first; without function bodies when `bodies` is false."""
    if isinstance(node, ast.Node):
        yield node
        for attr in node:
            if bodies or attr != "sql_body":
                yield from walk(getattr(node, attr), bodies=bodies)
    elif isinstance(node, tuple | list):
        for item in node:
            yield from walk(item, bodies=bodies)


def _writes(stmt: Any) -> list[tuple[str, str]]:
    """Every table written by a DML node anywhere in the statement (data-modifying CTEs included)."""
    out: list[tuple[str, str]] = []
    for n in walk(stmt, bodies=False):
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


# --------------------------------------------------------------------------- one classifier per node type


def _set(stmt: Any) -> Info:
    """SET/RESET, classified whole: its refusal depends on its scope and setting, and it writes nothing."""
    kind, name, local = _suffix(stmt.kind), (stmt.name or "").lower(), stmt.is_local
    verb = "RESET" if kind.startswith("var_reset") else "SET LOCAL" if local else "SET"
    info = Info("reset" if verb == "RESET" else "set")
    if kind == "var_reset_all":
        info.refusal = "RESET ALL resets gcos's session guards (timeouts, role, search_path)"
    elif kind == "var_set_multi":
        info.refusal = f"SET {stmt.name} changes gcos's transaction or session characteristics"
    elif name in GUARDED:
        what = "the session's identity" if name in ("role", "session_authorization") else "a gcos session guard"
        info.refusal = f"{verb} {name} changes {what}"
    elif not local:
        info.refusal = f"{verb} {name} outlives the step's transaction; a step does not change settings"
    else:
        info.refusal = (
            f"{verb} {name} changes a setting, which the kernel cannot tell from a session-level change (it fails "
            "the rehearsal as residue); a step does not change settings"
        )
    return info


def _select(stmt: Any, info: Info) -> None:
    if stmt.intoClause is not None:
        info.kind, info.targets = "select_into", [_rv(stmt.intoClause.rel)]


def _grant(stmt: Any, info: Info) -> None:
    info.kind = "grant" if stmt.is_grant else "revoke"


def _vacuum(stmt: Any, info: Info) -> None:
    info.kind = "vacuum" if stmt.is_vacuumcmd else "analyze"


def _reindex(stmt: Any, info: Info) -> None:
    concurrently = any(p.defname == "concurrently" for p in stmt.params or ())
    info.kind = "reindex_concurrently" if concurrently else "reindex"


def _create_relation(stmt: Any, info: Info) -> None:
    """CREATE TABLE / SEQUENCE / TYPE ... AS (...) / VIEW: the relation, and a view's output columns."""
    rel = getattr(stmt, "view", None) or getattr(stmt, "typevar", None) or getattr(stmt, "sequence", None)
    rel = rel or stmt.relation
    info.targets = [_rv(rel)]
    if isinstance(stmt, ast.ViewStmt):
        info.columns = [a.sval for a in stmt.aliases or ()] + _select_columns(stmt.query)


def _create_table_as(stmt: Any, info: Info) -> None:
    info.kind = "create_table" if _suffix(stmt.objtype) == "table" else f"create_{_suffix(stmt.objtype)}"
    info.targets = [_rv(stmt.into.rel)]
    info.columns = [c.sval for c in stmt.into.colNames or ()] + _select_columns(stmt.query)


def _create_index(stmt: Any, info: Info) -> None:
    info.kind = "create_index_concurrently" if stmt.concurrent else "create_index"
    info.table = _rv(stmt.relation)
    info.targets = [*([norm(stmt.idxname)] if stmt.idxname else []), info.table]
    info.writes = [(info.kind, info.targets[0])]  # allowed by the index's name or its table's


def _create_trigger(stmt: Any, info: Info) -> None:
    info.targets, info.creates = [_rv(stmt.relation)], [stmt.trigname]


def _create_function(stmt: Any, info: Info) -> None:
    info.kind = "create_procedure" if stmt.is_procedure else "create_function"
    info.targets = [_dotted(stmt.funcname)]


def _create_type(stmt: Any, info: Info) -> None:
    info.kind = "alter_type" if isinstance(stmt, ast.AlterEnumStmt) else "create_type"
    info.targets = [_dotted(getattr(stmt, "domainname", None) or stmt.typeName)]


def _define(stmt: Any, info: Info) -> None:
    info.kind, info.targets = f"create_{_suffix(stmt.kind)}", [_dotted(stmt.defnames)]


def _alter_table_refusal(cmd: Any) -> str | None:
    """Why one ALTER TABLE subcommand is never part of a gated step, or None."""
    sub = _suffix(cmd.subtype)
    if sub.startswith("at_disabletrig"):
        return "ALTER TABLE ... DISABLE TRIGGER switches off the database's own guards"
    if sub in ("at_disablerowsecurity", "at_noforcerowsecurity"):
        return "switching off row-level security is never part of a gated step"
    if sub == "at_changeowner":
        return IDENTITY
    if _suffix(cmd.behavior) == "drop_cascade":
        return "CASCADE would drop dependent objects the allow list does not name"
    if sub == "at_detachpartition" and getattr(cmd.def_, "concurrent", False):
        return f"DETACH PARTITION CONCURRENTLY {NO_TX}{ONLINE}"
    return None


def _alter_table(stmt: Any, info: Info) -> None:
    info.kind, info.targets = f"alter_{_suffix(stmt.objtype)}", [_rv(stmt.relation)]
    for cmd in stmt.cmds or ():
        if reason := _alter_table_refusal(cmd):
            info.refusal = reason  # any refused subcommand refuses the statement


def _rename(stmt: Any, info: Info) -> None:
    rename, rel = _suffix(stmt.renameType), stmt.relation
    relkind = rename if rename in ("table", "index", "view", "matview", "sequence", "foreign_table") else "table"
    info.kind = f"alter_{relkind if rel is not None else rename}"
    info.targets = [_rv(rel) if rel is not None else _dotted(stmt.object)]
    (info.columns if rename == "column" else info.creates).append(stmt.newname)


def _drop(stmt: Any, info: Info) -> None:
    info.kind = f"drop_{_suffix(stmt.removeType)}" + ("_concurrently" if stmt.concurrent else "")
    info.targets = [_dotted(o) for o in stmt.objects or ()]
    if _suffix(stmt.behavior) == "drop_cascade":
        info.refusal = "DROP ... CASCADE would drop dependent objects the allow list does not name"


def _truncate(stmt: Any, info: Info) -> None:
    info.targets = [_rv(r) for r in stmt.relations]
    info.writes = [("delete", t) for t in info.targets]
    if _suffix(stmt.behavior) == "drop_cascade":
        info.refusal = "TRUNCATE ... CASCADE would empty tables the allow list does not name"


def _comment(stmt: Any, info: Info) -> None:
    obj: Any = stmt.object
    if _suffix(stmt.objtype) in ("column", "tabconstraint", "trigger", "policy", "rule") and isinstance(
        obj, tuple | list
    ):
        obj = obj[:-1]  # the table the sub-object belongs to
    info.targets = [_dotted(obj)]


def _lock(stmt: Any, info: Info) -> None:
    info.targets = [_rv(r) for r in stmt.relations]


Classifier = Callable[[Any, Info], None]
# Node types whose name says their kind and that need nothing more (INSERT, UPDATE, DELETE, MERGE,
# CHECKPOINT, ...) are absent: _complete finds what they write.
CLASSIFIERS: dict[type, Classifier] = {
    ast.SelectStmt: _select,
    ast.GrantStmt: _grant,
    ast.VacuumStmt: _vacuum,
    ast.ReindexStmt: _reindex,
    **dict.fromkeys((ast.CreateStmt, ast.CreateSeqStmt, ast.CompositeTypeStmt, ast.ViewStmt), _create_relation),
    ast.CreateTableAsStmt: _create_table_as,
    ast.IndexStmt: _create_index,
    ast.CreateTrigStmt: _create_trigger,
    ast.CreateFunctionStmt: _create_function,
    **dict.fromkeys((ast.CreateEnumStmt, ast.CreateRangeStmt, ast.CreateDomainStmt, ast.AlterEnumStmt), _create_type),
    ast.DefineStmt: _define,
    ast.AlterTableStmt: _alter_table,
    ast.RenameStmt: _rename,
    ast.DropStmt: _drop,
    ast.TruncateStmt: _truncate,
    ast.CommentStmt: _comment,
    ast.LockStmt: _lock,
}


def _complete(stmt: Any, info: Info) -> None:
    """What every statement gets after its classifier: writes, created names and columns, refusal."""
    if not info.writes:
        info.writes = _writes(stmt)
        if info.kind not in READ_KINDS | FREE_KINDS | {"lock"} and not isinstance(
            stmt, ast.InsertStmt | ast.UpdateStmt | ast.DeleteStmt | ast.MergeStmt
        ):
            info.writes[:0] = [(info.kind, t) for t in info.targets or ["*"]]
    if info.kind.startswith(("create_", "alter_")):
        info.creates += info.targets
    if isinstance(stmt, ast.CreateStmt | ast.AlterTableStmt | ast.CompositeTypeStmt):
        info.columns += [n.colname for n in walk(stmt) if isinstance(n, ast.ColumnDef)]
    info.targets = list(dict.fromkeys([*info.targets, *(t for _, t in info.writes if t != "*")]))
    info.refusal = info.refusal or REFUSED.get(info.kind)


def classify(stmt: Any) -> Info:
    """Kind, targets, writes, new columns/objects and any unconditional refusal of one statement."""
    if isinstance(stmt, ast.VariableSetStmt):
        return _set(stmt)
    name = type(stmt).__name__
    kind = re.sub(r"(?<!^)(?=[A-Z])", "_", name.removesuffix("Stmt")).lower()  # InsertStmt: insert
    info = Info(RENAMED.get(kind, kind))
    if classifier := CLASSIFIERS.get(type(stmt)):
        classifier(stmt, info)
    _complete(stmt, info)
    return info


def parse(sql: str, where: str, *, original: str | None = None) -> list[tuple[Statement, Info, Any]]:
    """Each statement of `sql` with its classification and parse node; SpecError naming the line if
    it does not parse. `original` is the text to quote when `sql` had placeholders replaced."""
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
        info = classify(raw.stmt)
        st = Statement(
            text.strip(), info.kind, tuple(info.targets), shown.count("\n", 0, start) + 1, tuple(info.writes)
        )
        out.append((st, info, raw.stmt))
    return out


def split(sql: str) -> list[Statement]:
    """Parse SQL with PostgreSQL's parser and classify each statement; SpecError if it does not parse."""
    return [st for st, _, _ in parse(sql, "SQL")]
