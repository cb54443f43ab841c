"""The seven commit gates, decided in one place: the database (gcos/sql/010_gates.sql, issue 9 item 3), on real
flows (CONTRACT.md "Gates that COMMIT must pass").

Each test gets a copy of a SMALL reference world (seed 002's schema, 1,000 birth_registry rows, gcos installed),
the repo's steps and plans registered in the database, and its own LOGIN roles mapped to principals. Rehearsals,
approvals, decisions, revocations, commits and rollbacks run through gcos's real commands as the right people.
At each point of a story the world is measured as the client's commit measures it (schema fingerprint,
re-verify, global stops: ``apply.read_world_now``; the database's own check functions must read the same) and
judged by ``gates.evaluate`` (``gcos.evaluate_gates``) in one transaction of the acting role: gate ids,
allow/known/decisive flags, evidence and the command to run are asserted."""

from __future__ import annotations

import re
import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, LiteralString

import psycopg
import pytest
from conftest import Role
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.json import Jsonb

from gcos import apply, commands, gates, ledger, reference_world, registry
from gcos.errors import ExitCode, LedgerBroken
from gcos.install import install
from gcos.principals import add_principal
from gcos.spec import Project, StepSpec, load_project
from gcos.target import Target

TRACE = "0123456789abcdef0123456789abcdef"
WAIT = 30.0  # seconds: the bound of every poll
ROWS = 1000  # birth_registry rows of the small world
# role hint -> (principal kind, gcos roles, display name); each is granted the matching gcos_<role> group roles
PEOPLE: dict[str, tuple[str, tuple[str, ...], str]] = {
    "alice": ("human", ("sovereign",), "Alice"),
    "carol": ("human", ("sovereign",), "Carol"),
    "bob": ("human", ("council",), "Bob"),
    "sam": ("human", ("operator", "sovereign"), "Sam"),  # operator and sovereign: never his own approver
    "opal": ("human", ("operator",), "Opal"),
    "andy": ("human", ("sovereign",), "Andy"),  # approves, then is reclassified as an agent
    "alice2": ("human", ("council",), "  ALICE "),  # a second role of Alice: one person counts once
}


# --------------------------------------------------------------------------- the small world


@pytest.fixture(scope="module")
def small_template(pg_admin_dsn: str) -> Iterator[str]:
    """Seed 002's reference world with ROWS birth_registry rows and gcos installed, as a template database."""
    name = f"gcos_gsql_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        with psycopg.connect(make_conninfo(pg_admin_dsn, dbname=name), autocommit=True) as conn:
            reference_world.build_world(conn, rows=ROWS)
            install(conn)
        yield name
    finally:
        with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@dataclass
