"""The database fingerprint (``gcos.fingerprint``, gcos/sql/005_fingerprint.sql): what it sees and what it
ignores. Every schema category names its change, watched rows count, sequences are residue, and churn that
changes no meaning (ANALYZE, VACUUM, CLUSTER, DROP+CREATE of an identical object, GRANT+REVOKE) leaves the
hash equal. Differences are named by the kernel's own differ, ``gcos._fp_differences``.

Real PostgreSQL through the conftest fixtures (a fresh database per test, gcos installed); no mocks.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
import pytest
from conftest import fingerprint
from psycopg import sql
from psycopg.types.json import Jsonb

from gcos.canonical import content_hash
from gcos.fingerprint import CATEGORIES

Conn = psycopg.Connection[Any]
Named = set[tuple[str, str, str]]


@pytest.fixture
def db(conn: Conn, gcos_installed: None) -> Conn:
    """This test's fresh database with gcos installed (an autocommit superuser connection)."""
    return conn


def differences(conn: Conn, before: dict[str, Any], after: dict[str, Any]) -> Named:
    """(category, identity, change) of every difference the kernel names (``gcos._fp_differences``)."""
    row = conn.execute("SELECT gcos._fp_differences(%s, %s)", (Jsonb(before), Jsonb(after))).fetchone()
    assert row is not None
    named: Named = set()
    for line in row[0]:
        category, rest = str(line).split(" ", 1)
        identity, change = rest.rsplit(" ", 1)
        named.add((category, identity, change))
    return named


def _change(conn: Conn, setup: str, change: str, *, watch: Sequence[str] = ()) -> tuple[dict[str, Any], dict[str, Any]]:
    if setup:
        conn.execute(setup)
    before = fingerprint(conn, watch)
    conn.execute(change)
    return before, fingerprint(conn, watch)


TRIGGER_SETUP = """
CREATE TABLE t (a int, touched timestamptz);
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.touched := now(); RETURN NEW; END $$;
CREATE TRIGGER trg BEFORE UPDATE ON t FOR EACH ROW EXECUTE FUNCTION touch();
"""
FK_SETUP = "CREATE TABLE p (id int PRIMARY KEY); CREATE TABLE c (p_id int CONSTRAINT c_p_fk REFERENCES p);"

# (case id, setup SQL, the committed change, differences diff must name: (category, identity, change))
CASES: list[tuple[str, str, str, set[tuple[str, str, str]]]] = [
    ("add column", "CREATE TABLE t (a int)", "ALTER TABLE t ADD COLUMN b text", {("column", "public.t.b", "added")}),
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
    ("add an index", "CREATE TABLE t (a int)", "CREATE INDEX t_a_idx ON t (a)", {("index", "public.t_a_idx", "added")}),
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
    ("disable a trigger", TRIGGER_SETUP, "ALTER TABLE t DISABLE TRIGGER trg", {("trigger", "public.t.trg", "changed")}),
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
    ("COMMENT ON SCHEMA", "", "COMMENT ON SCHEMA public IS 'mine'", {("schema", "public", "changed")}),
    ("create a schema", "", "CREATE SCHEMA reports", {("schema", "reports", "added")}),
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
    ("create a range type", "", "CREATE TYPE span AS RANGE (subtype = int4)", {("type", "public.span", "added")}),
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
def test_each_category_sees_its_change(db: Conn, setup: str, change: str, expected: Named) -> None:
    before, after = _change(db, setup, change)
    named = differences(db, before, after)
    assert expected <= named, named
    assert after["hash"] != before["hash"] and after["schema_hash"] != before["schema_hash"]
    assert {category for category, _, _ in named} <= set(CATEGORIES), named


def test_column_order_counts_but_dropped_columns_leave_no_gap(db: Conn) -> None:
    db.execute("CREATE TABLE t (a int, gone int, b text)")
    db.execute("ALTER TABLE t DROP COLUMN gone")
    with_gap = fingerprint(db)
    db.execute("DROP TABLE t; CREATE TABLE t (a int, b text)")
    assert fingerprint(db)["hash"] == with_gap["hash"]
    db.execute("DROP TABLE t; CREATE TABLE t (b text, a int)")
    assert differences(db, with_gap, fingerprint(db)) == {
        ("column", "public.t.a", "changed"),
        ("column", "public.t.b", "changed"),
    }


def test_extension_members_are_left_out(db: Conn) -> None:
    before, after = _change(db, "", "CREATE EXTENSION citext")
    assert differences(db, before, after) == {("extension", "citext", "added")}


def test_owner_change(db: Conn) -> None:
    role = f"gcos_fp_{uuid.uuid4().hex[:8]}"  # roles are cluster-wide: a unique name, dropped after
    db.execute("CREATE TABLE t (a int)")
    db.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(role)))
    try:
        before = fingerprint(db)
        db.execute(sql.SQL("ALTER TABLE t OWNER TO {}").format(sql.Identifier(role)))
        after = fingerprint(db)
        # the new owner's attributes and memberships count from now on (042: category role)
        assert differences(db, before, after) == {("relation", "public.t", "changed"), ("role", role, "added")}
        assert after["hash"] != before["hash"]
    finally:
        db.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        db.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@pytest.mark.parametrize(
    ("change", "rows"),
    [
        ("INSERT INTO t VALUES (4, 'four')", 4),
        ("UPDATE t SET b = 'TWO' WHERE a = 2", 3),
        ("DELETE FROM t WHERE a = 3", 2),
    ],
    ids=["insert", "update", "delete"],
)
def test_watched_table_rows(db: Conn, change: str, rows: int) -> None:
    setup = "CREATE TABLE t (a int, b text); INSERT INTO t VALUES (1, 'one'), (2, 'two'), (3, 'three')"
    before, after = _change(db, setup, change, watch=("t",))
    assert before["tables"]["public.t"]["rows"] == 3 and after["tables"]["public.t"]["rows"] == rows
    assert after["tables"]["public.t"]["content"] != before["tables"]["public.t"]["content"]
    assert differences(db, before, after) == {("table_data", "public.t", "changed")}
    assert after["schema_hash"] == before["schema_hash"]
    assert after["hash"] != before["hash"]


