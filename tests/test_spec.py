"""Specs and plans: fail-closed validation (one case directory per error class), hashing, addressing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gcos.canonical import content_hash
from gcos.cli import app
from gcos.errors import ExitCode, SpecError
from gcos.spec import Expectation, load_project

CASES = Path(__file__).parent / "cases"
ERROR_CASES = sorted(p.name for p in CASES.iterdir() if (p / "expected.txt").exists())


@pytest.fixture
def valid(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    shutil.copytree(CASES / "valid", root)
    return root


@pytest.mark.parametrize("case", ERROR_CASES)
def test_each_spec_error_class_is_refused_with_file_key_and_reason(case: str) -> None:
    expected = (CASES / case / "expected.txt").read_text().strip()
    with pytest.raises(SpecError) as info:
        load_project(CASES / case)
    assert expected in info.value.message
    assert info.value.exit_code == ExitCode.BAD_INPUT


@pytest.mark.parametrize("case", ["unknown_key", "cycle", "missing_sql_file", "yaml_syntax"])
def test_cli_plan_exits_2_with_one_sentence(case: str) -> None:
    result = CliRunner().invoke(app, ["plan", "-C", str(CASES / case)])
    assert result.exit_code == 2
    expected = (CASES / case / "expected.txt").read_text().strip()
    assert expected in " ".join(result.stderr.split())
    assert result.stdout == ""


def test_cli_plan_json_error_carries_exit_code_and_key(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["plan", "-C", str(CASES / "unknown_key"), "--json"])
    assert result.exit_code == 2
    import json

    payload = json.loads(result.stdout)
    assert payload["ok"] is False and payload["exit_code"] == 2
    assert payload["details"]["key"] == "(top level)"
    assert payload["details"]["line"] == 24


def test_valid_project_loads_in_order_with_dag(valid: Path) -> None:
    project = load_project(valid)
    assert list(project.steps) == ["AA-1", "BB-2"]
    b = project.steps["BB-2"]
    assert b.depends_on == ("AA-1",)
    assert b.signers == 2 and b.signer_roles == ("sovereign", "council")
    assert project.steps["AA-1"].rollback_sql.strip() == "DROP TABLE widgets;"
    assert project.plans["main"].fold_ins == {"BB-2": ("F-57-1",)}


@pytest.mark.parametrize("ref", ["BB-2", "bb-2", "Bb-2", "step-2", "STEP-2", " bb-2 "])
def test_steps_are_addressed_case_insensitively_by_id_or_order(valid: Path, ref: str) -> None:
    assert load_project(valid).step(ref).id == "BB-2"


def test_unknown_step_names_the_known_ones(valid: Path) -> None:
    with pytest.raises(SpecError, match=r"unknown step 'step-9'; known steps: AA-1 \(step-1\), BB-2 \(step-2\)"):
        load_project(valid).step("step-9")


def test_editing_the_referenced_sql_file_changes_the_hash(valid: Path) -> None:
    before = load_project(valid).steps["AA-1"].hash
    (valid / "rollback" / "aa-1.sql").write_text("DROP TABLE widgets ;\n")
    assert load_project(valid).steps["AA-1"].hash != before


def test_editing_one_success_check_changes_the_hash(valid: Path) -> None:
    before = load_project(valid).steps["BB-2"].hash
    path = valid / "steps" / "b.yaml"
    path.write_text(path.read_text().replace("    expect: 2\n", "    expect: 3\n"))
    after = load_project(valid).steps["BB-2"].hash
    assert after != before
    path.write_text(path.read_text().replace("    expect: 3\n", "    expect: 2\n"))
    assert load_project(valid).steps["BB-2"].hash == before


def test_key_order_and_yaml_formatting_do_not_change_the_hash(valid: Path) -> None:
    before = load_project(valid).steps["BB-2"]
    path = valid / "steps" / "b.yaml"
    lines = path.read_text().splitlines()
    # Same data, other shape: keys reordered, flow style -> block style, comments and quotes added.
    reformatted = (
        "# reformatted by hand\nmode: 'transactional'\n"
        + "\n".join(line for line in lines if not line.startswith(("mode:", "approvals:")))
        + "\napprovals:\n  roles:\n    - sovereign\n    - council\n  signers: 2   # two humans\n"
    )
    path.write_text(reformatted)
    after = load_project(valid).steps["BB-2"]
    assert after.document == before.document
    assert after.hash == before.hash


def test_inlining_makes_the_hash_independent_of_where_the_sql_lives(valid: Path) -> None:
    """A spec with its rollback in a file hashes like one with the same SQL inline (content, not location)."""
    before = load_project(valid).steps["AA-1"].hash
    path = valid / "steps" / "a.yaml"
    path.write_text(path.read_text().replace("  file: ../rollback/aa-1.sql", '  sql: "DROP TABLE widgets;\\n"'))
    assert load_project(valid).steps["AA-1"].hash == before


def test_hash_is_sha256_of_rfc8785_canonical_json() -> None:
    # RFC 8785 sorts keys by UTF-16 code units and writes numbers in their shortest form.
    value = {"b": [1, 2.5, None, True], "a": "é", "€": 1e21}
    import hashlib

    expected = '{"a":"é","b":[1,2.5,null,true],"€":1e+21}'.encode()
    assert content_hash(value) == hashlib.sha256(expected).hexdigest()


def test_plan_hash_changes_when_global_stop_changes(valid: Path) -> None:
    before = load_project(valid).plans["main"].hash
    path = valid / "plans" / "main.yaml"
    path.write_text(path.read_text().replace("no gadgets", "no gadgets at all"))
    assert load_project(valid).plans["main"].hash != before


@pytest.mark.parametrize(
    ("raw", "actual", "holds"),
    [
        (140, 140, True),
        (140, 139, False),
        (True, True, True),
        (1, True, False),  # a boolean is not the number 1
        (True, 1, False),
        ({"gte": 1000000}, 1043000, True),
        ({"gte": 1000000}, 999999, False),
        ({"between": [1, 3]}, 3, True),
        ({"in": ["a", "b"]}, "b", True),
        ({"ne": 0}, 0, False),
        ({"lt": 5}, "4", False),  # text is never compared as a number
        (None, None, True),
        ("x", None, False),
    ],
)
def test_expectations(raw: object, actual: object, holds: bool) -> None:
    assert Expectation.parse(raw).holds(actual) is holds


def test_no_steps_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="has no steps/ directory"):
        load_project(tmp_path)
