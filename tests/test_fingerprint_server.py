"""The fingerprint computed inside PostgreSQL (gcos/sql/005_fingerprint.sql): ``gcos.fingerprint(watch,
exclude)`` returns exactly ``take(conn, watch=..., exclude_schemas=...).to_json()`` for the same state.

Every parity check also feeds the server's JSON to ``Fingerprint.from_json``, which recomputes both hashes
in Python (RFC 8785 via the rfc8785 package) and must find them equal. Real PostgreSQL, real roles.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
import pytest
from conftest import MakeRole
from psycopg import errors as pg_errors
from psycopg import pq, sql
from test_fingerprint import CASES

from gcos import install as install_mod
from gcos import ledger
from gcos.errors import SpecError
from gcos.fingerprint import _SETTINGS, FORMAT_VERSION, Fingerprint, take
from gcos.install import fingerprint_queries, install, require_installed

Conn = psycopg.Connection[Any]


@pytest.fixture
def gconn(conn: Conn, gcos_installed: None) -> Conn:
    """This test's fresh database with gcos installed (autocommit superuser connection)."""
    install(conn)
    return conn


def server(conn: Conn, watch: Sequence[str] = (), exclude: Sequence[str] = ("gcos",)) -> dict[str, Any]:
    row = conn.execute("SELECT gcos.fingerprint(%s::text[], %s::text[])", (list(watch), list(exclude))).fetchone()
    assert row is not None
    return dict(row[0])


def parity(conn: Conn, watch: Sequence[str] = (), exclude: Sequence[str] = ("gcos",)) -> dict[str, Any]:
    """Assert the server's fingerprint is take's, byte for byte in its hashes, and return it."""
    expected = take(conn, watch=watch, exclude_schemas=exclude)
    data = server(conn, watch, exclude)
    assert data == expected.to_json()
    assert Fingerprint.from_json(data) == expected
    return data


def test_empty_database(gconn: Conn) -> None:
    data = parity(gconn)
    assert data["format_version"] == FORMAT_VERSION
    assert data["schema"]["schema"] == {"public": data["schema"]["schema"]["public"]}
    assert (data["tables"], data["sequences"], data["missing"]) == ({}, {}, [])
    assert "gcos" not in data["schema"]["schema"]
    assert "gcos" in parity(gconn, exclude=())["schema"]["schema"]  # nothing excluded: gcos itself is seen


EXTRA_KINDS = r"""
CREATE SCHEMA kinds;
SET search_path = kinds;
CREATE TABLE base (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, r int4range, n numeric(10, 2) DEFAULT 1.5,
                   g int GENERATED ALWAYS AS (id * 2) STORED, c text COLLATE "C",
                   EXCLUDE USING gist (r WITH &&));
CREATE TABLE child (extra text) INHERITS (base);
CREATE UNLOGGED TABLE scratch (a int);
CREATE MATERIALIZED VIEW mv AS SELECT id FROM base WITH NO DATA;
CREATE FOREIGN DATA WRAPPER fdw_dummy;
CREATE SERVER srv FOREIGN DATA WRAPPER fdw_dummy;
CREATE FOREIGN TABLE ft (a int OPTIONS (column_name 'x')) SERVER srv OPTIONS (table_name 'y');
CREATE FUNCTION add2(int, int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT $1 + $2';
CREATE AGGREGATE total(int) (SFUNC = add2, STYPE = int, INITCOND = '0');
CREATE PROCEDURE nop() LANGUAGE sql AS 'SELECT 1';
CREATE DOMAIN short_text AS text DEFAULT 'x' NOT NULL CHECK (length(VALUE) < 10);
CREATE TYPE pair AS (a int, b text);
CREATE STATISTICS base_stats (ndistinct) ON id, n FROM base;
CREATE POLICY p ON base FOR SELECT TO PUBLIC USING (id > 0);
ALTER TABLE base ENABLE ROW LEVEL SECURITY;
CREATE SEQUENCE fresh;
CREATE SEQUENCE used START 5 INCREMENT 3;
SELECT nextval('used'), nextval('used');
CREATE SEQUENCE rewound;
SELECT setval('rewound', 42, false);
CREATE SEQUENCE top MAXVALUE 9223372036854775807 START 9223372036854775807;
SELECT nextval('top');
COMMENT ON TABLE base IS E'tab\there, quote " and \\ and \x01 control';
RESET search_path;
"""


