"""Attacks on what session 19 landed (issue 11): the managed install (034, gcos/managed.py), the approver role
vocabulary (033), gcos new (gcos/scaffold.py), gcos status/apply (gcos/step_rows.py, gcos/apply_plan.py).

A hole is a test marked xfail(strict=True) that asserts the SAFE behaviour: it fails while the hole is open and
passes once it is mended (then strict xfail turns it red, and the marker comes off). Each names its fix.
People are real LOGIN roles (tests/test_commit.py's World); nothing is mocked.
"""

from __future__ import annotations

import contextlib
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from test_commit import PEOPLE, World, adopted_world

from gcos import commands, ledger
from gcos.errors import SpecError
from gcos.managed import INSTALL_ROLES, KERNEL_ROLE
from gcos.scaffold import init_project, new_step
from gcos.target import Target


@pytest.fixture
def world(world_dsn: str, gcos_adopted: None, project_dir: Path) -> Iterator[World]:
    yield from adopted_world(world_dsn, project_dir)


# --------------------------------------------------------------------------- the managed installer, next door


def _installer_of_another_database(pg_admin_dsn: str) -> tuple[str, str]:
    """A role as a managed install of ANOTHER database of this cluster leaves its installer: LOGIN, CREATEROLE,
    and (PostgreSQL 16+) ADMIN OPTION on the gcos cluster roles, which CREATE ROLE gives their creator and which
    tests/test_managed_install.py's fixture grants the same way. Before 16, CREATEROLE alone may grant them."""
    name, password = f"gcos_t_{uuid.uuid4().hex[:8]}_nextdoor", secrets.token_hex(12)
    ident = sql.Identifier(name)
    with psycopg.connect(pg_admin_dsn, autocommit=True) as su:
        su.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEROLE PASSWORD {}").format(ident, sql.Literal(password)))
        if su.info.server_version >= 160000:
            for role in (*INSTALL_ROLES, KERNEL_ROLE):
                grant = "GRANT {} TO {} WITH ADMIN OPTION, INHERIT FALSE, SET FALSE"
                su.execute(sql.SQL(grant).format(sql.Identifier(role), ident))
    return name, password


