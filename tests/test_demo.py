"""gcos demo on a real server: builds the reference world, prints the plan and a passing verify of step 1."""

from __future__ import annotations

from pathlib import Path

import psycopg
from typer.testing import CliRunner

from gcos.cli import app

REPO = Path(__file__).resolve().parent.parent


def test_demo_builds_the_world_then_says_it_is_already_built(dsn: str) -> None:
    runner = CliRunner()
    first = runner.invoke(app, ["demo", "--rows", "5000", "--dsn", dsn, "-C", str(REPO)], terminal_width=200)
    assert first.exit_code == 0, first.output
    assert "reference world of seed 002 built" in first.stdout
    assert "plan build" in first.stdout and "plan sb-1-2" in first.stdout
    assert "all 5 re-verify checks of SB-12 hold" in first.stdout
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM birth_registry").fetchone()
    assert row == (5000,)

    again = runner.invoke(app, ["demo", "--rows", "5000", "--dsn", dsn, "-C", str(REPO)], terminal_width=200)
    assert again.exit_code == 0, again.output
    assert "already built (left as it is)" in again.stdout


def test_demo_rejects_a_nonsense_row_count(dsn: str) -> None:
    result = CliRunner().invoke(app, ["demo", "--rows", "0", "--dsn", dsn, "-C", str(REPO)])
    assert result.exit_code == 2
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()
    assert row == (0,)  # nothing was written
