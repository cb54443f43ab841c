"""The one translation of database errors (gcos/errors.py) on a real server: each condition becomes the
GcosError of its exit code, wherever it surfaces; logins the server refuses are told from servers that
cannot be reached (exit 2 against exit 8, CONTRACT.md "Exit codes")."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import MakeRole
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from typer.testing import CliRunner

from gcos import install as install_mod
from gcos import ledger
from gcos.cli import app
from gcos.embedded import EmbeddedServer
from gcos.errors import (
    Condition,
    DatabaseUnavailable,
    ExitCode,
    GateRefused,
    LedgerBroken,
    LoginRefused,
    SpecError,
    condition_of,
    translated,
)
from gcos.target import SessionSettings, Target, connect


def _raise(conn: psycopg.Connection[Any], state: str, hint: str | None = None) -> None:
    """Let the server raise `state` the way gcos's SQL functions do (RAISE ... USING ERRCODE)."""
    using = sql.SQL("ERRCODE = {}").format(sql.Literal(state))
    if hint:
        using += sql.SQL(", HINT = {}").format(sql.Literal(hint))
    body = sql.SQL("BEGIN RAISE EXCEPTION 'gcos: the server says no' USING {}; END").format(using)
    conn.execute(sql.SQL("DO {}").format(sql.Literal(body.as_string(conn))))


# -- SQLSTATE -> exit code ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "error", "exit_code"),
    [
        ("42501", GateRefused, ExitCode.GATE_REFUSED),
        ("22023", SpecError, ExitCode.BAD_INPUT),
        ("0A000", SpecError, ExitCode.BAD_INPUT),
        ("55000", GateRefused, ExitCode.GATE_REFUSED),
        ("GC007", LedgerBroken, ExitCode.LEDGER_BROKEN),
        ("55P03", DatabaseUnavailable, ExitCode.DATABASE_UNAVAILABLE),
        ("57014", DatabaseUnavailable, ExitCode.DATABASE_UNAVAILABLE),
        ("40001", DatabaseUnavailable, ExitCode.DATABASE_UNAVAILABLE),
        ("40P01", DatabaseUnavailable, ExitCode.DATABASE_UNAVAILABLE),
    ],
)
def test_each_sqlstate_becomes_the_error_of_its_exit_code(
    conn: psycopg.Connection[Any], state: str, error: type[Exception], exit_code: ExitCode
) -> None:
    with pytest.raises(error) as caught, translated():
        _raise(conn, state)
    assert caught.value.exit_code == exit_code  # type: ignore[attr-defined]
    assert isinstance(caught.value.__cause__, psycopg.Error) and caught.value.__cause__.sqlstate == state
    assert "gcos:" not in caught.value.message  # type: ignore[attr-defined]


def test_an_error_gcos_does_not_interpret_leaves_unchanged(conn: psycopg.Connection[Any]) -> None:
    with pytest.raises(psycopg.errors.DivisionByZero), translated():
        conn.execute("SELECT 1 / 0")


def test_the_servers_hint_is_the_advice_when_the_caller_has_none(conn: psycopg.Connection[Any]) -> None:
    with pytest.raises(GateRefused) as caught, translated():
        _raise(conn, "55000", hint="Run gcos adopt public, then retry.")
    assert "gcos adopt public" in caught.value.message


def test_the_call_site_words_the_sentence_but_never_chooses_the_class(conn: psycopg.Connection[Any]) -> None:
    with pytest.raises(DatabaseUnavailable) as caught, translated({Condition.LOCK: "X is busy; retry."}):
        _raise(conn, "55P03")
    assert caught.value.message == "X is busy; retry."
    with pytest.raises(GateRefused), translated({"42501": "nope"}, keep={Condition.LOCK}):
        _raise(conn, "42501")
    with pytest.raises(psycopg.errors.LockNotAvailable), translated(keep={Condition.LOCK}):
        _raise(conn, "55P03")


# -- the same conditions, raised by the server itself -----------------------------------------------


def test_a_lock_not_granted_in_time_is_exit_8(conn: psycopg.Connection[Any], dsn: str) -> None:
    conn.execute("CREATE TABLE held (id int)")
    with psycopg.connect(dsn) as holder:
        holder.execute("LOCK TABLE held IN ACCESS EXCLUSIVE MODE")
        conn.execute("SET lock_timeout = '100ms'")
        with pytest.raises(DatabaseUnavailable) as caught, translated():
            conn.execute("SELECT * FROM held")
    assert caught.value.exit_code == ExitCode.DATABASE_UNAVAILABLE
    assert condition_of(caught.value.__cause__) is Condition.LOCK  # type: ignore[arg-type]


def test_a_second_install_waiting_for_the_install_lock_is_exit_8(conn: psycopg.Connection[Any], dsn: str) -> None:
    conn.execute("SET lock_timeout = '100ms'")
    with psycopg.connect(dsn) as holder:
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (install_mod.LOCK_KEY,))
        with pytest.raises(DatabaseUnavailable) as caught:
            install_mod.install(conn)
    assert "install lock" in caught.value.message and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_statement_timeout_is_exit_8(conn: psycopg.Connection[Any]) -> None:
    conn.execute("SET statement_timeout = '50ms'")
    with pytest.raises(DatabaseUnavailable) as caught, translated():
        conn.execute("SELECT pg_sleep(2)")
    assert condition_of(caught.value.__cause__) is Condition.TIMEOUT  # type: ignore[arg-type]


