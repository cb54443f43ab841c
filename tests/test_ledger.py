"""The hash-chained ledger (issue 3, CONTRACT.md "Ledger"; seed 001 sections 2-4: envelope_hash =
sha256(JCS(record)), trace_id on every record): golden vectors in Python and SQL, appends, every tamper
named by `verify`, anchors, and concurrent appenders."""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import subprocess
import sys
from itertools import pairwise
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

from gcos import ledger
from gcos.canonical import canonical_bytes
from gcos.errors import ExitCode, GateRefused, LedgerBroken, SpecError
from gcos.install import install
from gcos.ledger import Anchor, Row, check_rows, record_hash

REPO = Path(__file__).resolve().parent.parent
VECTORS = json.loads((Path(__file__).parent / "vectors" / "jcs.json").read_text(encoding="utf-8"))["vectors"]
SQL_VECTORS = [v for v in VECTORS if v["sql"]]
UTC_MICROS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
SPEC = hashlib.sha256(b"spec").hexdigest()


def vector_input(vector: dict[str, Any]) -> Any:
    if "input_ieee754" in vector:
        return struct.unpack(">d", bytes.fromhex(vector["input_ieee754"]))[0]
    return vector["input"]


@pytest.fixture
def db(conn: psycopg.Connection[Any], gcos_installed: None) -> psycopg.Connection[Any]:
    install(conn)
    return conn


def fill(conn: psycopg.Connection[Any], n: int = 6) -> None:
    for i in range(n):
        ledger.append(conn, "rehearsal", {"i": i, "text": f"record {i} — ✓"}, step_id="SB-12", spec_hash=SPEC)


Step = str | tuple[str, tuple[Any, ...]]


def tamper(conn: psycopg.Connection[Any], *steps: Step, table: str = "gcos.ledger") -> None:
    """Run statements (with optional parameters) as the superuser with the table's triggers disabled, then
    re-enable the triggers as installed."""
    ident = sql.SQL(table)
    with conn.transaction():
        always = [
            r[0]
            for r in conn.execute(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass AND tgenabled = 'A'", (table,)
            )
        ]
        conn.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER ALL").format(ident))
        for step in steps:
            statement, params = (step, None) if isinstance(step, str) else step
            conn.execute(statement.encode(), params)
        conn.execute(sql.SQL("ALTER TABLE {} ENABLE TRIGGER ALL").format(ident))
        for name in always:
            conn.execute(sql.SQL("ALTER TABLE {} ENABLE ALWAYS TRIGGER {}").format(ident, sql.Identifier(name)))


def forge(record: dict[str, Any]) -> tuple[str, str]:
    canonical = canonical_bytes(record).decode()
    return canonical, hashlib.sha256(canonical.encode()).hexdigest()


def record_at(conn: psycopg.Connection[Any], seq: int) -> dict[str, Any]:
    row = conn.execute("SELECT canonical FROM gcos.ledger WHERE seq = %s", (seq,)).fetchone()
    assert row is not None
    return dict(json.loads(row[0]))


def broken(conn: psycopg.Connection[Any], anchor: Anchor | None = None) -> ledger.VerifyReport:
    with pytest.raises(LedgerBroken) as info:
        ledger.verify(conn, anchor)
    assert info.value.exit_code is ExitCode.LEDGER_BROKEN and int(info.value.exit_code) == 7
    report = info.value.details
    assert isinstance(report, ledger.VerifyReport) and not report.ok
    assert f"seq {report.first_bad_seq}" in info.value.message
    assert info.value.message.count(".") >= 1 and "\n" not in info.value.message
    return report


# --------------------------------------------------------------------------- golden vectors


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_golden_vectors_python(vector: dict[str, Any]) -> None:
    canonical = canonical_bytes(vector_input(vector))
    assert canonical.decode("utf-8") == vector["canonical"]
    assert hashlib.sha256(canonical).hexdigest() == vector["sha256"]


