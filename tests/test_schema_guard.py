"""Schema gcos is changed by gcos install alone (030): gcos_kernel owns the kernel's executors, and a step's SQL
runs as gcos_kernel, yet it may not ALTER, COMMENT ON, DROP or GRANT them; ordinary roles keep their own DDL."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from conftest import MakeRole
from psycopg import sql

from gcos.install import install

AS_KERNEL = [
    "ALTER FUNCTION gcos._kernel_exec(text) SECURITY INVOKER",
    "ALTER FUNCTION gcos._kernel_exec(text) SET search_path = public",
    "COMMENT ON FUNCTION gcos._kernel_check(jsonb) IS 'mine'",
    "DROP FUNCTION gcos._kernel_fingerprint(text[])",
    "GRANT EXECUTE ON FUNCTION gcos._kernel_exec(text) TO PUBLIC",
    "GRANT EXECUTE ON FUNCTION gcos._kernel_exec(text) TO gcos_owner WITH GRANT OPTION",
    "REVOKE EXECUTE ON FUNCTION gcos._kernel_exec(text) FROM gcos_owner",
    "ALTER FUNCTION gcos._kernel_exec(text) SET SCHEMA public",  # the kernel owns adopted schemas (032)
]


def definition(conn: psycopg.Connection[Any]) -> tuple[Any, ...]:
    row = conn.execute(
        "SELECT p.prosecdef, p.proconfig, p.proacl::text[], obj_description(p.oid, 'pg_proc') FROM pg_proc AS p "
        "WHERE p.oid = 'gcos._kernel_exec(text)'::regprocedure"
    ).fetchone()
    assert row is not None
    return tuple(row)


@pytest.mark.parametrize("statement", AS_KERNEL)
def test_the_kernel_role_cannot_change_its_own_functions_in_schema_gcos(
    conn: psycopg.Connection[Any], gcos_installed: None, statement: str
) -> None:
    """What a step's SQL would run as gcos_kernel (here by a superuser's SET ROLE: current_user is what counts)."""
    before = definition(conn)
    with conn.transaction():
        conn.execute("GRANT CREATE ON SCHEMA public TO gcos_kernel")  # as on an adopted schema
        conn.execute("SET LOCAL ROLE gcos_kernel")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="may not change schema gcos"):
            conn.execute(statement)
    assert definition(conn) == before
    assert conn.execute("SELECT to_regprocedure('gcos._kernel_exec(text)') IS NOT NULL").fetchone() == (True,)
    assert conn.execute("SELECT to_regprocedure('gcos._kernel_fingerprint(text[])') IS NOT NULL").fetchone() == (True,)


def test_ordinary_roles_keep_their_own_ddl_and_grants(
    conn: psycopg.Connection[Any], make_role: MakeRole, gcos_installed: None
) -> None:
    """The guard looks at schema gcos only: a role's DDL and GRANTs on its own objects still work."""
    owner, reader = make_role("owner"), make_role("reader")
    conn.execute(sql.SQL("CREATE SCHEMA own AUTHORIZATION {}").format(sql.Identifier(owner.name)))
    with psycopg.connect(owner.dsn, autocommit=True) as session:
        session.execute(
            "CREATE TABLE own.t (id integer); CREATE FUNCTION own.f() RETURNS int LANGUAGE sql AS 'SELECT 1'"
        )
        session.execute(sql.SQL("GRANT USAGE ON SCHEMA own TO {}").format(sql.Identifier(reader.name)))
        session.execute(sql.SQL("GRANT SELECT ON own.t TO {}").format(sql.Identifier(reader.name)))
        session.execute(sql.SQL("GRANT EXECUTE ON FUNCTION own.f() TO {}").format(sql.Identifier(reader.name)))
        session.execute("ALTER FUNCTION own.f() SECURITY DEFINER; COMMENT ON TABLE own.t IS 'ok'; DROP TABLE own.t")
    with psycopg.connect(reader.dsn, autocommit=True) as session:
        assert session.execute("SELECT own.f()").fetchone() == (1,)


def test_install_still_changes_schema_gcos(conn: psycopg.Connection[Any], gcos_installed: None) -> None:
    """gcos install (a superuser, acting as gcos_owner and as itself) re-runs cleanly with the guard in place."""
    assert install(conn).applied == []
    assert conn.execute(
        "SELECT evtenabled FROM pg_event_trigger WHERE evtname LIKE 'gcos_schema_guard%'"
    ).fetchall() == [
        ("A",),
        ("A",),
    ]


def test_a_check_whose_verdict_is_unknown_fails(conn: psycopg.Connection[Any], gcos_installed: None) -> None:
    """An expectation that evaluates to NULL (a `between` with a NULL bound, which only a caller bypassing the
    client's schema can write) is no pass: ok is false, not NULL (032)."""
    query = "SELECT (gcos._kernel_checks(%s::jsonb) -> 0) ->> 'ok'"
    check = '[{"name": "n", "sql": "SELECT 5", "expect": {"between": [1, null]}}]'
    try:
        row = conn.execute(query, (check,)).fetchone()
    except psycopg.errors.InvalidParameterValue:  # PostgreSQL 15 refuses the NULL bound's cast: no pass either
        return
    assert row == ("false",)


def test_the_executors_read_a_steps_sql_with_standard_conforming_strings_on(
    conn: psycopg.Connection[Any], gcos_installed: None
) -> None:
    """A caller that turns standard_conforming_strings off cannot make an executor read a step's literals
    otherwise than they were rehearsed ('C:\\new' stays a backslash and an n, not a newline)."""
    conn.execute("CREATE TABLE public.gcos_t_paths (v text)")
    conn.execute("ALTER TABLE public.gcos_t_paths OWNER TO gcos_kernel")
    conn.execute("SET standard_conforming_strings = off")
    conn.execute("SET escape_string_warning = off")
    conn.execute("SELECT gcos._kernel_exec(%s)", ("INSERT INTO public.gcos_t_paths VALUES ('C:\\new')",))
    conn.execute("RESET standard_conforming_strings")
    assert conn.execute("SELECT v FROM public.gcos_t_paths").fetchall() == [("C:\\new",)]
    unpinned = conn.execute(
        "SELECT count(*) FROM pg_proc WHERE pronamespace = 'gcos'::regnamespace AND proowner = 'gcos_kernel'::regrole"
        " AND NOT ('standard_conforming_strings=on' = ANY (COALESCE(proconfig, '{}')))"
    ).fetchone()
    assert unpinned == (0,)  # every executor, not only _kernel_exec
