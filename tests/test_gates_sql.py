"""The seven commit gates where the KERNEL measures and commits (gcos/sql/010_gates.sql, 012_kernel_commit.sql,
014_kernel_explain.sql; issue 9 item 3; CONTRACT.md "Gates that COMMIT must pass").

Each test gets a copy of the reference world whose schema public the kernel governs (`gcos_adopted`), and its own
LOGIN roles mapped to principals. Rehearsals and commits run through gcos's commands as the right people and the
kernel measures the world under its commit lock: a refusal is exit 3 (6 for re-verify), names the failed gates in
the decision the kernel recorded, and applies nothing. ``gcos.explain_gates`` (what `gcos status` shows) and
``gcos.evaluate_gates`` asked directly, with the world the kernel measures, answer the rest: bad input, who may ask,
self-approval in status mode, conflicts read now, a cloned database, a table that disagrees with the ledger.
test_gates.py holds each rule's table."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.json import Jsonb
from test_gates import Desk, open_desk

from gcos import commands, gates, ledger
from gcos.errors import ExitCode, GateRefused, LedgerBroken, ReverifyMismatch

TRACE = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def world(world_dsn: str, project_dir: Path, gcos_adopted: None) -> Iterator[Desk]:
    yield from open_desk(world_dsn, project_dir)


def evaluate(
    conn: psycopg.Connection[Any], spec_hash: str, plan_hash: str | None, action: str = "commit", world: Any = None
) -> dict[str, Any]:
    row = conn.execute(
        "SELECT gcos.evaluate_gates(%s, %s, %s, %s)",
        (spec_hash, plan_hash, action, Jsonb(world) if world is not None else None),
    ).fetchone()
    assert row is not None
    return dict(row[0])


def kernel_world(w: Desk, step_id: str = "SB-12") -> dict[str, Any]:
    """The world as the kernel measures it for a commit of `step_id` (gcos._kernel_world, read by the superuser):
    the p_world a commit hands gcos.evaluate_gates."""
    project = w.project
    step = project.step(step_id)
    gates.register(w.admin, step, project.plan_of(step.id))
    plan = project.plan_of(step.id)
    assert plan is not None
    row = w.admin.execute(
        "SELECT gcos._kernel_world(s.document - 'watch', p.document) -> 'world' FROM gcos.specs AS s, gcos.plans AS p"
        " WHERE s.spec_hash = %s AND p.plan_hash = %s",
        (step.hash, plan.hash),
    ).fetchone()
    assert row is not None
    return dict(row[0])


def explain(conn: psycopg.Connection[Any], w: Desk, step_id: str = "SB-12") -> dict[str, Any]:
    """``gcos.explain_gates``: the decision a commit would take now, on the world the kernel measures."""
    step = w.project.step(step_id)
    plan = w.project.plan_of(step.id)
    assert plan is not None
    row = conn.execute("SELECT gcos.explain_gates(%s, %s)", (step.hash, plan.hash)).fetchone()
    assert row is not None
    return dict(row[0])


def gate(decision: dict[str, Any], name: str) -> dict[str, Any]:
    return next(g for g in decision["gates"] if g["gate"] == name)


def failed(decision: dict[str, Any]) -> list[str]:
    return list(decision["failed"])


def refused(w: Desk, step: str = "SB-12", who: str = "opal", error: type[Exception] = GateRefused) -> dict[str, Any]:
    """The kernel's decision of a refused commit (exit 3, or 6 for re-verify); nothing applied."""
    with pytest.raises(error) as info:
        w.commit(step, who)
    assert isinstance(info.value, GateRefused | ReverifyMismatch)
    assert info.value.exit_code == (ExitCode.GATE_REFUSED if error is GateRefused else ExitCode.REVERIFY_MISMATCH)
    details: Any = info.value.details
    decision: dict[str, Any] = details["decision"]
    assert decision["allow"] is False and decision["failed"] == [g["gate"] for g in decision["gates"] if not g["allow"]]
    return decision


def governed(w: Desk) -> bool:
    row = w.admin.execute("SELECT to_regclass('public.governance_ruleset') IS NOT NULL").fetchone()
    return bool(row and row[0])


# --------------------------------------------------------------------------- the kernel's commits