def test_golden_vectors_sql(db: psycopg.Connection[Any]) -> None:
    """gcos.jcs (PL/pgSQL) writes the same bytes as rfc8785 for every float-free vector."""
    assert len(SQL_VECTORS) >= 9
    for vector in SQL_VECTORS:
        row = db.execute(
            "SELECT c, encode(sha256(convert_to(c, 'UTF8')), 'hex') FROM gcos.jcs(%s) AS c",
            (Jsonb(vector["input"]),),
        ).fetchone()
        assert row == (vector["canonical"], vector["sha256"]), vector["name"]


def test_ledger_record_vectors_chain() -> None:
    by_name = {v["name"]: v for v in VECTORS}
    genesis, second = by_name["ledger-record-genesis"], by_name["ledger-record-second"]
    assert second["input"]["prev_hash"] == genesis["sha256"] == record_hash(genesis["input"])
    rows = [Row(r["input"]["seq"], r["input"]["prev_hash"], r["sha256"], r["canonical"]) for r in (genesis, second)]
    report = check_rows(rows)
    assert report.ok and report.records == 2 and report.head_hash == second["sha256"]


def test_sql_canonicalizer_refuses_what_it_cannot_write_exactly(db: psycopg.Connection[Any]) -> None:
    for value in ["1.5", "1e-3", str(2**53), str(-(2**53)), '{"\U0001d11e": 1}', '[{"a": 0.5}]']:
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            db.execute("SELECT gcos.jcs(%s::jsonb)", (value,))
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        db.execute("SELECT gcos.jcs(NULL)")


def test_sql_canonicalizer_integer_forms(db: psycopg.Connection[Any]) -> None:
    row = db.execute("SELECT gcos.jcs('[1.0, 1e2, -0, 9007199254740991, -9007199254740991]'::jsonb)").fetchone()
    assert row == ("[1,100,0,9007199254740991,-9007199254740991]",)
    assert canonical_bytes([1.0, 1e2, -0.0, 2**53 - 1, -(2**53 - 1)]) == row[0].encode()


_CHILD = """
import hashlib, json, sys
from gcos.canonical import canonical_bytes
import struct
from itertools import pairwise
doc = json.load(open(sys.argv[1], encoding="utf-8"), object_pairs_hook=lambda pairs: dict(reversed(pairs)))
out = {}
for v in doc["vectors"]:
    value = struct.unpack(">d", bytes.fromhex(v["input_ieee754"]))[0] if "input_ieee754" in v else v["input"]
    out[v["name"]] = hashlib.sha256(canonical_bytes(value)).hexdigest()
print(json.dumps(out, sort_keys=True))
"""


@pytest.mark.parametrize(
    "env",
    [
        {"TZ": "Asia/Kathmandu", "LC_ALL": "C.UTF-8", "PYTHONHASHSEED": "12345"},
        {"TZ": "America/St_Johns", "LC_ALL": "POSIX", "LANG": "POSIX", "PYTHONHASHSEED": "0", "PYTHONUTF8": "0"},
    ],
    ids=["kathmandu-c.utf8", "st_johns-posix"],
)
def test_hashes_do_not_depend_on_timezone_locale_or_hash_seed(env: dict[str, str]) -> None:
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "PYTHON"))}
    child_env.update(env, PYTHONPATH=str(REPO))
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(Path(__file__).parent / "vectors" / "jcs.json")],
        env=child_env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert json.loads(out.stdout) == {v["name"]: v["sha256"] for v in VECTORS}


# --------------------------------------------------------------------------- append / read / verify


