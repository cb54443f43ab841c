"""Principals (issue 3 item 2; CONTRACT.md "Authority"): a database role mapped to a named human, agent
or service, written only through gcos.add_principal, by a superuser (bootstrap) or a human admin."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
from conftest import MakeRole
from psycopg import sql
from typer.testing import CliRunner

from gcos import ledger
from gcos.cli import app
from gcos.errors import GateRefused, SpecError
from gcos.principals import add_principal, list_principals, whoami


def is_member(conn: psycopg.Connection[Any], role: str, group: str) -> bool:
    row = conn.execute("SELECT pg_has_role(%s, %s, 'MEMBER')", (role, group)).fetchone()
    return bool(row and row[0])


def principal_records(conn: psycopg.Connection[Any]) -> list[ledger.LedgerEntry]:
    return [e for e in ledger.read_all(conn) if e.kind == "principal"]


def test_superuser_bootstraps_a_principal_with_history_ledger_and_grants(
    conn: psycopg.Connection[Any], make_role: MakeRole
) -> None:
    ana = make_role("ana")
    principal = add_principal(conn, ana.name, name="Ana Sovereign", kind="human", roles=["sovereign", "admin", "admin"])
    oid = conn.execute("SELECT oid FROM pg_roles WHERE rolname = %s", (ana.name,)).fetchone()
    assert oid is not None
    assert (principal.role_oid, principal.role, principal.name, principal.kind, principal.roles) == (
        oid[0],
        ana.name,
        "Ana Sovereign",
        "human",
        ("admin", "sovereign"),
    )
    assert not principal.may_approve and principal.overlaps == ("gcos_admin", "admin")  # an admin never approves
    assert is_member(conn, ana.name, "gcos_sovereign") and is_member(conn, ana.name, "gcos_admin")
    assert not is_member(conn, ana.name, "gcos_operator")
    history = conn.execute("SELECT role_oid, display_name, kind, roles, changed_by FROM gcos.principals_history")
    assert history.fetchall() == [(oid[0], "Ana Sovereign", "human", ["admin", "sovereign"], conn.info.user)]
    (record,) = principal_records(conn)
    assert record.payload == {
        "change": "added",
        "role": ana.name,
        "role_oid": oid[0],
        "display_name": "Ana Sovereign",
        "person": "Ana Sovereign",
        "kind": "human",
        "roles": ["admin", "sovereign"],
    }
    assert record.record["actor"]["role"] == conn.info.user
    assert ledger.verify(conn).ok


def test_re_adding_is_idempotent_and_changes_are_recorded(conn: psycopg.Connection[Any], make_role: MakeRole) -> None:
    bob = make_role("bob")
    add_principal(conn, bob.name, name="Bob", kind="human", roles=["operator"])
    add_principal(conn, bob.name, name="Bob", kind="human", roles=["operator"])
    assert len(principal_records(conn)) == 1
    changed = add_principal(conn, bob.name, name="Bob B.", kind="human", roles=["operator", "council"])
    assert changed.roles == ("council", "operator") and changed.name == "Bob B."
    records = principal_records(conn)
    assert [r.payload["change"] for r in records] == ["added", "changed"]
    rows = conn.execute("SELECT display_name, roles FROM gcos.principals_history ORDER BY id").fetchall()
    assert rows == [("Bob", ["operator"]), ("Bob B.", ["council", "operator"])]
    assert [p.name for p in list_principals(conn)] == ["Bob B."]


def test_human_admin_adds_others_but_never_itself(conn: psycopg.Connection[Any], make_role: MakeRole) -> None:
    admin, carol = make_role("admin"), make_role("carol")
    add_principal(conn, admin.name, name="Ada Admin", kind="human", roles=["admin"])
    with admin.connect() as session:
        added = add_principal(session, carol.name, name="Carol", kind="human", roles=["council"], grant=False)
        assert added.roles == ("council",)
        with pytest.raises(GateRefused, match="own principal"):
            add_principal(session, admin.name, name="Ada", kind="human", roles=["admin", "sovereign"], grant=False)
        # a non-superuser admin cannot grant database roles: refused, and nothing is recorded
        dave = make_role("dave")
        with pytest.raises(GateRefused, match="cannot grant the database role gcos_council"):
            add_principal(session, dave.name, name="Dave", kind="human", roles=["council"])
        me = whoami(session)
        assert me is not None and me.name == "Ada Admin"
    assert {p.name for p in list_principals(conn)} == {"Ada Admin", "Carol"}
    row = conn.execute("SELECT changed_by FROM gcos.principals_history WHERE display_name = 'Carol'").fetchone()
    assert row == (admin.name,)


@pytest.mark.parametrize(
    ("kind", "roles", "grant", "error"),
    [
        ("agent", ["admin"], ("admin",), "not a human admin"),
        ("human", ["operator"], ("admin",), "not a human admin"),
        (None, [], ("admin",), "not a registered principal"),
        ("human", ["admin"], (), r"(?i)permission denied.*lacks the gcos group role"),
    ],
    ids=["agent-admin", "operator-with-admin-grant", "unregistered", "no-execute"],
)
def test_only_human_admins_may_add_principals(
    conn: psycopg.Connection[Any],
    make_role: MakeRole,
    kind: str | None,
    roles: list[str],
    grant: tuple[str, ...],
    error: str,
) -> None:
    caller, target = make_role("caller", grant=grant), make_role("target")
    if kind is not None:
        add_principal(conn, caller.name, name="Caller", kind=kind, roles=roles, grant=False)
    with caller.connect() as session, pytest.raises(GateRefused, match=error):
        add_principal(session, target.name, name="Target", kind="human", roles=["sovereign"], grant=False)
    assert target.name not in {p.role for p in list_principals(conn)}


def test_bad_input_is_refused(conn: psycopg.Connection[Any], make_role: MakeRole) -> None:
    eve = make_role("eve")
    with pytest.raises(SpecError, match="kind"):
        add_principal(conn, eve.name, name="Eve", kind="robot", roles=["operator"])
    with pytest.raises(SpecError, match="Unknown gcos role"):
        add_principal(conn, eve.name, name="Eve", kind="human", roles=["superuser"])
    with pytest.raises(SpecError, match="does not exist"):
        add_principal(conn, "gcos_t_no_such_role", name="Nobody", kind="human", roles=["operator"])
    with pytest.raises(SpecError, match="group role"):
        add_principal(conn, "gcos_sovereign", name="Group", kind="human", roles=["sovereign"])
    for name in ("", "   ", "tab\there"):
        with pytest.raises(SpecError, match="name"):
            add_principal(conn, eve.name, name=name, kind="human", roles=["operator"])
    assert list_principals(conn) == []


def test_whoami_is_the_session_role(conn: psycopg.Connection[Any], make_role: MakeRole) -> None:
    fay, stranger = make_role("fay"), make_role("stranger")
    add_principal(conn, fay.name, name="Fay", kind="service", roles=["operator"])
    assert whoami(conn) is None  # the unregistered superuser
    with fay.connect() as session:
        me = whoami(session)
        assert me is not None and (me.role, me.name, me.kind, me.may_approve) == (fay.name, "Fay", "service", False)
        session.execute(sql.SQL("SET ROLE {}").format(sql.Identifier("gcos_operator")))
        assert whoami(session) == me  # SET ROLE does not change who you are
    with stranger.connect() as session:
        assert whoami(session) is None


def test_principals_are_never_deleted(conn: psycopg.Connection[Any], make_role: MakeRole) -> None:
    gus = make_role("gus")
    add_principal(conn, gus.name, name="Gus", kind="human", roles=["auditor"])
    for statement in (
        "DELETE FROM gcos.principals",
        "TRUNCATE gcos.principals",
        "DELETE FROM gcos.principals_history",
        "UPDATE gcos.principals_history SET display_name = 'x'",
    ):
        with pytest.raises(psycopg.DatabaseError, match="append-only") as info:
            conn.execute(statement)
        assert info.value.sqlstate == "GC001"


def test_principals_list_flags_who_may_not_approve(
    dsn: str, conn: psycopg.Connection[Any], make_role: MakeRole
) -> None:
    """Issue 9 item 6: an overlap of approver and gcos administration is shown, in --json and in the table."""
    ana = make_role("ana", kind="human", roles=("sovereign", "admin"), grant=("sovereign", "admin"))
    bob = make_role("bob", kind="human", roles=("council",), grant=("council",))
    runner = CliRunner()
    listed = runner.invoke(app, ["principals", "list", "--dsn", dsn, "--json"])
    assert listed.exit_code == 0, listed.output
    overlaps = {row["role"]: row["overlaps"] for row in json.loads(listed.stdout)["result"]}
    assert overlaps[ana.name] == ["gcos_admin", "admin"] and overlaps[bob.name] == []
    table = runner.invoke(app, ["principals", "list", "--dsn", dsn], env={"COLUMNS": "300"})
    assert table.exit_code == 0, table.output
    lines = {line.split()[1]: line for line in table.stdout.splitlines() if "gcos_t_" in line}
    assert "may not approve or decide" in lines[ana.name] and "clear" in lines[bob.name]
