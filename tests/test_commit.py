"""gcos commit and rollback through the kernel (gcos/sql/012_kernel_commit.sql) on a copy of the reference world
whose schema public is adopted: every gate refuses inside the commit's transaction, the step and its ledger
record land together or not at all (issue 5 "What it must show", issue 9 items 2 and 3; CONTRACT.md "Gates",
"Step states", "Exit codes", "The kernel").

People are real LOGIN roles mapped to principals of the world: a human operator rehearses, commits and rolls
back; sovereigns and a council member approve. Faults come through the database as a user meets them: another
session holding a lock, the committer's backend terminated while it waits, a superuser changing the world
between rehearsal and commit, a spec edited after its approval, a cloned database. Refusals are read from the
CLI's exit code and JSON and from the ledger (gate ids, record kinds, payload fields), never from sentences.
Waiting is a bounded poll on pg_stat_activity, never a fixed sleep. A commit that cannot finish (stop, failed
success, lock timeout, killed connection): test_commit_check_errors.py; who may commit and what no client may
claim: test_kernel_commit.py. Both share World and the `world` fixture from here.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import Role, fingerprint
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from typer.testing import CliRunner

from gcos import approvals, commands, ledger
from gcos.cli import app
from gcos.domain import Gate, Kind, Outcome, StepState
from gcos.errors import ExitCode, GateRefused
from gcos.principals import add_principal
from gcos.spec import load_project
from gcos.target import SessionSettings, Target

WAIT = 30.0  # seconds: the bound of every poll
COMMIT_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('gcos:commit', 0))"  # the kernel's one commit lock
# who -> (principal kind, gcos roles); each is granted the matching gcos_<role> group roles
PEOPLE: dict[str, tuple[str, tuple[str, ...]]] = {
    "operator": ("human", ("operator",)),
    "sovereign": ("human", ("sovereign",)),
    "council": ("human", ("council",)),
    "agent": ("agent", ("operator",)),
}
MADE_BY = {"SB-12": "governance_ruleset", "SB-13": "gov_worker_cursor", "SB-1-2": "governance_object_ownership"}


@dataclass
class World:
    """This test's adopted copy of the reference world (superuser DSN and connection), its project copy and
    its people (LOGIN roles made on first use, with short connections so that the world can be cloned)."""

    dsn: str
    admin: psycopg.Connection[Any]
    project: Path
    people: dict[str, Role] = field(default_factory=dict)

    def person(self, who: str) -> Role:
        if who not in self.people:
            kind, roles = PEOPLE[who]
            name, password = f"gcos_t_{uuid.uuid4().hex[:8]}_{who}", secrets.token_hex(12)
            ident = sql.Identifier(name)
            self.admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(ident, sql.Literal(password)))
            for role in roles:
                self.admin.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(f"gcos_{role}"), ident))
            add_principal(self.admin, name, name=who.title(), kind=kind, roles=roles, grant=False)
            row = self.admin.execute("SELECT oid::bigint FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
            assert row is not None
            self.people[who] = Role(name, make_conninfo(self.dsn, user=name, password=password), int(row[0]))
        return self.people[who]

    def target(self, who: str | None = "operator") -> Target:
        """The world as one of PEOPLE, or as the superuser (who=None)."""
        return Target(self.person(who).dsn if who else self.dsn, "--dsn")

    def rehearse(self, step: str = "SB-12", who: str = "operator") -> None:
        assert commands.rehearse(self.target(who), self.project, step).ok

    def approve(self, step: str = "SB-12", who: str = "sovereign", *, rollback: bool = False) -> Any:
        return commands.approve(
            self.target(who), self.project, step, verdict="approve", expires_in="1h", rollback=rollback
        )

    def commit(self, step: str = "SB-12", who: str | None = "operator", **kw: Any) -> Any:
        return commands.commit(self.target(who), self.project, step, **kw)

    def cli(self, *args: str, who: str | None = "operator", env: dict[str, str] | None = None) -> tuple[int, Any]:
        """`gcos <args> --json` as `who`: the exit code and the JSON document it printed."""
        dsn = self.person(who).dsn if who else self.dsn
        done = CliRunner().invoke(app, [*args, "--dsn", dsn, "--project", str(self.project), "--json"], env=env)
        return done.exit_code, json.loads(done.stdout)

    def entries(self, after: int = 0) -> list[ledger.LedgerEntry]:
        return [e for e in ledger.read_all(self.admin) if e.seq > after]

    def head(self) -> int:
        entries = self.entries()
        return entries[-1].seq if entries else 0

    def records(self, kind: str, step: str | None = None) -> list[ledger.LedgerEntry]:
        return [e for e in self.entries() if e.kind == kind and step in (None, e.record.get("step_id"))]

    def owner(self, table: str) -> Any:
        """The owner of public.`table`, None while it does not exist."""
        row = self.admin.execute(
            "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = to_regclass(%s)", (f"public.{table}",)
        ).fetchone()
        return row[0] if row else None

    def state(self, step: str) -> str:
        (status,) = commands.status(self.target(), self.project, step).steps
        return status.state

    @property
    def dbname(self) -> str:
        return str(conninfo_to_dict(self.dsn)["dbname"])

    def drop_people(self) -> None:
        for role in reversed(list(self.people.values())):
            self.admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role.name,)
            )
            self.admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role.name)))
            self.admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role.name)))


def adopted_world(world_dsn: str, project_dir: Path) -> Iterator[World]:
    """The World of `world_dsn` (a copy of the adopted reference world); its people are dropped afterwards."""
    w = World(world_dsn, psycopg.connect(world_dsn, autocommit=True), project_dir)
    try:
        yield w
    finally:
        if w.admin.closed:
            w.admin = psycopg.connect(world_dsn, autocommit=True)
        w.drop_people()
        w.admin.close()


@pytest.fixture
def world(world_dsn: str, gcos_adopted: None, project_dir: Path) -> Iterator[World]:
    """A copy of the reference world where gcos is installed and schema public adopted (a session template)."""
    yield from adopted_world(world_dsn, project_dir)


def failed_gates(decision: dict[str, Any]) -> list[str]:
    return [g["gate"] for g in decision["gates"] if not g["allow"]]


def refusing_gate(decision: dict[str, Any]) -> str:
    """The gate the refusal names: the first decisive failed gate, else the first failed one."""
    failed = [g for g in decision["gates"] if not g["allow"]]
    return str(next((g for g in failed if g["decisive"]), failed[0])["gate"])


def refused(w: World, step: str, action: str = "commit", **kw: Any) -> tuple[int, dict[str, Any]]:
    """`gcos <action> <step>` refused by the kernel: exactly one `<action>_refused` record is appended, the one
    the CLI names; the exit code and the kernel's policy decision are returned."""
    head = w.head()
    code, out = w.cli(action, step, **kw)
    new = w.entries(after=head)
    assert [e.kind for e in new] == [f"{action}_refused"], out
    (record,) = new
    decision = record.payload["policy_decision"]
    assert record.payload["kernel"] is True and record.record["step_id"] == step
    assert decision["allow"] is False and decision["action"] == action and decision["step_id"] == step
    assert out["ok"] is False and out["exit_code"] == code and out["details"]["ledger_seq"] == record.seq
    assert failed_gates(out["details"]["decision"]) == failed_gates(decision)
    return code, decision