def test_append_read_verify(db: psycopg.Connection[Any]) -> None:
    before = len(ledger.read_all(db))  # the install record(s)
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    payload = {"passed": True, "duration_us": 1234, "note": 'déjà ✓\n\t"q"', "nested": {"b": [], "a": None}}
    entry = ledger.append(
        db, "rehearsal", payload, step_id="SB-12", spec_hash=SPEC, trace_id=trace, span_id="00f067aa0ba902b7"
    )
    assert entry.seq == before + 1
    record = entry.record
    assert set(record) == ledger.RECORD_KEYS and record["format_version"] == 1
    assert record["seq"] == entry.seq and record["prev_hash"] == ledger.read_all(db)[before - 1].hash
    assert (record["trace_id"], record["span_id"], record["kind"]) == (trace, "00f067aa0ba902b7", "rehearsal")
    assert (record["step_id"], record["spec_hash"]) == ("SB-12", SPEC)
    assert UTC_MICROS.fullmatch(record["recorded_at"])
    user = db.execute("SELECT session_user::text, (SELECT oid::bigint FROM pg_roles WHERE rolname = session_user)")
    name, oid = user.fetchone() or ("", 0)
    assert record["actor"] == {
        "principal": None,
        "role": name,
        "role_oid": oid,
        "kind": None,
        "login_role": name,  # gcos 8: who really logged in, and (16+) the authenticated identity
        "system_user": record["actor"]["system_user"],
    }
    assert entry.hash == hashlib.sha256(entry.canonical.encode()).hexdigest() == record_hash(record)
    generated = ledger.append(db, "drift", {"tables": 3})
    assert re.fullmatch(r"[0-9a-f]{32}", generated.record["trace_id"])
    assert re.fullmatch(r"[0-9a-f]{16}", generated.record["span_id"])
    stored = db.execute("SELECT record, kind, step_id, spec_hash FROM gcos.ledger WHERE seq = %s", (entry.seq,))
    assert stored.fetchone() == (record, "rehearsal", "SB-12", SPEC)
    report = ledger.verify(db)
    assert report.ok and report.records == before + 2 and report.head_seq == generated.seq
    assert report.head_hash == generated.hash


def test_recorded_at_is_utc_with_microseconds_whatever_the_session_timezone(db: psycopg.Connection[Any]) -> None:
    db.execute("SET TimeZone = 'Asia/Kathmandu'")
    start = db.execute("SELECT clock_timestamp()").fetchone()
    entry = ledger.append(db, "rehearsal", {})
    end = db.execute("SELECT clock_timestamp()").fetchone()
    assert start is not None and end is not None
    from datetime import datetime

    recorded = datetime.fromisoformat(entry.record["recorded_at"].replace("Z", "+00:00"))
    assert UTC_MICROS.fullmatch(entry.record["recorded_at"]) and start[0] <= recorded <= end[0]


BAD_APPENDS: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({"seconds": 1.5}, {}),
    ({"n": 2**53}, {}),
    ({"\U0001d11e": 1}, {}),
    ({"x": "nul\x00"}, {}),
    ({"x": object()}, {}),
    ({}, {"trace_id": "ABC"}),
    ({}, {"spec_hash": "xyz"}),
    ({}, {"step_id": "not a step"}),
]


def test_append_refuses_bad_input(db: psycopg.Connection[Any]) -> None:
    for payload, kwargs in BAD_APPENDS:
        with pytest.raises(SpecError):
            ledger.append(db, "rehearsal", payload, **kwargs)


def test_reserved_kinds_are_written_only_by_their_own_function(db: psycopg.Connection[Any]) -> None:
    for kind in ("approval", "decision", "principal", "install", "approval_revocation", "decision_revocation"):
        with pytest.raises(GateRefused, match="written only by their own gcos function"):
            ledger.append(db, kind, {})
    assert [e.kind for e in ledger.read_all(db)] == ["install"]


def test_bad_kind_and_non_object_payload_are_refused_in_sql(db: psycopg.Connection[Any]) -> None:
    with pytest.raises(SpecError, match="kind"):
        ledger.append(db, "Bad Kind", {})
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="JSON object"):
        db.execute("SELECT * FROM gcos.ledger_append('x', NULL, NULL, md5('t'), NULL, '[1]')")


# --------------------------------------------------------------------------- tampering (as a superuser)


