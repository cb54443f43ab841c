"""Who really acted, separation of duties and approvals bound to the database incarnation (issue 9 items 5,
6 and 7; gcos/sql/008_authority.sql), with real roles on a real server: a superuser's
SET SESSION AUTHORIZATION cannot approve as someone else, whoever can change gcos cannot approve or decide
(and an approval stops counting when its approver later joins gcos_owner), and a same-cluster clone renamed
to the original's name refuses the approvals and decisions copied into it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, LiteralString

import psycopg
import pytest
from conftest import REPO, MakeRole, Role
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.conninfo import make_conninfo

from gcos import ledger
from gcos.approvals import approve, decide, gather_facts
from gcos.embedded import EmbeddedServer
from gcos.gates import GateResult, evaluate
from gcos.install import install
from gcos.principals import add_principal, list_principals, whoami
from gcos.spec import Project, StepSpec, load_project

DAY = timedelta(hours=24)
TRACE = "0123456789abcdef0123456789abcdef"
SCHEMA = "5c" * 32
SPEC, PLAN = "ab" * 32, "cd" * 32
PROJECT = load_project(REPO)


def in_db(role: Role, dbname: str) -> psycopg.Connection[Any]:
    return psycopg.connect(make_conninfo(role.dsn, dbname=dbname), autocommit=True)


def gate(conn: psycopg.Connection[Any], step: StepSpec, name: str, project: Project = PROJECT) -> GateResult:
    """Gate `name` as a commit by the session's role would evaluate it now."""
    facts = gather_facts(
        conn,
        project,
        step,
        action="commit",
        reverify_ok=True,
        reverify_reason="checked",
        current_schema_hash=SCHEMA,
        global_stops_held=(),
    )
    return evaluate(facts, trace_id=TRACE).gate(name)


def raw_approve(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        "SELECT approval_id FROM gcos.record_approval('SB-12', %s, %s, 'approve', clock_timestamp() + "
        "interval '1 day', NULL, NULL)",
        (SPEC, PLAN),
    ).fetchone()
    assert row is not None
    return int(row[0])


def attempts(approval_id: int) -> list[tuple[LiteralString, tuple[Any, ...]]]:
    """Approve, decide, revoke an approval, revoke a decision: everything _require_authority guards."""
    return [
        (
            "SELECT * FROM gcos.record_approval('SB-12', %s, %s, 'approve', clock_timestamp() + interval '1 day', "
            "NULL, NULL)",
            (SPEC, PLAN),
        ),
        ("SELECT * FROM gcos.record_decision('A-3', 'approve', clock_timestamp() + interval '1 day', NULL)", ()),
        ("SELECT * FROM gcos.revoke_approval(%s, 'no')", (approval_id,)),
        ("SELECT * FROM gcos.revoke_decision(1, 'no')", ()),
    ]


def counts(conn: psycopg.Connection[Any]) -> tuple[Any, ...]:
    row = conn.execute(
        "SELECT (SELECT count(*) FROM gcos.os_proposal_approvals), (SELECT count(*) FROM gcos.decisions), "
        "(SELECT count(*) FROM gcos.approval_revocations), (SELECT count(*) FROM gcos.decision_revocations)"
    ).fetchone()
    assert row is not None
    return tuple(row)


# --------------------------------------------------------------------------- who really acted (item 7)