def wait_for_lock_waits(w: World, count: int, role: Role) -> list[int]:
    """The pids of `count` backends of `role` waiting for a lock in this world (a bounded poll)."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        rows = w.admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' "
            "AND usename = %s ORDER BY pid",
            (role.name,),
        ).fetchall()
        if len(rows) >= count:
            return [int(r[0]) for r in rows]
        w.admin.execute("SELECT pg_sleep(0.01)")
    raise AssertionError(f"gave up waiting for {count} lock waits of {role.name}")


def in_thread(outcomes: dict[Any, Any], key: Any, call: Callable[[], Any]) -> threading.Thread:
    """Run `call` in a started thread; its result or exception lands in outcomes[key]."""

    def run() -> None:
        try:
            outcomes[key] = call()
        except Exception as exc:  # handed to the main thread
            outcomes[key] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread


# --------------------------------------------------------------------------- every gate refuses


def _fold_in_undeclared(w: World) -> str:
    plan = w.project / "plans" / "build.yaml"
    plan.write_text(plan.read_text().replace("\n  SB-13: [F-57-1]", "\n  SB-12: [F-T-1]\n  SB-13: [F-57-1]", 1))
    w.rehearse()
    w.approve()
    return "SB-12"


def _dependency_not_committed(w: World) -> str:
    spec = w.project / "steps" / "02-sb-13.yaml"
    spec.write_text(spec.read_text().replace("depends_on: []", "depends_on: [SB-12]", 1))
    w.rehearse("SB-13")
    w.approve("SB-13")
    return "SB-13"


def _reverify_no_longer_holds(w: World) -> str:
    w.rehearse()
    w.approve()
    w.admin.execute(  # one of the 140 enabled metrics
        "UPDATE measurement_registry SET enabled = false "
        "WHERE metric_key = (SELECT min(metric_key) FROM measurement_registry)"
    )
    return "SB-12"


def _schema_changed_since_rehearsal(w: World) -> str:
    w.rehearse()
    w.approve()
    w.admin.execute("CREATE TABLE public.drift_probe (i integer)")
    return "SB-12"


def _no_approval(w: World) -> str:
    w.rehearse()
    return "SB-12"


def _approval_of_the_spec_before_a_one_byte_edit(w: World) -> str:
    w.rehearse()
    w.approve()
    spec = w.project / "steps" / "01-sb-12.yaml"
    text = spec.read_text(encoding="utf-8")
    assert text.count('"verdict_ttl_days": 90') == 1
    spec.write_text(text.replace('"verdict_ttl_days": 90', '"verdict_ttl_days": 91'), encoding="utf-8")
    w.rehearse()  # the edited spec passes its own rehearsal, but nobody approved it
    return "SB-12"


def _decision_missing(w: World) -> str:
    w.rehearse("SB-1-2")
    w.approve("SB-1-2")
    w.approve("SB-1-2", who="council")  # two distinct signers, and no decision A-8
    return "SB-1-2"


def _global_stop_holds(w: World) -> str:
    w.rehearse()
    w.approve()
    w.admin.execute(
        "INSERT INTO dot_tools (code, domain_code, tier, capability, apr_action) "
        "VALUES ('dot_governance_assignment_apply', 'governance', 'C', 'apply', 'add')"
    )
    return "SB-12"


@pytest.mark.parametrize(
    ("setup", "gate"),
    [
        (_fold_in_undeclared, Gate.SPEC),
        (_dependency_not_committed, Gate.DEPENDENCIES),
        (_reverify_no_longer_holds, Gate.REVERIFY),
        (_schema_changed_since_rehearsal, Gate.REHEARSAL),
        (_no_approval, Gate.APPROVALS),
        (_approval_of_the_spec_before_a_one_byte_edit, Gate.APPROVALS),
        (_decision_missing, Gate.DECISIONS),
        (_global_stop_holds, Gate.STATE),
    ],
    ids=lambda v: getattr(v, "__name__", str(v)).strip("_").replace("_", " "),
)
def test_every_gate_refuses_the_commit_and_nothing_is_applied(
    world: World, setup: Callable[[World], str], gate: Gate
) -> None:
    """`gcos commit` exits 3 (6 for re-verify, CONTRACT.md) naming the one gate that fails, and the kernel
    appends only its refusal: no policy decision of an allow, no commit, no table of the step."""
    step = setup(world)
    code, decision = refused(world, step)
    assert failed_gates(decision) == [gate]
    assert code == (ExitCode.REVERIFY_MISMATCH if gate == Gate.REVERIFY else ExitCode.GATE_REFUSED)
    assert world.records(Kind.COMMIT) == [] and world.owner(MADE_BY[step]) is None


def test_a_clone_refuses_the_approval_the_original_honours(world: World, pg_admin_dsn: str) -> None:
    world.rehearse()
    world.approve()
    clone = f"{world.dbname}_clone"
    world.admin.close()  # CREATE DATABASE ... TEMPLATE copies a database nobody is connected to
    with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
        strategy = " STRATEGY FILE_COPY" if admin.info.server_version >= 150000 else ""
        create = sql.SQL("CREATE DATABASE {} TEMPLATE {}" + strategy)
        admin.execute(create.format(sql.Identifier(clone), sql.Identifier(world.dbname)))
    world.admin = psycopg.connect(world.dsn, autocommit=True)
    copy = World(
        make_conninfo(world.dsn, dbname=clone),
        psycopg.connect(make_conninfo(world.dsn, dbname=clone), autocommit=True),
        world.project,
    )
    copy.people = {who: Role(r.name, make_conninfo(r.dsn, dbname=clone), r.oid) for who, r in world.people.items()}
    try:
        code, decision = refused(copy, "SB-12")
        assert code == ExitCode.GATE_REFUSED and failed_gates(decision) == [Gate.APPROVALS]
        assert copy.owner("governance_ruleset") is None
    finally:
        copy.admin.close()
        with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(clone)))
    assert world.commit().ok  # at home, the same approval opens the gate


# --------------------------------------------------------------------------- races and failures around COMMIT


SIDE_STEP = """\
id: SIDE-1
order: 10
title: A side table, in a plan of its own
source: "issue 9 item 3: commits of steps in different plans serialize"
approvals: {signers: 1, roles: [sovereign]}
reverify:
  - name: side_note absent
    sql: SELECT to_regclass('public.side_note') IS NULL
    expect: true