class World:
    """This test's copy of the small world (superuser DSN), its project copy and its principals (made lazily)."""

    dsn: str
    project_dir: Path
    roles: dict[str, Role] = field(default_factory=dict)

    @property
    def project(self) -> Project:
        return load_project(self.project_dir)

    @property
    def dbname(self) -> str:
        return str(conninfo_to_dict(self.dsn)["dbname"])

    def role(self, who: str) -> Role:
        if who not in self.roles:
            kind, gcos_roles, display = PEOPLE[who]
            name = f"gcos_t_{uuid.uuid4().hex[:8]}_{who}"
            password = secrets.token_hex(12)
            with psycopg.connect(self.dsn, autocommit=True) as admin:
                admin.execute(
                    sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(name), sql.Literal(password))
                )
                for group in gcos_roles:
                    admin.execute(
                        sql.SQL("GRANT {} TO {}").format(sql.Identifier(f"gcos_{group}"), sql.Identifier(name))
                    )
                add_principal(admin, name, name=display, kind=kind, roles=gcos_roles, grant=False)
                row = admin.execute("SELECT oid::bigint FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
            assert row is not None
            self.roles[who] = Role(name, make_conninfo(self.dsn, user=name, password=password), int(row[0]))
        return self.roles[who]

    def target(self, who: str | None = None) -> Target:
        return Target(self.role(who).dsn if who else self.dsn, "--dsn")

    def connect(self, who: str | None = None) -> psycopg.Connection[Any]:
        return psycopg.connect(self.role(who).dsn if who else self.dsn, autocommit=True)

    def execute(self, query: str | sql.Composed, params: tuple[Any, ...] = ()) -> None:
        with self.connect() as conn:
            conn.execute(query, params or None)

    def register(self) -> None:
        """Register every step and plan of the project (as the superuser, a registrar)."""
        project = self.project
        with self.connect() as conn:
            for step in project.steps.values():
                registry.register_spec(conn, step)
            for plan in project.plans.values():
                registry.register_plan(conn, plan)

    # the gcos commands, as the right people
    def rehearse(self, step: str = "SB-12", who: str | None = None) -> None:
        result = commands.rehearse(self.target(who), self.project_dir, step)
        assert result.ok, result.message

    def approve(
        self,
        who: str,
        step: str = "SB-12",
        *,
        expires_in: str = "24h",
        rollback: bool = False,
        verdict: str = "approve",
    ) -> int:
        receipt = commands.approve(
            self.target(who), self.project_dir, step, verdict=verdict, expires_in=expires_in, rollback=rollback
        )
        return receipt.approval_id

    def decide(self, who: str, decision: str, *, expires_in: str = "24h", verdict: str = "approve") -> int:
        return commands.decide(self.target(who), decision, verdict=verdict, expires_in=expires_in).decision_id

    def commit(self, step: str = "SB-12") -> None:
        result = commands.commit(self.target(), self.project_dir, step)
        assert result.ok, result.message

    def rollback(self, step: str) -> None:
        result = commands.rollback(self.target(), self.project_dir, step)
        assert result.ok, result.message

    def wait_past(self, expires: str) -> None:
        """Poll the database clock (bounded) until it is past the latest expiry of that table's rows."""
        deadline = time.monotonic() + WAIT
        with self.connect() as conn:
            while time.monotonic() < deadline:
                query = sql.SQL("SELECT clock_timestamp() > (SELECT max(expires_at) FROM {})")
                row = conn.execute(query.format(sql.Identifier("gcos", expires))).fetchone()
                if row and row[0]:
                    return
                conn.execute("SELECT pg_sleep(0.05)")
        raise AssertionError(f"gave up waiting for the {expires} to expire")


@pytest.fixture
def world(pg_admin_dsn: str, small_template: str, project_dir: Path) -> Iterator[World]:
    """A fresh copy of the small world with the project registered; its roles are dropped afterwards."""
    name = f"gcos_gsql_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(small_template))
        )
    # SB-10 re-verifies the 1M-row world; the small one has ROWS: judge that check against this world instead.
    sb10 = project_dir / "steps" / "03-sb-10.yaml"
    sb10.write_text(sb10.read_text(encoding="utf-8").replace("{gte: 1000000}", f"{{gte: {ROWS}}}"), encoding="utf-8")
    w = World(make_conninfo(pg_admin_dsn, dbname=name), project_dir)
    try:
        w.register()
        yield w
    finally:
        with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            for role in reversed(list(w.roles.values())):
                admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role.name,))
                admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role.name)))
                admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role.name)))


# --------------------------------------------------------------------------- the two judgements


@dataclass(frozen=True)
class Measured:
    """The world as the client measures it: apply.WorldNow, and what it hands evaluate_gates (p_world)."""

    now: apply.WorldNow
    world: dict[str, Any]


def one(conn: psycopg.Connection[Any], query: LiteralString, document: dict[str, Any]) -> Any:
    row = conn.execute(query, (Jsonb(document),)).fetchone()
    assert row is not None
    return row[0]


def measure(w: World, step: StepSpec, *, as_actor: bool = True) -> Measured:
    """Schema fingerprint, re-verify and the plan's global stops, read once by the client (as its commit does)
    and once by the database's own check functions (gcos.evaluate_check, gcos.stop_holds, as the kernel does)
    in one snapshot; they must agree."""
    plan = w.project.plan_of(step.id)
    with w.connect() as conn, conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        now = apply.read_world_now(conn, step, plan, watch=False)
        reverify = [one(conn, "SELECT gcos.evaluate_check(%s)", c) for c in step.document.get("reverify", [])]
        stops = [
            one(conn, "SELECT to_jsonb(s) FROM gcos.stop_holds(%s, 0) AS s", s)
            for s in (plan.document.get("global_stop", []) if plan else [])
            if "max_new_tables" not in s
        ]
    mine = now.measured(step, as_actor=as_actor)  # what the client's commit hands the gates
    assert [r["ok"] for r in reverify] == [r["ok"] for r in mine["reverify"]], (reverify, now.reverify)
    assert [r["name"] for r in reverify] == [r["name"] for r in mine["reverify"]]
    assert [s["holds"] for s in stops] == [s["holds"] for s in mine["global_stops"]], (stops, now.global_stops)
    return Measured(now, mine)


