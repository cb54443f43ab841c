"""gcos.target.set_local_timeouts (now one statement, one round trip) sets the four settings for the
transaction only, as the four statements it replaces did."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from gcos.target import SessionSettings, set_local_timeouts


def _shown(conn: psycopg.Connection[Any]) -> tuple[str, ...]:
    row = conn.execute(
        "SELECT current_setting('lock_timeout'), current_setting('statement_timeout'), "
        "current_setting('idle_in_transaction_session_timeout'), current_setting('synchronous_commit')"
    ).fetchone()
    assert row is not None
    return tuple(row)


def test_the_settings_hold_for_the_transaction_only(conn: psycopg.Connection[Any]) -> None:
    conn.execute("SET synchronous_commit = off")
    conn.execute("SET lock_timeout = '3s'")
    outside = _shown(conn)
    settings = SessionSettings(
        lock_timeout="1500ms", statement_timeout="7s", idle_in_transaction_session_timeout="2min"
    )
    with conn.transaction():
        set_local_timeouts(conn, settings)
        inside = _shown(conn)
    assert inside == ("1500ms", "7s", "2min", "on")
    assert outside[0] == "3s" and outside[3] == "off"
    assert _shown(conn) == outside


def test_a_rolled_back_transaction_leaves_the_session_as_it_was(conn: psycopg.Connection[Any]) -> None:
    outside = _shown(conn)
    with pytest.raises(RuntimeError, match="roll back"), conn.transaction():
        set_local_timeouts(conn, SessionSettings(lock_timeout="1s"))
        assert _shown(conn)[0] == "1s"
        raise RuntimeError("roll back")
    assert _shown(conn) == outside
