"""No silent non-transactional residue (issue 9 item 9). setval and session advisory locks are refused before
anything runs (gcos/sqlcheck.py, exit 2); what a function the step creates leaves behind, which no static check
sees, the kernel finds after its rollback (gcos/sql/011): a session advisory lock or a changed session setting
fails the rehearsal with exit 5 naming it and is released or reset in the caller's session, a sequence set back
is put back and fails it too, and a sequence nextval advanced is reported residue only."""

from __future__ import annotations

import dataclasses
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import MakeRole, Role

from gcos import commands, ledger, registry, sqlcheck
from gcos.adopt import adopt
from gcos.domain import Kind, Outcome
from gcos.errors import ExitCode, GcosError, SpecError
from gcos.spec import Batch, Mutation, StepSpec, load_project, load_step
from gcos.target import Target

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
        "INSERT INTO t SELECT 'setval(''s'', 1); pg_advisory_lock(1)'",  # words in a string
    ],
)
def test_transaction_scoped_calls_pass(sql: str) -> None:
    assert sqlcheck.check_mutation(static_step(sql))


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO t SELECT set_config('work_mem', '64MB', false)",
        "INSERT INTO t SELECT set_config('work_mem', '64MB', true)",
        "INSERT INTO t SELECT set_config('work_mem', '64MB', 'on'::boolean)",
        "UPDATE t SET v = length(pg_catalog.set_config('app.tenant', 'x', 'off'::boolean))",
        "INSERT INTO t SELECT set_config('work_mem', '64MB', v > 0) FROM t",
    ],
)
def test_session_level_set_config_is_refused_like_a_plain_set(sql: str) -> None:
    details = refusal(sqlcheck.check_mutation, static_step(sql))
    assert "set_config" in details["reason"] and details["statement"] == sql


# --------------------------------------------------------------------------- the kernel's rehearsal (a real server)


@dataclass(frozen=True)
class Small:
    """A small world under the kernel: sequence residue_seq (at 1) created by the superuser, then public adopted."""

    dsn: str
    operator: Role
    root: Path

    def step(self, mutation: str, *, allow: str = "", undo: str = "") -> Path:
        """Project with plan p and its one step RS-1, which creates residue_t and runs `mutation`."""
        (self.root / "plans").mkdir(parents=True, exist_ok=True)
        (self.root / "plans" / "p.yaml").write_text(
            "id: p\ntitle: residue probes\nsource: test\nsteps: [RS-1]\nfold_ins: {}\nglobal_stop: []\n"
        )
        (self.root / "steps").mkdir(exist_ok=True)
        (self.root / "steps" / "rs-1.yaml").write_text(
            STEP.replace("MUTATION", textwrap.indent(mutation.strip(), "    "))
            .replace("EXTRA", allow)
            .replace("UNDO", undo)
        )
        return self.root

    def rehearse(self) -> tuple[ExitCode, dict[str, Any]]:
        """gcos rehearse RS-1 as the operator: its exit code and the kernel's rehearsal record."""
        try:
            commands.rehearse(Target(self.operator.dsn, "--dsn"), self.root, "RS-1")
            code = ExitCode.OK
        except GcosError as exc:
            code = exc.exit_code
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            record = [e for e in ledger.read_all(conn) if e.kind == Kind.REHEARSAL][-1]
        return code, record.payload

    def rehearse_in(self, conn: psycopg.Connection[Any]) -> dict[str, Any]:
        """The kernel called on `conn` (the operator's own session, kept open to look at it afterwards)."""
        project = load_project(self.root)
        plan = project.plan_of("RS-1")
        assert plan is not None
        with psycopg.connect(self.dsn, autocommit=True) as admin:
            hashes = (registry.register_spec(admin, project.step("RS-1")), registry.register_plan(admin, plan))
        row = conn.execute("SELECT gcos.rehearse(%s, %s, %s)", (*hashes, ledger.new_trace_id())).fetchone()
        assert row is not None
        result: dict[str, Any] = row[0]
        return result

    def next_value(self) -> int:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            row = conn.execute("SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM residue_seq")
            value = row.fetchone()
        assert value is not None
        return int(value[0])