def test_changed_payload_is_named(db: psycopg.Connection[Any]) -> None:
    fill(db)
    record = record_at(db, 4)
    record["payload"]["i"] = 99
    canonical, _ = forge(record)
    tamper(db, ("UPDATE gcos.ledger SET canonical = %s WHERE seq = 4", (canonical,)))
    report = broken(db)
    assert report.first_bad_seq == 4 and "changed" in (report.reason or "")


def test_non_canonical_edit_is_named(db: psycopg.Connection[Any]) -> None:
    fill(db)
    tamper(db, "UPDATE gcos.ledger SET canonical = replace(canonical, '\"i\":', '\"i\": ') WHERE seq = 5")
    report = broken(db)
    assert report.first_bad_seq == 5 and "canonical" in (report.reason or "")


def test_deleted_record_is_named(db: psycopg.Connection[Any]) -> None:
    fill(db)
    tamper(db, "DELETE FROM gcos.ledger WHERE seq = 4")
    report = broken(db)
    assert report.first_bad_seq == 4 and "missing" in (report.reason or "")


def test_deleted_and_renumbered_record_is_named(db: psycopg.Connection[Any]) -> None:
    fill(db)
    tamper(
        db,
        "DELETE FROM gcos.ledger WHERE seq = 4",
        "UPDATE gcos.ledger SET seq = seq + 1000 WHERE seq > 4",  # two steps: no PK clash mid-statement
        "UPDATE gcos.ledger SET seq = seq - 1001 WHERE seq > 1000",
    )
    report = broken(db)
    assert report.first_bad_seq == 4 and "reordered" in (report.reason or "")


def test_reordered_seqs_are_named(db: psycopg.Connection[Any]) -> None:
    fill(db)
    tamper(
        db,
        "UPDATE gcos.ledger SET seq = 1000 WHERE seq = 3",
        "UPDATE gcos.ledger SET seq = 3 WHERE seq = 4",
        "UPDATE gcos.ledger SET seq = 4 WHERE seq = 1000",
    )
    report = broken(db)
    assert report.first_bad_seq == 3 and "says seq 4" in (report.reason or "")


def test_forged_self_consistent_record_breaks_its_successor(db: psycopg.Connection[Any]) -> None:
    fill(db)
    record = record_at(db, 4)
    record["payload"] = {"i": 3, "text": "nothing happened here"}
    record["actor"]["principal"] = "Someone Else"
    canonical, digest = forge(record)
    tamper(db, ("UPDATE gcos.ledger SET canonical = %s, hash = %s WHERE seq = 4", (canonical, digest)))
    report = broken(db)
    assert report.first_bad_seq == 5 and "hash of seq 4" in (report.reason or "")


def test_duplicate_seq_is_named(db: psycopg.Connection[Any]) -> None:
    fill(db)
    record = record_at(db, 3)
    record["payload"] = {"i": 2, "text": "a second seq 3"}
    canonical, digest = forge(record)
    tamper(
        db,
        "ALTER TABLE gcos.ledger DROP CONSTRAINT ledger_prev_hash_key",
        "ALTER TABLE gcos.ledger DROP CONSTRAINT ledger_pkey CASCADE",
        (
            "INSERT INTO gcos.ledger (seq, prev_hash, hash, canonical) VALUES (3, %s, %s, %s)",
            (record["prev_hash"], digest, canonical),
        ),
    )
    report = broken(db)
    assert report.first_bad_seq == 3 and "more than once" in (report.reason or "")


def test_missing_seq_is_named(db: psycopg.Connection[Any]) -> None:
    fill(db)
    tamper(
        db,
        "UPDATE gcos.ledger SET seq = seq + 1000 WHERE seq >= 5",
        "UPDATE gcos.ledger SET seq = seq - 999 WHERE seq > 1000",
    )  # 5.. become 6..: seq 5 is missing
    report = broken(db)
    assert report.first_bad_seq == 5 and "seq 5 missing" in (report.reason or "")


