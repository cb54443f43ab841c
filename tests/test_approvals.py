"""Approvals, decisions and revocations through the write aperture, and how the gates (decided by the database,
``gcos.evaluate_gates``) see them, with real database roles (issue 5 items 1, 2 and 4; CONTRACT.md "Authority",
"Gates"; seed 000 "TOCTOU check", P4 expiry; seed 002 §70.0 M-1; seed 004 §§3-4 "human-only approvers,
privilege wall").

The reference world (seed 002) gets gcos installed, its own principals and the project's specs registered;
rehearsals and commits are appended as the ledger records rehearsal.py and apply.py write (same kinds and
payload keys)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import REPO, MakeRole, Role
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from gcos import approvals, gates, ledger, registry
from gcos.approvals import approve, decide, lock_approvals, parse_duration, revoke, revoke_decision
from gcos.errors import DatabaseUnavailable, GateRefused, LedgerBroken, SpecError
from gcos.gates import PolicyDecisionRecord, rollback_subject_hash
from gcos.install import install
from gcos.principals import add_principal
from gcos.spec import Project, StepSpec, load_project

SCHEMA = "5c" * 32  # the entry schema fingerprint of the rehearsals below (and of "now")
TRACE = "feedfacefeedfacefeedfacefeedface"
DAY = timedelta(hours=24)

# role hint -> (principal kind, gcos roles); every one is granted the matching gcos_<role> groups
PEOPLE: dict[str, tuple[str | None, tuple[str, ...]]] = {
    "alice": ("human", ("sovereign",)),
    "bob": ("human", ("council",)),
    "carol": ("human", ("sovereign",)),
    "opal": ("human", ("operator",)),  # commits
    "rita": ("human", ("operator",)),  # rehearses
    "sam": ("human", ("operator", "sovereign")),  # both: may approve, may commit, never his own
    "aggie": ("agent", ("sovereign",)),
    "root": ("human", ("sovereign",)),  # a superuser
}


@dataclass
class World:
    admin: psycopg.Connection[Any]
    dsn: str
    roles: dict[str, Role]
    project: Project
    opened: list[psycopg.Connection[Any]]

    def connect(self, who: str, **settings: Any) -> psycopg.Connection[Any]:
        dbname = conninfo_to_dict(self.dsn)["dbname"]
        conn = psycopg.connect(make_conninfo(self.roles[who].dsn, dbname=dbname), autocommit=True, **settings)
        self.opened.append(conn)
        return conn

    def step(self, ref: str) -> StepSpec:
        return self.project.step(ref)


@pytest.fixture
def world(world_dsn: str, gcos_installed: None, make_role: MakeRole) -> Iterator[World]:
    """The reference world with gcos installed and the PEOPLE as principals of THIS database."""
    admin = psycopg.connect(world_dsn, autocommit=True)
    install(admin)
    roles: dict[str, Role] = {}
    for hint, (kind, gcos_roles) in PEOPLE.items():
        roles[hint] = make_role(hint, grant=gcos_roles, superuser=hint == "root")
        if kind is not None:
            add_principal(admin, roles[hint].name, name=hint.title(), kind=kind, roles=gcos_roles, grant=False)
    w = World(admin, world_dsn, roles, load_project(REPO), [admin])
    register(admin, w.project)
    try:
        yield w
    finally:
        for conn in w.opened:
            conn.close()


def rehearsal(
    conn: psycopg.Connection[Any],
    project: Project,
    step: StepSpec,
    *,
    outcome: str = "passed",
    schema_hash: str = SCHEMA,
) -> int:
    """A rehearsal record as rehearsal.py writes it (kind, step, spec hash, payload keys the gates read)."""
    plan = project.plan_of(step.id)
    assert plan is not None
    entry = ledger.append(
        conn,
        "rehearsal",
        {
            "format_version": 1,
            "run_id": uuid.uuid4().hex,
            "step": step.id,
            "outcome": outcome,
            "plan_hash": plan.hash,
            "fingerprints": {"entry": {"hash": "0e" * 32, "schema_hash": schema_hash}},
        },
        step_id=step.id,
        spec_hash=step.hash,
    )
    return entry.seq


def commit_record(conn: psycopg.Connection[Any], project: Project, step: StepSpec, *, after: str = "af" * 32) -> int:
    plan = project.plan_of(step.id)
    assert plan is not None
    trace = ledger.new_trace_id()  # a commit counts only with the allowing policy decision of its own trace
    decision = ledger.append(
        conn, "policy_decision", {"allow": True}, step_id=step.id, spec_hash=step.hash, trace_id=trace
    )
    entry = ledger.append(
        conn,
        "commit",
        {
            "run_id": uuid.uuid4().hex,
            "outcome": "applied",
            "plan_hash": plan.hash,
            "fingerprint_before": {"hash": "0e" * 32, "schema_hash": SCHEMA},
            "fingerprint_after": {"hash": "1e" * 32, "schema_hash": after},
            "policy_decision_seq": decision.seq,
        },
        step_id=step.id,
        spec_hash=step.hash,
        trace_id=trace,
    )
    return entry.seq


def register(admin: psycopg.Connection[Any], project: Project) -> None:
    """Every spec and plan registered: the database judges registered documents only."""
    for step in project.steps.values():
        registry.register_spec(admin, step)
    for plan in project.plans.values():
        registry.register_plan(admin, plan)


def judge(
    conn: psycopg.Connection[Any], project: Project, step: StepSpec, action: str = "commit", *, as_actor: bool = True
) -> PolicyDecisionRecord:
    """The gates of `action` on `step` as the database decides them for the session's role, on a measured world
    where re-verify holds, no global stop holds and the schema is the rehearsals' (for a rollback: the commit's)."""
    plan = project.plan_of(step.id)
    reverify = [
        {"name": c["name"], "expected": c["expect"], "actual": c["expect"], "ok": True, "error": None}
        for c in step.document.get("reverify", [])
    ]
    stops = [
        {"name": s.name, "holds": False, "detail": "clear"}
        for s in (plan.global_stop if plan else ())
        if s.kind != "max_new_tables"
    ]
    schema = SCHEMA if action == "commit" else "af" * 32
    measured = gates.world(schema_hash=schema, reverify=reverify, global_stops=stops, as_actor=as_actor)
    return gates.evaluate(conn, step, plan, action=action, measured=measured, trace_id=TRACE)


def db_clock(conn: psycopg.Connection[Any]) -> Any:
    row = conn.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    return row[0]


# --------------------------------------------------------------------------- parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24h", timedelta(hours=24)),
        ("30m", timedelta(minutes=30)),
        ("7d", timedelta(days=7)),
        ("90s", timedelta(seconds=90)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        (" 2D ", timedelta(days=2)),
        ("1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        ("365d", timedelta(days=365)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is not a duration"),
        ("24", "is not a duration"),
        ("h", "is not a duration"),
        ("1.5h", "is not a duration"),
        ("-1h", "is not a duration"),
        ("30m1h", "is not a duration"),
        ("1 h", "is not a duration"),
        ("forever", "is not a duration"),
        ("0h", "must be in the future"),
        ("0d0s", "must be in the future"),
        ("366d", "longer than 365 days"),
        ("99999999999999999999d", "longer than 365 days"),
    ],
)
def test_parse_duration_refuses_garbage_zero_and_forever(text: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_duration(text)


# --------------------------------------------------------------------------- approve


def test_a_sovereign_approves_as_the_session_role_bound_to_spec_plan_rehearsal_and_db_clock(world: World) -> None:
    step = world.step("SB-12")
    plan = world.project.plan_of(step.id)
    assert plan is not None
    rita, alice = world.connect("rita"), world.connect("alice")
    seq = rehearsal(rita, world.project, step)
    before = db_clock(alice)
    receipt = approve(alice, world.project, step, verdict="approve", expires_in=DAY, note="read R-2")
    after = db_clock(alice)
    assert receipt.principal == "Alice" and receipt.role == world.roles["alice"].name
    assert (receipt.step_id, receipt.spec_hash, receipt.plan_hash) == (step.id, step.hash, plan.hash)
    assert receipt.bound_hash == step.hash and receipt.subject == "step"
    assert receipt.rehearsal_seq == seq and receipt.rehearsal_outcome == "passed"
    assert before + DAY < receipt.expires_at < after + DAY  # the database's clock, not the client's
    row = world.admin.execute(
        "SELECT approver_oid::bigint, approver, spec_hash, plan_hash, verdict, rehearsal_seq, note, database_name, "
        "ledger_seq FROM gcos.os_proposal_approvals WHERE id = %s",
        (receipt.approval_id,),
    ).fetchone()
    assert row == (
        world.roles["alice"].oid,
        "Alice",
        step.hash,
        plan.hash,
        "approve",
        seq,
        "read R-2",
        conninfo_to_dict(world.dsn)["dbname"],
        receipt.ledger_seq,
    )
    record = ledger.read_all(world.admin)[-1]
    assert record.seq == receipt.ledger_seq and record.kind == "approval"
    assert record.record["actor"]["role_oid"] == world.roles["alice"].oid
    assert record.payload["rehearsal_seq"] == seq
    assert ledger.verify(world.admin).ok


def test_approve_without_a_rehearsal_names_none_and_refuses_bad_input(world: World) -> None:
    alice, step = world.connect("alice"), world.step("SB-13")
    receipt = approve(alice, world.project, step, verdict="defer", expires_in=timedelta(minutes=5), note=None)
    assert receipt.rehearsal_seq is None and receipt.verdict == "defer"
    with pytest.raises(SpecError, match="verdict 'yes' is not one of"):
        approve(alice, world.project, step, verdict="yes", expires_in=DAY)
    with pytest.raises(SpecError, match="must be in the future"):
        approve(alice, world.project, step, verdict="approve", expires_in=timedelta(0))
    with pytest.raises(SpecError, match="longer than 365 days"):
        approve(alice, world.project, step, verdict="approve", expires_in=timedelta(days=400))


@pytest.mark.parametrize(
    ("who", "message"),
    [
        ("opal", "lacks the gcos group role"),  # an operator: no EXECUTE on the aperture
        ("aggie", "is of kind agent and cannot approve"),
        ("root", "is a superuser and cannot approve"),
    ],
)
def test_operators_agents_and_superusers_cannot_approve_or_decide(world: World, who: str, message: str) -> None:
    conn = world.connect(who)
    with pytest.raises(GateRefused, match=message):
        approve(conn, world.project, world.step("SB-12"), verdict="approve", expires_in=DAY)
    with pytest.raises(GateRefused):
        decide(conn, "A-8", verdict="approve", expires_in=DAY, note=None)
    assert world.admin.execute("SELECT count(*) FROM gcos.os_proposal_approvals").fetchone() == (0,)


def test_revoke_appends_and_the_gate_sees_it(world: World) -> None:
    step = world.step("SB-12")
    rehearsal(world.connect("rita"), world.project, step)
    alice, bob, opal = world.connect("alice"), world.connect("bob"), world.connect("opal")
    receipt = approve(alice, world.project, step, verdict="approve", expires_in=DAY)
    assert judge(opal, world.project, step).allow
    revoked = revoke(bob, receipt.approval_id, "spec under review")
    assert (revoked.kind, revoked.revoked_id, revoked.subject, revoked.revoked_by) == (
        "approval",
        receipt.approval_id,
        "SB-12",
        "Bob",
    )
    record = ledger.read_all(world.admin)[-1]
    assert (record.seq, record.kind, record.payload["approval_id"]) == (
        revoked.ledger_seq,
        "approval_revocation",
        receipt.approval_id,
    )
    decision = judge(opal, world.project, step)
    assert not decision.allow and [g.gate for g in decision.failed] == ["approvals"]
    assert decision.gate("approvals").evidence == () and "was revoked" in decision.gate("approvals").reason
    assert decision.gate("approvals").command == "gcos approve SB-12 --verdict approve --expires-in 24h"
    with pytest.raises(SpecError, match="already revoked"):
        revoke(bob, receipt.approval_id)
    with pytest.raises(SpecError, match="does not exist"):
        revoke(bob, 999_999)
    with pytest.raises(GateRefused):
        revoke(opal, receipt.approval_id)


def test_decide_and_revoke_decision(world: World) -> None:
    step = world.step("SB-1-2")
    alice, bob, opal = world.connect("alice"), world.connect("bob"), world.connect("opal")
    before = db_clock(alice)
    receipt = decide(alice, "a-8", verdict="approve", expires_in=timedelta(hours=2), note="C-1 + C-2")
    assert (receipt.decision, receipt.principal, receipt.role) == ("A-8", "Alice", world.roles["alice"].name)
    assert receipt.expires_at > before + timedelta(hours=2)
    with pytest.raises(SpecError, match="is not a decision name"):
        decide(alice, "approve everything", verdict="approve", expires_in=DAY, note=None)
    held = judge(opal, world.project, step).gate("decisions")
    assert held.allow and held.evidence == (receipt.decision_id,)
    revoked = revoke_decision(bob, receipt.decision_id, "superseded")
    assert (revoked.kind, revoked.subject, revoked.revoked_by) == ("decision", "A-8", "Bob")
    gate = judge(opal, world.project, step).gate("decisions")
    assert not gate.allow
    assert gate.reason == f"decision A-8 has no approve in force: record {receipt.decision_id} was revoked"


# --------------------------------------------------------------------------- the gates on the reference world


def test_the_gates_on_the_reference_world(world: World) -> None:
    step = world.step("SB-12")
    opal = world.connect("opal")
    record = judge(opal, world.project, step)
    assert [g.gate for g in record.failed] == ["rehearsal", "approvals"]
    assert record.first_failed is not None and record.first_failed.command == "gcos rehearse SB-12"
    assert record.step_id == "SB-12" and record.plan_hash == world.project.plans["build"].hash

    seq = rehearsal(world.connect("rita"), world.project, step)
    bob_approval = approve(world.connect("bob"), world.project, step, verdict="approve", expires_in=DAY)
    record = judge(opal, world.project, step)
    assert [g.gate for g in record.failed] == ["approvals"] and record.gate("rehearsal").evidence == (seq,)
    assert record.gate("approvals").evidence == ()
    assert f"approval {bob_approval.approval_id} by Bob is by Bob, who holds council" in record.gate("approvals").reason

    alice_approval = approve(world.connect("alice"), world.project, step, verdict="approve", expires_in=DAY)
    record = judge(opal, world.project, step)
    assert record.allow, record.refusal_sentence()
    assert record.gate("approvals").evidence == (alice_approval.approval_id,)
    ledger.append(
        opal, "policy_decision", record.to_payload(), step_id=step.id, spec_hash=step.hash, trace_id=TRACE
    )  # what apply.py writes: the ledger takes it as is

    # SB-10 waits for SB-12 and SB-13
    record = judge(opal, world.project, world.step("SB-10"))
    assert not record.gate("dependencies").allow and record.gate("dependencies").command == "gcos commit SB-12"


def test_self_approval_by_the_rehearser_and_the_committer(world: World) -> None:
    step = world.step("SB-12")
    sam = world.connect("sam")
    rehearsal(sam, world.project, step)
    mine = approve(sam, world.project, step, verdict="approve", expires_in=DAY)
    reason = judge(world.connect("opal"), world.project, step).gate("approvals").reason
    assert f"approval {mine.approval_id} by Sam is by Sam, who ran the rehearsal (no self-approval)" in reason
    rehearsal(world.connect("rita"), world.project, step)  # now Rita's rehearsal is the evidence
    assert judge(world.connect("opal"), world.project, step).allow
    assert judge(sam, world.project, step, as_actor=False).gate("approvals").allow  # gcos status: only looking
    record = judge(sam, world.project, step)  # Sam commits his own approval
    assert [g.gate for g in record.failed] == ["approvals"]
    assert "the committer himself (no self-approval)" in record.gate("approvals").reason
    assert record.gate("approvals").remedy.startswith("ask a sovereign other than Sam to run")


def test_cross_sign_needs_two_distinct_humans(world: World) -> None:
    step = world.step("SB-1-2")
    rehearsal(world.connect("rita"), world.project, step)
    decide(world.connect("carol"), "A-8", verdict="approve", expires_in=DAY, note=None)
    alice, opal = world.connect("alice"), world.connect("opal")
    first = approve(alice, world.project, step, verdict="approve", expires_in=DAY)
    again = approve(alice, world.project, step, verdict="approve", expires_in=DAY)
    gate = judge(opal, world.project, step).gate("approvals")
    assert gate.reason == (
        f"SB-1-2 needs 2 distinct approvers and has 1 (Alice (approval {again.approval_id})): "
        f"approval {first.approval_id} by Alice is by Alice again (as approval "
        f"{again.approval_id}): one person counts once"
    )
    approve(world.connect("bob"), world.project, step, verdict="approve_with_conditions", expires_in=DAY)
    assert not judge(opal, world.project, step).gate("approvals").allow
    bob = approve(world.connect("bob"), world.project, step, verdict="approve", expires_in=DAY)
    record = judge(opal, world.project, step)
    assert record.allow, record.refusal_sentence()
    assert record.gate("approvals").evidence == (again.approval_id, bob.approval_id)


def test_an_approval_of_an_older_spec_after_a_one_byte_sql_edit(world: World, project_dir: Path) -> None:
    project = load_project(project_dir)
    step = project.step("SB-12")
    rehearsal(world.connect("rita"), project, step)
    receipt = approve(world.connect("alice"), project, step, verdict="approve", expires_in=DAY)
    rollback_sql = project_dir / "rollback" / "sb-12.sql"
    rollback_sql.write_text(rollback_sql.read_text(encoding="utf-8") + " ", encoding="utf-8")  # one byte
    edited = load_project(project_dir)
    new = edited.step("SB-12")
    assert new.hash != step.hash
    register(world.admin, edited)
    record = judge(world.connect("opal"), edited, new)
    assert [g.gate for g in record.failed] == ["rehearsal", "approvals"]  # its rehearsal was of the old spec
    assert f"is of spec {step.hash[:12]}…, not the current {new.hash[:12]}…" in record.gate("rehearsal").reason
    assert record.gate("approvals").reason == (
        f"no approval counts for SB-12: approval {receipt.approval_id} by Alice is bound to spec {step.hash[:12]}…, "
        f"not the current {new.hash[:12]}…"
    )


def test_approvals_from_another_database_do_not_count(world: World, pg_admin_dsn: str) -> None:
    step = world.step("SB-12")
    rehearsal(world.connect("rita"), world.project, step)
    receipt = approve(world.connect("alice"), world.project, step, verdict="approve", expires_in=DAY)
    source = conninfo_to_dict(world.dsn)["dbname"]
    for conn in world.opened:
        conn.close()
    clone = f"gcos_clone_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(clone), sql.Identifier(source)))
    try:
        copy = World(world.admin, make_conninfo(world.dsn, dbname=clone), world.roles, world.project, [])
        opal = copy.connect("opal")
        try:
            gate = judge(opal, copy.project, step).gate("approvals")
        finally:
            opal.close()
        assert gate.reason == (
            f"no approval counts for SB-12: approval {receipt.approval_id} by Alice is from "
            f"another database ({source}, this is {clone})"
        )
    finally:
        with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(clone)))


def test_rollback_approvals_bind_the_rollback_subject(world: World) -> None:
    step = world.step("SB-12")
    alice, opal = world.connect("alice"), world.connect("opal")
    with pytest.raises(SpecError, match="SB-12 is not committed"):
        approve(alice, world.project, step, verdict="approve", expires_in=DAY, rollback=True)
    rehearsal(world.connect("rita"), world.project, step)
    for_commit = approve(alice, world.project, step, verdict="approve", expires_in=DAY)
    commit_seq = commit_record(opal, world.project, step)
    receipt = approve(alice, world.project, step, verdict="approve", expires_in=DAY, rollback=True)
    assert receipt.subject == "rollback" and receipt.bound_hash == rollback_subject_hash(step.hash)
    assert receipt.spec_hash == step.hash and receipt.rehearsal_seq is None
    record = judge(opal, world.project, step, action="rollback")
    assert record.allow, record.refusal_sentence()
    assert record.gate("approvals").evidence == (receipt.approval_id,)  # the commit's approval is not the rollback's
    assert f"is committed (seq {commit_seq})" in record.gate("state").reason
    # the commit is refused now: already committed (decisively), and its approval is spent
    record = judge(opal, world.project, step)
    assert record.first_failed is not None and record.first_failed.gate == "state" and record.first_failed.decisive
    assert record.first_failed.command == "gcos rollback SB-12"
    assert for_commit.approval_id not in record.gate("approvals").evidence


def test_the_gates_refuse_tables_that_disagree_with_the_ledger(world: World) -> None:
    step = world.step("SB-12")
    approve(world.connect("alice"), world.project, step, verdict="approve", expires_in=DAY)
    # a superuser forges an approval row that has no ledger record of its own
    world.admin.execute(
        "INSERT INTO gcos.os_proposal_approvals (step_id, spec_hash, plan_hash, verdict, approver_oid, approver, "
        "approver_role, approver_roles, system_identifier, database_name, expires_at, created_at, ledger_seq) "
        "SELECT step_id, spec_hash, plan_hash, verdict, approver_oid, approver, approver_role, approver_roles, "
        "system_identifier, database_name, expires_at, created_at, 1 FROM gcos.os_proposal_approvals"
    )
    with pytest.raises(LedgerBroken, match=r"approvals of SB-12 in gcos\.os_proposal_approvals and in the ledger"):
        judge(world.connect("opal"), world.project, step)


# --------------------------------------------------------------------------- TOCTOU: the commit's lock


def _wait_for_lock_wait(admin: psycopg.Connection[Any], pid: int) -> None:
    """Block until backend `pid` waits for a lock (synchronisation, not a timing assumption)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        row = admin.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
        if row is not None and row[0] == "Lock":
            return
        admin.execute("SELECT pg_sleep(0.005)")
    raise AssertionError(f"backend {pid} never waited for a lock")


