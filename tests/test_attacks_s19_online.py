"""Attacks on online steps (migration 035: gcos.online_begin/next/done/finish/sweep, gcos._online_member, the
gcos_online_guard event trigger, gcos/online.py): get DDL past the guard in a window, keep or use gcos_kernel's
lent rights from elsewhere, make the kernel run text the approvers did not approve, get a commit record without
the index. Each hole is a strict xfail asserting the SAFE behaviour, with the fix named on the line above it.

Real roles on an adopted copy of the reference world (World from test_commit.py, Window from test_online.py)."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.json import Jsonb
from test_commit import World, adopted_world
from test_online import (
    CIC,
    INDEX,
    Window,
    add_step,
    approved,
    index_state,
    members,
    online_needs_16,
    ow,
    refused_42501,
    server_version,
    step_yaml,
)

from gcos import ledger, online
from gcos.adopt import adopt, release
from gcos.errors import GcosError
from gcos.spec import load_project

__all__ = ["online_needs_16", "ow", "server_version"]  # fixtures, imported for pytest

PWNED = "pwned_by_online"


def has_column(w: World, table: str, column: str) -> bool:
    row = w.admin.execute(
        "SELECT count(*) FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attname = %s AND NOT attisdropped",
        (f"public.{table}", column),
    ).fetchone()
    return bool(row and row[0])


def login_role(w: World, *, inherit: bool = True) -> tuple[str, str]:
    """A plain LOGIN role on the world's server (dropped with the test's people); its name and DSN."""
    name, password = f"gcos_t_{uuid.uuid4().hex[:8]}_plain", secrets.token_hex(12)
    w.admin.execute(
        sql.SQL("CREATE ROLE {} LOGIN {} PASSWORD {}").format(
            sql.Identifier(name), sql.SQL("INHERIT" if inherit else "NOINHERIT"), sql.Literal(password)
        )
    )
    return name, make_conninfo(w.dsn, user=name, password=password)


def drop_role(w: World, name: str) -> None:
    w.admin.execute(sql.SQL("DROP OWNED BY {}; DROP ROLE {}").format(sql.Identifier(name), sql.Identifier(name)))


# --------------------------------------------------------------------------- the text the kernel runs


ALTER = f"ALTER TABLE laws ADD COLUMN {PWNED} int;"
HIDDEN = {  # approved SQL (PostgreSQL sees only the CREATE INDEX) and the pieces an operator names for it
    "line comment": (f"-- do not: {ALTER}\n{CIC}", [ALTER, CIC]),
    "nested block comment": (f"/* a /* b */ {ALTER} -- */\n{CIC}", [ALTER, CIC]),
    "piece ending in a comment": (f"SELECT 1; -- {ALTER}\n{CIC}", ["SELECT 1; -- ", ALTER, CIC]),
}


@pytest.fixture(params=sorted(HIDDEN))
def hidden(request: pytest.FixtureRequest, world_dsn: str, gcos_adopted: None, project_dir: Path) -> Iterator[World]:
    """An online step whose approved text carries a statement in a comment (harmless as written)."""
    add_step(project_dir, step_yaml(HIDDEN[request.param][0]))
    for w in adopted_world(world_dsn, project_dir):
        w.hidden = HIDDEN[request.param][1]  # type: ignore[attr-defined]
        yield w


def rehearse_with(w: World, win: Window, pieces: list[str]) -> None:
    """The kernel's rehearsal with the pieces an operator names (it runs the text as written, comments and all)."""
    win.conn.isolation_level = psycopg.IsolationLevel.READ_COMMITTED
    with win.conn.transaction():
        body = win.call(
            "SELECT gcos.rehearse_online(%s, %s, %s, %s)",
            win.spec_hash,
            win.plan_hash,
            ledger.new_trace_id(),
            Jsonb(pieces),
        )
    assert body["outcome"] == "passed", body.get("message")