def test_a_superuser_cannot_approve_decide_or_revoke_as_someone_else(
    conn: psycopg.Connection[Any], make_role: MakeRole
) -> None:
    alice = make_role("alice", kind="human", roles=("sovereign",), grant=("sovereign",))
    root = make_role("root", superuser=True)
    with alice.connect() as own:
        approval_id = raw_approve(own)
        own.execute("SELECT * FROM gcos.record_decision('A-3', 'approve', clock_timestamp() + interval '1h', NULL)")
    before = counts(conn)
    with root.connect() as session:
        session.execute(sql.SQL("SET SESSION AUTHORIZATION {}").format(sql.Identifier(alice.name)))
        assert session.execute("SELECT session_user::text").fetchone() == (alice.name,)
        for query, params in attempts(approval_id):
            with pytest.raises(pg_errors.InsufficientPrivilege, match="SET SESSION AUTHORIZATION"):
                session.execute(query, params)
        # A record it may write is written with the truth: the session role AND the login role.
        entry = ledger.append(session, "rehearsal", {"outcome": "passed"}, step_id="SB-12", spec_hash=SPEC)
        assert (entry.record["actor"]["role"], entry.record["actor"]["principal"]) == (alice.name, "Alice")
        assert entry.record["actor"]["login_role"] == root.name
    assert counts(conn) == before
    assert ledger.verify(conn).ok


def test_every_record_names_the_login_role_and_the_authenticated_identity(
    conn: psycopg.Connection[Any], make_role: MakeRole
) -> None:
    alice = make_role("alice", kind="human", roles=("sovereign",), grant=("sovereign",))
    with alice.connect() as own:
        raw_approve(own)
        identity = own.execute("SELECT system_user" if own.info.server_version >= 160000 else "SELECT NULL")
        authenticated = (identity.fetchone() or (None,))[0]
    approval = [e for e in ledger.read_all(conn) if e.kind == "approval"][-1]
    assert approval.record["actor"]["login_role"] == alice.name
    assert approval.record["actor"]["system_user"] == authenticated  # NULL under trust and before 16
    install_record = ledger.read_all(conn)[0]
    assert install_record.record["actor"]["login_role"] == conn.info.user


@contextmanager
def scram_server(tmp: Path) -> Iterator[str]:
    """A private embedded server where every role but postgres authenticates with SCRAM."""
    server = EmbeddedServer(tmp)
    server.up()
    try:
        hba = server.data_dir / "pg_hba.conf"
        hba.write_text("local all postgres trust\nlocal all all scram-sha-256\n")
        with psycopg.connect(server.url("postgres"), autocommit=True) as admin:
            admin.execute("SELECT pg_reload_conf()")
        yield server.url()
    finally:
        server.down()


def test_on_16_plus_the_record_carries_the_scram_identity_of_who_logged_in(tmp_path: Path) -> None:
    with scram_server(tmp_path) as url, psycopg.connect(url, autocommit=True) as admin:
        if admin.info.server_version < 160000:
            pytest.skip("system_user exists from PostgreSQL 16")
        install(admin)
        admin.execute("CREATE ROLE alice LOGIN PASSWORD 'alice-pw'; CREATE ROLE root LOGIN SUPERUSER PASSWORD 'r'")
        admin.execute("GRANT gcos_sovereign TO alice")
        add_principal(admin, "alice", name="Alice", kind="human", roles=["sovereign"], grant=False)
        with psycopg.connect(make_conninfo(url, user="alice", password="alice-pw"), autocommit=True) as own:
            raw_approve(own)
        with psycopg.connect(make_conninfo(url, user="root", password="r"), autocommit=True) as root:
            root.execute("SET SESSION AUTHORIZATION alice")
            with pytest.raises(pg_errors.InsufficientPrivilege):
                raw_approve(root)
            ledger.append(root, "rehearsal", {"outcome": "passed"}, step_id="SB-12", spec_hash=SPEC)
        actors = [(e.kind, e.record["actor"]) for e in ledger.read_all(admin)[-2:]]
    assert [(k, a["role"], a["login_role"], a["system_user"]) for k, a in actors] == [
        ("approval", "alice", "alice", "scram-sha-256:alice"),
        ("rehearsal", "alice", "root", "scram-sha-256:root"),
    ]


# --------------------------------------------------------------------------- separation of duties (item 6)


