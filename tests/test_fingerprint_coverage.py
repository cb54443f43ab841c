"""The fingerprint's categories added by 042 (issue 13 item 4): a change in each one changes the fingerprint
and is named by the kernel (``gcos._fp_differences``); statistics churn changes nothing; the per-category
digests say which categories differ, and ``gcos.fingerprint_objects`` names the objects."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from conftest import MakeRole, fingerprint
from psycopg import sql
from psycopg.types.json import Jsonb

Conn = psycopg.Connection[Any]


def named(conn: Conn, before: dict[str, Any], after: dict[str, Any]) -> set[str]:
    row = conn.execute("SELECT gcos._fp_differences(%s, %s)", (Jsonb(before), Jsonb(after))).fetchone()
    assert row is not None
    return {str(line) for line in row[0]}


def changed(conn: Conn, change: str) -> tuple[dict[str, Any], dict[str, Any], set[str]]:
    before = fingerprint(conn)
    conn.execute(change)
    after = fingerprint(conn)
    return before, after, named(conn, before, after)


CASES = [
    pytest.param(
        "CREATE COLLATION public.c_nat (provider = libc, locale = 'C')",
        {"collation public.c_nat added"},
        id="collation",
    ),
    pytest.param(
        "CREATE TYPE public.pair AS (a int, b int);"
        "CREATE FUNCTION public.pair_text(public.pair) RETURNS text LANGUAGE sql IMMUTABLE AS 'SELECT $1::text';"
        "CREATE CAST (public.pair AS text) WITH FUNCTION public.pair_text(public.pair)",
        {'cast "public.pair AS text" added'},
        id="cast",
    ),
    pytest.param(
        "CREATE FUNCTION public.near(int, int) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT abs($1 - $2) < 2';"
        "CREATE OPERATOR public.=~= (LEFTARG = int, RIGHTARG = int, FUNCTION = public.near)",
        {'operator public."=~="(integer, integer) added'},
        id="operator",
    ),
    pytest.param(
        "CREATE TEXT SEARCH CONFIGURATION public.plain (COPY = pg_catalog.simple)",
        {"text_search public.plain(configuration) added"},
        id="text_search",
    ),
    pytest.param(
        "CREATE FOREIGN DATA WRAPPER fdw_e; CREATE SERVER srv_e FOREIGN DATA WRAPPER fdw_e OPTIONS (host 'h')",
        {"foreign_server srv_e(server) added"},
        id="foreign_server",
    ),
    pytest.param(
        "CREATE TABLE public.pub_t (id int PRIMARY KEY); CREATE PUBLICATION pub_e FOR TABLE public.pub_t",
        {"publication pub_e added"},
        id="publication",
    ),
]


@pytest.mark.parametrize(("change", "expected"), CASES)
def test_each_new_category_sees_its_object(conn: Conn, gcos_installed: None, change: str, expected: set[str]) -> None:
    setup, _, last = change.rpartition(";")
    if setup:
        conn.execute(setup)
    before, after, lines = changed(conn, last)
    assert after["hash"] != before["hash"]
    assert expected <= lines, lines
    category = next(iter(expected)).split(" ", 1)[0]
    assert after["digests"][category] != before["digests"][category]
    assert {c for c in after["digests"] if after["digests"][c] != before["digests"][c]} == {category}


def test_database_settings_are_seen(conn: Conn, gcos_installed: None) -> None:
    name = conn.execute("SELECT current_database()").fetchone()
    assert name is not None
    set_work_mem = sql.SQL("ALTER DATABASE {} SET work_mem = '8MB'").format(sql.Identifier(name[0]))
    _, after, lines = changed(conn, set_work_mem.as_string(conn))
    assert lines == {"database database changed"}
    conn.execute(sql.SQL("ALTER DATABASE {} SET work_mem = '16MB'").format(sql.Identifier(name[0])))
    assert named(conn, after, fingerprint(conn)) == {"database database changed"}


def test_role_attributes_memberships_and_settings_of_an_owner_are_seen(
    conn: Conn, gcos_installed: None, make_role: MakeRole
) -> None:
    owner = make_role("owner")
    other = make_role("other")
    conn.execute(sql.SQL("CREATE TABLE public.owned (id int)"))
    conn.execute(sql.SQL("ALTER TABLE public.owned OWNER TO {}").format(sql.Identifier(owner.name)))
    name = conn.execute("SELECT current_database()").fetchone()
    assert name is not None
    ident = sql.Identifier(owner.name)
    for change in (
        sql.SQL("ALTER ROLE {} CREATEDB").format(ident),
        sql.SQL("GRANT {} TO {}").format(sql.Identifier(other.name), ident),
        sql.SQL("ALTER ROLE {} SET statement_timeout = '5s'").format(ident),
        sql.SQL("ALTER ROLE {} IN DATABASE {} SET work_mem = '8MB'").format(ident, sql.Identifier(name[0])),
    ):
        _, _, lines = changed(conn, change.as_string(conn))
        assert lines == {f"role {owner.name} changed"}, (change, lines)
    # a role that owns nothing here is not watched; one granted on a table is
    _, _, lines = changed(conn, sql.SQL("ALTER ROLE {} CREATEDB").format(sql.Identifier(other.name)).as_string(conn))
    assert lines == set()
    _, _, lines = changed(
        conn, sql.SQL("GRANT SELECT ON public.owned TO {}").format(sql.Identifier(other.name)).as_string(conn)
    )
    assert f"role {other.name} added" in lines


def test_membership_in_principal_groups_is_left_to_the_ledger(
    conn: Conn, gcos_installed: None, make_role: MakeRole
) -> None:
    """Principals take gcos_operator, gcos_sovereign, gcos_council, gcos_auditor (rights on gcos's functions
    only, which act for recorded principals): not drift. gcos_admin, gcos_owner, gcos_kernel are measured."""
    owner = make_role("owner")
    conn.execute(sql.SQL("CREATE TABLE public.owned (id int)"))
    conn.execute(sql.SQL("ALTER TABLE public.owned OWNER TO {}").format(sql.Identifier(owner.name)))
    ident = sql.Identifier(owner.name)
    for group in ("gcos_operator", "gcos_sovereign", "gcos_council", "gcos_auditor"):
        _, _, lines = changed(conn, sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), ident).as_string(conn))
        assert lines == set(), group
    for group in ("gcos_admin", "gcos_owner"):
        _, _, lines = changed(conn, sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), ident).as_string(conn))
        assert f"role {owner.name} changed" in lines, group  # (gcos_owner, watched here too, lists it as a member)
        conn.execute(sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(group), ident))


def test_the_membership_an_online_window_lends_is_left_to_the_ledger(
    world_dsn: str, gcos_adopted: None, world_role: MakeRole
) -> None:
    """The shape gcos._online_member lends (gcos_kernel, INHERIT TRUE, SET FALSE, no ADMIN, a superuser's grant)
    changes no fingerprint: roles are the cluster's, and a window in any database of the server would change
    every other's mid-rehearsal. Any other membership in gcos_kernel is measured."""
    with psycopg.connect(world_dsn, autocommit=True) as conn:
        if conn.info.server_version < 160000:
            pytest.skip("before 16 a membership has no INHERIT/SET options and online windows are refused")
        login = sql.Identifier(world_role("window").name)
        start = fingerprint(conn)
        _, _, lines = changed(
            conn, sql.SQL("GRANT gcos_kernel TO {} WITH INHERIT TRUE, SET FALSE").format(login).as_string(conn)
        )
        assert lines == set()
        conn.execute(sql.SQL("REVOKE gcos_kernel FROM {}").format(login))
        _, _, lines = changed(
            conn, sql.SQL("GRANT gcos_kernel TO {} WITH INHERIT TRUE, SET TRUE").format(login).as_string(conn)
        )
        assert "role gcos_kernel changed" in lines
        conn.execute(sql.SQL("REVOKE gcos_kernel FROM {}").format(login))
        assert fingerprint(conn)["hash"] == start["hash"]


def test_members_of_a_watched_role_are_seen_through_every_level(
    conn: Conn, gcos_installed: None, make_role: MakeRole
) -> None:
    """A member acts with its role's rights: a new member, a member of that member, the member's options and
    its own flags all change the fingerprint; taking the membership back restores it."""
    owner, group, login = make_role("owner"), make_role("group"), make_role("login")
    conn.execute(sql.SQL("CREATE TABLE public.owned (id int)"))
    conn.execute(sql.SQL("ALTER TABLE public.owned OWNER TO {}").format(sql.Identifier(owner.name)))
    start = fingerprint(conn)
    o, g, lg = (sql.Identifier(r.name) for r in (owner, group, login))
    _, _, lines = changed(conn, sql.SQL("GRANT {} TO {}").format(o, g).as_string(conn))
    assert lines == {f"role {owner.name} changed", f"role {group.name} added"}
    _, _, lines = changed(conn, sql.SQL("GRANT {} TO {}").format(g, lg).as_string(conn))
    assert lines == {f"role {group.name} changed", f"role {login.name} added"}
    _, _, lines = changed(conn, sql.SQL("ALTER ROLE {} SUPERUSER").format(lg).as_string(conn))
    assert lines == {f"role {login.name} changed"}
    if conn.info.server_version >= 160000:
        _, _, lines = changed(conn, sql.SQL("GRANT {} TO {} WITH INHERIT FALSE").format(g, lg).as_string(conn))
        assert lines == {f"role {group.name} changed", f"role {login.name} changed"}
    conn.execute(sql.SQL("ALTER ROLE {} NOSUPERUSER; REVOKE {} FROM {}; REVOKE {} FROM {}").format(lg, g, lg, o, g))
    assert fingerprint(conn)["hash"] == start["hash"]


@pytest.mark.parametrize("data_role", ["pg_write_all_data", "pg_read_all_data", "pg_maintain"])
def test_members_of_the_predefined_data_roles_are_seen(
    conn: Conn, gcos_installed: None, make_role: MakeRole, data_role: str
) -> None:
    """They write, read or lock every table around the grants, so who holds them is part of every world."""
    if conn.execute("SELECT to_regrole(%s)", (data_role,)).fetchone() == (None,):
        pytest.skip(f"{data_role} is PostgreSQL 17+")
    login = make_role("login")
    start = fingerprint(conn)
    grant = sql.SQL("GRANT {} TO {}").format(sql.Identifier(data_role), sql.Identifier(login.name))
    _, _, lines = changed(conn, grant.as_string(conn))
    assert lines == {f"role {data_role} added", f"role {login.name} added"}
    conn.execute(sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(data_role), sql.Identifier(login.name)))
    assert fingerprint(conn)["hash"] == start["hash"]


