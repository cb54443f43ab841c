"""The catalog proof stored across commands (gcos/sql/052_catalog_proof_stored.sql): gcos.fingerprint_digests and a
rehearsal's entry take the schema part from gcos.catalog_proof when its mark proves the catalogs unchanged, and
measure (and store) otherwise. Every attack here ends with the same assertion: what the proof gave equals a full
measurement taken at the same moment (042's gcos._fp_take), whichever way it was established."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import MakeRole, Role, fingerprint
from psycopg import errors as pg_errors
from psycopg import sql
from test_catalog_unchanged import last_rehearsal, wait_for
from test_commit import World, adopted_world

from gcos import commands
from gcos.domain import Kind, Outcome
from gcos.target import Target

SETUP = """
CREATE TABLE public.t1 (id integer);
CREATE TABLE public.t2 (id integer);
CREATE TABLE public.kept (id integer PRIMARY KEY, v text);
CREATE FUNCTION public.f() RETURNS integer LANGUAGE sql AS 'SELECT 1';
GRANT SELECT ON public.kept TO gcos_operator;
"""


@pytest.fixture
def reader(
    conn: psycopg.Connection[Any], gcos_installed: None, make_role: MakeRole
) -> Iterator[psycopg.Connection[Any]]:
    """A gcos_operator session in a small world (the kernel's own roles would do as well)."""
    conn.execute(SETUP)
    role = make_role("reader", grant=("operator",))
    with role.connect() as session:
        yield session


def digests(session: psycopg.Connection[Any], watch: tuple[str, ...] = ("public.kept",)) -> dict[str, Any]:
    row = session.execute("SELECT gcos.fingerprint_digests(%s::text[])", (list(watch),)).fetchone()
    assert row is not None
    return dict(row[0])


def full(session: psycopg.Connection[Any], watch: tuple[str, ...] = ("public.kept",)) -> dict[str, Any]:
    """042's measurement, nothing stored or proved."""
    row = session.execute(
        "SELECT gcos._fp_take(%s::text[], '{gcos}', current_setting('search_path'), false)", (list(watch),)
    ).fetchone()
    assert row is not None
    return dict(row[0])


def checked(session: psycopg.Connection[Any]) -> str:
    """fingerprint_digests equal to a full measurement; how it was established. The measurements bracket it and
    are taken again if they differ (on a shared server, other databases' tests change the server's roles)."""
    for _ in range(5):
        before = full(session)
        got = digests(session)
        established = got.pop("established")
        after = full(session)
        if before == after:
            break
    assert got == after
    return str(established)


def server_roles(session: psycopg.Connection[Any]) -> str:
    """The server-wide role state the proof depends on (roles and memberships are the whole server's)."""
    row = session.execute(
        "SELECT md5(COALESCE((SELECT string_agg(r::text, ',' ORDER BY r.oid) FROM pg_roles AS r), '')"
        " || COALESCE((SELECT string_agg(m.ctid::text || m.xmin::text, ',' ORDER BY m.ctid)"
        " FROM pg_auth_members AS m), ''))"
    ).fetchone()
    assert row is not None
    return str(row[0])


def proved(session: psycopg.Connection[Any], established: str, since: str) -> bool:
    """ "proved unchanged" is required unless the server's roles moved since `since` (taken before the proof was
    stored): a shared server's other tests rightly defeat it; the answer was compared with a measurement anyway."""
    if server_roles(session) == since:
        return established == "proved unchanged"
    return established in ("proved unchanged", "measured")


def stored(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM gcos.catalog_proof").fetchone()
    assert row is not None
    return int(row[0])


def test_the_second_command_is_proved_and_equal(conn: psycopg.Connection[Any], reader: psycopg.Connection[Any]) -> None:
    assert stored(conn) == 0
    since = server_roles(reader)
    assert checked(reader) == "measured"
    assert stored(conn) == 1
    assert proved(reader, checked(reader), since)
    conn.execute("INSERT INTO public.kept VALUES (1, 'rows are measured every time')")
    assert proved(reader, checked(reader), since)


CHANGES = {
    "create": "CREATE TABLE public.t3 (id integer)",
    "drop": "DROP TABLE public.t2",
    "alter_type": "ALTER TABLE public.t1 ALTER COLUMN id TYPE bigint",
    "rename": "ALTER TABLE public.t1 RENAME TO t9",
    "comment": "COMMENT ON TABLE public.t1 IS 'now described'",
    "grant": "GRANT SELECT ON public.t1 TO PUBLIC",
    "function_set": "ALTER FUNCTION public.f() SET work_mem = '8MB'",
    # roles are the server's: only this test's own role (dropped after it) is changed
    "role_attribute": "ALTER ROLE {reader} CREATEDB",
    "role_setting": "ALTER ROLE {reader} SET work_mem = '8MB'",
    "role_grant": "GRANT gcos_auditor TO {reader}",
    "database_setting": "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET work_mem = ''8MB''', current_database());"
    " END $$",
    "drop_and_recreate": "DROP TABLE public.t2; CREATE TABLE public.t2 (id integer)",
}
IN_PLACE = {  # change no definition; the proof may hold or not, the answer must be the measurement's
    "analyze": "ANALYZE",
    "vacuum": "VACUUM public.kept",
    "vacuum_freeze": "VACUUM (FREEZE, ANALYZE)",
    "vacuum_full_pg_class": "VACUUM FULL pg_catalog.pg_class",
    "vacuum_full_pg_attribute": "VACUUM FULL pg_catalog.pg_attribute",
    "vacuum_full_pg_attrdef": "VACUUM FULL pg_catalog.pg_attrdef",  # not a mapped catalog: its pg_class row moves
    "cluster_on": "ALTER TABLE public.kept CLUSTER ON kept_pkey",
}


@pytest.mark.parametrize("ddl", CHANGES.values(), ids=CHANGES.keys())
def test_a_change_another_session_commits_after_the_store_is_measured(
    conn: psycopg.Connection[Any], reader: psycopg.Connection[Any], ddl: str
) -> None:
    before = digests(reader)
    conn.execute(sql.SQL(ddl).format(reader=sql.Identifier(reader.info.user)))
    since = server_roles(reader)
    assert checked(reader) == "measured"
    if ddl not in (CHANGES["role_grant"], CHANGES["drop_and_recreate"]):  # (those two change no definition)
        assert digests(reader)["schema_hash"] != before["schema_hash"]
    assert proved(reader, checked(reader), since)  # and that measurement is stored in turn


@pytest.mark.parametrize("ddl", IN_PLACE.values(), ids=IN_PLACE.keys())
def test_maintenance_after_the_store_gives_the_measured_answer(
    conn: psycopg.Connection[Any], reader: psycopg.Connection[Any], ddl: str
) -> None:
    conn.execute("INSERT INTO public.kept SELECT g, 'v' FROM generate_series(1, 300) AS g")
    conn.execute("DELETE FROM public.kept WHERE id % 3 = 0")
    digests(reader)
    conn.execute(ddl)
    checked(reader)


def test_uncommitted_ddl_stores_nothing_that_outlives_it(
    conn: psycopg.Connection[Any], reader: psycopg.Connection[Any]
) -> None:
    """A role that may create in a schema measures its own uncommitted DDL: the row it stores goes with it."""
    conn.execute("GRANT CREATE ON SCHEMA public TO gcos_operator")
    since = server_roles(reader)
    digests(reader)
    with reader.transaction(force_rollback=True):
        reader.execute("CREATE TABLE public.phantom (id integer)")
        assert checked(reader) == "measured"
    assert proved(reader, checked(reader), since)  # the row stored before the transaction, proved again
    with reader.transaction():
        with reader.transaction(force_rollback=True):  # a savepoint rolled back after the store inside it
            reader.execute("CREATE TABLE public.phantom (id integer)")
            assert checked(reader) == "measured"
        assert proved(reader, checked(reader), since)


def test_a_stale_repeatable_read_snapshot_stores_a_proof_of_nothing_later(
    conn: psycopg.Connection[Any], reader: psycopg.Connection[Any]
) -> None:
    """A session whose snapshot predates a DDL measures (and may store) the old world; that mark proves nothing
    once the DDL's rows are visible."""
    with reader.transaction():
        reader.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        reader.execute("SELECT 1")
        conn.execute("CREATE TABLE public.t3 (id integer)")
        assert checked(reader) == "measured"  # REPEATABLE READ never takes the proof (047)
    since = server_roles(reader)
    assert checked(reader) == "measured"
    assert proved(reader, checked(reader), since)


def test_ddl_in_flight_while_storing_is_a_change_when_it_commits(
    conn: psycopg.Connection[Any], reader: psycopg.Connection[Any]
) -> None:
    with conn.transaction():
        conn.execute("CREATE TABLE public.t3 (id integer)")
        conn.execute("DROP TABLE public.t2")  # every catalog keeps its count
        assert checked(reader) == "measured"
    assert checked(reader) == "measured"


def test_a_session_storing_the_proof_never_makes_another_wait(
    conn: psycopg.Connection[Any], reader: psycopg.Connection[Any], make_role: MakeRole
) -> None:
    """One transaction has stored the proof and not committed (its row and lock held): another session measures, does
    not wait for it to store its own, and gives the measured answer; after the commit the stored row proves."""
    other = make_role("other", grant=("operator",))
    with other.connect() as second:
        # waiting for the other's lock would end in this error (uncaught by the kernel) rather than hang the test
        second.execute("SET statement_timeout = '20s'")
        since = server_roles(reader)
        with reader.transaction():
            assert checked(reader) == "measured"
            assert checked(second) == "measured"
        assert proved(second, checked(second), since)


def test_an_index_turning_valid_in_place_after_the_store_is_a_change(
    conn: psycopg.Connection[Any], reader: psycopg.Connection[Any]
) -> None:
    """CREATE INDEX CONCURRENTLY sets indisready/indisvalid in place (no new row version): the proof is stored while
    the index is not valid yet, and the index turning valid later must read as a change."""
    failures: list[BaseException] = []

    def build() -> None:
        try:
            with psycopg.connect(conn.info.dsn, autocommit=True) as builder:
                builder.execute("CREATE INDEX CONCURRENTLY kept_v ON public.kept (v)")
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    with psycopg.connect(conn.info.dsn, autocommit=True) as holder:
        holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        holder.execute("SELECT 1")
        thread = threading.Thread(target=build)
        thread.start()
        wait_for(
            conn,
            "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE query LIKE 'CREATE INDEX CONCURRENTLY%%'"
            " AND wait_event_type = 'Lock')"
            " AND EXISTS (SELECT FROM pg_index WHERE indexrelid = to_regclass('public.kept_v') AND NOT indisvalid)",
            "the index build never waited for the snapshot",
        )
        checked(reader)  # stores the proof of the invalid index
        holder.execute("COMMIT")
        thread.join()
    assert failures == []
    assert checked(reader) == "measured"


def test_no_role_but_a_superuser_touches_the_stored_proof(
    conn: psycopg.Connection[Any], reader: psycopg.Connection[Any], make_role: MakeRole
) -> None:
    people = [make_role(g, grant=(g,)) for g in ("admin", "auditor", "operator")]
    since = server_roles(reader)
    digests(reader)
    for person in people:
        with person.connect() as session:
            for statement in (
                "SELECT * FROM gcos.catalog_proof",
                "UPDATE gcos.catalog_proof SET schema_hash = 'forged'",
                "DELETE FROM gcos.catalog_proof",
                "INSERT INTO gcos.catalog_proof SELECT * FROM gcos.catalog_proof",
                "SELECT gcos._fp_schema_marked('{gcos}', false)",
                "SELECT gcos._catalog_proof_holds(NULL::gcos.catalog_proof)",
            ):
                with pytest.raises(pg_errors.InsufficientPrivilege):
                    session.execute(statement)
            for bad in ("SELECT gcos._catalog_proof(NULL, false)", "SELECT gcos._catalog_proof('{gcos,NULL}', true)"):
                with pytest.raises(pg_errors.InvalidParameterValue):
                    session.execute(bad)
    for kernel in ("gcos_kernel", "gcos_owner"):  # nor may the kernel's roles write it but through 052's function
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(kernel)))
        try:
            if kernel == "gcos_kernel":
                with pytest.raises(pg_errors.InsufficientPrivilege):
                    conn.execute("DELETE FROM gcos.catalog_proof")
        finally:
            conn.execute("RESET ROLE")
    assert proved(reader, checked(reader), since)


