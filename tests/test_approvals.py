"""Approvals, decisions and revocations through the write aperture, and how the gates (decided by the database)
see them, with real database roles (issue 5 items 1, 2 and 4; CONTRACT.md "Authority", "Gates"; seed 000
"TOCTOU check", P4 expiry; seed 002 §70.0 M-1; seed 004 §§3-4 "human-only approvers, privilege wall").

A copy of the reference world whose schema public the kernel governs (`gcos adopt public`), with its own
principals. Rehearsals, commits and rollbacks run in the kernel as named roles (Rita or Sam rehearse, Opal or Sam
commit); what the gates make of the approvals is asked of the kernel: as someone who only looks
(``gcos.explain_gates``, what `gcos status` shows) or, where it matters who commits, by a real commit."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import MakeRole, Role

from gcos import commands, gates, ledger, registry
from gcos.approvals import approve, decide, parse_duration, revoke, revoke_decision
from gcos.errors import DatabaseUnavailable, GateRefused, LedgerBroken, SpecError
from gcos.gates import PolicyDecisionRecord, rollback_subject_hash
from gcos.spec import Project, StepSpec, load_project
from gcos.target import SessionSettings, Target

DAY = timedelta(hours=24)

# role hint -> (principal kind, gcos roles); every one is granted the matching gcos_<role> groups
PEOPLE: dict[str, tuple[str, tuple[str, ...]]] = {
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
    project_dir: Path
    project: Project
    opened: list[psycopg.Connection[Any]]

    def connect(self, who: str, **settings: Any) -> psycopg.Connection[Any]:
        conn = psycopg.connect(self.roles[who].dsn, autocommit=True, **settings)
        self.opened.append(conn)
        return conn

    def target(self, who: str) -> Target:
        return Target(self.roles[who].dsn, "--dsn")

    def step(self, ref: str) -> StepSpec:
        return self.project.step(ref)

    def rehearse(self, ref: str = "SB-12", who: str = "rita") -> int:
        """A kernel rehearsal as `who`; the seq of its record."""
        result = commands.rehearse(self.target(who), self.project_dir, ref)
        assert result.ok and result.ledger_seq is not None
        return int(result.ledger_seq)

    def commit(self, ref: str = "SB-12", who: str = "opal", **kw: Any) -> Any:
        return commands.commit(self.target(who), self.project_dir, ref, **kw)

    def refused(self, ref: str = "SB-12", who: str = "opal", action: str = "commit") -> PolicyDecisionRecord:
        """The kernel's refusal of `who`'s commit (or rollback) of `ref`: its policy decision."""
        run = commands.rollback if action == "rollback" else commands.commit
        with pytest.raises(GateRefused) as info:
            run(self.target(who), self.project_dir, ref)
        return decision_of(info.value.details["decision"])  # type: ignore[index]

    def kinds(self, ref: str = "SB-12") -> list[str]:
        """The kinds of the ledger records of `ref`, in order."""
        return [e.kind for e in ledger.read_all(self.admin) if e.record.get("step_id") == ref]

    def ruleset_exists(self) -> bool:
        """Whether SB-12's mutation is applied (it creates governance_ruleset)."""
        row = self.admin.execute("SELECT to_regclass('public.governance_ruleset') IS NOT NULL").fetchone()
        return bool(row and row[0])


def decision_of(payload: dict[str, Any]) -> PolicyDecisionRecord:
    return PolicyDecisionRecord.from_payload(payload, trace_id=payload.get("trace_id"))


@pytest.fixture
def world(world_dsn: str, gcos_adopted: None, world_role: MakeRole, project_dir: Path) -> Iterator[World]:
    """The adopted reference world with the PEOPLE as principals of THIS database, the specs registered."""
    admin = psycopg.connect(world_dsn, autocommit=True)
    roles = {
        hint: world_role(hint, kind=kind, roles=gcos_roles, grant=gcos_roles, superuser=hint == "root")
        for hint, (kind, gcos_roles) in PEOPLE.items()
    }
    w = World(admin, world_dsn, roles, project_dir, load_project(project_dir), [admin])
    register(admin, w.project)
    try:
        yield w
    finally:
        for conn in w.opened:
            conn.close()


def register(admin: psycopg.Connection[Any], project: Project) -> None:
    """Every spec and plan registered: the database judges registered documents only."""
    for step in project.steps.values():
        registry.register_spec(admin, step)
    for plan in project.plans.values():
        registry.register_plan(admin, plan)