def test_database_owner_and_grants_are_seen_and_a_grant_taken_back_leaves_no_trace(
    conn: Conn, gcos_installed: None, make_role: MakeRole
) -> None:
    """adopt (as a non-superuser) grants CREATE on the database to the kernel for its transaction and takes it
    back: the explicit ACL that leaves behind equals the default one and must not read as drift."""
    login = make_role("login")
    db, who = sql.Identifier(conn.info.dbname), sql.Identifier(login.name)
    row = conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()").fetchone()
    assert row is not None
    start = fingerprint(conn)
    for change in (sql.SQL("GRANT CREATE ON DATABASE {} TO {}"), sql.SQL("GRANT CONNECT ON DATABASE {} TO {}")):
        _, _, lines = changed(conn, change.format(db, who).as_string(conn))
        assert lines == {"database database changed"}, change
    conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM {}").format(db, who))
    explicit = conn.execute("SELECT datacl IS NOT NULL FROM pg_database WHERE datname = current_database()").fetchone()
    assert explicit == (True,)  # the catalog keeps an explicit (default-equal) ACL ...
    assert fingerprint(conn)["hash"] == start["hash"]  # ... which the fingerprint reads as the default
    _, _, lines = changed(conn, sql.SQL("ALTER DATABASE {} OWNER TO {}").format(db, who).as_string(conn))
    assert lines == {"database database changed"}
    conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(db, sql.Identifier(str(row[0]))))
    assert fingerprint(conn)["hash"] == start["hash"]