def test_many_exclude_lists_keep_a_few_rows(conn: psycopg.Connection[Any], reader: psycopg.Connection[Any]) -> None:
    for n in range(12):
        reader.execute("SELECT gcos.fingerprint_digests('{}', %s::text[])", (["gcos", f"x{n}"],))
    assert stored(conn) <= 9


EXPIRIES = {
    "restart": "UPDATE gcos.catalog_proof SET started = started - interval '1 second'",
    "other_database": "UPDATE gcos.catalog_proof SET database = (database::text::bigint + 1)::text::oid, "
    "mark = jsonb_set(mark, '{database}', to_jsonb((mark ->> 'database')::bigint + 1))",
    "wrapped_horizon": "UPDATE gcos.catalog_proof SET young = young - 4294967296 * 3",
    "old_horizon": "UPDATE gcos.catalog_proof SET young = young - 1073741824, "
    "mark = jsonb_set(mark, '{young}', to_jsonb(((young - 1073741824) % 4294967296)::text))",
    "young_disagrees": "UPDATE gcos.catalog_proof SET young = young + 1",
    "unprovable": 'UPDATE gcos.catalog_proof SET mark = mark || \'{"unprovable": "forged"}\'',
    "queries_reloaded": "UPDATE gcos.fingerprint_queries SET query = query || ' ', "
    "sha256 = encode(sha256(convert_to(query || ' ', 'UTF8')), 'hex') WHERE name = 'role'",
}