def test_out_of_band_append_is_named(db: psycopg.Connection[Any]) -> None:
    fill(db)
    top = ledger.read_all(db)[-1]
    record = dict(top.record, seq=top.seq + 1, prev_hash=top.hash, payload={"forged": True})
    canonical, digest = forge(record)
    tamper(
        db,
        (
            "INSERT INTO gcos.ledger (seq, prev_hash, hash, canonical) VALUES (%s, %s, %s, %s)",
            (top.seq + 1, top.hash, digest, canonical),
        ),
    )
    report = broken(db)
    assert report.first_bad_seq == top.seq + 1 and "not appended through" in (report.reason or "")


def test_out_of_band_insert_is_refused_while_triggers_are_on(db: psycopg.Connection[Any]) -> None:
    fill(db, 2)
    top = ledger.read_all(db)[-1]
    record = dict(top.record, seq=top.seq + 1, prev_hash=top.hash, payload={"forged": True})
    canonical, _ = forge(record)
    with pytest.raises(psycopg.DatabaseError, match="appended only through") as info:
        db.execute(
            "INSERT INTO gcos.ledger (seq, prev_hash, hash, canonical) VALUES (%s, %s, %s, %s)",
            (top.seq + 1, top.hash, "0" * 64, canonical),
        )
    assert info.value.sqlstate == "GC001"


def test_truncated_tail_is_detected_by_the_head_or_else_only_by_an_anchor(db: psycopg.Connection[Any]) -> None:
    fill(db)
    anchor = ledger.export_anchor(db)
    keep = anchor.seq - 2
    kept = ledger.read_all(db)[keep - 1]
    tamper(db, ("DELETE FROM gcos.ledger WHERE seq > %s", (keep,)))
    report = broken(db)  # the head still says anchor.seq
    assert report.first_bad_seq == keep + 1 and "tail" in (report.reason or "")
    tamper(db, ("UPDATE gcos.ledger_head SET seq = %s, hash = %s", (keep, kept.hash)), table="gcos.ledger_head")
    assert ledger.verify(db).ok  # a thorough superuser leaves nothing to see without an anchor
    report = broken(db, anchor)
    assert report.first_bad_seq == keep + 1 and "truncated" in (report.reason or "")


def test_full_rewrite_is_detected_only_by_an_anchor(db: psycopg.Connection[Any]) -> None:
    fill(db)
    anchor = ledger.export_anchor(db)
    entries = ledger.read_all(db)
    steps: list[Step] = ["DELETE FROM gcos.ledger"]
    prev = ledger.GENESIS_PREV_HASH
    for entry in entries:
        record = dict(entry.record, prev_hash=prev)
        if entry.seq == 3:
            record["payload"] = {"rewritten": True}
        canonical, digest = forge(record)
        steps.append(
            (
                "INSERT INTO gcos.ledger (seq, prev_hash, hash, canonical) VALUES (%s, %s, %s, %s)",
                (entry.seq, prev, digest, canonical),
            )
        )
        prev = digest
    tamper(db, *steps)
    tamper(db, ("UPDATE gcos.ledger_head SET hash = %s", (prev,)), table="gcos.ledger_head")
    assert ledger.verify(db).ok
    report = broken(db, anchor)
    assert report.first_bad_seq == anchor.seq and "rewritten" in (report.reason or "")


# --------------------------------------------------------------------------- anchors


def test_anchor_round_trip_and_later_appends(db: psycopg.Connection[Any], tmp_path: Path) -> None:
    fill(db, 3)
    anchor = ledger.export_anchor(db)
    path = tmp_path / "anchor.json"
    anchor.dump(path)
    data = json.loads(path.read_text())
    assert data["format_version"] == 1 and set(data) == {"format_version", "seq", "hash", "recorded_at", "database"}
    loaded = Anchor.load(path)
    assert loaded == anchor and UTC_MICROS.fullmatch(loaded.recorded_at)
    fill(db, 2)
    report = ledger.verify(db, loaded)
    assert report.ok and report.anchor_seq == anchor.seq and report.head_seq == anchor.seq + 2


