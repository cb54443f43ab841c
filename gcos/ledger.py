"""The hash-chained evidence ledger: append, read, verify, anchors.

Every record is ``{"format_version": 1, "seq", "prev_hash", "recorded_at", "trace_id", "span_id",
"actor": {"principal", "role", "role_oid", "kind"}, "kind", "step_id", "spec_hash", "payload"}`` and
``hash = sha256(JCS(record))`` (RFC 8785, UTF-8), the record including ``prev_hash`` (64 zeros for the
first). Records are written only by the kernel and the other SECURITY DEFINER functions (``gcos.ledger_append``
is a superuser's alone since schema version 15), which stamp seq, time (UTC, microseconds) and actor
(``session_user``) and compute the canonical text and hash inside the database (``gcos.jcs``); appends
are serialized on ``gcos.ledger_head``, so the chain never forks. Payloads hold JSON with integers only
(send durations as integer microseconds).

``verify`` recomputes every link from genesis in Python (``rfc8785``, independent of the SQL
canonicalizer) and names the FIRST bad record: changed content (hash mismatch), a record that is not
canonical, a record whose own seq/prev_hash disagree with its row (reordering), a missing or duplicate
seq, a broken link (a forged record whose own hash is consistent breaks its successor's prev_hash), and
a head (``gcos.ledger_head``) that disagrees with the last record (a truncated tail or an out-of-band
append that did not also rewrite the head).

What verification WITHOUT an anchor cannot detect: a chain is only evidence relative to something held
outside the database. A superuser who truncates the tail AND rewinds the head, who replaces the last
record(s) with self-consistent ones, or who rewrites the whole chain consistently from genesis leaves a
ledger that verifies. Export an anchor (``export_anchor``, ``gcos ledger anchor --out FILE``) and keep it
elsewhere: verifying against it detects a truncated tail (the anchored seq is gone) and any rewrite at or
before the anchored seq (its hash differs). Records appended after the anchor are checked only as links.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Generator, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psycopg
import rfc8785
from psycopg.types.json import Jsonb

from gcos.canonical import canonical_bytes, content_hash
from gcos.errors import DatabaseUnavailable, LedgerBroken, SpecError, translated

FORMAT_VERSION = 1
ANCHOR_FORMAT_VERSION = 1
GENESIS_PREV_HASH = "0" * 64
MAX_SAFE_INTEGER = 2**53 - 1
RECORD_KEYS = frozenset(
    {
        "format_version",
        "seq",
        "prev_hash",
        "recorded_at",
        "trace_id",
        "span_id",
        "actor",
        "kind",
        "step_id",
        "spec_hash",
        "payload",
    }
)
_HEX64 = re.compile(r"[0-9a-f]{64}")
_TRACE = re.compile(r"[0-9a-f]{32}")
_SPAN = re.compile(r"[0-9a-f]{16}")


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class LedgerEntry:
    seq: int
    prev_hash: str
    hash: str
    canonical: str
    record: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.record.get("kind"))

    @property
    def payload(self) -> dict[str, Any]:
        payload = self.record.get("payload")
        return payload if isinstance(payload, dict) else {}


@dataclass(frozen=True)
class Anchor:
    """The head of a verified ledger, to be kept outside the database."""

    seq: int
    hash: str
    recorded_at: str
    system_identifier: str
    database: str
    format_version: int = ANCHOR_FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "seq": self.seq,
            "hash": self.hash,
            "recorded_at": self.recorded_at,
            "database": {"system_identifier": self.system_identifier, "name": self.database},
        }

    @classmethod
    def from_dict(cls, data: object) -> Anchor:
        db = data.get("database") if isinstance(data, dict) else None
        if not (
            isinstance(data, dict)
            and data.get("format_version") == ANCHOR_FORMAT_VERSION
            and type(data.get("seq")) is int
            and data["seq"] >= 1
            and isinstance(data.get("hash"), str)
            and _HEX64.fullmatch(data["hash"])
            and isinstance(data.get("recorded_at"), str)
            and isinstance(db, dict)
            and isinstance(db.get("system_identifier"), str)
            and isinstance(db.get("name"), str)
        ):
            raise SpecError(
                f"The anchor is not a format_version {ANCHOR_FORMAT_VERSION} gcos ledger anchor; "
                "export a new one with `gcos ledger anchor`."
            )
        return cls(data["seq"], data["hash"], data["recorded_at"], db["system_identifier"], db["name"])

    def dump(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Anchor:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise SpecError(f"{path}: cannot read the anchor file ({exc.strerror}).") from exc
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SpecError(
                f"{path}: the anchor file is not JSON; export a new one with `gcos ledger anchor`."
            ) from exc
        return cls.from_dict(data)


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    records: int
    head_seq: int | None
    head_hash: str | None
    first_bad_seq: int | None = None
    reason: str | None = None
    anchor_seq: int | None = None
    pack_files: int | None = None  # an evidence pack's files, each rebuilt from the chain and found identical
    pack_signed_by: str | None = None  # the allowed_signers identity whose key signed the pack's manifest
    anchor_signed: bool = False  # the kept anchor's signature was checked against allowed_signers

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Row:
    """A ledger row as stored (what verification looks at)."""

    seq: int
    prev_hash: str
    hash: str
    canonical: str


# --------------------------------------------------------------------------- canonical JSON


def record_hash(record: Mapping[str, Any]) -> str:
    """sha256 hex of the canonical record: the ledger hash of a record (prev_hash included)."""
    return content_hash(record)


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_canonical(text: str) -> Any:
    """Parse stored canonical text strictly (no duplicate keys, no NaN/Infinity)."""
    return json.loads(text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant)


def check_payload(value: Any, path: str = "payload") -> None:
    """Refuse what ``gcos.jcs`` refuses, with the path named: floats, integers beyond 2^53 - 1, keys that
    are not strings or lie outside the BMP, lone surrogates, NUL characters, non-JSON types."""
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise SpecError(f"{path}: {value} is outside the safe integer range +-(2^53 - 1).")
        return
    if isinstance(value, float):
        raise SpecError(f"{path}: {value!r} is a float; ledger payloads hold integers only (e.g. microseconds).")
    if isinstance(value, str):
        _check_text(value, path)
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            check_payload(item, f"{path}[{index}]")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise SpecError(f"{path}: key {key!r} is not a string.")
            _check_text(key, f"{path} key {key!r}")
            if any(ord(ch) > 0xFFFF for ch in key):
                raise SpecError(f"{path}: key {key!r} lies outside the Basic Multilingual Plane.")
            check_payload(item, f"{path}.{key}")
        return
    raise SpecError(f"{path}: a {type(value).__name__} is not a JSON value.")


def _check_text(text: str, path: str) -> None:
    if "\x00" in text or any(0xD800 <= ord(ch) <= 0xDFFF for ch in text):
        raise SpecError(f"{path}: NUL characters and lone surrogates cannot be stored.")


# --------------------------------------------------------------------------- append / read


def new_trace_id() -> str:
    return secrets.token_hex(16)


def new_span_id() -> str:
    return secrets.token_hex(8)


def trace_context(conn: psycopg.Connection[Any], trace_id: str | None = None) -> str:
    """Set the open transaction's trace (``gcos.trace_id``, read by gcos._ledger_write when a function takes
    no trace id: registration, adoption, install) and return it; a new trace when `trace_id` is None. The
    database refuses a record without a trace (seed 001: orphan records are invalid)."""
    trace = trace_id if trace_id is not None else new_trace_id()
    if not _TRACE.fullmatch(trace):
        raise SpecError("trace_id must be 32 lowercase hex digits.")
    conn.execute("SELECT pg_catalog.set_config('gcos.trace_id', %s, true)", (trace,))
    return trace


def append(
    conn: psycopg.Connection[Any],
    kind: str,
    payload: Mapping[str, Any],
    *,
    step_id: str | None = None,
    spec_hash: str | None = None,
    trace_id: str | None = None,
    span_id: str | None = None,
) -> LedgerEntry:
    """Append one record through ``gcos.ledger_append`` (in the caller's transaction if one is open, else
    as its own): a superuser's repair or test tool, refused to every other role (GateRefused, exit 3). The
    database stamps seq, time and actor; the stored entry is returned."""
    if not isinstance(payload, Mapping):
        raise SpecError("A ledger payload is a JSON object (a mapping).")
    check_payload(payload)
    trace_id = trace_id if trace_id is not None else new_trace_id()
    span_id = span_id if span_id is not None else new_span_id()
    if not _TRACE.fullmatch(trace_id) or not _SPAN.fullmatch(span_id):
        raise SpecError("trace_id must be 32 and span_id 16 lowercase hex digits.")
    if spec_hash is not None and not _HEX64.fullmatch(spec_hash):
        raise SpecError("A spec hash is 64 lowercase hex digits.")
    with translated():
        head = conn.execute(
            "SELECT seq FROM gcos.ledger_append(%s, %s, %s, %s, %s, %s)",
            (kind, step_id, spec_hash, trace_id, span_id, Jsonb(dict(payload))),
        ).fetchone()
        row = (
            None
            if head is None
            else conn.execute(
                "SELECT seq, prev_hash, hash, canonical FROM gcos.ledger WHERE seq = %s", (head[0],)
            ).fetchone()
        )
    if head is None or row is None:
        raise LedgerBroken("A record vanished right after it was appended; run `gcos ledger verify`.")
    return _entry(Row(*row))


def read_all(conn: psycopg.Connection[Any]) -> list[LedgerEntry]:
    """Every record in seq order (parsed; LedgerBroken if a stored record is not JSON)."""
    with translated():
        rows = conn.execute("SELECT seq, prev_hash, hash, canonical FROM gcos.ledger ORDER BY seq").fetchall()
    return [_entry(Row(*row)) for row in rows]


def read_one(conn: psycopg.Connection[Any], seq: int) -> LedgerEntry:
    """The record at `seq` (LedgerBroken if there is none: a caller was told it exists)."""
    with translated():
        row = conn.execute("SELECT seq, prev_hash, hash, canonical FROM gcos.ledger WHERE seq = %s", (seq,)).fetchone()
    if row is None:
        raise LedgerBroken(f"Ledger record {seq} is missing; run `gcos ledger verify`.")
    return _entry(Row(*row))


def _entry(row: Row) -> LedgerEntry:
    try:
        record = parse_canonical(row.canonical)
    except ValueError as exc:
        raise LedgerBroken(f"Ledger record {row.seq} is not valid JSON; run `gcos ledger verify`.") from exc
    return LedgerEntry(row.seq, row.prev_hash, row.hash, row.canonical, record if isinstance(record, dict) else {})


# --------------------------------------------------------------------------- verify


def _identity(conn: psycopg.Connection[Any]) -> tuple[str, str]:
    row = conn.execute(
        "SELECT s.system_identifier::text, pg_catalog.current_database()::text FROM pg_catalog.pg_control_system() s"
    ).fetchone()
    if row is None:  # pragma: no cover - the query always returns one row
        raise DatabaseUnavailable("Cannot read the database's identity; retry.")
    return str(row[0]), str(row[1])


Snapshot = tuple[Iterator[Row], tuple[int, str] | None, tuple[str, str]]
STREAM_ROWS = 50  # rows per fetch while verifying: a commit record may hold a whole object map (MBs at scale)


@contextmanager
def _snapshot(conn: psycopg.Connection[Any]) -> Iterator[Snapshot]:
    """The rows (seq order, duplicates kept), the head row and the database identity, in one snapshot. The rows
    are streamed from a server-side cursor, a few at a time, and must be consumed inside the block: the client
    holds one record at a time, however long the ledger (issue 13 item 2)."""

    def rows() -> Generator[Row, None, None]:
        with conn.cursor(name="gcos_ledger_verify") as cursor:
            cursor.itersize = STREAM_ROWS
            cursor.execute("SELECT seq, prev_hash, hash, canonical FROM gcos.ledger ORDER BY seq, hash")
            for row in cursor:
                yield Row(*row)

    @contextmanager
    def read() -> Iterator[Snapshot]:
        head_rows = conn.execute("SELECT seq, hash FROM gcos.ledger_head").fetchall()
        head = (int(head_rows[0][0]), str(head_rows[0][1])) if len(head_rows) == 1 else None
        stream = rows()
        try:
            yield stream, head, _identity(conn)
        finally:
            stream.close()  # a check that stopped early closes the cursor while its transaction is open

    with translated():
        if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                with read() as snapshot:
                    yield snapshot
        else:
            with read() as snapshot:
                yield snapshot


def check_rows(
    rows: Iterable[Row], *, head: tuple[int, str] | None = None, anchor: Anchor | None = None
) -> VerifyReport:
    """Verify a chain of rows (in seq order) from genesis; pure, so an exported ledger can be checked
    offline. `head` is the stored head row (seq, hash) when known; `anchor` a previously exported one."""
    count, last_seq, last_hash = 0, 0, GENESIS_PREV_HASH
    anchored_hash: str | None = None

    def bad(seq: int, reason: str) -> VerifyReport:
        return VerifyReport(
            False, count, last_seq or None, last_hash if last_seq else None, seq, reason, anchor.seq if anchor else None
        )

    for row in rows:
        expected = last_seq + 1
        if row.seq < expected:
            return bad(row.seq, f"seq {row.seq} appears more than once")
        if row.seq > expected:
            missing = f"seq {expected}" if row.seq == expected + 1 else f"seqs {expected} to {row.seq - 1}"
            return bad(expected, f"{missing} missing (the next record is seq {row.seq}): records were deleted")
        problem = _check_row(row, last_hash)
        if problem:
            return bad(row.seq, problem)
        count, last_seq, last_hash = count + 1, row.seq, row.hash
        if anchor is not None and row.seq == anchor.seq:
            anchored_hash = row.hash

    if head is not None and head != (last_seq, last_hash):
        if head[0] > last_seq:
            return bad(
                last_seq + 1,
                f"the ledger head is at seq {head[0]} but the last record is seq {last_seq}: "
                "records were removed from the tail",
            )
        if head[0] < last_seq:
            return bad(
                head[0] + 1,
                f"seq {head[0] + 1} and later were not appended through gcos.ledger_append "
                f"(the ledger head is at seq {head[0]})",
            )
        return bad(last_seq, f"the ledger head's hash does not match seq {last_seq}")
    if anchor is not None:
        if anchor.seq > last_seq:
            return bad(
                last_seq + 1,
                f"the anchor holds seq {anchor.seq} but the ledger ends at seq {last_seq}: the tail was truncated",
            )
        if anchored_hash != anchor.hash:
            return bad(
                anchor.seq,
                f"seq {anchor.seq} does not match the anchor's hash: the ledger was rewritten "
                f"at or before seq {anchor.seq}",
            )
    return VerifyReport(
        True, count, last_seq or None, last_hash if last_seq else None, None, None, anchor.seq if anchor else None
    )


def _check_row(row: Row, expected_prev: str) -> str | None:
    try:
        record = parse_canonical(row.canonical)
    except ValueError:
        return "the stored record is not valid JSON"
    try:
        canonical = canonical_bytes(record)
    except rfc8785.CanonicalizationError:
        return "the stored record cannot be canonicalized (RFC 8785)"
    if canonical != row.canonical.encode("utf-8"):
        return "the stored record is not in RFC 8785 canonical form: it was edited"
    if hashlib.sha256(canonical).hexdigest() != row.hash:
        return "the record's content does not match its hash: it was changed"
    if not isinstance(record, dict) or record.get("format_version") != FORMAT_VERSION or set(record) != RECORD_KEYS:
        return f"the record is not a format_version {FORMAT_VERSION} ledger record"
    if record["seq"] != row.seq:
        return f"the record says seq {record['seq']} but is stored at seq {row.seq}: records were reordered"
    if record["prev_hash"] != row.prev_hash:
        return "the record's prev_hash differs from its row's"
    if row.prev_hash != expected_prev:
        before = row.seq - 1
        return (
            f"prev_hash does not link to the hash of seq {before}: seq {before} was altered or replaced, "
            f"or seq {row.seq} was forged"
        )
    return None


def _broken_message(report: VerifyReport, advice: str) -> str:
    return f"The ledger is broken at seq {report.first_bad_seq} ({report.reason}); {advice}."


def verify(conn: psycopg.Connection[Any], anchor: Anchor | None = None) -> VerifyReport:
    """Recompute the chain from genesis (and check it against `anchor`). Raises LedgerBroken (exit 7),
    naming the first bad seq and why, with the VerifyReport in ``details``; returns the report if intact.
    An anchor from another database is refused (SpecError)."""
    with _snapshot(conn) as (rows, head, identity):
        if anchor is not None and (anchor.system_identifier, anchor.database) != identity:
            raise SpecError(
                f"The anchor is for database {anchor.database!r} on system {anchor.system_identifier}, "
                f"not {identity[1]!r} on system {identity[0]}; use the anchor exported from this database."
            )
        report = check_rows(rows, head=head, anchor=anchor)
    if not report.ok:
        raise LedgerBroken(
            _broken_message(report, "keep the database as evidence and restore the ledger from a trusted copy"),
            details=report,
        )
    return report


def export_anchor(conn: psycopg.Connection[Any]) -> Anchor:
    """Verify the ledger and return its head as an Anchor (SpecError if the ledger is empty)."""
    last: list[Row] = []

    def kept(rows: Iterator[Row]) -> Iterator[Row]:
        for row in rows:
            last[:] = [row]  # the anchored record, the only one held
            yield row

    with _snapshot(conn) as (rows, head, (system_identifier, database)):
        report = check_rows(kept(rows), head=head)
    if not report.ok:
        raise LedgerBroken(_broken_message(report, "an anchor is exported only for an intact ledger"), details=report)
    if not last:
        raise SpecError("The ledger is empty: there is nothing to anchor yet.")
    recorded_at = parse_canonical(last[0].canonical)["recorded_at"]
    return Anchor(last[0].seq, last[0].hash, str(recorded_at), system_identifier, database)