STEP = """\
id: RS-1
order: 1
title: Residue probe
source: "test fixture"
approvals: {signers: 1, roles: [sovereign]}
reverify: []
mutation:
  sql: |
    CREATE TABLE residue_t (v bigint);
MUTATION
  allow:
    - {create_table: residue_t}
    - {insert: residue_t}EXTRA
success: []
rollback:
  sql: |UNDO
    DROP TABLE residue_t;
mode: transactional
"""


@pytest.fixture
def small(dsn: str, make_role: MakeRole, tmp_path: Path) -> Small:
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute("CREATE SEQUENCE residue_seq")
        admin.execute("SELECT nextval('residue_seq')")
        adopt(admin, ["public"])
    return Small(dsn, make_role("op", kind="human", roles=("operator",), grant=("operator",)), tmp_path / "project")


def function_step(small: Small, body: str, *, tail: str = "") -> Path:
    """RS-1 creates residue_fn() with the plpgsql `body` and calls it from an INSERT (pglast sees only the call)."""
    return small.step(
        "CREATE FUNCTION residue_fn() RETURNS bigint LANGUAGE plpgsql AS $fn$\n"
        f"BEGIN\n    {body}\n    RETURN 1;\nEND\n$fn$;\n"
        "INSERT INTO residue_t SELECT residue_fn();\n" + tail,
        allow="\n    - {create_function: residue_fn}",
        undo="\n    DROP FUNCTION residue_fn();",
    )


def my_advisory_locks(conn: psycopg.Connection[Any]) -> list[Any]:
    return conn.execute("SELECT objid FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()").fetchall()


LOCKS = (
    "PERFORM pg_advisory_lock(4242); PERFORM pg_advisory_lock_shared(7, 8); PERFORM pg_try_advisory_lock(-5);"
    " PERFORM pg_catalog.pg_try_advisory_lock_shared(-1, 2);"
)
LOCKS_NAMED = [  # (classid, objid, objsubid, mode): a bigint key is split in two, two int keys have objsubid 2
    "advisory lock (0, 4242, 1, ExclusiveLock)",
    "advisory lock (4294967295, 2, 2, ShareLock)",
    "advisory lock (4294967295, 4294967291, 1, ExclusiveLock)",
    "advisory lock (7, 8, 2, ShareLock)",
]


def test_a_session_advisory_lock_the_step_leaves_is_exit_5_named_and_released(small: Small) -> None:
    function_step(small, LOCKS)
    with small.operator.connect() as conn:
        result = small.rehearse_in(conn)
        assert result["outcome"] == Outcome.RESIDUE, result["message"]
        assert sorted(result["residue"]["session"]) == LOCKS_NAMED
        assert my_advisory_locks(conn) == []  # released: nothing leaks into the session's next command
        assert conn.execute("SELECT to_regclass('residue_t')").fetchone() == (None,)  # and the step rolled back
    with psycopg.connect(small.dsn, autocommit=True) as other:
        assert other.execute("SELECT pg_try_advisory_lock(4242), pg_try_advisory_lock_shared(7, 8)").fetchone() == (
            True,
            True,
        )
    function_step(small, LOCKS, tail="INSERT INTO residue_t VALUES (1 / 0);")  # the step fails after locking
    code, record = small.rehearse()
    assert code == ExitCode.RESIDUE and record["outcome"] == Outcome.RESIDUE
    assert sorted(record["residue"]["session"]) == LOCKS_NAMED


SETTINGS = (
    "PERFORM set_config('work_mem', '7MB', false); SET enable_seqscan = off;"
    " PERFORM pg_catalog.set_config('maintenance_work_mem', '99MB', false);"
    " PERFORM set_config('idle_in_transaction_session_timeout', '0', true);"
)


