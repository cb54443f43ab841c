"""Errors that say the truth (issue 11, item 8), on a real server and real failure paths: a refused login is
exit 2 in the server's own words; a lock timeout names the sessions seen blocking it while it waited (exit 8);
an enum value used in the step that adds it advises two steps (exit 4); Ctrl-C says what was and was not
applied (a real SIGINT to a waiting `gcos commit`; a batched run: its last committed batch and how to resume);
a check of the wrong type shows both types; a SQL parse error names the line of the spec file.

A wrong password is proven in tests/test_errors.py (a server of its own with scram-sha-256 auth: the session
server trusts every local login, so here only unknown roles and databases reach a real refusal)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import REPO
from psycopg.conninfo import make_conninfo
from test_batched import STEP, Kit, at_batch, make_kit
from test_commit import World, adopted_world
from typer.testing import CliRunner

from gcos.cli import app
from gcos.domain import Outcome
from gcos.errors import ExitCode, Interrupted


@pytest.fixture
def world(world_dsn: str, gcos_adopted: None, project_dir: Path) -> Iterator[World]:
    yield from adopted_world(world_dsn, project_dir)


def _cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    done = CliRunner().invoke(app, [*args, "--json"], env=env)
    return done.exit_code, json.loads(done.stdout)


def _edit(spec: Path, old: str, new: str) -> None:
    text = spec.read_text()
    assert old in text
    spec.write_text(text.replace(old, new, 1))


# --------------------------------------------------------------------------- logins


@pytest.mark.parametrize("key", ["dbname", "user"])
def test_an_unknown_database_or_role_is_exit_2_in_the_servers_words(dsn: str, key: str) -> None:
    name = f"gcos_none_{uuid.uuid4().hex[:8]}"
    code, out = _cli("ledger", "verify", "--dsn", make_conninfo(dsn, **{key: name}))
    assert code == ExitCode.BAD_INPUT == out["exit_code"], out
    kind = "database" if key == "dbname" else "role"
    assert f'{kind} "{name}" does not exist' in out["error"]  # the server's FATAL message, verbatim
    assert "retrying will not help" in out["error"] and "server is running" not in out["error"]


# --------------------------------------------------------------------------- locks


@pytest.mark.parametrize(
    "mode",
    ["ACCESS EXCLUSIVE", "SHARE"],
    ids=["blocks its reads (the error reaches the client)", "blocks its insert (the kernel catches the timeout)"],
)
def test_a_lock_timeout_names_the_session_seen_blocking_it_while_it_waited(world: World, mode: str) -> None:
    world.rehearse()
    world.approve()
    with psycopg.connect(world.dsn) as holder:  # a table SB-12 reads and writes, locked by another session
        holder.execute(f"LOCK TABLE evolution_snapshots IN {mode} MODE")
        code, out = world.cli("commit", "SB-12", env={"GCOS_LOCK_TIMEOUT": "1500ms"})
        holder_pid = holder.info.backend_pid
        holder.rollback()
    assert code == ExitCode.DATABASE_UNAVAILABLE == out["exit_code"], out
    assert f"pid {holder_pid}" in out["error"] and "seen while it waited" in out["error"], out["error"]
    assert "nothing" in out["error"] and "applied" in out["error"]
    assert world.owner("governance_ruleset") is None  # and it is true: the step's table does not exist


# --------------------------------------------------------------------------- 55P04


def _add_mood_and_use_it(world: World, default: str) -> None:
    """SB-12 adds enum value 'wild' and its table's new column defaults to `default` (its INSERT uses it)."""
    world.admin.execute("CREATE TYPE public.gcos_t_mood AS ENUM ('calm')")
    world.admin.execute("ALTER TYPE public.gcos_t_mood OWNER TO gcos_kernel")
    spec = world.project / "steps" / "01-sb-12.yaml"
    _edit(spec, "mutation:\n  sql: |\n", "mutation:\n  sql: |\n    ALTER TYPE gcos_t_mood ADD VALUE 'wild';\n")
    _edit(
        spec,
        "ruleset_name     text NOT NULL,",
        f"mood gcos_t_mood NOT NULL DEFAULT {default}, ruleset_name text NOT NULL,",
    )
    _edit(spec, "  allow:\n", "  allow:\n    - {create_type: gcos_t_mood}\n")


