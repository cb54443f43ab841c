"""A rollback refused because later commits changed the schema names them, latest first, and the command that
starts undoing them (issue 10 item 10; gcos/sql/023_rollback_order.sql): before, it sent the operator to
`gcos drift`, which finds nothing when the change was a governed commit."""

from __future__ import annotations

from typing import Any

from test_commit import SIDE_PLAN, SIDE_STEP, World, failed_gates, refused, world  # noqa: F401

from gcos import ledger
from gcos.domain import Gate, Kind, StepState
from gcos.errors import ExitCode


def test_a_rollback_behind_a_later_commit_names_it_and_the_order(world: World) -> None:  # noqa: F811
    (world.project / "steps" / "side-1.yaml").write_text(SIDE_STEP)  # a plan of its own, no dependency
    (world.project / "plans" / "side.yaml").write_text(SIDE_PLAN)
    for step in ("SB-12", "SIDE-1"):
        world.rehearse(step)
        world.approve(step)
        assert world.commit(step).ok
    side = world.records(Kind.COMMIT, "SIDE-1")[0]
    world.approve("SB-12", rollback=True)
    code, decision = refused(world, "SB-12", "rollback")
    assert code == ExitCode.GATE_REFUSED and failed_gates(decision) == [Gate.REHEARSAL]
    (gate,) = [g for g in decision["gates"] if g["gate"] == Gate.REHEARSAL]
    assert f"SIDE-1 (commit seq {side.seq})" in gate["reason"] and gate["command"] == "gcos rollback SIDE-1"

    # the order it named: SIDE-1 first, then SB-12
    world.approve("SIDE-1", rollback=True)
    assert world.cli("rollback", "SIDE-1")[0] == 0
    code, out = world.cli("rollback", "SB-12")
    assert code == 0 and out["ok"], out
    assert world.state("SB-12") == StepState.ROLLED_BACK and world.owner("governance_ruleset") is None


def test_a_change_no_commit_explains_still_points_at_drift(world: World) -> None:  # noqa: F811
    world.rehearse()
    world.approve()
    assert world.commit().ok
    world.admin.execute("COMMENT ON TABLE laws IS 'edited by hand'")  # a superuser, outside the kernel
    world.approve(rollback=True)
    code, decision = refused(world, "SB-12", "rollback")
    (gate,) = [g for g in decision["gates"] if g["gate"] == Gate.REHEARSAL]
    assert code == ExitCode.GATE_REFUSED and not gate["allow"] and gate["command"] == "gcos drift"


# Out of order (gcos/sql/028_rollback_out_of_order.sql): a base step makes two tables; STEP-S adds rows to one and a
# view over it; a later step either touches only the other table (disjoint) or adds rows to the same one (overlap).
def side_step(sid: str, order: int, mutation: str, allow: str, rollback: str, watch: str) -> str:
    return f"""\
id: {sid}
order: {order}
title: A side step of issue 10 item 10
source: "issue 10 item 10: rollback is not last-in-first-out"
approvals: {{signers: 1, roles: [sovereign]}}
reverify: []
watch: [{watch}]
mutation:
  sql: {mutation}
  allow: [{allow}]
success: []
rollback:
  sql: {rollback}
mode: transactional
"""


SIDES = {
    "SIDE-0": side_step(
        "SIDE-0", 20, "CREATE TABLE side_a (id integer PRIMARY KEY, note text); CREATE TABLE side_b (id integer "
        "PRIMARY KEY); INSERT INTO side_a VALUES (1, 'base'); INSERT INTO side_b VALUES (1);",
        "{create_table: side_a}, {create_table: side_b}, {insert: [side_a, side_b]}", "DROP TABLE side_a, side_b;", ""
    ),
    "SIDE-S": side_step(
        "SIDE-S", 21, "INSERT INTO side_a VALUES (2, 's'), (3, 's'); CREATE VIEW side_notes AS SELECT note FROM side_a;",  # noqa: E501
        "{insert: [side_a]}, {create_view: side_notes}", "DROP VIEW side_notes; DELETE FROM side_a WHERE id IN (2, 3);",
        "side_a, side_b",
    ),
    "SIDE-L": side_step(  # disjoint: the other table, and a table of its own
        "SIDE-L", 22, "INSERT INTO side_b VALUES (2); CREATE TABLE side_c (id integer);",
        "{insert: [side_b]}, {create_table: side_c}", "DROP TABLE side_c; DELETE FROM side_b WHERE id = 2;", "side_b"
    ),
    "SIDE-O": side_step(  # overlapping: rows of the table STEP-S wrote
        "SIDE-O", 23, "INSERT INTO side_a VALUES (4, 'later');", "{insert: [side_a]}",
        "DELETE FROM side_a WHERE id = 4;", "side_a"
    ),
}  # fmt: skip


