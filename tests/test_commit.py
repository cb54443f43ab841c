"""gcos commit and rollback against a real PostgreSQL: every gate re-checked inside one transaction, the step and
its ledger record together or not at all (issue 5 "What it must show"; CONTRACT.md "Gates", "Authority",
"Step states", "Exit codes").

Each test gets a fresh copy of seed 002's reference world with gcos installed and its own LOGIN roles mapped to
principals of THAT database. Rehearsals and commits run as the superuser of the world (it owns the world's
tables; a superuser may rehearse and commit but never approve); approvals, decisions and revocations run as real
human principals, each through its own connection. Every refusal is exit 3 (GateRefused) with its reason, leaves
the world untouched, and appends exactly one ``commit_refused`` ledger record carrying the policy decision.
Waiting is always a bounded poll on a database condition (lock waits in pg_stat_activity, the database clock),
never a fixed sleep.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import Role
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from typer.testing import CliRunner

from gcos import apply, approvals, commands, fingerprint, gates, ledger
from gcos.apply import ApplyHooks
from gcos.cli import app
from gcos.errors import DatabaseUnavailable, ExitCode, GateRefused, GcosError, ReverifyMismatch
from gcos.install import install
from gcos.principals import add_principal
from gcos.spec import load_project
from gcos.target import SessionSettings, Target

# role hint -> (principal kind, gcos roles); each is also granted the matching gcos_<role> group roles
PEOPLE: dict[str, tuple[str, tuple[str, ...]]] = {
    "alice": ("human", ("sovereign",)),
    "carol": ("human", ("sovereign",)),
    "bob": ("human", ("council",)),
    "sam": ("human", ("operator", "sovereign")),  # an operator who is also a sovereign: never his own approver
    "aggie": ("agent", ("sovereign",)),
}
MAIN_CHAIN = ("SB-12", "SB-13", "SB-10", "SB-11")
WAIT = 30.0  # seconds: the bound of every poll below


@dataclass
class World:
    """The reference world of this test (superuser DSN), its project copy and its principals (made lazily)."""

    dsn: str
    project_dir: Path
    roles: dict[str, Role] = field(default_factory=dict)

    def role(self, who: str) -> Role:
        if who not in self.roles:
            kind, gcos_roles = PEOPLE[who]
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
                add_principal(admin, name, name=who.title(), kind=kind, roles=gcos_roles, grant=False)
                row = admin.execute("SELECT oid::bigint FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
            assert row is not None
            self.roles[who] = Role(name, make_conninfo(self.dsn, user=name, password=password), int(row[0]))
        return self.roles[who]

    def target(self, who: str | None = None) -> Target:
        """The world as the superuser (who=None) or as one of the PEOPLE."""
        return Target(self.role(who).dsn if who else self.dsn, "--dsn")

    @property
    def dbname(self) -> str:
        return str(conninfo_to_dict(self.dsn)["dbname"])

    def one(self, query: str, params: tuple[Any, ...] = ()) -> Any:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            row = conn.execute(query, params or None).fetchone()
        assert row is not None
        return row[0]

    def execute(self, query: str | sql.Composed, params: tuple[Any, ...] = ()) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(query, params or None)

    def entries(self) -> list[ledger.LedgerEntry]:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            return ledger.read_all(conn)

    def records(self, kind: str, step: str | None = None) -> list[ledger.LedgerEntry]:
        return [e for e in self.entries() if e.kind == kind and (step is None or e.record.get("step_id") == step)]

    def exists(self, table: str) -> bool:
        return bool(self.one("SELECT to_regclass(%s) IS NOT NULL", (f"public.{table}",)))

    def state(self, step: str) -> str:
        (status,) = commands.status(self.target(), self.project_dir, step).steps
        return status.state

    # the gcos commands, as the right people
    def rehearse(self, step: str = "SB-12", who: str | None = None) -> None:
        result = commands.rehearse(self.target(who), self.project_dir, step)
        assert result.ok, result.message

    def approve(
        self,
        who: str,
        step: str = "SB-12",
        *,
        verdict: str = "approve",
        expires_in: str = "24h",
        rollback: bool = False,
    ) -> approvals.ApprovalReceipt:
        return commands.approve(
            self.target(who), self.project_dir, step, verdict=verdict, expires_in=expires_in, rollback=rollback
        )

    def commit(self, step: str = "SB-12", who: str | None = None, hooks: ApplyHooks | None = None) -> apply.ApplyResult:
        return commands.commit(self.target(who), self.project_dir, step, hooks=hooks)


@pytest.fixture
def world(world_dsn: str, gcos_installed: None, project_dir: Path) -> Iterator[World]:
    """The reference world with gcos installed in it; the roles made for the test are dropped afterwards."""
    with psycopg.connect(world_dsn, autocommit=True) as conn:
        install(conn)
    w = World(world_dsn, project_dir)
    try:
        yield w
    finally:
        with psycopg.connect(world_dsn, autocommit=True) as admin:
            for role in reversed(list(w.roles.values())):
                admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role.name,))
                admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role.name)))
                admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role.name)))


def poll(conn: psycopg.Connection[Any], query: str, params: tuple[Any, ...] = (), what: str = "") -> Any:
    """Run `query` until its first column is truthy (bounded by WAIT); return that value."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        row = conn.execute(query, params).fetchone()
        if row is not None and row[0]:
            return row[0]
        conn.execute("SELECT pg_sleep(0.005)")
    raise AssertionError(f"gave up waiting for {what or query}")


