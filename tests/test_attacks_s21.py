"""Attacks on the MVCC proofs of 047 (catalogs unchanged) and 048 (watched tables unchanged): ways for
gcos._catalog_unchanged / the rehearsal record to say "proved unchanged" (and reuse the entry's hash) while a full
measurement at that moment differs. A hole is a strict xfail asserting the SAFE behaviour (it fails today, for
the reason its xfail names); an idea found safe is a passing test where it is cheap to show."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

from gcos import install

ROLE = "gcos_test_s21_valid"
# A POSIX zone whose summer and winter time share one abbreviation: at the autumn change (2030-11-03, 02:00
# summer time) local 01:30 happens twice, an hour apart, and DateStyle Postgres prints both alike.
AMBIGUOUS_ZONE = "XYZ5XYZ,M3.2.0,M11.1.0"
FIRST_0130 = "2030-11-03 05:30:00+00"  # 01:30 summer time (UTC-4)
SECOND_0130 = "2030-11-03 06:30:00+00"  # 01:30 winter time (UTC-5), an hour later


def one(conn: psycopg.Connection[Any], query: str, *args: Any) -> Any:
    row = conn.execute(query, args).fetchone()
    assert row is not None
    return row[0]


def two(conn: psycopg.Connection[Any], query: sql.Composable, *args: Any) -> tuple[Any, Any]:
    row = conn.execute(query, args).fetchone()
    assert row is not None
    return row[0], row[1]


T = TypeVar("T")


def shared_sql(session: psycopg.Connection[Any]) -> sql.Composable:
    """One expression: every shared catalog's visible row versions the session can read, pg_roles' rows (for
    pg_authid) but ROLE's. Evaluated in the same statement as a mark or a check, it sees their snapshot."""
    names = [
        str(r[0])
        for r in session.execute(
            "SELECT c.relname FROM pg_class AS c WHERE c.relisshared AND c.relkind = 'r'"
            " AND has_table_privilege(c.oid, 'SELECT') ORDER BY c.relname"
        )
    ]
    parts = [
        sql.SQL(
            "(SELECT string_agg(t.ctid::text || '/' || t.xmin::text, ',' ORDER BY t.ctid) FROM pg_catalog.{} AS t)"
        ).format(sql.Identifier(name))
        for name in names
    ]
    parts.append(
        sql.SQL(
            "(SELECT md5(string_agg(r::text, ',' ORDER BY r.oid)) FROM pg_catalog.pg_roles AS r WHERE r.rolname <> {})"
        ).format(sql.Literal(ROLE))
    )
    return sql.SQL("ARRAY[{}]").format(sql.SQL(", ").join(parts))


def quietly(session: psycopg.Connection[Any], attempt: Callable[[sql.Composable], tuple[T, Any, Any]]) -> T:
    """Run `attempt` until no other session of the server changed a shared catalog between its mark and its check
    (a test database or role created by a parallel suite: the proof then rightly fails, for another reason than
    the attack's). `attempt` gets the shared-state expression and returns (result, state at mark, at check)."""
    shared = shared_sql(session)
    for _ in range(20):
        result, at_mark, at_check = attempt(shared)
        if at_mark == at_check:
            return result
    raise RuntimeError("other sessions kept changing the server's shared catalogs: the attack could not be judged")


def need(condition: bool, what: str) -> None:
    """A precondition of the attack: not an AssertionError, so a broken setup fails the strict xfail loudly."""
    if not condition:
        raise RuntimeError(f"attack setup did not hold: {what}")


@pytest.fixture
def owner(conn: psycopg.Connection[Any], gcos_installed: None) -> Iterator[psycopg.Connection[Any]]:
    """A session acting as gcos_owner, the role a rehearsal marks and proves the catalogs as."""
    with psycopg.connect(conn.info.dsn, autocommit=True) as session:
        session.execute("SET ROLE gcos_owner")
        yield session


@pytest.fixture
def valid_role(conn: psycopg.Connection[Any]) -> Iterator[str]:
    """A role the fingerprint's category "role" measures (it owns a table in public), valid until FIRST_0130."""
    role = sql.Identifier(ROLE)
    conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN VALID UNTIL {}").format(role, sql.Literal(FIRST_0130)))
    conn.execute(
        sql.SQL("CREATE TABLE public.s21_owned (id integer); ALTER TABLE public.s21_owned OWNER TO {}").format(role)
    )
    yield ROLE
    conn.execute(sql.SQL("DROP OWNED BY {0}; DROP ROLE {0}").format(role))


def role_digest(session: psycopg.Connection[Any]) -> str:
    """The fingerprint's own digest of category "role", measured in full (as the kernel, settings pinned)."""
    return str(one(session, "SELECT gcos._kernel_digests('{}'::text[]) -> 'digests' ->> 'role'"))