def test_adopt_leaves_the_database_as_it_found_it(world_dsn: str, gcos_adopted: None) -> None:
    """What adopt leaves as the baseline: the database's owner, no grant, no setting (the reference world)."""
    with psycopg.connect(world_dsn, autocommit=True) as conn:
        objects = dict(conn.execute("SELECT identity, sha256 FROM gcos.fingerprint_objects('database')").fetchall())
        row = conn.execute(
            "SELECT encode(sha256(convert_to(ROW(pg_get_userbyid(datdba), NULL::text[], NULL::text[])::text,"
            " 'UTF8')), 'hex') FROM pg_database WHERE datname = current_database()"
        ).fetchone()
        assert row is not None
        assert objects == {"database": row[0]}


def test_analyze_and_vacuum_change_nothing_in_any_category(conn: Conn, gcos_installed: None) -> None:
    conn.execute(
        "CREATE TABLE public.t (id serial PRIMARY KEY, a int);"
        "INSERT INTO public.t (a) SELECT g FROM generate_series(1, 500) g;"
        "CREATE COLLATION public.c2 (provider = libc, locale = 'POSIX');"
        "CREATE TEXT SEARCH CONFIGURATION public.ts2 (COPY = pg_catalog.simple);"
        "CREATE PUBLICATION pub2 FOR TABLE public.t"
    )
    before = fingerprint(conn, ["t"])
    for statement in ("ANALYZE", "VACUUM", "VACUUM (FULL, ANALYZE) public.t", "ANALYZE public.t"):
        conn.execute(statement)
    assert fingerprint(conn, ["t"]) == before


