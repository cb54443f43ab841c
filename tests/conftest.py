"""Shared fixtures: one PostgreSQL server per session, a fresh database per test, a scratch project.

Set GCOS_TEST_DSN to a superuser DSN to run the suite against an existing server instead of the
embedded one (each test still gets its own database, dropped afterwards).
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from gcos import reference_world
from gcos.embedded import EmbeddedServer
from gcos.install import install
from gcos.principals import add_principal
from gcos.target import Target

REPO = Path(__file__).resolve().parent.parent
PROJECT_DIRS = ("steps", "plans", "rollback")


@pytest.fixture(scope="session")
def pg_admin_dsn() -> Iterator[str]:
    """A superuser DSN: GCOS_TEST_DSN, else one embedded server for the whole session."""
    given = os.environ.get("GCOS_TEST_DSN", "").strip()
    if given:
        yield given
        return
    # Not under pytest's basetemp: a second pytest run prunes old basetemps, even one still in use.
    home = Path(tempfile.mkdtemp(prefix="gcos-test-pg-"))
    server = EmbeddedServer(home)
    server.up()
    try:
        yield server.url()
    finally:
        server.down()
        shutil.rmtree(home, ignore_errors=True)


def _fresh_database(pg_admin_dsn: str, template: str | None = None) -> Iterator[str]:
    name = f"gcos_test_{uuid.uuid4().hex[:12]}"
    create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template:
        create += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
    with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
        admin.execute(create)
        force = admin.info.server_version >= 130000
    try:
        yield make_conninfo(pg_admin_dsn, dbname=name)
    finally:
        with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
            drop = (
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)") if force else sql.SQL("DROP DATABASE IF EXISTS {}")
            )
            admin.execute(drop.format(sql.Identifier(name)))


@pytest.fixture
def dsn(pg_admin_dsn: str) -> Iterator[str]:
    """DSN of a fresh, empty database created for this test and dropped after it."""
    yield from _fresh_database(pg_admin_dsn)


@pytest.fixture(scope="session")
def world_template(pg_admin_dsn: str) -> Iterator[str]:
    """Seed 002's reference world at its default size, built once per session as a template database."""
    name = f"gcos_world_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        with psycopg.connect(make_conninfo(pg_admin_dsn, dbname=name), autocommit=True) as conn:
            reference_world.build_world(conn)
        yield name
    finally:
        with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


@pytest.fixture
def world_dsn(pg_admin_dsn: str, world_template: str) -> Iterator[str]:
    """DSN of a fresh copy of the reference world (cloned from the session's template) for this test."""
    yield from _fresh_database(pg_admin_dsn, template=world_template)


@pytest.fixture
def world_target(world_dsn: str) -> Target:
    return Target(world_dsn, "--dsn")


@pytest.fixture
def conn(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection to this test's fresh database."""
    with psycopg.connect(dsn, autocommit=True) as connection:
        yield connection


@pytest.fixture
def target(dsn: str) -> Target:
    """This test's fresh database as a gcos Target (as if given with --dsn)."""
    return Target(dsn, "--dsn")


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    """A scratch copy of the repo's steps/, plans/ and rollback/ (missing ones are created empty)."""
    root = tmp_path / "project"
    for name in PROJECT_DIRS:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, root / name)
        else:
            (root / name).mkdir(parents=True)
    return root


@dataclass(frozen=True)
class Role:
    name: str
    dsn: str
    oid: int

    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.dsn, autocommit=True)


MakeRole = Callable[..., Role]


def _role_maker(conn: psycopg.Connection[Any], dsn: str) -> Iterator[MakeRole]:
    """LOGIN roles with unique names (roles are cluster-wide), optionally principals in the database of
    `conn` (where gcos is installed first), dropped after the test."""
    install(conn)
    made: list[str] = []

    def make(
        hint: str,
        *,
        kind: str | None = None,
        roles: tuple[str, ...] = (),
        grant: tuple[str, ...] = (),
        superuser: bool = False,
    ) -> Role:
        name = f"gcos_t_{uuid.uuid4().hex[:8]}_{hint}"
        password = secrets.token_hex(12)
        flags = sql.SQL(" SUPERUSER" if superuser else "")
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}{}").format(sql.Identifier(name), sql.Literal(password), flags)
        )
        made.append(name)
        for group in grant:
            conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(f"gcos_{group}"), sql.Identifier(name)))
        if kind is not None:
            add_principal(conn, name, name=hint.title(), kind=kind, roles=roles, grant=False)
        row = conn.execute("SELECT oid::bigint FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
        assert row is not None
        return Role(name, make_conninfo(dsn, user=name, password=password), row[0])

    yield make
    for name in reversed(made):
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


@pytest.fixture
def make_role(conn: psycopg.Connection[Any], dsn: str) -> Iterator[MakeRole]:
    """Roles and principals in this test's fresh empty database (gcos installed)."""
    yield from _role_maker(conn, dsn)


@pytest.fixture
def world_role(world_dsn: str) -> Iterator[MakeRole]:
    """Roles and principals in this test's copy of the reference world (gcos installed there)."""
    with psycopg.connect(world_dsn, autocommit=True) as world_conn:
        yield from _role_maker(world_conn, world_dsn)