def wait_for_lock_wait(w: World, condition: str, params: tuple[Any, ...] = ()) -> int:
    """The pid of a backend of this world that waits for a lock and matches `condition` (SQL on pg_stat_activity)."""
    with psycopg.connect(w.dsn, autocommit=True) as admin:
        return int(
            poll(
                admin,
                f"SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' "
                f"AND ({condition}) LIMIT 1",
                params,
                what=f"a lock wait where {condition}",
            )
        )


def refused_commit(
    w: World,
    step: str,
    match: str,
    *,
    who: str | None = None,
    absent: str | None = "governance_ruleset",
    error: type[GcosError] = GateRefused,
    hooks: ApplyHooks | None = None,
) -> tuple[GcosError, ledger.LedgerEntry]:
    """Commit `step`, expect the refusal `match` (a regex), and prove nothing was applied and it was recorded."""
    before = w.entries()
    with pytest.raises(error) as info:
        w.commit(step, who, hooks)
    exc = info.value
    assert exc.exit_code == (ExitCode.REVERIFY_MISMATCH if error is ReverifyMismatch else ExitCode.GATE_REFUSED)
    assert re.search(match, exc.message), exc.message
    new = w.entries()[len(before) :]
    assert [e.kind for e in new] == ["commit_refused"], "exactly one refusal record, nothing else"
    (record,) = new
    decision = record.payload["policy_decision"]
    assert decision["allow"] is False and decision["action"] == "commit" and decision["step_id"] == step
    assert exc.message.startswith(decision["refusal"]) and decision["failed"]
    assert isinstance(exc.details, dict) and exc.details["ledger_seq"] == record.seq
    assert record.record["step_id"] == step
    if absent is not None:
        assert not w.exists(absent), f"{absent} was applied"
    assert [e for e in w.entries() if e.kind == "commit"] == [e for e in before if e.kind == "commit"]
    return exc, record


# --------------------------------------------------------------------------- each gate-5/6 refusal


def test_no_approval_is_refused_with_the_command_that_opens_it(world: World) -> None:
    world.rehearse()
    spec = load_project(world.project_dir).step("SB-12").hash
    exc, _ = refused_commit(world, "SB-12", "^No approval for SB-12 bound to spec")
    assert exc.message == (
        f"No approval for SB-12 bound to spec {spec[:12]}…; ask a sovereign to run: "
        "gcos approve SB-12 --verdict approve --expires-in 24h"
    )
    # the CLI says the same sentence and exits 3
    result = CliRunner().invoke(app, ["commit", "SB-12", "--dsn", world.dsn, "--project", str(world.project_dir)])
    assert result.exit_code == 3, result.output
    assert "No approval for SB-12" in result.output
    assert len(world.records("commit_refused")) == 2 and not world.exists("governance_ruleset")
    assert world.state("SB-12") == "rehearsed"


