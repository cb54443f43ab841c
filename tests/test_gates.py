"""The seven commit gates' rules, decided in one place: ``gcos.evaluate_gates`` (issue 5 items 2, 4 and 7; issue 9
item 3; CONTRACT.md "Gates that COMMIT must pass"; seed 000 P4 "expiry_at <= now => expired"; seed 002 §70.0 "No
step flips to GO by self-approval"; seed 004 §§2-5 "human only, >=2 distinct human signers, verdicts, bound to the
artifact hash").

Every scenario runs on a copy of the reference world whose schema public the kernel governs (`gcos_adopted`),
with real LOGIN roles: rehearsals, commits and rollbacks are the KERNEL's (``gcos.commands``), approvals and
decisions go through the aperture as their principals. The rules are then asked directly, in SQL, with a GIVEN
measured world (re-verify results, the global stops, the schema hash: the kernel's own by default), as the acting
role: gate ids, allow/known/decisive flags, evidence and the command to run are asserted. test_gates_sql.py proves
the same gates where the kernel measures and commits; this file is the rules' table."""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import Role
from psycopg import sql
from psycopg.conninfo import make_conninfo

from gcos import commands, gates, ledger
from gcos.canonical import content_hash
from gcos.errors import SpecError, StopHeld, translated
from gcos.gates import PolicyDecisionRecord
from gcos.principals import add_principal
from gcos.spec import Project, load_project
from gcos.target import Target

TRACE = "0123456789abcdef0123456789abcdef"
DOT_REGISTERED = (  # §70.2 #5: a data change that makes a global stop hold (re-verify of SB-12 still holds)
    "INSERT INTO dot_tools (code, domain_code, tier, capability, apr_action) "
    "SELECT 'dot_governance_assignment_apply', code, 'C', 'apply', 'review' FROM dot_domains LIMIT 1"
)
MEASURED = "measured"  # judge(schema=MEASURED): the schema hash the kernel measures now
PEOPLE: dict[str, tuple[str, tuple[str, ...], str]] = {  # hint -> (kind, gcos roles, display name)
    "alice": ("human", ("sovereign",), "Alice"),
    "carol": ("human", ("sovereign",), "Carol"),
    "bob": ("human", ("council",), "Bob"),
    "rita": ("human", ("operator",), "Rita"),  # rehearses
    "opal": ("human", ("operator",), "Opal"),  # commits
    "sam": ("human", ("operator", "sovereign"), "Sam"),  # may approve and commit, never his own
    "alice2": ("human", ("council",), "  ALICE "),  # a second role of Alice's: one person counts once
    "aggie": ("agent", ("sovereign",), "Aggie"),  # an agent never approves nor decides
}


