"""Round 2 attacks of session 22 on 052's stored catalog proof (the vouchers': test_attacks_s22_vouchers.py).

052: every attack here ends with what tests/test_catalog_proof_stored.py asserts: gcos.fingerprint_digests equals a
full measurement (042's gcos._fp_take) taken at the same moment, whichever way it was established. The vectors are
the ones that file does not try: roles short of a superuser (the database owner, a role with CREATE on a schema,
pg_write_all_data), a session storing the proof under odd settings, a long transaction pinning the horizon,
subtransaction overflow, sequences, large objects, another exclude list's row, a REPEATABLE READ reader after a
newer proof was stored, a step's mutation storing the proof of its half-done world, random interleavings of DDL.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from conftest import MakeRole
from psycopg import errors as pg_errors
from psycopg import sql
from test_catalog_proof_stored import SETUP, checked, digests, full, proved, server_roles
from test_kernel_rehearse import REPO, Kernel

from gcos.spec import load_project

# --------------------------------------------------------------------------- 052: who may change what


@pytest.fixture
def world(conn: psycopg.Connection[Any], gcos_installed: None) -> None:
    conn.execute(SETUP)
    # definitions whose text depends on settings (zone, date and interval style, float digits, bytea output)
    conn.execute(
        "CREATE TABLE public.styled (at timestamptz DEFAULT '2020-06-01 12:00+00', d date DEFAULT '2020-02-03',"
        " span interval DEFAULT '1 day 02:03:04', ratio float8 DEFAULT 0.1, raw bytea DEFAULT '\\x00ff',"
        " CHECK (at > '2001-02-03 04:05:06+00'), CHECK (span < '3 years'))"
    )


@pytest.fixture
def reader(conn: psycopg.Connection[Any], world: None, make_role: MakeRole) -> Iterator[psycopg.Connection[Any]]:
    role = make_role("reader", grant=("operator",))
    conn.execute(sql.SQL("ALTER ROLE {} VALID UNTIL '2031-06-01 12:00:00.25+00'").format(sql.Identifier(role.name)))
    with role.connect() as session:
        yield session


ODD_SETTINGS = (
    "SET TimeZone = 'Asia/Kathmandu'",
    "SET DateStyle = 'SQL, DMY'",
    "SET IntervalStyle = 'sql_standard'",
    "SET extra_float_digits = -15",
    "SET bytea_output = 'escape'",
    "SET search_path = pg_temp, public",
    "SET standard_conforming_strings = off",
    "SET transform_null_equals = on",
    "SET quote_all_identifiers = on",
    "SET xmloption = document",
    "SET enable_seqscan = off",
    "SET enable_hashjoin = off",
    "SET plan_cache_mode = force_generic_plan",
    "SET join_collapse_limit = 1",
    "SET work_mem = '64kB'",
)


def test_a_proof_stored_under_odd_settings_says_what_a_plain_session_measures(
    conn: psycopg.Connection[Any], reader: psycopg.Connection[Any], make_role: MakeRole
) -> None:
    """The stored schema part is measured in the storing caller's session (a definer function keeps the caller's
    settings except those it pins): an operator with odd settings stores first, a plain session takes it."""
    odd = make_role("odd", grant=("operator",))
    since = server_roles(reader)
    with odd.connect() as session:
        for statement in ODD_SETTINGS:
            session.execute(statement)
        got = session.execute("SELECT gcos.fingerprint_digests('{}')").fetchone()
        assert got is not None and got[0]["established"] == "measured"
        assert conn.execute("SELECT count(*) FROM gcos.catalog_proof").fetchone() == (1,)
    assert proved(reader, checked(reader), since)  # the odd session's row answered, and equals the measurement


def test_the_database_owner_short_of_a_superuser_hides_nothing(
    conn: psycopg.Connection[Any], reader: psycopg.Connection[Any], make_role: MakeRole
) -> None:
    """The database's owner (pg_database_owner: owns schema public, may grant CREATE on the database) changes the
    database's settings and grants, publishes, adds policies, maintains catalogs; each after a stored proof."""
    owner = make_role("dbowner")
    conn.execute(
        sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(conn.info.dbname), sql.Identifier(owner.name))
    )
    db = sql.Identifier(conn.info.dbname)
    moves = [
        sql.SQL("ALTER DATABASE {} SET work_mem = '9MB'").format(db),
        sql.SQL("GRANT CREATE ON DATABASE {} TO PUBLIC").format(db),
        sql.SQL("CREATE SCHEMA owned"),
        sql.SQL("CREATE TABLE public.mine (id integer PRIMARY KEY, who text)"),
        sql.SQL("ALTER TABLE public.mine ENABLE ROW LEVEL SECURITY"),
        sql.SQL("CREATE POLICY p ON public.mine USING (who = current_user)"),
        sql.SQL("CREATE PUBLICATION pub FOR TABLE public.mine"),
        sql.SQL("ALTER TABLE public.mine SET (fillfactor = 70)"),
        sql.SQL("COMMENT ON SCHEMA owned IS 'the owner''s'"),
        sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA owned GRANT SELECT ON TABLES TO PUBLIC"),
        sql.SQL("ALTER TABLE public.mine ALTER COLUMN who SET (n_distinct = 5)"),
        sql.SQL("ALTER TABLE public.mine ALTER COLUMN who SET STATISTICS 10"),
        sql.SQL("CREATE INDEX mine_who ON public.mine (who)"),
        sql.SQL("CLUSTER public.mine USING mine_pkey"),
        sql.SQL("REINDEX TABLE public.mine"),
        sql.SQL("DROP INDEX public.mine_who"),
        sql.SQL("VACUUM public.mine"),  # (clears pg_class.relhasindex-like flags in place; no category reads them)
        sql.SQL("CREATE EXTENSION citext"),  # (trusted: the database owner may; every category's extension filter)
        sql.SQL("ALTER TABLE public.mine ADD COLUMN tag citext"),
        sql.SQL("ALTER TABLE public.mine DROP COLUMN tag"),
        sql.SQL("DROP EXTENSION citext"),
        sql.SQL("VACUUM FULL pg_catalog.pg_class"),  # (17+: a warning, not allowed without MAINTAIN)
        sql.SQL("ANALYZE pg_catalog.pg_attribute"),
        sql.SQL("GRANT CREATE ON DATABASE {} TO PUBLIC").format(db),  # an ACL made equal to an earlier one
        sql.SQL("REVOKE CREATE ON DATABASE {} FROM PUBLIC").format(db),
    ]
    try:
        with owner.connect() as session:
            for move in moves:
                checked(reader)  # stored (or proved) before each move
                session.execute(move)
                checked(reader)
    finally:
        conn.execute(sql.SQL("DROP PUBLICATION IF EXISTS pub"))
        conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(db, sql.Identifier(conn.info.user)))


