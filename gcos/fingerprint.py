"""The database fingerprint: what a rehearsal compares at entry and exit, computed in ONE snapshot.

A fingerprint has three parts:

* ``schema`` — per category (``CATEGORIES``), every user object by its schema-qualified identity (each
  part quoted with ``quote_ident``: ``public.t``, ``public.t.col``, ``public.f(integer)``), mapped to the
  sha256 of its definition. A definition is a PostgreSQL record text, ``ROW(...)::text``, built by one
  catalog query per category (``gcos/fingerprint_sql/<category>.sql``, whose ``-- fields:`` line names
  the fields); it carries what the object *means* — types, defaults, column order, constraints, index
  and trigger definitions (with enabled state), function bodies and settings, view queries, sequence
  parameters, enum labels in order, owners, privileges, RLS, comments — and never what merely
  *happens* to it: no OIDs, relfilenodes or statistics (reltuples, pg_statistic, pg_stat_*), nothing
  ANALYZE, VACUUM (FULL), CLUSTER, REINDEX, TRUNCATE or a DROP+CREATE of an identical object changes.
  Privileges are normalised (an explicit ACL equal to the owner's default counts as the default; items
  sorted), so GRANT order and a GRANT+REVOKE round trip leave no trace. Objects of ``pg_catalog``,
  ``information_schema``, ``pg_toast*``, ``pg_temp*`` and ``exclude_schemas`` are left out, and so are
  the members of extensions (the extension is listed, with its version).
* ``tables`` — for the watched tables only: row count and an order-independent content hash, the sum
  of a 64-bit hash (``hashtextextended``) of each row's text. It detects change, not an adversary: a
  deliberate collision is cheap to build; an accidental one is about 2**-64.
* ``sequences`` — each readable sequence's state: the value its next nextval returns. nextval is not
  transactional, so this is *residue*: reported by ``diff`` under ``sequence_state`` and left out of
  ``hash`` and of equality.

``schema_hash`` is ``content_hash(schema)`` and ``hash`` (what entry == exit compares) is
``content_hash({format_version, schema_hash, tables})``: an auditor can recompute both from ``to_json``.
Definitions are rendered with ``search_path = pg_catalog, pg_temp`` and fixed output settings (DateStyle,
TimeZone, IntervalStyle, extra_float_digits, bytea_output ...), so every user object is schema-qualified
and nothing depends on the caller's session; ``row_security = off`` makes a watched table the role cannot
read in full an error rather than a silently partial hash.

Snapshot: on an idle connection ``take`` opens its own ``REPEATABLE READ, READ ONLY`` transaction and
rolls it back; inside a transaction it works in a savepoint of that transaction (rolled back, so its
``SET LOCAL``s vanish), seeing the transaction's own uncommitted changes. Catalog deparse functions
(``pg_get_*def``) read the latest catalog, not the snapshot: DDL committed by another session *while*
a fingerprint is taken can make it inconsistent (as with pg_dump); take it again. A lock held by another
session on a watched table (or on a table whose view/CHECK/partial index must be deparsed) is waited
for up to ``lock_timeout``, then psycopg's ``LockNotAvailable`` is raised.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from hashlib import sha256
from importlib import resources
from typing import Any

import psycopg
from psycopg import pq, sql

from gcos.canonical import content_hash

FORMAT_VERSION = 1
"""Version of the fingerprint's shape and of the recipe behind its hashes (bump on any change)."""

CATEGORIES: tuple[str, ...] = (
    "schema",
    "relation",
    "column",
    "constraint",
    "index",
    "trigger",
    "rule",
    "function",
    "sequence",
    "type",
    "policy",
    "statistics",
    "extension",
    "event_trigger",
    "default_privileges",
)
"""Schema categories, in the order ``diff`` reports them; each is ``fingerprint_sql/<name>.sql``."""

TABLE_CATEGORY = "table_data"
"""Category of ``Difference`` for a watched table's rows (count or content)."""