def test_the_operator_never_approves_his_own_step(world: World) -> None:
    sam = world.role("sam")  # operator + sovereign; may rehearse SB-12 with these privileges
    world.execute(sql.SQL("GRANT pg_read_all_data TO {}").format(sql.Identifier(sam.name)))
    world.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(sql.Identifier(sam.name)))
    world.execute(sql.SQL("GRANT INSERT, DELETE ON evolution_snapshots TO {}").format(sql.Identifier(sam.name)))
    world.rehearse(who="sam")
    mine = world.approve("sam")
    refused_commit(
        world, "SB-12", rf"approval {mine.approval_id} by Sam is by Sam, who ran the rehearsal \(no self-approval\)"
    )
    world.rehearse()  # the superuser's rehearsal is the evidence now; Sam commits
    refused_commit(
        world,
        "SB-12",
        rf"approval {mine.approval_id} by Sam is by Sam, the committer himself \(no self-approval\); "
        "ask a sovereign other than Sam to run",
        who="sam",
    )
    # rehearsed and committed by someone else, Sam's approval is a real one
    result = world.commit()
    assert result.ok and result.decision is not None
    assert result.decision.gate("approvals").evidence == (mine.approval_id,)
    assert world.exists("governance_ruleset")


def test_an_agent_never_approves(world: World) -> None:
    world.rehearse()
    with pytest.raises(GateRefused, match="is of kind agent and cannot approve"):
        world.approve("aggie")
    refused_commit(world, "SB-12", "^No approval for SB-12")
    # a human's approval stops counting once the principal is an agent
    receipt = world.approve("alice")
    with psycopg.connect(world.dsn, autocommit=True) as admin:
        add_principal(admin, world.role("alice").name, name="Alice", kind="agent", roles=["sovereign"], grant=False)
    refused_commit(
        world,
        "SB-12",
        rf"approval {receipt.approval_id} by Alice is by Alice, an agent principal \(only humans approve\)",
    )


def test_a_superuser_never_approves(world: World) -> None:
    world.rehearse()
    with pytest.raises(GateRefused, match="is a superuser and cannot approve"):
        commands.approve(world.target(), world.project_dir, "SB-12", verdict="approve", expires_in="24h")
    refused_commit(world, "SB-12", "^No approval for SB-12")
    # a human sovereign's approval stops counting once the role is a superuser
    receipt = world.approve("alice")
    world.execute(sql.SQL("ALTER ROLE {} SUPERUSER").format(sql.Identifier(world.role("alice").name)))
    refused_commit(world, "SB-12", rf"approval {receipt.approval_id} by Alice is by Alice, whose role is a superuser")


def test_expiry_knife_edge_by_the_database_clock(world: World) -> None:
    """The database's own rule (gcos._approval_binding, what gate 5 applies to every approval) at the knife
    edge: expires_at <= now is expired, by the database clock the gates read."""
    world.rehearse()
    receipt = world.approve("alice")
    project = load_project(world.project_dir)
    step = project.step("SB-12")
    plan = project.plan_of(step.id)
    assert plan is not None
    with psycopg.connect(world.dsn, autocommit=True) as conn:
        assert gates.register(conn, step, plan)
        row = conn.execute(
            "SELECT expires_at FROM gcos.os_proposal_approvals WHERE id = %s", (receipt.approval_id,)
        ).fetchone()
        assert row is not None and row[0] == receipt.expires_at  # the ledger and the table agree to the microsecond
        tick = timedelta(microseconds=1)
        outcomes = {}
        for name, at in (("before", row[0] - tick), ("at", row[0]), ("after", row[0] + tick)):
            why = conn.execute(
                "SELECT gcos._approval_binding(c || jsonb_build_object('now', %s::timestamptz), a.spec_hash, "
                "a.plan_hash, a.system_identifier, a.database_name::text, a.database_oid::bigint, false, "
                "a.expires_at, a.ledger_seq) FROM gcos._gates_context(%s, %s, 'commit', '{}') AS c, "
                "gcos.os_proposal_approvals AS a WHERE a.id = %s",
                (at, step.hash, plan.hash, receipt.approval_id),
            ).fetchone()
            assert why is not None
            outcomes[name] = why[0]
    assert outcomes["before"] is None
    expired = f"expired at {gates.utc_text(receipt.expires_at)}"
    assert outcomes["at"].startswith(expired) and outcomes["after"].startswith(expired)