def test_a_role_with_create_on_a_schema_while_a_long_transaction_pins_the_horizon(
    conn: psycopg.Connection[Any], reader: psycopg.Connection[Any], make_role: MakeRole
) -> None:
    """An open transaction with an xid keeps every later row version young; one of its own DDL commits last."""
    maker = make_role("maker")
    conn.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(sql.Identifier(maker.name)))
    with maker.connect() as long, maker.connect() as quick:
        long.execute("BEGIN")
        long.execute("CREATE TABLE public.late (id integer)")
        assert checked(reader) == "measured"
        quick.execute("CREATE TABLE public.t3 (id integer)")
        assert checked(reader) == "measured"
        quick.execute("ALTER TABLE public.t3 RENAME COLUMN id TO key")
        assert checked(reader) == "measured"
        quick.execute("DROP TABLE public.t3")
        assert checked(reader) == "measured"
        long.execute("COMMIT")
        assert checked(reader) == "measured"
        assert digests(reader)["schema_hash"] == full(reader)["schema_hash"]


def test_subtransaction_overflow_in_another_session(
    conn: psycopg.Connection[Any], reader: psycopg.Connection[Any], make_role: MakeRole
) -> None:
    """More than 64 subtransactions with DDL (the snapshot's subxip overflows; visibility goes through pg_subtrans),
    some rolled back, open while the proof is stored, committed before it is used."""
    maker = make_role("maker")
    conn.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(sql.Identifier(maker.name)))
    with maker.connect() as session:
        session.execute("BEGIN")
        for n in range(80):
            session.execute(f"SAVEPOINT s{n}")
            session.execute(f"CREATE TABLE public.sub{n} (id integer)")
            if n % 3 == 0:
                session.execute(f"ROLLBACK TO SAVEPOINT s{n}")
        assert checked(reader) == "measured"
        session.execute("COMMIT")
    assert checked(reader) == "measured"


def test_sequences_and_large_objects_of_an_ordinary_role(
    conn: psycopg.Connection[Any], reader: psycopg.Connection[Any], make_role: MakeRole
) -> None:
    """A sequence's state moves without any catalog row (measured every time); its definition and a large
    object's grants and comment are catalog rows (the latter no category reads: both answers leave them out)."""
    maker = make_role("maker")
    conn.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(sql.Identifier(maker.name)))
    with maker.connect() as session:
        session.execute("CREATE SEQUENCE public.counter")
        session.execute("GRANT SELECT ON public.counter TO gcos_operator")
        for move in (
            "SELECT nextval('public.counter')",
            "SELECT setval('public.counter', 500)",
            "ALTER SEQUENCE public.counter INCREMENT BY 7",
            "ALTER SEQUENCE public.counter RESTART WITH 3",
            "SELECT lo_create(424242)",
            "COMMENT ON LARGE OBJECT 424242 IS 'bulk'",
            "GRANT SELECT ON LARGE OBJECT 424242 TO PUBLIC",
            "SELECT lo_unlink(424242)",
        ):
            digests(reader)
            session.execute(move)
            checked(reader)


