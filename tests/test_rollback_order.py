"""A rollback refused because later commits changed the schema names them, latest first, and the command that
starts undoing them (issue 10 item 10; gcos/sql/023_rollback_order.sql): before, it sent the operator to
`gcos drift`, which finds nothing when the change was a governed commit."""

from __future__ import annotations

from test_commit import SIDE_PLAN, SIDE_STEP, World, failed_gates, refused, world  # noqa: F401

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