def test_many_object_kinds(gconn: Conn) -> None:
    for i, (_, setup, change, _expected) in enumerate(CASES):  # every case of test_fingerprint, one schema each
        gconn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(f"case_{i}")))
        gconn.execute(sql.SQL("SET search_path = {}").format(sql.Identifier(f"case_{i}")))
        if setup:
            gconn.execute(setup)
        gconn.execute(change)
    gconn.execute("RESET search_path")
    gconn.execute(EXTRA_KINDS)
    data = parity(gconn, watch=["kinds.base", "kinds.mv_missing"])
    counted = {category: len(objects) for category, objects in data["schema"].items()}
    assert all(counted[c] > 0 for c in counted), counted  # every category has objects
    assert data["sequences"]["kinds.top"] == "9223372036854775808"  # past bigint: computed in numeric
    assert data["sequences"]["kinds.rewound"] == "42"
    assert data["sequences"]["kinds.used"] == "11" and data["sequences"]["kinds.fresh"] == "1"


def test_watched_tables_missing_and_malformed_names(gconn: Conn) -> None:
    gconn.execute("CREATE SCHEMA app; CREATE TABLE app.t (a int, b text); INSERT INTO app.t VALUES (1, 'x'), (2, NULL)")
    odd = '"Odd ""Name"""'
    gconn.execute("CREATE TABLE public.t (t int); INSERT INTO public.t VALUES (7); CREATE TABLE empty (a int)")
    gconn.execute(f"CREATE TABLE {odd} (a int)")
    watch = ["t", "public.t", "app.t", "nope", "a.b.c.d", "otherdb.public.t", "nope", odd, "empty"]
    data = parity(gconn, watch=watch)
    assert set(data["tables"]) == {"public.t", "app.t", f"public.{odd}", "public.empty"}
    assert data["missing"] == ["nope", "a.b.c.d", "otherdb.public.t"]
    assert data["tables"]["app.t"]["rows"] == 2 and data["tables"]["public.empty"]["rows"] == 0

    gconn.execute("SET search_path = app, public")  # names resolve with the caller's search_path
    resolved = parity(gconn, watch=["t"])
    assert list(resolved["tables"]) == ["app.t"]
    at = gconn.execute("SELECT gcos.fingerprint_at(%s, %s, %s)", (["t"], ["gcos"], "public")).fetchone()
    assert at is not None and list(at[0]["tables"]) == ["public.t"]  # or with the one given
    gconn.execute("RESET search_path")


@pytest.mark.parametrize("name", ["", '"', "a b"])
def test_a_name_to_regclass_rejects_otherwise_fails_or_passes_alike(gconn: Conn, name: str) -> None:
    try:  # PostgreSQL 15 raises invalid_name (42602) for these, 18 returns NULL: either way, both alike
        expected = take(gconn, watch=[name]).to_json()
    except psycopg.Error as exc:
        with pytest.raises(psycopg.Error) as in_server:
            server(gconn, [name])
        assert in_server.value.sqlstate == exc.sqlstate
    else:
        assert server(gconn, [name]) == expected


def test_sequences_are_residue_not_hash(gconn: Conn) -> None:
    gconn.execute("CREATE TABLE t (id bigserial, a int); CREATE SEQUENCE s; CREATE SEQUENCE untouched")
    before = parity(gconn)
    assert before["sequences"] == {"public.s": "1", "public.t_id_seq": "1", "public.untouched": "1"}
    gconn.execute("SELECT nextval('s'), nextval('s'), nextval('t_id_seq')")
    after = parity(gconn)
    assert after["sequences"] == {"public.s": "3", "public.t_id_seq": "2", "public.untouched": "1"}
    assert (after["hash"], after["schema_hash"]) == (before["hash"], before["schema_hash"])
    gconn.execute("SELECT setval('s', 10, false), setval('untouched', 9, true)")
    assert parity(gconn)["sequences"] == {"public.s": "10", "public.t_id_seq": "2", "public.untouched": "10"}


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
    'CREATE TABLE plain ("\U0001f642" int, "\ue000" int, "z" int)',
)