def test_an_expired_approval_is_refused_end_to_end(world: World) -> None:
    world.rehearse()
    receipt = world.approve("alice", expires_in="1s")
    with psycopg.connect(world.dsn, autocommit=True) as conn:
        poll(
            conn,
            "SELECT clock_timestamp() > expires_at FROM gcos.os_proposal_approvals WHERE id = %s",
            (receipt.approval_id,),
            what="the approval to expire by the database clock",
        )
    refused_commit(
        world,
        "SB-12",
        rf"approval {receipt.approval_id} by Alice expired at {re.escape(gates.utc_text(receipt.expires_at))} "
        r"\(database clock now ",
    )
    assert world.state("SB-12") == "rehearsed"


def test_an_approval_that_expires_while_the_step_is_applied_refuses_the_commit(world: World) -> None:
    """The last statement before COMMIT re-checks expiry by the database clock: never applied on an expired one."""
    world.rehearse()
    receipt = world.approve("alice", expires_in="2s")
    seen: dict[str, Any] = {}

    def outlive_the_approval(conn: psycopg.Connection[Any]) -> None:
        row = conn.execute(
            "SELECT record -> 'payload' -> 'allow' FROM gcos.ledger WHERE kind = 'policy_decision' "
            "ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        seen["allowed_at_the_gate"] = row is not None and row[0] is True
        poll(conn, "SELECT clock_timestamp() > %s", (receipt.expires_at,), what="the approval to expire")

    _, record = refused_commit(
        world,
        "SB-12",
        rf"approval {receipt.approval_id} by Alice expired at .* \(found at the last check before COMMIT; "
        "nothing was applied\\)$",
        hooks=ApplyHooks(before_commit=outlive_the_approval),
    )
    assert seen["allowed_at_the_gate"], "the approval must still have held when the gates were evaluated"
    assert record.payload["at"] == "before_commit"
    assert world.records("policy_decision") == []  # the allow record died with the transaction


def test_a_revoked_approval_is_refused(world: World) -> None:
    world.rehearse()
    receipt = world.approve("alice")
    commands.revoke(world.target("alice"), receipt.approval_id, reason="changed my mind")
    refused_commit(world, "SB-12", rf"approval {receipt.approval_id} by Alice was revoked")
    assert world.state("SB-12") == "rehearsed"


def test_an_approval_of_the_spec_before_a_one_byte_sql_edit_is_stale(world: World) -> None:
    world.rehearse()
    receipt = world.approve("alice")
    path = world.project_dir / "steps" / "01-sb-12.yaml"
    text = path.read_text(encoding="utf-8")
    assert text.count('"verdict_ttl_days": 90') == 1
    path.write_text(text.replace('"verdict_ttl_days": 90', '"verdict_ttl_days": 91'), encoding="utf-8")  # one byte
    new = load_project(world.project_dir).step("SB-12").hash
    assert new != receipt.spec_hash
    world.rehearse()  # the edited spec passes its own rehearsal ...
    refused_commit(  # ... but nobody approved it
        world,
        "SB-12",
        rf"approval {receipt.approval_id} by Alice is bound to spec {receipt.spec_hash[:12]}…, "
        rf"not the current {new[:12]}…",
    )


def test_an_approval_from_another_database_does_not_count(world: World, pg_admin_dsn: str) -> None:
    world.rehearse()
    receipt = world.approve("alice")
    clone = f"gcos_clone_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(clone), sql.Identifier(world.dbname))
        )
    try:
        copy = World(make_conninfo(world.dsn, dbname=clone), world.project_dir, world.roles)
        refused_commit(
            copy,
            "SB-12",
            rf"approval {receipt.approval_id} by Alice is from another database \({world.dbname}, this is {clone}\)",
        )
    finally:
        with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(clone)))
    assert world.commit().ok  # at home, the same approval opens the gate


