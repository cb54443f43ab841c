"""The content-addressed registry (issue 9 item 2): the database computes every spec and plan hash, agrees
with gcos.spec on every real document, and is written only through gcos.register_spec / register_plan."""

from __future__ import annotations

import copy
import dataclasses
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import MakeRole, Role
from psycopg.types.json import Jsonb

from gcos import ledger
from gcos.canonical import canonical_bytes, content_hash
from gcos.errors import ExitCode, GateRefused, LedgerBroken, SpecError
from gcos.install import install
from gcos.registry import register_plan, register_spec
from gcos.spec import StepSpec, load_project

REPO = Path(__file__).resolve().parent.parent
PROJECT = load_project(REPO)
SB12 = PROJECT.steps["SB-12"]
GROUPS = ("admin", "operator", "sovereign", "council", "auditor")


def registry_rows(conn: psycopg.Connection[Any], table: str = "specs") -> int:
    row = conn.execute(f"SELECT count(*) FROM gcos.{table}").fetchone()  # table: a constant of this file
    return int(row[0]) if row else -1


def kinds(conn: psycopg.Connection[Any]) -> list[str]:
    return [e.kind for e in ledger.read_all(conn)]


def with_document(step: StepSpec, change: Any) -> StepSpec:
    """`step` with its document edited by `change(doc)` and its client-side hash recomputed."""
    doc = copy.deepcopy(step.document)
    change(doc)
    return dataclasses.replace(step, document=doc, hash=content_hash(doc))


# --------------------------------------------------------------------------- the database's hash


@pytest.mark.parametrize("step_id", list(PROJECT.steps))
def test_every_real_step_hashes_the_same_in_the_database(
    conn: psycopg.Connection[Any], step_id: str, gcos_installed: None
) -> None:
    install(conn)
    step = PROJECT.steps[step_id]
    assert register_spec(conn, step) == step.hash
    query = "SELECT step_id, canonical, document, ledger_seq FROM gcos.specs WHERE spec_hash = %s"
    stored = conn.execute(query, (step.hash,)).fetchone()
    assert stored is not None
    assert stored[0] == step.id and stored[1].encode() == canonical_bytes(step.document) and stored[2] == step.document
    (record,) = [e for e in ledger.read_all(conn) if e.kind == "spec_registered"]
    assert (record.seq, record.record["step_id"], record.record["spec_hash"]) == (stored[3], step.id, step.hash)
    assert record.payload["hash"] == step.hash and record.payload["step_id"] == step.id


@pytest.mark.parametrize("plan_id", list(PROJECT.plans))
def test_every_real_plan_hashes_the_same_in_the_database(
    conn: psycopg.Connection[Any], plan_id: str, gcos_installed: None
) -> None:
    install(conn)
    plan = PROJECT.plans[plan_id]
    assert register_plan(conn, plan) == plan.hash
    stored = conn.execute("SELECT plan_id, canonical FROM gcos.plans WHERE plan_hash = %s", (plan.hash,)).fetchone()
    assert stored is not None and stored[0] == plan.id and stored[1].encode() == canonical_bytes(plan.document)
    (record,) = [e for e in ledger.read_all(conn) if e.kind == "plan_registered"]
    assert record.payload["plan_id"] == plan.id and record.payload["hash"] == plan.hash
    assert record.record["step_id"] is None and record.payload["steps"] == list(plan.steps)


def test_re_registration_is_an_idempotent_no_op(conn: psycopg.Connection[Any], make_role: MakeRole) -> None:
    operator = make_role("op", kind="human", roles=("operator",), grant=("operator",))
    assert register_spec(conn, SB12) == SB12.hash
    plan = PROJECT.plans["build"]
    assert register_plan(conn, plan) == plan.hash
    before = kinds(conn)
    with operator.connect() as op:
        assert register_spec(op, SB12) == SB12.hash  # another principal, same content
        assert register_plan(op, plan) == plan.hash
    assert register_spec(conn, SB12) == SB12.hash
    assert kinds(conn) == before and registry_rows(conn) == 1 and registry_rows(conn, "plans") == 1
    by = conn.execute("SELECT registered_by FROM gcos.specs").fetchone()
    assert by is not None and by[0] == conn.info.user  # the first registration stays
    edited = with_document(SB12, lambda d: d.update(title=d["title"] + " (edited)"))
    assert register_spec(conn, edited) == edited.hash != SB12.hash
    assert registry_rows(conn) == 2 and kinds(conn).count("spec_registered") == 2