def test_a_commit_story_from_nothing_to_committed(world: Desk) -> None:
    """No rehearsal (§70.2 item 3); an expired, then a revoked approval; the schema moved since the rehearsal; a
    real approval commits; committing again is refused decisively. Every refusal is the kernel's record."""
    d = refused(world)
    assert failed(d) == ["rehearsal", "approvals"] and gate(d, "rehearsal")["command"] == "gcos rehearse SB-12"
    world.rehearse()
    short = world.approve("alice", expires_in="1s")
    world.wait_past("os_proposal_approvals")  # expires_at <= the database clock at commit: expired
    d = refused(world)
    assert failed(d) == ["approvals"] and "expired" in gate(d, "approvals")["reason"]
    revoked = world.approve("alice")
    world.revoke("alice", revoked)
    d = refused(world)
    assert failed(d) == ["approvals"] and gate(d, "approvals")["evidence"] == []
    carol = world.approve("carol")
    world.execute("CREATE TABLE public.gates_sql_probe (id integer)")  # the schema moves after the rehearsal
    d = refused(world)
    assert failed(d) == ["rehearsal"] and gate(d, "rehearsal")["known"]
    assert gate(d, "rehearsal")["command"] == "gcos rehearse SB-12"
    world.execute("DROP TABLE public.gates_sql_probe")
    assert not governed(world) and world.commit().ok and governed(world)
    (commit,) = world.records("commit")
    allowing = ledger.read_one(world.admin, commit.record["payload"]["policy_decision_seq"]).record["payload"]
    assert allowing["allow"] and gate(allowing, "approvals")["evidence"] == [carol] and short != carol
    d = refused(world)
    assert gate(d, "state")["decisive"] and d["refusal"].startswith("SB-12 is already committed")
    assert gate(d, "state")["command"] == "gcos rollback SB-12"
    refusals = world.records("commit_refused")
    assert len(refusals) == 5 and all(r.record["payload"]["kernel"] is True for r in refusals)
    assert len(world.records("commit")) == 1


def test_no_self_approval_by_the_rehearser_or_the_committer(world: Desk) -> None:
    world.rehearse(by="sam")
    mine = world.approve("sam")
    d = refused(world)  # Opal commits; Sam rehearsed and approved
    assert failed(d) == ["approvals"] and "(no self-approval)" in gate(d, "approvals")["reason"]
    world.rehearse()  # Rita's rehearsal is the evidence now; Sam commits
    d = refused(world, who="sam")
    assert failed(d) == ["approvals"] and "other than Sam" in gate(d, "approvals")["remedy"]
    assert world.commit().ok  # rehearsed and committed by others, Sam's approval is a real one
    (commit,) = world.records("commit")
    allowing = ledger.read_one(world.admin, commit.record["payload"]["policy_decision_seq"]).record["payload"]
    assert gate(allowing, "approvals")["evidence"] == [mine]


def test_a_re_verify_that_fails_at_commit_is_exit_6_and_applies_nothing(world: Desk) -> None:
    world.rehearse()
    world.approve("alice")
    world.execute(
        "UPDATE measurement_registry SET enabled = false "
        "WHERE metric_key = (SELECT min(metric_key) FROM measurement_registry)"
    )
    d = refused(world, error=ReverifyMismatch)
    assert failed(d) == ["reverify"] and gate(d, "reverify")["command"] == "gcos verify SB-12"
    assert not governed(world) and world.records("commit") == []


# --------------------------------------------------------------------------- the database's own answers


def test_an_approver_who_gains_a_conflict_stops_counting(world: Desk) -> None:
    """Separation of duties is read when the gates are asked, not when the approval was recorded."""
    world.rehearse()
    alice = world.approve("alice")
    assert explain(world.admin, world)["allow"]
    name = sql.Identifier(world.role("alice").name)
    world.execute(sql.SQL("GRANT gcos_owner TO {}").format(name))
    d = explain(world.admin, world)
    # the rehearsal too: a new member of gcos_owner changes who can act on the adopted schema, which the
    # fingerprint measures (role category, members of watched roles), so the rehearsal no longer matches
    assert failed(d) == ["rehearsal", "approvals"] and "other than Alice" in gate(d, "approvals")["remedy"]
    world.execute(sql.SQL("REVOKE gcos_owner FROM {}").format(name))
    assert gate(explain(world.admin, world), "approvals")["evidence"] == [alice]