def test_a_role_valid_until_change_is_a_change_whatever_the_session_timezone(
    conn: psycopg.Connection[Any], owner: psycopg.Connection[Any], valid_role: str
) -> None:
    """Was a hole (047's roles digest rendered rolvaliduntil in the session's TimeZone/DateStyle), mended by 049's
    pinned settings. The rehearsing session chooses its own TimeZone/DateStyle (libpq's PGTZ/PGDATESTYLE); the kernel's
    executors pin theirs, the proof does not. A CREATEROLE holder moves VALID UNTIL by an hour mid-rehearsal. (Through
    gcos rehearse with PGTZ/PGDATESTYLE set, the exit record read "proved unchanged": commit 85c2429's test, dropped
    because another session's CREATE DATABASE during its seconds-long window turns it into a false XPASS.)"""
    owner.execute(
        "SELECT set_config('timezone', %s, false), set_config('datestyle', 'Postgres', false)", (AMBIGUOUS_ZONE,)
    )
    valid = sql.SQL("ALTER ROLE {} VALID UNTIL {}").format(sql.Identifier(valid_role), sql.Literal(SECOND_0130))
    back = sql.SQL("ALTER ROLE {} VALID UNTIL {}").format(sql.Identifier(valid_role), sql.Literal(FIRST_0130))
    before = role_digest(owner)

    def attempt(shared: sql.Composable) -> tuple[bool, Any, Any]:
        conn.execute(back)
        taken, at_mark = two(owner, sql.SQL("SELECT gcos._catalog_mark(), {}").format(shared))
        need("young" in taken, "the mark is provable")
        conn.execute(valid)
        same, at_check = two(owner, sql.SQL("SELECT gcos._catalog_unchanged(%s), {}").format(shared), Jsonb(taken))
        return bool(same), at_mark, at_check

    same = quietly(owner, attempt)
    need(role_digest(owner) != before, "a full measurement sees the role changed")
    assert not same


def test_a_role_valid_until_change_is_a_change_in_iso(
    conn: psycopg.Connection[Any], owner: psycopg.Connection[Any], valid_role: str
) -> None:
    """The control: with an unambiguous rendering (ISO prints the offset) the same change is seen."""
    owner.execute("SELECT set_config('timezone', %s, false), set_config('datestyle', 'ISO', false)", (AMBIGUOUS_ZONE,))
    taken = dict(one(owner, "SELECT gcos._catalog_mark()"))
    conn.execute(sql.SQL("ALTER ROLE {} VALID UNTIL {}").format(sql.Identifier(valid_role), sql.Literal(SECOND_0130)))
    assert not one(owner, "SELECT gcos._catalog_unchanged(%s)", Jsonb(taken))


