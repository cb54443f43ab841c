"""gcos install and adopt as a managed service's role: CREATEROLE, owner of the database, no superuser (issue 11
item 4), then the gated story on it, and what that role and an operator can and cannot do outside the kernel.

The test server is shared by every test, so the cluster roles gcos_* usually exist already (a superuser made
them). A CREATEROLE role on PostgreSQL 16+ holds ADMIN OPTION only on roles it created itself: the fixture
grants it exactly that (ADMIN OPTION, no INHERIT, no SET; what CREATE ROLE gives its creator), so the install
runs as it would have on a fresh managed cluster. Before 16, CREATEROLE alone may grant these roles.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from typer.testing import CliRunner

from gcos import commands, ledger
from gcos.adopt import SchemaChange, adopt
from gcos.cli import app
from gcos.errors import GateRefused
from gcos.install import install
from gcos.managed import INSTALL_ROLES, KERNEL_ROLE, MISSING
from gcos.principals import add_principal
from gcos.target import Target

STEP = """\
id: NOTE-1
title: A second thing
approvals: {signers: 1, roles: [sovereign]}
reverify:
  - {name: one thing, sql: "SELECT count(*) FROM things", expect: 1}
success:
  - {name: two things, sql: "SELECT count(*) FROM things", expect: 2}
mutation:
  sql: "INSERT INTO things (id, label) VALUES (2, 'two')"
  allow:
    - {insert: things}