@dataclass
class Desk:
    """This test's adopted world (superuser DSN and connection), its project copy and its principals (made on
    first use, dropped after the test). The gcos commands run as the right people; the kernel does the work."""

    dsn: str
    admin: psycopg.Connection[Any]
    project_dir: Path
    roles: dict[str, Role] = field(default_factory=dict)
    schema: str | None = None  # the kernel's schema hash, measured once until a commit, rollback or SQL moves it

    @property
    def project(self) -> Project:
        return load_project(self.project_dir)

    def role(self, who: str) -> Role:
        if who not in self.roles:
            kind, gcos_roles, display = PEOPLE.get(who, ("human", ("sovereign",), who.title()))
            name, password = f"gcos_t_{uuid.uuid4().hex[:8]}_{who}", secrets.token_hex(12)
            ident = sql.Identifier(name)
            self.admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(ident, sql.Literal(password)))
            for group in gcos_roles:
                self.admin.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(f"gcos_{group}"), ident))
            add_principal(self.admin, name, name=display, kind=kind, roles=gcos_roles, grant=False)
            row = self.admin.execute("SELECT oid::bigint FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
            assert row is not None
            self.roles[who] = Role(name, make_conninfo(self.dsn, user=name, password=password), int(row[0]))
        return self.roles[who]

    def target(self, who: str | None = None) -> Target:
        return Target(self.role(who).dsn if who else self.dsn, "--dsn")

    def connect(self, who: str | None = None) -> psycopg.Connection[Any]:
        return psycopg.connect(self.role(who).dsn if who else self.dsn, autocommit=True)

    def execute(self, query: Any, params: tuple[Any, ...] = ()) -> None:
        self.schema = None
        self.admin.execute(query, params or None)

    # the gcos commands, as the right people (the kernel rehearses, commits and rolls back)
    def rehearse(self, step: str = "SB-12", by: str = "rita") -> int:
        return int(commands.rehearse(self.target(by), self.project_dir, step).ledger_seq)

    def approve(self, who: str, step: str = "SB-12", *, verdict: str = "approve", **kw: Any) -> int:
        expires_in, rollback = kw.get("expires_in", "24h"), kw.get("rollback", False)
        receipt = commands.approve(
            self.target(who), self.project_dir, step, verdict=verdict, expires_in=expires_in, rollback=rollback
        )
        return int(receipt.approval_id)

    def decide(self, who: str, name: str, *, verdict: str = "approve", expires_in: str = "24h") -> int:
        receipt = commands.decide(self.target(who), self.project_dir, name, verdict=verdict, expires_in=expires_in)
        return int(receipt.decision_id)

    def revoke(self, who: str, record_id: int, *, decision: bool = False) -> None:
        commands.revoke(self.target(who), record_id, reason="not yet", decision=decision)

    def commit(self, step: str = "SB-12", who: str = "opal") -> Any:
        self.schema = None
        return commands.commit(self.target(who), self.project_dir, step)

    def rollback(self, step: str = "SB-12", who: str = "opal") -> Any:
        self.schema = None
        return commands.rollback(self.target(who), self.project_dir, step)

    def land(self, step: str) -> int:
        """Rehearsed by Rita, approved by Carol, committed by Opal through the kernel: the commit's seq."""
        self.rehearse(step)
        self.approve("carol", step)
        result = self.commit(step)
        assert result.ok, result.message
        return int(result.ledger_seq)

    def records(self, kind: str) -> list[ledger.LedgerEntry]:
        return [e for e in ledger.read_all(self.admin) if e.kind == kind]

    def schema_hash(self) -> str:
        """The schema hash as the kernel measures it now (what a commit hands the gates)."""
        if self.schema is None:
            row = self.admin.execute("SELECT gcos._kernel_fingerprint(ARRAY[]::text[]) ->> 'schema_hash'").fetchone()
            assert row is not None
            self.schema = str(row[0])
        return self.schema

    def judge(self, step_id: str = "SB-12", action: str = "commit", **given: Any) -> PolicyDecisionRecord:
        """The gates of `action` on `step_id` for `who` (default Opal) on a GIVEN world: `schema` (default the
        kernel's now; None: not measured), re-verify holding (`reverify_ok`, None: not run), the global stops
        named in `held` holding (only the first `stops` of them measured, when given); `in_plan` False asks
        without the step's plan."""
        project = self.project
        step = project.step(step_id)
        home = project.plan_of(step.id)
        gates.register(self.admin, step, home)
        schema, reverify_ok = given.get("schema", MEASURED), given.get("reverify_ok", True)
        held: tuple[str, ...] = given.get("held", ())
        items = [s for s in (home.global_stop if home else ()) if s.kind != "max_new_tables"]
        checks = step.document.get("reverify") or []
        measured = gates.world(
            schema_hash=self.schema_hash() if schema == MEASURED else schema,
            reverify=None
            if reverify_ok is None
            else [{"name": c["name"], "expected": c["expect"], "actual": None, "ok": reverify_ok} for c in checks],
            global_stops=[{"name": s.name, "holds": s.name in held, "detail": "given"} for s in items][
                : given.get("stops")
            ],
        )
        plan = home if given.get("in_plan", True) else None
        with self.connect(given.get("who", "opal")) as conn:
            return gates.evaluate(conn, step, plan, action=action, measured=measured, trace_id=TRACE)

    def wait_past(self, table: str) -> None:
        """Poll the database clock (bounded) until it is past the latest expiry of that table's rows."""
        deadline = time.monotonic() + 30
        query = sql.SQL("SELECT clock_timestamp() > (SELECT max(expires_at) FROM {})").format(
            sql.Identifier("gcos", table)
        )
        while time.monotonic() < deadline:
            row = self.admin.execute(query).fetchone()
            if row and row[0]:
                return
            self.admin.execute("SELECT pg_sleep(0.05)")
        raise AssertionError(f"gave up waiting for the {table} to expire")

    def drop_roles(self) -> None:
        for role in reversed(list(self.roles.values())):
            ends = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s"
            self.admin.execute(ends, (role.name,))
            self.admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role.name)))
            self.admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role.name)))


