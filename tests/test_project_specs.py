"""The repository's own specs: seed 002's nine steps, two plans, each traceable to its seed line."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from gcos.cli import app
from gcos.spec import load_project

REPO = Path(__file__).resolve().parent.parent


def test_nine_steps_in_seed_order_each_with_its_source() -> None:
    project = load_project(REPO)
    assert [s.order for s in project.steps.values()] == list(range(1, 10))
    assert list(project.steps)[:4] == ["SB-12", "SB-13", "SB-10", "SB-11"]
    for step in project.steps.values():
        assert "seed 002" in step.source and f"Step {step.order}" in step.source, step.source
        assert step.reverify, f"{step.id} has no live re-verify"
        assert step.rollback_sql.strip()


def test_step_7_is_its_own_decision_gated_plan_and_step_9_is_batched() -> None:
    project = load_project(REPO)
    sb12 = project.step("step-7")
    plan = project.plan_of(sb12.id)
    assert plan is not None and plan.steps == (sb12.id,)
    assert sb12.decisions and sb12.signers >= 2
    step9 = project.step("step-9")
    assert step9.mode == "batched" and step9.batch is not None
    assert step9.batch.table == "birth_registry" and step9.batch.key == "id"
    main = project.plan_of("SB-12")
    assert main is not None and sb12.id not in main.steps
    assert [project.steps[s].order for s in main.steps] == [1, 2, 3, 4, 5, 6, 8, 9]


def test_mandatory_fold_ins_of_seed_002_are_in_the_plan_and_declared() -> None:
    project = load_project(REPO)
    main = project.plan_of("SB-13")
    assert main is not None
    assert main.fold_ins["SB-13"] == ("F-57-1",)
    assert set(main.fold_ins["SB-11"]) == {"F-57-2", "F-57-3", "F-57-4"}
    assert set(main.fold_ins["T6-T7"]) == {"F-R7-1", "F-R7-2"}
    for step_id, required in main.fold_ins.items():
        assert set(required) <= set(project.steps[step_id].fold_ins)


def test_plan_prints_the_build_order_with_gates() -> None:
    result = CliRunner().invoke(app, ["plan", "-C", str(REPO)], terminal_width=200)
    assert result.exit_code == 0, result.output
    for ref in range(1, 10):
        assert f"step-{ref} " in result.stdout
    assert "after SB-12, SB-13" in result.stdout  # SB-10's dependency gate
    assert "fold-ins F-57-1" in result.stdout


def test_plan_flags_an_undeclared_mandatory_fold_in(project_dir: Path) -> None:
    path = project_dir / "steps" / "02-sb-13.yaml"
    text = path.read_text()
    assert "F-57-1" in text
    path.write_text(text.replace("fold_ins: [F-57-1]", "fold_ins: []"))
    result = CliRunner().invoke(app, ["plan", "-C", str(project_dir), "--json"])
    assert result.exit_code == 0
    plans = json.loads(result.stdout)["result"]["plans"]
    sb13 = next(s for p in plans for s in p["steps"] if s["id"] == "SB-13")
    gate = sb13["gates"][0]
    assert gate["holds"] is False
    assert gate["reason"] == "mandatory fold-in F-57-1 not declared in 02-sb-13.yaml"