def test_watched_content_is_order_independent_and_unwatched_rows_do_not_count(db: Conn) -> None:
    db.execute("CREATE TABLE t (a int, b text); INSERT INTO t VALUES (1, 'one'), (2, 'two'), (2, 'two')")
    db.execute("CREATE TABLE other (a int)")
    before = fingerprint(db, ["t"])
    db.execute("DELETE FROM t WHERE a = 1; INSERT INTO t VALUES (1, 'one')")  # same rows, new physical order
    db.execute("INSERT INTO other VALUES (1)")  # not watched
    after = fingerprint(db, ["t"])
    assert after["hash"] == before["hash"] and differences(db, before, after) == set()
    db.execute("DELETE FROM t WHERE ctid = (SELECT min(ctid) FROM t WHERE a = 2)")  # one of two duplicates
    assert fingerprint(db, ["t"])["tables"]["public.t"]["rows"] == 2


def test_a_column_named_like_the_row_alias_does_not_hide_the_row(db: Conn) -> None:
    before, after = _change(
        db,
        "CREATE TABLE t (t int, other text); INSERT INTO t VALUES (1, 'a')",
        "UPDATE t SET other = 'b'",
        watch=("t",),
    )
    assert differences(db, before, after) == {("table_data", "public.t", "changed")}


def test_watched_names_resolve_once_with_the_callers_search_path_and_missing_ones_are_listed(db: Conn) -> None:
    watch = ["later", "public.later", "no_such_schema.x", "a.b.c.d", "otherdb.public.later", "no_such_schema.x"]
    before = fingerprint(db, watch)
    assert before["tables"] == {}
    assert before["missing"] == ["later", "public.later", "no_such_schema.x", "a.b.c.d", "otherdb.public.later"]
    db.execute("CREATE TABLE later (a int); CREATE SCHEMA app; CREATE TABLE app.later (a int, b text)")
    db.execute("INSERT INTO app.later VALUES (1, 'x'), (2, NULL)")
    after = fingerprint(db, watch)
    assert after["missing"] == ["no_such_schema.x", "a.b.c.d", "otherdb.public.later"]
    assert after["tables"] == {"public.later": {"rows": 0, "content": after["tables"]["public.later"]["content"]}}
    db.execute("SET search_path = app, public")
    assert list(fingerprint(db, ["later"])["tables"]) == ["app.later"]  # the caller's search_path
    row = db.execute("SELECT gcos.fingerprint_at(%s, %s, %s)", (["later"], ["gcos"], "public")).fetchone()
    assert row is not None and list(row[0]["tables"]) == ["public.later"]  # or the one the kernel gives
    db.execute("RESET search_path")
    assert fingerprint(db, ["app.later"])["tables"]["app.later"]["rows"] == 2


