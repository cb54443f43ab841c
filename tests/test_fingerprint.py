"""The database fingerprint (gcos.fingerprint): one snapshot, every schema category, watched rows, residue.

Real PostgreSQL through the conftest fixtures (a fresh database per test); no mocks, no sleeps. Each
category test makes a committed change and checks that ``diff`` names it (category, identity, change)
and that ``hash`` moved; churn that changes no meaning (ANALYZE, VACUUM, CLUSTER, DROP+CREATE of an
identical object) must leave the fingerprint equal.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import pq, sql
from psycopg.conninfo import make_conninfo

from gcos.canonical import content_hash
from gcos.fingerprint import (
    CATEGORIES,
    RESIDUE_CATEGORY,
    TABLE_CATEGORY,
    Difference,
    Fingerprint,
    describe,
    diff,
    residue_only,
    take,
)

Conn = psycopg.Connection[Any]


def _change(conn: Conn, setup: str, change: str, *, watch: tuple[str, ...] = ()) -> tuple[Fingerprint, Fingerprint]:
    if setup:
        conn.execute(setup)
    before = take(conn, watch=watch)
    conn.execute(change)
    return before, take(conn, watch=watch)


def _status(conn: Conn) -> pq.TransactionStatus:
    return conn.info.transaction_status


def _named(diffs: list[Difference]) -> set[tuple[str, str, str]]:
    return {(d.category, d.identity, d.change) for d in diffs}


TRIGGER_SETUP = """
CREATE TABLE t (a int, touched timestamptz);
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.touched := now(); RETURN NEW; END $$;
CREATE TRIGGER trg BEFORE UPDATE ON t FOR EACH ROW EXECUTE FUNCTION touch();
"""
FK_SETUP = "CREATE TABLE p (id int PRIMARY KEY); CREATE TABLE c (p_id int CONSTRAINT c_p_fk REFERENCES p);"

# (case id, setup SQL, the committed change, differences diff must name: (category, identity, change))
CASES: list[tuple[str, str, str, set[tuple[str, str, str]]]] = [
    (
        "add column",
        "CREATE TABLE t (a int)",
        "ALTER TABLE t ADD COLUMN b text",
        {("column", "public.t.b", "added")},
    ),
    (
        "drop column",
        "CREATE TABLE t (a int, b text, c date)",
        "ALTER TABLE t DROP COLUMN b",
        {("column", "public.t.b", "removed"), ("column", "public.t.c", "changed")},  # c: position 3 -> 2
    ),
    (
        "column type",
        "CREATE TABLE t (a int)",
        "ALTER TABLE t ALTER a TYPE bigint",
        {("column", "public.t.a", "changed")},
    ),
    (
        "change a default",
        "CREATE TABLE t (a int DEFAULT 1)",
        "ALTER TABLE t ALTER a SET DEFAULT 2",
        {("column", "public.t.a", "changed")},
    ),
    (
        "drop NOT NULL",
        "CREATE TABLE t (a int NOT NULL)",
        "ALTER TABLE t ALTER a DROP NOT NULL",
        {("column", "public.t.a", "changed")},
    ),
    (
        "add a CHECK constraint",
        "CREATE TABLE t (a int)",
        "ALTER TABLE t ADD CONSTRAINT a_positive CHECK (a > 0)",
        {("constraint", "public.t.a_positive", "added")},
    ),
    (
        "validate a constraint",
        "CREATE TABLE t (a int); ALTER TABLE t ADD CONSTRAINT a_positive CHECK (a > 0) NOT VALID",
        "ALTER TABLE t VALIDATE CONSTRAINT a_positive",
        {("constraint", "public.t.a_positive", "changed")},
    ),
    (
        "alter a foreign key",
        FK_SETUP,
        "ALTER TABLE c ALTER CONSTRAINT c_p_fk DEFERRABLE INITIALLY DEFERRED",
        {("constraint", "public.c.c_p_fk", "changed")},
    ),
    (
        "add a primary key",
        "CREATE TABLE t (a int NOT NULL)",
        "ALTER TABLE t ADD CONSTRAINT t_pk PRIMARY KEY (a)",
        {("constraint", "public.t.t_pk", "added"), ("index", "public.t_pk", "added")},
    ),
    (
        "add an index",
        "CREATE TABLE t (a int)",
        "CREATE INDEX t_a_idx ON t (a)",
        {("index", "public.t_a_idx", "added")},
    ),
    (
        "recreate an index descending",
        "CREATE TABLE t (a int, b int); CREATE INDEX t_idx ON t (a)",
        "DROP INDEX t_idx; CREATE INDEX t_idx ON t (a DESC)",
        {("index", "public.t_idx", "changed")},
    ),
    (
        "change an index predicate",
        "CREATE TABLE t (a int); CREATE INDEX t_idx ON t (a) WHERE a > 0",
        "DROP INDEX t_idx; CREATE INDEX t_idx ON t (a) WHERE a > 1",
        {("index", "public.t_idx", "changed")},
    ),
    (
        "disable a trigger",
        TRIGGER_SETUP,
        "ALTER TABLE t DISABLE TRIGGER trg",
        {("trigger", "public.t.trg", "changed")},
    ),
    (
        "disable foreign-key triggers",
        FK_SETUP,
        "ALTER TABLE c DISABLE TRIGGER ALL",
        {("constraint", "public.c.c_p_fk", "changed")},
    ),
    (
        "replace a function body",
        "CREATE FUNCTION f(x int) RETURNS int LANGUAGE sql AS 'SELECT x'",
        "CREATE OR REPLACE FUNCTION f(x int) RETURNS int LANGUAGE sql AS 'SELECT x + 1'",
        {("function", "public.f(integer)", "changed")},
    ),
    (
        "pin a function's search_path",
        "CREATE FUNCTION f(x int) RETURNS int LANGUAGE sql AS 'SELECT x'",
        "ALTER FUNCTION f(int) SECURITY DEFINER SET search_path = pg_catalog",
        {("function", "public.f(integer)", "changed")},
    ),
    (
        "change a view definition",
        "CREATE TABLE t (a int); CREATE VIEW v AS SELECT a FROM t",
        "CREATE OR REPLACE VIEW v AS SELECT a FROM t WHERE a > 0",
        {("relation", "public.v", "changed")},
    ),
    (
        "alter a sequence's increment",
        "CREATE SEQUENCE s",
        "ALTER SEQUENCE s INCREMENT BY 5",
        {("sequence", "public.s", "changed")},
    ),
    (
        "add an enum label",
        "CREATE TYPE mood AS ENUM ('sad', 'ok')",
        "ALTER TYPE mood ADD VALUE 'happy' BEFORE 'ok'",
        {("type", "public.mood", "changed")},
    ),
    (
        "add a domain constraint",
        "CREATE DOMAIN positive AS int",
        "ALTER DOMAIN positive ADD CONSTRAINT positive_check CHECK (VALUE > 0)",
        {("constraint", "public.positive.positive_check", "added")},
    ),
    (
        "GRANT on a table",
        "CREATE TABLE t (a int)",
        "GRANT SELECT ON t TO PUBLIC",
        {("relation", "public.t", "changed")},
    ),
    (
        "GRANT on a column",
        "CREATE TABLE t (a int)",
        "GRANT UPDATE (a) ON t TO PUBLIC",
        {("column", "public.t.a", "changed")},
    ),
    (
        "REVOKE on a function",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "REVOKE EXECUTE ON FUNCTION f() FROM PUBLIC",
        {("function", "public.f()", "changed")},
    ),
    (
        "enable row-level security",
        "CREATE TABLE t (a int)",
        "ALTER TABLE t ENABLE ROW LEVEL SECURITY",
        {("relation", "public.t", "changed")},
    ),
    (
        "add an RLS policy",
        "CREATE TABLE t (a int)",
        "CREATE POLICY only_positive ON t USING (a > 0)",
        {("policy", "public.t.only_positive", "added")},
    ),
    (
        "COMMENT ON TABLE",
        "CREATE TABLE t (a int)",
        "COMMENT ON TABLE t IS 'the t'",
        {("relation", "public.t", "changed")},
    ),
    (
        "COMMENT ON COLUMN",
        "CREATE TABLE t (a int)",
        "COMMENT ON COLUMN t.a IS 'the a'",
        {("column", "public.t.a", "changed")},
    ),
    (
        "COMMENT ON FUNCTION",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "COMMENT ON FUNCTION f() IS 'one'",
        {("function", "public.f()", "changed")},
    ),
    (
        "COMMENT ON SCHEMA",
        "",
        "COMMENT ON SCHEMA public IS 'mine'",
        {("schema", "public", "changed")},
    ),
    (
        "create a schema",
        "",
        "CREATE SCHEMA reports",
        {("schema", "reports", "added")},
    ),
    (
        "add a rule",
        "CREATE TABLE t (a int)",
        "CREATE RULE no_delete AS ON DELETE TO t DO INSTEAD NOTHING",
        {("rule", "public.t.no_delete", "added")},
    ),
    (
        "create extended statistics",
        "CREATE TABLE t (a int, b int)",
        "CREATE STATISTICS t_ab (dependencies) ON a, b FROM t",
        {("statistics", "public.t_ab", "added")},
    ),
    (
        "alter default privileges",
        "",
        "ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO PUBLIC",
        {("default_privileges", "postgres:*:r", "added")},
    ),
    (
        "add an extension (its members are not listed)",
        "",
        "CREATE EXTENSION citext",
        {("extension", "citext", "added")},
    ),
    (
        "add a composite type attribute",
        "CREATE TYPE pair AS (a int, b int)",
        "ALTER TYPE pair ADD ATTRIBUTE c text",
        {("type", "public.pair", "changed")},
    ),
    (
        "create a range type",
        "",
        "CREATE TYPE span AS RANGE (subtype = int4)",
        {("type", "public.span", "added")},
    ),
    (
        "create an event trigger",
        "CREATE FUNCTION on_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN END $$",
        "CREATE EVENT TRIGGER on_ddl ON ddl_command_end EXECUTE FUNCTION on_ddl()",
        {("event_trigger", "on_ddl", "added")},
    ),
    (
        "set a storage parameter",
        "CREATE TABLE t (a int)",
        "ALTER TABLE t SET (fillfactor = 70)",
        {("relation", "public.t", "changed")},
    ),
    (
        "partition a table",
        "CREATE TABLE m (k int, v text) PARTITION BY RANGE (k)",
        "CREATE TABLE m_1 PARTITION OF m FOR VALUES FROM (0) TO (10)",
        {("relation", "public.m_1", "added"), ("column", "public.m_1.k", "added"), ("column", "public.m_1.v", "added")},
    ),
]


@pytest.mark.parametrize(("setup", "change", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_category_sees_its_change(
    conn: Conn, setup: str, change: str, expected: set[tuple[str, str, str]]
) -> None:
    before, after = _change(conn, setup, change)
    diffs = diff(before, after)
    assert expected <= _named(diffs), describe(diffs)
    assert after.hash != before.hash
    assert after != before
    assert all(d.category in CATEGORIES for d in diffs), describe(diffs)


def test_column_order_counts_but_dropped_columns_leave_no_gap(conn: Conn) -> None:
    conn.execute("CREATE TABLE t (a int, gone int, b text)")
    conn.execute("ALTER TABLE t DROP COLUMN gone")
    with_gap = take(conn)
    conn.execute("DROP TABLE t; CREATE TABLE t (a int, b text)")
    assert diff(with_gap, take(conn)) == []
    conn.execute("DROP TABLE t; CREATE TABLE t (b text, a int)")
    swapped = diff(with_gap, take(conn))
    assert {(d.identity, d.detail) for d in swapped} == {
        ("public.t.a", "position: 1 → 2"),
        ("public.t.b", "position: 2 → 1"),
    }


def test_extension_members_are_left_out(conn: Conn) -> None:
    before, after = _change(conn, "", "CREATE EXTENSION citext")
    assert _named(diff(before, after)) == {("extension", "citext", "added")}


def test_a_changed_definition_names_the_field(conn: Conn) -> None:
    before, after = _change(conn, TRIGGER_SETUP, "ALTER TABLE t DISABLE TRIGGER trg")
    (only,) = diff(before, after)
    assert only == Difference("trigger", "public.t.trg", "changed", "enabled: O → D")

    before, after = _change(conn, "", """COMMENT ON TABLE t IS 'a, "quoted" (odd) \\ text'""")
    (only,) = diff(before, after)
    assert only.detail == 'comment: null → a, "quoted" (odd) \\ text'


def test_owner_change(conn: Conn) -> None:
    role = f"gcos_fp_{uuid.uuid4().hex[:8]}"  # roles are cluster-wide: a unique name, dropped after
    conn.execute("CREATE TABLE t (a int)")
    conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(role)))
    try:
        before = take(conn)
        conn.execute(sql.SQL("ALTER TABLE t OWNER TO {}").format(sql.Identifier(role)))
        after = take(conn)
        changed = diff(before, after)
        assert ("relation", "public.t", "changed") in _named(changed)
        assert "owner: postgres → " + role in describe(changed)
        assert after.hash != before.hash
    finally:
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        ("INSERT INTO t VALUES (4, 'four')", "rows 3 → 4"),
        ("UPDATE t SET b = 'TWO' WHERE a = 2", "content changed, 3 rows"),
        ("DELETE FROM t WHERE a = 3", "rows 3 → 2"),
    ],
    ids=["insert", "update", "delete"],
)
def test_watched_table_rows(conn: Conn, change: str, detail: str) -> None:
    setup = "CREATE TABLE t (a int, b text); INSERT INTO t VALUES (1, 'one'), (2, 'two'), (3, 'three')"
    before, after = _change(conn, setup, change, watch=("t",))
    assert before.tables["public.t"].rows == 3
    assert diff(before, after) == [Difference(TABLE_CATEGORY, "public.t", "changed", detail)]
    assert after.schema_hash == before.schema_hash
    assert after.hash != before.hash


def test_watched_content_is_order_independent_and_unwatched_rows_do_not_count(conn: Conn) -> None:
    conn.execute("CREATE TABLE t (a int, b text); INSERT INTO t VALUES (1, 'one'), (2, 'two'), (2, 'two')")
    conn.execute("CREATE TABLE other (a int)")
    before = take(conn, watch=["t"])
    conn.execute("DELETE FROM t WHERE a = 1; INSERT INTO t VALUES (1, 'one')")  # same rows, new physical order
    conn.execute("INSERT INTO other VALUES (1)")  # not watched
    after = take(conn, watch=["t"])
    assert after == before
    assert diff(before, after) == []
    conn.execute("DELETE FROM t WHERE ctid = (SELECT min(ctid) FROM t WHERE a = 2)")  # one of two duplicates
    assert diff(after, take(conn, watch=["t"])) == [Difference(TABLE_CATEGORY, "public.t", "changed", "rows 3 → 2")]


def test_a_column_named_like_the_row_alias_does_not_hide_the_row(conn: Conn) -> None:
    before, after = _change(
        conn,
        "CREATE TABLE t (t int, other text); INSERT INTO t VALUES (1, 'a')",
        "UPDATE t SET other = 'b'",
        watch=("t",),
    )
    assert diff(before, after) == [Difference(TABLE_CATEGORY, "public.t", "changed", "content changed, 1 row")]


def test_missing_watched_table_is_reported_then_seen_when_created(conn: Conn) -> None:
    watch = ["later", "public.later", "no_such_schema.x", "a.b.c.d", "otherdb.public.later"]
    before = take(conn, watch=watch)
    assert before.tables == {}
    assert before.missing == tuple(watch)
    conn.execute("CREATE TABLE later (a int)")
    after = take(conn, watch=watch)
    assert after.missing == ("no_such_schema.x", "a.b.c.d", "otherdb.public.later")
    assert list(after.tables) == ["public.later"]  # both spellings resolve to one table
    assert (TABLE_CATEGORY, "public.later", "added") in _named(diff(before, after))


def test_sequence_state_is_residue_only(conn: Conn) -> None:
    conn.execute("CREATE TABLE t (id bigserial, a int); CREATE SEQUENCE s")
    before = take(conn)
    assert before.sequences == {"public.s": 1, "public.t_id_seq": 1}  # the value nextval returns next
    conn.execute("SELECT nextval('s'), nextval('s'), nextval('t_id_seq')")
    after = take(conn)
    diffs = diff(before, after)
    assert diffs == [
        Difference(RESIDUE_CATEGORY, "public.s", "changed", "next value 1 → 3"),
        Difference(RESIDUE_CATEGORY, "public.t_id_seq", "changed", "next value 1 → 2"),
    ]
    assert residue_only(diffs)
    assert after.hash == before.hash
    assert after == before  # sequences are not part of equality


def test_sequence_states_that_mean_the_same_are_equal(conn: Conn) -> None:
    conn.execute("CREATE SEQUENCE a; CREATE SEQUENCE b; SELECT setval('a', 10, false), setval('b', 9, true)")
    assert take(conn).sequences == {"public.a": 10, "public.b": 10}  # both return 10 next


def test_statistics_and_storage_churn_change_nothing(conn: Conn) -> None:
    conn.execute(
        "CREATE TABLE t (id serial PRIMARY KEY, a int CHECK (a >= 0), b text DEFAULT 'x');"
        "CREATE INDEX t_a_idx ON t (a) WHERE a > 10;"
        "INSERT INTO t (a) SELECT g FROM generate_series(1, 2000) AS g;"
        "CREATE MATERIALIZED VIEW mv AS SELECT a FROM t WHERE a < 100"
    )
    before = take(conn, watch=["t"])
    for statement in (
        "ANALYZE",
        "VACUUM",
        "VACUUM (FULL, ANALYZE) t",
        "CLUSTER t USING t_pkey",
        "REINDEX TABLE t",
        "REFRESH MATERIALIZED VIEW mv",
        "ANALYZE t",
    ):
        conn.execute(statement)
    after = take(conn, watch=["t"])
    assert diff(before, after) == []
    assert after.hash == before.hash


def test_drop_and_create_of_an_identical_table_gives_the_same_fingerprint(conn: Conn) -> None:
    ddl = """
    CREATE TABLE parent (id int PRIMARY KEY);
    CREATE TABLE t (
        id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        n serial,
        parent_id int REFERENCES parent (id),
        a numeric(12, 2) NOT NULL DEFAULT 0 CHECK (a >= 0),
        b text COLLATE "C" UNIQUE,
        c jsonb DEFAULT '{}'
    );
    CREATE INDEX t_a_idx ON t (a DESC) INCLUDE (b) WHERE a > 0;
    COMMENT ON TABLE t IS 'the t';
    GRANT SELECT, INSERT ON t TO PUBLIC;
    CREATE VIEW v AS SELECT id, a FROM t;
    """
    conn.execute(ddl)
    before = take(conn, watch=["t"])
    conn.execute("DROP VIEW v; DROP TABLE t; DROP TABLE parent")
    conn.execute(ddl)
    after = take(conn, watch=["t"])
    assert diff(before, after) == []
    assert after == before
    assert after.sequences == before.sequences


def test_grant_then_revoke_leaves_no_trace(conn: Conn) -> None:
    conn.execute("CREATE TABLE t (a int); CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'")
    before = take(conn)
    conn.execute("GRANT SELECT ON t TO PUBLIC; REVOKE SELECT ON t FROM PUBLIC")
    conn.execute("REVOKE EXECUTE ON FUNCTION f() FROM PUBLIC; GRANT EXECUTE ON FUNCTION f() TO PUBLIC")
    assert diff(before, take(conn)) == []


def test_two_takes_in_a_row_are_equal(conn: Conn) -> None:
    conn.execute(FK_SETUP + TRIGGER_SETUP + "CREATE TYPE mood AS ENUM ('a', 'b'); CREATE VIEW v AS SELECT 1 AS one")
    first, second = take(conn, watch=["p", "c"]), take(conn, watch=["p", "c"])
    assert first == second
    assert diff(first, second) == []
    assert first.to_json() == second.to_json()


def test_the_callers_search_path_does_not_matter(conn: Conn) -> None:
    conn.execute("CREATE SCHEMA app; CREATE TYPE app.mood AS ENUM ('a'); CREATE SEQUENCE app.s")
    conn.execute("CREATE TABLE app.t (m app.mood, n bigint DEFAULT nextval('app.s'))")
    conn.execute("SET search_path = public")
    qualified = take(conn, watch=["app.t"])
    conn.execute("SET search_path = app, public")
    unqualified = take(conn, watch=["t"])
    assert unqualified == qualified
    assert "app.mood" in qualified.definitions["column"]["app.t.m"]


def test_excluded_schemas_are_left_out(conn: Conn) -> None:
    before = take(conn)
    conn.execute(
        "CREATE SCHEMA gcos; CREATE TABLE gcos.ledger (a int); CREATE SCHEMA extra; CREATE TABLE extra.x (a int)"
    )
    after = take(conn, exclude_schemas=("gcos", "extra"))
    assert after == before
    assert {d.identity for d in diff(before, take(conn))} >= {"extra", "extra.x"}


def test_inside_a_transaction_it_sees_uncommitted_changes_and_stays_in_it(conn: Conn) -> None:
    conn.execute("CREATE TABLE t (a int)")
    entry = take(conn, watch=["t"])
    with conn.transaction(force_rollback=True):
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        conn.execute("SET LOCAL search_path = public")
        conn.execute("ALTER TABLE t ADD COLUMN b text; INSERT INTO t VALUES (1, 'x')")
        inside = take(conn, watch=["t"])
        assert conn.info.transaction_status == pq.TransactionStatus.INTRANS
        assert _named(diff(entry, inside)) >= {
            ("column", "public.t.b", "added"),
            (TABLE_CATEGORY, "public.t", "changed"),
        }
        # the transaction goes on: its settings are its own again and it can still work
        row = conn.execute("SELECT current_setting('search_path'), current_setting('row_security')").fetchone()
        assert row == ("public", "on")
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (1,)
        assert take(conn, watch=["t"]) == inside
    assert _status(conn) == pq.TransactionStatus.IDLE
    assert take(conn, watch=["t"]) == entry


def test_inside_a_transaction_begun_with_sql(conn: Conn) -> None:
    conn.execute("CREATE TABLE t (a int)")
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    try:
        conn.execute("CREATE INDEX t_a_idx ON t (a)")
        inside = take(conn, watch=["a.b.c.d"])  # a malformed name fails in a savepoint of its own
        assert inside.missing == ("a.b.c.d",)
        assert conn.info.transaction_status == pq.TransactionStatus.INTRANS
        assert "public.t_a_idx" in inside.schema["index"]
    finally:
        conn.execute("ROLLBACK")
    assert "public.t_a_idx" not in take(conn).schema["index"]


def test_on_an_idle_connection_it_leaves_it_idle_and_opens_nothing_else(conn: Conn) -> None:
    conn.execute("CREATE TABLE t (a int)")
    assert conn.info.transaction_status == pq.TransactionStatus.IDLE
    backends = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
    assert conn.execute(backends).fetchone() == (1,)
    take(conn, watch=["t"])
    assert conn.info.transaction_status == pq.TransactionStatus.IDLE
    assert conn.execute(backends).fetchone() == (1,)
    assert conn.execute("SELECT current_setting('search_path')").fetchone() == ('"$user", public',)


def test_a_locked_watched_table_fails_within_lock_timeout_and_leaves_the_connection_idle(conn: Conn, dsn: str) -> None:
    conn.execute("CREATE TABLE t (a int)")
    with psycopg.connect(dsn, autocommit=True) as other:
        other.execute("BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
        conn.execute("SET lock_timeout = '200ms'")
        with pytest.raises(psycopg.errors.LockNotAvailable):
            take(conn, watch=["t"])
        assert _status(conn) == pq.TransactionStatus.IDLE
        other.execute("ROLLBACK")
    assert take(conn, watch=["t"]).tables["public.t"].rows == 0


def test_an_unprivileged_role_sees_the_same_schema(conn: Conn, dsn: str) -> None:
    conn.execute("CREATE TABLE t (id serial, a int); CREATE VIEW v AS SELECT a FROM t; SELECT nextval('t_id_seq')")
    conn.execute("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'")
    role, password = f"gcos_fp_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password)))
    try:
        as_owner = take(conn)
        with psycopg.connect(make_conninfo(dsn, user=role, password=password), autocommit=True) as other:
            as_role = take(other)
            assert as_role.schema_hash == as_owner.schema_hash
            assert as_role.sequences == {}  # it may not read the sequence: not reported at all
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                take(other, watch=["t"])
            assert _status(other) == pq.TransactionStatus.IDLE
    finally:
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_a_failed_transaction_is_refused(conn: Conn) -> None:
    conn.execute("BEGIN")
    with pytest.raises(psycopg.errors.DivisionByZero):
        conn.execute("SELECT 1 / 0")
    with pytest.raises(ValueError, match="INERROR"):
        take(conn)
    conn.execute("ROLLBACK")
    with pytest.raises(TypeError):
        take(conn, watch="t")


def test_hashes_are_content_hashes_even_for_odd_names(conn: Conn) -> None:
    def check(fp: Fingerprint) -> None:
        assert fp.schema_hash == content_hash(fp.schema)
        tables = {name: {"rows": t.rows, "content": t.content} for name, t in fp.tables.items()}
        assert fp.hash == content_hash(
            {"format_version": fp.format_version, "schema_hash": fp.schema_hash, "tables": tables}
        )

    conn.execute("""CREATE TABLE plain ("naïve" int); COMMENT ON TABLE plain IS E'line\\nbreak "quoted" \\\\ \\x01'""")
    check(take(conn))  # non-ASCII, escapes, a control character
    odd = '"Odd ""Name"", with, commas"'
    conn.execute(f"""CREATE TABLE {odd} ("Grüße \\ 🙂" text DEFAULT E'tab\\there')""")
    fp = take(conn, watch=[odd])
    check(fp)  # an astral character: RFC 8785 key order may differ from code point order
    assert f'public.{odd}."Grüße \\ 🙂"' in fp.schema["column"]
    assert list(fp.tables) == [f"public.{odd}"]
    conn.execute(f"""ALTER TABLE {odd} ALTER "Grüße \\ 🙂" SET DEFAULT 'x'""")
    (changed,) = diff(fp, take(conn, watch=[odd]))
    assert changed.detail == "default: 'tab here'::text → 'x'::text"


def test_json_round_trip(conn: Conn) -> None:
    conn.execute("CREATE TABLE t (a int); INSERT INTO t VALUES (1)")
    conn.execute("CREATE SEQUENCE big MINVALUE -9223372036854775808 START 9223372036854775800")
    conn.execute("SELECT nextval('big')")
    fp = take(conn, watch=["t", "nope"])
    data = fp.to_json()
    json.dumps(data)
    content_hash(data)  # RFC 8785 accepts it: no floats, no bigints
    assert data["sequences"]["public.big"] == "9223372036854775801"
    again = Fingerprint.from_json(json.loads(json.dumps(data)))
    assert again == fp
    assert again.sequences == fp.sequences and again.missing == ("nope",)
    assert diff(fp, again) == []
    data["tables"]["public.t"]["rows"] = 2
    with pytest.raises(ValueError, match="do not match"):
        Fingerprint.from_json(data)


def test_describe_is_one_line(conn: Conn) -> None:
    assert describe([]) == "no differences"
    before, after = _change(
        conn, "CREATE TABLE t (a int)", "CREATE VIEW v AS SELECT a,\n a + 1 AS b FROM t; ALTER TABLE t ADD b int"
    )
    text = describe(diff(before, after), limit=2)
    assert "\n" not in text
    assert text.startswith(f"{len(diff(before, after))} differences: ")
    assert text.endswith("more")


@pytest.fixture
def world_conn(world_dsn: str) -> Iterator[Conn]:
    with psycopg.connect(world_dsn, autocommit=True) as connection:
        yield connection


def test_reference_world_fingerprint_is_stable_and_quick(world_conn: Conn) -> None:
    watch = ["birth_registry", "measurement_registry"]
    start = time.perf_counter()
    first = take(world_conn, watch=watch)
    elapsed = time.perf_counter() - start
    assert elapsed < 15, f"fingerprint of the reference world took {elapsed:.1f} s"
    assert first.tables["public.birth_registry"].rows == 1_043_000
    assert first.tables["public.measurement_registry"].rows == 140
    assert first.schema["relation"].keys() >= {"public.birth_registry", "public.reference_world_baseline"}
    world_conn.execute("ANALYZE")
    second = take(world_conn, watch=watch)
    assert diff(first, second) == []
    assert second == first