@pytest.mark.parametrize("verdict", ["reject", "defer", "approve_with_conditions"])
def test_only_the_verdict_approve_opens_the_gate(world: World, verdict: str) -> None:
    world.rehearse()
    receipt = world.approve("alice", verdict=verdict)
    refused_commit(
        world,
        "SB-12",
        rf"approval {receipt.approval_id} by Alice has verdict {verdict} \(only approve opens the gate\)",
    )


def test_one_signer_where_two_are_required(world: World) -> None:
    world.rehearse("step-7")
    commands.decide(world.target("carol"), "A-8", verdict="approve", expires_in="24h")
    alice = world.approve("alice", "SB-1-2")
    refused_commit(
        world,
        "SB-1-2",
        rf"^SB-1-2 needs 2 distinct approvers and has 1 \(Alice \(approval {alice.approval_id}\)\)",
        absent="governance_object_ownership",
    )
    world.approve("alice", "SB-1-2")  # the same person again still counts once
    refused_commit(world, "SB-1-2", "needs 2 distinct approvers and has 1", absent="governance_object_ownership")
    world.approve("bob", "SB-1-2")  # a council member cross-signs
    result = world.commit("SB-1-2")
    assert result.ok and world.exists("governance_object_ownership")


def test_a_required_decision_missing(world: World) -> None:
    world.rehearse("step-7")
    world.approve("alice", "SB-1-2")
    world.approve("bob", "SB-1-2")
    refused_commit(
        world,
        "SB-1-2",
        r"^Decision A-8 has never been recorded; ask a sovereign or council member to run: "
        r"gcos decide A-8 --verdict approve --expires-in 24h$",
        absent="governance_object_ownership",
    )
    commands.decide(world.target("carol"), "A-8", verdict="reject", expires_in="24h")
    refused_commit(world, "SB-1-2", r"^Decision A-8 stands at reject", absent="governance_object_ownership")


# --------------------------------------------------------------------------- the world moved since rehearsal


def test_a_schema_change_since_the_rehearsal_is_refused(world: World) -> None:
    world.rehearse()
    world.approve("alice")
    world.execute("CREATE TABLE drift_probe (i integer)")
    refused_commit(world, "SB-12", "^Database changed since rehearsal — rehearse again")


def test_a_reverify_mismatch_at_commit_is_exit_6(world: World) -> None:
    world.rehearse()
    world.approve("alice")
    world.execute("CREATE TABLE governance_ruleset (i integer)")  # out of band, after the rehearsal
    refused_commit(
        world,
        "SB-12",
        "^Re-verify of SB-12 does not hold: .*governance_ruleset absent",
        absent=None,
        error=ReverifyMismatch,
    )
    assert world.one("SELECT count(*) FROM evolution_snapshots WHERE scope LIKE 'governance.%'") == 0


# --------------------------------------------------------------------------- races and failures around COMMIT


def test_a_revocation_during_the_commit_waits_until_it_ends(world: World) -> None:
    world.rehearse()
    receipt = world.approve("alice")
    alice = world.role("alice")
    seen: dict[str, Any] = {}

    def revoke() -> None:
        try:
            seen["revocation"] = commands.revoke(world.target("alice"), receipt.approval_id, reason="too late")
        except Exception as exc:  # handed to the main thread
            seen["error"] = exc

    def race(conn: psycopg.Connection[Any]) -> None:
        thread = threading.Thread(target=revoke)
        thread.start()
        seen["thread"] = thread
        seen["pid"] = wait_for_lock_wait(world, "usename = %s", (alice.name,))
        seen["blocked_when_commit_proceeds"] = thread.is_alive()

    result = world.commit(hooks=ApplyHooks(before_commit=race))
    seen["thread"].join(WAIT)
    assert "error" not in seen, seen.get("error")
    assert result.ok and seen["blocked_when_commit_proceeds"]
    revocation: approvals.RevocationReceipt = seen["revocation"]
    assert result.ledger_seq is not None and revocation.ledger_seq > result.ledger_seq  # it committed after
    assert world.exists("governance_ruleset") and world.state("SB-12") == "committed"