RESIDUE_CATEGORY = "sequence_state"
"""Category of ``Difference`` for a sequence whose state moved: non-transactional residue, not in ``hash``."""

_SETTINGS: tuple[tuple[str, str], ...] = (
    ("search_path", "pg_catalog, pg_temp"),
    ("DateStyle", "ISO, YMD"),
    ("IntervalStyle", "postgres"),
    ("TimeZone", "UTC"),
    ("extra_float_digits", "1"),
    ("bytea_output", "hex"),
    ("lc_monetary", "C"),
    ("quote_all_identifiers", "off"),
    ("standard_conforming_strings", "on"),
    ("row_security", "off"),
    # The catalog queries are written in join order: skip the planner's join search, which on a new
    # backend costs more than running most of them (~20 ms for index.sql alone).
    ("join_collapse_limit", "1"),
    ("from_collapse_limit", "1"),
)
# run with the caller's search_path: everything schema-qualified
_SET_LOCAL = (
    "SELECT "
    + ", ".join(f"pg_catalog.set_config('{name}', '{value}', true)" for name, value in _SETTINGS)
    + ", pg_catalog.to_regprocedure('pg_catalog.pg_get_sequence_data(regclass)') IS NOT NULL"
    + ", NOT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname <> 'plpgsql')"
)
_NEWER_COLUMNS = ((150000, "i.indnullsnotdistinct", "NULL::boolean"),)
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")
_RESOLVE = """
SELECT w.name, n.nspname, c.relname, pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname)
  FROM pg_catalog.unnest(%(names)s::text[]) WITH ORDINALITY AS w(name, i)
  LEFT JOIN pg_catalog.pg_class AS c ON c.oid = pg_catalog.to_regclass(w.name)
  LEFT JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
 ORDER BY w.i
"""
_MALFORMED_NAME = (psycopg.errors.SyntaxError, psycopg.errors.FeatureNotSupported)
_TABLE = "SELECT count(*), sum(hashtextextended((t.*)::text, 0)) FROM {} AS t"  # t.*: a column named t wins over t
_TABLE_RECIPE = "count, sum(hashtextextended(row::text, 0))"
_DETAIL_WIDTH = 60


@dataclass(frozen=True)
class TableState:
    """A watched table: its row count and an order-independent hash of its rows (change, not adversary)."""

    rows: int
    content: str


@dataclass(frozen=True)
class Difference:
    """One thing that differs: ``category`` (a schema category, ``table_data`` or ``sequence_state``),
    ``identity`` (schema-qualified name), ``change`` ("added", "removed" or "changed") and a short detail."""

    category: str
    identity: str
    change: str
    detail: str = ""

    def __str__(self) -> str:
        text = f"{self.category} {self.identity} {self.change}"
        return f"{text} ({self.detail})" if self.detail else text


