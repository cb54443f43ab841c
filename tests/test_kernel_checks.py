"""The kernel's judgement in SQL (gcos/sql/009_kernel_checks.sql): checks, expectations, stop conditions,
the observed footprint and the allow list enforced on what actually changed (issue 9 items 2 and 4)."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
from conftest import fingerprint
from psycopg import errors
from psycopg.types.json import Jsonb

from gcos.install import install
from gcos.spec import Expectation

WORLD = """
CREATE TABLE evo (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, note text);
CREATE TABLE reg (code text PRIMARY KEY, active boolean NOT NULL DEFAULT false);
CREATE TABLE other (id int PRIMARY KEY, v text);
CREATE SEQUENCE lonely;
INSERT INTO evo (note) VALUES ('baseline');
INSERT INTO reg VALUES ('a', false), ('b', true);
INSERT INTO other VALUES (1, 'x');
"""


@pytest.fixture
def db(conn: psycopg.Connection[Any], gcos_installed: None) -> psycopg.Connection[Any]:
    install(conn)
    conn.execute(WORLD)
    return conn


def _value(conn: psycopg.Connection[Any], query: str, *params: Any) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def footprint_of(conn: psycopg.Connection[Any], mutation: str) -> dict[str, Any]:
    """Run `mutation` in a transaction that is rolled back; the footprint the kernel would see."""
    with conn.transaction(force_rollback=True):
        before = fingerprint(conn)
        probe_before = _value(conn, "SELECT gcos.footprint_probe()")
        conn.execute(mutation)
        after = fingerprint(conn)
        probe_after = _value(conn, "SELECT gcos.footprint_probe()")
        result: dict[str, Any] = _value(
            conn,
            "SELECT gcos.footprint(%s, %s, %s, %s)",
            Jsonb(before),
            Jsonb(after),
            Jsonb(probe_before),
            Jsonb(probe_after),
        )
    return result


def violations(conn: psycopg.Connection[Any], allow: list[dict[str, Any]], mutation: str) -> list[dict[str, Any]]:
    footprint = footprint_of(conn, mutation)
    found: list[dict[str, Any]] = _value(conn, "SELECT gcos.allow_violations(%s, %s)", Jsonb(allow), Jsonb(footprint))
    return found


def _pairs(found: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {(v["category"], v["identity"], v["change"]) for v in found}


# --------------------------------------------------------------------------- expectations


VALUES: list[Any] = [1, 1.0, 1.5, 0, 140, 1000000, True, False, None, "1", "x", "draft"]
EXPECTS: list[Any] = [
    1,
    True,
    False,
    "1",
    None,
    "x",
    1.5,
    {"eq": 140},
    {"ne": 1},
    {"ne": None},
    {"gt": 0},
    {"gte": 1000000},
    {"lt": 1},
    {"lte": 0},
    {"in": [1, "x", None]},
    {"in": [True]},
    {"between": [1, 2]},
]


@pytest.mark.parametrize("expect", EXPECTS, ids=json.dumps)
def test_expect_holds_agrees_with_the_spec_model(db: psycopg.Connection[Any], expect: Any) -> None:
    want = Expectation.parse(expect)
    for actual in VALUES:
        got = _value(db, "SELECT gcos.expect_holds(%s, %s)", Jsonb(actual), Jsonb(expect))
        assert got is want.holds(actual), (actual, expect)


def test_an_unknown_expect_operator_is_bad_input(db: psycopg.Connection[Any]) -> None:
    with pytest.raises(errors.InvalidParameterValue):
        db.execute("SELECT gcos.expect_holds('1', '{\"like\": 1}')")


# --------------------------------------------------------------------------- checks


def test_a_check_reads_one_value_in_the_callers_transaction(db: psycopg.Connection[Any]) -> None:
    with db.transaction(force_rollback=True):
        db.execute("INSERT INTO reg VALUES ('c', true)")
        row = db.execute(
            "SELECT value, rows, columns, error_state FROM gcos.check_value(%s)",
            ("SELECT count(*) FROM reg WHERE active; -- trailing comment",),
        ).fetchone()
        assert row == (2, 1, 1, None)
        assert _value(db, "SHOW transaction_read_only") == "off"  # the check's READ ONLY did not leak
    result = _value(db, "SELECT gcos.evaluate_check(%s)", Jsonb({"name": "n", "sql": "SELECT 1", "expect": True}))
    assert result["ok"] is False and result["actual"] == 1  # 1 is not true


@pytest.mark.parametrize(
    "query",
    [
        "SELECT nextval('lonely')",
        "SELECT setval('lonely', 50)",
        "SELECT pg_catalog.setval('public.lonely'::regclass, 50, false)",
    ],
)
def test_a_check_cannot_move_a_sequence(db: psycopg.Connection[Any], query: str) -> None:
    before = _value(db, "SELECT last_value FROM lonely")
    with pytest.raises(errors.ReadOnlySqlTransaction):
        db.execute("SELECT * FROM gcos.check_value(%s)", (query,))
    assert _value(db, "SELECT last_value FROM lonely") == before


def test_a_check_cannot_write_through_a_function(db: psycopg.Connection[Any]) -> None:
    db.execute(
        "CREATE FUNCTION sneaky() RETURNS bigint LANGUAGE sql AS "
        "$$ INSERT INTO other VALUES (99, 'w'); SELECT count(*) FROM other $$"
    )
    with pytest.raises(errors.ReadOnlySqlTransaction):
        db.execute("SELECT * FROM gcos.check_value('SELECT sneaky()')")
    assert _value(db, "SELECT count(*) FROM other") == 1


def test_a_check_naming_what_the_world_lacks_is_a_mismatch_not_an_error(db: psycopg.Connection[Any]) -> None:
    result = _value(
        db, "SELECT gcos.evaluate_check(%s)", Jsonb({"name": "n", "sql": "SELECT count(*) FROM nope", "expect": 0})
    )
    assert result["ok"] is False and result["error"]


def test_a_check_must_return_one_row_of_one_column(db: psycopg.Connection[Any]) -> None:
    for query in ("SELECT code FROM reg", "SELECT 1 AS a, 2 AS a", "SELECT 1 WHERE false"):
        with pytest.raises(errors.InvalidParameterValue):
            db.execute("SELECT * FROM gcos.check_value(%s)", (query,))


# --------------------------------------------------------------------------- stop conditions


def _stop(conn: psycopg.Connection[Any], stop: dict[str, Any], new_tables: int = 0) -> tuple[Any, ...]:
    row = conn.execute("SELECT name, kind, holds FROM gcos.stop_holds(%s, %s)", (Jsonb(stop), new_tables)).fetchone()
    assert row is not None
    return tuple(row)


def test_stop_conditions_of_every_form(db: psycopg.Connection[Any]) -> None:
    assert _stop(db, {"name": "active", "sql": "SELECT count(*) > 0 FROM reg WHERE active"}) == ("active", "sql", True)
    assert _stop(db, {"name": "none", "sql": "SELECT count(*) > 5 FROM reg"})[2] is False
    assert _stop(db, {"name": "missing", "sql": "SELECT count(*) > 0 FROM nope"})[2] is True  # fail closed
    assert _stop(db, {"forbid_columns": ["Active", "checked"]}) == (
        "no column named active, checked",
        "forbid_columns",
        True,
    )
    assert _stop(db, {"forbid_columns": ["checked"]})[2] is False
    assert _stop(db, {"name": "apply", "forbid_objects": ["lonely"]}) == ("apply", "forbid_objects", True)
    assert _stop(db, {"max_new_tables": 5}, new_tables=5)[2] is False
    assert _stop(db, {"max_new_tables": 5}, new_tables=6) == ("at most 5 new tables", "max_new_tables", True)


# --------------------------------------------------------------------------- footprint and allow list


STEP_ONE = """
CREATE TABLE ruleset (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, status text NOT NULL DEFAULT 'draft');
CREATE INDEX ruleset_status ON ruleset (status);
COMMENT ON TABLE ruleset IS 'draft rules';
INSERT INTO ruleset (status) VALUES ('draft');
INSERT INTO evo (note) VALUES ('ruleset created');
"""
STEP_ONE_ALLOW: list[dict[str, Any]] = [
    {"create_table": "ruleset"},
    {"comment": "ruleset"},
    {"insert": ["ruleset", "evo"]},
]


def test_the_footprint_names_new_tables_and_rows(db: psycopg.Connection[Any]) -> None:
    found = footprint_of(db, STEP_ONE + "UPDATE reg SET active = true WHERE code = 'a'; DELETE FROM other;")
    assert found["new_tables"] == ["public.ruleset"]
    assert found["rows"] == {
        "public.evo": {"inserted": 1, "updated": 0, "deleted": 0},
        "public.ruleset": {"inserted": 1, "updated": 0, "deleted": 0},
        "public.reg": {"inserted": 0, "updated": 1, "deleted": 0},
        "public.other": {"inserted": 0, "updated": 0, "deleted": 1},
    }
    added = {(o["category"], o["identity"]) for o in found["objects"] if o["change"] == "added"}
    assert {
        ("relation", "public.ruleset"),
        ("index", "public.ruleset_status"),
        ("column", "public.ruleset.status"),
    } <= added


def test_a_step_within_its_allow_list_has_no_violation(db: psycopg.Connection[Any]) -> None:
    assert violations(db, STEP_ONE_ALLOW, STEP_ONE) == []
    qualified = [{"create_table": "public.ruleset"}, {"comment": "ruleset"}, {"insert": ["public.ruleset", "EVO"]}]
    assert violations(db, qualified, STEP_ONE) == []


def test_rows_written_outside_the_allow_list_are_violations(db: psycopg.Connection[Any]) -> None:
    found = violations(
        db,
        STEP_ONE_ALLOW,
        STEP_ONE + "UPDATE reg SET active = true; DELETE FROM other; INSERT INTO other VALUES (2, 'y');",
    )
    assert _pairs(found) == {
        ("rows", "public.reg", "updated"),
        ("rows", "public.other", "deleted"),
        ("rows", "public.other", "inserted"),
    }
    assert _pairs(violations(db, [{"create_table": "ruleset"}, {"comment": "ruleset"}], STEP_ONE)) == {
        ("rows", "public.ruleset", "inserted"),
        ("rows", "public.evo", "inserted"),
    }


def test_schema_changes_outside_the_allow_list_are_violations(db: psycopg.Connection[Any]) -> None:
    cases = {
        "ALTER TABLE reg ADD COLUMN checked boolean": {("column", "public.reg.checked", "added")},
        "ALTER TABLE reg ALTER COLUMN active DROP DEFAULT": {("column", "public.reg.active", "changed")},
        "CREATE INDEX reg_active ON reg (active)": {("index", "public.reg_active", "added")},
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'": {("function", "public.f()", "added")},
        "CREATE SEQUENCE s2": {("sequence", "public.s2", "added")},
        "CREATE SCHEMA side": {("schema", "side", "added")},
        "GRANT SELECT ON reg TO PUBLIC": {("relation", "public.reg", "changed")},
        "DROP TABLE other": {("relation", "public.other", "removed")},
        "CREATE VIEW v AS SELECT code FROM reg": {("relation", "public.v", "added")},
        "CREATE TYPE mood AS ENUM ('ok')": {("type", "public.mood", "added")},
    }
    for mutation, expected in cases.items():
        found = _pairs(violations(db, STEP_ONE_ALLOW, mutation))
        assert expected <= found, mutation


def test_the_allow_kinds_permit_what_they_name(db: psycopg.Connection[Any]) -> None:
    cases: list[tuple[list[dict[str, Any]], str]] = [
        ([{"alter_table": "reg"}], "ALTER TABLE reg ADD COLUMN note text"),
        ([{"create_index": "reg_active"}], "CREATE INDEX reg_active ON reg (active)"),
        ([{"create_index": "reg"}], "CREATE INDEX reg_active ON reg (active)"),  # by its table, as sqlcheck
        ([{"create_function": "f"}], "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'"),
        ([{"create_view": "v"}], "CREATE VIEW v AS SELECT code FROM reg"),
        ([{"create_type": "mood"}], "CREATE TYPE mood AS ENUM ('ok')"),
        ([{"drop_table": "other"}], "DROP TABLE other"),
        ([{"comment": "reg"}], "COMMENT ON TABLE reg IS 'registry'; COMMENT ON COLUMN reg.code IS 'the code'"),
        ([{"update": "reg"}], "UPDATE reg SET active = NOT active"),
        ([{"delete": "other"}], "TRUNCATE other"),
        ([{"insert": "evo"}], "INSERT INTO evo (note) VALUES ('residue only')"),  # nextval is residue
    ]
    for allow, mutation in cases:
        assert violations(db, allow, mutation) == [], mutation


def test_a_truncate_is_seen_though_no_row_counter_moves(db: psycopg.Connection[Any]) -> None:
    found = violations(db, [{"update": "other"}], "TRUNCATE other")
    assert ("storage", "public.other", "rewritten") in _pairs(found)


def test_a_comment_allowance_does_not_cover_other_objects(db: psycopg.Connection[Any]) -> None:
    found = violations(db, [{"comment": "reg"}], "COMMENT ON TABLE other IS 'x'; ALTER TABLE reg ADD COLUMN c int")
    assert _pairs(found) == {("relation", "public.other", "changed"), ("column", "public.reg.c", "added")}


def test_a_create_index_allowance_by_index_name_does_not_cover_another_index(db: psycopg.Connection[Any]) -> None:
    found = violations(db, [{"create_index": "reg_active"}], "CREATE INDEX reg_other ON reg (code, active)")
    assert _pairs(found) == {("index", "public.reg_other", "added")}


def test_a_check_is_one_statement(db: psycopg.Connection[Any]) -> None:
    with pytest.raises(errors.InvalidCursorDefinition):
        db.execute("SELECT * FROM gcos.check_value(%s)", ("SELECT 1; CREATE TABLE evil ()",))
    assert _value(db, "SELECT to_regclass('evil')") is None
