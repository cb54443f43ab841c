"""gcos verify: live re-verify on the reference world, read-only, expected vs actual, exit 6 on mismatch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from gcos import commands
from gcos.cli import app
from gcos.errors import ReverifyMismatch
from gcos.spec import load_project
from gcos.target import Target

REPO = Path(__file__).resolve().parent.parent


def run(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), terminal_width=200)


def apply_mutations(dsn: str, *step_ids: str) -> None:
    """Simulate commits of earlier steps by applying their mutation SQL directly."""
    project = load_project(REPO)
    with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction():
        for step_id in step_ids:
            mutation = project.steps[step_id].mutation
            assert mutation is not None
            conn.execute(mutation.sql)


@pytest.mark.parametrize("ref", ["step-1", "step-2", "step-4", "SB-1-2"])
def test_verify_passes_on_the_freshly_built_world(world_dsn: str, ref: str) -> None:
    result = run("verify", ref, "--dsn", world_dsn, "-C", str(REPO))
    assert result.exit_code == 0, result.output
    step = load_project(REPO).step(ref)
    assert f"all {len(step.reverify)} re-verify checks of {step.id} hold" in result.stdout


def test_step_3_and_4_verify_once_their_predecessors_are_applied(world_dsn: str) -> None:
    """SB-10 re-verifies 'governance_ruleset present' (seed 002 step 3), so SB-12 and SB-13 come first."""
    with pytest.raises(ReverifyMismatch, match="governance_ruleset present"):
        commands.verify(Target(world_dsn, "--dsn"), REPO, "step-3")
    apply_mutations(world_dsn, "SB-12", "SB-13")
    for ref in ("step-3", "step-4"):
        result = commands.verify(Target(world_dsn, "--dsn"), REPO, ref)
        assert result.ok and all(c.ok for c in result.checks)


def test_one_changed_count_fails_the_matching_check_with_exit_6_and_the_numbers(world_dsn: str) -> None:
    with psycopg.connect(world_dsn, autocommit=True) as conn:
        conn.execute(
            "UPDATE measurement_registry SET enabled = false WHERE ctid = (SELECT min(ctid) FROM measurement_registry)"
        )
    result = run("verify", "SB-12", "--dsn", world_dsn, "-C", str(REPO))
    assert result.exit_code == 6
    message = " ".join(result.stderr.split())
    assert "re-verify of SB-12 failed: 'measurement_registry 140 enabled (hash input)' expected 140, got 139" in message
    # the other checks still ran and are shown with their own values
    assert "governance_ruleset absent" in result.stdout and "✘" in result.stdout


def test_json_output_carries_every_check(world_dsn: str) -> None:
    result = run("verify", "step-1", "--dsn", world_dsn, "-C", str(REPO), "--json")
    assert result.exit_code == 0
    payload = json.loads(result.stdout)
    assert payload["ok"] is True
    checks = payload["result"]["checks"]
    assert [c["name"] for c in checks] == [c.name for c in load_project(REPO).steps["SB-12"].reverify]
    assert all(c["ok"] for c in checks)
    assert any(c["actual"] == 140 for c in checks)


def _set_check_sql(project_dir: Path, step_file: str, sql: str) -> None:
    path = project_dir / "steps" / step_file
    text = path.read_text()
    marker = "reverify:\n  - name:"
    start = text.index(marker)
    sql_at = text.index("    sql:", start)
    end = text.index("\n", sql_at)
    # replace the first re-verify check's one-line SQL (block scalars are replaced up to their last line)
    while text[end + 1 :].startswith("      "):
        end = text.index("\n", end + 1)
    path.write_text(text[:sql_at] + f"    sql: {sql}" + text[end:])


@pytest.mark.parametrize(
    ("sql", "shape"),
    [
        ("SELECT 1, 2", "1 row(s) of 2 column(s)"),
        ("SELECT g FROM generate_series(1, 3) g", "3 row(s) of 1 column(s)"),
        ("SELECT 1 WHERE false", "0 row(s) of 1 column(s)"),
    ],
)
def test_a_check_that_is_not_one_value_is_exit_2_naming_it(
    world_dsn: str, project_dir: Path, sql: str, shape: str
) -> None:
    _set_check_sql(project_dir, "01-sb-12.yaml", sql)
    first = load_project(project_dir).steps["SB-12"].reverify[0].name
    result = run("verify", "SB-12", "--dsn", world_dsn, "-C", str(project_dir))
    assert result.exit_code == 2
    message = " ".join(result.stderr.split())
    assert f"re-verify check {first!r} must return one row of one column, got {shape}" in message


def test_a_check_on_a_missing_table_is_a_mismatch_not_a_crash(world_dsn: str, project_dir: Path) -> None:
    _set_check_sql(project_dir, "01-sb-12.yaml", "SELECT count(*) FROM no_such_table")
    result = run("verify", "SB-12", "--dsn", world_dsn, "-C", str(project_dir))
    assert result.exit_code == 6
    assert 'relation "no_such_table" does not exist' in result.stdout.replace("\n", " ") or "no_such_table" in (
        result.stderr
    )


def test_verify_is_read_only_even_when_a_check_tries_to_write(world_dsn: str, project_dir: Path) -> None:
    with psycopg.connect(world_dsn, autocommit=True) as conn:
        conn.execute("CREATE SEQUENCE probe_seq")
    _set_check_sql(project_dir, "01-sb-12.yaml", "SELECT nextval('probe_seq')")
    result = run("verify", "SB-12", "--dsn", world_dsn, "-C", str(project_dir))
    assert result.exit_code == 2
    assert "read-only transaction" in " ".join(result.stderr.split())
    with psycopg.connect(world_dsn, autocommit=True) as conn:
        row = conn.execute("SELECT last_value, is_called FROM probe_seq").fetchone()
    assert row == (1, False)  # never advanced


def test_verify_leaves_no_session_open_and_sets_its_timeouts(world_dsn: str) -> None:
    commands.verify(Target(world_dsn, "--dsn"), REPO, "SB-12")
    with psycopg.connect(world_dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT state FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'gcos'"
        ).fetchall()
    assert rows == []


def test_unknown_step_is_exit_2(world_dsn: str) -> None:
    result = run("verify", "step-99", "--dsn", world_dsn, "-C", str(REPO))
    assert result.exit_code == 2
    assert "unknown step 'step-99'" in result.stderr


def test_unreachable_database_is_exit_8_without_the_password(tmp_path: Path) -> None:
    dsn = f"postgresql://someone:s3cret-pw@/gcos?host={tmp_path}&port=5999&connect_timeout=2"
    result = run("verify", "step-1", "--dsn", dsn, "-C", str(REPO))
    assert result.exit_code == 8
    assert "s3cret-pw" not in result.stderr + result.stdout
    assert "Cannot connect" in result.stderr