def test_fingerprint_queries_reloaded_after_the_mark_is_a_change(
    conn: psycopg.Connection[Any], owner: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was a hole (047's mark did not cover gcos.fingerprint_queries), mended by 049's queries digest.
    gcos install (a superuser) reloads the queries whenever the package's files change, e.g. an upgrade run
    while a rehearsal is in flight; the world did not change, the measurement did."""
    before = dict(one(owner, "SELECT gcos._kernel_digests('{}'::text[])"))
    shipped = install.fingerprint_queries

    def changed(server_version: int) -> dict[str, str]:
        texts = dict(shipped(server_version))
        texts["database"] = texts["database"].replace("pg_get_userbyid(d.datdba)", "'someone else'")
        return texts

    def attempt(shared: sql.Composable) -> tuple[bool, Any, Any]:
        monkeypatch.setattr(install, "fingerprint_queries", shipped)
        install._load_queries(conn)  # (the shipped queries back, after an attempt another session disturbed)
        taken, at_mark = two(owner, sql.SQL("SELECT gcos._catalog_mark(), {}").format(shared))
        monkeypatch.setattr(install, "fingerprint_queries", changed)
        need(install._load_queries(conn), "the installer reloaded the queries")
        same, at_check = two(owner, sql.SQL("SELECT gcos._catalog_unchanged(%s), {}").format(shared), Jsonb(taken))
        return bool(same), at_mark, at_check

    same = quietly(owner, attempt)
    after = dict(one(owner, "SELECT gcos._kernel_digests('{}'::text[])"))
    need(after["digests"]["database"] != before["digests"]["database"], "a full measurement differs")
    need(after["schema_hash"] != before["schema_hash"], "the schema hash differs")
    assert not same


# --------------------------------------------------------------------------- ideas found safe (cheap to show)

TABLES = """
CREATE TABLE public.kept (id integer PRIMARY KEY, v text);
INSERT INTO public.kept SELECT g, 'v' || g FROM generate_series(1, 200) AS g;
CREATE TABLE public.parted (id integer, v text) PARTITION BY RANGE (id);
CREATE TABLE public.parted_lo PARTITION OF public.parted FOR VALUES FROM (0) TO (100);
CREATE TABLE public.parted_hi PARTITION OF public.parted FOR VALUES FROM (100) TO (1000);
INSERT INTO public.parted SELECT g, 'p' FROM generate_series(1, 200) AS g;
ALTER TABLE public.kept OWNER TO gcos_kernel;
ALTER TABLE public.parted OWNER TO gcos_kernel;
ALTER TABLE public.parted_lo OWNER TO gcos_kernel;
ALTER TABLE public.parted_hi OWNER TO gcos_kernel;
"""
WATCH = ["kept", "parted"]
# Each rewrites or re-links a watched table's rows by another session, its rows' texts unchanged: a new
# relfilenode or partition link is a catalog row version, so the catalogs are not proved and the whole
# fingerprint is measured (and equals the entry's, the content being the same).


def copy_freeze(conn: psycopg.Connection[Any]) -> None:
    """TRUNCATE, then the same rows back by COPY FREEZE (frozen at once, in the truncating transaction)."""
    with conn.cursor() as cur:
        with cur.copy("COPY public.kept TO STDOUT") as out:
            rows = b"".join(bytes(chunk) for chunk in out)
        with conn.transaction():
            cur.execute("TRUNCATE public.kept")
            with cur.copy("COPY public.kept FROM STDIN (FREEZE)") as into:
                into.write(rows)


def run(statement: str) -> Callable[[psycopg.Connection[Any]], None]:
    def rewrite(conn: psycopg.Connection[Any]) -> None:
        conn.execute(statement)

    return rewrite


REWRITES: dict[str, Callable[[psycopg.Connection[Any]], None]] = {
    "vacuum_full": run("VACUUM FULL public.kept"),
    "cluster": run("CLUSTER public.kept USING kept_pkey"),
    "truncate_and_copy_freeze": copy_freeze,
    "detach_and_attach": run(
        "ALTER TABLE public.parted DETACH PARTITION public.parted_hi;"
        " ALTER TABLE public.parted ATTACH PARTITION public.parted_hi FOR VALUES FROM (100) TO (1000)"
    ),
}


@pytest.mark.parametrize("rewrite", REWRITES)
def test_a_rewrite_by_another_session_is_measured(
    conn: psycopg.Connection[Any], owner: psycopg.Connection[Any], rewrite: str
) -> None:
    conn.execute(TABLES)

    def attempt(shared: sql.Composable) -> tuple[dict[str, Any], Any, Any]:
        taken, at_mark = two(owner, sql.SQL("SELECT gcos._catalog_mark(), {}").format(shared))
        same, at_check = two(owner, sql.SQL("SELECT gcos._catalog_unchanged(%s), {}").format(shared), Jsonb(taken))
        need(same or at_mark != at_check, "an untouched world is proved")
        return dict(taken), at_mark, at_check

    taken = quietly(owner, attempt)  # (a mark another session did not disturb before the rewrite)
    taken["tables"] = one(owner, "SELECT gcos._kernel_tables_mark(%s)", WATCH)
    known = dict(one(owner, "SELECT gcos._kernel_digests(%s)", WATCH))
    REWRITES[rewrite](conn)
    got = one(owner, "SELECT gcos._kernel_fingerprint_proved(%s, %s, %s)", WATCH, Jsonb(known), Jsonb(taken))
    assert got["established"] == "measured"
    assert got["hash"] == known["hash"] == one(owner, "SELECT gcos._kernel_digests(%s) ->> 'hash'", WATCH)


def test_a_database_created_elsewhere_is_no_change_but_this_databases_own_row_is(
    conn: psycopg.Connection[Any], owner: psycopg.Connection[Any]
) -> None:
    """049 reads the shared catalogs as the fingerprint does, for this database only: a database created and
    dropped elsewhere on the server (each test of a parallel suite does) leaves the proof standing, while a change
    of this database's own row (its settings or grants, which category "database" fingerprints) defeats it."""
    name = sql.Identifier(f"{conn.info.dbname}_s21")

    def elsewhere() -> bool:
        taken = dict(one(owner, "SELECT gcos._catalog_mark()"))
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(name))
        conn.execute(sql.SQL("DROP DATABASE {}").format(name))
        return bool(one(owner, "SELECT gcos._catalog_unchanged(%s)", Jsonb(taken)))

    # (a role created meanwhile by another session of a shared server rightly defeats one attempt; not twenty)
    assert any(elsewhere() for _ in range(20))
    taken = dict(one(owner, "SELECT gcos._catalog_mark()"))
    conn.execute(sql.SQL("GRANT TEMPORARY ON DATABASE {} TO PUBLIC").format(sql.Identifier(conn.info.dbname)))
    conn.execute(sql.SQL("REVOKE TEMPORARY ON DATABASE {} FROM PUBLIC").format(sql.Identifier(conn.info.dbname)))
    assert not one(owner, "SELECT gcos._catalog_unchanged(%s)", Jsonb(taken))
