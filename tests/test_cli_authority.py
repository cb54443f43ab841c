"""The CLI over install, principals and the ledger: what an operator or auditor types, exit codes included; and
rehearse and commit refused where the kernel does not run (schema public not adopted)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
from conftest import MakeRole
from typer.testing import CliRunner

from gcos import ledger
from gcos.cli import app
from gcos.errors import ExitCode


def run(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), terminal_width=200)


def test_install_twice_then_the_version_is_queryable(dsn: str) -> None:
    first = run("install", "--dsn", dsn, "--json")
    assert first.exit_code == 0, first.output
    result = json.loads(first.stdout)["result"]
    assert result["version_before"] is None and result["applied"]
    again = run("install", "--dsn", dsn)
    assert again.exit_code == 0
    assert "nothing to do" in again.stdout
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT gcos.installed_version()").fetchone()
    assert row == (result["version_after"],)


def test_principals_add_list_and_whoami_use_the_connection_role(dsn: str, make_role: MakeRole) -> None:
    alice = make_role("alice")
    added = run(
        "principals",
        "add",
        alice.name,
        "--name",
        "Alice N",
        "--kind",
        "human",
        "--roles",
        "sovereign,auditor",
        "--dsn",
        dsn,
        "--json",
    )
    assert added.exit_code == 0, added.output
    assert json.loads(added.stdout)["result"]["roles"] == ["auditor", "sovereign"]
    me = run("principals", "whoami", "--dsn", alice.dsn, "--json")
    assert me.exit_code == 0, me.output
    assert json.loads(me.stdout)["result"]["name"] == "Alice N"
    listed = run("principals", "list", "--dsn", alice.dsn)
    assert listed.exit_code == 0 and "Alice N" in listed.stdout


def test_a_bad_principal_kind_is_exit_2(dsn: str, make_role: MakeRole) -> None:
    bob = make_role("bob")
    result = run("principals", "add", bob.name, "--name", "Bob", "--kind", "robot", "--roles", "operator", "--dsn", dsn)
    assert result.exit_code == 2
    assert "kind 'robot'" in result.stderr


def test_ledger_verify_passes_then_names_a_tampered_record_with_exit_7(dsn: str) -> None:
    assert run("install", "--dsn", dsn).exit_code == 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        for i in range(3):
            ledger.append(conn, "note", {"i": i})
    ok = run("ledger", "verify", "--dsn", dsn)
    assert ok.exit_code == 0, ok.output
    assert "ledger intact: 4 record(s)" in " ".join(ok.stdout.split())
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE gcos.ledger DISABLE TRIGGER ALL")
        conn.execute("UPDATE gcos.ledger SET canonical = replace(canonical, '\"i\":1', '\"i\":7') WHERE seq = 3")
    broken = run("ledger", "verify", "--dsn", dsn)
    assert broken.exit_code == 7
    assert "seq 3" in broken.stderr


def test_an_anchor_detects_a_truncated_tail(dsn: str, tmp_path: Path) -> None:
    assert run("install", "--dsn", dsn).exit_code == 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        ledger.append(conn, "note", {"n": 1})
    anchor = tmp_path / "anchor.json"
    exported = run("ledger", "anchor", "--out", str(anchor), "--dsn", dsn)
    assert exported.exit_code == 0, exported.output
    assert json.loads(anchor.read_text())["seq"] == 2
    with psycopg.connect(dsn, autocommit=True) as conn:  # a superuser rewinds the tail and the head
        conn.execute("ALTER TABLE gcos.ledger DISABLE TRIGGER ALL")
        conn.execute("ALTER TABLE gcos.ledger_head DISABLE TRIGGER ALL")
        conn.execute("DELETE FROM gcos.ledger WHERE seq = 2")
        conn.execute("UPDATE gcos.ledger_head SET seq = 1, hash = (SELECT hash FROM gcos.ledger WHERE seq = 1)")
    assert run("ledger", "verify", "--dsn", dsn).exit_code == 0  # without the anchor it cannot tell
    with_anchor = run("ledger", "verify", "--anchor", str(anchor), "--dsn", dsn)
    assert with_anchor.exit_code == 7
    assert "seq 2" in " ".join(with_anchor.stderr.split())


def test_ledger_verify_on_a_database_without_gcos_says_to_install(dsn: str) -> None:
    result = run("ledger", "verify", "--dsn", dsn)
    assert result.exit_code == 2
    assert "gcos install" in result.stderr


def test_commands_refuse_a_database_with_an_older_gcos_schema(dsn: str) -> None:
    """Missing migrations may be guards (e.g. 004's outcome-record rule): upgrade before acting."""
    from gcos.install import install, migrations

    with psycopg.connect(dsn, autocommit=True) as conn:
        install(conn, upto=migrations()[-1].version - 1)
    repo = str(Path(__file__).resolve().parent.parent)
    result = run("status", "SB-12", "--dsn", dsn, "-C", repo)
    assert result.exit_code == 2
    assert "older than this gcos" in " ".join(result.stderr.split())
    assert run("install", "--dsn", dsn).exit_code == 0
    assert "older than this gcos" not in run("drift", "--dsn", dsn).stderr


def test_rehearse_and_commit_refuse_where_public_is_not_adopted(
    world_dsn: str, world_role: MakeRole, project_dir: Path
) -> None:
    """Only the kernel rehearses and commits: where schema public is not adopted there is nothing to run them,
    and the refusal (exit 3) names what an admin runs first; nothing is written to the ledger."""
    operator = world_role("op", kind="human", roles=("operator",), grant=("operator",))
    with psycopg.connect(world_dsn, autocommit=True) as conn:
        before = ledger.read_all(conn)
    for command in ("rehearse", "commit"):
        result = run(command, "SB-12", "--dsn", operator.dsn, "--project", str(project_dir))
        assert result.exit_code == ExitCode.GATE_REFUSED, (command, result.output)
        assert "gcos adopt public" in " ".join(result.stderr.split()), (command, result.stderr)
    with psycopg.connect(world_dsn, autocommit=True) as conn:
        assert ledger.read_all(conn) == before
        assert conn.execute("SELECT to_regclass('public.governance_ruleset')").fetchone() == (None,)
