"""The seven commit gates, decided in one place: ``gcos.evaluate_gates`` (issue 5 items 2, 4 and 7; issue 9 item 3;
CONTRACT.md "Gates that COMMIT must pass"; seed 000 P4 "expiry_at <= now => expired"; seed 002 §70.0 "No step
flips to GO by self-approval"; seed 004 §§2-5 "human only, >=2 distinct human signers, verdicts, bound to the
artifact hash").

Every scenario runs on a real, empty database with gcos installed and real roles: rehearsals and commits are
ledger records as rehearsal.py and apply.py write them, approvals and decisions go through the aperture as
their principals, and the measured world (schema fingerprint, re-verify, global stops) is given as a commit
would measure it. Verdicts are asserted as gate ids, allow/known/decisive flags, evidence and commands."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import MakeRole, Role
from psycopg import sql

from gcos import approvals, gates, ledger
from gcos.canonical import content_hash
from gcos.errors import SpecError, translated
from gcos.gates import PolicyDecisionRecord
from gcos.principals import add_principal
from gcos.spec import Project, load_project

TRACE = "0123456789abcdef0123456789abcdef"
SCHEMA, AFTER = "5c" * 32, "af" * 32  # the schema at the rehearsals' entry, and after a commit
DAY = timedelta(hours=24)
PEOPLE = {  # hint -> (kind, gcos roles)
    "alice": ("human", ("sovereign",)),
    "carol": ("human", ("sovereign",)),
    "bob": ("human", ("council",)),
    "rita": ("human", ("operator",)),  # rehearses
    "opal": ("human", ("operator",)),  # commits
    "sam": ("human", ("operator", "sovereign")),  # may approve and commit, never his own
    "aggie": ("agent", ("sovereign",)),
}


@dataclass
class Book:
    """This test's database (superuser connection), project copy and principals (made on first use)."""

    conn: psycopg.Connection[Any]
    make_role: MakeRole
    project_dir: Path
    people: dict[str, Role] = field(default_factory=dict)

    @property
    def project(self) -> Project:
        return load_project(self.project_dir)

    def person(self, who: str) -> Role:
        if who not in self.people:
            kind, roles = PEOPLE.get(who, ("human", ("sovereign",)))
            self.people[who] = self.make_role(who, kind=kind, roles=roles, grant=roles)
        return self.people[who]

    def as_(self, who: str) -> psycopg.Connection[Any]:
        return self.person(who).connect()

    def rehearse(self, step_id: str = "SB-12", *, outcome: str = "passed", by: str = "rita", **kw: Any) -> int:
        step = self.project.step(step_id)
        plan = self.project.plan_of(step.id)
        assert plan is not None
        payload = {
            "outcome": outcome,
            "plan_hash": kw.get("plan_hash", plan.hash),
            "run_id": uuid.uuid4().hex,
            "fingerprints": {"entry": {"schema_hash": kw.get("schema", SCHEMA)}},
        }
        with self.as_(by) as conn:
            return ledger.append(conn, "rehearsal", payload, step_id=step.id, spec_hash=kw.get("spec", step.hash)).seq

    def applied(self, step_id: str, kind: str = "commit", **payload: Any) -> int:
        """An applied commit (or rollback) record with its allowing policy decision, as apply.py writes them."""
        step = self.project.step(step_id)
        gates.register(self.conn, step, self.project.plan_of(step.id))
        trace = ledger.new_trace_id()
        allowing = ledger.append(self.conn, "policy_decision", {"allow": True}, step_id=step.id, trace_id=trace)
        body = {"run_id": uuid.uuid4().hex, "outcome": "applied", "policy_decision_seq": allowing.seq, **payload}
        if kind == "commit":
            body.setdefault("fingerprint_after", {"schema_hash": AFTER})
        return ledger.append(self.conn, kind, body, step_id=step.id, spec_hash=step.hash, trace_id=trace).seq

    def approve(self, who: str, step_id: str = "SB-12", **kw: Any) -> int:
        project = self.project
        with self.as_(who) as conn:
            kw.setdefault("verdict", "approve")
            kw["expires_in"] = approvals.parse_duration(kw.get("expires_in", "24h"))
            return approvals.approve(conn, project, project.step(step_id), **kw).approval_id

    def decide(self, who: str, name: str, *, verdict: str = "approve", expires_in: str = "24h") -> int:
        with self.as_(who) as conn:
            return approvals.decide(
                conn, name, verdict=verdict, expires_in=approvals.parse_duration(expires_in)
            ).decision_id

    def judge(
        self,
        step_id: str = "SB-12",
        action: str = "commit",
        *,
        who: str = "opal",
        schema: str | None = SCHEMA,
        reverify_ok: bool | None = True,
        held: tuple[str, ...] = (),
        stops: int | None = None,
        in_plan: bool = True,
    ) -> PolicyDecisionRecord:
        """The gates of `action` on `step_id` for `who`, on the world as measured: `schema` now (None: not
        measured), re-verify holding or not (None: not run), the global stops named in `held` holding (only the
        first `stops` of them measured, when given)."""
        project = self.project
        step = project.step(step_id)
        plan = project.plan_of(step.id) if in_plan else None
        gates.register(self.conn, step, project.plan_of(step.id))
        checks = step.document.get("reverify") or []
        home = project.plan_of(step.id)
        items = [s for s in (home.global_stop if home else ()) if s.kind != "max_new_tables"]
        measured = gates.world(
            schema_hash=schema,
            reverify=None
            if reverify_ok is None
            else [{"name": c["name"], "expected": c["expect"], "actual": None, "ok": reverify_ok} for c in checks],
            global_stops=[{"name": s.name, "holds": s.name in held, "detail": "measured"} for s in items][:stops],
        )
        with self.as_(who) as conn:
            return gates.evaluate(conn, step, plan, action=action, measured=measured, trace_id=TRACE)

    def wait_past(self, table: str) -> None:
        deadline = time.monotonic() + 30
        query = sql.SQL("SELECT clock_timestamp() > (SELECT max(expires_at) FROM {})").format(
            sql.Identifier("gcos", table)
        )
        while time.monotonic() < deadline:
            row = self.conn.execute(query).fetchone()
            if row and row[0]:
                return
            time.sleep(0.05)
        raise AssertionError(f"gave up waiting for the {table} to expire")