rollback: {sql: "DELETE FROM things WHERE id = 2"}
"""


@dataclass
class Managed:
    """A database owned by a CREATEROLE role (`installer`), as a managed service hands it out."""

    admin_dsn: str  # the test server's superuser, for reading the catalog and cleaning up only
    dsn: str  # as the installer
    installer: str
    dbname: str
    logins: dict[str, str]

    def connect(self, who: str | None = None) -> psycopg.Connection[Any]:
        return psycopg.connect(self.logins[who] if who else self.dsn, autocommit=True)

    def person(self, who: str, kind: str, roles: tuple[str, ...]) -> Target:
        """A LOGIN role the installer creates and registers as a principal (the installer is the gcos admin)."""
        name, password = f"gcos_t_{uuid.uuid4().hex[:8]}_{who}", secrets.token_hex(12)
        with self.connect() as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(name), sql.Literal(password))
            )
            add_principal(conn, name, name=who.title(), kind=kind, roles=roles)
        self.logins[who] = make_conninfo(self.dsn, user=name, password=password)
        return Target(self.logins[who], "--dsn")


@pytest.fixture
def managed(pg_admin_dsn: str, installed_template: str) -> Iterator[Managed]:
    """`installed_template` only makes sure the gcos cluster roles exist (see the module docstring)."""
    installer, password = f"gcos_t_{uuid.uuid4().hex[:8]}_installer", secrets.token_hex(12)
    dbname = f"gcos_test_{uuid.uuid4().hex[:12]}"
    ident = sql.Identifier(installer)
    with psycopg.connect(pg_admin_dsn, autocommit=True) as su:
        su.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEROLE PASSWORD {}").format(ident, sql.Literal(password)))
        su.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(dbname), ident))
        if su.info.server_version >= 160000:
            for role in (*INSTALL_ROLES, KERNEL_ROLE):
                su.execute(
                    sql.SQL("GRANT {} TO {} WITH ADMIN OPTION, INHERIT FALSE, SET FALSE").format(
                        sql.Identifier(role), ident
                    )
                )
    dsn = make_conninfo(pg_admin_dsn, dbname=dbname, user=installer, password=password)
    world = Managed(make_conninfo(pg_admin_dsn, dbname=dbname), dsn, installer, dbname, {})
    try:
        yield world
    finally:
        with psycopg.connect(pg_admin_dsn, autocommit=True) as su:
            su.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
            for login in world.logins.values():
                name = psycopg.conninfo.conninfo_to_dict(login)["user"]
                su.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(str(name))))
            su.execute(sql.SQL("DROP ROLE {}").format(ident))


def _acts_as(conn: psycopg.Connection[Any], role: str) -> list[str]:
    """The gcos roles `role` can SET ROLE to or inherits the rights of (an ADMIN OPTION alone is neither)."""
    how = "pg_has_role(%s, b.oid, 'SET') OR pg_has_role(%s, b.oid, 'USAGE')"
    if conn.info.server_version < 160000:
        how = "pg_has_role(%s, b.oid, 'MEMBER') AND %s::text IS NOT NULL"
    gcos_roles = "b.rolname LIKE 'gcos\\_%%' AND b.rolname NOT LIKE 'gcos\\_t\\_%%'"
    query = f"SELECT b.rolname FROM pg_roles AS b WHERE {gcos_roles} AND ({how}) ORDER BY 1"
    return [str(r[0]) for r in conn.execute(query.encode(), (role, role))]


def _write_project(root: Path) -> Path:
    (root / "steps").mkdir(parents=True)
    (root / "rollback").mkdir()
    (root / "plans").mkdir()
    (root / "steps" / "note-1.yaml").write_text(STEP)
    (root / "plans" / "main.yaml").write_text("id: main\ntitle: the managed story\nsteps: [NOTE-1]\n")
    return root


def _installed_and_adopted(m: Managed) -> SchemaChange:
    """Install as the installer, give it a table in public, adopt public (all as the installer)."""
    with m.connect() as conn:
        install(conn)
        conn.execute("CREATE TABLE public.things (id integer PRIMARY KEY, label text NOT NULL)")
        conn.execute("INSERT INTO public.things VALUES (1, 'one')")
        return adopt(conn, ["public"]).schemas[0]


def test_install_as_a_createrole_database_owner_says_what_it_skipped(managed: Managed) -> None:
    with managed.connect() as conn:
        result = install(conn)
        assert not result.superuser and result.version_after == len(result.applied)
        # Every superuser-only protection named, one sentence each; the statements left out listed.
        # (pg_read_all_stats is cluster-wide: on this shared server a superuser's install granted it already.)
        stats = conn.execute("SELECT pg_has_role('gcos_owner', 'pg_read_all_stats', 'MEMBER')").fetchone()
        expected = [key for key in MISSING if key != "pg_read_all_stats" or stats == (False,)]
        assert result.missing == tuple(MISSING[key] for key in expected)
        assert any(s.startswith("CREATE EVENT TRIGGER gcos_schema_guard ") for s in result.skipped)
        assert "GRANT pg_read_all_stats TO gcos_owner" in result.skipped
        # The installer is the first human gcos admin, recorded before the install record it signs.
        entries = ledger.read_all(conn)
        assert [e.kind for e in entries] == ["principal", "install"]
        assert entries[0].seq == result.bootstrap_admin_seq
        assert entries[0].record["payload"]["bootstrap"] is True
        assert entries[1].record["actor"]["role"] == managed.installer
        assert ledger.verify(conn).ok
        # No lasting gcos_owner / gcos_kernel: it may act as gcos_admin only; gcos_kernel got no CREATE back.
        assert _acts_as(conn, managed.installer) == ["gcos_admin"]
        has = conn.execute("SELECT has_schema_privilege('gcos_kernel', 'gcos', 'CREATE')").fetchone()
        assert has == (False,)
        # Re-running changes nothing and says the same.
        again = install(conn)
        assert not again.changed and again.missing == result.missing and again.bootstrap_admin_seq is None
    with psycopg.connect(managed.admin_dsn, autocommit=True) as su:
        guards = su.execute("SELECT count(*) FROM pg_event_trigger WHERE evtname LIKE 'gcos%'").fetchone()
        assert guards == (0,)


def test_adopt_and_the_gated_story_run_without_a_superuser(managed: Managed, tmp_path: Path) -> None:
    _installed_and_adopted(managed)
    operator = managed.person("operator", "human", ("operator",))
    sovereign = managed.person("sovereign", "human", ("sovereign",))
    project = _write_project(tmp_path / "project")
    assert commands.rehearse(operator, project, "NOTE-1").ok
    commands.approve(sovereign, project, "NOTE-1", verdict="approve", expires_in="1h")
    commands.commit(operator, project, "NOTE-1")
    with managed.connect() as conn:
        assert conn.execute("SELECT count(*) FROM public.things").fetchone() == (2,)
        commit = [e for e in ledger.read_all(conn) if e.kind == "commit"]
        assert [e.record["actor"]["principal"] for e in commit] == ["Operator"]
        owner = conn.execute("SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = 'public.things'::regclass")
        assert owner.fetchone() == (KERNEL_ROLE,)
        assert ledger.verify(conn).ok


def _refused(conn: psycopg.Connection[Any], statement: str) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
        conn.execute(statement.encode())


LEDGER_FORGERY = (
    "INSERT INTO gcos.ledger (seq, prev_hash, hash, canonical) VALUES (999, repeat('0', 64), repeat('1', 64), '{}')"
)
OUTSIDE_THE_KERNEL = (
    LEDGER_FORGERY,
    "UPDATE gcos.ledger_head SET seq = seq",
    "INSERT INTO public.things VALUES (3, 'three')",
    "ALTER TABLE public.things ADD COLUMN sneaky text",
    "CREATE TABLE public.sneaky (id integer)",
    "DROP TABLE public.things",
    "SET ROLE gcos_kernel",
    "SET ROLE gcos_owner",
)


def test_the_installer_and_an_operator_cannot_write_around_the_kernel(managed: Managed) -> None:
    _installed_and_adopted(managed)
    managed.person("operator", "human", ("operator",))
    for who in (None, "operator"):
        with managed.connect(who) as conn:
            for statement in OUTSIDE_THE_KERNEL:
                _refused(conn, statement)
            _refused(conn, "SELECT gcos._bootstrap_admin('0123456789abcdef0123456789abcdef')")
    with managed.connect() as conn:
        # The owner of the database may still create schemas of its own: not adopted, not gcos's.
        conn.execute("CREATE SCHEMA mine")
        conn.execute("CREATE TABLE mine.t (id integer)")
        # Without the superuser's extension guard (MISSING["gcos_adopted_extensions"]), a TRUSTED extension lands in
        # an adopted schema although adopt revoked CREATE there: its script runs as the bootstrap superuser.
        conn.execute("CREATE EXTENSION citext SCHEMA public")
        violations = adopt(conn, ["public"]).schemas[0].violations  # detected after the fact, not refused
        assert violations == ("extension citext was put in schema public after its adoption",)


def test_the_installer_remains_the_trust_root(managed: Managed) -> None:
    """What gcos cannot take from a managed service's installer: it may make itself gcos_owner (ADMIN OPTION
    from PostgreSQL 16, granted when it created the role, only a superuser can revoke; CREATEROLE before 16)
    and then write the ledger. gcos says so: adopt lists it among the roles that could become gcos_kernel."""
    change = _installed_and_adopted(managed)
    with managed.connect() as conn:
        assert managed.installer in change.kernel_admins
        conn.execute("GRANT gcos_owner TO CURRENT_USER")
        conn.execute("SET ROLE gcos_owner")
        conn.execute(
            "SELECT * FROM gcos._ledger_write('install', NULL, NULL, %s, NULL, '{}')", (ledger.new_trace_id(),)
        )
        conn.execute("RESET ROLE")
        assert [e.kind for e in ledger.read_all(conn)][-1] == "install"
    # ... and, with CREATEROLE, it sets the password of the roles it created: it can log in as any principal.
    managed.person("operator", "human", ("operator",))
    name = psycopg.conninfo.conninfo_to_dict(managed.logins["operator"])["user"]
    with managed.connect() as conn:
        conn.execute(sql.SQL("ALTER ROLE {} PASSWORD 'known'").format(sql.Identifier(str(name))))
    with psycopg.connect(make_conninfo(managed.dsn, user=str(name), password="known")) as conn:
        assert conn.execute("SELECT session_user").fetchone() == (name,)


def test_a_role_that_neither_owns_the_database_nor_has_createrole_is_refused(managed: Managed) -> None:
    with psycopg.connect(managed.admin_dsn, autocommit=True) as su:
        su.execute(sql.SQL("ALTER ROLE {} NOCREATEROLE").format(sql.Identifier(managed.installer)))
    with managed.connect() as conn, pytest.raises(GateRefused, match="CREATEROLE that owns the database"):
        install(conn)


def test_a_superuser_install_puts_back_what_a_managed_install_skipped(managed: Managed) -> None:
    with managed.connect() as conn:
        install(conn)
    with psycopg.connect(managed.admin_dsn, autocommit=True) as su:
        result = install(su)
        assert result.superuser and result.applied == [] and result.missing == ()
        assert set(result.restored) >= {"gcos_adopted_extensions", "gcos_schema_guard", "gcos_online_guard"}
        names = su.execute("SELECT evtname, evtenabled FROM pg_event_trigger ORDER BY 1").fetchall()
        assert names == [
            ("gcos_adopted_extensions", "A"),
            ("gcos_online_guard", "A"),
            ("gcos_schema_guard", "A"),
            ("gcos_schema_guard_drop", "A"),
        ]
        owner = su.execute("SELECT proowner::regrole::text FROM pg_proc WHERE oid = 'gcos._online_member'::regproc")
        assert owner.fetchone() == (su.info.user,)  # the installer no longer owns what lends gcos_kernel
        assert ledger.read_all(su)[-1].record["payload"]["restored"] == list(result.restored)


def test_gcos_install_says_what_is_missing_in_text_and_json(managed: Managed) -> None:
    runner = CliRunner()
    done = runner.invoke(app, ["install", "--dsn", managed.dsn, "--json"])
    assert done.exit_code == 0, done.output
    document = json.loads(done.stdout)["result"]
    assert document["superuser"] is False and MISSING["gcos_schema_guard"] in document["missing"]
    text = runner.invoke(app, ["install", "--dsn", managed.dsn], env={"COLUMNS": "400"})
    assert text.exit_code == 0 and "nothing to do" in text.stdout
    assert MISSING["gcos_adopted_extensions"] in " ".join(text.stdout.split())