def test_a_revocation_that_commits_first_is_never_ignored(world: World) -> None:
    world.rehearse()
    receipt = world.approve("alice")
    seen: dict[str, Any] = {}

    def commit() -> None:
        try:
            seen["result"] = world.commit()
        except Exception as exc:
            seen["error"] = exc

    with psycopg.connect(world.role("alice").dsn, autocommit=True) as alice, alice.transaction():
        approvals.revoke(alice, receipt.approval_id, "withdrawn")
        thread = threading.Thread(target=commit)
        thread.start()
        wait_for_lock_wait(world, "query LIKE %s", ("%gcos.lock_approvals%",))  # the commit waits for us
    thread.join(WAIT)
    assert "result" not in seen, "applied after a revocation that committed first"
    exc = seen["error"]
    assert isinstance(exc, GateRefused) and exc.exit_code == 3
    assert f"approval {receipt.approval_id} by Alice was revoked" in exc.message
    assert not world.exists("governance_ruleset") and world.records("commit") == []
    assert [e.kind for e in world.entries()][-2:] == ["approval_revocation", "commit_refused"]


def test_two_commits_of_the_same_step_at_once_apply_it_once(world: World) -> None:
    world.rehearse()
    world.approve("alice")
    seen: dict[str, Any] = {}

    def second() -> None:
        try:
            seen["second"] = world.commit()
        except Exception as exc:
            seen["error"] = exc

    def while_the_first_holds_its_lock(conn: psycopg.Connection[Any]) -> None:
        thread = threading.Thread(target=second)
        thread.start()
        seen["thread"] = thread
        wait_for_lock_wait(world, "pid <> %s", (conn.info.backend_pid,))  # the second waits for the commit lock

    first = world.commit(hooks=ApplyHooks(before_commit=while_the_first_holds_its_lock))
    seen["thread"].join(WAIT)
    assert first.ok and "second" not in seen
    exc = seen["error"]
    assert isinstance(exc, GateRefused) and exc.exit_code == 3
    assert exc.message.startswith(f"SB-12 is already committed (commit seq {first.ledger_seq}) and is never re-applied")
    assert [e.seq for e in world.records("commit")] == [first.ledger_seq]
    assert len(world.records("commit_refused")) == 1
    assert world.one("SELECT count(*) FROM governance_ruleset") == 1
    assert world.one("SELECT count(*) FROM evolution_snapshots WHERE scope LIKE 'governance.%'") == 1


def test_a_committed_step_is_never_re_applied(world: World) -> None:
    world.rehearse()
    world.approve("alice")
    first = world.commit()
    assert first.ok and first.outcome == "applied" and world.state("SB-12") == "committed"
    world.approve("carol")  # even with a fresh approval
    exc, _ = refused_commit(world, "SB-12", "^SB-12 is already committed", absent=None)
    assert exc.message == (
        f"SB-12 is already committed (commit seq {first.ledger_seq}) and is never re-applied; "
        "to apply it again, first run: gcos rollback SB-12"
    )
    assert len(world.records("commit")) == 1
    assert world.one("SELECT count(*) FROM governance_ruleset") == 1


