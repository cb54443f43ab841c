"""The kernel commits (gcos/sql/012_kernel_commit.sql): where schema public is adopted, `gcos commit` and
`gcos rollback` run inside the database as gcos_kernel, gated there, every record written by the kernel, and
no client can claim a rehearsal, decision or commit (issue 9 items 2, 3 and 8)."""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import MakeRole, Role
from psycopg import sql
from psycopg.types.json import Jsonb
from test_commit import SIDE_PLAN, SIDE_STEP
from typer.testing import CliRunner

from gcos import commands, fingerprint, ledger, registry
from gcos.cli import app
from gcos.errors import DatabaseUnavailable, ExitCode, GateRefused, StopHeld
from gcos.spec import load_project
from gcos.target import SessionSettings, Target

SPEC = "f" * 64


@dataclass
class World:
    dsn: str
    admin: psycopg.Connection[Any]
    project: Path
    people: dict[str, Role]

    def target(self, who: str | None = None) -> Target:
        return Target(self.people[who].dsn if who else self.dsn, "--dsn")

    def rehearse(self, step: str = "SB-12", who: str = "operator") -> None:
        assert commands.rehearse(self.target(who), self.project, step).ok

    def approve(self, step: str = "SB-12", who: str = "sovereign", *, rollback: bool = False) -> None:
        commands.approve(self.target(who), self.project, step, verdict="approve", expires_in="1h", rollback=rollback)

    def commit(self, step: str = "SB-12", who: str | None = "operator", **kw: Any) -> Any:
        return commands.commit(self.target(who), self.project, step, **kw)

    def records(self, kind: str) -> list[ledger.LedgerEntry]:
        return [e for e in ledger.read_all(self.admin) if e.kind == kind]

    def owner(self, table: str) -> Any:
        row = self.admin.execute(
            "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = to_regclass(%s)", (f"public.{table}",)
        ).fetchone()
        return row[0] if row else None


@pytest.fixture
def world(world_dsn: str, world_role: MakeRole, project_dir: Path, gcos_adopted: None) -> Iterator[World]:
    people = {
        "operator": world_role("op", kind="human", roles=("operator",), grant=("operator",)),
        "sovereign": world_role("sov", kind="human", roles=("sovereign",), grant=("sovereign",)),
        "agent": world_role("agent", kind="agent", roles=("operator",), grant=("operator",)),
    }
    with psycopg.connect(world_dsn, autocommit=True) as admin:
        yield World(world_dsn, admin, project_dir, people)


def test_the_named_operator_commits_through_the_kernel(world: World) -> None:
    world.rehearse()
    world.approve()
    result = world.commit()
    assert result.ok and result.outcome == "applied"
    assert world.owner("governance_ruleset") == "gcos_kernel"  # made by the kernel, governed from birth
    (commit,) = world.records("commit")
    payload = commit.record["payload"]
    assert payload["kernel"] is True and payload["break_glass"] is False
    assert commit.record["actor"]["role"] == world.people["operator"].name
    decision = ledger.read_one(world.admin, payload["policy_decision_seq"])
    assert decision.kind == "policy_decision" and decision.record["payload"]["allow"] is True
    assert decision.record["trace_id"] == commit.record["trace_id"]
    (status,) = commands.status(world.target(), world.project, "SB-12").steps
    assert status.state == "committed"


def test_a_commit_before_approval_is_refused_and_recorded_by_the_kernel(world: World) -> None:
    world.rehearse()
    with pytest.raises(GateRefused) as info:
        world.commit()
    assert info.value.exit_code == ExitCode.GATE_REFUSED
    failed = [g["gate"] for g in info.value.details["decision"]["gates"] if not g["allow"]]
    assert failed == ["approvals"]
    (refused,) = world.records("commit_refused")
    assert refused.record["payload"]["kernel"] is True and world.owner("governance_ruleset") is None


@pytest.mark.parametrize("who", ["agent", "sovereign"])
def test_only_a_named_human_operator_commits(world: World, who: str) -> None:
    world.rehearse()
    world.approve()
    with pytest.raises(GateRefused):
        world.commit(who=who)
    assert world.records("commit") == [] and world.owner("governance_ruleset") is None