def judge(w: World, step_id: str, action: str = "commit", who: str | None = None) -> dict[str, Any]:
    """The database's decision of `action` on `step_id` by `who` (None: the superuser), in a transaction of
    theirs, as the ledger's policy_decision payload; the payload round-trips through the client's type."""
    project = w.project
    step = project.step(step_id)
    plan = project.plan_of(step.id)
    assert plan is not None
    m = measure(w, step)
    with w.connect(who) as conn, conn.transaction():
        decision = gates.evaluate(conn, step, plan, action=action, measured=m.world, trace_id=TRACE)
    payload = decision.to_payload()
    assert gates.PolicyDecisionRecord.from_payload(payload) == decision
    assert [g["number"] for g in payload["gates"]] == list(range(1, 8))
    assert [g["gate"] for g in payload["gates"]] == list(gates.GATE_NAMES)
    assert (payload["refusal"] is None) is payload["allow"] and payload["trace_id"] == TRACE
    assert payload["failed"] == [g["gate"] for g in payload["gates"] if not g["allow"]]
    assert payload["step_id"] == step_id and payload["plan_hash"] == plan.hash
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", payload["evaluated_at"])
    ledger.check_payload(payload)  # what the ledger takes
    return payload


def gate(decision: dict[str, Any], name: str) -> dict[str, Any]:
    return next(g for g in decision["gates"] if g["gate"] == name)


def failed(decision: dict[str, Any]) -> list[str]:
    return list(decision["failed"])


# --------------------------------------------------------------------------- the stories


def test_a_commit_story_from_nothing_to_committed(world: World) -> None:
    """Nothing done; rehearsed; a stale rehearsal; an expired, a revoked and a real approval; committed."""
    d = judge(world, "SB-12")
    assert failed(d) == ["rehearsal", "approvals"] and gate(d, "rehearsal")["command"] == "gcos rehearse SB-12"
    world.rehearse()
    d = judge(world, "SB-12")
    assert failed(d) == ["approvals"] and gate(d, "approvals")["command"].startswith("gcos approve SB-12 ")
    world.execute("CREATE TABLE public.gates_sql_probe (id integer)")  # the schema moves after the rehearsal
    d = judge(world, "SB-12")
    assert "rehearsal" in failed(d) and gate(d, "rehearsal")["command"] == "gcos rehearse SB-12"
    world.execute("DROP TABLE public.gates_sql_probe")
    world.rehearse()
    short = world.approve("alice", expires_in="1s")
    world.wait_past("os_proposal_approvals")
    d = judge(world, "SB-12")
    assert failed(d) == ["approvals"] and "expired" in gate(d, "approvals")["reason"]
    revoked = world.approve("alice")
    commands.revoke(world.target("alice"), revoked)
    d = judge(world, "SB-12")
    assert failed(d) == ["approvals"] and gate(d, "approvals")["evidence"] == []
    carol = world.approve("carol")
    d = judge(world, "SB-12")
    assert d["allow"] and d["refusal"] is None and gate(d, "approvals")["evidence"] == [carol]
    assert short not in gate(d, "approvals")["evidence"]
    world.commit()
    d = judge(world, "SB-12")
    assert not d["allow"] and gate(d, "state")["decisive"] and d["refusal"].startswith("SB-12 is already committed")
    assert gate(d, "state")["command"] == "gcos rollback SB-12"


def test_no_self_approval_by_the_rehearser_or_the_committer(world: World) -> None:
    sam = world.role("sam")
    for grant in ("GRANT pg_read_all_data TO {}", "GRANT CREATE ON SCHEMA public TO {}"):
        world.execute(sql.SQL(grant).format(sql.Identifier(sam.name)))
    world.execute(sql.SQL("GRANT INSERT, DELETE ON evolution_snapshots TO {}").format(sql.Identifier(sam.name)))
    world.rehearse(who="sam")
    mine = world.approve("sam")
    d = judge(world, "SB-12")  # the superuser commits; Sam rehearsed
    assert failed(d) == ["approvals"] and "(no self-approval)" in gate(d, "approvals")["reason"]
    world.rehearse()  # the superuser's rehearsal is the evidence now; Sam commits
    d = judge(world, "SB-12", who="sam")
    assert failed(d) == ["approvals"] and "other than Sam" in gate(d, "approvals")["remedy"]
    d = judge(world, "SB-12", who="opal")  # rehearsed and committed by others, Sam's approval is a real one
    assert d["allow"] and gate(d, "approvals")["evidence"] == [mine]