# Mended (037): the kernel reads the registered SQL with a lexer (gcos._online_lex: '--' to a newline or CR, nested
# /* */, '' and E'' strings, "" identifiers, dollar quotes) and refuses pieces that begin or end inside a comment or
# quoted text, gaps that are not blanks, ';' and whole comments, and concurrent pieces holding a comment or a ';'.
def test_the_kernel_never_runs_text_from_inside_a_comment(hidden: World) -> None:
    pieces: list[str] = hidden.hidden  # type: ignore[attr-defined]
    win = Window(hidden, pieces=pieces)
    try:
        try:  # the rehearsal runs the text as written: the ALTER stays a comment (037: the pieces are refused)
            rehearse_with(hidden, win, pieces)
        except psycopg.errors.InvalidParameterValue:
            rehearse_with(hidden, win, online.pieces(load_project(hidden.project).step("IDX-1")))
        hidden.approve("IDX-1")
        assert not has_column(hidden, "laws", PWNED)
        try:
            opened = win.begin()
        except psycopg.errors.InvalidParameterValue:
            opened = {"outcome": "refused"}
        while opened["outcome"] == "open" and win.call("SELECT gcos.online_next(%s)", win.run_id)["kind"] == "applied":
            pass
        assert not has_column(hidden, "laws", PWNED)  # approvers approved a comment, not an ALTER TABLE
    finally:
        win.conn.close()


CLOSED = f"-- note\n{CIC}"


@pytest.fixture
def commented(world_dsn: str, gcos_adopted: None, project_dir: Path) -> Iterator[World]:
    add_step(project_dir, step_yaml(CLOSED))
    yield from adopted_world(world_dsn, project_dir)


def test_a_comment_closed_by_its_newline_is_a_gap_and_the_step_commits(commented: World) -> None:
    """The mend must not refuse a comment line before a statement (a gap that ends with its newline)."""
    approved(commented)
    assert commented.commit("IDX-1").outcome == "applied" and index_state(commented) is True


PLAIN_AS_CONCURRENT = f"ALTER TABLE laws ADD COLUMN {PWNED} text DEFAULT 'DETACH PARTITION CONCURRENTLY';\n{CIC}"


@pytest.fixture
def disguised(world_dsn: str, gcos_adopted: None, project_dir: Path) -> Iterator[World]:
    text = step_yaml(PLAIN_AS_CONCURRENT, allow=f"{{create_index: {INDEX}}}\n    - {{alter_table: laws}}")
    add_step(
        project_dir, text.replace("sql: DROP INDEX", f"sql: ALTER TABLE laws DROP COLUMN IF EXISTS {PWNED}; DROP INDEX")
    )
    yield from adopted_world(world_dsn, project_dir)


# Mended (036): the kernel classified by a regex whose `.*` spanned literals and comments; now anchored shapes,
# the same in the kernel (gcos._online_shape) and the client (gcos/sqlcheck/online.py SHAPES).
def test_a_plain_statement_is_never_ticketed_to_run_outside_the_kernel(disguised: World) -> None:
    approved(disguised)
    win = Window(disguised)
    try:
        assert win.begin()["outcome"] == "open"
        body = dict(win.call("SELECT gcos.online_next(%s)", win.run_id))
        # a plain statement runs inside gcos._kernel_exec; a ticket would lend gcos_kernel to the session for it
        assert body["kind"] == "applied" and members(disguised) == []
        if body["kind"] == "ticket":
            win.call("SELECT gcos.online_done(%s, %s)", win.run_id, "given up")
    finally:
        win.conn.close()


# --------------------------------------------------------------------------- the lent rights, from elsewhere


# Mended (037): gcos._online_guard judges MEMBER (a NOINHERIT member SETs ROLE to the holder), for the login role and
# the role the session SET
def test_a_noinherit_member_of_the_holder_runs_no_ddl_in_the_window(ow: World) -> None:
    approved(ow)
    name, dsn = login_role(ow, inherit=False)
    holder = ow.person("operator").name
    ow.admin.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(holder), sql.Identifier(name)))
    win = Window(ow)
    win.ticket()
    member = psycopg.connect(dsn, autocommit=True)
    try:
        member.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(holder)))
        refused_42501(member, f"ALTER TABLE laws ADD COLUMN {PWNED} int")
    finally:
        member.close()
        win.call("SELECT gcos.online_done(%s, %s)", win.run_id, "given up")
        win.conn.close()
        drop_role(ow, name)
    assert not has_column(ow, "laws", PWNED)