def test_an_enum_value_the_static_check_sees_used_where_it_is_added_is_refused_before_the_server(world: World) -> None:
    _add_mood_and_use_it(world, "'wild'")
    code, out = world.cli("rehearse", "SB-12")
    assert code == ExitCode.BAD_INPUT == out["exit_code"], out
    assert "55P04" in out["error"] and "two steps" in out["error"], out["error"]


def test_an_enum_value_used_in_the_step_that_adds_it_is_exit_4_advising_two_steps(world: World) -> None:
    _add_mood_and_use_it(world, "('wi' || 'ld')::gcos_t_mood")  # a use no static check can see: the server's 55P04
    code, out = world.cli("rehearse", "SB-12")
    assert code == ExitCode.STOP_HELD == out["exit_code"], out
    assert "unsafe use of new value" in out["error"] and "two steps" in out["error"], out["error"]


# --------------------------------------------------------------------------- Ctrl-C


def _wait_for_lock_wait(admin: psycopg.Connection[Any], user: str) -> int:
    """The pid of `user`'s backend once it waits for a lock (polled; fails after 30 s)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        row = admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE usename = %s AND wait_event_type = 'Lock'", (user,)
        ).fetchone()
        if row:
            return int(row[0])
        time.sleep(0.05)
    raise AssertionError(f"{user} never waited for a lock")


def test_ctrl_c_during_a_commit_says_nothing_of_it_was_applied_and_it_is_true(world: World) -> None:
    world.rehearse()
    world.approve()
    operator = world.person("operator")
    env = {**os.environ, "PYTHONPATH": str(REPO), "GCOS_LOCK_TIMEOUT": "60s"}
    args = [sys.executable, "-m", "gcos", "commit", "SB-12", "--dsn", operator.dsn, "-C", str(world.project)]
    with psycopg.connect(world.dsn) as holder:
        holder.execute("LOCK TABLE evolution_snapshots IN ACCESS EXCLUSIVE MODE")
        proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            _wait_for_lock_wait(world.admin, operator.name)
            proc.send_signal(signal.SIGINT)  # what the terminal sends on Ctrl-C
            out, err = proc.communicate(timeout=60)
        finally:
            proc.kill()
        holder.rollback()
    assert proc.returncode == ExitCode.INTERRUPTED == 130, (out, err)
    assert "Interrupted (Ctrl-C)" in err and "nothing of it was applied" in err and "Traceback" not in err, err
    assert world.owner("governance_ruleset") is None  # the sentence is true
    left = world.admin.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE usename = %s AND xact_start IS NOT NULL", (operator.name,)
    ).fetchone()
    assert left == (0,)


@pytest.fixture
def kit(pg_admin_dsn: str, small_world: str, tmp_path: Path) -> Iterator[Kit]:
    yield from make_kit(pg_admin_dsn, small_world, tmp_path / "project")


def test_ctrl_c_in_a_batched_run_names_the_last_committed_batch_and_how_to_resume(kit: Kit) -> None:
    kit.rehearse()
    kit.approve()

    def ctrl_c() -> None:
        raise KeyboardInterrupt  # what Python raises on SIGINT, here right after batch 2 committed

    with pytest.raises(Interrupted) as caught:
        kit.commit(progress=at_batch(2, ctrl_c))
    two = kit.after_batches(2)
    error = caught.value
    assert error.exit_code == ExitCode.INTERRUPTED
    assert f"committed up to key {two[0]}" in error.message and f"`gcos commit {STEP}` resumes" in error.message
    assert kit.counts()[2:] == two  # the sentence is true: two batches stay, nothing after them
    resumed = kit.commit()  # and the command it names resumes the run
    assert resumed.outcome == Outcome.RESUMED_APPLIED and resumed.resumed_from == int(two[0])


# --------------------------------------------------------------------------- checks and SQL


def test_a_check_of_the_wrong_type_shows_both_types(world: World) -> None:
    _edit(
        world.project / "steps" / "01-sb-12.yaml",
        "sql: SELECT count(*) FROM measurement_registry WHERE enabled",
        "sql: SELECT count(*)::text FROM measurement_registry WHERE enabled",
    )
    code, out = world.cli("verify", "SB-12", who=None)  # the client evaluates the checks (gcos/checks.py)
    assert code == ExitCode.REVERIFY_MISMATCH, out
    assert "got 140 (text, expected integer)" in out["error"], out["error"]
    code, out = world.cli("rehearse", "SB-12")  # the kernel evaluates them (kernel.checks_of)
    assert code == ExitCode.REVERIFY_MISMATCH, out
    (shown,) = [c for c in out["details"]["reverify"] if not c["ok"]]
    assert shown["actual"] == "140" and shown["type_note"] == "text, expected integer", shown


def test_a_sql_parse_error_names_the_line_of_the_spec_file(project_dir: Path) -> None:
    spec = project_dir / "steps" / "01-sb-12.yaml"
    _edit(spec, "ruleset_name     text NOT NULL,", "ruleset_name     text NOT NULL,,")
    line = next(n for n, text in enumerate(spec.read_text().splitlines(), 1) if "NOT NULL,," in text)
    code, out = _cli("plan", "-C", str(project_dir))
    assert code == ExitCode.BAD_INPUT, out
    assert f"01-sb-12.yaml:{line}:" in out["error"] and f"fix line {line}" in out["error"], out["error"]
    assert "index" not in out["error"]


def test_a_sql_parse_error_in_a_referenced_file_names_that_files_line(project_dir: Path) -> None:
    rollback = project_dir / "rollback" / "sb-12.sql"
    lines = rollback.read_text().splitlines()
    lines.insert(2, "DROP TABLE IF EXISTS ,;")
    rollback.write_text("\n".join(lines) + "\n")
    code, out = _cli("plan", "-C", str(project_dir))
    assert code == ExitCode.BAD_INPUT, out
    assert "rollback/sb-12.sql:3:" in out["error"] and "fix line 3 of sb-12.sql" in out["error"], out["error"]
    assert "01-sb-12.yaml" in out["error"]  # and which spec took it


def test_a_blocker_watch_that_cannot_look_says_so_instead_of_naming_nobody(conn: psycopg.Connection[Any]) -> None:
    from gcos import blockers, kernel
    from gcos.target import SessionSettings

    watch = blockers.Watch(conn)
    watch._conninfo = "host=/nonexistent-gcos-socket-dir dbname=nowhere"  # its side connection is refused
    watch._thread.start()
    watch._thread.join(timeout=30)
    assert not watch._thread.is_alive() and watch.failed and watch.describe() == ""
    said = kernel.blocked("rehearsal of SB-12 stopped: lock timeout.", Outcome.LOCK_TIMEOUT, watch)
    assert "who blocked it is unknown: watching pg_blocking_pids failed" in said, said
    conn.execute("CREATE TABLE gcos_t_held (a int)")
    with conn.transaction():
        conn.execute("SET LOCAL lock_timeout = '1ms'")
        with psycopg.connect(conn.info.dsn, autocommit=True) as holder, holder.transaction():
            holder.execute("LOCK TABLE gcos_t_held IN ACCESS EXCLUSIVE MODE")
            with pytest.raises(psycopg.errors.LockNotAvailable) as caught:
                conn.execute("SELECT * FROM gcos_t_held")
    busy = kernel.commit_lock_busy(conn, caught.value, SessionSettings.from_env(), "SB-12", watch)
    assert busy is not None and "who blocked it is unknown" in busy.message and "nothing" in busy.message
