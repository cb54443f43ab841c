"""Step states as a projection of the ledger (CONTRACT.md "Step states": planned → rehearsed → approved →
committed → rolled_back, never stored; seed 003 "append-only truth with rebuildable projections").

First from constructed ledger entries (every transition and every way back; "approved" is gate 5's evidence,
given, since the approval rules are the database's), then from a real ledger on an adopted world, written by the
kernel (rehearsals, commits, rollbacks) and through the aperture by real roles (approvals, revocations), with
gate 5 as the kernel explains it to `gcos status` (``gcos.explain_gates``)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO
from test_gates import Desk, open_desk

from gcos import commands, ledger
from gcos.domain import StepState
from gcos.gates import rollback_subject_hash, utc_text
from gcos.ledger import LedgerEntry
from gcos.spec import Project, load_project
from gcos.state import project_states

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(hours=24)
SYSID, DB = "7391234567890123456", "world"
ALICE, BOB, RITA, OPAL, AGGIE = 1001, 1002, 2002, 2001, 3001
SCHEMA = "5c" * 32


@pytest.fixture(scope="module")
def project() -> Project:
    return load_project(REPO)


class Ledger:
    """Builds ledger entries the way the database writes them (record shape of gcos._ledger_write)."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.entries: list[LedgerEntry] = []
        self.approval_ids = 0
        self.people = {
            ALICE: ("Alice", "human", ["sovereign"]),
            BOB: ("Bob", "human", ["council"]),
            RITA: ("Rita", "human", ["operator"]),
            OPAL: ("Opal", "human", ["operator"]),
            AGGIE: ("Aggie", "agent", ["sovereign"]),
        }
        for oid in self.people:
            self.principal(oid)

    def add(
        self,
        kind: str,
        payload: dict[str, Any],
        *,
        actor: int,
        step_id: str | None = None,
        spec_hash: str | None = None,
    ) -> int:
        seq = len(self.entries) + 1
        name, person_kind, _ = self.people[actor]
        record = {
            "format_version": 1,
            "seq": seq,
            "prev_hash": "0" * 64,
            "recorded_at": utc_text(NOW),
            "trace_id": "1" * 32,
            "span_id": "2" * 16,
            "actor": {"principal": name, "role": name.lower(), "role_oid": actor, "kind": person_kind},
            "kind": kind,
            "step_id": step_id,
            "spec_hash": spec_hash,
            "payload": payload,
        }
        self.entries.append(LedgerEntry(seq, "0" * 64, f"{seq:064x}", "{}", record))
        return seq

    def principal(self, oid: int, **changes: Any) -> int:
        name, kind, roles = self.people[oid]
        kind = changes.get("kind", kind)
        self.people[oid] = (name, kind, roles)
        return self.add(
            "principal",
            {
                "change": "added",
                "role": name.lower(),
                "role_oid": oid,
                "display_name": name,
                "kind": kind,
                "roles": roles,
            },
            actor=oid,
        )

    def rehearse(self, step: str, *, outcome: str = "passed", spec: str | None = None, actor: int = RITA) -> int:
        s = self.project.step(step)
        plan = self.project.plan_of(s.id)
        assert plan is not None
        return self.add(
            "rehearsal",
            {
                "outcome": outcome,
                "plan_hash": plan.hash,
                "run_id": uuid.uuid4().hex,
                "fingerprints": {"entry": {"schema_hash": SCHEMA}},
            },
            actor=actor,
            step_id=s.id,
            spec_hash=spec or s.hash,
        )

    def approve(
        self,
        step: str,
        *,
        by: int = ALICE,
        verdict: str = "approve",
        expires: datetime = LATER,
        rollback: bool = False,
        database: str = DB,
    ) -> int:
        s = self.project.step(step)
        plan = self.project.plan_of(s.id)
        assert plan is not None
        self.approval_ids += 1
        self.add(
            "approval",
            {
                "approval_id": self.approval_ids,
                "plan_hash": plan.hash,
                "verdict": verdict,
                "expires_at": utc_text(expires),
                "note": None,
                "rehearsal_seq": None,
                "approver_roles": self.people[by][2],
                "target": {"system_identifier": SYSID, "database": database},
            },
            actor=by,
            step_id=s.id,
            spec_hash=rollback_subject_hash(s.hash) if rollback else s.hash,
        )
        return self.approval_ids

    def revoke(self, approval_id: int, *, by: int = BOB) -> int:
        return self.add(
            "approval_revocation", {"revocation_id": approval_id, "approval_id": approval_id, "reason": None}, actor=by
        )

    def allow(self, step: str) -> int:
        """The allowing policy decision an applied commit or rollback must name (same step, same trace)."""
        s = self.project.step(step)
        return self.add("policy_decision", {"allow": True}, actor=OPAL, step_id=s.id, spec_hash=s.hash)

    def commit(self, step: str, *, outcome: str = "applied", allowed: bool = True) -> int:
        s = self.project.step(step)
        decision = self.allow(step) if allowed else None
        return self.add(
            "commit",
            {
                "run_id": uuid.uuid4().hex,
                "outcome": outcome,
                "fingerprint_after": {"hash": "a" * 64, "schema_hash": "b" * 64},
                "policy_decision_seq": decision,
            },
            actor=OPAL,
            step_id=s.id,
            spec_hash=s.hash,
        )

    def rollback(self, step: str, of: int) -> int:
        s = self.project.step(step)
        decision = self.allow(step)
        return self.add(
            "rollback",
            {"run_id": uuid.uuid4().hex, "outcome": "applied", "of_commit_seq": of, "policy_decision_seq": decision},
            actor=OPAL,
            step_id=s.id,
            spec_hash=s.hash,
        )

    def state(self, step: str, *, approved: dict[str, tuple[int, ...]] | None = None) -> str:
        return project_states(self.entries, self.project, approved=approved)[step].state