@pytest.fixture
def second_db(ow: World, pg_admin_dsn: str, adopted_world_template: str) -> Iterator[str]:
    """Another gcos database of the same server (an adopted copy of the reference world); its superuser DSN."""
    name = f"gcos_t_other_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(adopted_world_template)
            )
        )
    params = conninfo_to_dict(pg_admin_dsn)
    params["dbname"] = name
    yield make_conninfo(**{k: str(v) for k, v in params.items() if v is not None})
    with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


# Mended (036, DDL only; DML stays open, see the window tests): gcos_kernel is cluster-wide, so a membership lent
# in one database was usable in every gcos database of the server; each database's guard now refuses DDL by a
# login role that can use gcos_kernel without a live ticket in THIS database.
def test_a_ticket_lends_nothing_in_another_database_of_the_server(ow: World, second_db: str) -> None:
    approved(ow)
    win = Window(ow)
    win.ticket()
    elsewhere = psycopg.connect(
        make_conninfo(ow.person("operator").dsn, dbname=conninfo_to_dict(second_db)["dbname"]), autocommit=True
    )
    try:
        refused_42501(elsewhere, f"ALTER TABLE laws ADD COLUMN {PWNED} int")
    finally:
        elsewhere.close()
        win.call("SELECT gcos.online_done(%s, %s)", win.run_id, "given up")
        win.conn.close()
    with psycopg.connect(second_db) as other:
        row = other.execute(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'public.laws'::regclass AND attname = %s", (PWNED,)
        ).fetchone()
    assert row == (0,)


# Mended (040): every adopted table carries the window shield, a BEFORE ... FOR EACH STATEMENT trigger (ENABLE ALWAYS)
# refusing DML by a role that has gcos_kernel's rights without being it (adopt puts it on, online_begin/next check it)
def test_a_window_lends_no_dml_to_another_session_of_the_holder(ow: World) -> None:
    approved(ow)
    other = psycopg.connect(ow.person("operator").dsn, autocommit=True)
    refused_42501(other, "DELETE FROM laws WHERE false")  # outside a window: operators hold no rights on adopted tables
    win = Window(ow)
    win.ticket()
    try:
        refused_42501(other, "DELETE FROM laws WHERE false")
    finally:
        other.close()
        win.call("SELECT gcos.online_done(%s, %s)", win.run_id, "given up")
        win.conn.close()


# --------------------------------------------------------------------------- a commit record without the work


WEAK = """\
id: IDX-1
title: An index built online, checked weakly
order: 90
mode: online
depends_on: []
approvals: {{signers: 1, roles: [sovereign]}}
watch: [evolution_snapshots]
mutation:
  sql: |
    {cic}
  allow:
    - {{create_index: {index}}}
success:
  - name: the table is there
    sql: SELECT count(*) >= 0 FROM evolution_snapshots
    expect: true
rollback:
  sql: DROP INDEX IF EXISTS {index};
"""


@pytest.fixture
def weak(world_dsn: str, gcos_adopted: None, project_dir: Path) -> Iterator[World]:
    add_step(project_dir, WEAK.format(cic=CIC, index=INDEX))
    yield from adopted_world(world_dsn, project_dir)


# fix: gcos.online_done proves the ticketed piece itself: for CREATE INDEX CONCURRENTLY the index it names (read by the
# kernel at online_begin) exists and pg_index.indisvalid; online_finish refuses a create_index name with no index
# Mended (036): the guard marks a ticket started; online_done on one that never started writes a stop and closes the
# run, so online_finish is refused.
def test_no_commit_record_without_the_index(weak: World) -> None:
    approved(weak)
    win = Window(weak)
    win.ticket()
    try:
        win.call("SELECT gcos.online_done(%s, NULL)", win.run_id)  # the client lies: it never ran the statement
        try:
            finish: dict[str, Any] = dict(win.call("SELECT gcos.online_finish(%s)", win.run_id))
        except psycopg.errors.InsufficientPrivilege:
            finish = {"outcome": "refused"}
    finally:
        win.conn.close()
    assert index_state(weak) is None
    assert finish["outcome"] != "applied" and weak.records("commit", "IDX-1") == []
    assert weak.records("stop", "IDX-1")  # and the lie is on the record