def judge(conn: psycopg.Connection[Any], project: Project, step: StepSpec) -> PolicyDecisionRecord:
    """The gates of committing `step` as the kernel decides them now for someone who only looks (`gcos status`),
    on the world it measures itself."""
    return gates.explain(conn, step, project.plan_of(step.id), trace_id=ledger.new_trace_id())


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
    seq = world.rehearse()
    alice = world.connect("alice")
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
        alice.info.dbname,
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


REFUSED_SIGNERS = (
    ("opal", "lacks the gcos group role"),  # an operator: no EXECUTE on the aperture
    ("aggie", "is of kind agent and cannot approve"),
    ("root", "is a superuser and cannot approve"),
)


def test_operators_agents_and_superusers_cannot_approve_or_decide(world: World) -> None:
    """One world for the three: each is refused for its own reason, and no approval row exists after any of them."""
    for who, message in REFUSED_SIGNERS:
        conn = world.connect(who)
        with pytest.raises(GateRefused, match=message):
            approve(conn, world.project, world.step("SB-12"), verdict="approve", expires_in=DAY)
        with pytest.raises(GateRefused):
            decide(conn, world.project, "C-1", verdict="approve", expires_in=DAY, note=None)
        assert world.admin.execute("SELECT count(*) FROM gcos.os_proposal_approvals").fetchone() == (0,), who


def test_revoke_appends_and_the_gate_sees_it(world: World) -> None:
    step = world.step("SB-12")
    world.rehearse()
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
    receipt = decide(alice, world.project, "c-1", verdict="approve", expires_in=timedelta(hours=2), note="half A-8")
    assert (receipt.decision, receipt.principal, receipt.role) == ("C-1", "Alice", world.roles["alice"].name)
    assert receipt.expires_at > before + timedelta(hours=2)
    with pytest.raises(SpecError, match="is not a decision name"):
        decide(alice, world.project, "approve everything", verdict="approve", expires_in=DAY, note=None)
    other = decide(alice, world.project, "C-2", verdict="approve", expires_in=DAY)
    held = judge(opal, world.project, step).gate("decisions")
    assert held.allow and held.evidence == (receipt.decision_id, other.decision_id)
    with pytest.raises(GateRefused, match="only a sovereign revokes a decision"):  # bob is council (029)
        revoke_decision(bob, receipt.decision_id, "superseded")
    revoked = revoke_decision(alice, receipt.decision_id, "superseded")
    assert (revoked.kind, revoked.subject, revoked.revoked_by) == ("decision", "C-1", "Alice")
    gate = judge(opal, world.project, step).gate("decisions")
    assert not gate.allow
    assert gate.reason == f"decision C-1 has no approve in force: record {receipt.decision_id} was revoked"


# --------------------------------------------------------------------------- the gates on the reference world


def test_the_gates_on_the_reference_world(world: World) -> None:
    step = world.step("SB-12")
    opal = world.connect("opal")
    record = judge(opal, world.project, step)
    assert [g.gate for g in record.failed] == ["rehearsal", "approvals"]
    assert record.first_failed is not None and record.first_failed.command == "gcos rehearse SB-12"
    assert record.step_id == "SB-12" and record.plan_hash == world.project.plans["build"].hash

    seq = world.rehearse()
    bob_approval = approve(world.connect("bob"), world.project, step, verdict="approve", expires_in=DAY)
    record = judge(opal, world.project, step)
    assert [g.gate for g in record.failed] == ["approvals"] and record.gate("rehearsal").evidence == (seq,)
    assert record.gate("approvals").evidence == ()
    assert f"approval {bob_approval.approval_id} by Bob is by Bob, who holds council" in record.gate("approvals").reason

    alice_approval = approve(world.connect("alice"), world.project, step, verdict="approve", expires_in=DAY)
    record = judge(opal, world.project, step)
    assert record.allow, record.refusal_sentence()
    assert record.gate("approvals").evidence == (alice_approval.approval_id,)

    # SB-10 waits for SB-12 and SB-13
    record = judge(opal, world.project, world.step("SB-10"))
    assert not record.gate("dependencies").allow and record.gate("dependencies").command == "gcos commit SB-12"