@pytest.fixture
def book(project: Project) -> Ledger:
    return Ledger(project)


def test_an_empty_ledger_is_all_planned(project: Project) -> None:
    states = project_states([], project)
    assert list(states) == list(project.steps)
    assert {s.state for s in states.values()} == {"planned"}
    s = states["SB-12"]
    assert (s.spec_hash_current, s.last_rehearsal_seq, s.commit_seq, s.detail) == (
        project.step("SB-12").hash,
        None,
        None,
        "SB-12 has not been rehearsed",
    )


def test_planned_rehearsed_approved_committed_rolled_back(book: Ledger) -> None:
    assert book.state("SB-12") == "planned"
    r = book.rehearse("SB-12")
    assert book.state("SB-12") == "rehearsed"
    a = book.approve("SB-12")
    assert book.state("SB-12") == "rehearsed"  # an approval record alone is no verdict: gate 5 decides
    states = project_states(book.entries, book.project, approved={"SB-12": (a,)})
    assert states["SB-12"].state == "approved" and states["SB-12"].approval_ids == (a,)
    assert states["SB-12"].last_rehearsal_seq == r and states["SB-13"].state == "planned"
    book.add("policy_decision", {"allow": True}, actor=OPAL, step_id="SB-12")
    c = book.commit("SB-12")
    s = project_states(book.entries, book.project, approved={"SB-12": (a,)})["SB-12"]
    assert (s.state, s.commit_seq, s.committed_spec_hash) == ("committed", c, book.project.step("SB-12").hash)
    book.add("commit_refused", {"run_id": "x", "reason": "already committed"}, actor=OPAL, step_id="SB-12")
    assert book.state("SB-12") == "committed"  # refusals are events, not states
    rb = book.rollback("SB-12", c)
    s = project_states(book.entries, book.project)["SB-12"]
    assert (s.state, s.rollback_seq, s.epoch_seq) == ("rolled_back", rb, rb)


def test_gate_5_evidence_approves_only_a_rehearsed_step(book: Ledger) -> None:
    approved = {"SB-12": (1,)}
    assert book.state("SB-12", approved=approved) == "planned"
    book.rehearse("SB-12", outcome="stopped")
    assert book.state("SB-12", approved=approved) == "planned"
    book.rehearse("SB-12")
    assert book.state("SB-12", approved=approved) == "approved"
    c = book.commit("SB-12")
    assert book.state("SB-12", approved=approved) == "committed"
    book.rollback("SB-12", c)
    assert book.state("SB-12", approved=approved) == "rolled_back"  # its rehearsal is spent