# --------------------------------------------------------------------------- attacks the design holds against


def test_the_ticket_holder_cannot_free_itself_by_dropping_its_liveness_lock(ow: World) -> None:
    """Releasing the run's advisory lock makes the window look crashed: DDL stays refused, the sweep revokes."""
    approved(ow)
    win = Window(ow)
    body = win.ticket()
    win.conn.execute("SELECT pg_advisory_unlock_all()")
    refused_42501(win.conn, body["sql"])  # no longer the live holder: not even its own text
    refused_42501(win.conn, f"ALTER TABLE laws ADD COLUMN {PWNED} int")
    assert win.call("SELECT gcos.online_sweep()") == 1
    assert members(ow) == [] and index_state(ow) is None
    assert ow.records("stop", "IDX-1")[-1].payload["online"] is True
    win.conn.close()


def test_a_second_begin_while_a_window_is_open_is_refused_and_lends_nothing_more(ow: World) -> None:
    approved(ow)
    win = Window(ow)
    win.ticket()
    again = Window(ow)
    try:
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            again.begin()
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # the first run is not this session's
            again.call("SELECT gcos.online_next(%s)", win.run_id)
        assert members(ow) == [ow.person("operator").name]
    finally:
        again.conn.close()
        win.call("SELECT gcos.online_done(%s, %s)", win.run_id, "given up")
        win.conn.close()
    assert members(ow) == []


def test_the_ticketed_text_sent_with_a_second_statement_runs_nothing(ow: World) -> None:
    """current_query() is the whole string: the ticket's text plus anything else is not the ticket's text."""
    approved(ow)
    win = Window(ow)
    body = win.ticket()
    try:
        for attack in (
            f"{body['sql']} ALTER TABLE laws ADD COLUMN {PWNED} int;",
            f"ALTER TABLE laws ADD COLUMN {PWNED} int; {body['sql']}",
            f"/* */ {body['sql']}",
            body["sql"].replace("IF", "\u0130F"),
        ):
            with pytest.raises(psycopg.Error):
                win.conn.execute(attack.encode())
        assert not has_column(ow, "laws", PWNED) and index_state(ow) is None
    finally:
        win.call("SELECT gcos.online_done(%s, %s)", win.run_id, "given up")
        win.conn.close()


# Mended (037): the guard judges the role the session SET as well as its login role: a session that SET ROLE
# gcos_kernel (PostgreSQL 15, while its role held a ticket) runs no DDL without a live ticket of its own
def test_a_role_set_in_the_window_does_not_outlive_it_in_another_session(ow: World) -> None:
    approved(ow)
    other = psycopg.connect(ow.person("operator").dsn, autocommit=True)  # another session of the ticket holder
    win = Window(ow)
    win.ticket()
    try:
        try:
            other.execute("SET ROLE gcos_kernel")
        except psycopg.errors.InsufficientPrivilege:  # PostgreSQL 16+: lent without SET
            assert ow.admin.info.server_version >= 160000
        assert win.call("SELECT gcos.online_done(%s, %s)", win.run_id, "given up")["kind"] == "stopped"
        assert members(ow) == []
        refused_42501(other, f"ALTER TABLE laws ADD COLUMN {PWNED} int")  # the window is over
    finally:
        other.close()
        win.conn.close()
    assert not has_column(ow, "laws", PWNED)


# Mended (040): the shield judges the membership, not the ticket's liveness: a crashed window lends no DML until swept
def test_a_crashed_window_lends_no_dml_before_the_sweep(ow: World) -> None:
    approved(ow)
    win = Window(ow)
    win.ticket()
    ow.admin.execute("SELECT pg_terminate_backend(%s, 5000)", (win.conn.info.backend_pid,))
    win.conn.close()
    again = psycopg.connect(ow.person("operator").dsn, autocommit=True)
    try:
        refused_42501(again, "UPDATE laws SET title = title WHERE false")
    finally:
        again.close()


