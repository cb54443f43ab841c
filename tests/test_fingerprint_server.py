"""How the database computes the fingerprint (gcos/sql/005_fingerprint.sql): in the caller's snapshot and
transaction, with the caller's rights, whatever the caller's session settings, on every object kind the
server has, from the catalog queries ``gcos install`` loaded (refused where they differ from the package's).

Real PostgreSQL (18 embedded; set GCOS_TEST_DSN for another, e.g. 15), real roles, no mocks.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from conftest import MakeRole, fingerprint
from psycopg import errors as pg_errors
from psycopg import pq, sql
from test_fingerprint import CASES

from gcos import fingerprint as fingerprint_mod
from gcos import install as install_mod
from gcos import ledger
from gcos.errors import SpecError
from gcos.install import fingerprint_queries, install, require_installed

Conn = psycopg.Connection[Any]


@pytest.fixture
def gconn(conn: Conn, gcos_installed: None) -> Conn:
    """This test's fresh database with gcos installed (autocommit superuser connection)."""
    return conn


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
CREATE INDEX base_c_idx ON base (c) INCLUDE (n) WHERE n > 0;
COMMENT ON TABLE base IS E'tab\there, quote " and \\ and \x01 control';
CREATE COLLATION kinds.posix (provider = libc, locale = 'POSIX');
CREATE FUNCTION pair_text(pair) RETURNS text LANGUAGE sql IMMUTABLE AS 'SELECT $1::text';
CREATE CAST (pair AS text) WITH FUNCTION pair_text(pair);
CREATE OPERATOR kinds.=== (LEFTARG = int, RIGHTARG = int, FUNCTION = add2);
CREATE TEXT SEARCH CONFIGURATION kinds.plain (COPY = pg_catalog.simple);
CREATE PUBLICATION kinds_pub FOR TABLE base;
RESET search_path;
"""


def test_every_object_kind_this_server_has(gconn: Conn) -> None:
    """Every case of test_fingerprint (one schema each) and more kinds: every category's query runs on this
    server's catalog (PostgreSQL 14 to 18: ``fingerprint.query`` adapts columns newer than 14) and finds them."""
    for i, (_, setup, change, _expected) in enumerate(CASES):
        gconn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(f"case_{i}")))
        gconn.execute(sql.SQL("SET search_path = {}").format(sql.Identifier(f"case_{i}")))
        if setup:
            gconn.execute(setup)
        gconn.execute(change)
    gconn.execute("RESET search_path")
    gconn.execute(EXTRA_KINDS)
    database = gconn.execute("SELECT current_database()").fetchone()
    assert database is not None
    gconn.execute(sql.SQL("ALTER DATABASE {} SET work_mem = '8MB'").format(sql.Identifier(database[0])))
    data = fingerprint(gconn, ["kinds.base", "kinds.child"])
    counted = {category: len(objects) for category, objects in data["schema"].items()}
    assert counted.keys() == set(fingerprint_mod.CATEGORIES) and all(counted.values()), counted
    assert data["schema"]["relation"].keys() >= {"kinds.ft", "kinds.mv", "kinds.scratch", "kinds.child"}
    assert data["schema"]["function"].keys() >= {"kinds.total(integer)", "kinds.nop()", "kinds.add2(integer, integer)"}


def test_older_servers_read_newer_catalog_columns_as_null() -> None:
    assert "i.indnullsnotdistinct" in fingerprint_mod.query("index", 150000)
    on_14 = fingerprint_mod.query("index", 140000)
    assert "i.indnullsnotdistinct" not in on_14 and "NULL::boolean" in on_14


def test_inside_a_transaction_it_sees_uncommitted_ddl_and_leaves_the_transaction_alone(gconn: Conn) -> None:
    gconn.execute("CREATE TABLE t (a int)")
    committed = fingerprint(gconn, ["t"])
    with gconn.transaction(force_rollback=True):
        gconn.execute("SET LOCAL search_path = public")
        gconn.execute("SET LOCAL datestyle = 'SQL, DMY'")
        gconn.execute("ALTER TABLE t ADD COLUMN b date; INSERT INTO t VALUES (1, '2024-02-03')")
        gconn.execute("CREATE INDEX i ON t (b)")
        inside = fingerprint(gconn, ["t"])
        assert "public.t.b" in inside["schema"]["column"] and "public.i" in inside["schema"]["index"]
        assert inside["tables"]["public.t"]["rows"] == 1 and inside["hash"] != committed["hash"]
        row = gconn.execute(
            "SELECT current_setting('search_path'), current_setting('datestyle'), current_setting('row_security'),"
            " current_setting('join_collapse_limit')"
        ).fetchone()
        assert row == ("public", "SQL, DMY", "on", "8")  # the function's settings did not leak
        assert gconn.execute("SELECT count(*) FROM t").fetchone() == (1,)
        assert gconn.info.transaction_status == pq.TransactionStatus.INTRANS
    assert fingerprint(gconn, ["t"]) == committed