def test_a_session_setting_the_step_changes_is_exit_5_named_and_reset(small: Small) -> None:
    function_step(small, SETTINGS)
    code, record = small.rehearse()
    assert code == ExitCode.RESIDUE and record["outcome"] == Outcome.RESIDUE
    assert sorted(record["residue"]["session"]) == [
        "setting enable_seqscan",
        "setting idle_in_transaction_session_timeout",
        "setting maintenance_work_mem",
        "setting work_mem",
    ]
    shown = (
        "SELECT current_setting('work_mem'), current_setting('enable_seqscan'), current_setting('maintenance_work_mem')"
    )
    with small.operator.connect() as conn:
        conn.execute("SET idle_in_transaction_session_timeout = '1min'")
        before = conn.execute(shown).fetchone()
        assert small.rehearse_in(conn)["outcome"] == Outcome.RESIDUE
        assert conn.execute(shown).fetchone() == before
        assert conn.execute("SHOW idle_in_transaction_session_timeout").fetchone() == ("1min",)


def test_setval_is_refused_before_anything_runs_and_set_back_by_the_kernel_when_a_function_hides_it(
    small: Small,
) -> None:
    small.step("INSERT INTO residue_t SELECT setval('residue_seq', 1);")
    with pytest.raises(SpecError) as refused:
        commands.rehearse(Target(small.operator.dsn, "--dsn"), small.root, "RS-1")
    assert refused.value.exit_code == ExitCode.BAD_INPUT and "setval" in refused.value.message
    with psycopg.connect(small.dsn, autocommit=True) as conn:
        assert [e for e in ledger.read_all(conn) if e.kind == Kind.REHEARSAL] == []  # nothing ran
        conn.execute("SELECT nextval('residue_seq'), nextval('residue_seq')")  # so that setval(.., 1) goes back
    before = small.next_value()
    function_step(small, "PERFORM setval('residue_seq', 1);")  # not transactional: the rollback cannot undo it
    code, record = small.rehearse()
    assert code == ExitCode.RESIDUE and record["outcome"] == Outcome.RESIDUE
    assert [(v["category"], v["identity"]) for v in record["allow_violations"]] == [
        ("sequence_state", "public.residue_seq")
    ]
    assert record["residue"]["session"] == ["sequence public.residue_seq set back (restored)"]
    assert small.next_value() == before  # put back where it was


def test_what_the_transaction_undoes_passes_and_an_advanced_sequence_is_reported(small: Small) -> None:
    function_step(
        small,
        "PERFORM pg_advisory_xact_lock(4242); PERFORM pg_try_advisory_xact_lock_shared(1, 2);"
        " PERFORM current_setting('work_mem');",
        tail="INSERT INTO residue_t SELECT nextval('residue_seq');",
    )
    before = small.next_value()
    code, record = small.rehearse()
    assert code == ExitCode.OK and record["outcome"] == Outcome.PASSED, record["message"]
    assert record["residue"] == {"sequences": ["public.residue_seq"], "session": []}  # reported, not a failure
    assert small.next_value() == before + 1  # nextval is not transactional: that is the residue reported


@pytest.mark.parametrize(
    "sql", ["SET LOCAL work_mem = '64MB'", "INSERT INTO residue_t SELECT length(set_config('work_mem', '64MB', true))"]
)
def test_a_transaction_scoped_setting_is_refused_before_anything_runs(small: Small, sql: str) -> None:
    """The kernel cannot tell a SET LOCAL from a session-level change (both read 'session' in pg_settings, and
    both are undone by the rehearsal's rollback), so it would fail the rehearsal as residue: the static check
    refuses a step that changes a setting at all, with exit 2, before anything is registered or run."""
    small.step(f"{sql};\nINSERT INTO residue_t VALUES (1);")
    with psycopg.connect(small.dsn, autocommit=True) as conn:
        before = len(ledger.read_all(conn))
    with pytest.raises(SpecError) as refused:
        commands.rehearse(Target(small.operator.dsn, "--dsn"), small.root, "RS-1")
    assert refused.value.exit_code == ExitCode.BAD_INPUT and "work_mem" in refused.value.message
    with psycopg.connect(small.dsn, autocommit=True) as conn:
        assert len(ledger.read_all(conn)) == before