def test_only_a_human_operator_opens_an_online_run(ow: World) -> None:
    """An agent (operator role, kind agent), a sovereign and a plain login role are refused and lent nothing."""
    approved(ow)
    win = Window(ow)  # the spec and plan registered, the run id derived, as an operator's gcos commit does
    for who in ("agent", "sovereign"):
        with (
            psycopg.connect(ow.person(who).dsn, autocommit=True) as conn,
            pytest.raises(psycopg.errors.InsufficientPrivilege),
        ):
            conn.execute("SELECT gcos.online_begin(%s, %s, %s, %s, %s, %s)", win.args)
    win.conn.close()
    name, dsn = login_role(ow)
    with psycopg.connect(dsn, autocommit=True) as plain:
        for query in (
            "SELECT gcos.online_next('0')",
            "SELECT gcos.online_sweep()",
            "SELECT gcos._online_member(current_user, true)",
        ):
            refused_42501(plain, query)
    drop_role(ow, name)
    assert members(ow) == [] and ow.records("policy_decision", "IDX-1") == []


HALT = "stop:\n  - name: a law is halted\n    sql: SELECT EXISTS (SELECT FROM laws WHERE title = 'halt')\nsuccess:"


@pytest.fixture
def stopped(world_dsn: str, gcos_adopted: None, project_dir: Path) -> Iterator[World]:
    add_step(project_dir, step_yaml(CIC).replace("success:", HALT, 1))
    yield from adopted_world(world_dsn, project_dir)


# Mended (037): gcos.online_finish judges the step's stops and the plan's global stops after the last statement
# (gcos._online_stops: gcos._kernel_stop and gcos._waive, as a commit) and writes `stop` (exit 4), not `commit`
def test_a_stop_condition_that_holds_at_commit_stops_an_online_step(stopped: World) -> None:
    approved(stopped)  # the stop does not hold at rehearsal
    stopped.admin.execute("UPDATE laws SET title = 'halt' WHERE law_id = (SELECT min(law_id) FROM laws)")
    try:
        outcome = stopped.commit("IDX-1").outcome
    except GcosError as exc:
        outcome = type(exc).__name__
    assert outcome == "StopHeld" and stopped.records("commit", "IDX-1") == []
    stop = stopped.records("stop", "IDX-1")[-1].payload
    assert stop["outcome"] == "stopped" and stop["statements_applied"] == 1 and "a law is halted" in stop["reason"]
    assert "after its last statement (all 1 applied" in stop["reason"]


# --------------------------------------------------------------------------- the window shield (040)

SHIELDED = "SELECT gcos._window_shielded(%s::regclass)"


def shielded(w: World, table: str) -> bool:
    row = w.admin.execute(SHIELDED, (f"public.{table}",)).fetchone()
    return bool(row and row[0])


def test_the_shield_refuses_every_kind_of_dml_in_the_window_and_no_application_grant(ow: World) -> None:
    """INSERT, UPDATE, DELETE, TRUNCATE, COPY, MERGE, upsert: refused to the holder's sessions (the window's own too);
    a plain role with its own grant writes as before, and the fingerprint does not see the shield."""
    approved(ow)
    name, dsn = login_role(ow)
    assert "gcos_window_shield" not in fingerprint_text(ow)  # an intact shield is no part of the fingerprint
    win = Window(ow)
    win.ticket()
    # granted once the window is open (the gates refuse to open one while others hold write grants)
    ow.admin.execute(sql.SQL("GRANT SELECT, DELETE ON laws TO {}").format(sql.Identifier(name)))
    other = psycopg.connect(ow.person("operator").dsn, autocommit=True)
    app = psycopg.connect(dsn, autocommit=True)
    try:
        for conn in (other, win.conn):
            for attack in (
                "DELETE FROM laws WHERE false",
                "UPDATE laws SET title = title WHERE false",
                "INSERT INTO laws SELECT * FROM laws WHERE false",
                "INSERT INTO laws SELECT * FROM laws WHERE false ON CONFLICT DO NOTHING",
                "MERGE INTO laws USING (SELECT 1 WHERE false) AS s ON false WHEN MATCHED THEN DELETE",
                "TRUNCATE laws CASCADE",
            ):
                refused_42501(conn, attack)
            with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.cursor().copy("COPY laws FROM STDIN"):
                pass
        app.execute("DELETE FROM laws WHERE false")  # its own grant: no member of gcos_kernel, the shield lets it by
    finally:
        other.close()
        app.close()
        win.call("SELECT gcos.online_done(%s, %s)", win.run_id, "given up")
        win.conn.close()
        drop_role(ow, name)
    assert ow.admin.execute("SELECT count(*) FROM laws").fetchone() != (0,)