def test_a_clone_refuses_the_copied_approvals_and_decisions(world: Desk, pg_admin_dsn: str) -> None:
    world.rehearse("SB-1-2")
    world.approve("alice", "SB-1-2")
    world.approve("bob", "SB-1-2")
    world.decide("carol", "C-1")
    world.decide("carol", "C-2")
    assert explain(world.admin, world, "SB-1-2")["allow"]
    original = str(conninfo_to_dict(world.dsn)["dbname"])
    away, clone = f"{original}_away", f"{original}_clone"
    ident = sql.Identifier
    world.admin.close()  # a template or a renamed database has no sessions
    with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
        copy = " STRATEGY FILE_COPY" if admin.info.server_version >= 150000 else ""
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}" + copy).format(ident(clone), ident(original)))
        try:
            with psycopg.connect(make_conninfo(world.dsn, dbname=clone), autocommit=True) as conn:
                d = explain(conn, world, "SB-1-2")
            assert failed(d) == ["approvals", "decisions"] and "another database" in gate(d, "approvals")["reason"]
            admin.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(ident(original), ident(away)))
            admin.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(ident(clone), ident(original)))
            with psycopg.connect(world.dsn, autocommit=True) as conn:  # the clone under the original's name
                d = explain(conn, world, "SB-1-2")
            assert failed(d) == ["approvals", "decisions"] and "incarnation" in gate(d, "decisions")["reason"]
        finally:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident(original)))
            admin.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(ident(away), ident(original)))
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident(clone)))


def test_unregistered_specs_and_plans_unmeasured_worlds_and_bad_input(world: Desk) -> None:
    project = world.project
    step, plan = project.step("SB-12"), project.plan_of("SB-12")
    assert plan is not None
    unknown = "ab" * 32
    conn = world.admin
    d = evaluate(conn, unknown, plan.hash, world={})
    assert not d["allow"] and d["step_id"] is None and d["failed"] == [g["gate"] for g in d["gates"]]
    assert gate(d, "spec")["known"] and gate(d, "spec")["command"] == "gcos rehearse STEP"
    assert [g["known"] for g in d["gates"][1:]] == [False] * 6
    world.rehearse()
    with pytest.raises(pg_errors.InvalidParameterValue):
        conn.execute("SELECT gcos.evaluate_gates(%s, %s, 'commit', '{}')", (step.hash, "nothex"))
    d = evaluate(conn, step.hash, unknown, world={})  # a plan nobody registered binds nothing
    assert gate(d, "spec")["command"] == "gcos rehearse SB-12" and not gate(d, "spec")["allow"]
    other = project.plans["sb-1-2"]
    gates.register(conn, project.step("SB-1-2"), other)
    d = evaluate(conn, step.hash, other.hash, world={})  # a registered plan without the step
    assert gate(d, "spec")["command"] == "gcos plan" and not gate(d, "rehearsal")["allow"]
    d = evaluate(conn, step.hash, plan.hash, world={})  # nothing measured: unknown, refused
    assert {g["gate"]: g["known"] for g in d["gates"] if not g["allow"]} == {
        "reverify": False,
        "rehearsal": False,
        "approvals": True,
        "state": False,
    }
    d = evaluate(conn, step.hash, plan.hash, world={"reverify": [], "global_stops": [], "schema_hash": "0" * 64})
    assert not gate(d, "reverify")["known"] and not gate(d, "state")["known"]  # not one result per check
    for action, world_arg in (("apply", {}), ("commit", [])):
        with pytest.raises(pg_errors.InvalidParameterValue):
            evaluate(conn, step.hash, plan.hash, action, world_arg)
    # a committed step whose spec nobody registered (a superuser's records): whether it depends on SB-12 is
    # unknown, so its rollback is refused
    trace = ledger.new_trace_id()
    allowing = ledger.append(
        conn, "policy_decision", {"allow": True}, step_id="ZZ-1", spec_hash=unknown, trace_id=trace
    )
    payload = {"outcome": "applied", "policy_decision_seq": allowing.seq}
    ledger.append(conn, "commit", payload, step_id="ZZ-1", spec_hash=unknown, trace_id=trace)
    d = evaluate(conn, step.hash, plan.hash, "rollback", world={})
    assert not gate(d, "dependencies")["allow"] and not gate(d, "dependencies")["known"]
    assert gate(d, "dependencies")["command"] == "gcos rehearse ZZ-1"


