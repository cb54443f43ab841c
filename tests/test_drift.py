"""gcos drift: the live world against the fingerprint recorded after the last commit (seed 000: "Drift
becomes ledger artifacts")."""

from __future__ import annotations

from pathlib import Path

import psycopg
from conftest import MakeRole
from typer.testing import CliRunner

from gcos import commands, ledger
from gcos.cli import app
from gcos.target import Target


def commit_sb12(world_dsn: str, project_dir: Path, world_role: MakeRole) -> Target:
    target = Target(world_dsn, "--dsn")
    sovereign = world_role("sovereign", kind="human", roles=("sovereign",), grant=("sovereign",))
    commands.rehearse(target, project_dir, "SB-12")
    commands.approve(Target(sovereign.dsn, "--dsn"), project_dir, "SB-12", verdict="approve", expires_in="1h")
    assert commands.commit(target, project_dir, "SB-12").ok
    return target


def drift_records(dsn: str) -> list[ledger.LedgerEntry]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return [e for e in ledger.read_all(conn) if e.kind == "drift"]


def test_no_commit_means_nothing_to_drift_from(world_dsn: str, world_role: MakeRole) -> None:
    world_role("nobody")  # installs gcos in the world
    result = CliRunner().invoke(app, ["drift", "--dsn", world_dsn])
    assert result.exit_code == 0, result.output
    assert "nothing committed yet" in result.stdout


def test_an_untouched_world_has_no_drift_and_records_nothing(
    world_dsn: str, project_dir: Path, world_role: MakeRole
) -> None:
    commit_sb12(world_dsn, project_dir, world_role)
    result = CliRunner().invoke(app, ["drift", "--dsn", world_dsn])
    assert result.exit_code == 0, result.output
    assert "no drift" in result.stdout
    assert drift_records(world_dsn) == []


def test_a_change_behind_gcos_back_is_exit_6_and_a_ledger_record_naming_it(
    world_dsn: str, project_dir: Path, world_role: MakeRole
) -> None:
    commit_sb12(world_dsn, project_dir, world_role)
    with psycopg.connect(world_dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE governance_ruleset ADD COLUMN sneaky boolean")
        conn.execute(
            "UPDATE law_articles SET heading = heading || ' (edited)' WHERE ctid = (SELECT min(ctid) FROM law_articles)"
        )
    result = CliRunner().invoke(app, ["drift", "--dsn", world_dsn], terminal_width=200)
    assert result.exit_code == 6, result.output
    (record,) = drift_records(world_dsn)
    differences = record.payload["differences"]
    assert any("governance_ruleset" in d for d in differences), differences
    assert any("law_articles" in d for d in differences), differences
    assert record.payload["baseline_seq"] < record.seq
    assert "recorded as drift at seq" in " ".join(result.stderr.split())