def commit_sides(world: World, *steps: str) -> None:  # noqa: F811
    for step in steps:
        (world.project / "steps" / f"{step.lower()}.yaml").write_text(SIDES[step])
        (world.project / "plans" / f"{step.lower()}.yaml").write_text(
            f"id: {step.lower()}\ntitle: one side step\nsource: issue 10\nsteps: [{step}]\n"
            "fold_ins: {}\nglobal_stop: []\n"
        )
    for step in steps:
        world.rehearse(step)
        world.approve(step)
        assert world.commit(step).ok


def side_world(world: World) -> dict[str, Any]:  # noqa: F811
    rows = world.admin.execute(
        "SELECT (SELECT array_agg(id ORDER BY id) FROM side_a), (SELECT array_agg(id ORDER BY id) FROM side_b),"
        " to_regclass('public.side_notes') IS NOT NULL, to_regclass('public.side_c') IS NOT NULL"
    ).fetchone()
    assert rows is not None
    return dict(zip(("side_a", "side_b", "side_notes", "side_c"), rows, strict=True))


def test_a_step_no_later_commit_overlaps_rolls_back_out_of_order(world: World) -> None:  # noqa: F811
    commit_sides(world, "SIDE-0", "SIDE-S")
    before_s = world.records(Kind.COMMIT, "SIDE-S")[0].payload["fingerprint_before"]
    commit_sides(world, "SIDE-L")
    assert side_world(world) == {"side_a": [1, 2, 3], "side_b": [1, 2], "side_notes": True, "side_c": True}

    world.approve("SIDE-S", rollback=True)
    code, out = world.cli("rollback", "SIDE-S")
    assert code == 0 and out["ok"], out
    # its rows and its view are back to their state before its commit; SIDE-L's rows and table are untouched
    assert side_world(world) == {"side_a": [1], "side_b": [1, 2], "side_notes": False, "side_c": True}
    (rollback,) = world.records(Kind.ROLLBACK, "SIDE-S")
    after = rollback.payload["fingerprint_after"]
    assert after["tables"]["public.side_a"] == before_s["tables"]["public.side_a"]
    assert after["tables"]["public.side_b"] != before_s["tables"]["public.side_b"]  # SIDE-L's row stays
    decision = ledger.read_one(world.admin, rollback.payload["policy_decision_seq"]).payload
    (gate,) = [g for g in decision["gates"] if g["gate"] == Gate.REHEARSAL]
    assert gate["allow"] and "out of order" in gate["reason"] and "SIDE-L (commit seq" in gate["reason"]
    assert world.state("SIDE-S") == StepState.ROLLED_BACK and world.state("SIDE-L") == StepState.COMMITTED
    assert ledger.verify(world.admin).ok

    # the later step still rolls back afterwards (its proof: its own footprint set back, SIDE-S's rollback kept)
    world.approve("SIDE-L", rollback=True)
    code, out = world.cli("rollback", "SIDE-L")
    assert code == 0 and out["ok"], out
    assert side_world(world) == {"side_a": [1], "side_b": [1], "side_notes": False, "side_c": False}
    assert ledger.verify(world.admin).ok


def test_an_overlapping_later_commit_is_named_with_the_order(world: World) -> None:  # noqa: F811
    commit_sides(world, "SIDE-0", "SIDE-S", "SIDE-L", "SIDE-O")
    later = world.records(Kind.COMMIT, "SIDE-O")[0]
    world.approve("SIDE-S", rollback=True)
    code, decision = refused(world, "SIDE-S", "rollback")
    assert code == ExitCode.GATE_REFUSED and failed_gates(decision) == [Gate.REHEARSAL]
    (gate,) = [g for g in decision["gates"] if g["gate"] == Gate.REHEARSAL]
    assert f"SIDE-O (commit seq {later.seq}); then SIDE-S" in gate["reason"], gate
    assert "SIDE-L" not in gate["reason"] and gate["command"] == "gcos rollback SIDE-O"
    assert side_world(world)["side_a"] == [1, 2, 3, 4]  # nothing was rolled back

    world.approve("SIDE-O", rollback=True)
    assert world.cli("rollback", "SIDE-O")[0] == 0
    code, out = world.cli("rollback", "SIDE-S")
    assert code == 0 and out["ok"], out
    assert side_world(world) == {"side_a": [1], "side_b": [1, 2], "side_notes": False, "side_c": True}


def test_a_hand_change_to_the_steps_objects_points_at_drift(world: World) -> None:  # noqa: F811
    commit_sides(world, "SIDE-0", "SIDE-S", "SIDE-L")
    world.admin.execute("COMMENT ON VIEW side_notes IS 'edited by hand'")  # a superuser, outside the kernel
    world.approve("SIDE-S", rollback=True)
    code, decision = refused(world, "SIDE-S", "rollback")
    (gate,) = [g for g in decision["gates"] if g["gate"] == Gate.REHEARSAL]
    assert code == ExitCode.GATE_REFUSED and not gate["allow"] and gate["command"] == "gcos drift", gate
    assert side_world(world)["side_notes"] is True