def test_sequence_state_is_residue_not_hash(db: Conn) -> None:
    db.execute("CREATE TABLE t (id bigserial, a int); CREATE SEQUENCE s; CREATE SEQUENCE untouched")
    db.execute("CREATE SEQUENCE top MAXVALUE 9223372036854775807 START 9223372036854775807")
    before = fingerprint(db)
    assert before["sequences"] == {  # the value nextval returns next, as text
        "public.s": "1",
        "public.t_id_seq": "1",
        "public.untouched": "1",
        "public.top": "9223372036854775807",
    }
    db.execute("SELECT nextval('s'), nextval('s'), nextval('t_id_seq'), nextval('top')")
    after = fingerprint(db)
    assert after["sequences"] == {
        "public.s": "3",
        "public.t_id_seq": "2",
        "public.untouched": "1",
        "public.top": "9223372036854775808",  # past bigint: computed in numeric
    }
    assert (after["hash"], after["schema_hash"]) == (before["hash"], before["schema_hash"])
    assert differences(db, before, after) == set()  # the kernel reports residue apart, never as a difference
    db.execute("SELECT setval('s', 10, false), setval('untouched', 9, true)")  # both return 10 next
    states = fingerprint(db)["sequences"]
    assert (states["public.s"], states["public.untouched"]) == ("10", "10")


def test_statistics_and_storage_churn_change_nothing(db: Conn) -> None:
    db.execute(
        "CREATE TABLE t (id serial PRIMARY KEY, a int CHECK (a >= 0), b text DEFAULT 'x');"
        "CREATE INDEX t_a_idx ON t (a) WHERE a > 10;"
        "INSERT INTO t (a) SELECT g FROM generate_series(1, 2000) AS g;"
        "CREATE MATERIALIZED VIEW mv AS SELECT a FROM t WHERE a < 100"
    )
    before = fingerprint(db, ["t"])
    for statement in (
        "ANALYZE",
        "VACUUM",
        "VACUUM (FULL, ANALYZE) t",
        "CLUSTER t USING t_pkey",
        "REINDEX TABLE t",
        "REFRESH MATERIALIZED VIEW mv",
        "ANALYZE t",
    ):
        db.execute(statement)
    after = fingerprint(db, ["t"])
    assert differences(db, before, after) == set()
    assert after == before


def test_drop_and_create_of_an_identical_table_gives_the_same_fingerprint(db: Conn) -> None:
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
    db.execute(ddl)
    before = fingerprint(db, ["t"])
    db.execute("DROP VIEW v; DROP TABLE t; DROP TABLE parent")
    db.execute(ddl)
    after = fingerprint(db, ["t"])
    assert differences(db, before, after) == set()
    assert after == before  # the sequences too


def test_grant_then_revoke_leaves_no_trace(db: Conn) -> None:
    db.execute("CREATE TABLE t (a int); CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'")
    before = fingerprint(db)
    db.execute("GRANT SELECT ON t TO PUBLIC; REVOKE SELECT ON t FROM PUBLIC")
    db.execute("REVOKE EXECUTE ON FUNCTION f() FROM PUBLIC; GRANT EXECUTE ON FUNCTION f() TO PUBLIC")
    assert fingerprint(db) == before


def test_two_fingerprints_in_a_row_are_equal(db: Conn) -> None:
    db.execute(FK_SETUP + TRIGGER_SETUP + "CREATE TYPE mood AS ENUM ('a', 'b'); CREATE VIEW v AS SELECT 1 AS one")
    first = fingerprint(db, ["p", "c"])
    assert fingerprint(db, ["p", "c"]) == first
    assert first["format_version"] == 1 and first["schema"].keys() == set(CATEGORIES)