def test_agents_council_members_and_conflicted_approvers_never_count(world: World) -> None:
    world.rehearse()
    world.approve("andy")
    with world.connect() as admin:  # Andy is reclassified as an agent after approving
        add_principal(admin, world.role("andy").name, name="Andy", kind="agent", roles=("sovereign",), grant=False)
    world.approve("bob")  # a council member: SB-12 needs a sovereign
    d = judge(world, "SB-12")
    assert failed(d) == ["approvals"] and gate(d, "approvals")["evidence"] == []
    alice = world.approve("alice")
    assert judge(world, "SB-12")["allow"]
    world.execute(sql.SQL("GRANT gcos_owner TO {}").format(sql.Identifier(world.role("alice").name)))
    d = judge(world, "SB-12")  # separation of duties is read now: Alice's approval drops
    assert failed(d) == ["approvals"] and "other than Alice" in gate(d, "approvals")["remedy"]
    world.execute(sql.SQL("REVOKE gcos_owner FROM {}").format(sql.Identifier(world.role("alice").name)))
    assert gate(judge(world, "SB-12"), "approvals")["evidence"] == [alice]


def test_two_signers_one_person_twice_and_the_decision(world: World) -> None:
    """SB-1-2: two distinct signers (sovereign or council) and decision A-8."""
    world.rehearse("SB-1-2")
    alice = world.approve("alice", "SB-1-2")
    d = judge(world, "SB-1-2")
    assert failed(d) == ["approvals", "decisions"] and gate(d, "approvals")["evidence"] == [alice]
    world.approve("alice2", "SB-1-2")  # Alice's second role ("  ALICE "): one person counts once
    d = judge(world, "SB-1-2")
    assert gate(d, "approvals")["evidence"] == [alice] and "counts once" in gate(d, "approvals")["reason"]
    bob = world.approve("bob", "SB-1-2")
    d = judge(world, "SB-1-2")
    assert failed(d) == ["decisions"] and gate(d, "approvals")["evidence"] == [alice, bob]
    assert gate(d, "decisions")["command"] == "gcos decide A-8 --verdict approve --expires-in 24h"
    world.decide("carol", "A-8", expires_in="1s")
    world.wait_past("decisions")
    assert failed(judge(world, "SB-1-2")) == ["decisions"]
    revoked = world.decide("carol", "A-8")
    commands.revoke(world.target("carol"), revoked, decision=True)
    assert failed(judge(world, "SB-1-2")) == ["decisions"]
    world.decide("carol", "A-8", verdict="reject")
    assert failed(judge(world, "SB-1-2")) == ["decisions"]
    held = world.decide("carol", "A-8")
    d = judge(world, "SB-1-2")
    assert d["allow"] and gate(d, "decisions")["evidence"] == [held]


def test_dependencies_and_rollbacks(world: World) -> None:
    d = judge(world, "SB-10")
    assert "dependencies" in failed(d) and gate(d, "dependencies")["command"] == "gcos commit SB-12"
    for step in ("SB-12", "SB-13"):
        world.rehearse(step)
        world.approve("alice", step)
        world.commit(step)
        judge(world, "SB-10")
    world.rehearse("SB-10")
    world.approve("alice", "SB-10")
    d = judge(world, "SB-10")
    assert d["allow"] and gate(d, "dependencies")["allow"]
    world.commit("SB-10")
    d = judge(world, "SB-12", "rollback")  # SB-10 depends on it and is committed; the schema moved since; no approval
    assert failed(d) == ["dependencies", "rehearsal", "approvals"]
    assert gate(d, "dependencies")["command"] == "gcos rollback SB-10"
    d = judge(world, "SB-10", "rollback")
    assert failed(d) == ["approvals"]
    assert gate(d, "approvals")["command"] == "gcos approve SB-10 --rollback --verdict approve --expires-in 24h"
    world.approve("bob", "SB-10", rollback=True)  # a council member may not sign SB-10's rollback
    carol = world.approve("carol", "SB-10", rollback=True)
    d = judge(world, "SB-10", "rollback")
    assert d["allow"] and gate(d, "approvals")["evidence"] == [carol]
    # committed: the commit is refused (decisively), and a rollback approval is no commit's
    assert failed(judge(world, "SB-10")) == ["reverify", "rehearsal", "approvals", "state"]
    world.rollback("SB-10")
    d = judge(world, "SB-10", "rollback")
    assert gate(d, "state")["decisive"] and d["refusal"].startswith("SB-10 is not committed")
    d = judge(world, "SB-10")  # rolled back: its rehearsal and approvals are spent
    assert failed(d) == ["rehearsal", "approvals"]
    d = judge(world, "SB-12", "rollback")  # no dependant any more; SB-13 was committed after it
    assert failed(d) == ["rehearsal", "approvals"] and gate(d, "rehearsal")["command"] == "gcos drift"


