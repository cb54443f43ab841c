"""Attacks on the MVCC proofs of 047 (catalogs unchanged) and 048 (watched tables unchanged): ways for
gcos._catalog_unchanged / the rehearsal record to say "proved unchanged" (and reuse the entry's hash) while a full
measurement at that moment differs. A hole is a strict xfail asserting the SAFE behaviour (it fails today, for
the reason its xfail names); an idea found safe is a passing test where it is cheap to show."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

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
    conn.execute(sql.SQL("CREATE TABLE public.s21_owned (id integer); ALTER TABLE public.s21_owned OWNER TO {}").format(role))
    yield ROLE
    conn.execute(sql.SQL("DROP OWNED BY {0}; DROP ROLE {0}").format(role))


def role_digest(session: psycopg.Connection[Any]) -> str:
    """The fingerprint's own digest of category "role", measured in full (as the kernel, settings pinned)."""
    return str(one(session, "SELECT gcos._kernel_digests('{}'::text[]) -> 'digests' ->> 'role'"))


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="047's roles digest (md5 of pg_roles rows as text, the only guard of pg_authid, which the catalog list "
    "leaves out) renders rolvaliduntil with the session's TimeZone and DateStyle: two instants can read alike. "
    "Fix: SET timezone = 'UTC', datestyle = 'ISO, YMD' (as gcos._fp_take does) on gcos._catalog_state.",
)
def test_a_role_valid_until_change_is_a_change_whatever_the_session_timezone(
    conn: psycopg.Connection[Any], owner: psycopg.Connection[Any], valid_role: str
) -> None:
    """The rehearsing session chooses its own TimeZone/DateStyle (libpq's PGTZ/PGDATESTYLE); the kernel's
    executors pin theirs, the proof does not. A CREATEROLE holder moves VALID UNTIL by an hour mid-rehearsal."""
    owner.execute("SELECT set_config('timezone', %s, false), set_config('datestyle', 'Postgres', false)", (AMBIGUOUS_ZONE,))
    taken = dict(one(owner, "SELECT gcos._catalog_mark()"))
    need("young" in taken, "the mark is provable")
    before = role_digest(owner)
    conn.execute(sql.SQL("ALTER ROLE {} VALID UNTIL {}").format(sql.Identifier(valid_role), sql.Literal(SECOND_0130)))
    need(role_digest(owner) != before, "a full measurement sees the role changed")
    assert not one(owner, "SELECT gcos._catalog_unchanged(%s)", Jsonb(taken))


def test_a_role_valid_until_change_is_a_change_in_iso(
    conn: psycopg.Connection[Any], owner: psycopg.Connection[Any], valid_role: str
) -> None:
    """The control: with an unambiguous rendering (ISO prints the offset) the same change is seen."""
    owner.execute("SELECT set_config('timezone', %s, false), set_config('datestyle', 'ISO', false)", (AMBIGUOUS_ZONE,))
    taken = dict(one(owner, "SELECT gcos._catalog_mark()"))
    conn.execute(sql.SQL("ALTER ROLE {} VALID UNTIL {}").format(sql.Identifier(valid_role), sql.Literal(SECOND_0130)))
    assert not one(owner, "SELECT gcos._catalog_unchanged(%s)", Jsonb(taken))


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="the schema part is computed by the queries in gcos.fingerprint_queries, a gcos table, not a catalog: "
    "047's mark does not cover it, so a reload by gcos install between mark and check leaves the entry's hash "
    "reused though the queries now measure differently. Fix: fold the loaded queries' digest "
    "(sha256 of name, sha256 ordered) into the mark and compare it in gcos._catalog_unchanged.",
)
def test_fingerprint_queries_reloaded_after_the_mark_is_a_change(
    conn: psycopg.Connection[Any], owner: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """gcos install (a superuser) reloads the queries whenever the package's files change, e.g. an upgrade run
    while a rehearsal is in flight; the world did not change, the measurement did."""
    taken = dict(one(owner, "SELECT gcos._catalog_mark()"))
    before = dict(one(owner, "SELECT gcos._kernel_digests('{}'::text[])"))
    shipped = install.fingerprint_queries

    def changed(server_version: int) -> dict[str, str]:
        texts = dict(shipped(server_version))
        texts["database"] = texts["database"].replace("pg_get_userbyid(d.datdba)", "'someone else'")
        return texts

    monkeypatch.setattr(install, "fingerprint_queries", changed)
    need(install._load_queries(conn), "the installer reloaded the queries")
    after = dict(one(owner, "SELECT gcos._kernel_digests('{}'::text[])"))
    need(after["digests"]["database"] != before["digests"]["database"], "a full measurement differs")
    need(after["schema_hash"] != before["schema_hash"], "the schema hash differs")
    assert not one(owner, "SELECT gcos._catalog_unchanged(%s)", Jsonb(taken))