TEXTS = [
    "INSERT INTO t VALUES ('é ñ ß Ω 日本語 😀 \U0010fffd')",
    "INSERT INTO t VALUES (E'\\t') -- tab\there, CR\rhere, LF\nhere",
    "SELECT '\x01\x02\x07\x08\x0b\x0c\x0e\x1b\x1f\x7f'",
    "SELECT 'quote \" backslash \\ slash / \u2028 \u2029 \ufeff \u00ad'",
    "SELECT '\U0001f600\U0001f9d1\u200d\U0001f4bb' AS \"ключ\"",
]


@pytest.mark.parametrize("text", TEXTS)
def test_non_ascii_and_control_characters_hash_the_same(
    conn: psycopg.Connection[Any], text: str, gcos_installed: None
) -> None:
    install(conn)

    def edit(doc: dict[str, Any]) -> None:
        doc["mutation"]["sql"] = text
        doc["rollback"]["sql"] = text[::-1]
        doc["reverify"][0]["sql"] = text
        doc["notes"] = text

    step = with_document(SB12, edit)
    assert register_spec(conn, step) == step.hash
    stored = conn.execute("SELECT document #>> '{mutation,sql}' FROM gcos.specs").fetchone()
    assert stored is not None and stored[0] == text


def test_a_nul_character_is_bad_input(conn: psycopg.Connection[Any], gcos_installed: None) -> None:
    install(conn)
    step = with_document(SB12, lambda d: d["mutation"].update(sql="SELECT '\x00'"))
    with pytest.raises(SpecError) as err:
        register_spec(conn, step)
    assert err.value.exit_code == ExitCode.BAD_INPUT and registry_rows(conn) == 0


def test_a_hash_the_database_disagrees_with_registers_nothing(
    conn: psycopg.Connection[Any], gcos_installed: None
) -> None:
    install(conn)
    lying = dataclasses.replace(SB12, hash="0" * 64)
    with pytest.raises(LedgerBroken) as err:
        register_spec(conn, lying)
    assert err.value.exit_code == ExitCode.LEDGER_BROKEN
    assert registry_rows(conn) == 0 and kinds(conn) == ["install"]
    with conn.transaction():  # inside a caller's transaction the refusal undoes only the registration
        conn.execute("SELECT 1")
        with pytest.raises(LedgerBroken):
            register_plan(conn, dataclasses.replace(PROJECT.plans["build"], hash="f" * 64))
    assert registry_rows(conn, "plans") == 0 and kinds(conn) == ["install"]


# --------------------------------------------------------------------------- invalid documents