def test_a_role_without_the_gcos_group_role_is_refused_with_exit_3(make_role: MakeRole) -> None:
    nobody = make_role("nobody")
    with nobody.connect() as session, pytest.raises(GateRefused) as caught:
        ledger.read_all(session)
    assert caught.value.exit_code == ExitCode.GATE_REFUSED and "gcos admin" in caught.value.message


def test_gcos_not_installed_is_exit_2_and_names_the_install(conn: psycopg.Connection[Any]) -> None:
    with pytest.raises(SpecError) as caught:
        ledger.read_all(conn)
    assert "gcos install" in caught.value.message


def test_a_connection_that_dies_is_exit_8(conn: psycopg.Connection[Any], dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as killer:
        killer.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))
    with pytest.raises(DatabaseUnavailable), translated():
        conn.execute("SELECT 1")


def test_a_concurrent_commit_that_cannot_serialize_is_exit_8(conn: psycopg.Connection[Any], dsn: str) -> None:
    conn.execute("CREATE TABLE counter (n int)")
    conn.execute("INSERT INTO counter VALUES (0)")
    with psycopg.connect(dsn) as other:
        other.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        other.execute("SELECT n FROM counter").fetchone()
        conn.execute("UPDATE counter SET n = n + 1")
        with pytest.raises(DatabaseUnavailable), translated():
            other.execute("UPDATE counter SET n = n + 1")


# -- logins: refused (exit 2) or unreachable (exit 8) ------------------------------------------------


@pytest.fixture(scope="module")
def password_server() -> Iterator[str]:
    """A server of our own whose TCP-less socket asks every role but postgres for a SCRAM password (the
    shared test servers trust every local login, so a wrong password would pass there)."""
    home = Path(tempfile.mkdtemp(prefix="gcos-test-pw-"))
    server = EmbeddedServer(home)
    server.up()
    try:
        with psycopg.connect(server.url("postgres"), autocommit=True) as admin:
            admin.execute("CREATE ROLE gcos_pw_alice LOGIN PASSWORD 'right-password'")
            row = admin.execute("SHOW hba_file").fetchone()
            assert row is not None
            hba = Path(row[0])
            hba.write_text("local all postgres trust\nlocal all all scram-sha-256\n" + hba.read_text())
            admin.execute("SELECT pg_reload_conf()")
        yield server.url("postgres")
    finally:
        server.down()
        shutil.rmtree(home, ignore_errors=True)


def _target(dsn: str, **change: str) -> Target:
    return Target(make_conninfo(dsn, **change), "--dsn")


def test_a_wrong_password_is_exit_2_says_what_to_check_and_never_echoes_it(password_server: str) -> None:
    with pytest.raises(LoginRefused) as caught:
        connect(_target(password_server, user="gcos_pw_alice", password="hunter2-wrong"), SessionSettings())
    error = caught.value
    assert error.exit_code == ExitCode.BAD_INPUT
    assert "password" in error.message and "hunter2-wrong" not in error.message + str(error.details)
    assert error.__cause__ is None and error.__suppress_context__
    with connect(_target(password_server, user="gcos_pw_alice", password="right-password"), SessionSettings()):
        pass  # the same DSN with the right password is let in: it was the password


def test_no_password_at_all_is_exit_2(password_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPASSFILE", "/nonexistent")
    monkeypatch.delenv("PGPASSWORD", raising=False)
    with pytest.raises(LoginRefused):
        connect(_target(password_server, user="gcos_pw_alice"), SessionSettings())


def test_an_unknown_database_is_exit_2(dsn: str) -> None:
    with pytest.raises(LoginRefused) as caught:
        connect(_target(dsn, dbname=f"gcos_none_{uuid.uuid4().hex[:8]}"), SessionSettings())
    assert "database name" in caught.value.message


def test_an_unknown_role_is_exit_2(dsn: str) -> None:
    with pytest.raises(LoginRefused) as caught:
        connect(_target(dsn, user=f"gcos_none_{uuid.uuid4().hex[:8]}"), SessionSettings())
    assert "user name" in caught.value.message


def test_a_role_that_may_not_log_in_is_exit_2(conn: psycopg.Connection[Any], dsn: str) -> None:
    name = f"gcos_t_{uuid.uuid4().hex[:8]}_nologin"
    conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(name)))
    try:
        with pytest.raises(LoginRefused):
            connect(_target(dsn, user=name), SessionSettings())
    finally:
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def test_a_server_that_is_not_there_is_exit_8_and_says_retry() -> None:
    missing = Target(f"host=/nonexistent/gcos-{uuid.uuid4().hex[:8]} dbname=app user=alice", "GCOS_DSN")
    with pytest.raises(DatabaseUnavailable) as caught:
        connect(missing, SessionSettings())
    assert "server is running" in caught.value.message and "retry" in caught.value.message


def test_the_cli_exits_2_for_a_refused_login_and_8_for_a_missing_server(dsn: str) -> None:
    unknown_db = make_conninfo(dsn, dbname=f"gcos_none_{uuid.uuid4().hex[:8]}")
    result = CliRunner().invoke(app, ["ledger", "verify", "--dsn", unknown_db, "--json"])
    assert result.exit_code == ExitCode.BAD_INPUT, result.output
    host = conninfo_to_dict(dsn).get("host") or "/tmp"
    missing = make_conninfo(dsn, host=f"{host}/gcos-none-{uuid.uuid4().hex[:8]}")
    result = CliRunner().invoke(app, ["ledger", "verify", "--dsn", missing, "--json"])
    assert result.exit_code == ExitCode.DATABASE_UNAVAILABLE, result.output