def test_a_superuser_commits_only_breaking_glass_and_it_is_recorded(world: World) -> None:
    world.rehearse()
    world.approve()
    with pytest.raises(GateRefused, match="break-glass"):
        world.commit(who=None)
    result = world.commit(who=None, break_glass=True)
    assert result.ok
    (commit,) = world.records("commit")
    assert commit.record["payload"]["break_glass"] is True


@pytest.mark.parametrize("kind", ["rehearsal", "policy_decision", "commit", "stop", "batch_started"])
def test_no_client_claims_what_only_the_kernel_writes(world: World, kind: str) -> None:
    """Issue 9: a forged passing rehearsal or a forged commit, appended by an operator, an agent or an
    approver, is refused where the kernel runs."""
    for who in ("operator", "agent", "sovereign"):
        with world.people[who].connect() as conn, pytest.raises(GateRefused):
            ledger.append(conn, kind, {"outcome": "passed"}, step_id="SB-12", spec_hash=SPEC)
    assert world.records(kind) == []


def test_the_kernel_stops_a_commit_whose_footprint_leaves_the_allow_list(world: World) -> None:
    spec = world.project / "steps" / "01-sb-12.yaml"
    text = spec.read_text()
    sneak = (
        "    CREATE FUNCTION public.sneak() RETURNS int LANGUAGE sql\n"
        "        AS 'UPDATE measurement_registry SET enabled = enabled; SELECT 1';\n"
        "    ALTER TABLE governance_ruleset ADD COLUMN sneaked int DEFAULT public.sneak();\n"
        "  allow:\n    - {create_function: sneak}\n    - {alter_table: governance_ruleset}\n"
    )
    spec.write_text(text.replace("\n  allow:\n", "\n" + sneak, 1))
    with pytest.raises(StopHeld):  # the kernel's rehearsal already stops it
        world.rehearse()
    assert world.owner("governance_ruleset") is None


def test_rollback_through_the_kernel_returns_to_the_pre_commit_fingerprint(world: World) -> None:
    world.rehearse()
    world.approve()
    committed = world.commit()
    world.approve(rollback=True)
    rolled = commands.rollback(world.target("operator"), world.project, "SB-12")
    assert rolled.ok and world.owner("governance_ruleset") is None
    assert rolled.fingerprint_after["hash"] == committed.fingerprint_before["hash"]
    (record,) = world.records("rollback")
    assert (
        record.record["payload"]["kernel"] is True and record.record["payload"]["of_commit_seq"] == committed.ledger_seq
    )
    (status,) = commands.status(world.target(), world.project, "SB-12").steps
    assert status.state == "rolled_back"


def test_gcos_commit_in_the_cli_says_break_glass_is_needed_for_a_superuser(world: World) -> None:
    world.rehearse()
    world.approve()
    done = CliRunner().invoke(app, ["commit", "SB-12", "--dsn", world.dsn, "--project", str(world.project)])
    assert done.exit_code == ExitCode.GATE_REFUSED and "--break-glass" in done.output
    done = CliRunner().invoke(
        app, ["commit", "SB-12", "--dsn", world.people["operator"].dsn, "--project", str(world.project)]
    )
    assert done.exit_code == 0, done.output


# --------------------------------------------------------------------------- what the attack review found


def _kernel_rehearse(world: World, extra_sql: str, allow: list[dict[str, Any]], rollback: str = "") -> dict[str, Any]:
    """SB-12 with extra SQL and allow items, registered as a document and rehearsed by the kernel directly,
    as any client can call it: the client's static check (which refuses much of this first) is not there."""
    project = load_project(world.project)
    step, plan = project.step("SB-12"), project.plan_of("SB-12")
    assert plan is not None
    doc = copy.deepcopy(dict(step.document))
    doc["mutation"]["sql"] += "\n" + extra_sql
    doc["mutation"]["allow"] += allow
    doc["rollback"]["sql"] += "\n" + rollback
    row = world.admin.execute("SELECT gcos.register_spec(%s)", (Jsonb(doc),)).fetchone()
    assert row is not None
    with world.people["operator"].connect() as conn:
        done = conn.execute(
            "SELECT gcos.rehearse(%s, %s)", (row[0], registry.register_plan(world.admin, plan))
        ).fetchone()
    assert done is not None
    result: dict[str, Any] = done[0]
    return result