@pytest.mark.parametrize("forgery", EXPIRIES.values(), ids=EXPIRIES.keys())
def test_a_proof_from_another_server_run_database_horizon_or_queries_proves_nothing(
    conn: psycopg.Connection[Any], reader: psycopg.Connection[Any], forgery: str
) -> None:
    """A restart, a restore into another database, xid wraparound, an unprovable mark, fingerprint queries reloaded
    by `gcos install`: simulated as a superuser editing the row (or the queries), each expires the proof."""
    digests(reader)
    conn.execute(forgery)
    assert checked(reader) == "measured"


def test_a_superuser_can_forge_and_a_change_ends_the_forgery(
    conn: psycopg.Connection[Any], reader: psycopg.Connection[Any]
) -> None:
    """The row is trusted as a superuser leaves it (a superuser can write anything); any catalog change expires it."""
    since = server_roles(reader)
    digests(reader)
    conn.execute("UPDATE gcos.catalog_proof SET schema_hash = 'forged'")
    got = digests(reader)
    assert proved(reader, got["established"], since)
    assert got["schema_hash"] == ("forged" if got["established"] == "proved unchanged" else full(reader)["schema_hash"])
    conn.execute("CREATE TABLE public.t3 (id integer)")
    assert checked(reader) == "measured"