def test_self_approval_by_the_rehearser_and_the_committer(world: World) -> None:
    step = world.step("SB-12")
    sam = world.connect("sam")
    world.rehearse(who="sam")
    mine = approve(sam, world.project, step, verdict="approve", expires_in=DAY)
    reason = judge(world.connect("opal"), world.project, step).gate("approvals").reason
    assert f"approval {mine.approval_id} by Sam is by Sam, who ran the rehearsal (no self-approval)" in reason
    world.rehearse()  # now Rita's rehearsal is the evidence
    assert judge(world.connect("opal"), world.project, step).allow
    assert judge(sam, world.project, step).gate("approvals").allow  # gcos status: Sam only looks
    record = world.refused(who="sam")  # Sam commits his own approval: the kernel refuses
    assert [g.gate for g in record.failed] == ["approvals"]
    assert "the committer himself (no self-approval)" in record.gate("approvals").reason
    assert record.gate("approvals").remedy.startswith("ask a sovereign other than Sam to run")
    assert world.kinds()[-1] == "commit_refused" and not world.ruleset_exists()


def test_cross_sign_needs_two_distinct_humans(world: World) -> None:
    step = world.step("SB-1-2")
    for name in ("C-1", "C-2"):
        decide(world.connect("carol"), world.project, name, verdict="approve", expires_in=DAY, note=None)
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
    assert record.gate("approvals").allow and record.gate("decisions").allow, record.refusal_sentence()
    assert record.gate("approvals").evidence == (again.approval_id, bob.approval_id)


def test_an_approval_of_an_older_spec_after_a_one_byte_sql_edit(world: World) -> None:
    step = world.step("SB-12")
    world.rehearse()
    receipt = approve(world.connect("alice"), world.project, step, verdict="approve", expires_in=DAY)
    rollback_sql = world.project_dir / "rollback" / "sb-12.sql"
    rollback_sql.write_text(rollback_sql.read_text(encoding="utf-8") + " ", encoding="utf-8")  # one byte
    edited = load_project(world.project_dir)
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
    refused = world.refused()  # the commit of the edited spec on disk: the kernel refuses it, nothing applied
    assert [g.gate for g in refused.failed] == ["rehearsal", "approvals"] and not world.ruleset_exists()


def test_rollback_approvals_bind_the_rollback_subject(world: World) -> None:
    step = world.step("SB-12")
    alice, opal = world.connect("alice"), world.connect("opal")
    with pytest.raises(SpecError, match="SB-12 is not committed"):
        approve(alice, world.project, step, verdict="approve", expires_in=DAY, rollback=True)
    world.rehearse()
    for_commit = approve(alice, world.project, step, verdict="approve", expires_in=DAY)
    committed = world.commit()
    assert committed.ok and committed.decision.gate("approvals").evidence == (for_commit.approval_id,)
    # the commit is refused now: already committed (decisively), and its approval is spent
    record = judge(opal, world.project, step)
    assert record.first_failed is not None and record.first_failed.gate == "state" and record.first_failed.decisive
    assert record.first_failed.command == "gcos rollback SB-12"
    # the commit's approval is not the rollback's
    refused = world.refused(action="rollback")
    assert [g.gate for g in refused.failed] == ["approvals"] and world.ruleset_exists()
    receipt = approve(alice, world.project, step, verdict="approve", expires_in=DAY, rollback=True)
    assert receipt.subject == "rollback" and receipt.bound_hash == rollback_subject_hash(step.hash)
    assert receipt.spec_hash == step.hash and receipt.rehearsal_seq is None
    rolled: Any = commands.rollback(world.target("opal"), world.project_dir, "SB-12")
    assert rolled.ok and not world.ruleset_exists()
    decision: PolicyDecisionRecord = rolled.decision
    assert decision.gate("approvals").evidence == (receipt.approval_id,)
    assert f"is committed (seq {committed.ledger_seq})" in decision.gate("state").reason