def test_non_ascii_astral_and_control_characters_in_identities(gconn: Conn) -> None:
    for statement in ODD_NAMES:
        gconn.execute(statement)
    watch = ['"\U0001f642 smile"', '"\ue000 private"', '"Grüße"."naïve ""quoted"" \\ name"', '"\U0010ffff max"']
    data = parity(gconn, watch=watch)
    relations = list(data["schema"]["relation"])
    assert 'public."\U0001f642 smile"' in relations and 'public."\ue000 private"' in relations
    ascii_only = parity(gconn, exclude=("gcos", "public", "Grüße"))  # no astral key: the fast path
    assert not re.search("[\U00010000-\U0010ffff]", str(ascii_only["schema"]))


def test_inside_a_transaction_it_sees_uncommitted_ddl_and_leaves_the_transaction_alone(gconn: Conn) -> None:
    gconn.execute("CREATE TABLE t (a int)")
    committed = parity(gconn, watch=["t"])
    with gconn.transaction(force_rollback=True):
        gconn.execute("SET LOCAL search_path = public")
        gconn.execute("SET LOCAL datestyle = 'SQL, DMY'")
        gconn.execute("ALTER TABLE t ADD COLUMN b date; INSERT INTO t VALUES (1, '2024-02-03')")
        gconn.execute("CREATE INDEX i ON t (b)")
        inside = parity(gconn, watch=["t"])
        assert "public.t.b" in inside["schema"]["column"] and "public.i" in inside["schema"]["index"]
        assert inside["tables"]["public.t"]["rows"] == 1 and inside["hash"] != committed["hash"]
        row = gconn.execute(
            "SELECT current_setting('search_path'), current_setting('datestyle'), current_setting('row_security'),"
            " current_setting('join_collapse_limit')"
        ).fetchone()
        assert row == ("public", "SQL, DMY", "on", "8")  # the function's settings did not leak
        assert gconn.execute("SELECT count(*) FROM t").fetchone() == (1,)
        assert gconn.info.transaction_status == pq.TransactionStatus.INTRANS
    assert server(gconn, ["t"]) == committed


def test_one_snapshot_the_callers(gconn: Conn, dsn: str) -> None:
    gconn.execute("CREATE TABLE t (a int)")
    with psycopg.connect(dsn, autocommit=True) as other:
        gconn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        try:
            first = server(gconn, ["t"])
            other.execute("INSERT INTO t VALUES (1)")
            assert server(gconn, ["t"]) == first  # the transaction's snapshot, not the latest
        finally:
            gconn.execute("ROLLBACK")
    assert server(gconn, ["t"])["tables"]["public.t"]["rows"] == 1


def test_the_callers_session_settings_change_nothing(gconn: Conn) -> None:
    gconn.execute("CREATE TABLE t (d date, ts timestamptz, f float8, b bytea, i interval, m money)")
    gconn.execute("INSERT INTO t VALUES ('2024-01-02', '2024-01-02 03:04:05+00', 0.1, '\\x00ff', '1 day', 12.5)")
    plain = parity(gconn, watch=["t"])
    gconn.execute(
        "SET datestyle = 'SQL, DMY'; SET timezone = 'Asia/Kolkata'; SET extra_float_digits = 3;"
        "SET bytea_output = 'escape'; SET intervalstyle = 'iso_8601'; SET quote_all_identifiers = on;"
        "SET search_path = pg_temp, public"
    )
    assert server(gconn, ["t"]) == plain
    assert gconn.execute("SELECT current_setting('timezone'), current_setting('search_path')").fetchone() == (
        "Asia/Kolkata",
        '"pg_temp", "public"',  # quote_all_identifiers = on, still the caller's
    )