@pytest.mark.parametrize(
    ("grant", "roles", "conflicts"),
    [
        (("sovereign", "owner"), ("sovereign",), ["gcos_owner"]),
        (("sovereign", "kernel"), ("sovereign",), ["gcos_kernel"]),
        (("sovereign", "admin"), ("sovereign", "admin"), ["gcos_admin", "admin"]),
        (("council",), ("council", "admin"), ["admin"]),
    ],
    ids=["gcos_owner", "gcos_kernel", "admin", "admin-principal-only"],
)
def test_whoever_can_change_gcos_cannot_approve_decide_or_revoke(
    conn: psycopg.Connection[Any],
    make_role: MakeRole,
    grant: tuple[str, ...],
    roles: tuple[str, ...],
    conflicts: list[str],
) -> None:
    alice = make_role("alice", kind="human", roles=("sovereign",), grant=("sovereign",))
    with alice.connect() as own:
        approval_id = raw_approve(own)
    sally = make_role("sally", kind="human", roles=roles, grant=grant)
    before = counts(conn)
    with sally.connect() as session:
        assert session.execute("SELECT gcos.principal_conflicts(%s)", (sally.oid,)).fetchone() == (conflicts,)
        for query, params in attempts(approval_id):
            with pytest.raises(pg_errors.InsufficientPrivilege, match="separation of duties"):
                session.execute(query, params)
    assert counts(conn) == before


def test_membership_through_another_role_and_createrole_before_16(
    conn: psycopg.Connection[Any], make_role: MakeRole
) -> None:
    group = make_role("ops")  # a LOGIN role used as a group; dropped after the test
    conn.execute(sql.SQL("GRANT gcos_owner TO {}").format(sql.Identifier(group.name)))
    sam = make_role("sam", kind="human", roles=("sovereign",), grant=("sovereign",))
    conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group.name), sql.Identifier(sam.name)))
    with sam.connect() as session, pytest.raises(pg_errors.InsufficientPrivilege, match="gcos_owner"):
        raw_approve(session)
    if conn.info.server_version >= 160000:  # a grant that neither inherits nor allows SET ROLE still counts
        ada = make_role("ada", kind="human", roles=("sovereign",), grant=("sovereign",))
        conn.execute(
            sql.SQL("GRANT gcos_kernel TO {} WITH ADMIN OPTION, INHERIT FALSE, SET FALSE").format(
                sql.Identifier(ada.name)
            )
        )
        with ada.connect() as session, pytest.raises(pg_errors.InsufficientPrivilege, match="gcos_kernel"):
            raw_approve(session)
    cora = make_role("cora", kind="human", roles=("council",), grant=("council",))
    conn.execute(sql.SQL("ALTER ROLE {} CREATEROLE").format(sql.Identifier(cora.name)))
    with cora.connect() as session:
        if session.info.server_version < 160000:  # CREATEROLE can grant itself gcos_owner there
            with pytest.raises(pg_errors.InsufficientPrivilege, match="CREATEROLE"):
                raw_approve(session)
        else:
            assert raw_approve(session) > 0


def test_principals_list_names_every_overlap(conn: psycopg.Connection[Any], make_role: MakeRole) -> None:
    people = {
        "plain": make_role("plain", kind="human", roles=("sovereign",), grant=("sovereign",)),
        "owner": make_role("owner", kind="human", roles=("sovereign",), grant=("sovereign", "owner")),
        "admin": make_role("admin", kind="human", roles=("admin", "council"), grant=("admin", "council")),
        "both": make_role("both", kind="human", roles=("operator", "sovereign"), grant=("operator", "sovereign")),
        "root": make_role("root", kind="human", roles=("sovereign",), superuser=True),
    }
    listed = {p.role: p for p in list_principals(conn)}
    overlaps = {hint: listed[role.name].overlaps for hint, role in people.items()}
    assert overlaps == {
        "plain": (),
        "owner": ("gcos_owner",),
        "admin": ("gcos_admin", "admin"),
        "both": ("operator_approver",),
        "root": ("superuser",),
    }
    assert {hint for hint, role in people.items() if listed[role.name].may_approve} == {"plain", "both"}
    with people["owner"].connect() as session:
        me = whoami(session)
        assert me is not None and me.overlaps == ("gcos_owner",) and not me.may_approve
    loner = make_role("loner", kind="human", roles=("sovereign",))  # no gcos group role: cannot call anything
    with loner.connect() as session:
        me = whoami(session)
        assert me is not None and me.overlaps == ()


