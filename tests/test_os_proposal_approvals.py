"""One `os_proposal_approvals` (issue 10 item 2; seed 002 §70.0 "M-1 (os_proposal_approvals>0, named sovereign
approval for THAT step)", §70.1 step 5 "os_proposal_approvals matches the recorded approvals").

gcos records approvals in gcos.os_proposal_approvals through `gcos approve`; the name the seed reads,
public.os_proposal_approvals, is a view of the approvals valid now (what commit gate 5 counts). On the adopted
reference world, as real roles: it reads 0 for a step before approval, > 0 after a sovereign's, 0 again after a
revocation, an expiry or a spec edit; no ordinary role writes it; step 5's check holds after steps 1-4 are
approved and committed, and fails once a superuser forges an approval row."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import MakeRole, Role
from psycopg import errors as pg_errors

from gcos import commands, gates, ledger, registry
from gcos.approvals import approve, revoke
from gcos.errors import ReverifyMismatch
from gcos.spec import Project, load_project
from gcos.target import Target

DAY = timedelta(hours=24)
CHAIN = ("SB-12", "SB-13", "SB-10", "SB-11")
STEP5_CHECK = "os_proposal_approvals matches the recorded approvals (steps 1-4 each > 0, the ledger's exactly)"
PEOPLE: dict[str, tuple[str, tuple[str, ...]]] = {  # hint -> (principal kind, gcos roles)
    "alice": ("human", ("sovereign",)),
    "carol": ("human", ("sovereign",)),
    "bob": ("human", ("council",)),
    "opal": ("human", ("operator",)),  # commits
    "rita": ("human", ("operator",)),  # rehearses
    "aggie": ("agent", ("operator",)),
    "audrey": ("human", ("auditor",)),
}


@dataclass
class World:
    admin: psycopg.Connection[Any]
    roles: dict[str, Role]
    project_dir: Path
    project: Project
    opened: list[psycopg.Connection[Any]]

    def connect(self, who: str) -> psycopg.Connection[Any]:
        conn = psycopg.connect(self.roles[who].dsn, autocommit=True)
        self.opened.append(conn)
        return conn

    def target(self, who: str) -> Target:
        return Target(self.roles[who].dsn, "--dsn")

    def reload(self) -> None:
        self.project = load_project(self.project_dir)

    def rehearse(self, ref: str, who: str = "rita") -> None:
        assert commands.rehearse(self.target(who), self.project_dir, ref).ok

    def approve(self, ref: str, who: str = "alice", expires_in: timedelta = DAY) -> int:
        step = self.project.step(ref)
        receipt = approve(self.connect(who), self.project, step, verdict="approve", expires_in=expires_in)
        return receipt.approval_id

    def listed(self, ref: str, who: str = "opal") -> list[tuple[Any, ...]]:
        """What `who` reads in public.os_proposal_approvals for `ref`: (approval_id, approver, spec_hash, plan_hash)."""
        return (
            self.connect(who)
            .execute(
                "SELECT approval_id, approver, spec_hash, plan_hash FROM public.os_proposal_approvals "
                "WHERE step_id = %s ORDER BY approval_id",
                (ref,),
            )
            .fetchall()
        )

    def gate5_allows(self, ref: str) -> bool:
        step = self.project.step(ref)
        decision = gates.explain(self.connect("opal"), step, self.project.plan_of(ref), trace_id=ledger.new_trace_id())
        return decision.gate("approvals").allow


@pytest.fixture
def world(world_dsn: str, gcos_adopted: None, world_role: MakeRole, project_dir: Path) -> Iterator[World]:
    """The adopted reference world with the PEOPLE as principals of this database, every spec registered."""
    admin = psycopg.connect(world_dsn, autocommit=True)
    roles = {hint: world_role(hint, kind=kind, roles=rs, grant=rs) for hint, (kind, rs) in PEOPLE.items()}
    w = World(admin, roles, project_dir, load_project(project_dir), [admin])
    for step in w.project.steps.values():
        registry.register_spec(admin, step)
    for plan in w.project.plans.values():
        registry.register_plan(admin, plan)
    try:
        yield w
    finally:
        for conn in w.opened:
            conn.close()


def wait_past(admin: psycopg.Connection[Any], approval_id: int) -> None:
    """Poll the database clock (bounded) until that approval's expires_at is not after it."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        row = admin.execute(
            "SELECT clock_timestamp() >= expires_at FROM gcos.os_proposal_approvals WHERE id = %s", (approval_id,)
        ).fetchone()
        if row and row[0]:
            return
        admin.execute("SELECT pg_sleep(0.05)")
    raise AssertionError("gave up waiting for the approval to expire")


def test_the_seed_name_is_a_view_of_gcos_approvals(world: World) -> None:
    row = world.admin.execute(
        "SELECT c.relkind::text, pg_get_userbyid(c.relowner) FROM pg_class c "
        "WHERE c.oid = 'public.os_proposal_approvals'::regclass"
    ).fetchone()
    assert row == ("v", "gcos_kernel")
    assert world.admin.execute(
        "SELECT count(*) FROM pg_tables WHERE tablename = 'os_proposal_approvals'"
    ).fetchone() == (1,)  # gcos.os_proposal_approvals, the one table
    with pytest.raises(pg_errors.InsufficientPrivilege, match="approve with gcos approve"):  # even a superuser
        world.admin.execute("INSERT INTO public.os_proposal_approvals (approval_id, step_id) VALUES (1, 'SB-12')")