def open_desk(dsn: str, project_dir: Path) -> Iterator[Desk]:
    """A Desk on an adopted world (`dsn`, a superuser's); its roles are dropped afterwards."""
    d = Desk(dsn, psycopg.connect(dsn, autocommit=True), project_dir)
    try:
        yield d
    finally:
        if d.admin.closed:
            d.admin = psycopg.connect(dsn, autocommit=True)
        d.drop_roles()
        d.admin.close()


@pytest.fixture
def desk(world_dsn: str, project_dir: Path, gcos_adopted: None) -> Iterator[Desk]:
    """A copy of the reference world whose schema public the kernel governs."""
    yield from open_desk(world_dsn, project_dir)


def failed(d: PolicyDecisionRecord) -> list[str]:
    return [g.gate for g in d.failed]


# --------------------------------------------------------------------------- the record


def test_all_gates_hold_and_the_record_is_the_ledger_payload(desk: Desk) -> None:
    seq = desk.rehearse()
    alice = desk.approve("alice")
    d = desk.judge()  # the kernel's rehearsal entry schema is the schema the kernel measures now
    assert d.allow and d.refusal_sentence() == "" and d.first_failed is None
    assert [g.number for g in d.gates] == list(range(1, 8)) and [g.gate for g in d.gates] == list(gates.GATE_NAMES)
    assert d.gate("approvals").evidence == (alice,) and d.gate("rehearsal").evidence == (seq,)
    payload = d.to_payload()
    ledger.check_payload(payload)
    assert payload["allow"] is True and payload["refusal"] is None and payload["failed"] == []
    assert PolicyDecisionRecord.from_payload(payload) == d


def test_the_refusal_is_the_first_failed_gate_and_a_decisive_one_goes_first(desk: Desk) -> None:
    desk.rehearse()
    stop = "§70.2 #2 law counts moved from 47/5/12"
    d = desk.judge(held=(stop,))
    assert failed(d) == ["approvals", "state"] and d.first_failed == d.gate("approvals")
    assert d.refusal_sentence().startswith("No approval for SB-12 bound to spec")
    assert d.to_payload()["refusal"] == d.refusal_sentence()
    assert d.gate("approvals").command == "gcos approve SB-12 --verdict approve --expires-in 24h"
    assert d.gate("state").command == "gcos rehearse SB-12" and stop in d.gate("state").reason
    desk.approve("carol")
    commit = int(desk.commit().ledger_seq)
    d = desk.judge()
    assert failed(d) == ["rehearsal", "approvals", "state"]  # committed: its rehearsal and approval are spent
    assert d.first_failed == d.gate("state") and d.gate("state").decisive
    assert d.gate("state").command == "gcos rollback SB-12" and f"commit seq {commit}" in d.gate("state").reason


def test_bad_input_is_refused(desk: Desk) -> None:
    step = desk.project.step("SB-12")
    with pytest.raises(ValueError, match="action"):
        gates.evaluate(desk.admin, step, None, action="apply", measured={}, trace_id=TRACE)
    with pytest.raises(ValueError, match="trace_id"):
        gates.evaluate(desk.admin, step, None, action="commit", measured={}, trace_id="not-a-trace")
    with pytest.raises(SpecError), translated():  # 22023: a measured world that is not an object
        desk.admin.execute("SELECT gcos.evaluate_gates(%s, NULL, 'commit', '[]')", (step.hash,))
    assert gates.rollback_subject_hash(step.hash) == content_hash({"rollback_of": step.hash})
    row = desk.admin.execute("SELECT gcos.rollback_subject_hash(%s)", (step.hash,)).fetchone()
    assert row == (gates.rollback_subject_hash(step.hash),)
    assert gates.short(step.hash) == step.hash[:12] + "…" and gates.short(None) == "(none)"


# --------------------------------------------------------------------------- gates 1-4, 7


def test_gate1_plan_and_fold_ins(desk: Desk) -> None:
    d = desk.judge(in_plan=False)
    assert not d.gate("spec").allow and d.gate("spec").command == "gcos plan"
    d = desk.judge("SB-13")
    assert d.gate("spec").allow and d.gate("spec").reason.endswith("fold-ins declared: F-57-1")
    spec = desk.project_dir / "steps" / "02-sb-13.yaml"
    spec.write_text(spec.read_text(encoding="utf-8").replace("fold_ins: [F-57-1]", "fold_ins: []"), encoding="utf-8")
    d = desk.judge("SB-13")
    assert not d.gate("spec").allow and d.gate("spec").command == "gcos rehearse SB-13"
    assert "F-57-1" in d.gate("spec").remedy


