"""Seed 002 §70.2: every global stop condition, made to fire on an adopted reference world, where the KERNEL
rehearses and commits.

The items the plan states as checks (2, 5, 6, 7) are evaluated by the kernel at every rehearsal (inside the
rolled-back transaction, after the mutation) and at every commit (measured under the commit lock before the
mutation, and again after it, inside the kernel). Each is made to hold as a user would meet it: the world changed
by a superuser, a session left in an errored transaction, or a step whose SQL does it. A rehearsal then stops
(exit 4) naming it with nothing changed; a commit is refused at gate 7 (exit 3), or stopped inside the kernel
when the stop holds only after the mutation (exit 4, the kernel's `stop` record, nothing applied). Items 1, 3, 4
and 8 are commit gates: 1 is test_kernel_commit's refusal before approval, 3 test_gates_sql's story, 4 and 8
are here."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import fingerprint
from test_gates import Desk, open_desk

from gcos import commands
from gcos.errors import ExitCode, GateRefused, StopHeld

WATCH = ("laws", "dot_tools", "event_outbox")
BUS = "(outbox|bus|stream|event_store|notif|queue)"  # what the plan's §70.2 #7 bus stop looks for
QUORUM = "fn_apr_quorum_check(text, text)"

# stop name prefix -> (what a superuser does to the world, what undoes it)
WORLD_FIRINGS: dict[str, tuple[str, str]] = {
    "§70.2 #2 emit-before-register": (
        "INSERT INTO event_outbox (id, event_type, event_domain, created_at) SELECT gen_random_uuid(), event_type, "
        "event_domain, now() FROM event_type_registry WHERE NOT active LIMIT 1",
        "DELETE FROM event_outbox o USING event_type_registry t WHERE t.event_type = o.event_type AND NOT t.active",
    ),
    "§70.2 #2 self-approval reachable": (
        "CREATE OR REPLACE FUNCTION fn_apr_quorum_check(p_proposer text, p_approver text) RETURNS boolean "
        "LANGUAGE sql IMMUTABLE AS 'SELECT true'",
        "",  # the original definition is put back
    ),
    "§70.2 #5 the mutating DOT dot_governance_assignment_apply exists": (
        "CREATE TABLE dot_governance_assignment_apply (id int)",
        "DROP TABLE dot_governance_assignment_apply",
    ),
    "§70.2 #5 the mutating DOT dot_governance_assignment_apply registered without A-9": (
        "INSERT INTO dot_tools (code, domain_code, tier, capability, apr_action) "
        "SELECT 'dot_governance_assignment_apply', code, 'C', 'apply', 'review' FROM dot_domains LIMIT 1",
        "DELETE FROM dot_tools WHERE code = 'dot_governance_assignment_apply'",
    ),
    "§70.2 #7 footprint exceeds 5 new tables": (
        "; ".join(f"CREATE TABLE island_{i} (id int)" for i in range(6)),
        "; ".join(f"DROP TABLE island_{i}" for i in range(6)),
    ),
    "§70.2 #7 a new bus/store/notifier": (
        "CREATE TABLE governance_event_bus (id int)",
        "DROP TABLE governance_event_bus",
    ),
}

# stop name prefix -> SQL the step itself runs (a law table written in this transaction; the law counts moved
# by the step, which re-verify, read before the mutation, cannot see) and the allow items that admit it
STEP_FIRINGS: dict[str, tuple[str, str]] = {
    "§70.2 #2 law enactment/version/status change": (
        "UPDATE laws SET title = title WHERE law_id = (SELECT min(law_id) FROM laws);",
        "    - {update: laws}\n",
    ),
    "§70.2 #2 law counts moved from 47/5/12": (
        "INSERT INTO laws SELECT 999, 'L-999', 'an extra law', status, current_version FROM laws LIMIT 1;",
        "    - {insert: laws}\n",
    ),
}


@pytest.fixture
def world(world_dsn: str, project_dir: Path, gcos_adopted: None) -> Iterator[Desk]:
    yield from open_desk(world_dsn, project_dir)


def watched(w: Desk) -> str:
    return str(fingerprint(w.admin, WATCH)["hash"])


def held_at_rehearsal(w: Desk, step: str = "SB-12") -> list[str]:
    """The stops held by the kernel's rehearsal of `step`, which must stop (exit 4) and change nothing."""
    before = watched(w)
    with pytest.raises(StopHeld) as caught:
        w.rehearse(step)
    assert caught.value.exit_code == ExitCode.STOP_HELD
    result: Any = caught.value.details
    assert result.outcome == "stopped" and watched(w) == before
    return [s.name for s in result.stops if s.held]


def refused_at_commit(w: Desk, step: str = "SB-12") -> dict[str, Any]:
    """Gate 7 (state) of the kernel's refusal to commit `step` (exit 3); nothing applied."""
    with pytest.raises(GateRefused) as caught:
        w.commit(step)
    assert caught.value.exit_code == ExitCode.GATE_REFUSED
    details: Any = caught.value.details
    (state,) = (g for g in details["decision"]["gates"] if g["gate"] == "state")
    assert not state["allow"] and w.records("commit") == []
    return dict(state)