def test_a_read_only_transaction_measures_and_stores_nothing(
    conn: psycopg.Connection[Any], reader: psycopg.Connection[Any]
) -> None:
    with reader.transaction():
        reader.execute("SET TRANSACTION READ ONLY")
        assert checked(reader) == "measured"
    assert stored(conn) == 0


# --------------------------------------------------------------------------- a rehearsal's entry


@pytest.fixture
def operator(world_dsn: str, gcos_adopted: None, world_role: MakeRole) -> Role:
    return world_role("op", kind="human", roles=("operator",), grant=("operator",))


def test_a_rehearsal_after_a_rehearsal_proves_its_entry(operator: Role, world_dsn: str, project_dir: Path) -> None:
    """The first rehearsal measures its entry (with the object map) and stores it; the second proves it and still
    names what its step changes (the map came from the stored proof)."""
    target = Target(operator.dsn, "--dsn")
    with psycopg.connect(world_dsn, autocommit=True) as admin:
        since = server_roles(admin)
    commands.rehearse(target, project_dir, "SB-12")
    first = last_rehearsal(world_dsn)
    commands.rehearse(target, project_dir, "SB-12")
    second = last_rehearsal(world_dsn)
    assert first["outcome"] == second["outcome"] == Outcome.PASSED, second["message"]
    assert first["fingerprints"]["entry"]["established"] == "measured"
    with psycopg.connect(world_dsn, autocommit=True) as admin:
        assert proved(admin, second["fingerprints"]["entry"]["established"], since)
        quiet = server_roles(admin) == since
    for key in ("entry", "exit") if quiet else ():  # (inside differs: the step's sequence moved on)
        assert {k: v for k, v in first["fingerprints"][key].items() if k != "established"} == {
            k: v for k, v in second["fingerprints"][key].items() if k != "established"
        }
    assert first["footprint"] == second["footprint"] and second["footprint"]["new_tables"]
    with psycopg.connect(world_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.between_rehearsals (id integer)")
    commands.rehearse(target, project_dir, "SB-12")
    third = last_rehearsal(world_dsn)
    assert third["fingerprints"]["entry"]["established"] == "measured"
    assert third["fingerprints"]["entry"]["schema_hash"] != second["fingerprints"]["entry"]["schema_hash"]
    assert third["footprint"] == second["footprint"]


# --------------------------------------------------------------------------- a commit leaves its proof


@pytest.fixture
def adopted(world_dsn: str, gcos_adopted: None, project_dir: Path) -> Iterator[World]:
    yield from adopted_world(world_dsn, project_dir)


def test_a_commit_stores_the_proof_the_next_rehearsal_entry_takes(adopted: World) -> None:
    """The commit's after fingerprint is taken through the stored proof (a mark on its own snapshot, stored with the
    commit): the next step's rehearsal proves its entry instead of measuring it, and it is the world's fingerprint."""
    adopted.rehearse("SB-12")
    adopted.approve("SB-12")
    since = server_roles(adopted.admin)
    adopted.commit("SB-12")
    (commit,) = adopted.records(Kind.COMMIT)
    assert "established" not in commit.payload["fingerprint_after_full"]  # the commit record keeps its shape
    adopted.rehearse("SB-13")
    payload = last_rehearsal(adopted.dsn)
    entry = payload["fingerprints"]["entry"]
    assert proved(adopted.admin, entry["established"], since), payload["message"]
    watch = adopted.admin.execute(
        "SELECT document -> 'watch' FROM gcos.specs WHERE step_id = 'SB-13' ORDER BY registered_at DESC LIMIT 1"
    ).fetchone()
    assert watch is not None
    if server_roles(adopted.admin) == since:  # (else another database's tests moved the server's roles meanwhile)
        assert entry["hash"] == fingerprint(adopted.admin, watch[0] or [])["hash"]
        assert entry["schema_hash"] == commit.payload["fingerprint_after"]["schema_hash"]
