"""Where the database is, and connections that carry their timeouts from the first statement."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors as pgerrors
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from gcos.embedded import EmbeddedServer
from gcos.errors import DatabaseUnavailable, ExitCode, SpecError
from gcos.target import SessionSettings, Target, connect, redact_dsn, resolve_target

ENV_VARS = (
    "GCOS_DSN",
    "DATABASE_URL",
    "GCOS_LOCK_TIMEOUT",
    "GCOS_STATEMENT_TIMEOUT",
    "GCOS_IDLE_TIMEOUT",
    "GCOS_APPLICATION_NAME",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)


def show(conn: psycopg.Connection[Any], name: str) -> str:
    row = conn.execute("SELECT current_setting(%s)", [name]).fetchone()
    assert row is not None
    return str(row[0])


# -- precedence -------------------------------------------------------------------------------------


def test_precedence_dsn_flag_then_gcos_dsn_then_database_url_then_embedded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GCOS_DSN", "host=from-gcos-dsn")
    monkeypatch.setenv("DATABASE_URL", "postgresql://from-database-url/db")
    assert resolve_target("host=from-flag", home=tmp_path) == Target("host=from-flag", "--dsn")
    assert resolve_target(home=tmp_path) == Target("host=from-gcos-dsn", "GCOS_DSN")
    monkeypatch.setenv("GCOS_DSN", "   ")  # empty counts as unset
    assert resolve_target(home=tmp_path) == Target("postgresql://from-database-url/db", "DATABASE_URL")
    monkeypatch.delenv("GCOS_DSN")
    monkeypatch.delenv("DATABASE_URL")
    embedded = resolve_target(home=tmp_path, start_embedded=False)
    assert embedded == Target(EmbeddedServer(tmp_path).url(), "embedded")
    assert not EmbeddedServer(tmp_path).status().running  # start_embedded=False starts nothing


@pytest.mark.slow  # starts and stops a server of its own
def test_embedded_default_is_started_and_reachable(tmp_path: Path) -> None:
    try:
        target = resolve_target(home=tmp_path)
        assert target.source == "embedded"
        with connect(target) as conn:
            assert show(conn, "application_name") == "gcos"
    finally:
        EmbeddedServer(tmp_path).down()


def test_sqlalchemy_style_database_url_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://u@h/db")
    assert resolve_target().dsn == "postgresql://u@h/db"


@pytest.mark.parametrize("bad", ["host=h password=hunter2 no_such_key=1", "postgresql://u:hunter2@h/db?bogus=1"])
def test_malformed_dsn_is_bad_input_and_never_echoed(bad: str) -> None:
    with pytest.raises(SpecError) as caught:
        resolve_target(bad)
    assert caught.value.exit_code == ExitCode.BAD_INPUT
    assert "--dsn" in caught.value.message and "hunter2" not in caught.value.message


def test_empty_dsn_flag_is_bad_input() -> None:
    with pytest.raises(SpecError):
        resolve_target("  ")


# -- redaction ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        ("postgresql://alice:hunter2@db.example:5433/app", "postgresql://alice:***@db.example:5433/app"),
        (
            "postgres://alice:p%40ss@h1:1,h2:2/app?sslmode=require",
            "postgres://alice:***@h1:1,h2:2/app?sslmode=require",
        ),
        (
            "postgresql://alice@h/app?password=hunter2&sslmode=require",
            "postgresql://alice@h/app?password=***&sslmode=require",
        ),
        ("postgresql://alice@h/app", "postgresql://alice@h/app"),
        ("host=h user=alice dbname=app", "host=h user=alice dbname=app"),
    ],
)
def test_redact_uri_and_unchanged_forms(dsn: str, expected: str) -> None:
    assert redact_dsn(dsn) == expected


def test_redact_key_value_form() -> None:
    redacted = redact_dsn("host=h user=alice password='hunter 2' sslpassword=k3y dbname=app")
    assert "hunter" not in redacted and "k3y" not in redacted
    assert conninfo_to_dict(redacted) == {
        "host": "h",
        "user": "alice",
        "password": "***",
        "sslpassword": "***",
        "dbname": "app",
    }


def test_malformed_dsn_is_not_echoed_by_redaction() -> None:
    assert "hunter2" not in redact_dsn("host=h password=hunter2 'unterminated")


def test_target_display_and_repr_hide_the_password() -> None:
    target = Target("postgresql://alice:hunter2@h/app", "GCOS_DSN")
    assert target.display == "postgresql://alice:***@h/app"
    assert "hunter2" not in repr(target) and "hunter2" not in str(target)


# -- session settings -------------------------------------------------------------------------------


def test_connection_carries_default_settings_from_the_first_statement(target: Target) -> None:
    with connect(target) as conn:
        assert conn.autocommit
        assert show(conn, "lock_timeout") == "5s"
        assert show(conn, "statement_timeout") == "1min"
        assert show(conn, "idle_in_transaction_session_timeout") == "1min"
        assert show(conn, "application_name") == "gcos"


def test_env_overrides_the_settings(target: Target, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GCOS_LOCK_TIMEOUT", "250ms")
    monkeypatch.setenv("GCOS_STATEMENT_TIMEOUT", " 2min ")
    monkeypatch.setenv("GCOS_IDLE_TIMEOUT", "0")
    monkeypatch.setenv("GCOS_APPLICATION_NAME", "gcos test")
    assert SessionSettings.from_env() == SessionSettings("gcos test", "250ms", "2min", "0")
    with connect(target) as conn:
        assert show(conn, "lock_timeout") == "250ms"
        assert show(conn, "statement_timeout") == "2min"
        assert show(conn, "idle_in_transaction_session_timeout") == "0"
        assert show(conn, "application_name") == "gcos test"


@pytest.mark.parametrize("garbage", ["soon", "-1s", "5 seconds", "5s -c search_path=evil", "1e3", "30000d", "5S"])
def test_garbage_timeout_is_bad_input(garbage: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GCOS_LOCK_TIMEOUT", garbage)
    with pytest.raises(SpecError) as caught:
        SessionSettings.from_env()
    assert caught.value.exit_code == ExitCode.BAD_INPUT
    assert "GCOS_LOCK_TIMEOUT" in caught.value.message
    with pytest.raises(SpecError):
        SessionSettings(statement_timeout=garbage)


@pytest.mark.parametrize("garbage", ["tab\there", "x" * 64, "caf\u00e9"])
def test_garbage_application_name_is_bad_input(garbage: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GCOS_APPLICATION_NAME", garbage)
    with pytest.raises(SpecError, match="GCOS_APPLICATION_NAME"):
        SessionSettings.from_env()


def test_lock_timeout_really_fires(target: Target) -> None:
    with connect(target) as holder, connect(target, SessionSettings(lock_timeout="100ms")) as waiter:
        holder.execute("CREATE TABLE t (id int)")
        with holder.transaction():
            holder.execute("LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
            with pytest.raises(pgerrors.LockNotAvailable):
                waiter.execute("SELECT * FROM t")


def test_dsn_options_are_kept_and_dbname_can_be_overridden(dsn: str) -> None:
    target = Target(make_conninfo(dsn, options="-c search_path=elsewhere"), "--dsn")
    with connect(target) as conn:
        assert show(conn, "search_path") == "elsewhere"
        assert show(conn, "lock_timeout") == "5s"
    with connect(target, dbname="postgres") as conn:
        assert show(conn, "search_path") == "elsewhere"
        row = conn.execute("SELECT current_database()").fetchone()
        assert row is not None and row[0] == "postgres"


# -- unreachable ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dsn",
    [
        "host=/nonexistent/gcos-no-socket-here port=5432 user=alice password=hunter2 dbname=app",
        "postgresql://alice:hunter2@127.0.0.1:1/app",
    ],
)
def test_unreachable_database_is_unavailable_without_the_password(dsn: str) -> None:
    with pytest.raises(DatabaseUnavailable) as caught:
        connect(Target(dsn, "GCOS_DSN"))
    error = caught.value
    assert error.exit_code == ExitCode.DATABASE_UNAVAILABLE
    assert "hunter2" not in error.message and "hunter2" not in str(error.details)
    assert "***" in error.message and "retry" in error.message
    assert error.__cause__ is None and error.__suppress_context__