def test_gate2_dependencies_committed_for_a_commit_and_a_rollback(desk: Desk) -> None:
    d = desk.judge("SB-10")
    assert not d.gate("dependencies").allow and d.gate("dependencies").command == "gcos commit SB-12"
    desk.land("SB-12")
    assert desk.judge("SB-10").gate("dependencies").command == "gcos commit SB-13"
    desk.land("SB-13")
    assert desk.judge("SB-10").gate("dependencies").allow
    desk.land("SB-10")
    d = desk.judge("SB-12", "rollback")  # SB-10 depends on SB-12 and is committed: roll it back first
    assert not d.gate("dependencies").allow and d.gate("dependencies").command == "gcos rollback SB-10"
    assert desk.judge("SB-10", "rollback").gate("dependencies").allow


def test_gate3_reverify(desk: Desk) -> None:
    desk.rehearse()
    desk.approve("alice")
    d = desk.judge(reverify_ok=False)
    assert failed(d) == ["reverify"] and d.gate("reverify").known and d.gate("reverify").command == "gcos verify SB-12"
    d = desk.judge(reverify_ok=None)
    assert failed(d) == ["reverify"] and not d.gate("reverify").known


def _edit(path: Path, old: str, new: str) -> str:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return text


def test_gate4_rehearsal_of_this_spec_plan_and_schema(desk: Desk) -> None:
    g = desk.judge().gate("rehearsal")
    assert not g.allow and g.command == "gcos rehearse SB-12" and g.evidence == ()
    rollback_sql = desk.project_dir / "rollback" / "sb-12.sql"
    text = _edit(rollback_sql, "\n", " \n")  # a one-byte edit: the kernel rehearses another spec
    other = desk.project.step("SB-12").hash
    desk.rehearse()
    rollback_sql.write_text(text, encoding="utf-8")
    g = desk.judge().gate("rehearsal")
    assert not g.allow and gates.short(other) in g.reason and g.command == "gcos rehearse SB-12"
    desk.execute(DOT_REGISTERED)
    with pytest.raises(StopHeld):  # a global stop holds: the kernel's rehearsal of this spec is stopped
        desk.rehearse()
    desk.execute("DELETE FROM dot_tools WHERE code = 'dot_governance_assignment_apply'")
    g = desk.judge().gate("rehearsal")
    assert not g.allow and "did not pass" in g.reason and g.command == "gcos rehearse SB-12"
    plan_file = desk.project_dir / "plans" / "build.yaml"
    text = _edit(plan_file, "title: GCOS build order", "title: GCOS build order (edited)")
    desk.rehearse()  # under another plan
    plan_file.write_text(text, encoding="utf-8")
    assert not desk.judge().gate("rehearsal").allow
    seq = desk.rehearse()
    g = desk.judge().gate("rehearsal")
    assert g.allow and g.evidence == (seq,)
    g = desk.judge(schema="2e" * 32).gate("rehearsal")  # the database changed since the rehearsal
    assert not g.allow and g.known and g.command == "gcos rehearse SB-12"
    g = desk.judge(schema=None).gate("rehearsal")  # not measured: refused, unknown, the rehearsal named
    assert not g.allow and not g.known and g.evidence == (seq,)


def test_gate7_global_stops_and_no_recommit(desk: Desk) -> None:
    desk.rehearse()
    desk.approve("alice")
    stop = "§70.2 #5 the mutating DOT dot_governance_assignment_apply exists (as a database object)"
    d = desk.judge(held=(stop,))
    assert failed(d) == ["state"] and d.gate("state").command == "gcos rehearse SB-12"
    d = desk.judge(stops=2)  # fewer results than the plan has stop conditions: unknown, refused
    assert failed(d) == ["state"] and not d.gate("state").known


# --------------------------------------------------------------------------- gate 5: approvals


def test_gate5_only_the_verdict_approve_opens_it(desk: Desk) -> None:
    for who, verdict in (("p1", "reject"), ("p2", "defer"), ("p3", "approve_with_conditions")):
        desk.approve(who, verdict=verdict)
    g = desk.judge().gate("approvals")
    assert not g.allow and g.evidence == ()
    for verdict in ("reject", "defer", "approve_with_conditions"):
        assert f"has verdict {verdict}" in g.reason


