"""Seed 002 §70.2: every global stop condition, made to fire on the reference world.

The ones the plan states as checks (items 2, 5, 6, 7) are evaluated at every rehearsal and commit: each
test makes one hold inside a rehearsal of SB-12 (a test hook acts inside the open transaction) and sees
exit 4 naming it, with nothing changed. Items 1, 3, 4 and 8 are commit gates: each test shows the commit
refused (exit 3) for that reason.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import MakeRole

from gcos import commands, fingerprint
from gcos.errors import GateRefused, StopHeld
from gcos.rehearsal import RehearsalHooks, RehearsalResult
from gcos.target import Target

Action = Callable[[psycopg.Connection[Any]], None]


def _run(sql: str) -> Action:
    return lambda conn: conn.execute(sql)


def _six_tables(conn: psycopg.Connection[Any]) -> None:
    for i in range(6):
        conn.execute(f"CREATE TABLE island_{i} (id int)")  # test-owned constant names


FIRING: dict[str, Action] = {
    "§70.2 #2 law enactment/version/status change": _run(
        "UPDATE laws SET title = title WHERE law_id = (SELECT min(law_id) FROM laws)"
    ),
    "§70.2 #2 law counts moved from 47/5/12": _run(
        "INSERT INTO laws SELECT 999, 'L-999', 'an extra law', status, current_version FROM laws LIMIT 1"
    ),
    "§70.2 #2 emit-before-register": _run(
        "INSERT INTO event_outbox (id, event_type, event_domain, created_at) "
        "SELECT gen_random_uuid(), event_type, event_domain, now() FROM event_type_registry WHERE NOT active LIMIT 1"
    ),
    "§70.2 #2 self-approval reachable": _run(
        "CREATE OR REPLACE FUNCTION fn_apr_quorum_check(p_proposer text, p_approver text) RETURNS boolean "
        "LANGUAGE sql IMMUTABLE AS 'SELECT true'"
    ),
    "§70.2 #5 the mutating DOT dot_governance_assignment_apply exists": _run(
        "CREATE TABLE dot_governance_assignment_apply (id int)"
    ),
    "§70.2 #5 the mutating DOT dot_governance_assignment_apply registered without A-9": _run(
        "INSERT INTO dot_tools (code, domain_code, tier, capability, apr_action) "
        "SELECT 'dot_governance_assignment_apply', code, 'C', 'apply', 'review' FROM dot_domains LIMIT 1"
    ),
    "§70.2 #7 footprint exceeds 5 new tables": _six_tables,
    "§70.2 #7 a new bus/store/notifier": _run("CREATE TABLE governance_event_bus (id int)"),
}


@pytest.fixture
def world(world_dsn: str, world_role: MakeRole) -> Target:
    world_role("installer")  # installs gcos into the world
    return Target(world_dsn, "--dsn")


def held_stops(result: RehearsalResult) -> list[str]:
    return [s.name for s in result.stops if s.held]


@pytest.mark.parametrize("stop", sorted(FIRING))
def test_each_global_stop_condition_fires_at_rehearsal(world: Target, project_dir: Path, stop: str) -> None:
    with psycopg.connect(world.dsn, autocommit=True) as conn:
        before = fingerprint.take(conn, watch=("laws", "dot_tools", "event_outbox"))
    with pytest.raises(StopHeld) as caught:
        commands.rehearse(world, project_dir, "SB-12", hooks=RehearsalHooks(inside=FIRING[stop]))
    result = caught.value.details
    assert isinstance(result, RehearsalResult) and result.outcome == "stopped"
    assert any(name.startswith(stop) for name in held_stops(result)), held_stops(result)
    with psycopg.connect(world.dsn, autocommit=True) as conn:
        after = fingerprint.take(conn, watch=("laws", "dot_tools", "event_outbox"))
    assert after.hash == before.hash  # rolled back: nothing changed


def test_an_errored_transaction_left_open_fires_item_6(world: Target, project_dir: Path) -> None:
    other = psycopg.connect(world.dsn)  # autocommit off: a transaction stays open
    try:
        with pytest.raises(psycopg.errors.DivisionByZero):
            other.execute("SELECT 1 / 0")
        with pytest.raises(StopHeld) as caught:
            commands.rehearse(world, project_dir, "SB-12")
    finally:
        other.rollback()
        other.close()
    result = caught.value.details
    assert isinstance(result, RehearsalResult)
    assert any(name.startswith("§70.2 #6") for name in held_stops(result)), held_stops(result)


def test_item_1_approvals_empty_at_commit_is_refused(world: Target, project_dir: Path) -> None:
    commands.rehearse(world, project_dir, "SB-12")
    with pytest.raises(GateRefused, match="No approval for SB-12"):
        commands.commit(world, project_dir, "SB-12")


def test_item_3_a_missing_rehearsal_is_refused(world: Target, project_dir: Path, world_role: MakeRole) -> None:
    sovereign = world_role("sovereign", kind="human", roles=("sovereign",), grant=("sovereign",))
    commands.approve(Target(sovereign.dsn, "--dsn"), project_dir, "SB-12", verdict="approve", expires_in="1h")
    with pytest.raises(GateRefused, match="SB-12 has no rehearsal"):
        commands.commit(world, project_dir, "SB-12")


def test_item_4_a_mandatory_fold_in_not_declared_is_refused(world: Target, project_dir: Path) -> None:
    path = project_dir / "steps" / "02-sb-13.yaml"
    path.write_text(path.read_text().replace("fold_ins: [F-57-1]", "fold_ins: []"))
    commands.rehearse(world, project_dir, "SB-13")
    with pytest.raises(GateRefused, match="F-57-1"):
        commands.commit(world, project_dir, "SB-13")


def test_item_8_a_decision_by_an_agent_never_counts(world: Target, project_dir: Path, world_role: MakeRole) -> None:
    agent = world_role("agent", kind="agent", roles=("sovereign",), grant=("sovereign",))
    with pytest.raises(GateRefused):
        commands.decide(Target(agent.dsn, "--dsn"), "A-8", verdict="approve", expires_in="1h")
    status = commands.status(world, project_dir, "SB-1-2").steps[0]
    decisions = status.decision.gate("decisions")
    assert not decisions.allow and "A-8" in decisions.reason