def fingerprint_text(w: World) -> str:
    row = w.admin.execute("SELECT gcos.fingerprint('{}'::text[], '{gcos}'::text[])::text").fetchone()
    assert row is not None
    return str(row[0])


def test_online_begin_puts_the_shield_back_where_it_is_missing_or_disabled(ow: World) -> None:
    ow.admin.execute("DROP TRIGGER gcos_window_shield ON laws")
    ow.admin.execute("ALTER TABLE evolution_snapshots DISABLE TRIGGER gcos_window_shield")
    ow.admin.execute("CREATE TABLE public.made_since (id int); ALTER TABLE public.made_since OWNER TO gcos_kernel")
    assert not shielded(ow, "laws") and not shielded(ow, "evolution_snapshots") and not shielded(ow, "made_since")
    assert "gcos_window_shield" in fingerprint_text(ow)  # a disabled shield shows
    approved(ow)  # rehearsed and approved on this world (the gates refuse a world changed since)
    win = Window(ow)
    win.ticket()
    other = psycopg.connect(ow.person("operator").dsn, autocommit=True)
    try:
        assert shielded(ow, "laws") and shielded(ow, "evolution_snapshots") and shielded(ow, "made_since")
        refused_42501(other, "INSERT INTO made_since VALUES (1)")
        refused_42501(other, "DELETE FROM laws WHERE false")
    finally:
        other.close()
        win.call("SELECT gcos.online_done(%s, %s)", win.run_id, "given up")
        win.conn.close()


def test_a_table_the_kernel_cannot_shield_in_time_opens_no_window(ow: World) -> None:
    approved(ow)
    ow.admin.execute("DROP TRIGGER gcos_window_shield ON laws")
    holder = psycopg.connect(ow.dsn)
    holder.execute("LOCK TABLE laws IN ROW EXCLUSIVE MODE")  # as a writer's open transaction holds it
    win = Window(ow)
    win.conn.execute("SET lock_timeout = '300ms'")
    decisions = len(ow.records("policy_decision", "IDX-1"))
    try:
        with pytest.raises(psycopg.errors.LockNotAvailable, match="window shield"):
            win.begin()
        assert members(ow) == [] and len(ow.records("policy_decision", "IDX-1")) == decisions
        assert ow.admin.execute("SELECT count(*) FROM gcos.online_runs WHERE closed_at IS NULL").fetchone() == (0,)
    finally:
        holder.rollback()
        holder.close()
    assert win.begin()["outcome"] == "open" and shielded(ow, "laws")
    win.conn.close()


def test_release_takes_the_shield_off_and_adopt_puts_it_back(ow: World) -> None:
    tables = "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p')"
    count = "SELECT count(*) FROM pg_trigger WHERE tgname = 'gcos_window_shield'"
    unshielded = "SELECT count(*) FROM gcos._window_unshielded(NULL)"
    assert ow.admin.execute(count).fetchone() == ow.admin.execute(tables).fetchone()
    assert ow.admin.execute(unshielded).fetchone() == (0,)
    release(ow.admin, ["public"])
    assert ow.admin.execute(count).fetchone() == (0,)
    adopt(ow.admin, ["public"])
    assert ow.admin.execute(count).fetchone() == ow.admin.execute(tables).fetchone()
    assert ow.admin.execute(unshielded).fetchone() == (0,)