def test_lock_approvals_needs_a_transaction_and_the_operator_role(world: World) -> None:
    opal, alice = world.connect("opal"), world.connect("alice")
    with pytest.raises(SpecError, match="inside the commit's transaction"):
        lock_approvals(opal, "SB-12")
    with alice.transaction(), pytest.raises(GateRefused):
        lock_approvals(alice, "SB-12")
    approve(alice, world.project, world.step("SB-1-2"), verdict="approve", expires_in=DAY)
    decide(alice, "A-8", verdict="approve", expires_in=DAY, note=None)
    with opal.transaction():
        assert lock_approvals(opal, "SB-1-2", ("A-8",)) == approvals.LockResult(1, 1)


def test_a_revocation_waits_for_a_commit_that_holds_the_lock(world: World) -> None:
    step = world.step("SB-12")
    rehearsal(world.connect("rita"), world.project, step)
    receipt = approve(world.connect("alice"), world.project, step, verdict="approve", expires_in=DAY)
    opal = world.connect("opal")
    bob = world.connect("bob", options="-c lock_timeout=200ms")
    with opal.transaction():
        lock_approvals(opal, step.id, step.decisions)
        assert judge(opal, world.project, step).allow
        with pytest.raises(DatabaseUnavailable, match="retry"):
            revoke(bob, receipt.approval_id, "too late")  # waits for the commit, here until lock_timeout
        # ... the commit record would be appended and COMMIT issued here
    revoke(bob, receipt.approval_id, "after the commit")  # once the commit ended, the revocation goes through
    assert not judge(opal, world.project, step).allow


