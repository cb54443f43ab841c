"""The kernel commits (gcos/sql/012_kernel_commit.sql): where schema public is adopted, `gcos commit` and
`gcos rollback` run inside the database as gcos_kernel, gated there, every record written by the kernel, and
no client can claim a rehearsal, decision or commit (issue 9 items 2, 3 and 8). The commit's gates, races and
rollback are in test_commit.py (its World is shared here)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import fingerprint
from psycopg import sql
from psycopg.types.json import Jsonb
from test_commit import World, adopted_world

from gcos import commands, ledger, registry
from gcos.domain import Gate, Kind, Outcome, StepState
from gcos.errors import ExitCode, GateRefused, GcosError, StopHeld
from gcos.spec import load_project

SPEC = "f" * 64


@pytest.fixture
def world(world_dsn: str, gcos_adopted: None, project_dir: Path) -> Iterator[World]:
    yield from adopted_world(world_dsn, project_dir)


def test_only_a_named_human_operator_commits_and_a_superuser_only_breaking_glass(world: World) -> None:
    world.rehearse()
    world.approve()
    for who in ("agent", "sovereign"):
        with pytest.raises(GateRefused):
            world.commit(who=who)
    code, out = world.cli("commit", "SB-12", who=None)
    assert code == ExitCode.GATE_REFUSED and "--break-glass" in out["error"]
    assert world.records(Kind.COMMIT) == [] and world.owner("governance_ruleset") is None
    code, out = world.cli("commit", "SB-12", "--break-glass", who=None)
    assert code == 0 and out["ok"], out
    (commit,) = world.records(Kind.COMMIT)
    assert commit.payload["break_glass"] is True and commit.payload["kernel"] is True


def test_a_failed_rehearsal_cannot_be_forged_into_a_commit(world: World) -> None:
    """Issue 9's first attack, as every ordinary role: the real rehearsal of SB-12 fails (its rollback evidence
    leaves the snapshot row, exit 5); an agent, an operator, a sovereign and a council member each try to append
    a passing rehearsal, a policy decision, a commit, a stop and a batch record; a sovereign approves anyway.
    The commit is refused at gate 4 (exit 3) and the world is unchanged."""
    rollback = world.project / "rollback" / "sb-12.sql"
    rollback.write_text(rollback.read_text().replace("LIKE 'governance.%'", "LIKE 'nothing.%'"))
    with pytest.raises(GcosError) as failed:
        world.rehearse()
    assert failed.value.exit_code == ExitCode.RESIDUE
    (rehearsal,) = world.records(Kind.REHEARSAL)
    assert rehearsal.payload["outcome"] == Outcome.ROLLBACK_UNPROVEN
    kinds = (Kind.REHEARSAL, Kind.POLICY_DECISION, Kind.COMMIT, Kind.STOP, Kind.BATCH_STARTED)
    forged = {"outcome": Outcome.PASSED, "fingerprints": rehearsal.payload["fingerprints"], "kernel": False}
    for who in ("agent", "operator", "sovereign", "council"):
        with world.person(who).connect() as conn:
            for kind in kinds:
                with pytest.raises(GateRefused):
                    ledger.append(conn, kind, forged, step_id="SB-12", spec_hash=rehearsal.record["spec_hash"])
    assert [e.seq for e in world.entries() if e.kind in kinds] == [rehearsal.seq]
    world.approve()
    snapshots = world.admin.execute("SELECT count(*) FROM evolution_snapshots").fetchone()
    code, out = world.cli("commit", "SB-12")
    assert code == ExitCode.GATE_REFUSED, out
    failed_gates = [g["gate"] for g in out["details"]["decision"]["gates"] if not g["allow"]]
    assert failed_gates == [Gate.REHEARSAL]
    assert world.owner("governance_ruleset") is None and world.records(Kind.COMMIT) == []
    assert world.admin.execute("SELECT count(*) FROM evolution_snapshots").fetchone() == snapshots


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
    trace = ledger.new_trace_id()  # one run's: a trace carrying another spec's records is refused (031)
    traced = " FROM pg_catalog.set_config('gcos.trace_id', %s, true)"  # the statement's trace (024_traces)
    row = world.admin.execute("SELECT gcos.register_spec(%s)" + traced, (Jsonb(doc), trace)).fetchone()
    assert row is not None
    with world.person("operator").connect() as conn:
        done = conn.execute(
            "SELECT gcos.rehearse(%s, %s, %s)", (row[0], registry.register_plan(world.admin, plan), trace)
        ).fetchone()
    assert done is not None
    result: dict[str, Any] = done[0]
    return result


APERTURES: dict[str, tuple[str, list[dict[str, Any]], str]] = {
    "write grant": ("GRANT INSERT, DELETE ON public.measurement_registry TO PUBLIC;", [], "privilege"),
    "security definer": (
        "CREATE FUNCTION public.run(q text) RETURNS void LANGUAGE plpgsql SECURITY DEFINER"
        " AS 'BEGIN EXECUTE q; END'; GRANT EXECUTE ON FUNCTION public.run(text) TO PUBLIC;",
        [{"create_function": "run"}],
        "privilege",
    ),
    "policy into gcos": (
        "CREATE POLICY p ON governance_ruleset USING (gcos.installed_version() > 0);",
        [{"alter_table": "governance_ruleset"}],
        "reaches_gcos",
    ),
    "uncovered kind": ("CREATE TEXT SEARCH CONFIGURATION public.evil (COPY = pg_catalog.simple);", [], "kernel_object"),
    "sequence set back": ("SELECT setval('public.birth_registry_id_seq', 1, false);", [], "sequence_state"),
    "rollback writes elsewhere": ("", [], "rollback"),
}
"""name -> (extra mutation SQL, extra allow items, the violation category the kernel must report)."""


def test_a_step_may_not_open_a_second_aperture(world: World) -> None:
    """A step that grants writes, leaves a SECURITY DEFINER routine others may run, makes a governed object
    call gcos (it would run as whoever reads the table: an approver could sign unknowingly), creates a kind
    of object the fingerprint does not cover, sets a governed sequence back, or whose rollback evidence writes
    where the step did not, is stopped by the kernel, whatever its allow list says. Each rehearsal is undone,
    so one world serves them all."""
    before = fingerprint(world.admin)
    for name, (sql_text, allow, category) in APERTURES.items():
        if category == "rollback":
            result = _kernel_rehearse(world, "", [], rollback="DELETE FROM queue_heartbeat;")
            assert result["outcome"] == "stopped", (name, result["message"])
            assert {v["identity"] for v in result["allow_violations"]} == {"public.queue_heartbeat"}
            continue
        result = _kernel_rehearse(world, sql_text, allow)
        assert result["outcome"] in ("stopped", "residue"), (name, result["message"])
        assert category in {v["category"] for v in result["allow_violations"]}, (name, result["allow_violations"])
    after = fingerprint(world.admin)  # a sequence set back is put back: the next value is what it was
    assert after["hash"] == before["hash"] and after["sequences"] == before["sequences"]
    assert world.owner("governance_ruleset") is None and world.records(Kind.COMMIT) == []


def test_an_approval_from_inside_other_code_is_refused(world: World) -> None:
    """What a step could plant (a function, policy or trigger calling gcos.record_approval) cannot sign for
    the approver who merely runs it: only the approver's own call to the gcos function records a verdict."""
    world.admin.execute(
        "CREATE FUNCTION public.innocent() RETURNS bigint LANGUAGE sql AS "
        "$$ SELECT approval_id FROM gcos.record_approval('SB-12', repeat('a', 64), repeat('b', 64), 'approve', "
        "now() + interval '1 hour', 'planted', NULL) $$; GRANT EXECUTE ON FUNCTION public.innocent() TO PUBLIC"
    )
    with world.person("sovereign").connect() as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT public.innocent()")
    assert world.records(Kind.APPROVAL) == []


