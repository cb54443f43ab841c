"""A spec is what the contract says (issue 11 item 1): `source` and `notes` are optional, `mode` defaults to
`transactional`, `order` to the step's position in its plan, and every schema problem of a file is reported
at once. Defaults are written into the hashed document, so stating a default never changes a spec's hash."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gcos.cli import app
from gcos.errors import ExitCode, SpecError
from gcos.spec import PlanSpec, load_plan, load_project

REPO = Path(__file__).resolve().parent.parent

MINIMAL = """\
id: MIN-1
title: The smallest step the contract allows
approvals: {signers: 1, roles: [sovereign]}
rollback: {sql: "SELECT 1"}
"""

OTHER = """\
id: FIRST-1
order: 1
title: A step that states everything
source: test fixture
approvals: {signers: 1, roles: [sovereign]}
reverify: []
success: []
rollback: {sql: "SELECT 1"}
mode: transactional
"""


def _project(root: Path, steps: dict[str, str], plan_steps: list[str] | None) -> Path:
    (root / "steps").mkdir(parents=True)
    for name, text in steps.items():
        (root / "steps" / f"{name}.yaml").write_text(text)
    if plan_steps is not None:
        (root / "plans").mkdir()
        (root / "plans" / "main.yaml").write_text(f"id: main\ntitle: a plan without source\nsteps: {plan_steps}\n")
    return root


def test_a_minimal_spec_loads_with_the_contract_defaults(tmp_path: Path) -> None:
    root = _project(tmp_path, {"a": OTHER, "b": MINIMAL}, ["FIRST-1", "MIN-1"])
    project = load_project(root)
    step = project.step("MIN-1")
    assert (step.mode, step.order, step.ref, step.source) == ("transactional", 2, "step-2", None)
    assert step.reverify == () and step.success == () and step.mutation is None
    # The registered document says the defaults (the kernel reads mode and order from it).
    assert {k: step.document[k] for k in ("mode", "order", "reverify", "success")} == {
        "mode": "transactional",
        "order": 2,
        "reverify": [],
        "success": [],
    }
    assert "source" not in step.document and "notes" not in step.document
    assert project.plans["main"].source is None
    assert project.step("step-2") is step


def test_stating_a_default_does_not_change_the_hash(tmp_path: Path) -> None:
    implicit = load_project(_project(tmp_path / "implicit", {"a": OTHER, "b": MINIMAL}, ["FIRST-1", "MIN-1"]))
    explicit_text = MINIMAL + "mode: transactional\norder: 2\nreverify: []\nsuccess: []\n"
    explicit = load_project(_project(tmp_path / "explicit", {"a": OTHER, "b": explicit_text}, ["FIRST-1", "MIN-1"]))
    assert implicit.step("MIN-1").hash == explicit.step("MIN-1").hash
    # ...and a different value is a different spec.
    stated_otherwise = MINIMAL + "order: 3\n"
    other = load_project(_project(tmp_path / "other", {"a": OTHER, "b": stated_otherwise}, ["FIRST-1", "MIN-1"]))
    assert other.step("MIN-1").hash != implicit.step("MIN-1").hash


def test_the_repository_specs_hash_as_if_their_defaults_were_omitted(tmp_path: Path) -> None:
    """Every repository step that states `mode: transactional` keeps its hash when the key is dropped: the
    spec hashes the demo and the ledger rely on are unchanged by the defaults."""
    root = tmp_path / "repo"
    for part in ("steps", "plans", "rollback"):
        shutil.copytree(REPO / part, root / part)
    before = load_project(root)
    dropped = []
    for path in sorted((root / "steps").glob("*.yaml")):
        text = path.read_text()
        if "\nmode: transactional\n" in text:
            path.write_text(text.replace("\nmode: transactional\n", "\n"))
            dropped.append(yaml.safe_load(text)["id"])
    assert len(dropped) >= 5
    after = load_project(root)
    assert {k: s.hash for k, s in after.steps.items()} == {k: s.hash for k, s in before.steps.items()}
    assert [p.hash for p in after.plans.values()] == [p.hash for p in before.plans.values()]


def test_every_problem_of_a_file_is_reported_at_once(tmp_path: Path) -> None:
    broken = "id: BAD-1\norder: 1\nrollback: {sql: SELECT 1}\ncolour: blue\n"  # no title, no approvals
    root = _project(tmp_path, {"bad": broken}, None)
    with pytest.raises(SpecError) as info:
        load_project(root)
    lines = info.value.message.splitlines()
    assert lines[0] == f"{root / 'steps' / 'bad.yaml'} has 3 errors:"
    assert len(lines) == 4
    body = "\n".join(lines[1:])
    assert "bad.yaml:4: step BAD-1 key (top level): unknown key 'colour'" in body
    assert "step BAD-1 key (top level): 'title' is required." in body
    assert "step BAD-1 key (top level): 'approvals' is required." in body
    assert info.value.exit_code == ExitCode.BAD_INPUT
    result = CliRunner().invoke(app, ["plan", "-C", str(root), "--json"])
    assert result.exit_code == 2
    details = json.loads(result.stdout)["details"]
    assert sorted(e["reason"].split()[0] for e in details["errors"]) == ["'approvals'", "'title'", "unknown"]


def test_a_step_with_no_order_in_no_plan_is_refused(tmp_path: Path) -> None:
    root = _project(tmp_path, {"b": MINIMAL}, None)
    result = CliRunner().invoke(app, ["plan", "-C", str(root)])
    assert result.exit_code == 2
    said = " ".join(result.stderr.split())
    assert "step MIN-1 key order: the step states no order and is in no plan" in said


def test_a_default_order_that_collides_names_its_origin(tmp_path: Path) -> None:
    root = _project(tmp_path, {"a": OTHER, "b": MINIMAL}, ["MIN-1", "FIRST-1"])
    with pytest.raises(SpecError) as info:
        load_project(root)
    assert "order 1 (its position in its plan" in info.value.message


def _readme_section(title: str) -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return text.split(f"### {title}\n", 1)[1].split("\n#", 1)[0]


def test_the_readme_documents_every_allow_form_with_an_example_that_loads(tmp_path: Path) -> None:
    schema = json.loads((REPO / "gcos/schemas/step.schema.json").read_text())
    pattern = next(iter(schema["properties"]["mutation"]["properties"]["allow"]["items"]["patternProperties"]))
    kinds = set(pattern.strip("^$()").split("|"))
    rows = [line for line in _readme_section("Every `allow` form").splitlines() if line.startswith("| `")]
    documented = {row.split("`")[1]: row.rsplit("`- ", 1)[1].split("`")[0] for row in rows}
    assert set(documented) == kinds
    allow = [yaml.safe_load(example) for example in documented.values()]
    assert [next(iter(item)) for item in allow] == list(documented)
    spec = yaml.safe_load(MINIMAL) | {"mutation": {"sql": "SELECT 1", "allow": allow}}
    root = _project(tmp_path, {"m": json.dumps(spec)}, ["MIN-1"])
    assert load_project(root).step("MIN-1").mutation is not None


def test_the_readme_examples_of_a_step_and_a_plan_load(tmp_path: Path) -> None:
    step_yaml, plan_yaml = (
        re.findall(r"```yaml\n(.*?)```", _readme_section(title), flags=re.S)[0]
        for title in ("The step format (`steps/*.yaml`)", "The plan format (`plans/*.yaml`)")
    )
    assert _plan_from(tmp_path, plan_yaml).steps == ("SB-12", "SB-13", "SB-10")
    root = _project(tmp_path / "p", {"c": step_yaml}, ["CHECK-1"])
    step = load_project(root).step("CHECK-1")
    assert (step.order, step.mode, len(step.reverify)) == (1, "transactional", 1)


def _plan_from(tmp_path: Path, text: str) -> PlanSpec:
    path = tmp_path / "plan.yaml"
    path.write_text(text)
    return load_plan(path)