@pytest.fixture
def book(conn: psycopg.Connection[Any], make_role: MakeRole, project_dir: Path) -> Book:
    return Book(conn, make_role, project_dir)


def failed(d: PolicyDecisionRecord) -> list[str]:
    return [g.gate for g in d.failed]


# --------------------------------------------------------------------------- the record


def test_all_gates_hold_and_the_record_is_the_ledger_payload(book: Book) -> None:
    seq = book.rehearse()
    alice = book.approve("alice")
    d = book.judge()
    assert d.allow and d.refusal_sentence() == "" and d.first_failed is None
    assert [g.number for g in d.gates] == list(range(1, 8)) and [g.gate for g in d.gates] == list(gates.GATE_NAMES)
    assert d.gate("approvals").evidence == (alice,) and d.gate("rehearsal").evidence == (seq,)
    payload = d.to_payload()
    ledger.check_payload(payload)
    assert payload["allow"] is True and payload["refusal"] is None and payload["failed"] == []
    assert PolicyDecisionRecord.from_payload(payload) == d
    ledger.append(book.conn, "policy_decision", payload, step_id="SB-12", spec_hash=d.spec_hash, trace_id=TRACE)


def test_the_refusal_is_the_first_failed_gate_and_a_decisive_one_goes_first(book: Book) -> None:
    book.rehearse()
    stop = "§70.2 #2 law counts moved from 47/5/12"
    d = book.judge(held=(stop,))
    assert failed(d) == ["approvals", "state"] and d.first_failed == d.gate("approvals")
    assert d.refusal_sentence().startswith("No approval for SB-12 bound to spec")
    assert d.to_payload()["refusal"] == d.refusal_sentence()
    assert d.gate("approvals").command == "gcos approve SB-12 --verdict approve --expires-in 24h"
    assert d.gate("state").command == "gcos rehearse SB-12" and stop in d.gate("state").reason
    commit = book.applied("SB-12")
    d = book.judge()
    assert failed(d) == ["rehearsal", "approvals", "state"]  # committed: its rehearsal is spent too
    assert d.first_failed == d.gate("state") and d.gate("state").decisive
    assert d.gate("state").command == "gcos rollback SB-12" and f"commit seq {commit}" in d.gate("state").reason


def test_bad_input_is_refused(book: Book) -> None:
    step = book.project.step("SB-12")
    with pytest.raises(ValueError, match="action"):
        gates.evaluate(book.conn, step, None, action="apply", measured={}, trace_id=TRACE)
    with pytest.raises(ValueError, match="trace_id"):
        gates.evaluate(book.conn, step, None, action="commit", measured={}, trace_id="not-a-trace")
    with pytest.raises(SpecError), translated():  # 22023: a measured world that is not an object
        book.conn.execute("SELECT gcos.evaluate_gates(%s, NULL, 'commit', '[]')", (step.hash,))
    assert gates.rollback_subject_hash(step.hash) == content_hash({"rollback_of": step.hash})
    row = book.conn.execute("SELECT gcos.rollback_subject_hash(%s)", (step.hash,)).fetchone()
    assert row == (gates.rollback_subject_hash(step.hash),)
    assert gates.short(step.hash) == step.hash[:12] + "…" and gates.short(None) == "(none)"