def test_one_snapshot_the_callers(gconn: Conn, dsn: str) -> None:
    gconn.execute("CREATE TABLE t (a int)")
    with psycopg.connect(dsn, autocommit=True) as other:
        gconn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        try:
            first = fingerprint(gconn, ["t"])
            other.execute("INSERT INTO t VALUES (1); CREATE TABLE later (a int)")
            assert fingerprint(gconn, ["t"]) == first  # the transaction's snapshot, not the latest
        finally:
            gconn.execute("ROLLBACK")
    assert fingerprint(gconn, ["t"])["tables"]["public.t"]["rows"] == 1


def test_the_callers_session_settings_change_nothing(gconn: Conn) -> None:
    gconn.execute("CREATE SCHEMA app; CREATE TYPE app.mood AS ENUM ('a'); CREATE SEQUENCE app.s")
    gconn.execute("CREATE TABLE app.u (m app.mood, n bigint DEFAULT nextval('app.s'))")
    gconn.execute("CREATE TABLE t (d date, ts timestamptz, f float8, b bytea, i interval, m money)")
    gconn.execute("INSERT INTO t VALUES ('2024-01-02', '2024-01-02 03:04:05+00', 0.1, '\\x00ff', '1 day', 12.5)")
    plain = fingerprint(gconn, ["t", "app.u"])
    gconn.execute(
        "SET datestyle = 'SQL, DMY'; SET timezone = 'Asia/Kolkata'; SET extra_float_digits = 3;"
        "SET bytea_output = 'escape'; SET intervalstyle = 'iso_8601'; SET quote_all_identifiers = on;"
        "SET search_path = pg_temp, app, public"  # app.mood would deparse unqualified under the caller's path
    )
    assert fingerprint(gconn, ["t", "u"]) == plain
    assert gconn.execute("SELECT current_setting('timezone'), current_setting('search_path')").fetchone() == (
        "Asia/Kolkata",
        '"pg_temp", "app", "public"',  # quote_all_identifiers = on, still the caller's
    )


def test_a_locked_watched_table_fails_within_lock_timeout_and_leaves_the_session_usable(gconn: Conn, dsn: str) -> None:
    gconn.execute("CREATE TABLE t (a int)")
    with psycopg.connect(dsn, autocommit=True) as other:
        other.execute("BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
        gconn.execute("SET lock_timeout = '200ms'")
        with pytest.raises(pg_errors.LockNotAvailable):
            fingerprint(gconn, ["t"])
        assert gconn.info.transaction_status == pq.TransactionStatus.IDLE
        other.execute("ROLLBACK")
    assert fingerprint(gconn, ["t"])["tables"]["public.t"]["rows"] == 0


def test_as_non_superuser_roles(gconn: Conn, make_role: MakeRole) -> None:
    gconn.execute("CREATE TABLE t (id serial, a int); INSERT INTO t (a) VALUES (1); SELECT nextval('t_id_seq')")
    gconn.execute("CREATE VIEW v AS SELECT a FROM t; CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'")
    gconn.execute("CREATE TABLE open_t (a int); GRANT SELECT ON open_t TO PUBLIC")
    gconn.execute("CREATE TABLE guarded (a int); ALTER TABLE guarded ENABLE ROW LEVEL SECURITY")
    gconn.execute("CREATE POLICY only_one ON guarded USING (a = 1); GRANT SELECT ON guarded TO PUBLIC")
    operator = make_role("op", grant=("operator",))
    auditor = make_role("aud", grant=("auditor",))
    admin = make_role("adm", grant=("admin",))
    sovereign = make_role("sov", grant=("sovereign",))
    nobody = make_role("nobody")
    as_owner = fingerprint(gconn, ["open_t"])
    for role in (operator, auditor, admin):
        with role.connect() as session:
            mine = fingerprint(session, ["open_t", "nope"])
            assert (mine["hash"], mine["schema_hash"]) == (as_owner["hash"], as_owner["schema_hash"])
            assert mine["sequences"] == {} and mine["missing"] == ["nope"]  # an unreadable sequence: not reported
            for table in ("t", "guarded"):  # unreadable, or readable only in part (row_security off)
                with pytest.raises(pg_errors.InsufficientPrivilege):
                    fingerprint(session, [table])
    for role in (sovereign, nobody):
        with role.connect() as session, pytest.raises(pg_errors.InsufficientPrivilege):
            fingerprint(session)
    with operator.connect() as session:
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


def test_the_loaded_queries_are_the_packages(gconn: Conn) -> None:
    loaded = dict(gconn.execute("SELECT name, query FROM gcos.fingerprint_queries").fetchall())
    assert loaded == fingerprint_queries(gconn.info.server_version)
    assert all("%(" not in text for text in loaded.values())
    assert require_installed(gconn) == install_mod.migrations()[-1].version
    reference = fingerprint(gconn)

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
        fingerprint(gconn)
    with pytest.raises(SpecError, match="gcos install"):
        require_installed(gconn)
    install(gconn)
    assert fingerprint(gconn) == reference
