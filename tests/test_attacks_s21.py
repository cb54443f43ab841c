"""Attacks on the MVCC proofs of 047 (catalogs unchanged) and 048 (watched tables unchanged): ways for
gcos._catalog_unchanged / the rehearsal record to say "proved unchanged" (and reuse the entry's hash) while a full
measurement at that moment differs. A hole is a strict xfail asserting the SAFE behaviour (it fails today, for
the reason its xfail names); an idea found safe is a passing test where it is cheap to show."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import MakeRole, Role
from psycopg import sql
from psycopg.types.json import Jsonb

from gcos import commands, install, ledger
from gcos.domain import Kind
from gcos.target import Target

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
    conn.execute(
        sql.SQL("CREATE TABLE public.s21_owned (id integer); ALTER TABLE public.s21_owned OWNER TO {}").format(role)
    )
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
    owner.execute(
        "SELECT set_config('timezone', %s, false), set_config('datestyle', 'Postgres', false)", (AMBIGUOUS_ZONE,)
    )
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


# --------------------------------------------------------------------------- in a rehearsal (gcos rehearse)


@pytest.fixture
def operator(world_dsn: str, gcos_adopted: None, world_role: MakeRole) -> Role:
    return world_role("op", kind="human", roles=("operator",), grant=("operator",))


def rehearse_while(operator: Role, project_dir: Path, meanwhile: Callable[[], None]) -> dict[str, Any]:
    """SB-12 rehearsed with its mutation waiting for advisory lock 521 (after the marks and the entry) while
    `meanwhile` runs in another session; the rehearsal's ledger record."""
    spec = project_dir / "steps/01-sb-12.yaml"
    text = spec.read_text(encoding="utf-8")
    old = "    WHERE r.ruleset_version = 1;\n"
    need(text.count(old) == 1, "SB-12's mutation has the line the test extends")
    spec.write_text(text.replace(old, "    WHERE r.ruleset_version = 1 AND pg_advisory_xact_lock(521) IS NOT NULL;\n"))
    failures: list[BaseException] = []

    def run() -> None:
        try:
            commands.rehearse(Target(operator.dsn, "--dsn"), project_dir, "SB-12")
        except BaseException as exc:  # a refusal is an outcome here: the record says which
            failures.append(exc)

    with psycopg.connect(operator.dsn, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(521)")
        thread = threading.Thread(target=run)
        thread.start()
        deadline = time.monotonic() + 60
        while not one(
            holder,
            "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE application_name = 'gcos'"
            " AND wait_event_type = 'Lock' AND datname = current_database())",
        ):
            need(time.monotonic() < deadline and thread.is_alive(), "the rehearsal reached the advisory lock")
            time.sleep(0.05)
        meanwhile()
        holder.execute("SELECT pg_advisory_unlock(521)")
        thread.join()
        records = [e for e in ledger.read_all(holder) if e.kind == Kind.REHEARSAL]
    need(bool(records), f"the rehearsal wrote its record ({failures})")
    return dict(records[-1].payload)


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="as above, through gcos rehearse: the operator's session TimeZone/DateStyle (PGTZ, PGDATESTYLE) reach "
    "047's roles digest, so the exit record says 'proved unchanged' and reuses the entry's schema hash while the "
    "role's VALID UNTIL changed mid-rehearsal. Fix: pin timezone/datestyle on gcos._catalog_state.",
)
def test_a_rehearsal_in_an_ambiguous_timezone_sees_a_role_change_at_exit(
    operator: Role, world_dsn: str, project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with psycopg.connect(world_dsn, autocommit=True) as admin:
        role = sql.Identifier(ROLE)
        admin.execute(sql.SQL("CREATE ROLE {} NOLOGIN VALID UNTIL {}").format(role, sql.Literal(FIRST_0130)))
        admin.execute(sql.SQL("CREATE SCHEMA s21 AUTHORIZATION {}").format(role))  # (a role category "role" measures)
        try:
            monkeypatch.setenv("PGTZ", AMBIGUOUS_ZONE)
            monkeypatch.setenv("PGDATESTYLE", "Postgres")
            admin.execute("SET ROLE gcos_owner")
            before = role_digest(admin)
            admin.execute("RESET ROLE")

            def move() -> None:
                admin.execute(sql.SQL("ALTER ROLE {} VALID UNTIL {}").format(role, sql.Literal(SECOND_0130)))

            prints = rehearse_while(operator, project_dir, move)["fingerprints"]
            admin.execute("SET ROLE gcos_owner")
            need(role_digest(admin) != before, "a full measurement sees the role changed")
            admin.execute("RESET ROLE")
            assert prints["exit"]["established"] == "measured"
            assert prints["exit"]["schema_hash"] != prints["entry"]["schema_hash"]
        finally:
            admin.execute(sql.SQL("DROP SCHEMA s21; DROP ROLE {}").format(role))


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
REWRITES = {
    "vacuum_full": "VACUUM FULL public.kept",
    "cluster": "CLUSTER public.kept USING kept_pkey",
    "truncate_and_copy_freeze": "COPY public.kept TO {file}; BEGIN; TRUNCATE public.kept;"
    " COPY public.kept FROM {file} (FREEZE); COMMIT",  # (the same rows back, frozen)
    "detach_and_attach": "ALTER TABLE public.parted DETACH PARTITION public.parted_hi;"
    " ALTER TABLE public.parted ATTACH PARTITION public.parted_hi FOR VALUES FROM (100) TO (1000)",
}


@pytest.mark.parametrize("rewrite", REWRITES.values(), ids=REWRITES.keys())
def test_a_rewrite_by_another_session_is_measured(
    conn: psycopg.Connection[Any], owner: psycopg.Connection[Any], rewrite: str
) -> None:
    conn.execute(TABLES)
    taken = dict(one(owner, "SELECT gcos._catalog_mark()"))
    taken["tables"] = one(owner, "SELECT gcos._kernel_tables_mark(%s)", WATCH)
    known = dict(one(owner, "SELECT gcos._kernel_digests(%s)", WATCH))
    same = one(owner, "SELECT gcos._kernel_fingerprint_proved(%s, %s, %s)", WATCH, Jsonb(known), Jsonb(taken))
    need(same["established"] == "proved unchanged", "an untouched world is proved")
    conn.execute(sql.SQL(rewrite).format(file=sql.Literal(f"/tmp/{conn.info.dbname}_s21.copy")))
    got = one(owner, "SELECT gcos._kernel_fingerprint_proved(%s, %s, %s)", WATCH, Jsonb(known), Jsonb(taken))
    assert got["established"] == "measured"
    assert got["hash"] == known["hash"] == one(owner, "SELECT gcos._kernel_digests(%s) ->> 'hash'", WATCH)


def test_a_database_created_elsewhere_in_the_cluster_is_a_change(
    conn: psycopg.Connection[Any], owner: psycopg.Connection[Any]
) -> None:
    """Safe, but costly: pg_database (like pg_shdepend, pg_authid, pg_auth_members, pg_db_role_setting) is shared,
    so a database created or dropped anywhere on the server (each test of a parallel suite does) between mark and
    check leaves nothing proved and the fingerprint is measured in full."""
    taken = dict(one(owner, "SELECT gcos._catalog_mark()"))
    name = sql.Identifier(f"{conn.info.dbname}_s21")
    conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(name))
    try:
        assert not one(owner, "SELECT gcos._catalog_unchanged(%s)", Jsonb(taken))
    finally:
        conn.execute(sql.SQL("DROP DATABASE {}").format(name))