def test_as_non_superuser_roles(gconn: Conn, make_role: MakeRole) -> None:
    gconn.execute("CREATE TABLE t (id serial, a int); INSERT INTO t (a) VALUES (1); SELECT nextval('t_id_seq')")
    gconn.execute("CREATE TABLE open_t (a int); GRANT SELECT ON open_t TO PUBLIC")
    gconn.execute("CREATE TABLE guarded (a int); ALTER TABLE guarded ENABLE ROW LEVEL SECURITY")
    gconn.execute("CREATE POLICY only_one ON guarded USING (a = 1); GRANT SELECT ON guarded TO PUBLIC")
    operator = make_role("op", grant=("operator",))
    auditor = make_role("aud", grant=("auditor",))
    admin = make_role("adm", grant=("admin",))
    sovereign = make_role("sov", grant=("sovereign",))
    nobody = make_role("nobody")
    as_owner = server(gconn)
    for role in (operator, auditor, admin):
        with role.connect() as session:
            mine = parity(session, watch=["open_t", "nope"])
            assert mine["schema_hash"] == as_owner["schema_hash"]
            assert mine["sequences"] == {}  # it may not read the sequence: not reported at all
            for table in ("t", "guarded"):  # unreadable, or readable only in part (row_security off)
                with pytest.raises(pg_errors.InsufficientPrivilege):
                    server(session, [table])
                with pytest.raises(pg_errors.InsufficientPrivilege):
                    take(session, watch=[table])
    for role in (sovereign, nobody):
        with role.connect() as session, pytest.raises(pg_errors.InsufficientPrivilege):
            server(session)
    with operator.connect() as session:
        with pytest.raises(pg_errors.InvalidParameterValue):  # bad input is 22023 for every role
            session.execute("SELECT gcos.fingerprint(NULL)")
        for statement in ("DELETE FROM gcos.fingerprint_queries", "UPDATE gcos.fingerprint_queries SET query = ''"):
            with pytest.raises(pg_errors.InsufficientPrivilege):
                session.execute(statement)
        require_installed(session)  # every role may check the loaded queries


def test_bad_arguments_are_refused(gconn: Conn) -> None:
    for call, args in (
        ("SELECT gcos.fingerprint(NULL)", ()),
        ("SELECT gcos.fingerprint('{}', NULL)", ()),
        ("SELECT gcos.fingerprint(%s::text[])", (["t", None],)),
        ("SELECT gcos.fingerprint('{}', %s::text[])", (["gcos", None],)),
        ("SELECT gcos.fingerprint_at('{}', '{}', NULL)", ()),
    ):
        with pytest.raises(pg_errors.InvalidParameterValue):
            gconn.execute(call, args)


def test_the_function_pins_takes_settings_and_format(gconn: Conn) -> None:
    row = gconn.execute(
        "SELECT proconfig, prosecdef, provolatile FROM pg_proc"
        " WHERE oid = 'gcos.fingerprint_at(text[], text[], text)'::regprocedure"
    ).fetchone()
    assert row is not None
    config, definer, volatility = row
    pinned = {c.split("=", 1)[0].lower(): c.split("=", 1)[1] for c in config}
    assert pinned == {**{k.lower(): v for k, v in _SETTINGS}, "jit": "off"}  # jit: speed only
    assert (definer, volatility) == (False, "s")  # SECURITY INVOKER, STABLE: the caller's rights and snapshot
    assert server(gconn)["format_version"] == FORMAT_VERSION


def test_the_loaded_queries_are_the_packages(gconn: Conn) -> None:
    loaded = dict(gconn.execute("SELECT name, query FROM gcos.fingerprint_queries").fetchall())
    assert loaded == fingerprint_queries(gconn.info.server_version)
    assert all("%(" not in text for text in loaded.values())
    assert require_installed(gconn) == install_mod.migrations()[-1].version

    gconn.execute(
        "UPDATE gcos.fingerprint_queries SET query = query || ' ',"
        " sha256 = encode(sha256(convert_to(query || ' ', 'UTF8')), 'hex') WHERE name = 'column'"
    )
    with pytest.raises(SpecError, match="gcos install"):
        require_installed(gconn)
    result = install(gconn)
    assert (result.applied, result.queries_reloaded, result.changed) == ([], True, True)
    entry = ledger.read_all(gconn)[-1]
    assert entry.kind == "install" and len(entry.payload["fingerprint_queries"]) == 64
    require_installed(gconn)
    assert install(gconn).changed is False

    gconn.execute("DELETE FROM gcos.fingerprint_queries")
    with pytest.raises(pg_errors.ObjectNotInPrerequisiteState):
        server(gconn)
    with pytest.raises(SpecError, match="gcos install"):
        require_installed(gconn)
    install(gconn)
    parity(gconn)


@pytest.fixture
def world_conn(world_dsn: str, gcos_installed: None) -> Iterator[Conn]:
    with psycopg.connect(world_dsn, autocommit=True) as connection:
        install(connection)
        yield connection


def test_reference_world(world_conn: Conn) -> None:
    data = parity(world_conn, watch=["birth_registry", "measurement_registry"])
    assert data["tables"]["public.birth_registry"]["rows"] == 1_043_000
