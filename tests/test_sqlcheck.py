"""The static SQL check (gcos.sqlcheck): PostgreSQL's own parser, before anything runs; no database."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from gcos import sqlcheck
from gcos.errors import ExitCode, SpecError
from gcos.spec import Batch, Mutation, StepSpec, StopCondition, load_project, load_step

REPO = Path(__file__).resolve().parent.parent
PROJECT = load_project(REPO)
BASE = load_step(REPO / "tests/cases/valid/steps/a.yaml", REPO / "tests/cases/valid")
Allow = dict[str, list[str]]


def make(
    sql: str | None,
    allow: Allow | None = None,
    *,
    rollback: str = "-- nothing",
    stop: tuple[StopCondition, ...] = (),
    batch: str | None = None,
    batch_table: str = "birth_registry",
) -> StepSpec:
    """A step with the given mutation (and allow list), rollback, stop items and batch SQL."""
    allow_pairs = tuple((k, tuple(v)) for k, v in (allow or {}).items())
    return dataclasses.replace(
        BASE,
        id="SB-99",
        mutation=Mutation(sql, allow_pairs) if sql is not None else None,
        rollback_sql=rollback,
        stop=stop,
        batch=Batch(batch_table, "id", 100, "w", batch_table, batch) if batch is not None else None,
    )


def refused(step: StepSpec, section: str = "mutation", **kw: list[str]) -> str:
    check = {"mutation": sqlcheck.check_mutation, "rollback": sqlcheck.check_rollback, "batch": sqlcheck.check_batch}
    with pytest.raises(SpecError) as err:
        check[section](step, **kw)
    assert err.value.exit_code == ExitCode.BAD_INPUT
    message = err.value.message
    assert message.startswith(f"step {step.id} {section}"), message
    return message


WIDE: Allow = {"create_table": ["t"], "insert": ["t"], "update": ["t"], "delete": ["t"], "alter_table": ["t"]}


# --------------------------------------------------------------------------- the real specs


@pytest.mark.parametrize("step_id", list(PROJECT.steps))
def test_the_nine_real_specs_pass(step_id: str) -> None:
    step = PROJECT.steps[step_id]
    plan = PROJECT.plan_of(step_id)
    extra_cols = [n for s in plan.global_stop if s.kind == "forbid_columns" for n in s.names] if plan else []
    extra_objs = [n for s in plan.global_stop if s.kind == "forbid_objects" for n in s.names] if plan else []
    mutation = sqlcheck.check_mutation(step, extra_forbid_columns=extra_cols, extra_forbid_objects=extra_objs)
    assert (len(mutation) > 0) == (step.mutation is not None)
    sqlcheck.check_rollback(step)
    assert (len(sqlcheck.check_batch(step)) == 1) == (step.batch is not None)
    for check in (*step.reverify, *step.success):
        sqlcheck.check_query(check.sql, label=f"step {step.id} check {check.name!r}")
    for stop in (*step.stop, *(plan.global_stop if plan else ())):
        if stop.sql:
            sqlcheck.check_query(stop.sql, label=f"step {step.id} stop {stop.name!r}")


def test_the_real_batch_writes_through_a_cte_and_on_conflict() -> None:
    step = PROJECT.step("step-9")
    (batch,) = sqlcheck.check_batch(step)
    assert batch.kind == "insert" and batch.line == 1
    assert set(batch.writes) == {
        ("insert", "governance_candidate_state"),
        ("insert", "candidate_scan_run"),
        ("update", "candidate_scan_run"),  # ON CONFLICT DO UPDATE
    }
    assert "%(after)s" in batch.text  # quoted as written, not with $n


def test_a_spec_written_as_yaml_is_checked(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(
        (REPO / "tests/cases/valid/steps/a.yaml")
        .read_text()
        .replace("rollback:\n  file: ../rollback/aa-1.sql", "rollback:\n  sql: DROP TABLE widgets;")
        .replace("CREATE TABLE widgets (id int PRIMARY KEY);", "CREATE TABLE widgets (id int, checked bool);")
        .replace("  - max_new_tables: 1", "  - forbid_columns: [checked]")
    )
    step = load_step(tmp_path / "s.yaml", tmp_path)
    message = refused(step)
    assert "column checked is forbidden by stop condition 'no column named checked'" in message
    assert sqlcheck.check_rollback(step)[0].kind == "drop_table"


# --------------------------------------------------------------------------- 1. the allow list


@pytest.mark.parametrize(
    ("sql", "allow", "reason"),
    [
        (
            "INSERT INTO governance_ruleset VALUES (1);\nINSERT INTO evolution_snapshots VALUES (1);",
            {"insert": ["governance_ruleset"]},
            'line 2: insert evolution_snapshots is not in the allow list of the mutation; refused: "INSERT INTO evol',
        ),
        ("CREATE TABLE other (id int)", WIDE, "create_table other is not in the allow list"),
        ("DROP TABLE t", WIDE, "drop_table t is not in the allow list"),
        ("CREATE SEQUENCE s", WIDE, "create_sequence s is not in the allow list"),
        ("CREATE SCHEMA s", WIDE, "create_schema statements are not in the allow list"),
        (
            "WITH gone AS (DELETE FROM audit RETURNING id) INSERT INTO t SELECT id FROM gone",
            WIDE,
            "delete audit (written inside this INSERT) is not in the allow list",
        ),
        ("INSERT INTO other SELECT * FROM t", WIDE, "insert other is not in the allow list"),
        ("INSERT INTO t VALUES (1) ON CONFLICT (id) DO UPDATE SET v = 2", {"insert": ["t"]}, "update t (written"),
        ("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", {"update": ["t"]}, "delete t (written"),
        ("SELECT 1 INTO newtable", WIDE, "SELECT ... INTO creates a table hidden in a query"),
        ("CREATE TABLE x AS SELECT 1 AS a", WIDE, "create_table x is not in the allow list"),
        ("CREATE MATERIALIZED VIEW mv AS SELECT 1", WIDE, "create_matview mv is not in the allow list"),
        ("SELECT do_something()", WIDE, "a top-level SELECT is not a build step"),
        ("VALUES (1)", WIDE, "a top-level SELECT is not a build step"),
        ("WITH x AS (DELETE FROM t RETURNING 1) SELECT * FROM x", WIDE, "a top-level SELECT is not a build step"),
        ("EXPLAIN ANALYZE DELETE FROM t", WIDE, "a top-level EXPLAIN is not a build step"),
        ("TRUNCATE t", {"insert": ["t"]}, "delete t (TRUNCATE deletes every row) is not in the allow list"),
        ("LOCK TABLE other IN EXCLUSIVE MODE", WIDE, "LOCK TABLE other names a table outside the mutation's allow"),
        ("CREATE TRIGGER tr BEFORE INSERT ON u FOR EACH ROW EXECUTE FUNCTION f()", WIDE, "create_trigger u is not"),
        ("ALTER TYPE mood ADD VALUE 'meh'", WIDE, "alter_type mood is not in the allow list"),
        ("CREATE RULE r AS ON INSERT TO t DO INSTEAD NOTHING", WIDE, "create_rule statements are not in the allow"),
    ],
)
def test_statements_outside_the_allow_list_are_refused(sql: str, allow: Allow, reason: str) -> None:
    assert reason in refused(make(sql, allow))


@pytest.mark.parametrize(
    ("sql", "allow"),
    [
        ("TRUNCATE t", {"delete": ["t"]}),
        ("LOCK TABLE t IN SHARE MODE; UPDATE t SET v = 1", {"update": ["t"]}),
        ("INSERT INTO public.t VALUES (1) ON CONFLICT DO NOTHING", {"insert": ["public.t"]}),
        ("CREATE INDEX ON t (v); CREATE INDEX t_v ON t (v)", {"create_index": ["t"]}),  # by the index's table
        ("CREATE UNIQUE INDEX t_v ON t (v)", {"create_index": ["t_v"]}),  # or by its name
        ("CREATE TYPE mood AS ENUM ('ok'); ALTER TYPE mood ADD VALUE 'meh'", {"create_type": ["mood"]}),
        ("CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()", {"alter_table": ["t"]}),
        ("SET CONSTRAINTS ALL DEFERRED; DELETE FROM t", {"delete": ["t"]}),
        ("CREATE TABLE t (id int REFERENCES u ON DELETE CASCADE)", {"create_table": ["t"]}),  # an FK action
        ("CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END", {"create_function": ["f"]}),
        (
            "CREATE OR REPLACE VIEW v AS SELECT 1 AS a; COMMENT ON VIEW v IS 'x'",
            {"create_view": ["v"], "comment": ["v"]},
        ),
    ],
)
def test_statements_inside_the_allow_list_pass(sql: str, allow: Allow) -> None:
    assert sqlcheck.check_mutation(make(sql, allow))


# --------------------------------------------------------------------------- 2. forbidden columns and objects


CHECKED = StopCondition("no checked columns", "forbid_columns", names=("checked", "is_governed"))
APPLY = StopCondition("no apply DOT", "forbid_objects", names=("dot_governance_assignment_apply",))


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("CREATE TABLE t (id int, checked bool)", "column checked is forbidden by stop condition 'no checked columns'"),
        ("ALTER TABLE t ADD COLUMN is_governed bool", "column is_governed is forbidden"),
        ("ALTER TABLE t RENAME COLUMN a TO checked", "column checked is forbidden"),
        ("CREATE VIEW v (id, checked) AS SELECT 1, true", "column checked is forbidden"),
        ("CREATE VIEW v AS SELECT id, true AS is_governed FROM t", "column is_governed is forbidden"),
        ("CREATE TABLE t AS SELECT 1 AS checked", "column checked is forbidden"),
        ("CREATE FUNCTION dot_governance_assignment_apply() RETURNS int LANGUAGE sql AS 'SELECT 1'", "object dot_go"),
        ("CREATE INDEX dot_governance_assignment_apply ON t (id)", "is forbidden by stop condition 'no apply DOT'"),
        ("ALTER TABLE t RENAME TO dot_governance_assignment_apply", "object dot_governance_assignment_apply is"),
        ("CREATE VIEW public.dot_governance_assignment_apply AS SELECT 1", "object dot_governance_assignment_apply"),
    ],
)
def test_forbidden_columns_and_objects_are_refused(sql: str, reason: str) -> None:
    allow: Allow = {
        "create_table": ["t"],
        "alter_table": ["t"],
        "create_view": ["v", "dot_governance_assignment_apply"],
        "create_function": ["dot_governance_assignment_apply"],
        "create_index": ["dot_governance_assignment_apply"],
    }
    assert reason in refused(make(sql, allow, stop=(CHECKED, APPLY)))


def test_the_plans_forbidden_names_are_refused_too() -> None:
    step = make("CREATE TABLE t (id int, governed bool)", WIDE)
    message = refused(step, extra_forbid_columns=["governed"])
    assert "column governed is forbidden by the plan's global stop conditions" in message
    message = refused(make("CREATE TABLE t (id int)", WIDE), extra_forbid_objects=["t"])
    assert "object t is forbidden" in message


# --------------------------------------------------------------------------- 3-6. refused whatever the allow list


@pytest.mark.parametrize(
    ("sql", "kind", "reason"),
    [
        # 3. transaction control, and code that could hide it
        ("BEGIN", "transaction", "transaction control belongs to gcos"),
        ("START TRANSACTION", "transaction", "transaction control"),
        ("COMMIT", "transaction", "transaction control"),
        ("END", "transaction", "transaction control"),
        ("ROLLBACK", "transaction", "transaction control"),
        ("ABORT", "transaction", "transaction control"),
        ("SAVEPOINT s", "transaction", "transaction control"),
        ("RELEASE SAVEPOINT s", "transaction", "transaction control"),
        ("ROLLBACK TO SAVEPOINT s", "transaction", "transaction control"),
        ("PREPARE TRANSACTION 'x'", "transaction", "transaction control"),
        ("COMMIT PREPARED 'x'", "transaction", "transaction control"),
        ("ROLLBACK PREPARED 'x'", "transaction", "transaction control"),
        ("CALL refresh_all()", "call", "CALL runs a procedure that can COMMIT"),
        ("DO $$ BEGIN PERFORM 1; END $$", "do", "a DO block is opaque code"),
        # 4. session and identity
        ("SET ROLE admin", "set", "SET role changes the session's identity"),
        ("SET LOCAL ROLE admin", "set", "SET LOCAL role changes the session's identity"),
        ("SET SESSION AUTHORIZATION admin", "set", "SET session_authorization changes the session's identity"),
        ("RESET ROLE", "reset", "RESET role changes the session's identity"),
        ("RESET SESSION AUTHORIZATION", "reset", "RESET session_authorization"),
        ("RESET ALL", "reset", "RESET ALL resets gcos's session guards"),
        ("DISCARD ALL", "discard", "DISCARD resets gcos's session"),
        ("SET lock_timeout = 0", "set", "SET lock_timeout changes a gcos session guard"),
        ("SET LOCAL statement_timeout = 0", "set", "SET LOCAL statement_timeout changes a gcos session guard"),
        ("SET LOCAL idle_in_transaction_session_timeout TO 0", "set", "idle_in_transaction_session_timeout"),
        ("SET search_path TO evil, public", "set", "SET search_path changes a gcos session guard"),
        ("SET SCHEMA 'evil'", "set", "SET search_path"),
        ("RESET search_path", "reset", "RESET search_path changes a gcos session guard"),
        ("SET LOCAL transaction_read_only = off", "set", "transaction_read_only"),
        ("SET default_transaction_read_only = off", "set", "default_transaction_read_only"),
        ("SET LOCAL session_replication_role = replica", "set", "session_replication_role"),
        ("SET TRANSACTION READ WRITE", "set", "changes gcos's transaction or session characteristics"),
        ("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE", "set", "session characteristics"),
        ("SET work_mem = '1GB'", "set", "SET work_mem outlives the step's transaction"),
        ("SET LOCAL work_mem = '1GB'", "set", "SET LOCAL work_mem changes a setting, which the kernel cannot tell"),
        ("INSERT INTO t SELECT set_config('application_name', 'x', true)", "insert", "the kernel cannot tell"),
        ("INSERT INTO t SELECT set_config('search_path', 'evil', true)", "insert", "set_config('search_path')"),
        ("UPDATE t SET v = set_config('role', 'admin', false)", "update", "set_config('role') changes"),
        ("INSERT INTO t SELECT pg_catalog.set_config('lock_timeout'::text, '0', true)", "insert", "lock_timeout"),
        ("INSERT INTO t SELECT set_config(name, '0', true) FROM x", "insert", "computed setting name"),
        ("CREATE TABLE t (v text DEFAULT set_config('role', 'x', false))", "create_table", "set_config('role')"),
        ("LISTEN governance", "listen", "would open a new bus"),
        ("UNLISTEN *", "unlisten", "would open a new bus"),
        ("NOTIFY governance, 'x'", "notify", "would open a new bus"),
        ("INSERT INTO t SELECT pg_notify('governance', 'x')", "insert", "pg_notify() would open a new bus"),
        ("INSERT INTO t SELECT pg_advisory_lock(1)", "insert", "session-level lock that outlives the transaction"),
        ("INSERT INTO t SELECT * FROM dblink_exec('x', 'y')", "insert", "on another connection"),
        ("PREPARE p AS SELECT 1", "prepare", "prepared statements are session state"),
        ("LOAD 'auto_explain'", "load", "LOAD loads a shared library"),
        # 5. cannot run inside a transaction block
        ("VACUUM evolution_snapshots", "vacuum", "VACUUM cannot run inside a transaction block"),
        ("VACUUM (FULL, ANALYZE) t", "vacuum", "VACUUM cannot run inside a transaction block"),
        ("ANALYZE t", "analyze", "ANALYZE is maintenance"),
        ("CREATE INDEX CONCURRENTLY t_v ON t (v)", "create_index_concurrently", "CREATE INDEX CONCURRENTLY cannot"),
        ("DROP INDEX CONCURRENTLY t_v", "drop_index_concurrently", "DROP INDEX CONCURRENTLY cannot run"),
        ("REINDEX (CONCURRENTLY) TABLE t", "reindex_concurrently", "REINDEX CONCURRENTLY cannot run"),
        ("REINDEX DATABASE gcos", "reindex", "REINDEX is maintenance"),
        ("CLUSTER", "cluster", "CLUSTER is maintenance"),
        ("ALTER SYSTEM SET work_mem = '1GB'", "alter_system", "ALTER SYSTEM cannot run inside a transaction block"),
        ("CREATE DATABASE other", "create_database", "CREATE DATABASE cannot run inside a transaction block"),
        ("DROP DATABASE other", "drop_database", "DROP DATABASE cannot run"),
        ("CREATE TABLESPACE ts LOCATION '/tmp'", "create_tablespace", "CREATE TABLESPACE cannot run"),
        ("DROP TABLESPACE ts", "drop_tablespace", "DROP TABLESPACE cannot run"),
        ("CREATE SUBSCRIPTION s CONNECTION 'x' PUBLICATION p", "create_subscription", "CREATE SUBSCRIPTION cannot"),
        ("ALTER TABLE t DETACH PARTITION p CONCURRENTLY", "alter_table", "DETACH PARTITION CONCURRENTLY cannot"),
        ("CHECKPOINT", "check_point", "CHECKPOINT is server maintenance"),
        # 6. never in a gated step
        ("GRANT SELECT ON t TO PUBLIC", "grant", "privileges are not in the allow list"),
        ("REVOKE ALL ON t FROM PUBLIC", "revoke", "privileges are not in the allow list"),
        ("GRANT admin TO bob", "grant_role", "privileges are not in the allow list"),
        ("ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO bob", "alter_default_privileges", "privileges"),
        ("CREATE ROLE bob", "create_role", "roles, ownership and identities are never changed"),
        ("ALTER ROLE bob SUPERUSER", "alter_role", "roles, ownership and identities"),
        ("DROP ROLE bob", "drop_role", "roles, ownership and identities"),
        ("ALTER TABLE t OWNER TO bob", "alter_table", "roles, ownership and identities"),
        ("COPY t FROM PROGRAM 'curl x'", "copy", "COPY reads or writes server files, programs"),
        ("COPY t TO '/tmp/t.csv'", "copy", "COPY reads or writes server files"),
        ("COPY t FROM STDIN", "copy", "COPY reads or writes"),
        ("CREATE EXTENSION dblink", "create_extension", "extensions are installed by the operator"),
        ("DROP TABLE t CASCADE", "drop_table", "DROP ... CASCADE would drop dependent objects"),
        ("DROP VIEW IF EXISTS v, w CASCADE", "drop_view", "DROP ... CASCADE"),
        ("TRUNCATE t CASCADE", "truncate", "TRUNCATE ... CASCADE would empty tables"),
        ("ALTER TABLE t DROP COLUMN v CASCADE", "alter_table", "CASCADE would drop dependent objects"),
        ("ALTER TABLE t DISABLE TRIGGER ALL", "alter_table", "DISABLE TRIGGER switches off"),
        ("ALTER TABLE t DISABLE TRIGGER USER", "alter_table", "DISABLE TRIGGER switches off"),
        ("ALTER TABLE t DISABLE TRIGGER audit_t", "alter_table", "DISABLE TRIGGER switches off"),
        ("ALTER TABLE t DISABLE ROW LEVEL SECURITY", "alter_table", "row-level security"),
    ],
)
def test_refused_whatever_the_allow_list(sql: str, kind: str, reason: str) -> None:
    allow: Allow = {**WIDE, "drop_table": ["t"], "drop_view": ["v", "w"]}
    message = refused(make(f"-- step\nINSERT INTO t VALUES (1);\n{sql};\n", allow))
    assert f"line 3: {reason}" in message or reason in message, message
    assert message.startswith("step SB-99 mutation line 3: "), message
    assert message.endswith(f'; refused: "{sql}".'), message
    (statement,) = [s for s in sqlcheck.split(sql)]
    assert statement.kind == kind


def test_the_same_refusals_hold_in_the_rollback_and_the_batch() -> None:
    step = make("INSERT INTO t VALUES (1)", WIDE, rollback="DELETE FROM t;\nCOMMIT;")
    assert "step SB-99 rollback line 2: transaction control" in refused(step, "rollback")
    step = make(None, batch="INSERT INTO t SELECT set_config('role', 'x', true) FROM birth_registry")
    assert "set_config('role')" in refused(step, "batch")


def test_the_message_quotes_one_line_and_truncates_long_statements() -> None:
    sql = "\n\n\nINSERT INTO audit\n    SELECT " + ", ".join(f"col_{i}" for i in range(60)) + " FROM t"
    message = refused(make(sql, WIDE))
    assert message.startswith("step SB-99 mutation line 4: insert audit is not in the allow list of the mutation")
    quoted = message.split('refused: "')[1]
    assert "\n" not in quoted and quoted.endswith('…".') and len(quoted) <= 123


def test_the_brief_example_message() -> None:
    sql = "\n".join(["-- line"] * 13) + "\nVACUUM evolution_snapshots;"
    with pytest.raises(SpecError) as err:
        sqlcheck.check_mutation(dataclasses.replace(make(sql, WIDE), id="SB-12"))
    assert err.value.message == (
        "step SB-12 mutation line 14: VACUUM cannot run inside a transaction block; "
        'refused: "VACUUM evolution_snapshots".'
    )
    assert err.value.details == {
        "where": "step SB-12 mutation",
        "line": 14,
        "kind": "vacuum",
        "reason": "VACUUM cannot run inside a transaction block",
        "statement": "VACUUM evolution_snapshots",
    }


def test_sql_that_does_not_parse_names_the_line() -> None:
    with pytest.raises(SpecError, match=r"step SB-99 mutation line 3: SQL does not parse: syntax error at or near"):
        sqlcheck.check_mutation(make("INSERT INTO t VALUES (1);\n\nINSRT INTO t VALUES (2);", WIDE))
    with pytest.raises(SpecError, match="SQL line 1: SQL does not parse"):
        sqlcheck.split("SELEC 1")


# --------------------------------------------------------------------------- words are not statements


def test_words_in_strings_comments_and_bodies_are_not_refused() -> None:
    sql = """
        -- we never COMMIT, VACUUM or SET ROLE here; /* nor BEGIN */
        /* ROLLBACK; DROP TABLE t CASCADE; SET search_path = evil; */
        INSERT INTO t (note) VALUES ('we never COMMIT or VACUUM here'), ($q$SET ROLE admin; RESET ALL$q$);
        INSERT INTO t (note) SELECT 'set_config(''role'', ''x'', false); LISTEN x; pg_notify' || E'\\nCOMMIT';
        UPDATE t SET note = 'GRANT ALL ON t TO PUBLIC; COPY t TO PROGRAM ''x''' WHERE note = 'CALL p()';
        COMMENT ON TABLE t IS 'DO $$ BEGIN COMMIT; END $$; VACUUM; CREATE INDEX CONCURRENTLY';
        CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            COMMIT;  -- a body mentioning COMMIT, SET ROLE admin, set_config('role', 'x', false)
            PERFORM set_config('search_path', 'evil', false);
            RETURN NEW;
        END
        $$;
    """
    allow: Allow = {**WIDE, "comment": ["t"], "create_function": ["touch"]}
    kinds = [s.kind for s in sqlcheck.check_mutation(make(sql, allow))]
    assert kinds == ["insert", "insert", "update", "comment", "create_function"]


# --------------------------------------------------------------------------- targets


@pytest.mark.parametrize(
    ("sql", "kind", "targets"),
    [
        ("INSERT INTO public.t AS x (a) SELECT a FROM u", "insert", ("t",)),
        ("UPDATE ops.t SET a = 1 FROM u WHERE u.id = t.id", "update", ("ops.t",)),
        ("DELETE FROM t USING u WHERE u.id = t.id", "delete", ("t",)),
        ("CREATE TABLE IF NOT EXISTS public.t (id int)", "create_table", ("t",)),
        ("CREATE TEMP TABLE scratch (id int)", "create_table", ("scratch",)),
        ("ALTER TABLE ONLY t ADD COLUMN v int", "alter_table", ("t",)),
        ("ALTER TABLE t RENAME TO u", "alter_table", ("t",)),
        ("CREATE OR REPLACE VIEW ops.v AS SELECT 1", "create_view", ("ops.v",)),
        ("CREATE UNIQUE INDEX t_v ON public.t (v) WHERE v > 0", "create_index", ("t_v", "t")),
        ("CREATE INDEX ON t (v)", "create_index", ("t",)),
        ("COMMENT ON TABLE public.t IS 'x'", "comment", ("t",)),
        ("COMMENT ON COLUMN t.v IS 'x'", "comment", ("t",)),
        ("COMMENT ON VIEW ops.v IS 'x'", "comment", ("ops.v",)),
        ("COMMENT ON FUNCTION f(int) IS 'x'", "comment", ("f",)),
        ("DROP TABLE IF EXISTS a, public.b, ops.c", "drop_table", ("a", "b", "ops.c")),
        ("DROP INDEX t_v", "drop_index", ("t_v",)),
        ("CREATE FUNCTION ops.f() RETURNS int LANGUAGE sql AS 'SELECT 1'", "create_function", ("ops.f",)),
        ("CREATE TYPE mood AS ENUM ('ok')", "create_type", ("mood",)),
        (
            "CREATE FUNCTION g() RETURNS int LANGUAGE sql BEGIN ATOMIC DELETE FROM u; SELECT 1; END",
            "create_function",
            ("g",),
        ),
        ("CREATE TYPE pair AS (a int, b int)", "create_type", ("pair",)),
        ("TRUNCATE t, u", "truncate", ("t", "u")),
        ("WITH d AS (DELETE FROM u RETURNING *) INSERT INTO t SELECT * FROM d", "insert", ("t", "u")),
        ("SELECT count(*) FROM t", "select", ()),
        ("LOCK TABLE t", "lock", ("t",)),
    ],
)
def test_targets(sql: str, kind: str, targets: tuple[str, ...]) -> None:
    (statement,) = sqlcheck.split(f"\n  {sql};  ")
    assert (statement.kind, statement.targets, statement.line) == (kind, targets, 2)
    assert statement.text == sql


def test_split_lines_and_texts_with_non_ascii_comments() -> None:
    sql = "-- § Điều-45 ünïcode\nINSERT INTO t VALUES ('é');\n/* ü */ DELETE FROM t\n"
    first, second = sqlcheck.split(sql)
    assert (first.text, first.line) == ("INSERT INTO t VALUES ('é')", 2)
    assert (second.text, second.line) == ("DELETE FROM t", 3)
    assert sqlcheck.split("-- only a comment\n") == []


# --------------------------------------------------------------------------- rollback


def test_the_rollback_may_only_undo_what_the_mutation_may_do() -> None:
    mutation = "CREATE TABLE t (id int); INSERT INTO u VALUES (1); UPDATE w SET v = 1"
    allow: Allow = {"create_table": ["t"], "insert": ["u"], "update": ["w"]}
    ok = make(mutation, allow, rollback="DROP TABLE IF EXISTS t; DELETE FROM u; TRUNCATE t; UPDATE w SET v = 0")
    assert [s.kind for s in sqlcheck.check_rollback(ok)] == ["drop_table", "delete", "truncate", "update"]
    for rollback, reason in [
        ("DROP TABLE u", "drop_table u is not in the allow list of the rollback"),
        ("UPDATE u SET v = 0", "update u is not in the allow list of the rollback"),
        ("DELETE FROM w", "delete w is not in the allow list of the rollback"),
        ("DROP TABLE t CASCADE", "DROP ... CASCADE"),
        ("SELECT 1", "a top-level SELECT is not a build step"),
    ]:
        assert reason in refused(make(mutation, allow, rollback=rollback), "rollback")
    with pytest.raises(SpecError, match="holds no statement, but the step has a mutation to undo"):
        sqlcheck.check_rollback(make(mutation, allow, rollback="-- nothing"))


def test_a_verification_only_rollback_may_hold_only_comments_and_reads() -> None:
    assert sqlcheck.check_rollback(make(None, rollback="-- nothing to undo\n")) == []
    assert [s.kind for s in sqlcheck.check_rollback(make(None, rollback="SELECT 'no-op' AS note;"))] == ["select"]
    assert "may roll back only with comments and read-only SELECTs" in refused(
        make(None, rollback="DELETE FROM t"), "rollback"
    )
    assert "set_config('role')" in refused(make(None, rollback="SELECT set_config('role', 'x', false)"), "rollback")
    assert "written" not in refused(make(None, rollback="WITH d AS (DELETE FROM t RETURNING 1) SELECT 1"), "rollback")


# --------------------------------------------------------------------------- batch


def test_the_batch_is_one_insert_that_never_writes_its_source() -> None:
    ok = "INSERT INTO cand SELECT id FROM birth_registry WHERE id > %(after)s AND id <= %(upto)s"
    assert sqlcheck.check_batch(make(None, batch=ok))[0].writes == (("insert", "cand"),)
    assert "insert cand is not in the allow list" in refused(make("UPDATE t SET v = 1", WIDE, batch=ok), "batch")
    source = "WITH m AS (UPDATE birth_registry SET x = 1 WHERE id > %(after)s RETURNING id) INSERT INTO c SELECT 1"
    message = refused(make(None, batch=source), "batch")
    assert "the batch writes its own source table birth_registry (update)" in message
    assert 'refused: "WITH m AS (UPDATE birth_registry SET x = 1 WHERE id > %(after)s' in message
    with pytest.raises(SpecError, match="must be exactly one INSERT, found update"):
        sqlcheck.check_batch(make(None, batch="UPDATE cand SET v = %(run_id)s"))
    with pytest.raises(SpecError, match="must be exactly one INSERT, found insert, insert"):
        sqlcheck.check_batch(make(None, batch="INSERT INTO a VALUES (1); INSERT INTO b VALUES (%(upto)s)"))
    assert sqlcheck.check_batch(make(None)) == []


def test_batch_placeholders_keep_lines() -> None:
    sql = "INSERT INTO cand\nSELECT %(run_id)s::uuid, %(after)s, %(upto)s\nFROM birth_registry;\nLISTEN x"
    with pytest.raises(SpecError, match="found insert, listen"):
        sqlcheck.check_batch(make(None, batch=sql))
    message = refused(make(None, batch="\n\nINSERT INTO cand SELECT pg_notify('x', %(run_id)s)"), "batch")
    assert message.startswith("step SB-99 batch line 3: pg_notify() would open a new bus")


# --------------------------------------------------------------------------- read-only checks


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("SELECT set_config('search_path', 'evil', false)", "set_config('search_path') changes gcos's session guard"),
        ("SELECT count(*) FROM t WHERE set_config('role', 'x', true) IS NOT NULL", "set_config('role')"),
        ("SELECT pg_advisory_lock(42)", "session-level lock"),
        ("WITH d AS (DELETE FROM t RETURNING 1) SELECT count(*) FROM d", "a check must not write (delete t)"),
        ("SELECT * FROM t FOR UPDATE", "a check must not lock rows"),
        ("SELECT 1 INTO scratch", "SELECT ... INTO creates a table"),
        ("INSERT INTO t VALUES (1)", "a check must be a read-only SELECT, not insert"),
        ("SET ROLE admin", "SET role changes the session's identity"),
    ],
)
def test_checks_are_read_only_queries(sql: str, reason: str) -> None:
    with pytest.raises(SpecError) as err:
        sqlcheck.check_query(sql, label="step SB-99 stop 'x'")
    assert err.value.message.startswith("step SB-99 stop 'x' line 1: "), err.value.message
    assert reason in err.value.message and f'refused: "{sql}"' in err.value.message


def test_read_only_checks_pass() -> None:
    sqlcheck.check_query("SELECT current_setting('search_path'), set_config('application_name', 'x', true)", label="x")
    sqlcheck.check_query("-- COMMIT\nSELECT 'SET ROLE admin; VACUUM' AS s", label="x")


@pytest.mark.parametrize("call", ["nextval('s')", "setval('s', 1)", "lo_unlink(1)", "lo_create(0)"])
def test_a_check_may_not_call_a_function_that_writes(call: str) -> None:
    """Review finding: checks also run inside the commit's read-write transaction."""
    with pytest.raises(SpecError, match="a check must not call"):
        sqlcheck.check_query(f"SELECT {call}", label="success check 'x'")