def test_status_mode_does_not_count_the_sessions_own_approval_as_self_approval(world: Desk) -> None:
    """p_world {"as_actor": false} is `gcos status` (gcos.explain_gates): Alice looking is not Alice committing."""
    world.rehearse()
    alice = world.approve("alice")
    step = world.project.step("SB-12")
    plan = world.project.plan_of("SB-12")
    assert plan is not None
    measured = kernel_world(world)
    with world.connect("alice") as conn:
        assert explain(conn, world)["allow"]
        assert evaluate(conn, step.hash, plan.hash, world={**measured, "as_actor": False})["allow"]
        d = evaluate(conn, step.hash, plan.hash, world=measured)  # as the committer, Alice is her own approver
        assert failed(d) == ["approvals"] and "(no self-approval)" in gate(d, "approvals")["reason"]
    # Alice reads none of the governed tables: the kernel measures for her
    (status,) = commands.status(world.target("alice"), world.project_dir, "SB-12").steps
    assert status.decision.allow and status.state == "approved"
    assert status.decision.gate("approvals").evidence == (alice,)


def test_only_gcos_roles_may_ask_and_an_auditor_sees_the_same_decision(world: Desk) -> None:
    """A gcos_auditor member reads everything the evaluation needs; a role in no gcos group cannot even call it
    (SET ROLE keeps session_user, the committer, as it was)."""
    world.rehearse()
    world.approve("alice")
    step = world.project.step("SB-12")
    plan = world.project.plan_of("SB-12")
    assert plan is not None
    measured = kernel_world(world)
    auditor, nobody = (f"gcos_t_{uuid.uuid4().hex[:8]}_{x}" for x in ("auditor", "nobody"))
    world.execute(sql.SQL("CREATE ROLE {} NOLOGIN IN ROLE gcos_auditor").format(sql.Identifier(auditor)))
    world.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(nobody)))
    try:
        with world.connect() as conn:
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(auditor)))
            assert evaluate(conn, step.hash, plan.hash, world=measured)["allow"]
            assert explain(conn, world)["allow"]
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(nobody)))
            with pytest.raises(pg_errors.InsufficientPrivilege):
                evaluate(conn, step.hash, plan.hash, world=measured)
            with pytest.raises(pg_errors.InsufficientPrivilege):
                explain(conn, world)
    finally:
        for role in (auditor, nobody):
            world.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_an_approval_row_the_ledger_does_not_know_is_an_integrity_failure(world: Desk) -> None:
    world.rehearse()
    step = world.project.step("SB-12")
    plan = world.project.plan_of("SB-12")
    assert plan is not None
    alice = world.role("alice")
    admin = world.admin  # a superuser forges a row beside a real ledger record that is no approval
    seq = admin.execute("SELECT max(seq) FROM gcos.ledger WHERE kind = 'rehearsal'").fetchone()
    assert seq is not None
    admin.execute(
        "INSERT INTO gcos.os_proposal_approvals (step_id, spec_hash, plan_hash, verdict, approver_oid, approver, "
        "approver_role, approver_roles, system_identifier, database_name, database_oid, expires_at, created_at, "
        "ledger_seq) SELECT 'SB-12', %s, %s, 'approve', %s, 'Alice', %s, '{sovereign}', i.system_identifier, "
        "i.database_name, i.database_oid, now() + interval '1 day', now(), %s FROM gcos.database_incarnation() i",
        (step.hash, plan.hash, alice.oid, alice.name, seq[0]),
    )
    measured = kernel_world(world)
    with pytest.raises(psycopg.Error) as info:
        evaluate(admin, step.hash, plan.hash, world=measured)
    assert info.value.sqlstate == "GC007"
    with pytest.raises(LedgerBroken) as broken:  # wherever the gates are asked: exit 7
        gates.evaluate(admin, step, plan, action="commit", measured=measured, trace_id=TRACE)
    assert broken.value.exit_code == ExitCode.LEDGER_BROKEN
    with pytest.raises(LedgerBroken):
        commands.status(world.target(), world.project_dir, "SB-12")
    with pytest.raises(LedgerBroken):  # the kernel's commit, as the named operator
        world.commit()
    assert world.records("commit") == [] and not governed(world)
    assert ledger.verify(admin).ok