def test_a_row_stored_for_another_exclude_list_never_answers(
    conn: psycopg.Connection[Any], reader: psycopg.Connection[Any]
) -> None:
    """A proof stored for {gcos,public} (which leaves public out) is not the one for {gcos}."""
    reader.execute("SELECT gcos.fingerprint_digests('{}', '{gcos,public}')")
    reader.execute("SELECT gcos.fingerprint_digests('{}', '{public,gcos}')")
    conn.execute("CREATE TABLE public.t3 (id integer)")
    reader.execute("SELECT gcos.fingerprint_digests('{}', '{gcos,public}')")  # re-stored after the change
    assert checked(reader) == "measured"
    for exclude in (["gcos", "public"], ["public", "gcos"]):
        got = reader.execute("SELECT gcos.fingerprint_digests('{}', %s::text[])", (exclude,)).fetchone()
        want = reader.execute(
            "SELECT gcos._fp_take('{}', %s::text[], current_setting('search_path'), false)", (exclude,)
        ).fetchone()
        assert got is not None and want is not None
        assert {k: v for k, v in got[0].items() if k != "established"} == want[0]


def test_a_repeatable_read_reader_after_a_newer_proof_was_stored(
    conn: psycopg.Connection[Any], reader: psycopg.Connection[Any], make_role: MakeRole
) -> None:
    """A REPEATABLE READ transaction whose snapshot predates a change and the proof stored after it: it sees an
    older world than the stored row, and must be answered from its own snapshot."""
    other = make_role("other", grant=("operator",))
    with reader.transaction():
        reader.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        before = full(reader)
        conn.execute("ALTER TABLE public.t1 ADD COLUMN extra text")
        with other.connect() as session:
            session.execute("SELECT gcos.fingerprint_digests('{public.kept}')")  # stores the newer world
        got = digests(reader)
        assert got.pop("established") == "measured"
        assert got == full(reader) == before


def test_pg_write_all_data_writes_no_proof(
    conn: psycopg.Connection[Any], reader: psycopg.Connection[Any], make_role: MakeRole
) -> None:
    writer = make_role("writer")
    conn.execute(sql.SQL("GRANT pg_write_all_data TO {}").format(sql.Identifier(writer.name)))
    since = server_roles(reader)
    digests(reader)
    with writer.connect() as session:
        for statement in (
            "UPDATE gcos.catalog_proof SET schema_hash = 'forged'",
            "UPDATE gcos.catalog_proof SET young = young + 0",
            "DELETE FROM gcos.catalog_proof",
            "UPDATE gcos.fingerprint_queries SET query = query",
        ):
            with pytest.raises(pg_errors.InsufficientPrivilege):
                session.execute(statement)
    assert proved(reader, checked(reader), since)


def test_a_role_that_blocks_or_evicts_the_store_costs_time_only(
    conn: psycopg.Connection[Any], reader: psycopg.Connection[Any], make_role: MakeRole
) -> None:
    """Any role may hold the advisory lock the store tries (nothing is stored meanwhile), and an operator may ask for
    many exclude lists (the {gcos} row is evicted): every answer is still the measurement's."""
    other = make_role("other", grant=("operator",))
    with other.connect() as session:
        session.execute("SELECT pg_advisory_lock(hashtext('gcos.catalog_proof'), hashtext('{gcos}'))")
        assert checked(reader) == "measured"
        assert conn.execute("SELECT count(*) FROM gcos.catalog_proof").fetchone() == (0,)
        session.execute("SELECT pg_advisory_unlock_all()")
        since = server_roles(reader)
        checked(reader)
        for n in range(10):
            session.execute("SELECT gcos._catalog_proof(%s::text[], false)", (["gcos", f"x{n}"],))
        assert conn.execute("SELECT count(*) FROM gcos.catalog_proof WHERE exclude = '{gcos}'").fetchone() == (0,)
    assert checked(reader) == "measured"
    assert proved(reader, checked(reader), since)


@pytest.fixture
def step_kernel(world_dsn: str, gcos_adopted: None, world_role: MakeRole) -> Iterator[Kernel]:
    operator = world_role("op", kind="human", roles=("operator",), grant=("operator",))
    with psycopg.connect(world_dsn, autocommit=True) as admin:
        yield Kernel(world_dsn, admin, load_project(REPO), operator)