def test_each_global_stop_on_the_world_stops_the_rehearsal_and_refuses_the_commit(world: Desk) -> None:
    world.rehearse()
    world.approve("alice")
    row = world.admin.execute("SELECT pg_get_functiondef(%s::regprocedure)", (QUORUM,)).fetchone()
    assert row is not None
    for stop, (fire, undo) in WORLD_FIRINGS.items():
        world.execute(fire)
        state = refused_at_commit(world)
        assert stop in state["reason"] and state["command"] == "gcos rehearse SB-12", (stop, state)
        held = held_at_rehearsal(world)
        assert any(name.startswith(stop) for name in held), (stop, held)
        world.execute(undo or row[0])
    world.rehearse()  # the world is as it was: the kernel's rehearsal passes again


@pytest.mark.parametrize("stop", sorted(STEP_FIRINGS))
def test_a_global_stop_the_step_itself_makes_hold_stops_its_rehearsal(world: Desk, stop: str) -> None:
    sql_text, allow = STEP_FIRINGS[stop]
    spec = world.project_dir / "steps" / "01-sb-12.yaml"
    text = spec.read_text(encoding="utf-8")
    spec.write_text(text.replace("\n  allow:\n", f"\n    {sql_text}\n  allow:\n{allow}", 1), encoding="utf-8")
    held = held_at_rehearsal(world)
    assert any(name.startswith(stop) for name in held), held


def test_an_errored_transaction_left_open_fires_item_6_at_rehearsal_and_at_commit(world: Desk) -> None:
    other = psycopg.connect(world.dsn)  # autocommit off: a transaction stays open
    try:
        with pytest.raises(psycopg.errors.DivisionByZero):
            other.execute("SELECT 1 / 0")
        held = held_at_rehearsal(world)
        assert any(name.startswith("§70.2 #6") for name in held), held
        world.approve("alice")
        state = refused_at_commit(world)  # measured by the kernel under its commit lock
        assert "§70.2 #6" in state["reason"]
    finally:
        other.rollback()
        other.close()


def test_a_stop_that_holds_only_after_the_mutation_stops_the_commit_inside_the_kernel(world: Desk) -> None:
    """Rehearsed and approved on a world where SB-12's one new table keeps the footprint stop quiet; then five
    tables leave the baseline (a data change: the rehearsal's schema still stands). Before the mutation five
    tables are new, after it six: the kernel stops its own commit, writes the stop, applies nothing."""
    world.rehearse()
    world.approve("alice")
    world.execute(
        "DELETE FROM reference_world_baseline WHERE table_name IN (SELECT table_name FROM reference_world_baseline"
        " WHERE table_name !~ %s AND to_regclass('public.' || table_name) IS NOT NULL ORDER BY table_name LIMIT 5)",
        (BUS,),
    )
    with pytest.raises(StopHeld) as caught:
        world.commit()
    assert caught.value.exit_code == ExitCode.STOP_HELD
    details: Any = caught.value.details
    assert details["decision"]["allow"] is True  # every gate held: the stop came after the mutation
    (stop,) = world.records("stop")
    payload = stop.record["payload"]
    assert payload["kernel"] is True and payload["outcome"] == "stopped" and payload["allow_violations"] == []
    assert "§70.2 #7 footprint exceeds 5 new tables" in payload["reason"]
    assert stop.record["actor"]["role"] == world.role("opal").name
    assert world.records("commit") == []
    row = world.admin.execute("SELECT to_regclass('public.governance_ruleset')").fetchone()
    assert row == (None,)


def test_item_4_a_mandatory_fold_in_not_declared_is_refused(world: Desk) -> None:
    path = world.project_dir / "steps" / "02-sb-13.yaml"
    path.write_text(path.read_text().replace("fold_ins: [F-57-1]", "fold_ins: []"))
    world.rehearse("SB-13")
    world.approve("alice", "SB-13")
    with pytest.raises(GateRefused) as caught:
        world.commit("SB-13")
    assert caught.value.exit_code == ExitCode.GATE_REFUSED
    details: Any = caught.value.details
    (spec,) = (g for g in details["decision"]["gates"] if g["gate"] == "spec")
    assert not spec["allow"] and "F-57-1" in spec["remedy"]
    assert [g["gate"] for g in details["decision"]["gates"] if not g["allow"]] == ["spec"]


def test_item_8_a_decision_by_an_agent_never_counts(world: Desk) -> None:
    with pytest.raises(GateRefused) as caught:
        world.decide("aggie", "C-1")
    assert caught.value.exit_code == ExitCode.GATE_REFUSED
    (status,) = commands.status(world.target(), world.project_dir, "SB-1-2").steps  # the kernel explains
    decisions = status.decision.gate("decisions")
    assert not decisions.allow and "C-1" in decisions.reason and decisions.evidence == ()