def test_gate5_each_persons_latest_word_counts(desk: Desk) -> None:
    first = desk.approve("alice")
    desk.approve("alice", verdict="reject")
    g = desk.judge().gate("approvals")
    assert not g.allow and g.evidence == () and f"approval {first} by Alice is superseded" in g.reason
    again = desk.approve("alice")
    assert desk.judge().gate("approvals").evidence == (again,)


def test_gate5_cross_sign_two_distinct_people(desk: Desk) -> None:
    alice = desk.approve("alice", "SB-1-2")
    g = desk.judge("SB-1-2").gate("approvals")
    assert not g.allow and g.evidence == (alice,) and "other than Alice" in g.remedy
    desk.approve("alice2", "SB-1-2")  # a second role of Alice's ("  ALICE "): one person counts once
    g = desk.judge("SB-1-2").gate("approvals")
    assert not g.allow and g.evidence == (alice,) and "counts once" in g.reason
    bob = desk.approve("bob", "SB-1-2")
    assert desk.judge("SB-1-2").gate("approvals").evidence == (alice, bob)


def test_gate5_who_never_counts(desk: Desk) -> None:
    desk.rehearse()
    desk.approve("bob")  # a council member: SB-12 needs a sovereign
    g = desk.judge().gate("approvals")
    assert not g.allow and g.evidence == () and "who holds council, not sovereign" in g.reason
    sams = desk.approve("sam")
    g = desk.judge(who="sam").gate("approvals")  # Sam committing his own approval
    assert not g.allow and "the committer himself (no self-approval)" in g.reason and "other than Sam" in g.remedy
    assert desk.judge().gate("approvals").evidence == (sams,)  # Opal commits: Sam's approval counts
    desk.rehearse(by="sam")  # now Sam ran the rehearsal relied on
    g = desk.judge().gate("approvals")
    assert not g.allow and "who ran the rehearsal (no self-approval)" in g.reason
    desk.rehearse()
    desk.revoke("bob", sams)
    alice = desk.approve("alice")
    assert desk.judge().gate("approvals").evidence == (alice,)
    name = sql.Identifier(desk.role("alice").name)
    desk.execute(sql.SQL("ALTER ROLE {} SUPERUSER").format(name))
    try:
        g = desk.judge().gate("approvals")
        assert alice not in g.evidence and "whose role is a superuser" in g.reason
    finally:
        desk.execute(sql.SQL("ALTER ROLE {} NOSUPERUSER").format(name))
    add_principal(desk.admin, desk.role("alice").name, name="Alice", kind="agent", roles=("sovereign",), grant=False)
    g = desk.judge().gate("approvals")  # reclassified as an agent after approving
    assert alice not in g.evidence and "only humans approve" in g.reason


def test_gate5_an_approval_is_bound_to_spec_plan_subject_time_and_epoch(desk: Desk) -> None:
    desk.rehearse()
    short = desk.approve("alice", expires_in="1s")
    desk.wait_past("os_proposal_approvals")  # expires_at <= the database clock: expired
    g = desk.judge().gate("approvals")
    assert not g.allow and f"approval {short} by Alice expired at" in g.reason
    revoked = desk.approve("alice")
    desk.revoke("bob", revoked)
    g = desk.judge().gate("approvals")
    assert not g.allow and f"approval {revoked} by Alice was revoked" in g.reason
    carol = desk.approve("carol")
    assert desk.judge().gate("approvals").evidence == (carol,)
    _edit(desk.project_dir / "rollback" / "sb-12.sql", "\n", " \n")  # a one-byte edit
    desk.rehearse()
    g = desk.judge().gate("approvals")
    assert not g.allow and f"approval {carol} by Carol is bound to spec" in g.reason
    edited = desk.approve("carol")
    assert desk.commit().ok
    mine = desk.approve("alice", rollback=True)
    g = desk.judge().gate("approvals")  # committed: the commit's approval is spent, a rollback's never counts
    assert not g.allow and edited not in g.evidence and mine not in g.evidence
    assert desk.rollback().ok
    d = desk.judge()  # rolled back: every approval and the rehearsal before it are spent
    assert not d.gate("rehearsal").allow and d.gate("rehearsal").command == "gcos rehearse SB-12"
    desk.rehearse()
    g = desk.judge().gate("approvals")
    assert not g.allow and g.evidence == () and "and is spent" in g.reason


