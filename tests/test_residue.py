"""No silent non-transactional residue (issue 9 item 9): setval and session advisory locks are refused
before anything runs, and what a function the step creates leaves in the session (a session advisory lock,
a session-level setting) fails the rehearsal with exit 5 and is cleared from the connection."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path
from typing import Any

import psycopg
import pytest

from gcos import ledger, rehearsal, sqlcheck
from gcos.errors import ExitCode, ResidueFound, SpecError
from gcos.execute import clear_session_residue, session_state
from gcos.install import install
from gcos.spec import Batch, Mutation, StepSpec, load_project, load_step
from gcos.target import SessionSettings

REPO = Path(__file__).resolve().parent.parent
BASE = load_step(REPO / "tests/cases/valid/steps/a.yaml", REPO / "tests/cases/valid")
ALLOW = (("insert", ("t",)), ("update", ("t",)), ("delete", ("t",)))

# --------------------------------------------------------------------------- static refusals (no database)


def static_step(sql: str) -> StepSpec:
    return dataclasses.replace(BASE, id="RS-1", mutation=Mutation(sql, ALLOW), rollback_sql="DELETE FROM t")


def refusal(check: Any, step: StepSpec) -> dict[str, Any]:
    with pytest.raises(SpecError) as err:
        check(step)
    assert err.value.exit_code == ExitCode.BAD_INPUT
    details = err.value.details
    assert isinstance(details, dict)
    return details


SETVAL = [
    "INSERT INTO t SELECT setval('s', 1)",
    "INSERT INTO t SELECT pg_catalog.setval('public.s'::regclass, 1, false)",
    "INSERT INTO t SELECT PG_CATALOG.SETVAL('s', 1)",
    "WITH x AS (SELECT pg_catalog.setval('s', 5) AS v) INSERT INTO t SELECT v FROM x",
    "WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM (SELECT setval('s', 2)) AS q",
    "UPDATE t SET v = (SELECT max(setval('s', v)) FROM t AS u) WHERE v > 0",
    "DELETE FROM t WHERE v IN (SELECT setval('s', 1) + 0)",
    "INSERT INTO t VALUES (coalesce(NULL, setval('s', 3)))",
]
SESSION_LOCKS = [
    "INSERT INTO t SELECT pg_advisory_lock(42)",
    "INSERT INTO t SELECT pg_catalog.pg_advisory_lock_shared(1, 2)",
    "WITH l AS (SELECT pg_catalog.pg_advisory_lock(7) AS v) INSERT INTO t SELECT 1 FROM l",
    "UPDATE t SET v = (SELECT pg_try_advisory_lock(9)::int)",
    "INSERT INTO t SELECT * FROM pg_catalog.PG_TRY_ADVISORY_LOCK_SHARED(3)",
]


@pytest.mark.parametrize("sql", SETVAL + SESSION_LOCKS)
def test_setval_and_session_advisory_locks_are_refused_in_every_section(sql: str) -> None:
    function = next(f for f in ("setval", "pg_try_advisory_lock", "pg_advisory_lock") if f in sql.lower())
    details = refusal(sqlcheck.check_mutation, static_step(sql))
    assert (details["where"], details["statement"]) == ("step RS-1 mutation", sql)
    assert function in details["reason"]
    step = dataclasses.replace(static_step("INSERT INTO t VALUES (1)"), rollback_sql=f"DELETE FROM t;\n{sql}")
    details = refusal(sqlcheck.check_rollback, step)
    assert (details["where"], details["line"], details["statement"]) == ("step RS-1 rollback", 2, sql)
    if sql.startswith(("INSERT", "WITH")):  # the batch section: one INSERT
        spec = dataclasses.replace(
            static_step("INSERT INTO t VALUES (1)"), batch=Batch("src", "id", 10, "w", "src", sql)
        )
        assert refusal(sqlcheck.check_batch, spec)["where"] == "step RS-1 batch"


@pytest.mark.parametrize("call", ["setval('s', 1)", "pg_catalog.setval('s', 1, true)"])
def test_checks_refuse_setval_by_the_one_write_rule(call: str) -> None:
    with pytest.raises(SpecError) as err:
        sqlcheck.check_query(f"SELECT {call}", label="success check 'x'")
    assert err.value.exit_code == ExitCode.BAD_INPUT and "setval" in err.value.message


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO t SELECT nextval('s')",
        "INSERT INTO t SELECT pg_advisory_xact_lock(42)",
        "INSERT INTO t SELECT pg_catalog.pg_advisory_xact_lock_shared(1, 2)",
        "WITH l AS (SELECT pg_try_advisory_xact_lock(7) AS v) INSERT INTO t SELECT 1 FROM l WHERE v",
        "INSERT INTO t SELECT pg_try_advisory_xact_lock_shared(3)",
        "INSERT INTO t SELECT set_config('work_mem', '64MB', true)",
        "INSERT INTO t SELECT set_config('work_mem', '64MB', 'on'::boolean)",
        "INSERT INTO t SELECT 'setval(''s'', 1); pg_advisory_lock(1)'",  # words in a string
    ],
)
def test_transaction_scoped_calls_pass(sql: str) -> None:
    assert sqlcheck.check_mutation(static_step(sql))


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO t SELECT set_config('work_mem', '64MB', false)",
        "UPDATE t SET v = length(pg_catalog.set_config('app.tenant', 'x', 'off'::boolean))",
        "INSERT INTO t SELECT set_config('work_mem', '64MB', v > 0) FROM t",
    ],
)
def test_session_level_set_config_is_refused_like_a_plain_set(sql: str) -> None:
    details = refusal(sqlcheck.check_mutation, static_step(sql))
    assert "set_config" in details["reason"] and details["statement"] == sql


# --------------------------------------------------------------------------- the rehearsal (a real server)


def write_step(root: Path, mutation: str, *, extra_allow: str = "") -> Path:
    """A scratch project with one step RS-1 that creates residue_t and residue_fn and runs `mutation`."""
    (root / "steps").mkdir(parents=True)
    (root / "steps" / "rs-1.yaml").write_text(
        textwrap.dedent(
            """\
            id: RS-1
            order: 1
            title: Residue probe
            source: "test fixture"
            approvals: {signers: 1, roles: [sovereign]}
            reverify: []
            mutation:
              sql: |
            MUTATION
              allow:
                - {create_table: residue_t}
                - {create_function: residue_fn}
                - {insert: residue_t}EXTRA
            success: []
            rollback:
              sql: |
                DROP FUNCTION residue_fn();
                DROP TABLE residue_t;
            mode: transactional
            """
        )
        .replace("MUTATION", textwrap.indent(mutation.strip(), "    "))
        .replace("EXTRA", extra_allow),
        encoding="utf-8",
    )
    return root


def function_step(root: Path, body: str, *, tail: str = "") -> Path:
    """RS-1 creates residue_fn() with the plpgsql `body` and calls it from an INSERT."""
    return write_step(
        root,
        "CREATE TABLE residue_t (v bigint);\n"
        "CREATE FUNCTION residue_fn() RETURNS bigint LANGUAGE plpgsql AS $fn$\n"
        f"BEGIN\n    {body}\n    RETURN 1;\nEND\n$fn$;\n"
        "INSERT INTO residue_t SELECT residue_fn();\n" + tail,
    )


def rehearse(conn: psycopg.Connection[Any], root: Path) -> rehearsal.RehearsalResult:
    install(conn)
    project = load_project(root)
    return rehearsal.rehearse(conn, project, project.step("RS-1"), settings=SessionSettings())


def last_rehearsal(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    return next(e.payload for e in reversed(ledger.read_all(conn)) if e.kind == "rehearsal")


def my_advisory_locks(conn: psycopg.Connection[Any]) -> list[Any]:
    return conn.execute("SELECT objid FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()").fetchall()


@pytest.mark.parametrize(
    ("function", "key", "named"),
    [
        ("pg_advisory_lock", (4242,), "4242 (ExclusiveLock)"),
        ("pg_advisory_lock_shared", (7, 8), "7,8 (ShareLock)"),
        ("pg_try_advisory_lock", (-5,), "-5 (ExclusiveLock)"),
        ("pg_catalog.pg_try_advisory_lock_shared", (-1, 2), "-1,2 (ShareLock)"),
    ],
)
def test_a_created_function_taking_a_session_advisory_lock_is_exit_5_and_released(
    conn: psycopg.Connection[Any],
    dsn: str,
    tmp_path: Path,
    function: str,
    key: tuple[int, ...],
    named: str,
    gcos_installed: None,
) -> None:
    root = function_step(tmp_path, f"PERFORM {function}({', '.join(map(str, key))});")
    with pytest.raises(ResidueFound) as err:
        rehearse(conn, root)
    assert err.value.exit_code == ExitCode.RESIDUE and named in err.value.message
    record = last_rehearsal(conn)
    assert record["outcome"] == "residue"
    assert f"session advisory lock {named} still held" in record["differences"]
    assert my_advisory_locks(conn) == []  # released: nothing leaks into the next command
    with psycopg.connect(dsn, autocommit=True) as other:
        try_lock = "SELECT pg_try_advisory_lock(%s::bigint)" if len(key) == 1 else "SELECT pg_try_advisory_lock(%s, %s)"
        assert other.execute(try_lock, key).fetchone() == (True,)
    assert conn.execute("SELECT to_regclass('residue_t')").fetchone() == (None,)  # and the step rolled back


def test_a_lock_left_by_a_failed_mutation_is_still_residue(
    conn: psycopg.Connection[Any], tmp_path: Path, gcos_installed: None
) -> None:
    root = function_step(tmp_path, "PERFORM pg_advisory_lock(77);", tail="INSERT INTO residue_t VALUES (1 / 0);")
    with pytest.raises(ResidueFound):
        rehearse(conn, root)
    assert last_rehearsal(conn)["outcome"] == "residue" and my_advisory_locks(conn) == []


@pytest.mark.parametrize(
    ("body", "setting"),
    [
        ("PERFORM set_config('work_mem', '7MB', false);", "work_mem"),
        ("SET work_mem = '8MB';", "work_mem"),
        ("PERFORM pg_catalog.set_config('maintenance_work_mem', '99MB', false);", "maintenance_work_mem"),
        (
            "PERFORM set_config('idle_in_transaction_session_timeout', '0', true);",
            "idle_in_transaction_session_timeout",
        ),
    ],
)
def test_a_created_function_changing_a_session_setting_is_exit_5(
    conn: psycopg.Connection[Any], tmp_path: Path, body: str, setting: str, gcos_installed: None
) -> None:
    shown = "SELECT current_setting(%s)"
    before = conn.execute(shown, (setting,)).fetchone()
    with pytest.raises(ResidueFound) as err:
        rehearse(conn, function_step(tmp_path, body))
    assert err.value.exit_code == ExitCode.RESIDUE and f"session setting {setting} " in err.value.message
    assert last_rehearsal(conn)["outcome"] == "residue"
    assert conn.execute(shown, (setting,)).fetchone() == before
    assert conn.execute("SELECT to_regclass('residue_t')").fetchone() == (None,)


@pytest.mark.parametrize(
    "body",
    [
        "PERFORM pg_advisory_xact_lock(4242);",
        "PERFORM pg_try_advisory_xact_lock_shared(1, 2);",
        "PERFORM current_setting('work_mem');",
    ],
)
def test_transaction_scoped_locks_and_reads_pass(
    conn: psycopg.Connection[Any], tmp_path: Path, body: str, gcos_installed: None
) -> None:
    result = rehearse(conn, function_step(tmp_path, body))
    assert result.ok, result.message
    assert my_advisory_locks(conn) == []


def test_a_top_level_set_local_and_nextval_pass(
    conn: psycopg.Connection[Any], tmp_path: Path, gcos_installed: None
) -> None:
    conn.execute("CREATE SEQUENCE residue_seq")
    root = write_step(
        tmp_path,
        "SET LOCAL work_mem = '64MB';\nCREATE TABLE residue_t (v bigint);\n"
        "CREATE FUNCTION residue_fn() RETURNS int LANGUAGE sql AS 'SELECT 1';\n"
        "INSERT INTO residue_t SELECT nextval('residue_seq');",
    )
    result = rehearse(conn, root)
    assert result.ok, result.message
    assert result.residue == ("public.residue_seq",)  # reported, not a failure
    assert last_rehearsal(conn)["residue"] == {"sequences": ["public.residue_seq"]}


def test_clearing_session_residue_restores_the_session(conn: psycopg.Connection[Any]) -> None:
    conn.execute("SET work_mem = '5MB'")  # the session's own setting before the step: restored, not reset
    before = session_state(conn)
    conn.execute("SET work_mem = '6MB'")
    conn.execute("SELECT set_config('maintenance_work_mem', '77MB', false)")
    conn.execute("SELECT pg_advisory_lock(2), pg_advisory_lock_shared(3, 4), pg_advisory_lock(2)")  # 2 taken twice
    left = clear_session_residue(conn, before)
    assert sorted(left) == [
        "session advisory lock 2 (ExclusiveLock) still held",
        "session advisory lock 3,4 (ShareLock) still held",
        "session setting maintenance_work_mem (default) -> 78848",
        "session setting work_mem 5120 -> 6144",
    ]
    assert session_state(conn) == before and my_advisory_locks(conn) == []
    assert conn.execute("SELECT current_setting('work_mem')").fetchone() == ("5MB",)
    assert clear_session_residue(conn, session_state(conn)) == ()