def test_the_gates_refuse_tables_that_disagree_with_the_ledger(world: World) -> None:
    step = world.step("SB-12")
    world.rehearse()
    approve(world.connect("alice"), world.project, step, verdict="approve", expires_in=DAY)
    # a superuser forges an approval row that has no ledger record of its own
    world.admin.execute(
        "INSERT INTO gcos.os_proposal_approvals (step_id, spec_hash, plan_hash, verdict, approver_oid, approver, "
        "approver_role, approver_roles, system_identifier, database_name, expires_at, created_at, ledger_seq) "
        "SELECT step_id, spec_hash, plan_hash, verdict, approver_oid, approver, approver_role, approver_roles, "
        "system_identifier, database_name, expires_at, created_at, 1 FROM gcos.os_proposal_approvals"
    )
    pattern = r"approvals of SB-12 in gcos\.os_proposal_approvals and in the ledger"
    with pytest.raises(LedgerBroken, match=pattern):
        judge(world.connect("opal"), world.project, step)
    with pytest.raises(LedgerBroken, match=pattern) as broken:  # the kernel's commit: exit 7, nothing applied
        world.commit()
    assert broken.value.exit_code == 7
    assert world.kinds()[-1] == "approval" and not world.ruleset_exists()


# --------------------------------------------------------------------------- TOCTOU: the commit's lock


def _wait_for_lock_wait(admin: psycopg.Connection[Any], role: str) -> None:
    """Block until a backend of `role` waits for a lock (synchronisation, not a timing assumption)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        row = admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = %s AND wait_event_type = 'Lock'", (role,)
        ).fetchone()
        if row is not None and row[0] > 0:
            return
        admin.execute("SELECT pg_sleep(0.005)")
    raise AssertionError(f"no backend of {role} ever waited for a lock")


def _commit_in_background(world: World, result: dict[str, Any]) -> threading.Thread:
    """Opal's kernel commit of SB-12 in a thread (it will wait for a lock); its result or error in `result`."""

    def run() -> None:
        try:
            result["done"] = world.commit(settings=SessionSettings(lock_timeout="60s"))
        except Exception as exc:  # handed to the main thread
            result["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_no_client_locks_the_approvals(world: World) -> None:
    """Only the kernel locks a step's approval rows (018): an operator or approver holding them in an open
    transaction would only delay revocations."""
    for who in ("opal", "alice"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            world.connect(who).execute("SELECT * FROM gcos.lock_approvals('SB-12')")


def test_a_revocation_waits_for_a_kernel_commit_that_holds_the_approvals(world: World) -> None:
    """The kernel locks the approvals before it measures the world: a revocation waits for the commit."""
    world.rehearse()
    receipt = approve(world.connect("alice"), world.project, world.step("SB-12"), verdict="approve", expires_in=DAY)
    bob = world.connect("bob", options="-c lock_timeout=200ms")
    result: dict[str, Any] = {}
    with psycopg.connect(world.dsn, autocommit=True) as holder:
        with holder.transaction():  # holds the commit after it locked the approvals: re-verify reads this table
            holder.execute("LOCK TABLE public.evolution_snapshots IN ACCESS EXCLUSIVE MODE")
            thread = _commit_in_background(world, result)
            _wait_for_lock_wait(world.admin, world.roles["opal"].name)
            with pytest.raises(DatabaseUnavailable, match="retry"):
                revoke(bob, receipt.approval_id, "too late")  # waits for the commit, here until lock_timeout
        thread.join(60)
    assert "error" not in result, result.get("error")
    assert result["done"].ok and result["done"].decision.gate("approvals").evidence == (receipt.approval_id,)
    revoke(bob, receipt.approval_id, "after the commit")  # once the commit ended, the revocation goes through
    assert world.kinds()[-3:] == ["policy_decision", "commit", "approval_revocation"]


def test_a_revocation_that_commits_first_is_never_ignored(world: World) -> None:
    world.rehearse()
    receipt = approve(world.connect("alice"), world.project, world.step("SB-12"), verdict="approve", expires_in=DAY)
    bob = world.connect("bob")
    result: dict[str, Any] = {}
    with bob.transaction():
        revoke(bob, receipt.approval_id, "withdrawn")
        thread = _commit_in_background(world, result)  # waits for the revocation's row lock
        _wait_for_lock_wait(world.admin, world.roles["opal"].name)
    thread.join(60)
    error = result.get("error")
    assert isinstance(error, GateRefused), result
    decision = decision_of(error.details["decision"])  # type: ignore[index]
    assert [g.gate for g in decision.failed] == ["approvals"] and decision.gate("approvals").evidence == ()
    assert decision.gate("approvals").reason.endswith("was revoked")
    assert world.kinds()[-2:] == ["approval_revocation", "commit_refused"] and not world.ruleset_exists()