@pytest.mark.parametrize(
    ("sql_text", "allow", "category"),
    [
        ("GRANT INSERT, DELETE ON public.measurement_registry TO PUBLIC;", [], "privilege"),
        (
            "CREATE FUNCTION public.run(q text) RETURNS void LANGUAGE plpgsql SECURITY DEFINER"
            " AS 'BEGIN EXECUTE q; END'; GRANT EXECUTE ON FUNCTION public.run(text) TO PUBLIC;",
            [{"create_function": "run"}],
            "privilege",
        ),
        (
            "CREATE POLICY p ON governance_ruleset USING (gcos.installed_version() > 0);",
            [{"alter_table": "governance_ruleset"}],
            "reaches_gcos",
        ),
        ("CREATE TEXT SEARCH CONFIGURATION public.evil (COPY = pg_catalog.simple);", [], "kernel_object"),
        ("SELECT setval('public.birth_registry_id_seq', 1, false);", [], "sequence_state"),
    ],
    ids=["write grant", "security definer", "policy into gcos", "uncovered kind", "sequence set back"],
)
def test_a_step_may_not_open_a_second_aperture(
    world: World, sql_text: str, allow: list[dict[str, Any]], category: str
) -> None:
    """A step that grants writes, leaves a SECURITY DEFINER routine others may run, makes a governed object
    call gcos (it would run as whoever reads the table: an approver could sign unknowingly), creates a kind
    of object the fingerprint does not cover, or sets a governed sequence back is stopped by the kernel,
    whatever its allow list says."""
    before = fingerprint.take(world.admin).sequences["public.birth_registry_id_seq"]
    result = _kernel_rehearse(world, sql_text, allow)
    assert result["outcome"] in ("stopped", "residue"), result["message"]
    assert category in {v["category"] for v in result["allow_violations"]}, result["allow_violations"]
    assert world.owner("governance_ruleset") is None
    # a sequence set back is put back: the next value is what it was
    assert fingerprint.take(world.admin).sequences["public.birth_registry_id_seq"] == before


def test_an_approval_from_inside_other_code_is_refused(world: World) -> None:
    """What a step could plant (a function, policy or trigger calling gcos.record_approval) cannot sign for
    the approver who merely runs it: only the approver's own call to the gcos function records a verdict."""
    world.admin.execute(
        "CREATE FUNCTION public.innocent() RETURNS bigint LANGUAGE sql AS "
        "$$ SELECT approval_id FROM gcos.record_approval('SB-12', repeat('a', 64), repeat('b', 64), 'approve', "
        "now() + interval '1 hour', 'planted', NULL) $$; GRANT EXECUTE ON FUNCTION public.innocent() TO PUBLIC"
    )
    with world.people["sovereign"].connect() as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT public.innocent()")
    assert world.records("approval") == []


def test_rollback_evidence_may_not_write_where_the_step_did_not(world: World) -> None:
    result = _kernel_rehearse(world, "", [], rollback="DELETE FROM queue_heartbeat;")
    assert result["outcome"] == "stopped"
    assert {v["identity"] for v in result["allow_violations"]} == {"public.queue_heartbeat"}


def test_only_the_kernel_marks_a_record_as_its_own(world: World) -> None:
    with pytest.raises(GateRefused, match="nly the kernel marks"):
        ledger.append(world.admin, "drift", {"kernel": True}, step_id="SB-12", spec_hash=SPEC)