def test_anchor_from_another_database_or_malformed_is_refused(db: psycopg.Connection[Any], tmp_path: Path) -> None:
    anchor = ledger.export_anchor(db)
    other = Anchor(anchor.seq, anchor.hash, anchor.recorded_at, anchor.system_identifier, "elsewhere")
    with pytest.raises(SpecError, match="elsewhere"):
        ledger.verify(db, other)
    bad = tmp_path / "bad.json"
    for text in ("not json", '{"format_version": 2}', json.dumps(dict(anchor.to_dict(), seq="1"))):
        bad.write_text(text)
        with pytest.raises(SpecError, match="anchor"):
            Anchor.load(bad)


# --------------------------------------------------------------------------- concurrency

_WORKER = """
import json, sys
import psycopg
from gcos.ledger import append
dsn, count, tag = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with psycopg.connect(dsn, autocommit=True) as conn:
    print("ready", flush=True)
    sys.stdin.readline()
    seqs = [append(conn, "test.concurrent", {"worker": tag, "i": i}).seq for i in range(count)]
print(json.dumps(seqs), flush=True)
"""


def test_two_processes_appending_at_once_keep_one_linear_chain(db: psycopg.Connection[Any], dsn: str) -> None:
    count = 200
    start = ledger.verify(db).records
    env = dict(os.environ, PYTHONPATH=str(REPO))
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, dsn, str(count), tag],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for tag in ("a", "b")
    ]
    try:
        for worker in workers:  # both connected: release them together
            assert worker.stdout is not None and worker.stdout.readline().strip() == "ready"
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        outputs = [worker.communicate(timeout=120)[0] for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    assert all(worker.returncode == 0 for worker in workers)
    seqs = [json.loads(out.strip().splitlines()[-1]) for out in outputs]
    for mine in seqs:
        assert mine == sorted(mine) and len(mine) == count
    assert sorted(seqs[0] + seqs[1]) == list(range(start + 1, start + 2 * count + 1))
    report = ledger.verify(db)
    assert report.ok and report.records == start + 2 * count
    entries = ledger.read_all(db)[start:]
    for tag in ("a", "b"):
        assert [e.payload["i"] for e in entries if e.payload.get("worker") == tag] == list(range(count))
    tags = [e.payload["worker"] for e in entries]
    assert sum(a != b for a, b in pairwise(tags)) > 1  # they really ran at the same time


def test_verify_streams_the_ledger_across_fetches_and_stops_cleanly(db: psycopg.Connection[Any]) -> None:
    """Issue 13 item 2: verify and anchor read the chain a few records per fetch (ledger.STREAM_ROWS), never the
    whole ledger at once; a break past the first fetch is still named, an early stop closes the cursor inside its
    transaction (the connection stays usable), and the anchor is the last record's."""
    fill(db, ledger.STREAM_ROWS * 2 + 3)
    (count,) = db.execute("SELECT count(*) FROM gcos.ledger").fetchone() or (0,)
    assert count > ledger.STREAM_ROWS * 2 and ledger.verify(db).records == count
    anchor = ledger.export_anchor(db)
    assert (anchor.seq, anchor.hash) == (count, db.execute("SELECT hash FROM gcos.ledger_head").fetchone()[0])  # type: ignore[index]
    late = ledger.STREAM_ROWS + 7
    record = record_at(db, late)
    record["payload"]["i"] = -1
    tamper(db, ("UPDATE gcos.ledger SET canonical = %s WHERE seq = %s", (forge(record)[0], late)))
    assert broken(db).first_bad_seq == late
    with pytest.raises(LedgerBroken):
        ledger.export_anchor(db)
    assert db.execute("SELECT count(*) FROM gcos.ledger").fetchone() == (count,)
    with db.transaction():  # inside a caller's transaction the same snapshot rules hold
        assert broken(db).first_bad_seq == late