def test_re_verify_that_fails_and_a_global_stop_that_holds(world: World) -> None:
    world.rehearse()
    world.approve("alice")
    assert judge(world, "SB-12")["allow"]
    world.execute(
        "UPDATE measurement_registry SET enabled = false "
        "WHERE metric_key = (SELECT min(metric_key) FROM measurement_registry)"
    )
    d = judge(world, "SB-12")
    assert failed(d) == ["reverify"] and gate(d, "reverify")["command"] == "gcos verify SB-12"
    world.execute("UPDATE measurement_registry SET enabled = true")
    world.execute("CREATE FUNCTION public.dot_governance_assignment_apply() RETURNS integer LANGUAGE sql AS 'SELECT 1'")
    d = judge(world, "SB-12")
    assert failed(d) == ["rehearsal", "state"] and "global stop condition held" in gate(d, "state")["reason"]


def test_a_clone_refuses_the_copied_approvals_and_decisions(world: World, pg_admin_dsn: str) -> None:
    world.rehearse("SB-1-2")
    world.approve("alice", "SB-1-2")
    world.approve("bob", "SB-1-2")
    world.decide("carol", "A-8")
    assert judge(world, "SB-1-2")["allow"]
    original, away, clone = world.dbname, f"{world.dbname}_away", f"{world.dbname}_clone"
    ident = sql.Identifier
    with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(ident(clone), ident(original)))
        d = judge(World(make_conninfo(world.dsn, dbname=clone), world.project_dir, world.roles), "SB-1-2")
        assert failed(d) == ["approvals", "decisions"] and "another database" in gate(d, "approvals")["reason"]
        admin.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(ident(original), ident(away)))
        admin.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(ident(clone), ident(original)))
        try:  # the clone under the original's name: another OID
            d = judge(world, "SB-1-2")
            assert failed(d) == ["approvals", "decisions"] and "incarnation" in gate(d, "decisions")["reason"]
        finally:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(ident(original)))
            admin.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(ident(away), ident(original)))


# --------------------------------------------------------------------------- the database's own answers


def evaluate(
    conn: psycopg.Connection[Any], spec_hash: str, plan_hash: str | None, action: str = "commit", world: Any = None
) -> dict[str, Any]:
    row = conn.execute(
        "SELECT gcos.evaluate_gates(%s, %s, %s, %s)",
        (spec_hash, plan_hash, action, Jsonb(world) if world is not None else None),
    ).fetchone()
    assert row is not None
    return dict(row[0])


def test_unregistered_specs_and_plans_unmeasured_worlds_and_bad_input(world: World) -> None:
    project = world.project
    step, plan = project.step("SB-12"), project.plan_of("SB-12")
    assert plan is not None
    unknown = "ab" * 32
    with world.connect() as conn:
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
        # a committed step whose spec nobody registered: whether it depends on SB-12 is unknown, so refused
        trace = ledger.new_trace_id()
        allowing = ledger.append(
            conn, "policy_decision", {"allow": True}, step_id="ZZ-1", spec_hash=unknown, trace_id=trace
        )
        payload = {"outcome": "applied", "policy_decision_seq": allowing.seq}
        ledger.append(conn, "commit", payload, step_id="ZZ-1", spec_hash=unknown, trace_id=trace)
        d = evaluate(conn, step.hash, plan.hash, "rollback", world={})
        assert not gate(d, "dependencies")["allow"] and not gate(d, "dependencies")["known"]
        assert gate(d, "dependencies")["command"] == "gcos rehearse ZZ-1"
        row = conn.execute("SELECT gcos.rollback_subject_hash(%s)", (step.hash,)).fetchone()
        assert row is not None and row[0] == gates.rollback_subject_hash(step.hash)