mutation:
  sql: CREATE TABLE side_note (id integer PRIMARY KEY);
  allow:
    - {create_table: side_note}
success:
  - name: side_note exists
    sql: SELECT to_regclass('public.side_note') IS NOT NULL
    expect: true
rollback:
  sql: DROP TABLE side_note;
mode: transactional
"""
SIDE_PLAN = """\
id: side
title: A plan of one step
source: "issue 9 item 3"
steps: [SIDE-1]
fold_ins: {}
global_stop: []
"""


@pytest.mark.parametrize(
    ("second", "refused_at"), [("SB-12", Gate.STATE), ("SIDE-1", Gate.REHEARSAL)], ids=["same step", "other plan"]
)
def test_two_commits_at_once_never_both_apply_on_one_fingerprint(world: World, second: str, refused_at: Gate) -> None:
    """Both wait on the database's one commit lock; whichever goes second reads the world after the first
    applied: the same step is already committed (never re-applied), a step of another plan was rehearsed on
    the schema before it (gate 4)."""
    (world.project / "steps" / "side-1.yaml").write_text(SIDE_STEP)
    (world.project / "plans" / "side.yaml").write_text(SIDE_PLAN)
    for step in dict.fromkeys(("SB-12", second)):
        world.rehearse(step)
        world.approve(step)
    outcomes: dict[int, Any] = {}
    with psycopg.connect(world.dsn, autocommit=True) as holder:
        with holder.transaction():
            holder.execute(COMMIT_LOCK)
            threads = [in_thread(outcomes, i, lambda s=s: world.commit(s)) for i, s in enumerate(("SB-12", second))]
            wait_for_lock_waits(world, 2, world.person("operator"))
        for thread in threads:
            thread.join(WAIT)
    applied = [r for r in outcomes.values() if not isinstance(r, Exception)]
    refusals = [r for r in outcomes.values() if isinstance(r, GateRefused)]
    assert len(applied) == 1 and len(refusals) == 1, outcomes
    (refusal,) = refusals
    assert refusal.exit_code == ExitCode.GATE_REFUSED
    assert refusing_gate(refusal.details["decision"]) == refused_at
    (commit,) = world.records(Kind.COMMIT)
    assert commit.seq == applied[0].ledger_seq
    assert world.admin.execute(
        "SELECT count(*) FROM evolution_snapshots WHERE scope LIKE 'governance.%'"
    ).fetchone() == (int(commit.record["step_id"] == "SB-12"),)


def test_a_revocation_and_a_commit_never_overlap(world: World) -> None:
    """A revocation in flight holds the commit back until it commits, and then refuses it; a revocation that
    comes while the kernel applies the step waits until the commit ends and lands after it."""
    world.rehearse()
    receipt = world.approve()
    outcomes: dict[str, Any] = {}
    with world.person("sovereign").connect() as sovereign, sovereign.transaction():
        approvals.revoke(sovereign, receipt.approval_id, "withdrawn")
        first = in_thread(outcomes, "first", world.commit)
        wait_for_lock_waits(world, 1, world.person("operator"))  # on the approval row the revocation locked
    first.join(WAIT)
    assert isinstance(outcomes["first"], GateRefused), outcomes
    assert failed_gates(outcomes["first"].details["decision"]) == [Gate.APPROVALS]
    assert [e.kind for e in world.entries()][-2:] == [Kind.APPROVAL_REVOCATION, Kind.COMMIT_REFUSED]

    again = world.approve()
    with psycopg.connect(world.dsn, autocommit=True) as holder:
        with holder.transaction():
            holder.execute("LOCK TABLE public.evolution_snapshots IN SHARE MODE")  # the step's INSERT waits here
            second = in_thread(outcomes, "second", lambda: world.commit(settings=SessionSettings(lock_timeout="60s")))
            wait_for_lock_waits(world, 1, world.person("operator"))
            late = in_thread(
                outcomes, "revocation", lambda: commands.revoke(world.target("sovereign"), again.approval_id)
            )
            wait_for_lock_waits(world, 1, world.person("sovereign"))  # on the approval row the commit holds
        second.join(WAIT)
        late.join(WAIT)
    committed, revocation = outcomes["second"], outcomes["revocation"]
    assert committed.ok and committed.outcome == Outcome.APPLIED, outcomes
    assert revocation.ledger_seq > committed.ledger_seq  # it went through once the commit had ended
    assert world.owner("governance_ruleset") == "gcos_kernel" and world.state("SB-12") == StepState.COMMITTED


# --------------------------------------------------------------------------- commit, re-commit and rollback


def test_committed_steps_are_never_re_applied_and_roll_back_with_their_own_approval(world: World) -> None:
    """SB-12, then SIDE-1 (of another plan, depending on it) commit as the named operator; SB-12 is never
    re-applied; its rollback waits for its dependant; SIDE-1's rollback needs its own approval and returns the
    world to the fingerprint its commit recorded before it applied; then SB-12's rollback evidence undoes it."""
    (world.project / "steps" / "side-1.yaml").write_text(SIDE_STEP.replace("\norder:", "\ndepends_on: [SB-12]\norder:"))
    (world.project / "plans" / "side.yaml").write_text(SIDE_PLAN)
    for step in ("SB-12", "SIDE-1"):
        world.rehearse(step)
        world.approve(step)
        assert world.commit(step).ok
    assert world.owner("governance_ruleset") == "gcos_kernel"  # made by the kernel, governed from birth
    sb12, side = world.records(Kind.COMMIT)
    assert [c.record["step_id"] for c in (sb12, side)] == ["SB-12", "SIDE-1"]
    assert sb12.payload["kernel"] is True and sb12.payload["break_glass"] is False
    assert sb12.record["actor"]["role"] == world.person("operator").name
    decision = ledger.read_one(world.admin, sb12.payload["policy_decision_seq"])
    assert decision.kind == Kind.POLICY_DECISION and decision.payload["allow"] is True
    assert decision.record["trace_id"] == sb12.record["trace_id"]

    world.approve("SB-12")  # even with a fresh approval
    code, refusal = refused(world, "SB-12")
    assert code == ExitCode.GATE_REFUSED and refusing_gate(refusal) == Gate.STATE
    assert world.admin.execute("SELECT count(*) FROM governance_ruleset").fetchone() == (1,)

    world.approve("SB-12", rollback=True)
    code, refusal = refused(world, "SB-12", "rollback")  # SIDE-1 depends on it and is committed
    assert code == ExitCode.GATE_REFUSED and refusing_gate(refusal) == Gate.DEPENDENCIES
    code, refusal = refused(world, "SIDE-1", "rollback")  # a commit approval approves no rollback
    assert code == ExitCode.GATE_REFUSED and failed_gates(refusal) == [Gate.APPROVALS]

    world.approve("SIDE-1", rollback=True)
    code, out = world.cli("rollback", "SIDE-1")
    assert code == 0 and out["ok"], out
    fresh = fingerprint(world.admin, load_project(world.project).step("SIDE-1").watch)
    assert fresh["hash"] == side.payload["fingerprint_before"]["hash"] != side.payload["fingerprint_after"]["hash"]
    assert fresh["schema_hash"] == side.payload["fingerprint_before"]["schema_hash"]
    (rollback,) = world.records(Kind.ROLLBACK)
    assert rollback.payload["kernel"] is True and rollback.payload["of_commit_seq"] == side.seq
    assert rollback.payload["fingerprint_after"]["hash"] == side.payload["fingerprint_before"]["hash"]
    assert world.state("SIDE-1") == StepState.ROLLED_BACK and world.state("SB-12") == StepState.COMMITTED

    code, out = world.cli("rollback", "SB-12")  # no dependant any more: SB-12's own evidence undoes it
    assert code == 0 and out["ok"], out
    assert world.owner("governance_ruleset") is None and world.state("SB-12") == StepState.ROLLED_BACK