def test_a_revocation_that_commits_first_is_never_ignored(world: World) -> None:
    step = world.step("SB-12")
    rehearsal(world.connect("rita"), world.project, step)
    receipt = approve(world.connect("alice"), world.project, step, verdict="approve", expires_in=DAY)
    bob, opal = world.connect("bob"), world.connect("opal")
    result: dict[str, Any] = {}

    def commit_attempt() -> None:
        try:
            with opal.transaction():
                lock_approvals(opal, step.id)  # waits for the revocation's row lock
                result["decision"] = judge(opal, world.project, step)
        except Exception as exc:  # handed to the main thread
            result["error"] = exc

    with bob.transaction():
        revoke(bob, receipt.approval_id, "withdrawn")
        thread = threading.Thread(target=commit_attempt)
        thread.start()
        _wait_for_lock_wait(world.admin, opal.info.backend_pid)
    thread.join(30)
    assert "error" not in result, result.get("error")
    decision: PolicyDecisionRecord = result["decision"]
    assert not decision.allow and decision.gate("approvals").evidence == ()
    assert decision.gate("approvals").reason.endswith("was revoked")


def test_under_repeatable_read_a_revocation_after_the_snapshot_fails_the_commits_append(world: World) -> None:
    step = world.step("SB-12")
    rehearsal(world.connect("rita"), world.project, step)
    receipt = approve(world.connect("alice"), world.project, step, verdict="approve", expires_in=DAY)
    bob, opal = world.connect("bob"), world.connect("opal")
    with pytest.raises(DatabaseUnavailable, match="retry"), opal.transaction():
        opal.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        opal.execute("SELECT 1")  # the snapshot
        revoke(bob, receipt.approval_id, "withdrawn")  # commits after the snapshot
        lock_approvals(opal, step.id)
        stale = judge(opal, world.project, step)
        assert stale.allow  # the snapshot cannot see it ...
        # ... but the commit's own ledger append fails: the revocation moved the ledger head after the snapshot
        ledger.append(opal, "commit", {"outcome": "applied"}, step_id=step.id, spec_hash=step.hash)
    assert [e.kind for e in ledger.read_all(world.admin)][-1] == "approval_revocation"
