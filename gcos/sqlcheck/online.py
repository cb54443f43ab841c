"""What `mode: online` lets a mutation do that a transactional one may not, and the one thing a transactional
mutation may not do with an enum (no logic of the kernel here: it checks the same text again).

An online step's statements run one by one, each committed on its own: CREATE INDEX / DROP INDEX / REINDEX INDEX
and ALTER TABLE ... DETACH PARTITION may then be CONCURRENTLY. Each must be idempotent where PostgreSQL lets it
be (CREATE ... IF NOT EXISTS with a name, DROP ... IF EXISTS), because a failed attempt is retried from the top.
Everything else is checked as its transactional equivalent (CONCURRENTLY taken out), which is also what the
kernel rehearses (gcos/sql/035_online_steps.sql)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from pglast.parser import scan

from gcos.errors import SpecError
from gcos.sqlcheck.classify import Info, Statement, ast, norm, parse, walk

CONCURRENT_KINDS = frozenset({"create_index_concurrently", "drop_index_concurrently", "reindex_concurrently"})
_GAP = r"(?:\s|;|--[^\n]*(?:\n|$)|/\*(?:[^*]|\*+[^*/])*\*+/)*"
_ID = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_QID = _ID + r"(?:\s*\.\s*" + _ID + ")?"
SHAPES = tuple(
    re.compile(shape, re.IGNORECASE | re.DOTALL)
    for shape in (
        r"^(CREATE\s+(?:UNIQUE\s+)?INDEX\s+)CONCURRENTLY(\s+IF\s+NOT\s+EXISTS\s+" + _QID + r"\s+ON\s.*)$",
        r"^(DROP\s+INDEX\s+)CONCURRENTLY(\s+IF\s+EXISTS\s+" + _QID + ")$",
        r"^(REINDEX\s+INDEX\s+)CONCURRENTLY(\s+" + _QID + ")$",
        r"^(ALTER\s+TABLE\s+(?:ONLY\s+)?" + _QID + r"\s+DETACH\s+PARTITION\s+" + _QID + r"\s+)CONCURRENTLY()$",
    )
)
"""The only shapes the kernel runs outside a transaction (gcos._online_shape, 036): whole statements, anchored."""
SHAPE_ADVICE = (
    "an online step writes a concurrent statement in one of these shapes (nothing before or after it): CREATE "
    "[UNIQUE] INDEX CONCURRENTLY IF NOT EXISTS name ON ...; DROP INDEX CONCURRENTLY IF EXISTS name; REINDEX INDEX "
    "CONCURRENTLY name; ALTER TABLE [ONLY] name DETACH PARTITION name CONCURRENTLY"
)
COMMENT_ADVICE = (
    "an online step sends a concurrent statement alone and verbatim, so it holds no comment: put comments on "
    "their own lines between statements (the kernel refuses a comment inside one, gcos/sql/037_online_pieces.sql)"
)
ENUM_ADVICE = (
    "PostgreSQL refuses a new enum value in the transaction that added it (SQLSTATE 55P04, unsafe use of new "
    "value), and a rehearsal runs the whole step in one transaction (an online step's too); split this into two "
    "steps: one adds the value, the next uses it"
)


def is_concurrent(info: Info, node: Any) -> bool:
    """Whether a statement cannot run in a transaction block and an online step may run it outside one."""
    if info.kind in CONCURRENT_KINDS:
        return True
    return info.kind == "alter_table" and any(
        isinstance(n, ast.PartitionCmd) and getattr(n, "concurrent", False) for n in walk(node)
    )


def shape(text: str) -> str | None:
    """The statement without its CONCURRENTLY keyword when it has one of the kernel's SHAPES, else None."""
    outer = re.match(f"^({_GAP})(.*?)({_GAP})$", text, re.DOTALL)
    assert outer is not None  # every text matches: the middle group may be empty
    for pattern in SHAPES:
        if found := pattern.match(outer.group(2)):
            return outer.group(1) + found.group(1) + found.group(2) + outer.group(3)
    return None


def equivalent(text: str) -> str:
    """The transactional equivalent of a concurrent statement: CONCURRENTLY taken out at the keyword (as the kernel)."""
    return shape(text) or text


