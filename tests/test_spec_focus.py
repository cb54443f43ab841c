"""load_project(root, focus=STEP) (what `gcos rehearse STEP` loads, issue 13 item 2): the rehearsed step, the
plans and the project's structure are checked in full; the other steps skip their JSON Schema and SQL parses.
The result is the same project where every spec is valid, and a refusal names the same error as a full load
whenever the problem is one the rehearsed step or the build order depends on."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gcos.errors import SpecError
from gcos.spec import load_project

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def project(tmp_path: Path) -> Path:
    for name in ("steps", "plans", "rollback"):
        shutil.copytree(REPO / name, tmp_path / name)
    return tmp_path


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def _refusal(root: Path, focus: str | None = None) -> str:
    with pytest.raises(SpecError) as caught:
        load_project(root, focus=focus)
    return caught.value.message


def test_a_focused_load_is_the_full_load_for_every_step_of_a_valid_project() -> None:
    full = load_project(REPO)
    for step in full.steps.values():
        for ref in (step.id, step.id.lower(), f"step-{step.order}"):
            assert load_project(REPO, focus=ref) == full, ref


def test_another_steps_schema_or_check_error_does_not_block_the_focused_step(project: Path) -> None:
    before = load_project(project).step("SB-12")
    _edit(project / "steps" / "03-sb-10.yaml", "title:", "surprise: 1\ntitle:")  # a key the schema refuses
    _edit(
        project / "steps" / "02-sb-13.yaml",
        "sql: |",
        "sql: |\n      DELETE FROM x;",
    )  # a check not a SELECT
    whole = _refusal(project)
    assert "SB-13" in whole or "SB-10" in whole
    focused = load_project(project, focus="SB-12").step("SB-12")
    assert focused == before and focused.hash == before.hash
    assert _refusal(project, focus="SB-13") == _refusal(project, focus="SB-10") == whole  # checked where it runs


def test_the_focused_steps_own_errors_refuse_as_the_full_load_does(project: Path) -> None:
    _edit(project / "steps" / "01-sb-12.yaml", "title:", "surprise: 1\ntitle:")
    whole = _refusal(project)
    assert "unknown key 'surprise'" in whole and "01-sb-12.yaml" in whole
    assert _refusal(project, focus="SB-12") == whole


@pytest.mark.parametrize(
    ("path", "old", "new", "said"),
    [
        ("steps/04-sb-11.yaml", "id: SB-11", "id: SB-10", "duplicate step id"),
        ("steps/04-sb-11.yaml", "depends_on: [", "depends_on: [SB-99, ", "unknown step 'SB-99'"),
        ("steps/04-sb-11.yaml", "approvals:", "approvals: 5\nold_approvals:", "approvals"),
        ("plans/build.yaml", "steps:", "surprise: 1\nsteps:", "unknown key 'surprise'"),
    ],
)
def test_structural_errors_elsewhere_still_refuse_a_focused_load(
    project: Path, path: str, old: str, new: str, said: str
) -> None:
    _edit(project / path, old, new)
    whole = _refusal(project)
    assert said in whole
    assert _refusal(project, focus="SB-12") == whole