def test_kernel_commits_of_steps_in_different_plans_never_both_apply_on_a_stale_fingerprint(world: World) -> None:
    """Both steps rehearsed on the same schema and approved; their kernel commits wait on the one commit lock;
    whichever goes second reads the fingerprint after the first applied and is refused at gate 4."""
    (world.project / "steps" / "side-1.yaml").write_text(SIDE_STEP)
    (world.project / "plans" / "side.yaml").write_text(SIDE_PLAN)
    for step in ("SB-12", "SIDE-1"):
        world.rehearse(step)
        world.approve(step)
    outcomes: dict[str, Any] = {}

    def commit(step: str) -> None:
        try:
            outcomes[step] = world.commit(step)
        except Exception as exc:
            outcomes[step] = exc

    with psycopg.connect(world.dsn, autocommit=True) as holder:
        with holder.transaction():
            holder.execute("SELECT pg_advisory_xact_lock(hashtextextended('gcos:commit', 0))")
            threads = [threading.Thread(target=commit, args=(s,)) for s in ("SB-12", "SIDE-1")]
            for t in threads:
                t.start()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # both commits wait for the lock
                holder.execute("SELECT pg_stat_clear_snapshot()")  # activity is cached per transaction
                row = holder.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
                ).fetchone()
                if row and row[0] >= 2:
                    break
                holder.execute("SELECT pg_sleep(0.01)")
        for t in threads:
            t.join(60)
    applied = [s for s, r in outcomes.items() if not isinstance(r, Exception)]
    refused = [r for r in outcomes.values() if isinstance(r, GateRefused)]
    assert len(applied) == 1 and len(refused) == 1, outcomes
    assert [g["gate"] for g in refused[0].details["decision"]["gates"] if not g["allow"]] == ["rehearsal"]
    assert [e.record["step_id"] for e in world.records("commit")] == applied


def test_the_kernel_acts_only_for_the_role_that_logged_in(world: World) -> None:
    """A superuser's SET SESSION AUTHORIZATION operator cannot rehearse or commit as the operator."""
    project = load_project(world.project)
    plan = project.plan_of("SB-12")
    assert plan is not None
    spec_hash = registry.register_spec(world.admin, project.step("SB-12"))
    plan_hash = registry.register_plan(world.admin, plan)
    with psycopg.connect(world.dsn, autocommit=True) as root:
        root.execute(sql.SQL("SET SESSION AUTHORIZATION {}").format(sql.Identifier(world.people["operator"].name)))
        for call, args in (
            ("SELECT gcos.rehearse(%s, %s)", (spec_hash, plan_hash)),
            ("SELECT gcos.commit(%s, %s, 'commit', %s, %s)", (spec_hash, plan_hash, "a" * 32, "b" * 32)),
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="logged in as"):
                root.execute(call, args)
    assert world.records("rehearsal") == [] and world.records("commit") == []


def test_a_kernel_commit_waiting_too_long_for_the_commit_lock_names_who_holds_it(world: World) -> None:
    world.rehearse()
    world.approve()
    with psycopg.connect(world.dsn, autocommit=True) as holder, holder.transaction():
        holder.execute("SELECT pg_advisory_xact_lock(hashtextextended('gcos:commit', 0))")
        with pytest.raises(DatabaseUnavailable) as info:
            commands.commit(
                world.target("operator"), world.project, "SB-12", settings=SessionSettings(lock_timeout="100ms")
            )
        assert info.value.exit_code == ExitCode.DATABASE_UNAVAILABLE
        assert f"pid {holder.info.backend_pid}" in info.value.message
    assert world.records("commit") == [] and world.owner("governance_ruleset") is None


@pytest.mark.parametrize("who", ["sovereign", "operator"])
def test_status_explains_the_gates_on_the_world_the_kernel_measures(world: World, who: str) -> None:
    """A sovereign or operator who cannot read the governed tables still sees every gate measured: by the
    kernel (gcos.explain_gates), in a READ ONLY transaction, writing nothing."""
    world.rehearse()
    world.approve()
    report = commands.status(world.target(who), world.project, "SB-12")
    (step,) = report.steps
    assert step.decision is not None and step.decision.allow, step.decision
    assert step.decision.gate("reverify").known and step.decision.gate("reverify").allow
    head = ledger.read_all(world.admin)[-1].seq
    world.commit()
    (after,) = commands.status(world.target(who), world.project, "SB-12").steps
    assert after.state == "committed" and after.decision is not None
    assert after.decision.first_failed is not None and after.decision.first_failed.gate == "state"
    assert [e.kind for e in ledger.read_all(world.admin) if e.seq > head] == ["policy_decision", "commit"]


def test_the_kernel_explains_only_where_public_is_adopted(conn: psycopg.Connection[Any]) -> None:
    from gcos.install import install

    install(conn)
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
        conn.execute("SELECT gcos.explain_gates(%s, %s)", (SPEC, SPEC))
