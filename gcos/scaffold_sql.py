"""What `gcos new` derives from SQL one already has: the allow list, re-verify, success and rollback skeletons.

The allow list comes from gcos.sqlcheck.split (PostgreSQL's parser, the same classification rehearse uses).
The rollback is written only where the inverse is mechanical: CREATE -> DROP, ADD COLUMN -> DROP COLUMN,
INSERT of literal rows -> DELETE of those rows. Anything else gets a TODO line that is not SQL and that the
spec loader refuses by name (gcos.spec.load, TODO_MARK), so a spec with a TODO never passes silently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pglast
from pglast.stream import RawStream

from gcos.spec.load import TODO_MARK
from gcos.sqlcheck import Statement, split

PLAIN = re.compile(r"^[a-z_][a-z0-9_$]*$")


def quote_ident(name: str) -> str:
    """An identifier as SQL text: bare when PostgreSQL would fold it to itself, else double-quoted."""
    return name if PLAIN.match(name) else '"' + name.replace('"', '""') + '"'


def _relation(rv: Any) -> str:
    return ".".join(quote_ident(p) for p in (rv.schemaname, rv.relname) if p)


def _literal(a: Any) -> str:
    return str(RawStream()(a))


@dataclass
class Derived:
    """What the SQL tells: allow items, created objects (kind, name), added columns, the rollback lines."""

    allow: list[dict[str, Any]] = field(default_factory=list)
    created: list[tuple[str, str]] = field(default_factory=list)  # (regclass|regtype, name)
    columns: list[tuple[str, str]] = field(default_factory=list)  # (table, column)
    written: list[str] = field(default_factory=list)  # tables rows are written to
    rollback: list[str] = field(default_factory=list)
    todos: int = 0
    online: bool = False  # a statement PostgreSQL refuses in a transaction block: the step is mode: online
    indexes: list[str] = field(default_factory=list)  # indexes built concurrently, whose validity success proves


# An online step's allow list names concurrently built, dropped or rebuilt indexes under create_index (README
# "Online steps"); DETACH PARTITION ... CONCURRENTLY stays alter_table.
_ONLINE_KIND = {
    "create_index_concurrently": "create_index",
    "drop_index_concurrently": "create_index",
    "reindex_concurrently": "create_index",
}


def _allow(statements: list[Statement]) -> list[dict[str, Any]]:
    """{kind: name} or {kind: [names]}, kinds in first-seen order, names deduplicated."""
    kinds: dict[str, list[str]] = {}
    for st in statements:
        for kind, name in st.writes:
            if kind == "reindex_concurrently":  # REINDEX INDEX CONCURRENTLY name: the index it names
                relation = getattr(pglast.parse_sql(st.text)[0].stmt, "relation", None)
                name = _relation(relation) if relation is not None else name
            names = kinds.setdefault(_ONLINE_KIND.get(kind, kind), [])
            if name not in names:
                names.append(name)
    return [{kind: names[0] if len(names) == 1 else names} for kind, names in kinds.items()]


def _is_online(st: Statement, node: Any) -> bool:
    """Whether PostgreSQL refuses the statement in a transaction block (the forms an online step runs)."""
    if st.kind in _ONLINE_KIND:
        return True
    cmds = node.cmds or () if type(node).__name__ == "AlterTableStmt" else ()
    return any(getattr(getattr(cmd, "def_", None), "concurrent", False) for cmd in cmds)


def _insert_inverse(node: Any) -> str | None:
    """DELETE of the literal rows an INSERT ... (cols) VALUES (...) adds, or None if it is not that."""
    select = node.selectStmt
    if not node.cols or select is None or not select.valuesLists or node.onConflictClause or node.withClause:
        return None
    if any(type(v).__name__ != "A_Const" for row in select.valuesLists for v in row):
        return None
    cols = ", ".join(quote_ident(c.name) for c in node.cols)
    rows = [f"({cols}) IS NOT DISTINCT FROM ({', '.join(_literal(v) for v in row)})" for row in select.valuesLists]
    return f"DELETE FROM {_relation(node.relation)}\n WHERE " + "\n    OR ".join(rows) + ";"


def _create_inverse(node: Any, derived: Derived) -> str | None:
    """DROP of what a CREATE made (not CREATE OR REPLACE, whose previous version is unknown)."""
    kind = type(node).__name__
    if kind == "CreateStmt" and not node.if_not_exists:
        name = _relation(node.relation)
        derived.created.append(("regclass", name))
        return f"DROP TABLE {name};"
    if kind == "ViewStmt" and not node.replace:
        name = _relation(node.view)
        derived.created.append(("regclass", name))
        return f"DROP VIEW {name};"
    if kind == "IndexStmt" and node.idxname and (node.concurrent or not node.if_not_exists):
        # a concurrent build must say IF NOT EXISTS (it is retried); re-verify proves the index absent before
        schema = node.relation.schemaname
        name = ".".join(quote_ident(p) for p in (schema, node.idxname) if p)
        derived.created.append(("regclass", name))
        if node.concurrent:
            derived.indexes.append(name)
            return f"DROP INDEX IF EXISTS {name};"  # rollback runs in a transaction: no CONCURRENTLY
        return f"DROP INDEX {name};"
    if kind == "CreateSeqStmt" and not node.if_not_exists:
        name = _relation(node.sequence)
        derived.created.append(("regclass", name))
        return f"DROP SEQUENCE {name};"
    if kind in ("CreateEnumStmt", "CompositeTypeStmt", "CreateDomainStmt"):
        parts = node.typevar if kind == "CompositeTypeStmt" else None
        name = _relation(parts) if parts else ".".join(quote_ident(s.sval) for s in (node.typeName or node.domainname))
        derived.created.append(("regtype", name))
        return f"DROP {'DOMAIN' if kind == 'CreateDomainStmt' else 'TYPE'} {name};"
    return None


def _add_column_inverse(node: Any, derived: Derived) -> str | None:
    """ALTER TABLE t DROP COLUMN c, ... for an ALTER TABLE that only adds columns."""
    if type(node).__name__ != "AlterTableStmt" or not node.cmds:
        return None
    if any(cmd.subtype.name != "AT_AddColumn" or cmd.missing_ok for cmd in node.cmds):
        return None
    table = _relation(node.relation)
    names = [cmd.def_.colname for cmd in node.cmds]
    derived.columns += [(table, c) for c in names]
    return f"ALTER TABLE {table} " + ", ".join(f"DROP COLUMN {quote_ident(c)}" for c in names) + ";"


def derive(sql_text: str) -> Derived:
    """The allow list and skeletons for `sql_text` (SpecError if it does not parse)."""
    statements = split(sql_text)
    derived = Derived(allow=_allow(statements))
    inverses: list[str] = []
    for st in statements:
        node = pglast.parse_sql(st.text)[0].stmt
        derived.online = derived.online or _is_online(st, node)
        if type(node).__name__ in ("InsertStmt", "UpdateStmt", "DeleteStmt"):
            derived.written += [t for k, t in st.writes if t not in derived.written]
        inverse = _create_inverse(node, derived) or _add_column_inverse(node, derived)
        if inverse is None and type(node).__name__ == "InsertStmt":
            inverse = _insert_inverse(node)
        if inverse is None and st.kind == "reindex_concurrently":
            inverse = f"-- nothing to undo for line {st.line}: REINDEX rebuilds an index and changes no definition"
        if inverse is None:
            first = " ".join(st.text.split())[:100]
            inverse = f"{TODO_MARK} write the inverse of line {st.line}: {first}"
            derived.todos += 1
        inverses.append(inverse)
    derived.rollback = list(reversed(inverses))  # undo in reverse order
    return derived