def test_an_approval_stops_counting_when_its_approver_joins_gcos_owner_later(
    conn: psycopg.Connection[Any], make_role: MakeRole
) -> None:
    alice = make_role("alice", kind="human", roles=("sovereign",), grant=("sovereign",))
    opal = make_role("opal", kind="human", roles=("operator",), grant=("operator",))
    step, activation = PROJECT.step("SB-12"), PROJECT.step("ACTIVATION")
    with alice.connect() as own:
        receipt = approve(own, PROJECT, step, verdict="approve", expires_in=DAY)
        decision = decide(own, "A-3", verdict="approve", expires_in=DAY)
    with opal.connect() as session:
        assert gate(session, step, "approvals").evidence == (receipt.approval_id,)
        assert gate(session, activation, "decisions").evidence == (decision.decision_id,)
        conn.execute(sql.SQL("GRANT gcos_owner TO {}").format(sql.Identifier(alice.name)))
        approvals, decisions = gate(session, step, "approvals"), gate(session, activation, "decisions")
        assert not approvals.allow and approvals.evidence == () and "gcos_owner" in approvals.reason
        assert not decisions.allow and decisions.evidence == () and "gcos_owner" in decisions.reason
        # the membership is read at commit time: revoked again, the approval counts again
        conn.execute(sql.SQL("REVOKE gcos_owner FROM {}").format(sql.Identifier(alice.name)))
        assert gate(session, step, "approvals").allow


# --------------------------------------------------------------------------- the database incarnation (item 5)


@contextmanager
def own_database(pg_admin_dsn: str, *names: str) -> Iterator[None]:
    """Drop these databases at the end, whatever happened."""
    try:
        yield
    finally:
        with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
            for name in names:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _populate(pg_admin_dsn: str, name: str, alice: Role, opal: Role, upto: int | None = None) -> None:
    """Database `name` with gcos (up to version `upto`), Alice (sovereign) and Opal (operator) as principals."""
    with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with psycopg.connect(make_conninfo(pg_admin_dsn, dbname=name), autocommit=True) as db:
        install(db, upto=upto)
        for role, person, gcos_role in ((alice, "Alice", "sovereign"), (opal, "Opal", "operator")):
            db.execute("SELECT * FROM gcos.add_principal(%s, %s, 'human', %s)", (role.name, person, [gcos_role]))


def test_a_clone_renamed_to_the_originals_name_refuses_the_copied_approvals(
    pg_admin_dsn: str, make_role: MakeRole
) -> None:
    alice = make_role("alice", grant=("sovereign",))
    opal = make_role("opal", grant=("operator",))
    original, clone, away = (f"gcos_inc_{uuid.uuid4().hex[:8]}_{x}" for x in ("a", "b", "c"))
    step, activation = PROJECT.step("SB-12"), PROJECT.step("ACTIVATION")
    with own_database(pg_admin_dsn, original, clone, away):
        _populate(pg_admin_dsn, original, alice, opal)
        with in_db(alice, original) as own:
            receipt = approve(own, PROJECT, step, verdict="approve", expires_in=DAY)
            decision = decide(own, "A-3", verdict="approve", expires_in=DAY)
        with in_db(opal, original) as session:
            assert gate(session, step, "approvals").evidence == (receipt.approval_id,)
            assert gate(session, activation, "decisions").evidence == (decision.decision_id,)
            oid = session.execute("SELECT database_oid::bigint FROM gcos.database_incarnation()").fetchone()
        with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
            ident = sql.Identifier
            admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(ident(clone), ident(original)))
            admin.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(ident(original), ident(away)))
            admin.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(ident(clone), ident(original)))
        with in_db(opal, original) as session:  # the clone, under the original's name
            now = session.execute("SELECT database_oid::bigint FROM gcos.database_incarnation()").fetchone()
            assert now is not None and oid is not None and now != oid
            approvals, decisions = gate(session, step, "approvals"), gate(session, activation, "decisions")
        assert not approvals.allow and approvals.evidence == () and f"OID {oid[0]}" in approvals.reason
        assert not decisions.allow and decisions.evidence == () and f"OID {oid[0]}" in decisions.reason