def test_reads_positive_exactly_while_a_valid_approval_exists_revocation(world: World) -> None:
    world.rehearse("SB-12")
    for who in ("opal", "alice", "bob", "audrey"):
        assert world.listed("SB-12", who) == []
    assert not world.gate5_allows("SB-12")
    step = world.project.step("SB-12")
    approval = world.approve("SB-12")
    plan = world.project.plan_of("SB-12")
    assert plan is not None
    for who in ("opal", "alice", "bob", "audrey"):
        assert world.listed("SB-12", who) == [(approval, "Alice", step.hash, plan.hash)]
    assert world.listed("SB-13") == []  # THAT step only
    assert world.gate5_allows("SB-12")
    revoke(world.connect("bob"), approval, "withdrawn")
    assert world.listed("SB-12") == []
    assert not world.gate5_allows("SB-12")


def test_reads_zero_again_once_the_approval_expires(world: World) -> None:
    world.rehearse("SB-12")
    approval = world.approve("SB-12", expires_in=timedelta(seconds=1))
    assert [r[0] for r in world.listed("SB-12")] == [approval]
    wait_past(world.admin, approval)
    assert world.listed("SB-12") == []
    assert not world.gate5_allows("SB-12")


def test_reads_zero_again_after_a_spec_edit(world: World) -> None:
    world.rehearse("SB-12")
    approval = world.approve("SB-12")
    assert [r[0] for r in world.listed("SB-12")] == [approval]
    path = world.project.step("SB-12").path
    path.write_text(path.read_text(encoding="utf-8").replace("title: ", "title: (edited) ", 1), encoding="utf-8")
    world.reload()
    world.rehearse("SB-12")  # registers the edited spec: the approval was of the old one
    assert world.listed("SB-12") == []
    assert not world.gate5_allows("SB-12")
    again = world.approve("SB-12")
    assert [r[0] for r in world.listed("SB-12")] == [again]


def test_no_ordinary_role_writes_it(world: World) -> None:
    """One world for the four roles (an operator, a sovereign, a council member, an agent): each is refused every
    write, and the one approval stays listed after all of them tried."""
    world.rehearse("SB-12")
    approval = world.approve("SB-12")
    for who in ("opal", "alice", "bob", "aggie"):
        conn = world.connect(who)
        for statement in (
            "INSERT INTO public.os_proposal_approvals (approval_id, step_id) VALUES (999, 'SB-12')",
            "UPDATE public.os_proposal_approvals SET note = 'forged'",
            "DELETE FROM public.os_proposal_approvals",
            "INSERT INTO gcos.os_proposal_approvals (step_id) VALUES ('SB-12')",
            "UPDATE gcos.os_proposal_approvals SET note = 'forged'",
            "CREATE OR REPLACE VIEW public.os_proposal_approvals AS SELECT 1 AS approval_id",
            "DROP VIEW public.os_proposal_approvals",
        ):
            with pytest.raises(pg_errors.InsufficientPrivilege):
                conn.execute(statement)
        assert [r[0] for r in world.listed("SB-12")] == [approval], who


def story(world: World) -> None:
    """Steps 1-4 as the demo tells them: Rita rehearses, Alice (a sovereign) approves, Opal commits."""
    for ref in CHAIN:
        world.rehearse(ref)
        world.approve(ref)
        assert commands.commit(world.target("opal"), world.project_dir, ref).ok


def test_step5_check_holds_after_steps_1_to_4_and_fails_on_a_forged_row_or_a_revoked_approval(world: World) -> None:
    """One story of steps 1-4 (the costly part: four kernel commits on the 1M-row world) for both ways the check
    fails, each counted apart by the check (its value is the number of steps 1-4 that fail it): a forged approval
    row (SB-12: 1), then a revoked approval on top of it (SB-10 too: 2)."""
    story(world)
    for ref in CHAIN:  # the approvals that authorised each commit stay listed
        assert len(world.listed(ref)) == 1
    assert_step5(world, failing=0)
    # a superuser forges an approval of SB-12 by Carol, who never approved: bound like the real one
    world.admin.execute(
        "INSERT INTO gcos.os_proposal_approvals (step_id, spec_hash, plan_hash, verdict, approver_oid, approver, "
        "approver_role, approver_roles, system_identifier, database_name, database_oid, expires_at, created_at, "
        "ledger_seq) "
        "SELECT a.step_id, a.spec_hash, a.plan_hash, a.verdict, r.oid, 'Carol', r.rolname, a.approver_roles, "
        "a.system_identifier, a.database_name, a.database_oid, a.expires_at, a.created_at, 1 "
        "FROM gcos.os_proposal_approvals a, pg_roles r WHERE a.step_id = 'SB-12' AND r.rolname = %s",
        (world.roles["carol"].name,),
    )
    assert len(world.listed("SB-12")) == 2  # the view shows it: a valid-looking row with no ledger record
    assert_step5(world, failing=1)  # SB-12

    (approval,) = (r[0] for r in world.listed("SB-10"))
    revoke(world.connect("bob"), approval, "withdrawn after the commit")
    assert world.listed("SB-10") == []
    assert_step5(world, failing=2)  # SB-12 and now SB-10, which has no valid approval


def assert_step5(world: World, *, failing: int) -> None:
    """VERIFY-1-4 rehearsed by the kernel: passes, or fails on the step-5 check alone with `failing` steps."""
    if not failing:
        passed = commands.rehearse(world.target("rita"), world.project_dir, "VERIFY-1-4")  # the kernel runs the checks
        assert passed.ok and [r.ok for r in passed.reverify if r.name == STEP5_CHECK] == [True]
        return
    with pytest.raises(ReverifyMismatch, match="os_proposal_approvals matches the recorded approvals") as mismatch:
        world.rehearse("VERIFY-1-4")
    failed = [(r.name, r.actual) for r in mismatch.value.details.reverify if not r.ok]  # type: ignore[union-attr]
    assert failed == [(STEP5_CHECK, failing)]