def _adopted_table(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute(
        "SELECT c.relname::text FROM pg_class AS c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'"
        " AND pg_get_userbyid(c.relowner) = 'gcos_kernel' ORDER BY 1 LIMIT 1"
    ).fetchone()
    assert row is not None, "the adopted world has tables owned by gcos_kernel"
    return str(row[0])


@pytest.mark.xfail(
    strict=True,
    reason="hole: the cluster roles gcos_owner/gcos_kernel are shared by every database of the cluster, so the "
    "installer of a managed install elsewhere (ADMIN OPTION on them; any CREATEROLE role before PG16) makes "
    "itself gcos_kernel here and changes an adopted schema of a database it does not own, outside the kernel",
)
def test_the_installer_of_another_database_cannot_change_this_adopted_schema(world: World, pg_admin_dsn: str) -> None:
    # Fix: per-database kernel roles (gcos_kernel_<db oid>, gcos_owner_<db oid>, created and granted by install),
    # or, at the least, install/adopt refusing while a role that is not this database's owner or a superuser
    # holds ADMIN OPTION on gcos_kernel/gcos_owner (adopt's kernel_admins already lists them, after the fact).
    name, password = _installer_of_another_database(pg_admin_dsn)
    table = _adopted_table(world.admin)
    before = world.admin.execute(sql.SQL("SELECT count(*) FROM public.{}").format(sql.Identifier(table))).fetchone()
    head = world.head()
    try:
        with psycopg.connect(make_conninfo(world.dsn, user=name, password=password), autocommit=True) as conn:
            for statement in (
                sql.SQL("GRANT gcos_kernel TO CURRENT_USER"),
                sql.SQL("SET ROLE gcos_kernel"),
                sql.SQL("DELETE FROM public.{}").format(sql.Identifier(table)),
                sql.SQL("CREATE TABLE public.planted_nextdoor (id integer)"),
            ):
                with contextlib.suppress(psycopg.errors.InsufficientPrivilege):  # refused: safe
                    conn.execute(statement)
        after = world.admin.execute(sql.SQL("SELECT count(*) FROM public.{}").format(sql.Identifier(table)))
        planted = world.admin.execute("SELECT to_regclass('public.planted_nextdoor')").fetchone()
        assert world.head() == head  # nothing recorded either way: the kernel never saw it
        assert (after.fetchone(), planted) == (before, (None,))
    finally:
        with psycopg.connect(pg_admin_dsn, autocommit=True) as su:
            su.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


# --------------------------------------------------------------------------- status and apply after an edit


def _commit_sb12_then_edit_it(world: World) -> None:
    """SB-12 committed, then its spec edited on disk: the committed comment is no longer what the spec says."""
    world.rehearse("SB-12")
    world.approve("SB-12")
    world.commit("SB-12")
    spec = world.project / "steps" / "01-sb-12.yaml"
    text = spec.read_text()
    assert "not law. Created as draft" in text
    spec.write_text(text.replace("not law. Created as draft", "not law (v2). Created as draft"))


def test_status_does_not_call_a_step_edited_after_its_commit_done(world: World) -> None:
    # Mended: gcos/step_rows.row: when projected.committed_spec_hash != projected.spec_hash_current, done=False
    # and next says the spec changed since its commit (ledger seq N): restore it as committed, then roll it back
    # (the kernel rolls back only the spec committed) and commit the new one, or put the change in a new step.
    _commit_sb12_then_edit_it(world)
    code, out = world.cli("status", who="sovereign")
    assert code == 0, out
    row = next(s["row"] for s in out["result"]["steps"] if s["id"] == "SB-12")
    assert row["done"] is False and row["next"] != "done"


def test_apply_does_not_skip_a_step_whose_spec_changed_since_its_commit(world: World) -> None:
    # Mended: gcos/apply_plan.apply: skip only when h.last_commit.spec_hash == project.steps[step_id].hash; else
    # stop there (exit 3, GateRefused) saying the committed spec differs from the one on disk.
    _commit_sb12_then_edit_it(world)
    _, out = world.cli("apply", "build")
    applied = (out.get("details") or {}).get("apply") or out.get("result") or {}
    first = applied["steps"][0]
    assert first["step"] == "SB-12"
    assert first["outcome"] != "skipped"


# --------------------------------------------------------------------------- gcos new writes inside the project


def test_new_never_writes_through_a_dangling_symlink(tmp_path: Path) -> None:
    # Mended: gcos/scaffold.new_step: create the spec and rollback files with open(path, "x") (O_CREAT|O_EXCL,
    # which refuses any existing name, a dangling symlink included) instead of exists() then write_text().
    root = tmp_path / "project"
    root.mkdir()
    init_project(root, [])
    outside = tmp_path / "outside.sql"
    (root / "rollback").mkdir(exist_ok=True)
    (root / "rollback" / "add-t.sql").symlink_to(outside)
    change = tmp_path / "change.sql"
    change.write_text("CREATE TABLE t (id integer);\n")
    with contextlib.suppress(SpecError):  # refused: safe
        new_step(root, "ADD-T", change)
    assert not outside.exists()


def test_new_refuses_a_step_id_that_would_leave_the_project(tmp_path: Path) -> None:
    """The step id names the files new writes (steps/<id>.yaml, rollback/<id>.sql): one with a path in it is
    bad input (the step_id pattern), refused before anything is written anywhere."""
    root = tmp_path / "a" / "project"
    root.mkdir(parents=True)
    init_project(root, [])
    change = tmp_path / "change.sql"
    change.write_text("CREATE TABLE t (id integer);\n")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    for step in ("../../escape", "..", "A/../../B", "/tmp/x"):
        with pytest.raises(SpecError):
            new_step(root, step, change)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


# --------------------------------------------------------------------------- 034: the bootstrap on a superuser install


def test_bootstrap_admin_registers_nobody_in_a_superuser_installed_database(world: World) -> None:
    """_bootstrap_admin runs only as gcos_owner; even as gcos_owner (a superuser's session standing in for an
    install) it registers no role that is a superuser, and writes no ledger record."""
    head = world.head()
    with pytest.raises(psycopg.errors.InsufficientPrivilege), world.admin.transaction():
        world.admin.execute("SET LOCAL ROLE gcos_owner")
        world.admin.execute("SELECT gcos._bootstrap_admin(%s)", (ledger.new_trace_id(),))
    assert world.head() == head


# --------------------------------------------------------------------------- status names who approved


def test_status_names_the_approver_whose_approval_counts(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    # Mended: gcos/step_rows.row: for APPROVED take `when`/`by` from the latest approval entry whose payload
    # approval_id is in projected.approval_ids (the ids gate 5 counts), not from any approval record of the step.
    monkeypatch.setitem(PEOPLE, "second", ("human", ("sovereign",)))
    world.rehearse("SB-12")
    world.approve("SB-12", who="sovereign")
    second = world.approve("SB-12", who="second").approval_id
    commands.revoke(world.target("second"), second, reason="not mine to sign")
    code, out = world.cli("status", who="operator")
    assert code == 0, out
    row = next(s["row"] for s in out["result"]["steps"] if s["id"] == "SB-12")
    assert row["shown"] == "approved"  # the sovereign's approval still counts
    assert row["by"] == "Sovereign"


# --------------------------------------------------------------------------- gcos init reads others' tables


def test_init_runs_no_code_of_a_table_owner(conn: psycopg.Connection[Any], dsn: str, tmp_path: Path) -> None:
    # Mended: gcos/scaffold._count: SET LOCAL row_security = off in its transaction (a table a policy would filter
    # then raises 42501 and is listed as unreadable, as now), and a short SET LOCAL statement_timeout.
    owner, runner, password = (f"gcos_t_{uuid.uuid4().hex[:8]}_{w}" for w in ("bait", "newcomer", "pw"))
    ident = sql.Identifier(owner)
    conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(ident))
    conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(runner), sql.Literal(password)))
    try:
        conn.execute("CREATE TABLE public.ran (who text)")
        conn.execute("GRANT INSERT ON public.ran TO PUBLIC")
        conn.execute("CREATE TABLE public.bait (id integer)")
        conn.execute("INSERT INTO public.bait VALUES (1)")
        conn.execute(
            "CREATE FUNCTION public.trap() RETURNS boolean LANGUAGE sql VOLATILE"
            " AS $$ INSERT INTO public.ran VALUES (current_user) RETURNING true $$"
        )
        conn.execute("ALTER TABLE public.bait ENABLE ROW LEVEL SECURITY")
        conn.execute("CREATE POLICY everyone ON public.bait FOR SELECT USING (public.trap())")
        conn.execute("GRANT SELECT ON public.bait TO PUBLIC")
        for obj in ("TABLE public.bait", "TABLE public.ran", "FUNCTION public.trap()"):
            conn.execute(sql.SQL(f"ALTER {obj} OWNER TO {{}}").format(ident))
        target = Target(make_conninfo(dsn, user=runner, password=password), "--dsn")
        commands.init(target, tmp_path / "project")
        ran = conn.execute("SELECT who FROM public.ran").fetchall()
        assert ran == []  # the owner's function never ran as the role running gcos init
    finally:
        conn.execute("DROP TABLE IF EXISTS public.bait, public.ran")
        conn.execute("DROP FUNCTION IF EXISTS public.trap()")
        conn.execute(sql.SQL("DROP ROLE {}").format(ident))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(runner)))