def test_approvals_and_decisions_from_before_the_oid_was_bound_never_count(
    pg_admin_dsn: str, make_role: MakeRole
) -> None:
    alice = make_role("alice", grant=("sovereign",))
    opal = make_role("opal", grant=("operator",))
    name = f"gcos_inc_{uuid.uuid4().hex[:8]}_old"
    step, activation = PROJECT.step("SB-12"), PROJECT.step("ACTIVATION")
    with own_database(pg_admin_dsn, name):
        _populate(pg_admin_dsn, name, alice, opal, upto=7)
        with in_db(alice, name) as own:
            approve(own, PROJECT, step, verdict="approve", expires_in=DAY)
            decide(own, "A-3", verdict="approve", expires_in=DAY)
        with psycopg.connect(make_conninfo(pg_admin_dsn, dbname=name), autocommit=True) as db:
            assert install(db).version_before == 7
            rows = db.execute(
                "SELECT database_oid FROM gcos.os_proposal_approvals UNION ALL SELECT database_oid FROM gcos.decisions"
            ).fetchall()
            assert rows == [(None,), (None,)]
        with in_db(opal, name) as session:
            approvals, decisions = gate(session, step, "approvals"), gate(session, activation, "decisions")
            assert not approvals.allow and approvals.evidence == ()
            assert not decisions.allow and decisions.evidence == ()
        with in_db(alice, name) as own:  # approving again, now bound to the OID, opens the gate
            receipt = approve(own, PROJECT, step, verdict="approve", expires_in=DAY)
        with in_db(opal, name) as session:
            assert gate(session, step, "approvals").evidence == (receipt.approval_id,)


def test_the_new_functions_pin_search_path_run_as_invoker_and_are_granted_exactly(
    conn: psycopg.Connection[Any], make_role: MakeRole
) -> None:
    rows = conn.execute(
        "SELECT p.proname, p.prosecdef, p.proconfig, pg_get_userbyid(p.proowner), "
        "ARRAY(SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END FROM "
        "aclexplode(COALESCE(p.proacl, acldefault('f', p.proowner))) a "
        "WHERE a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner ORDER BY 1) "
        "FROM pg_proc p WHERE p.pronamespace = 'gcos'::regnamespace AND p.proname = ANY(%s)",
        (["_session_identity", "_conflicts_text", "principal_conflicts", "database_incarnation"],),
    ).fetchall()
    readers = ["gcos_admin", "gcos_auditor", "gcos_council", "gcos_operator", "gcos_sovereign"]
    assert {r[0]: (r[1], r[2], r[3], r[4]) for r in rows} == {
        "_session_identity": (False, ["search_path=pg_catalog, pg_temp"], "gcos_owner", []),
        "_conflicts_text": (False, ["search_path=pg_catalog, pg_temp"], "gcos_owner", []),
        "principal_conflicts": (False, ["search_path=pg_catalog, pg_temp"], "gcos_owner", readers),
        "database_incarnation": (False, ["search_path=pg_catalog, pg_temp"], "gcos_owner", ["PUBLIC"]),
    }
    nobody = make_role("nobody")  # not a principal, no gcos role: the incarnation is public, conflicts are not
    with nobody.connect() as session:
        assert session.execute("SELECT database_name FROM gcos.database_incarnation()").fetchone() == (
            session.info.dbname,
        )
        with pytest.raises(pg_errors.InsufficientPrivilege):
            session.execute("SELECT gcos.principal_conflicts(10)")
        with pytest.raises(pg_errors.InsufficientPrivilege):
            session.execute("SELECT * FROM gcos._session_identity()")