def test_status_mode_does_not_count_the_sessions_own_approval_as_self_approval(world: World) -> None:
    """p_world {"as_actor": false} is `gcos status`: Alice looking is not Alice committing."""
    world.rehearse()
    alice = world.approve("alice")
    step = world.project.step("SB-12")
    plan = world.project.plan_of("SB-12")
    assert plan is not None
    m = measure(world, step, as_actor=False)
    with world.connect("alice") as conn:
        assert evaluate(conn, step.hash, plan.hash, world=m.world)["allow"]
        m.world.pop("as_actor")
        d = evaluate(conn, step.hash, plan.hash, world=m.world)  # as the committer, Alice is her own approver
        assert failed(d) == ["approvals"] and "(no self-approval)" in gate(d, "approvals")["reason"]
    world.execute(sql.SQL("GRANT pg_read_all_data TO {}").format(sql.Identifier(world.role("alice").name)))
    (status,) = commands.status(world.target("alice"), world.project_dir, "SB-12").steps  # re-verify reads tables
    assert (
        status.decision.allow and status.state == "approved" and status.decision.gate("approvals").evidence == (alice,)
    )


def test_only_gcos_roles_may_ask_and_an_auditor_sees_the_same_decision(world: World) -> None:
    """SECURITY INVOKER: a gcos_auditor member reads everything the evaluation needs; a role in no gcos group
    cannot even call it (SET ROLE keeps session_user, the committer, as it was)."""
    world.rehearse()
    world.approve("alice")
    step = world.project.step("SB-12")
    plan = world.project.plan_of("SB-12")
    assert plan is not None
    m = measure(world, step)
    auditor, nobody = (f"gcos_t_{uuid.uuid4().hex[:8]}_{x}" for x in ("auditor", "nobody"))
    with world.connect() as admin:
        admin.execute(sql.SQL("CREATE ROLE {} NOLOGIN IN ROLE gcos_auditor").format(sql.Identifier(auditor)))
        admin.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(nobody)))
    try:
        with world.connect() as conn:
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(auditor)))
            assert evaluate(conn, step.hash, plan.hash, world=m.world)["allow"]
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(nobody)))
            with pytest.raises(pg_errors.InsufficientPrivilege):
                evaluate(conn, step.hash, plan.hash, world=m.world)
    finally:
        with world.connect() as admin:
            for role in (auditor, nobody):
                admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_an_approval_row_the_ledger_does_not_know_is_an_integrity_failure(world: World) -> None:
    world.rehearse()
    step = world.project.step("SB-12")
    plan = world.project.plan_of("SB-12")
    assert plan is not None
    alice = world.role("alice")
    with world.connect() as admin:  # a superuser forges a row beside a real ledger record that is no approval
        seq = admin.execute("SELECT max(seq) FROM gcos.ledger WHERE kind = 'rehearsal'").fetchone()
        assert seq is not None
        admin.execute(
            "INSERT INTO gcos.os_proposal_approvals (step_id, spec_hash, plan_hash, verdict, approver_oid, approver, "
            "approver_role, approver_roles, system_identifier, database_name, database_oid, expires_at, created_at, "
            "ledger_seq) SELECT 'SB-12', %s, %s, 'approve', %s, 'Alice', %s, '{sovereign}', i.system_identifier, "
            "i.database_name, i.database_oid, now() + interval '1 day', now(), %s FROM gcos.database_incarnation() i",
            (step.hash, plan.hash, alice.oid, alice.name, seq[0]),
        )
        m = measure(world, step)
        with pytest.raises(psycopg.Error) as info:
            evaluate(admin, step.hash, plan.hash, world=m.world)
        assert info.value.sqlstate == "GC007"
        with pytest.raises(LedgerBroken) as broken:  # wherever the gates are asked: exit 7
            gates.evaluate(admin, step, plan, action="commit", measured=m.world, trace_id=TRACE)
        assert broken.value.exit_code == ExitCode.LEDGER_BROKEN
    with pytest.raises(LedgerBroken):
        commands.status(world.target(), world.project_dir, "SB-12")
    with pytest.raises(LedgerBroken):
        commands.commit(world.target(), world.project_dir, "SB-12")
    with world.connect() as conn:
        assert ledger.verify(conn).ok