# --------------------------------------------------------------------------- gates 1-4, 7


def test_gate1_plan_and_fold_ins(book: Book) -> None:
    d = book.judge(in_plan=False)
    assert not d.gate("spec").allow and d.gate("spec").command == "gcos plan"
    d = book.judge("SB-13")
    assert d.gate("spec").allow and d.gate("spec").reason.endswith("fold-ins declared: F-57-1")
    spec = book.project_dir / "steps" / "02-sb-13.yaml"
    spec.write_text(spec.read_text(encoding="utf-8").replace("fold_ins: [F-57-1]", "fold_ins: []"), encoding="utf-8")
    d = book.judge("SB-13")
    assert not d.gate("spec").allow and d.gate("spec").command == "gcos rehearse SB-13"
    assert "F-57-1" in d.gate("spec").remedy


def test_gate2_dependencies_committed(book: Book) -> None:
    d = book.judge("SB-10")
    assert not d.gate("dependencies").allow and d.gate("dependencies").command == "gcos commit SB-12"
    book.applied("SB-12")
    assert book.judge("SB-10").gate("dependencies").command == "gcos commit SB-13"
    book.applied("SB-13")
    assert book.judge("SB-10").gate("dependencies").allow


def test_gate3_reverify(book: Book) -> None:
    book.rehearse()
    book.approve("alice")
    d = book.judge(reverify_ok=False)
    assert failed(d) == ["reverify"] and d.gate("reverify").known and d.gate("reverify").command == "gcos verify SB-12"
    d = book.judge(reverify_ok=None)
    assert failed(d) == ["reverify"] and not d.gate("reverify").known


def test_gate4_rehearsal_of_this_spec_plan_and_schema(book: Book) -> None:
    def rehearsal_gate(**kw: Any) -> gates.GateResult:
        return book.judge(**kw).gate("rehearsal")

    g = rehearsal_gate()
    assert not g.allow and g.command == "gcos rehearse SB-12" and g.evidence == ()
    book.rehearse(spec="0e" * 32)  # of another spec
    g = rehearsal_gate()
    assert not g.allow and "0e0e0e0e0e0e…" in g.reason and g.command == "gcos rehearse SB-12"
    book.rehearse(outcome="stopped")
    g = rehearsal_gate()
    assert not g.allow and "did not pass" in g.reason and g.command == "gcos rehearse SB-12"
    book.rehearse(plan_hash="1e" * 32)
    assert not rehearsal_gate().allow
    seq = book.rehearse()
    assert rehearsal_gate().allow and rehearsal_gate().evidence == (seq,)
    g = rehearsal_gate(schema="2e" * 32)  # the database changed since the rehearsal
    assert not g.allow and g.known and g.command == "gcos rehearse SB-12"
    g = rehearsal_gate(schema=None)  # not measured: refused, unknown, the rehearsal named
    assert not g.allow and not g.known and g.evidence == (seq,)
    commit = book.applied("SB-12")
    book.applied("SB-12", "rollback", of_commit_seq=commit)
    g = rehearsal_gate()  # rolled back: the rehearsal before it is spent
    assert not g.allow and g.command == "gcos rehearse SB-12"


def test_gate7_global_stops_and_no_recommit(book: Book) -> None:
    book.rehearse()
    book.approve("alice")
    stop = "§70.2 #5 the mutating DOT dot_governance_assignment_apply exists (as a database object)"
    d = book.judge(held=(stop,))
    assert failed(d) == ["state"] and d.gate("state").command == "gcos rehearse SB-12"
    d = book.judge(stops=2)  # fewer results than the plan has stop conditions: unknown, refused
    assert failed(d) == ["state"] and not d.gate("state").known


# --------------------------------------------------------------------------- gate 5: approvals


@pytest.mark.parametrize("verdict", ["reject", "defer", "approve_with_conditions"])
def test_gate5_only_the_verdict_approve_opens_it(book: Book, verdict: str) -> None:
    book.rehearse()
    book.approve("alice", verdict=verdict)
    g = book.judge().gate("approvals")
    assert not g.allow and g.evidence == () and f"has verdict {verdict}" in g.reason