def test_only_the_kernel_marks_a_record_as_its_own(world: World) -> None:
    with pytest.raises(GateRefused, match="nly the kernel marks"):
        ledger.append(world.admin, Kind.DRIFT, {"kernel": True}, step_id="SB-12", spec_hash=SPEC)


def test_the_kernel_acts_only_for_the_role_that_logged_in(world: World) -> None:
    """A superuser's SET SESSION AUTHORIZATION operator cannot rehearse or commit as the operator."""
    project = load_project(world.project)
    plan = project.plan_of("SB-12")
    assert plan is not None
    spec_hash = registry.register_spec(world.admin, project.step("SB-12"))
    plan_hash = registry.register_plan(world.admin, plan)
    with psycopg.connect(world.dsn, autocommit=True) as root:
        root.execute(sql.SQL("SET SESSION AUTHORIZATION {}").format(sql.Identifier(world.person("operator").name)))
        for call, args in (
            ("SELECT gcos.rehearse(%s, %s)", (spec_hash, plan_hash)),
            ("SELECT gcos.commit(%s, %s, 'commit', %s, %s)", (spec_hash, plan_hash, "a" * 32, "b" * 32)),
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="logged in as"):
                root.execute(call, args)
    assert world.records(Kind.REHEARSAL) == [] and world.records(Kind.COMMIT) == []


def test_status_explains_the_gates_on_the_world_the_kernel_measures(world: World) -> None:
    """A sovereign or operator who cannot read the governed tables still sees every gate measured: by the
    kernel (gcos.explain_gates), in a READ ONLY transaction, writing nothing."""
    world.rehearse()
    world.approve()
    head = world.head()
    for who in ("sovereign", "operator"):
        (step,) = commands.status(world.target(who), world.project, "SB-12").steps
        assert step.decision is not None and step.decision.allow, (who, step.decision)
        assert step.decision.gate(Gate.REVERIFY).known and step.decision.gate(Gate.REVERIFY).allow
    assert world.entries(after=head) == []
    world.commit()
    for who in ("sovereign", "operator"):
        (after,) = commands.status(world.target(who), world.project, "SB-12").steps
        assert after.state == StepState.COMMITTED and after.decision is not None
        assert after.decision.first_failed is not None and after.decision.first_failed.gate == Gate.STATE
    assert [e.kind for e in world.entries(after=head)] == [Kind.POLICY_DECISION, Kind.COMMIT]


def test_the_kernel_explains_only_where_public_is_adopted(conn: psycopg.Connection[Any], gcos_installed: None) -> None:
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
        conn.execute("SELECT gcos.explain_gates(%s, %s)", (SPEC, SPEC))
