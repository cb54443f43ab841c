"""libpq's conventions: with no --dsn, GCOS_DSN or DATABASE_URL, libpq's connection variables (PGHOST,
PGSERVICE...) choose the server; only when none is set is the embedded server used, and said so on stderr.
`gcos db url` never starts a server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from psycopg.conninfo import conninfo_to_dict
from typer.testing import CliRunner

from gcos.cli import app
from gcos.embedded import EmbeddedServer
from gcos.errors import ExitCode
from gcos.target import LIBPQ_ENV, Target, connect, resolve_target

KEY_VAR = {key: var for var, key in LIBPQ_ENV.items()}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory and no target named anywhere (conftest already cleared the PG* ones)."""
    for var in ("GCOS_DSN", "DATABASE_URL", "GCOS_HOME", "PGPASSWORD", *LIBPQ_ENV):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def point_libpq_at(dsn: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """PGHOST, PGPORT, PGUSER, PGDATABASE (and PGPASSWORD) set from the test's DSN."""
    params = conninfo_to_dict(dsn)
    for key, value in params.items():
        var = KEY_VAR.get(key) or {"password": "PGPASSWORD"}.get(key)
        assert var is not None, f"the test DSN has {key}, which this test cannot pass as a variable"
        monkeypatch.setenv(var, str(value))
    return params


def current_database(target: Target) -> str:
    with connect(target) as conn:
        row = conn.execute("SELECT current_database(), current_setting('lock_timeout')").fetchone()
    assert row is not None and row[1] == "5s"  # gcos's session settings still ride along
    return str(row[0])


def cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), terminal_width=200)


def test_pg_variables_mean_connect_the_libpq_way(home: Path, dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    params = point_libpq_at(dsn, monkeypatch)
    target = resolve_target(home=home)  # start_embedded stays True: nothing may be started anyway
    seen = [var for var in LIBPQ_ENV if var in {KEY_VAR[key] for key in params if key in KEY_VAR}]
    assert target == Target("", f"libpq ({', '.join(seen)})")
    assert current_database(target) == params["dbname"]
    assert f"dbname={params['dbname']}" in target.display
    assert not (home / ".gcos").exists()


def test_pgservice_with_a_service_file(home: Path, dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    params = conninfo_to_dict(dsn)
    service_file = home / "pg_service.conf"
    service_file.write_text("[gcos-test]\n" + "".join(f"{key}={value}\n" for key, value in params.items()))
    monkeypatch.setenv("PGSERVICEFILE", str(service_file))
    monkeypatch.setenv("PGSERVICE", "gcos-test")
    target = resolve_target(home=home)
    assert target.source == "libpq (PGSERVICE)"
    assert current_database(target) == params["dbname"]
    assert not (home / ".gcos").exists()


def test_explicit_dsns_beat_pg_variables_and_empty_ones_count_as_unset(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGHOST", "libpq-host")
    monkeypatch.setenv("DATABASE_URL", "postgresql://from-database-url/db")
    assert resolve_target(home=home).source == "DATABASE_URL"
    assert resolve_target("host=flag", home=home).source == "--dsn"
    monkeypatch.delenv("DATABASE_URL")
    assert resolve_target(home=home) == Target("", "libpq (PGHOST)")
    monkeypatch.setenv("PGHOST", "  ")
    monkeypatch.setenv("PGPASSWORD", "hunter2")  # says how to log in, not where: no libpq target by itself
    assert resolve_target(home=home, start_embedded=False) == Target(EmbeddedServer(home).url(), "embedded")
    assert not (home / ".gcos").exists()


def test_commands_connect_the_libpq_way_without_an_embedded_line(
    home: Path, dsn: str, gcos_installed: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = point_libpq_at(dsn, monkeypatch)
    result = cli("principals", "whoami", "--json")  # reaches this test's installed database, or exit 2
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"ok": True, "result": None}  # postgres is no named principal
    assert "embedded" not in result.stderr
    monkeypatch.setenv("PGDATABASE", f"{params['dbname']}_missing")
    assert cli("principals", "whoami").exit_code == ExitCode.BAD_INPUT  # the variables really choose
    assert not (home / ".gcos").exists()


def test_falling_back_to_the_embedded_server_says_so_on_stderr_only(home: Path) -> None:
    (home / ".gcos" / "data").mkdir(parents=True)
    (home / ".gcos" / "data" / "not-postgres").write_text("")  # up() refuses before starting anything
    result = cli("principals", "whoami", "--json")
    assert result.exit_code == ExitCode.DATABASE_UNAVAILABLE, result.output
    assert result.stderr.count("using the embedded PostgreSQL under") == 1
    assert str(home / ".gcos") in result.stderr
    assert json.loads(result.stdout)["ok"] is False  # stdout is still one JSON document


def test_db_url_never_starts_a_server(home: Path, dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    stopped = cli("db", "url")
    assert stopped.exit_code == ExitCode.DATABASE_UNAVAILABLE, stopped.output
    assert "not running" in stopped.stderr and "gcos db up" in stopped.stderr
    assert not (home / ".gcos").exists()
    params = point_libpq_at(dsn, monkeypatch)
    shown = cli("db", "url", "--json")
    assert shown.exit_code == 0, shown.output
    assert f"dbname={params['dbname']}" in json.loads(shown.stdout)["result"]
    assert not (home / ".gcos").exists()


@pytest.mark.parametrize("command", [["verify", "SB-12"], ["rehearse", "step-1"], ["status"], ["commit", "SB-12"]])
def test_commands_validate_the_project_before_any_server_starts(home: Path, command: list[str]) -> None:
    result = cli(*command)
    assert result.exit_code == ExitCode.BAD_INPUT, result.output
    assert "steps" in result.stderr
    assert not (home / ".gcos" / "data").exists()  # no server was made, let alone started