@dataclass(frozen=True)
class Fingerprint:
    """The state of a database at one snapshot. Two fingerprints are equal when their ``hash`` inputs are
    (schema and watched tables); ``sequences``, ``missing`` and ``definitions`` are not compared."""

    format_version: int
    schema: dict[str, dict[str, str]]
    tables: dict[str, TableState]
    sequences: dict[str, int] = field(compare=False)
    schema_hash: str
    hash: str
    missing: tuple[str, ...] = field(default=(), compare=False)
    """Watched names that resolved to no relation (absent from ``tables``)."""
    definitions: dict[str, dict[str, str]] = field(default_factory=dict, compare=False, repr=False)
    """The definitions behind ``schema`` (category -> identity -> record text), for ``diff`` details only;
    not serialised."""

    def to_json(self) -> dict[str, Any]:
        """A JSON value of strings and ints only (sequence values are strings: bigints do not fit RFC 8785)."""
        return {
            "format_version": self.format_version,
            "hash": self.hash,
            "schema_hash": self.schema_hash,
            "schema": {category: dict(sorted(objects.items())) for category, objects in self.schema.items()},
            "tables": {name: {"rows": t.rows, "content": t.content} for name, t in self.tables.items()},
            "sequences": {name: str(value) for name, value in self.sequences.items()},
            "missing": list(self.missing),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Fingerprint:
        """The inverse of ``to_json`` (e.g. a fingerprint read back from the ledger); the hashes are
        recomputed and must match, else ValueError."""
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(f"fingerprint format_version {version!r} is not {FORMAT_VERSION}")
        schema = {str(c): {str(k): str(v) for k, v in objs.items()} for c, objs in data["schema"].items()}
        tables = {str(k): TableState(int(v["rows"]), str(v["content"])) for k, v in data["tables"].items()}
        fp = _assemble(
            schema,
            tables,
            {str(k): int(v) for k, v in data.get("sequences", {}).items()},
            tuple(str(m) for m in data.get("missing", ())),
            {},
        )
        if fp.hash != data.get("hash") or fp.schema_hash != data.get("schema_hash"):
            raise ValueError("fingerprint hashes do not match its content")
        return fp

    @property
    def object_count(self) -> int:
        return sum(len(objects) for objects in self.schema.values())


def _assemble(
    schema: dict[str, dict[str, str]],
    tables: dict[str, TableState],
    sequences: dict[str, int],
    missing: tuple[str, ...],
    definitions: dict[str, dict[str, str]],
    parts: Mapping[str, str] | None = None,
) -> Fingerprint:
    schema_hash = _schema_hash(schema, parts)
    table_json = {name: {"rows": t.rows, "content": t.content} for name, t in tables.items()}
    return Fingerprint(
        format_version=FORMAT_VERSION,
        schema=schema,
        tables=tables,
        sequences=sequences,
        schema_hash=schema_hash,
        hash=content_hash({"format_version": FORMAT_VERSION, "schema_hash": schema_hash, "tables": table_json}),
        missing=missing,
        definitions=definitions,
    )


@cache
def _query(name: str, server_version: int = 180000) -> str:
    """A catalog query by name, adapted to the server: columns newer than PostgreSQL 14 (the oldest the
    reference world supports) read as NULL on servers that lack them."""
    text = resources.files("gcos").joinpath("fingerprint_sql", f"{name}.sql").read_text(encoding="utf-8")
    for since, column, replacement in _NEWER_COLUMNS:
        if server_version < since:
            text = text.replace(column, replacement)
    return text


def query(name: str, server_version: int) -> str:
    """The catalog query ``name`` (a category, ``sequence_state`` or ``sequence_state_legacy``) exactly as
    ``take`` runs it on a server of ``server_version``: ``gcos install`` loads the same texts for
    ``gcos.fingerprint``."""
    return _query(name, server_version)


@cache
def _fields(category: str) -> tuple[str, ...]:
    """The field names a category's definition record holds, from the ``-- fields:`` line of its query."""
    match = re.search(r"^-- fields: (.+)$", _query(category), re.MULTILINE)
    return tuple(name.strip() for name in match[1].split(",")) if match else ()


def _canonical_json(value: dict[str, Any]) -> str:
    """Compact, key-sorted JSON text with non-ASCII characters as they are: for str-keyed dicts of strings
    this is RFC 8785 byte for byte, except that RFC 8785 orders keys by UTF-16 code units, which differs
    from code point order only around astral characters (``_schema_hash`` checks for those)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _schema_hash(schema: dict[str, dict[str, str]], parts: Mapping[str, str] | None = None) -> str:
    """``content_hash(schema)``, computed with the C JSON encoder (``_canonical_json``) and, when there is an
    astral character, with the pure-Python ``content_hash`` itself. ``parts`` are the categories' canonical
    JSON texts, if already made (on the worker thread of ``take``). tests/test_fingerprint.py checks the
    equality with ``content_hash``."""
    if parts is None or parts.keys() != schema.keys():
        parts = {category: _canonical_json(objects) for category, objects in schema.items()}
    text = "{" + ",".join(f"{json.dumps(category)}:{parts[category]}" for category in sorted(parts)) + "}"
    if not text.isascii() and _ASTRAL.search(text):
        return content_hash(schema)
    return sha256(text.encode()).hexdigest()


def take(
    conn: psycopg.Connection[Any],
    *,
    watch: Sequence[str] = (),
    exclude_schemas: Sequence[str] = ("gcos",),
) -> Fingerprint:
    """The fingerprint of the database ``conn`` is connected to, in one snapshot (see the module doc).

    ``watch`` names tables (optionally schema-qualified, resolved with the caller's search_path) whose
    rows join the hash; a name that resolves to nothing is listed in ``missing``. The connection must be
    idle (then it is left idle, and only this connection is used) or inside a healthy transaction (then it
    is left in it, unchanged). Raises ValueError for a connection in another state, psycopg errors from the
    server as they come (e.g. ``LockNotAvailable`` when a watched table is locked beyond lock_timeout).
    """
    if isinstance(watch, str):
        raise TypeError("watch must be a sequence of table names, not a string")
    status = conn.info.transaction_status
    if status not in (pq.TransactionStatus.IDLE, pq.TransactionStatus.INTRANS):
        raise ValueError(f"take needs an idle connection or one inside a healthy transaction, not {status.name}")
    params: dict[str, Any] = {"exclude": list(exclude_schemas)}
    version = conn.info.server_version
    with conn.transaction(force_rollback=True):
        if status == pq.TransactionStatus.IDLE:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        resolved, missing = _resolve(conn, watch)  # with the caller's search_path, before it is pinned
        row = conn.execute(_SET_LOCAL).fetchone()
        assert row is not None
        has_sequence_data, params["no_extensions"] = bool(row[-2]), bool(row[-1])
        # Each category is hashed on a worker thread while the server runs the next query (psycopg
        # releases the GIL while it waits), so hashing overlaps the server's work.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="gcos-fingerprint") as pool:
            hashed = {
                category: pool.submit(_hash_objects, conn.execute(_query(category, version), params).fetchall())
                for category in CATEGORIES
            }
            tables = {identity: _table_state(conn, nsp, rel) for identity, (nsp, rel) in resolved.items()}
            sequences = _sequence_states(conn, params, has_sequence_data)
    definitions = {category: future.result()[0] for category, future in hashed.items()}
    schema = {category: future.result()[1] for category, future in hashed.items()}
    parts = {category: future.result()[2] for category, future in hashed.items()}
    return _assemble(schema, tables, sequences, missing, definitions, parts)


def _hash_objects(rows: list[tuple[str, str]]) -> tuple[dict[str, str], dict[str, str], str]:
    """(identity -> definition text, identity -> sha256 hex of the definition's UTF-8, the canonical JSON of
    the latter for the schema hash)."""
    definitions = dict(rows)
    hashes = {identity: sha256(text.encode()).hexdigest() for identity, text in definitions.items()}
    return definitions, hashes, _canonical_json(hashes)


def _resolve(conn: psycopg.Connection[Any], watch: Sequence[str]) -> tuple[dict[str, tuple[str, str]], tuple[str, ...]]:
    """Watched names -> {identity: (schema, table)} in watch order, and the names that resolve to nothing
    (including malformed ones, such as a.b.c.d or another database's table, which to_regclass rejects)."""
    if not watch:
        return {}, ()
    try:
        with conn.transaction():  # a savepoint: a malformed name must not break the caller's transaction
            rows = conn.execute(_RESOLVE, {"names": list(watch)}).fetchall()
    except _MALFORMED_NAME:
        rows = []
        for name in watch:
            try:
                with conn.transaction():
                    rows += conn.execute(_RESOLVE, {"names": [name]}).fetchall()
            except _MALFORMED_NAME:
                rows.append((name, None, None, None))
    resolved: dict[str, tuple[str, str]] = {}
    missing: list[str] = []
    for name, nspname, relname, identity in rows:
        if identity is None:
            if name not in missing:
                missing.append(str(name))
        else:
            resolved.setdefault(str(identity), (str(nspname), str(relname)))
    return resolved, tuple(missing)


def _table_state(conn: psycopg.Connection[Any], nspname: str, relname: str) -> TableState:
    query = sql.SQL(_TABLE).format(sql.Identifier(nspname, relname))
    row = conn.execute(query).fetchone()
    assert row is not None  # an aggregate without GROUP BY returns exactly one row
    rows, total = int(row[0]), row[1]
    return TableState(rows=rows, content=content_hash({"recipe": _TABLE_RECIPE, "sum": str(total or 0)}))


def _sequence_states(conn: psycopg.Connection[Any], params: dict[str, Any], has_sequence_data: bool) -> dict[str, int]:
    """Each readable sequence's state as the value its next nextval returns (``last_value`` when not called
    since creation, RESTART or ``setval(s, v, false)``, else ``last_value + increment``; bounds and CYCLE
    ignored): ``setval(s, 10, false)`` and ``setval(s, 9, true)`` are the same state, a single nextval
    always shows, and a definition change alone (ALTER SEQUENCE ... INCREMENT on an unused sequence)
    is not residue."""
    states: dict[str, int] = {}
    if has_sequence_data:
        for identity, increment, last_value, is_called in conn.execute(_query("sequence_state"), params):
            states[str(identity)] = int(last_value) + int(increment) if is_called else int(last_value)
        return dict(sorted(states.items()))
    unread: list[tuple[str, str, str, int]] = []
    for identity, nspname, relname, increment, last_value in conn.execute(_query("sequence_state_legacy"), params):
        if last_value is None:
            unread.append((str(identity), str(nspname), str(relname), int(increment)))
        else:
            states[str(identity)] = int(last_value) + int(increment)
    if unread:  # one statement for all of them
        query = sql.SQL(" UNION ALL ").join(
            sql.SQL("SELECT {}::int, last_value, is_called FROM {}").format(
                sql.Literal(i), sql.Identifier(nspname, relname)
            )
            for i, (_, nspname, relname, _) in enumerate(unread)
        )
        for i, last_value, is_called in conn.execute(query).fetchall():
            identity, _, _, increment = unread[i]
            states[identity] = int(last_value) + increment if is_called else int(last_value)
    return dict(sorted(states.items()))


def diff(before: Fingerprint, after: Fingerprint) -> list[Difference]:
    """Everything that differs from ``before`` to ``after``: schema objects by category (in ``CATEGORIES``
    order), then watched tables (``table_data``), then sequences whose state moved (``sequence_state``,
    residue: not part of ``hash``). Within a category, by identity. Empty when nothing differs."""
    out: list[Difference] = []
    if before.format_version != after.format_version:
        out.append(
            Difference("format", "format_version", "changed", f"{before.format_version} → {after.format_version}")
        )
    extra = sorted((before.schema.keys() | after.schema.keys()) - set(CATEGORIES))
    for category in (*CATEGORIES, *extra):
        old, new = before.schema.get(category, {}), after.schema.get(category, {})
        for identity in sorted(old.keys() | new.keys()):
            if identity not in new:
                out.append(Difference(category, identity, "removed"))
            elif identity not in old:
                out.append(Difference(category, identity, "added"))
            elif old[identity] != new[identity]:
                detail = _detail(
                    category,
                    before.definitions.get(category, {}).get(identity),
                    after.definitions.get(category, {}).get(identity),
                )
                out.append(Difference(category, identity, "changed", detail))
    for identity in sorted(before.tables.keys() | after.tables.keys()):
        was, now = before.tables.get(identity), after.tables.get(identity)
        if now is None:
            out.append(Difference(TABLE_CATEGORY, identity, "removed", f"had {_rows(was.rows if was else 0)}"))
        elif was is None:
            out.append(Difference(TABLE_CATEGORY, identity, "added", _rows(now.rows)))
        elif was != now:
            detail = f"rows {was.rows} → {now.rows}" if was.rows != now.rows else f"content changed, {_rows(now.rows)}"
            out.append(Difference(TABLE_CATEGORY, identity, "changed", detail))
    for identity in sorted(before.sequences.keys() & after.sequences.keys()):
        if before.sequences[identity] != after.sequences[identity]:
            detail = f"next value {before.sequences[identity]} → {after.sequences[identity]}"
            out.append(Difference(RESIDUE_CATEGORY, identity, "changed", detail))
    return out


def residue_only(diffs: Iterable[Difference]) -> bool:
    """True when every difference is non-transactional residue (a sequence state), e.g. after a rollback."""
    return all(d.category == RESIDUE_CATEGORY for d in diffs)


def describe(diffs: list[Difference], limit: int = 10) -> str:
    """One readable line for an error message: "2 differences: column public.t.c changed (not_null: true →
    false); index public.t_x_idx added", with "and N more" past ``limit``."""
    if not diffs:
        return "no differences"
    shown = "; ".join(str(d) for d in diffs[: max(limit, 0)])
    noun = "difference" if len(diffs) == 1 else "differences"
    more = f"; and {len(diffs) - limit} more" if len(diffs) > limit else ""
    return f"{len(diffs)} {noun}: {shown}{more}" if shown else f"{len(diffs)} {noun}"


def _detail(category: str, old_text: str | None, new_text: str | None) -> str:
    """Which fields of a definition changed, old → new, shortened; "" when the definitions are unknown."""
    if old_text is None or new_text is None:
        return ""
    old, new = _record_fields(old_text), _record_fields(new_text)
    names = _fields(category)
    if len(old) != len(new):
        return ""
    changed = [i for i, (a, b) in enumerate(zip(old, new, strict=True)) if a != b]
    label = [names[i] if i < len(names) else f"field {i + 1}" for i in range(len(old))]
    parts = [f"{label[i]}: {_short(old[i])} → {_short(new[i])}" for i in changed[:3]]
    if len(changed) > 3:
        parts.append(f"+{len(changed) - 3} more fields")
    return "; ".join(parts)


def _record_fields(text: str) -> list[str | None]:
    """The fields of a record's text form, ``(a,"b c",,"")`` -> ["a", "b c", None, ""] (record_out quoting:
    a quoted field doubles ``"`` and escapes ``\\``; an empty unquoted field is NULL)."""
    if len(text) < 2 or text[0] != "(" or text[-1] != ")":
        return [text]
    fields: list[str | None] = []
    i, end = 1, len(text) - 1
    while True:
        if i < end and text[i] == '"':
            i += 1
            chars: list[str] = []
            while i < end:
                ch = text[i]
                if ch == '"' and text[i + 1 : i + 2] == '"':
                    chars.append('"')
                    i += 2
                elif ch == '"':
                    i += 1
                    break
                elif ch == "\\" and i + 1 < end:
                    chars.append(text[i + 1])
                    i += 2
                else:
                    chars.append(ch)
                    i += 1
            fields.append("".join(chars))
        else:
            comma = text.find(",", i, end)
            stop = end if comma < 0 else comma
            fields.append(text[i:stop] or None)
            i = stop
        if i >= end:
            return fields
        i += 1  # the comma


def _rows(count: int) -> str:
    return f"{count} row" if count == 1 else f"{count} rows"


def _short(value: str | None) -> str:
    text = "null" if value is None else " ".join(value.split()) or '""'
    return text if len(text) <= _DETAIL_WIDTH else text[: _DETAIL_WIDTH - 1] + "…"