def test_the_gcos_schema_and_excluded_schemas_are_left_out(db: Conn) -> None:
    before = fingerprint(db)
    assert list(before["schema"]["schema"]) == ["public"]  # gcos is installed here, and left out
    assert "gcos" in fingerprint(db, exclude=())["schema"]["schema"]  # nothing excluded: gcos itself is seen
    db.execute("CREATE SCHEMA extra; CREATE TABLE extra.x (a int)")
    assert fingerprint(db, exclude=("gcos", "extra")) == before
    assert differences(db, before, fingerprint(db)) >= {("schema", "extra", "added"), ("relation", "extra.x", "added")}


ODD_NAMES = (
    'CREATE SCHEMA "Grüße"',
    'CREATE TABLE "Grüße"."naïve ""quoted"" \\ name" ("a\nb" int, "tab\there" text, "\x01ctl" int)',
    'CREATE TABLE "\U0001f642 smile" (a int)',  # outside the BMP: a surrogate pair in UTF-16
    'CREATE TABLE "\ue000 private" (a int)',  # U+E000 sorts after the pair in UTF-16, before it by code point
    'CREATE TABLE "\uffff last" (a int)',
    'CREATE TABLE "\U0010ffff max" (a int)',
    'CREATE TABLE "\U0010ffff\U0010ffff" (a int)',  # U+10FFFF: the sort key's own escape character
    'CREATE TABLE "\U00010000\ue000" (a int)',
    'CREATE TABLE "\U00010000" (a int)',
    'CREATE TABLE plain ("\U0001f642" int, "\ue000" int, "z" int, "naïve" int)',
    """COMMENT ON TABLE plain IS E'line\\nbreak "quoted" \\\\ \\x01'""",
)


def test_hashes_are_rfc8785_content_hashes_an_auditor_can_recompute(db: Conn) -> None:
    """schema_hash is content_hash(schema) and hash is content_hash({format_version, schema_hash, tables}),
    even with non-ASCII, control and astral characters, where RFC 8785 orders keys by UTF-16 code units."""

    def recomputed(fp: dict[str, Any]) -> dict[str, Any]:
        content_hash(fp)  # the whole value is RFC 8785 JSON: no floats, no big integers
        assert fp["schema_hash"] == content_hash(fp["schema"])
        head = {"format_version": fp["format_version"], "schema_hash": fp["schema_hash"], "tables": fp["tables"]}
        assert fp["hash"] == content_hash(head)
        return fp

    for statement in ODD_NAMES:
        db.execute(statement)
    odd = '"Odd ""Name"", with, commas"'
    db.execute(f"""CREATE TABLE {odd} ("Grüße \\ 🙂" text DEFAULT E'tab\\there')""")
    watch = [odd, '"\U0001f642 smile"', '"\ue000 private"', '"Grüße"."naïve ""quoted"" \\ name"']
    fp = recomputed(fingerprint(db, watch))
    assert f'public.{odd}."Grüße \\ 🙂"' in fp["schema"]["column"]
    assert len(fp["tables"]) == 4 and fp["missing"] == []
    ascii_only = recomputed(fingerprint(db, exclude=("gcos", "public", "Grüße")))  # no astral key: the fast path
    assert ascii_only["schema"]["schema"] == {}
    db.execute(f"""ALTER TABLE {odd} ALTER "Grüße \\ 🙂" SET DEFAULT 'x'""")
    assert differences(db, fp, fingerprint(db, watch)) == {("column", f'public.{odd}."Grüße \\ 🙂"', "changed")}


@pytest.fixture
def world_conn(world_dsn: str, gcos_installed: None) -> Iterator[Conn]:
    with psycopg.connect(world_dsn, autocommit=True) as connection:
        yield connection


def test_reference_world_fingerprint_is_stable_and_quick(world_conn: Conn) -> None:
    watch = ["birth_registry", "measurement_registry"]
    start = time.perf_counter()
    first = fingerprint(world_conn, watch)
    elapsed = time.perf_counter() - start
    assert elapsed < 15, f"fingerprint of the reference world took {elapsed:.1f} s"
    assert first["tables"]["public.birth_registry"]["rows"] == 1_043_000
    assert first["tables"]["public.measurement_registry"]["rows"] == 140
    assert first["schema"]["relation"].keys() >= {"public.birth_registry", "public.reference_world_baseline"}
    world_conn.execute("ANALYZE")
    assert fingerprint(world_conn, watch) == first