def has_inner_comment(text: str) -> bool:
    """Whether a comment lies between the statement's first and last tokens (PostgreSQL's own scanner reads them)."""
    comment = [t.name in ("SQL_COMMENT", "C_COMMENT") for t in scan(text)]
    code = [i for i, c in enumerate(comment) if not c]
    return bool(code) and any(comment[code[0] : code[-1]])


def _refuse(where: str, st: Statement, reason: str) -> SpecError:
    quoted = " ".join(st.text.split())
    return SpecError(
        f'{where} line {st.line}: {reason}; refused: "{quoted[:119]}".',
        details={"where": where, "line": st.line, "kind": st.kind, "reason": reason, "statement": st.text},
    )


def _index_names(allow: dict[str, frozenset[str]]) -> frozenset[str]:
    return allow.get("create_index", frozenset())


def _concurrent_refusal(info: Info, node: Any, allow: dict[str, frozenset[str]]) -> str | None:
    """Why one concurrent statement may not run online (None when it may)."""
    if info.kind == "create_index_concurrently" and not (node.if_not_exists and node.idxname):
        return (
            "an online CREATE INDEX CONCURRENTLY is retried after a failure, so it names its index and says "
            "IF NOT EXISTS"
        )
    if info.kind == "drop_index_concurrently":
        if not node.missing_ok:
            return "an online DROP INDEX CONCURRENTLY is retried after a failure, so it says IF EXISTS"
        if outside := [t for t in info.targets if t not in _index_names(allow)]:
            return f"DROP INDEX {outside[0]}: an online step drops only indexes its allow list names under create_index"
    return None


def online_sql(step_id: str, sql: str, allow: dict[str, frozenset[str]]) -> tuple[str, list[Statement]]:
    """Check the concurrent statements of an online mutation; return the SQL to check as any mutation (their
    transactional equivalents in place, REINDEX and DROP INDEX left out: no allow kind names them) and the
    statements."""
    where = f"step {step_id} mutation"
    parsed = parse(sql, where)
    out = sql
    for st, info, node in reversed(parsed):
        if not is_concurrent(info, node):
            continue
        if info.kind == "reindex_concurrently":
            reason = _reindex_refusal(st, node, allow)
        else:
            reason = _concurrent_refusal(info, node, allow)
        if reason is None and shape(st.text) is None:
            reason = SHAPE_ADVICE
        if reason is None and has_inner_comment(st.text):
            reason = COMMENT_ADVICE
        if reason:
            raise _refuse(where, st, reason)
        start = out.find(st.text)
        keep = "" if info.kind in ("reindex_concurrently", "drop_index_concurrently") else equivalent(st.text)
        out = out[:start] + keep + out[start + len(st.text) :]
    return out, [st for st, _, _ in parsed]


def _reindex_refusal(st: Statement, node: Any, allow: dict[str, frozenset[str]]) -> str | None:
    if not re.match(r"REINDEX\s+INDEX\s+CONCURRENTLY\b", st.text, re.IGNORECASE) or node.relation is None:
        return "an online step reindexes one index at a time: REINDEX INDEX CONCURRENTLY name"
    name = norm(
        f"{node.relation.schemaname}.{node.relation.relname}" if node.relation.schemaname else node.relation.relname
    )
    if name not in _index_names(allow):
        return f"REINDEX INDEX {name}: an online step reindexes only indexes its allow list names under create_index"
    return None


def enum_use_refusal(step_id: str, section: str, parsed: Sequence[tuple[Statement, Info, Any]]) -> None:
    """Refuse ALTER TYPE ... ADD VALUE 'v' followed, in the same transaction, by a statement naming 'v'."""
    added: dict[str, Statement] = {}
    for st, _info, node in parsed:
        for lit in (n.val.sval for n in walk(node) if isinstance(n, ast.A_Const) and isinstance(n.val, ast.String)):
            if lit in added:
                raise _refuse(f"step {step_id} {section}", st, f"it uses enum value '{lit}' added above; {ENUM_ADVICE}")
        if isinstance(node, ast.AlterEnumStmt) and node.newVal and not node.oldVal:
            added[node.newVal] = st