def test_gate5_each_persons_latest_word_counts(book: Book) -> None:
    book.rehearse()
    first = book.approve("alice")
    book.approve("alice", verdict="reject")
    g = book.judge().gate("approvals")
    assert not g.allow and g.evidence == () and f"approval {first} by Alice is superseded" in g.reason
    again = book.approve("alice")
    assert book.judge().gate("approvals").evidence == (again,)


def test_gate5_cross_sign_two_distinct_people(book: Book) -> None:
    book.rehearse("SB-1-2")
    alice = book.approve("alice", "SB-1-2")
    g = book.judge("SB-1-2").gate("approvals")
    assert not g.allow and g.evidence == (alice,) and "other than Alice" in g.remedy
    twin = book.make_role("alice2", grant=("council",))  # a second role of Alice's: one person counts once
    add_principal(book.conn, twin.name, name="  ALICE ", kind="human", roles=("council",), grant=False)
    book.people["alice2"] = twin
    book.approve("alice2", "SB-1-2")
    g = book.judge("SB-1-2").gate("approvals")
    assert not g.allow and g.evidence == (alice,) and "counts once" in g.reason
    bob = book.approve("bob", "SB-1-2")
    assert book.judge("SB-1-2").gate("approvals").evidence == (alice, bob)


def test_gate5_who_never_counts(book: Book) -> None:
    book.rehearse()
    book.approve("bob")  # a council member: SB-12 needs a sovereign
    g = book.judge().gate("approvals")
    assert not g.allow and g.evidence == () and "who holds council, not sovereign" in g.reason
    sams = book.approve("sam")
    g = book.judge(who="sam").gate("approvals")  # Sam committing his own approval
    assert not g.allow and "the committer himself (no self-approval)" in g.reason and "other than Sam" in g.remedy
    assert book.judge().gate("approvals").evidence == (sams,)  # Opal commits: Sam's approval counts
    book.rehearse(by="sam")  # now Sam ran the rehearsal relied on
    g = book.judge().gate("approvals")
    assert not g.allow and "who ran the rehearsal (no self-approval)" in g.reason
    book.rehearse()
    with book.as_("bob") as bob:
        approvals.revoke(bob, sams, "Alice signs instead")
    alice = book.approve("alice")
    assert book.judge().gate("approvals").evidence == (alice,)
    book.conn.execute(sql.SQL("ALTER ROLE {} SUPERUSER").format(sql.Identifier(book.person("alice").name)))
    try:
        g = book.judge().gate("approvals")
        assert alice not in g.evidence and "whose role is a superuser" in g.reason
    finally:
        book.conn.execute(sql.SQL("ALTER ROLE {} NOSUPERUSER").format(sql.Identifier(book.person("alice").name)))
    add_principal(book.conn, book.person("alice").name, name="Alice", kind="agent", roles=("sovereign",), grant=False)
    g = book.judge().gate("approvals")  # reclassified as an agent after approving
    assert alice not in g.evidence and "only humans approve" in g.reason


def test_gate5_an_approval_is_bound_to_spec_plan_subject_time_and_epoch(book: Book) -> None:
    book.rehearse()
    short = book.approve("alice", expires_in="1s")
    book.wait_past("os_proposal_approvals")
    g = book.judge().gate("approvals")
    assert not g.allow and f"approval {short} by Alice expired at" in g.reason
    revoked = book.approve("alice")
    with book.as_("bob") as bob:
        approvals.revoke(bob, revoked, "not yet")
    g = book.judge().gate("approvals")
    assert not g.allow and f"approval {revoked} by Alice was revoked" in g.reason
    carol = book.approve("carol")
    assert book.judge().gate("approvals").evidence == (carol,)
    sql_file = book.project_dir / "rollback" / "sb-12.sql"
    sql_file.write_text(sql_file.read_text(encoding="utf-8") + " ", encoding="utf-8")  # a one-byte edit
    book.rehearse()
    g = book.judge().gate("approvals")
    assert not g.allow and f"approval {carol} by Carol is bound to spec" in g.reason
    edited = book.approve("carol")
    commit = book.applied("SB-12")
    mine = book.approve("alice", rollback=True)
    g = book.judge().gate("approvals")  # committed: the commit's approval is spent, a rollback's never counts
    assert not g.allow and edited not in g.evidence and mine not in g.evidence
    book.applied("SB-12", "rollback", of_commit_seq=commit)
    book.rehearse()
    g = book.judge().gate("approvals")  # rolled back: every approval before it is spent
    assert not g.allow and g.evidence == () and "and is spent" in g.reason