def spec_doc(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(SB12.document)
    for key, value in changes.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return doc


BAD_SPECS: list[tuple[Any, str]] = [
    ([1, 2], "JSON object"),
    ("SB-12", "JSON object"),
    (spec_doc(id=None), "key id"),
    (spec_doc(id="not a step"), "key id"),
    (spec_doc(id=12), "key id"),
    (spec_doc(id="S" * 64), "key id"),
    (spec_doc(mutation={"file": "../rollback/sb-12.sql", "allow": []}), "key mutation still has a file: key"),
    (spec_doc(mutation={"sql": "SELECT 1", "file": "x.sql", "allow": []}), "file: key"),
    (spec_doc(mutation={"sql": 42, "allow": []}), "key mutation.sql must be a non-empty string"),
    (spec_doc(mutation={"sql": "", "allow": []}), "key mutation.sql"),
    (spec_doc(mutation="CREATE TABLE x ()"), "key mutation must be an object"),
    (spec_doc(rollback=None), "key rollback must be an object"),
    (spec_doc(rollback={"file": "../rollback/sb-12.sql"}), "key rollback still has a file: key"),
    (spec_doc(batch={"table": "t", "sql": ["INSERT"]}), "key batch.sql"),
    (spec_doc(reverify=[{"name": "x", "expect": 1}]), "key reverify[0].sql"),
    (spec_doc(success=[{"name": "a", "sql": "SELECT 1", "expect": 1}, {"name": "b", "sql": None}]), "success[1].sql"),
    (spec_doc(stop=[{"max_new_tables": 5}, {"name": "x", "file": "x.sql"}]), "key stop[1] still has a file: key"),
    (spec_doc(stop="none"), "key stop must be a list"),
    (spec_doc(reverify=["SELECT 1"]), "key reverify[0] must be an object"),
    (spec_doc(order=1.5), "not an integer"),
]


@pytest.mark.parametrize(("document", "reason"), BAD_SPECS)
def test_invalid_spec_documents_are_refused(
    conn: psycopg.Connection[Any], document: Any, reason: str, gcos_installed: None
) -> None:
    install(conn)
    with pytest.raises(psycopg.errors.InvalidParameterValue) as err:
        conn.execute("SELECT gcos.register_spec(%s)", (Jsonb(document),))
    assert reason in (err.value.diag.message_primary or "")
    assert registry_rows(conn) == 0 and kinds(conn) == ["install"]


def plan_doc(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(PROJECT.plans["build"].document)
    doc.update(changes)
    return doc


BAD_PLANS: list[tuple[Any, str]] = [
    ({"steps": ["SB-12"]}, "key id"),
    (plan_doc(id="build plan"), "key id"),
    ({"id": "build"}, "key steps"),
    (plan_doc(steps=[]), "key steps"),
    (plan_doc(steps="SB-12"), "key steps"),
    (plan_doc(steps=["SB-12", 7]), "step ids"),
    (plan_doc(steps=["SB 12"]), "step ids"),
    (plan_doc(global_stop=[{"name": "x", "sql": False}]), "key global_stop[0].sql"),
    (plan_doc(global_stop=[{"name": "x", "file": "x.sql"}]), "global_stop[0] still has a file: key"),
]


@pytest.mark.parametrize(("document", "reason"), BAD_PLANS)
def test_invalid_plan_documents_are_refused(
    conn: psycopg.Connection[Any], document: Any, reason: str, gcos_installed: None
) -> None:
    install(conn)
    with pytest.raises(psycopg.errors.InvalidParameterValue) as err:
        conn.execute("SELECT gcos.register_plan(%s)", (Jsonb(document),))
    assert reason in (err.value.diag.message_primary or "")
    assert registry_rows(conn, "plans") == 0


def test_null_documents_and_the_python_side_are_bad_input(conn: psycopg.Connection[Any], gcos_installed: None) -> None:
    install(conn)
    for function in ("register_spec", "register_plan"):
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            conn.execute(f"SELECT gcos.{function}(NULL)")  # function: a constant of this loop
    bad = dataclasses.replace(SB12, document=spec_doc(rollback={"file": "x.sql"}))
    with pytest.raises(SpecError) as err:
        register_spec(conn, bad)
    assert err.value.exit_code == ExitCode.BAD_INPUT


# --------------------------------------------------------------------------- who may register


def refused_for(role: Role) -> None:
    with role.connect() as c:
        for call in (lambda: register_spec(c, SB12), lambda: register_plan(c, PROJECT.plans["build"])):
            with pytest.raises(GateRefused) as err:
                call()
            assert err.value.exit_code == ExitCode.GATE_REFUSED
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("SELECT gcos.register_spec(%s)", (Jsonb(SB12.document),))


def test_auditors_non_principals_sovereigns_and_services_are_refused(
    conn: psycopg.Connection[Any], make_role: MakeRole
) -> None:
    refused_for(make_role("aud", kind="human", roles=("auditor",), grant=("auditor",)))
    refused_for(make_role("nobody"))
    refused_for(make_role("stray", grant=("operator",)))  # holds the group role but is no principal
    refused_for(make_role("sov", kind="human", roles=("sovereign",), grant=("sovereign",)))
    refused_for(make_role("council", kind="human", roles=("council",), grant=("council",)))
    refused_for(make_role("misgranted", kind="human", roles=("sovereign",), grant=("sovereign", "operator")))
    refused_for(make_role("svc", kind="service", roles=("operator",), grant=("operator",)))
    refused_for(make_role("nogrant", kind="human", roles=("operator",)))  # no EXECUTE without gcos_operator
    assert registry_rows(conn) == 0 and registry_rows(conn, "plans") == 0 and kinds(conn).count("principal") == 6


@pytest.mark.parametrize(("kind", "roles"), [("agent", ("operator",)), ("human", ("operator",)), ("human", ("admin",))])
def test_operators_admins_and_agents_may_register(
    conn: psycopg.Connection[Any], make_role: MakeRole, kind: str, roles: tuple[str, ...]
) -> None:
    role = make_role(kind, kind=kind, roles=roles, grant=roles)
    with role.connect() as c:
        assert register_spec(c, SB12) == SB12.hash
        assert register_plan(c, PROJECT.plans["sb-1-2"]) == PROJECT.plans["sb-1-2"].hash
    row = conn.execute("SELECT registered_by, registered_by_oid FROM gcos.specs").fetchone()
    assert row is not None and (row[0], row[1]) == (role.name, role.oid)
    record = next(e for e in ledger.read_all(conn) if e.kind == "spec_registered")
    assert (record.record["actor"]["role"], record.record["actor"]["kind"]) == (role.name, kind)
    assert ledger.verify(conn).ok


# --------------------------------------------------------------------------- append-only, for every role


def forged_row(conn: psycopg.Connection[Any]) -> tuple[str, str, int, str, int]:
    canonical = canonical_bytes(SB12.document).decode()
    head = conn.execute("SELECT seq FROM gcos.ledger_head").fetchone()
    assert head is not None
    return (SB12.hash, canonical, 0, "x", int(head[0]))


ATTEMPTS = [
    "INSERT INTO gcos.specs (spec_hash, canonical, registered_at, registered_by_oid, registered_by, ledger_seq) "
    "VALUES (%s, %s, now(), %s, %s, %s)",
    "UPDATE gcos.specs SET registered_by = 'someone else'",
    "DELETE FROM gcos.specs",
    "TRUNCATE gcos.specs CASCADE",  # batch_runs references specs and plans
    "UPDATE gcos.plans SET canonical = canonical",
    "DELETE FROM gcos.plans",
    "TRUNCATE gcos.plans CASCADE",
]


def attempt_all(c: psycopg.Connection[Any], row: tuple[Any, ...], sqlstate: str) -> None:
    for statement in ATTEMPTS:
        with pytest.raises(psycopg.DatabaseError) as err:
            c.execute(statement, row if statement.startswith("INSERT") else None)
        assert err.value.sqlstate == sqlstate, (statement, err.value)


@pytest.mark.parametrize("group", [*GROUPS, "owner", "kernel"])
def test_direct_writes_to_the_registry_are_refused_for_every_gcos_role(
    conn: psycopg.Connection[Any], make_role: MakeRole, group: str
) -> None:
    kind = "human" if group in GROUPS else None
    role = make_role(group, kind=kind, roles=(group,) if kind else (), grant=(group,))
    register_spec(conn, SB12)
    register_plan(conn, PROJECT.plans["build"])
    other = with_document(SB12, lambda d: d.update(title="forged"))
    row = (other.hash, canonical_bytes(other.document).decode(), role.oid, role.name, forged_row(conn)[4])
    # a member of the table owner passes the privilege wall; 008's write guard refuses it (42501)
    with role.connect() as c:
        attempt_all(c, row, "42501")
        if group in GROUPS:
            assert c.execute("SELECT count(*) FROM gcos.specs").fetchone() == (1,)
            assert c.execute("SELECT count(*) FROM gcos.plans").fetchone() == (1,)
    assert registry_rows(conn) == 1 and registry_rows(conn, "plans") == 1


def test_even_a_superuser_cannot_change_or_forge_registry_rows(
    conn: psycopg.Connection[Any], gcos_installed: None
) -> None:
    install(conn)
    register_spec(conn, SB12)
    register_plan(conn, PROJECT.plans["build"])
    other = with_document(SB12, lambda d: d.update(title="forged"))
    me = conn.execute("SELECT oid::bigint FROM pg_roles WHERE rolname = session_user").fetchone()
    assert me is not None
    row = (other.hash, canonical_bytes(other.document).decode(), me[0], conn.info.user, forged_row(conn)[4])
    attempt_all(conn, row, "GC001")
    with conn.transaction():  # ENABLE ALWAYS: replication mode does not switch the guards off
        conn.execute("SET LOCAL session_replication_role = replica")
        with pytest.raises(psycopg.DatabaseError) as err, conn.transaction():
            conn.execute("DELETE FROM gcos.specs")
        assert err.value.sqlstate == "GC001"
    # even with a real ledger record of the right kind at the head, a row must hash to its own content
    conn.execute(
        "SELECT * FROM gcos._ledger_write('spec_registered', 'SB-12', %s, md5('t'), NULL, %s)",
        (other.hash, Jsonb({"hash": other.hash})),
    )
    head = conn.execute("SELECT seq FROM gcos.ledger_head").fetchone()
    assert head is not None
    with pytest.raises(psycopg.DatabaseError) as err:
        conn.execute(ATTEMPTS[0], ("0" * 64, row[1], me[0], conn.info.user, head[0]))
    assert err.value.sqlstate == "GC001"
    assert registry_rows(conn) == 1


@pytest.mark.parametrize("kind", ["spec_registered", "plan_registered"])
def test_ledger_append_refuses_the_registry_kinds(
    conn: psycopg.Connection[Any], gcos_installed: None, kind: str
) -> None:
    """Not even a superuser claims a registration through gcos.ledger_append (no other role may call it at all:
    tests/test_authority.py): a registration record is written only by gcos.register_spec / register_plan."""
    with pytest.raises(GateRefused, match="written only by their own gcos function"):
        ledger.append(conn, kind, {"hash": SB12.hash}, step_id="SB-12", spec_hash=SB12.hash)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT * FROM gcos.ledger_append(%s, 'SB-12', %s, md5('t'), NULL, '{}')", (kind, SB12.hash))
    assert kind not in kinds(conn)


def waits_on_a_lock(conn: psycopg.Connection[Any], pid: int) -> bool:
    """Poll pg_stat_activity (bounded) until backend `pid` waits on a heavyweight lock: proof it is blocked,
    without a fixed sleep."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        row = conn.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
        if row and row[0] == "Lock":
            return True
        time.sleep(0.02)
    return False


def test_two_sessions_registering_the_same_spec_append_one_record(
    conn: psycopg.Connection[Any], dsn: str, gcos_installed: None
) -> None:
    install(conn)
    results: list[str] = []
    with psycopg.connect(dsn, autocommit=True) as first, psycopg.connect(dsn, autocommit=True) as second:
        with first.transaction():
            assert register_spec(first, SB12) == SB12.hash  # inside first's open transaction: not committed yet
            waiter = threading.Thread(target=lambda: results.append(register_spec(second, SB12)))
            waiter.start()
            assert waits_on_a_lock(conn, second.info.backend_pid)  # on the ledger head the first registration holds
            assert waiter.is_alive()
        waiter.join(timeout=30)
    assert results == [SB12.hash]
    assert registry_rows(conn) == 1 and kinds(conn).count("spec_registered") == 1