def test_a_spec_edit_or_a_failed_rehearsal_returns_it_to_planned_and_a_new_rehearsal_to_rehearsed(
    book: Ledger,
) -> None:
    book.rehearse("SB-12", spec=hashlib.sha256(b"the spec before a one-byte edit").hexdigest())
    s = project_states(book.entries, book.project)["SB-12"]
    assert s.state == "planned" and "is of another spec" in s.detail
    book.rehearse("SB-12")
    assert book.state("SB-12") == "rehearsed"
    book.rehearse("SB-12", outcome="residue")
    s = project_states(book.entries, book.project)["SB-12"]
    assert s.state == "planned" and s.detail == (
        f"SB-12 needs a rehearsal: its latest rehearsal (seq {s.last_rehearsal_seq}) did not pass (residue)"
    )


def test_after_a_rollback_old_rehearsals_are_spent(book: Ledger) -> None:
    book.rehearse("SB-12")
    c = book.commit("SB-12")
    assert book.state("SB-12") == "committed"
    book.rollback("SB-12", c)
    assert book.state("SB-12") == "rolled_back"
    book.rehearse("SB-12")
    assert book.state("SB-12") == "rehearsed"
    c2 = book.commit("SB-12")
    s = project_states(book.entries, book.project)["SB-12"]
    assert (s.state, s.commit_seq) == ("committed", c2)


def test_a_commit_that_was_not_applied_is_not_a_commit(book: Ledger) -> None:
    book.rehearse("SB-12")
    book.commit("SB-12", outcome="in_doubt")
    book.add("stop", {"run_id": "x", "reason": "stop condition held"}, actor=OPAL, step_id="SB-12")
    assert book.state("SB-12") == "rehearsed"


# --------------------------------------------------------------------------- a real ledger, written by the kernel


@pytest.fixture
def desk(world_dsn: str, project_dir: Path, gcos_adopted: None) -> Iterator[Desk]:
    yield from open_desk(world_dsn, project_dir)


def test_states_from_a_ledger_the_kernel_wrote(desk: Desk) -> None:
    """`gcos status` on an adopted world: the kernel rehearses, commits and rolls back; "approved" is gate 5 as
    the kernel explains it (who approves, the verdict, a revocation, a later word of the same person, an expiry,
    the spec the approval is bound to); every state is read from the ledger alone."""

    def state(step: str = "SB-12") -> str:
        (s,) = commands.status(desk.target(), desk.project_dir, step).steps
        return str(s.state)

    assert state() == StepState.PLANNED
    desk.rehearse()
    assert state() == StepState.REHEARSED
    desk.approve("alice", expires_in="1s")
    desk.wait_past("os_proposal_approvals")
    assert state() == StepState.REHEARSED  # expired
    first = desk.approve("alice")
    assert state() == StepState.APPROVED
    desk.revoke("bob", first)
    assert state() == StepState.REHEARSED
    desk.approve("bob")  # a council member: SB-12 needs a sovereign
    assert state() == StepState.REHEARSED
    desk.approve("alice")
    assert state() == StepState.APPROVED
    desk.approve("alice", verdict="defer")  # Alice's later word counts
    assert state() == StepState.REHEARSED
    desk.approve("carol")
    assert state() == StepState.APPROVED
    sql_file = desk.project_dir / "rollback" / "sb-12.sql"
    sql_file.write_text(sql_file.read_text(encoding="utf-8") + " ", encoding="utf-8")  # a one-byte spec edit
    assert state() == StepState.PLANNED  # its rehearsal is of another spec
    desk.rehearse()
    assert state() == StepState.REHEARSED  # Carol approved the spec before the edit
    desk.approve("carol")
    assert state() == StepState.APPROVED
    assert desk.commit().ok
    states = {s.id: s.state for s in commands.status(desk.target(), desk.project_dir).steps}
    assert states == {**{s: StepState.PLANNED for s in desk.project.steps}, "SB-12": StepState.COMMITTED}
    desk.approve("alice", rollback=True)
    assert desk.rollback().ok
    assert state() == StepState.ROLLED_BACK
    assert ledger.verify(desk.admin).ok


def test_a_commit_record_without_its_allowing_policy_decision_never_counts(book: Ledger) -> None:
    """Review finding: a forged "commit" record must not make a step look committed."""
    book.commit("SB-12", allowed=False)
    assert project_states(book.entries, book.project)["SB-12"].state != "committed"
    book.commit("SB-12")
    assert project_states(book.entries, book.project)["SB-12"].state == "committed"