def test_gate5_lists_every_reason_and_caps_the_list(desk: Desk) -> None:
    for n in range(8):
        desk.approve(f"p{n}", verdict="defer")
    g = desk.judge().gate("approvals")
    assert not g.allow and g.reason.startswith("SB-12 needs 1 distinct approver and has 0: ")
    assert g.reason.count("has verdict defer") == 5 and g.reason.endswith("; and 3 more")


# --------------------------------------------------------------------------- gate 6: decisions


def test_gate6_decisions(desk: Desk) -> None:
    def decisions() -> gates.GateResult:
        return desk.judge("SB-1-2").gate("decisions")

    g = decisions()
    assert not g.allow and "decision C-1 has never been recorded" in g.reason
    assert g.command == "gcos decide C-1 --verdict approve --expires-in 24h"
    desk.decide("carol", "C-1", expires_in="1s")
    desk.wait_past("decisions")
    assert "expired at" in decisions().reason
    c2 = desk.decide("alice", "C-2")  # A-8 is two decisions: C-1 and C-2
    revoked = desk.decide("carol", "C-1")
    desk.revoke("alice", revoked, decision=True)  # only a sovereign revokes a decision
    assert "was revoked" in decisions().reason and not decisions().allow
    held = desk.decide("carol", "C-1")
    assert decisions().allow and decisions().evidence == (held, c2)
    desk.decide("alice", "C-1", verdict="defer")  # the decision's latest word
    assert not decisions().allow and "stands at defer" in decisions().reason
    again = desk.decide("carol", "C-1")
    assert decisions().evidence == (again, c2)
    name = sql.Identifier(desk.role("carol").name)
    desk.execute(sql.SQL("ALTER ROLE {} SUPERUSER").format(name))
    try:
        g = decisions()  # Carol's word no longer counts: the latest word in force is Alice's defer
        assert not g.allow and g.evidence == (c2,) and "by Alice" in g.reason
    finally:
        desk.execute(sql.SQL("ALTER ROLE {} NOSUPERUSER").format(name))
    # several decisions: every one must hold; the evidence follows the spec's order
    ids = {name: desk.decide("carol", name) for name in ("A-4", "A-3")}
    g = desk.judge("BACKFILL-SEED").gate("decisions")
    assert not g.allow and g.command == "gcos decide A-5 --verdict approve --expires-in 24h"
    ids["A-5"] = desk.decide("carol", "A-5")
    g = desk.judge("BACKFILL-SEED").gate("decisions")
    assert g.allow and g.evidence == (ids["A-5"], ids["A-3"], ids["A-4"])


# --------------------------------------------------------------------------- rollback


def test_rollback_gates(desk: Desk) -> None:
    d = desk.judge(action="rollback")
    assert d.first_failed == d.gate("state") and d.gate("state").decisive  # nothing committed to roll back
    assert d.gate("state").command == "gcos status SB-12"
    desk.land("SB-12")
    d = desk.judge(action="rollback", reverify_ok=False)  # re-verify and decisions describe a commit, not its undoing
    assert failed(d) == ["approvals"] and d.gate("reverify").allow and d.gate("decisions").allow
    assert d.gate("approvals").command == "gcos approve SB-12 --rollback --verdict approve --expires-in 24h"
    desk.approve("alice")  # an approval of the commit is no rollback's
    assert failed(desk.judge(action="rollback")) == ["approvals"]
    sams = desk.approve("sam", rollback=True)
    g = desk.judge(action="rollback", who="sam").gate("approvals")
    assert not g.allow and "the one rolling it back (no self-approval)" in g.reason
    d = desk.judge(action="rollback")
    assert d.allow and d.gate("approvals").evidence == (sams,)
    d = desk.judge(action="rollback", schema="2e" * 32)  # the world changed since the commit: no rollback evidence
    assert failed(d) == ["rehearsal"] and d.gate("rehearsal").command == "gcos drift"
    _edit(desk.project_dir / "rollback" / "sb-12.sql", "\n", " \n")  # edited after the commit
    d = desk.judge(action="rollback")
    assert "spec" in failed(d) and d.gate("spec").command == "gcos rollback SB-12"
    assert gates.short(desk.project.step("SB-12").hash) in d.gate("spec").reason
