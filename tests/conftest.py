"""Shared fixtures: one PostgreSQL server per session, a fresh database per test, a scratch project.

Set GCOS_TEST_DSN to a superuser DSN to run the suite against an existing server instead of the
embedded one (each test still gets its own database, dropped afterwards).

Speed (the whole suite runs on every CI run): the embedded test server runs without fsync (its data dir
is thrown away after the session), in memory where there is room, and gcos is installed ONCE per session
into template databases that tests copy (`gcos_installed`, `make_role`, `world_role`) instead of running
every migration per test; tests/_databases.py creates and drops them (see there what each choice saves).
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from _databases import (
    _as_admin,
    _close_admins,
    _create_database,
    _drop_database,
    _fresh_database,
    _server_parent,
    _tune_test_server,
)
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from gcos import reference_world
from gcos.adopt import adopt
from gcos.embedded import EmbeddedServer
from gcos.install import install
from gcos.principals import add_principal
from gcos.target import LIBPQ_ENV, Target, libpq_variables

try:
    import fcntl
except ImportError:  # Windows: each xdist worker builds what it needs on its own
    fcntl = None  # type: ignore[assignment]

REPO = Path(__file__).resolve().parent.parent
PROJECT_DIRS = ("steps", "plans", "rollback")


TERMINAL_ENV = ("COLUMNS", "LINES")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """(pytest-xdist, in the controller) Hand each worker the terminal size variables as this process sees
    them: a worker inherits the C environment, where a terminal library may have set COLUMNS=80 after
    Python read os.environ, and rich fixes its width from COLUMNS once, when gcos.cli is imported."""
    node.workerinput["gcos_terminal_env"] = {name: os.environ.get(name) for name in TERMINAL_ENV}


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """In an xdist worker (before any test module imports gcos.cli): the controller's terminal variables.

    With GCOS_TEST_DSN the tests run in ONE process: roles are the server's, so on one shared server a test that
    grants a cluster role (pg_write_all_data, an online window's gcos_kernel) changes what every other worker's
    adopt and fingerprints see; the default runs each xdist worker on an embedded server of its own."""
    shared = os.environ.get("GCOS_TEST_DSN", "").strip() and not hasattr(config, "workerinput")
    if shared and getattr(config.option, "numprocesses", None):
        config.option.numprocesses = None
        config.option.dist = "no"
        config.issue_config_time_warning(
            pytest.PytestConfigWarning("GCOS_TEST_DSN: one process (roles are the server's; workers would race)"),
            stacklevel=2,
        )
    given: dict[str, str | None] = getattr(config, "workerinput", {}).get("gcos_terminal_env", {})
    for name, value in given.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    _clear_libpq_env()


FULL_WORLD = frozenset(
    {"world_dsn", "world_role", "world_target", "gcos_adopted", "world_template", "installed_world_template"}
)
"""Fixtures of seed 002's full reference world (1,043,000 rows, built once per worker): a test that needs one,
directly or through its own fixtures, is `slow` (so is one marked so by hand: a killed process, the demo)."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark `slow` every test of the full reference world: `pytest -m "not slow"` skips it and its build."""
    for item in items:
        if FULL_WORLD & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def _clear_libpq_env() -> None:
    """Tests name their server only through GCOS_TEST_DSN: libpq's connection variables of the runner's
    shell (PGHOST, PGSERVICE...) would otherwise become the target of every test of the embedded default.
    Whatever of them GCOS_TEST_DSN relied on is written into it first."""
    seen = {key: value for _var, key, value in libpq_variables()}
    given = os.environ.get("GCOS_TEST_DSN", "").strip()
    if given and seen:
        os.environ["GCOS_TEST_DSN"] = make_conninfo(make_conninfo("", **seen), **conninfo_to_dict(given))
    for var in LIBPQ_ENV:
        os.environ.pop(var, None)


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    """The directory this run's xdist workers share (their basetemps' parent), where they meet to build a thing
    once (the wheel of test_anywhere); None outside xdist or without fcntl (each builds its own). Servers and
    databases are never shared: roles are the cluster's, and the fingerprint measures role memberships."""
    if not os.environ.get("PYTEST_XDIST_WORKER") or fcntl is None:
        return None
    return tmp_path_factory.getbasetemp().parent


@contextmanager
def _run_lock(root: Path, name: str) -> Iterator[None]:
    """An exclusive lock that this run's workers share: one builds, the others wait for it and reuse."""
    assert fcntl is not None
    with (root / f"{name}.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def pg_admin_dsn() -> Iterator[str]:
    """A superuser DSN: GCOS_TEST_DSN, else one embedded server for the whole session."""
    given = os.environ.get("GCOS_TEST_DSN", "").strip()
    if given:
        try:
            yield given
        finally:
            _close_admins()
        return
    # Not under pytest's basetemp: a second pytest run prunes old basetemps, even one still in use.
    home = Path(tempfile.mkdtemp(prefix="gcos-test-pg-", dir=_server_parent()))
    server = EmbeddedServer(home)
    server.up()
    try:
        _tune_test_server(server.url("postgres"))
        yield server.url()
    finally:
        _close_admins()
        server.down()
        shutil.rmtree(home, ignore_errors=True)


@contextmanager
def _session_template(
    pg_admin_dsn: str, prefix: str, fill: Callable[[str], None], source: str | None = None
) -> Iterator[str]:
    """A template database for the session: a copy of `source` (else empty) that `fill(dsn)` completes."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    _as_admin(pg_admin_dsn, lambda admin: _create_database(admin, name, source))
    try:
        fill(make_conninfo(pg_admin_dsn, dbname=name))
        yield name
    finally:
        _as_admin(pg_admin_dsn, lambda admin: _drop_database(admin, name))


def _install_into(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        install(conn)


def _adopt_public(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        adopt(conn, ["public"])


def _build_world_into(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        reference_world.build_world(conn)


INSTALLED_BY = frozenset({"gcos_installed", "make_role"})
"""A test that requests one of these gets `dsn`/`conn` copied from a database where gcos is installed."""
WORLD_INSTALLED_BY = frozenset({"gcos_installed", "world_role"})
"""... and `world_dsn` copied from a reference world where gcos is installed."""
WORLD_ADOPTED_BY = frozenset({"gcos_adopted"})
"""... and `world_dsn` copied from a reference world where gcos is installed and schema public adopted."""


@pytest.fixture(scope="session")
def installed_template(pg_admin_dsn: str) -> Iterator[str]:
    """An empty database with every shipped gcos migration installed, once per session (a template)."""
    with _session_template(pg_admin_dsn, "gcos_installed", _install_into) as name:
        yield name


@pytest.fixture
def gcos_installed() -> None:
    """Request it (beside `dsn`/`conn` or `world_dsn`) for a database that has gcos installed already: a copy
    of the session's installed template, so `install()` in the test finds nothing left to do."""


@pytest.fixture
def dsn(request: pytest.FixtureRequest, pg_admin_dsn: str) -> Iterator[str]:
    """DSN of a fresh database created for this test and dropped after it: empty, or with gcos installed
    when the test requests `gcos_installed` or `make_role` (which installs gcos there anyway)."""
    template = request.getfixturevalue("installed_template") if INSTALLED_BY & set(request.fixturenames) else None
    yield from _fresh_database(pg_admin_dsn, template)


@pytest.fixture(scope="session")
def world_template(pg_admin_dsn: str) -> Iterator[str]:
    """Seed 002's reference world at its default size, built once per session as a template database."""
    with _session_template(pg_admin_dsn, "gcos_world", _build_world_into) as name:
        yield name


@pytest.fixture(scope="session")
def installed_world_template(pg_admin_dsn: str, world_template: str) -> Iterator[str]:
    """The reference world with gcos installed, once per session (a template)."""
    with _session_template(pg_admin_dsn, "gcos_world_installed", _install_into, world_template) as name:
        yield name


@pytest.fixture(scope="session")
def adopted_world_template(pg_admin_dsn: str, installed_world_template: str) -> Iterator[str]:
    """The reference world with gcos installed and schema public adopted by the kernel (a template)."""
    with _session_template(pg_admin_dsn, "gcos_world_adopted", _adopt_public, installed_world_template) as name:
        yield name


@pytest.fixture
def gcos_adopted() -> None:
    """Request it beside `world_dsn` (or `world_role`) for a copy of the reference world whose schema public
    the kernel governs already (`gcos adopt public` done), so that rehearse, commit and rollback run there."""


@pytest.fixture
def world_dsn(request: pytest.FixtureRequest, pg_admin_dsn: str) -> Iterator[str]:
    """DSN of a fresh copy of the reference world (cloned from the session's template) for this test; with
    gcos installed when the test requests `gcos_installed` or `world_role` (which installs it anyway), and
    schema public adopted too when it requests `gcos_adopted`."""
    names = set(request.fixturenames)
    if WORLD_ADOPTED_BY & names:
        template = request.getfixturevalue("adopted_world_template")
    else:
        installed = WORLD_INSTALLED_BY & names
        template = request.getfixturevalue("installed_world_template" if installed else "world_template")
    yield from _fresh_database(pg_admin_dsn, template=template)


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


def fingerprint(
    conn: psycopg.Connection[Any], watch: Sequence[str] = (), exclude: Sequence[str] = ("gcos",)
) -> dict[str, Any]:
    """``gcos.fingerprint(watch, exclude)``, the one fingerprint (computed by the database), as the connected
    role in its session: what tests compare worlds with."""
    row = conn.execute("SELECT gcos.fingerprint(%s::text[], %s::text[])", (list(watch), list(exclude))).fetchone()
    assert row is not None
    return dict(row[0])


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


def _role_maker(conn: psycopg.Connection[Any], dsn: str, *, installed: bool = False) -> Iterator[MakeRole]:
    """LOGIN roles with unique names (roles are cluster-wide), optionally principals in the database of
    `conn` (where gcos is installed first unless `installed`: a copy of an installed template, where
    install() finds nothing to do), dropped after the test."""
    if not installed:
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
    """Roles and principals in this test's fresh empty database (gcos installed: a copy of the installed
    template, INSTALLED_BY)."""
    yield from _role_maker(conn, dsn, installed=True)


@pytest.fixture
def world_role(world_dsn: str) -> Iterator[MakeRole]:
    """Roles and principals in this test's copy of the reference world (gcos installed there: a copy of an
    installed template, WORLD_INSTALLED_BY)."""
    with psycopg.connect(world_dsn, autocommit=True) as world_conn:
        yield from _role_maker(world_conn, world_dsn, installed=True)


@pytest.fixture(scope="session")
def small_world(pg_admin_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """tests/test_batched.py's small world after steps 1-4, 6 and 8 (a template), built once per session and
    shared by every module whose `kit` clones it: no test writes the template itself."""
    from test_batched import world_template  # a test module's helper: imported when first needed

    with world_template(pg_admin_dsn, tmp_path_factory.mktemp("small_world")) as name:
        yield name