KILLED_CLIENT = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from gcos import commands
    from gcos.apply import ApplyHooks
    from gcos.target import Target

    def die(conn):
        print(conn.info.backend_pid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # the client dies between the policy decision record and COMMIT

    commands.commit(Target(sys.argv[1], "--dsn"), Path(sys.argv[2]), "SB-12", hooks=ApplyHooks(before_commit=die))
    """
)


def test_a_client_killed_mid_commit_leaves_neither_the_step_nor_its_record(world: World) -> None:
    world.rehearse()
    world.approve("alice")
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_CLIENT, world.dsn, str(world.project_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    pid = int(proc.stdout.split()[0])
    with psycopg.connect(world.dsn, autocommit=True) as conn:
        poll(conn, "SELECT NOT EXISTS (SELECT FROM pg_stat_activity WHERE pid = %s)", (pid,), "the orphan to end")
    assert not world.exists("governance_ruleset")
    assert world.records("commit") == [] and world.records("policy_decision") == []
    (status,) = commands.status(world.target(), world.project_dir, "SB-12").steps
    assert status.state == "approved", status.detail  # not committed: the next commit may apply it, once
    result = world.commit()
    assert result.ok and world.state("SB-12") == "committed"


def test_a_connection_lost_before_commit_is_settled_from_the_ledger(world: World) -> None:
    world.rehearse()
    world.approve("alice")
    seen: dict[str, Any] = {}

    def kill_my_backend(conn: psycopg.Connection[Any]) -> None:
        seen["decision"] = conn.execute(
            "SELECT seq FROM gcos.ledger WHERE kind = 'policy_decision' ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        with psycopg.connect(world.dsn, autocommit=True) as admin:
            assert admin.execute("SELECT pg_terminate_backend(%s, 30000)", (conn.info.backend_pid,)).fetchone() == (
                True,
            )

    with pytest.raises(DatabaseUnavailable) as info:
        world.commit(hooks=ApplyHooks(before_commit=kill_my_backend))
    exc = info.value
    assert exc.exit_code == ExitCode.DATABASE_UNAVAILABLE
    assert seen["decision"] is not None  # the transaction was killed after its allowing policy decision
    found = re.search(
        r"^the connection dropped during commit of SB-12 \(.*\); the ledger has no record of run ([0-9a-f]{32}), so "
        "nothing was applied; retry when the database is back\\.$",
        exc.message,
    )
    assert found, exc.message
    assert world.one("SELECT count(*) FROM gcos.ledger WHERE record::text LIKE %s", (f"%{found[1]}%",)) == 0
    assert not world.exists("governance_ruleset") and world.records("commit") == []
    assert world.records("policy_decision") == []
    assert world.state("SB-12") == "approved"
    assert world.commit().ok  # retrying is safe: nothing was applied


def test_settling_in_doubt_waits_for_the_dropped_transaction_and_finds_an_applied_run(world: World) -> None:
    world.rehearse()
    world.approve("alice")
    result = world.commit()
    base = {"action": "commit", "step": "SB-12", "ref": result.ref, "spec_hash": result.spec_hash}
    key = apply.COMMIT_LOCK_KEY
    settled = apply.settle_in_doubt(
        world.target(), SessionSettings(), {**base, "run_id": result.run_id}, OSError("EOF")
    )
    assert settled.outcome == "in_doubt_applied" and settled.ok and settled.ledger_seq == result.ledger_seq
    assert "was applied" in settled.message
    # while the commit lock is held (the dropped transaction has not ended), the outcome is unknown, never "not applied"
    with psycopg.connect(world.dsn, autocommit=True) as holder, holder.transaction():
        holder.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (key,))
        with pytest.raises(DatabaseUnavailable, match=r"its transaction has not ended yet .* is unknown"):
            apply.settle_in_doubt(
                world.target(), SessionSettings(lock_timeout="100ms"), {**base, "run_id": "0" * 32}, OSError()
            )


def test_a_commit_waiting_too_long_for_the_commit_lock_says_who_holds_it(world: World) -> None:
    world.rehearse()
    world.approve("alice")
    key = apply.COMMIT_LOCK_KEY
    with psycopg.connect(world.dsn, autocommit=True) as holder, holder.transaction():
        holder.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (key,))
        with pytest.raises(DatabaseUnavailable) as info:
            commands.commit(world.target(), world.project_dir, "SB-12", settings=SessionSettings(lock_timeout="100ms"))
        assert info.value.exit_code == 8
        assert f"another commit or rollback is in progress in this database (pid {holder.info.backend_pid}" in (
            info.value.message
        )
    assert not world.exists("governance_ruleset") and world.records("commit") == []


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


def test_commits_of_steps_in_different_plans_never_both_apply_on_a_stale_fingerprint(world: World) -> None:
    (world.project_dir / "steps" / "side-1.yaml").write_text(SIDE_STEP)
    (world.project_dir / "plans" / "side.yaml").write_text(SIDE_PLAN)
    for step in ("SB-12", "SIDE-1"):  # both rehearsed on the same schema, both approved
        world.rehearse(step)
        world.approve("alice", step)
    seen: dict[str, Any] = {}

    def second() -> None:
        try:
            seen["second"] = world.commit("SIDE-1")
        except Exception as exc:
            seen["error"] = exc

    def while_the_first_holds_its_lock(conn: psycopg.Connection[Any]) -> None:
        thread = threading.Thread(target=second)
        thread.start()
        seen["thread"] = thread
        wait_for_lock_wait(world, "pid <> %s", (conn.info.backend_pid,))

    first = world.commit("SB-12", hooks=ApplyHooks(before_commit=while_the_first_holds_its_lock))
    seen["thread"].join(WAIT)
    assert first.ok and "second" not in seen
    exc = seen["error"]
    assert isinstance(exc, GateRefused) and exc.exit_code == ExitCode.GATE_REFUSED
    failed = [g["number"] for g in exc.details["decision"]["gates"] if not g["allow"]]
    assert failed == [4]  # its rehearsal was on the schema before SB-12: rehearse again
    assert world.exists("governance_ruleset") and not world.exists("side_note")
    assert [e.record["step_id"] for e in world.records("commit")] == ["SB-12"]


# --------------------------------------------------------------------------- the main chain and its rollback


def test_steps_1_to_4_commit_in_order_and_step_4_rolls_back_to_its_pre_commit_fingerprint(world: World) -> None:
    commits: dict[str, apply.ApplyResult] = {}
    for step in MAIN_CHAIN:
        world.rehearse(step)
        world.approve("alice", step)
        commits[step] = world.commit(step)
        assert commits[step].ok, commits[step].message
    states = {s.id: s.state for s in commands.status(world.target(), world.project_dir).steps}
    assert {s: states[s] for s in MAIN_CHAIN} == dict.fromkeys(MAIN_CHAIN, "committed")
    assert [e.record["step_id"] for e in world.records("commit")] == list(MAIN_CHAIN)

    # a dependent blocks the rollback of SB-12
    world.approve("alice", "SB-12", rollback=True)
    before = world.entries()
    with pytest.raises(GateRefused) as info:
        commands.rollback(world.target(), world.project_dir, "SB-12")
    assert info.value.exit_code == 3
    assert info.value.message.startswith("SB-10 depends on SB-12 and is committed; roll back the dependents first")
    assert [e.kind for e in world.entries()[len(before) :]] == ["rollback_refused"]
    assert world.exists("governance_ruleset") and world.state("SB-12") == "committed"

    # the rollback of SB-11 needs its own approval, then returns the world to the fingerprint before its commit
    sb11 = load_project(world.project_dir).step("SB-11")
    (commit_record,) = world.records("commit", "SB-11")
    with pytest.raises(
        GateRefused,
        match=r"^No approval counts for the rollback of SB-11: approval \d+ by Alice approves the commit of SB-11, "
        "not the rollback",
    ):
        commands.rollback(world.target(), world.project_dir, "SB-11")
    world.approve("alice", "SB-11", rollback=True)
    undone = commands.rollback(world.target(), world.project_dir, "SB-11")
    assert undone.ok and undone.action == "rollback"
    with psycopg.connect(world.dsn, autocommit=True) as conn:
        fresh = fingerprint.take(conn, watch=sb11.watch)
    pre_commit = commit_record.payload["fingerprint_before"]
    assert fresh.hash == pre_commit["hash"] == undone.fingerprint_after["hash"]
    assert fresh.schema_hash == pre_commit["schema_hash"]
    assert fresh.hash != commit_record.payload["fingerprint_after"]["hash"]
    (rollback_record,) = world.records("rollback", "SB-11")
    assert rollback_record.payload["of_commit_seq"] == commit_record.seq
    assert world.state("SB-11") == "rolled_back" and world.state("SB-10") == "committed"