def test_digests_travel_without_the_object_map_and_objects_name_a_category(conn: Conn, gcos_installed: None) -> None:
    conn.execute("CREATE TABLE public.t (id int PRIMARY KEY, b text)")
    full = fingerprint(conn)
    row = conn.execute("SELECT gcos.fingerprint_digests()").fetchone()
    assert row is not None
    light = dict(row[0])
    assert "schema" not in light and light["hash"] == full["hash"] and light["digests"] == full["digests"]
    objects = dict(conn.execute("SELECT identity, sha256 FROM gcos.fingerprint_objects('column')").fetchall())
    assert objects == full["schema"]["column"]
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        conn.execute("SELECT * FROM gcos.fingerprint_objects('nonsense')")


def test_an_auditor_recomputes_each_digest_from_the_map(conn: Conn, gcos_installed: None) -> None:
    from gcos.canonical import content_hash

    conn.execute("CREATE TABLE public.t (id int PRIMARY KEY, b text)")
    fp = fingerprint(conn)
    for category, objects in fp["schema"].items():
        assert content_hash(objects) == fp["digests"][category], category


def test_a_fingerprint_recorded_before_a_category_existed_is_not_drift_in_it(conn: Conn, gcos_installed: None) -> None:
    """A baseline recorded before 042 has no digests and no role/collation/... maps: after an upgrade the
    kernel compares what both measured, so the new categories' existing objects are not named as added."""
    conn.execute("CREATE TABLE public.t (id int); CREATE COLLATION public.c3 (provider = libc, locale = 'C')")
    now = fingerprint(conn)
    old = {**now, "schema": {c: o for c, o in now["schema"].items() if c not in ("collation", "role")}}
    del old["digests"]
    assert named(conn, old, now) == set()
    conn.execute("ALTER TABLE public.t ADD COLUMN b int")
    assert named(conn, old, fingerprint(conn)) == {"column public.t.b added"}