def _kernel_entry_is_the_world(admin: psycopg.Connection[Any]) -> str:
    """The kernel's entry fingerprint (through the stored proof) against a full measurement on one snapshot."""
    with admin.transaction():
        row = admin.execute(
            "SELECT gcos._kernel_fingerprint_entry('{}'), gcos._fp_take('{}', '{gcos}', 'public, pg_temp', true)"
        ).fetchone()
    assert row is not None
    got, want = row
    for key in ("schema_hash", "digests", "schema"):
        assert got[key] == want[key], key
    return str(got["established"])


@pytest.mark.parametrize("then", ["SELECT 1 / 0;", ""], ids=["fails", "passes"])
def test_a_step_that_stores_a_proof_of_its_half_done_world(step_kernel: Kernel, then: str) -> None:
    """A step's mutation (run as gcos_kernel, which may call 052's store) stores the proof of the world it is
    making, then fails or is rolled back as every rehearsal is: no row outlives the mutation."""
    step_kernel.rehearse(step_kernel.register(step_kernel.document()), step_kernel.plan_hash())  # stores the entry
    doc = step_kernel.document()
    doc["mutation"]["sql"] += "\nSELECT gcos._catalog_proof('{gcos}', true);\n" + then
    result = step_kernel.rehearse(step_kernel.register(doc), step_kernel.plan_hash())
    assert result["outcome"] in ("mutation_failed", "passed"), result["message"]
    assert not step_kernel.exists("governance_ruleset")
    _kernel_entry_is_the_world(step_kernel.admin)


FUZZ_DDL = (
    "CREATE TABLE IF NOT EXISTS public.f{n} (id integer)",
    "DROP TABLE IF EXISTS public.f{n}",
    "ALTER TABLE IF EXISTS public.f{n} ADD COLUMN IF NOT EXISTS c{n} text",
    "COMMENT ON TABLE public.t1 IS 'c{n}'",
    "GRANT SELECT ON public.t1 TO PUBLIC",
    "REVOKE SELECT ON public.t1 FROM PUBLIC",
    "CREATE INDEX IF NOT EXISTS i{n} ON public.t2 (id)",
    "DROP INDEX IF EXISTS public.i{n}",
    "CREATE OR REPLACE FUNCTION public.g{n}() RETURNS integer LANGUAGE sql AS 'SELECT {n}'",
    "ALTER TABLE public.t1 ALTER COLUMN id SET DEFAULT {n}",
    "CREATE SEQUENCE IF NOT EXISTS public.s{n}",
    "ANALYZE public.t2",
)


def _fuzz_move(session: psycopg.Connection[Any], in_tx: bool, dice: random.Random) -> bool:
    """One random move of a session (open, end, savepoint, roll back to it, or DDL); whether a transaction is open."""
    roll = dice.random()
    try:
        if roll < 0.15 and not in_tx:
            session.execute("BEGIN")
            return True
        if roll < 0.25 and in_tx:
            session.execute(dice.choice(["COMMIT", "ROLLBACK"]))
            return False
        if roll < 0.30 and in_tx:
            session.execute("SAVEPOINT sp")
        elif roll < 0.35 and in_tx:
            session.execute("ROLLBACK TO SAVEPOINT sp")
        else:
            session.execute(dice.choice(FUZZ_DDL).format(n=dice.randrange(4)))
    except psycopg.Error:  # (a lock another open transaction holds, a savepoint that is not there)
        if in_tx:
            session.execute("ROLLBACK")
        return False
    return in_tx


def test_random_interleavings_of_two_ddl_sessions(
    conn: psycopg.Connection[Any], reader: psycopg.Connection[Any], make_role: MakeRole
) -> None:
    """Two sessions of a role that owns tables and may create in public interleave DDL, open transactions,
    savepoints and rollbacks at random; after every move the reader's answer is the full measurement's."""
    maker = make_role("maker")
    conn.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(sql.Identifier(maker.name)))
    for table in ("t1", "t2"):
        conn.execute(
            sql.SQL("ALTER TABLE {} OWNER TO {}").format(sql.Identifier("public", table), sql.Identifier(maker.name))
        )
    dice = random.Random(22)
    with maker.connect() as one, maker.connect() as two:
        sessions = {one: False, two: False}
        for session in sessions:
            session.execute("SET lock_timeout = 100")
        established = set()
        since = server_roles(reader)
        for _ in range(60):
            session = dice.choice([one, two])
            sessions[session] = _fuzz_move(session, sessions[session], dice)
            established.add(checked(reader))
        for session, in_tx in sessions.items():
            if in_tx:
                session.execute("COMMIT")
        checked(reader)
    if server_roles(reader) == since:  # (else another test moved the server's roles: every proof rightly failed)
        assert established == {"measured", "proved unchanged"}  # both ways were taken