def test_gate5_lists_every_reason_and_caps_the_list(book: Book) -> None:
    book.rehearse()
    for n in range(8):
        book.approve(f"p{n}", verdict="defer")
    g = book.judge().gate("approvals")
    assert not g.allow and g.reason.startswith("SB-12 needs 1 distinct approver and has 0: ")
    assert g.reason.count("has verdict defer") == 5 and g.reason.endswith("; and 3 more")


# --------------------------------------------------------------------------- gate 6: decisions


def test_gate6_decisions(book: Book) -> None:
    def decisions() -> gates.GateResult:
        return book.judge("SB-1-2").gate("decisions")

    g = decisions()
    assert not g.allow and "decision A-8 has never been recorded" in g.reason
    assert g.command == "gcos decide A-8 --verdict approve --expires-in 24h"
    book.decide("carol", "A-8", expires_in="1s")
    book.wait_past("decisions")
    assert "expired at" in decisions().reason
    revoked = book.decide("carol", "A-8")
    with book.as_("bob") as bob:
        approvals.revoke_decision(bob, revoked, "not yet")
    assert "was revoked" in decisions().reason and not decisions().allow
    held = book.decide("carol", "A-8")
    assert decisions().allow and decisions().evidence == (held,)
    book.decide("bob", "A-8", verdict="defer")  # the decision's latest word
    assert not decisions().allow and "stands at defer" in decisions().reason
    again = book.decide("carol", "A-8")
    assert decisions().evidence == (again,)
    book.conn.execute(sql.SQL("ALTER ROLE {} SUPERUSER").format(sql.Identifier(book.person("carol").name)))
    try:
        g = decisions()  # Carol's word no longer counts: the latest word in force is Bob's defer
        assert not g.allow and g.evidence == () and "by Bob" in g.reason
    finally:
        book.conn.execute(sql.SQL("ALTER ROLE {} NOSUPERUSER").format(sql.Identifier(book.person("carol").name)))
    # several decisions: every one must hold; the evidence follows the spec's order
    ids = {name: book.decide("carol", name) for name in ("A-4", "A-3")}
    g = book.judge("BACKFILL-SEED").gate("decisions")
    assert not g.allow and g.command == "gcos decide A-5 --verdict approve --expires-in 24h"
    ids["A-5"] = book.decide("carol", "A-5")
    g = book.judge("BACKFILL-SEED").gate("decisions")
    assert g.allow and g.evidence == (ids["A-5"], ids["A-3"], ids["A-4"])


# --------------------------------------------------------------------------- rollback


def test_rollback_gates(book: Book) -> None:
    def rollback(**kw: Any) -> PolicyDecisionRecord:
        return book.judge(action="rollback", schema=kw.pop("schema", AFTER), **kw)

    d = rollback()
    assert d.first_failed == d.gate("state") and d.gate("state").decisive  # nothing committed to roll back
    assert d.gate("state").command == "gcos status SB-12"
    book.rehearse()
    book.applied("SB-12")
    d = rollback(reverify_ok=False)  # re-verify and decisions describe a commit, not its undoing
    assert failed(d) == ["approvals"] and d.gate("reverify").allow and d.gate("decisions").allow
    assert d.gate("approvals").command == "gcos approve SB-12 --rollback --verdict approve --expires-in 24h"
    book.approve("alice")  # an approval of the commit is no rollback's
    assert failed(rollback()) == ["approvals"]
    sams = book.approve("sam", rollback=True)
    g = rollback(who="sam").gate("approvals")
    assert not g.allow and "the one rolling it back (no self-approval)" in g.reason
    d = rollback()
    assert d.allow and d.gate("approvals").evidence == (sams,)
    d = rollback(schema="2e" * 32)  # the world changed since the commit: its rollback evidence no longer applies
    assert failed(d) == ["rehearsal"] and d.gate("rehearsal").command == "gcos drift"
    book.applied("SB-13")
    book.applied("SB-10")
    d = rollback()
    assert failed(d) == ["dependencies"] and d.gate("dependencies").command == "gcos rollback SB-10"
    sql_file = book.project_dir / "rollback" / "sb-12.sql"
    sql_file.write_text(sql_file.read_text(encoding="utf-8") + " ", encoding="utf-8")  # edited after the commit
    d = rollback()
    assert "spec" in failed(d) and d.gate("spec").command == "gcos rollback SB-12"
    assert gates.short(book.project.step("SB-12").hash) in d.gate("spec").reason
