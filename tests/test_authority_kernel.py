"""Who really acted, separation of duties and approvals bound to the database incarnation (issue 9 items 5,
6 and 7; gcos/sql/008_authority.sql), with real roles on a real server: a superuser's
SET SESSION AUTHORIZATION cannot approve as someone else, whoever can change gcos cannot approve or decide
(and an approval stops counting when its approver later joins gcos_owner), a same-cluster clone renamed
to the original's name refuses the approvals and decisions copied into it, and no role but gcos_owner (a
gcos function) or a superuser writes any gcos table, pg_write_all_data and stray grants included."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, LiteralString

import psycopg
import pytest
from conftest import REPO, MakeRole, Role
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.conninfo import make_conninfo

from gcos import gates, ledger
from gcos.adopt import adopt
from gcos.approvals import approve, decide
from gcos.canonical import canonical_bytes
from gcos.embedded import EmbeddedServer
from gcos.errors import GateRefused
from gcos.gates import CONFLICT_TEXT, GateResult, conflicts_text
from gcos.install import Migration, install, migrations
from gcos.principals import OVERLAP_TEXT, add_principal, list_principals, whoami
from gcos.registry import register_plan, register_spec
from gcos.spec import Project, StepSpec, load_project

DAY = timedelta(hours=24)
TRACE = "0123456789abcdef0123456789abcdef"
SCHEMA = "5c" * 32
SPEC, PLAN, TEXT = "ab" * 32, "cd" * 32, "ef" * 32
PROJECT = load_project(REPO)


def in_db(role: Role, dbname: str) -> psycopg.Connection[Any]:
    return psycopg.connect(make_conninfo(role.dsn, dbname=dbname), autocommit=True)


def gate(conn: psycopg.Connection[Any], step: StepSpec, name: str, project: Project = PROJECT) -> GateResult:
    """Gate `name` (approvals or decisions: they need nothing measured) as the database decides it now for a
    commit by the session's role, the spec and plan registered first."""
    plan = project.plan_of(step.id)
    assert gates.register(conn, step, plan)
    decision = gates.evaluate(conn, step, plan, action="commit", measured=gates.world(), trace_id=TRACE)
    return decision.gate(name)


def raw_approve(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        "SELECT approval_id FROM gcos.record_approval('SB-12', %s, %s, 'approve', clock_timestamp() + "
        "interval '1 day', NULL, NULL, md5('t'))",
        (SPEC, PLAN),
    ).fetchone()
    assert row is not None
    return int(row[0])


def attempts(approval_id: int) -> list[tuple[LiteralString, tuple[Any, ...]]]:
    """Approve, decide, revoke an approval, revoke a decision: everything _require_authority guards."""
    return [
        (
            "SELECT * FROM gcos.record_approval('SB-12', %s, %s, 'approve', clock_timestamp() + interval '1 day', "
            "NULL, NULL, md5('t'))",
            (SPEC, PLAN),
        ),
        (
            "SELECT * FROM gcos.record_decision('A-3', %s, 'approve', clock_timestamp() + interval '1 day', NULL, "
            "p_trace_id => md5('t'))",
            (TEXT,),
        ),
        ("SELECT * FROM gcos.revoke_approval(%s, 'no', md5('t'))", (approval_id,)),
        ("SELECT * FROM gcos.revoke_decision(1, 'no', md5('t'))", ()),
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
        own.execute(
            "SELECT * FROM gcos.record_decision('A-3', %s, 'approve', clock_timestamp() + interval '1h', NULL, "
            "p_trace_id => md5('t'))",
            (TEXT,),
        )
    before = counts(conn)
    with root.connect() as session:
        session.execute(sql.SQL("SET SESSION AUTHORIZATION {}").format(sql.Identifier(alice.name)))
        assert session.execute("SELECT session_user::text").fetchone() == (alice.name,)
        for query, params in attempts(approval_id):
            with pytest.raises(pg_errors.InsufficientPrivilege, match="SET SESSION AUTHORIZATION"):
                session.execute(query, params)
        # No record is written under another's name: acting as alice, the session may not append at all (015).
        with pytest.raises(GateRefused, match=r"(?i)permission denied"):
            ledger.append(session, "rehearsal", {"outcome": "passed"}, step_id="SB-12", spec_hash=SPEC)
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
            with pytest.raises(GateRefused):  # nothing is written under alice's name from root's login
                ledger.append(root, "rehearsal", {"outcome": "passed"}, step_id="SB-12", spec_hash=SPEC)
            root.execute("RESET SESSION AUTHORIZATION")
            ledger.append(root, "rehearsal", {"outcome": "passed"}, step_id="SB-12", spec_hash=SPEC)
        actors = [(e.kind, e.record["actor"]) for e in ledger.read_all(admin)[-2:]]
    assert [(k, a["role"], a["login_role"], a["system_user"]) for k, a in actors] == [
        ("approval", "alice", "alice", "scram-sha-256:alice"),
        ("rehearsal", "root", "root", "scram-sha-256:root"),
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
        decision = decide(own, PROJECT, "A-3", verdict="approve", expires_in=DAY)
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
            db.execute(
                "SELECT * FROM gcos.add_principal(%s, %s, 'human', %s, p_trace_id => md5('t'))",
                (role.name, person, [gcos_role]),
            )


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
            decision = decide(own, PROJECT, "A-3", verdict="approve", expires_in=DAY)
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
        with in_db(alice, name) as own:  # version 7: record_decision had no text hash yet
            approve(own, PROJECT, step, verdict="approve", expires_in=DAY)
            own.execute(
                "SELECT * FROM gcos.record_decision('A-3', 'approve', clock_timestamp() + interval '1 day', NULL)"
            )
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
        (["_session_identity", "_conflicts_text", "principal_conflicts", "database_incarnation", *GUARD_HELPERS],),
    ).fetchall()
    readers = ["gcos_admin", "gcos_auditor", "gcos_council", "gcos_operator", "gcos_sovereign"]
    assert {r[0]: (r[1], r[2], r[3], r[4]) for r in rows} == {
        **{name: (False, ["search_path=pg_catalog, pg_temp"], "gcos_owner", []) for name in GUARD_HELPERS},
        "_session_identity": (False, ["search_path=pg_catalog, pg_temp"], "gcos_owner", []),
        "_conflicts_text": (False, ["search_path=pg_catalog, pg_temp"], "gcos_owner", readers),  # 010: the gates
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


# --------------------------------------------------------------------------- gcos tables only through gcos functions

GUARD = "gcos._only_through_gcos"  # in the error's context: the guard refused, not the privilege wall
GUARD_HELPERS = ["_only_through_gcos", "_guard_table", "_guard_tables"]
# pg_trigger.tgtype: BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE FOR EACH STATEMENT, and the same minus
# TRUNCATE FOR EACH ROW (1 row, 2 before, 4 insert, 8 delete, 16 update, 32 truncate)
GUARD_TRIGGERS = (("gcos_0_only_through_gcos_statement", 62), ("gcos_0_only_through_gcos_row", 31))
KNOWN_TABLES = {
    "schema_version", "principals", "principals_history", "ledger", "ledger_head", "os_proposal_approvals",
    "approval_revocations", "decisions", "decision_revocations", "fingerprint_queries", "specs", "plans",
    "adopted_schemas", "adopt_staging",
}  # fmt: skip
FORGED_ID = 424242


def gcos_tables(conn: psycopg.Connection[Any]) -> list[str]:
    """Every table (and partition) of the gcos schema, from the catalog."""
    query = "SELECT relname::text FROM pg_class WHERE relnamespace = 'gcos'::regnamespace AND relkind IN ('r', 'p')"
    return sorted(r[0] for r in conn.execute(query))


def unguarded(conn: psycopg.Connection[Any]) -> list[str]:
    """gcos tables that lack either guard trigger, as installed: its events, BEFORE, ENABLE ALWAYS, the guard."""
    return [
        t
        for t in gcos_tables(conn)
        for name, tgtype in GUARD_TRIGGERS
        if conn.execute(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = %s::regclass AND tgname = %s AND tgtype = %s "
            "AND tgenabled = 'A' AND tgfoid = 'gcos._only_through_gcos()'::regprocedure",
            (f"gcos.{t}", name, tgtype),
        ).fetchone()
        != (1,)
    ]


def test_every_gcos_table_carries_the_guard_enabled_always(conn: psycopg.Connection[Any], gcos_installed: None) -> None:
    install(conn)
    assert set(gcos_tables(conn)) >= KNOWN_TABLES and unguarded(conn) == []
    newer = len(migrations()) + 1
    forgets = Migration(newer, "998_forgets.sql", "SET LOCAL ROLE gcos_owner; CREATE TABLE gcos.later (id int);")
    guards = Migration(newer + 1, "999_guards.sql", "SET LOCAL ROLE gcos_owner; SELECT gcos._guard_tables();")
    install(conn, files=[*migrations(), forgets])
    assert unguarded(conn) == ["later", "later"]  # what this test catches in a migration that forgets
    install(conn, files=[*migrations(), forgets, guards])
    assert unguarded(conn) == [] and conn.execute("SELECT gcos._guard_tables()").fetchone() == (0,)


def forger(conn: psycopg.Connection[Any], make_role: MakeRole) -> Role:
    """The reviewer's role: pg_write_all_data and a gcos read role, no principal."""
    role = make_role("etl", grant=("auditor",))
    conn.execute(sql.SQL("GRANT pg_write_all_data TO {}").format(sql.Identifier(role.name)))
    return role


def utc(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def forgery(session: psycopg.Connection[Any], sovereign: Role) -> list[tuple[LiteralString, tuple[Any, ...]]]:
    """The reviewer's three statements: a well-formed successor of the ledger head (an approval of SB-12 by
    the sovereign, bound to this database), the head moved onto it, and the matching approval row."""
    step, plan = PROJECT.step("SB-12"), PROJECT.plan_of("SB-12")
    head = session.execute("SELECT seq, hash FROM gcos.ledger_head").fetchone()
    db = session.execute("SELECT * FROM gcos.database_incarnation()").fetchone()
    assert head is not None and db is not None and plan is not None
    now, seq, prev, who = datetime.now(UTC), head[0] + 1, head[1], sovereign.name
    payload = {
        **{"approval_id": FORGED_ID, "plan_hash": plan.hash, "verdict": "approve", "expires_at": utc(now + DAY)},
        **{"note": "forged", "rehearsal_seq": None, "approver_roles": ["sovereign"]},
        "target": {"system_identifier": db[0], "database": db[1], "database_oid": db[2]},
    }
    actor = {"principal": "Alice", "role": who, "role_oid": sovereign.oid, "kind": "human", "login_role": who}
    record = {
        **{"format_version": 1, "seq": seq, "prev_hash": prev, "recorded_at": utc(now), "trace_id": TRACE},
        **{"span_id": "2" * 16, "actor": {**actor, "system_user": None}, "kind": "approval", "step_id": step.id},
        **{"spec_hash": step.hash, "payload": payload},
    }
    canonical = canonical_bytes(record).decode()
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    approval = (FORGED_ID, step.id, step.hash, plan.hash, sovereign.oid, who, *db, now + DAY, now, seq)
    return [
        (
            "INSERT INTO gcos.ledger (seq, prev_hash, hash, canonical) VALUES (%s, %s, %s, %s)",
            (seq, prev, digest, canonical),
        ),
        ("UPDATE gcos.ledger_head SET seq = %s, hash = %s", (seq, digest)),
        (
            "INSERT INTO gcos.os_proposal_approvals (id, step_id, spec_hash, plan_hash, verdict, approver_oid, "
            "approver, approver_role, approver_roles, system_identifier, database_name, database_oid, note, "
            "expires_at, created_at, ledger_seq) VALUES (%s, %s, %s, %s, 'approve', %s, 'Alice', %s, '{sovereign}', "
            "%s, %s, %s, 'forged', %s, %s, %s)",
            approval,
        ),
    ]


def refusal(
    session: psycopg.Connection[Any], statement: LiteralString | sql.Composed, params: tuple[Any, ...] = ()
) -> str:
    """'guard' when gcos._only_through_gcos refused the statement (42501), else what happened."""
    try:
        with session.transaction():
            session.execute(statement, params or None)
    except psycopg.DatabaseError as exc:
        return "guard" if exc.sqlstate == "42501" and GUARD in (exc.diag.context or "") else str(exc.sqlstate)
    return "written"


def test_the_reviewers_forgery_is_refused_at_every_step(conn: psycopg.Connection[Any], make_role: MakeRole) -> None:
    alice = make_role("alice", kind="human", roles=("sovereign",), grant=("sovereign",))
    register_spec(conn, PROJECT.step("SB-12"))  # before the forged successor of the head is computed
    register_plan(conn, PROJECT.plans["build"])
    etl = forger(conn, make_role)
    modes = ["origin"]
    if conn.info.server_version >= 150000:  # a role may be granted replica mode from 15 on
        conn.execute(sql.SQL("GRANT SET ON PARAMETER session_replication_role TO {}").format(sql.Identifier(etl.name)))
        modes.append("replica")
    with etl.connect() as session:
        assert session.execute("SELECT gcos.principal_conflicts(%s)", (etl.oid,)).fetchone() == (["pg_write_all_data"],)
        steps = forgery(session, alice)
        for mode in modes:
            session.execute(sql.SQL("SET session_replication_role = {}").format(sql.Literal(mode)))
            assert [refusal(session, statement, params) for statement, params in steps] == ["guard"] * 3, mode
        copy_in = session.cursor().copy("COPY gcos.ledger (seq, prev_hash, hash, canonical) FROM STDIN")
        with pytest.raises(pg_errors.InsufficientPrivilege) as info, copy_in as copy:
            copy.write_row(steps[0][1])  # COPY FROM too
        assert GUARD in (info.value.diag.context or "")
    assert ledger.verify(conn).ok and counts(conn) == (0, 0, 0, 0)
    assert gate(conn, PROJECT.step("SB-12"), "approvals").evidence == ()
    with conn.transaction(force_rollback=True):  # control: the same rows, from a superuser, forge an approval
        for statement, params in steps:
            conn.execute(statement, params)
        assert ledger.verify(conn).ok
        assert gate(conn, PROJECT.step("SB-12"), "approvals").evidence == (FORGED_ID,)


def populate(conn: psycopg.Connection[Any], make_role: MakeRole) -> None:
    """Rows in every gcos table gcos ships, so that row triggers have something to refuse."""
    alice = make_role("alice", kind="human", roles=("sovereign",), grant=("sovereign",))
    with alice.connect() as own:
        own.execute("SELECT * FROM gcos.revoke_approval(%s, 'no', md5('t'))", (raw_approve(own),))
        own.execute(
            "SELECT * FROM gcos.record_decision('A-3', %s, 'approve', clock_timestamp() + interval '1h', NULL, "
            "p_trace_id => md5('t'))",
            (TEXT,),
        )
        own.execute("SELECT * FROM gcos.revoke_decision((SELECT max(id) FROM gcos.decisions), 'no', md5('t'))")
    register_spec(conn, PROJECT.step("SB-12"))
    register_plan(conn, PROJECT.plans["build"])
    conn.execute("CREATE SCHEMA kept; CREATE SCHEMA staged")
    adopt(conn, ["kept"])
    conn.execute("SELECT gcos._adopt_begin('staged'::regnamespace, 'adopt')")  # a staging row stays behind


def rows(conn: psycopg.Connection[Any], table: str) -> int:
    row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier("gcos", table))).fetchone()
    return int(row[0]) if row else -1


def writes(session: psycopg.Connection[Any], table: str, truncate: bool) -> dict[str, str]:
    """What each kind of write to gcos.<table> met (UPDATE sets its first plain column to itself)."""
    column = session.execute(
        "SELECT attname::text FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped "
        "AND attgenerated = '' AND attidentity <> 'a' ORDER BY attnum LIMIT 1",
        (f"gcos.{table}",),
    ).fetchone()
    assert column is not None
    ident, col = sql.Identifier("gcos", table), sql.Identifier(column[0])
    statements = {
        "insert": sql.SQL("INSERT INTO {} DEFAULT VALUES").format(ident),
        "update": sql.SQL("UPDATE {} SET {} = {}").format(ident, col, col),
        "delete": sql.SQL("DELETE FROM {}").format(ident),
        "truncate": sql.SQL("TRUNCATE {} CASCADE").format(ident),
    }
    return {kind: refusal(session, q) for kind, q in statements.items() if truncate or kind != "truncate"}


def test_every_gcos_table_refuses_every_write_but_through_gcos(
    conn: psycopg.Connection[Any], make_role: MakeRole
) -> None:
    populate(conn, make_role)
    etl = forger(conn, make_role)
    conn.execute(sql.SQL("GRANT ALL ON ALL TABLES IN SCHEMA gcos TO {}").format(sql.Identifier(etl.name)))  # stray
    tables = gcos_tables(conn)
    sizes = {t: rows(conn, t) for t in tables}
    assert {t for t in tables if sizes[t] > 0} >= KNOWN_TABLES
    guards = sql.SQL("ALTER TABLE {} {} TRIGGER gcos_0_only_through_gcos_statement")
    with etl.connect() as session:
        met = {t: writes(session, t, truncate=True) for t in tables}
        for t in tables:  # the row triggers alone: logical replication's apply fires no statement trigger
            conn.execute(guards.format(sql.Identifier("gcos", t), sql.SQL("DISABLE")))
        try:
            met_by_row = {t: writes(session, t, truncate=False) for t in tables if sizes[t] > 0}
        finally:
            for t in tables:
                conn.execute(guards.format(sql.Identifier("gcos", t), sql.SQL("ENABLE ALWAYS")))
    refused = {"insert": "guard", "update": "guard", "delete": "guard"}
    assert met == {t: {**refused, "truncate": "guard"} for t in tables}
    assert met_by_row == {t: refused for t in tables if sizes[t] > 0}
    assert {t: rows(conn, t) for t in tables} == sizes
    assert unguarded(conn) == [] and ledger.verify(conn).ok


def test_a_member_of_gcos_owner_writes_only_as_gcos_owner_and_meets_the_append_only_guards(
    conn: psycopg.Connection[Any], make_role: MakeRole
) -> None:
    owner = make_role("owner", grant=("owner",))  # the owner could drop the triggers: out of scope, but consistent
    with owner.connect() as session:
        assert refusal(session, "UPDATE gcos.ledger SET canonical = canonical") == "guard"
        session.execute("SET ROLE gcos_owner")
        assert refusal(session, "UPDATE gcos.ledger SET canonical = canonical") == "GC001"


def test_pg_write_all_data_and_pg_maintain_bar_approving(conn: psycopg.Connection[Any], make_role: MakeRole) -> None:
    alice = make_role("alice", kind="human", roles=("sovereign",), grant=("sovereign",))
    with alice.connect() as own:
        approval_id = raw_approve(own)
    rita = make_role("rita", kind="human", roles=("council",), grant=("council",))
    conflicts = ["pg_write_all_data", "pg_maintain"]
    for group in conflicts:
        if conn.execute("SELECT to_regrole(%s) IS NOT NULL", (group,)).fetchone() == (True,):  # pg_maintain: 17+
            conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(rita.name)))
    conflicts = conflicts if conn.info.server_version >= 170000 else conflicts[:1]
    before = counts(conn)
    with rita.connect() as session:
        assert session.execute("SELECT gcos.principal_conflicts(%s)", (rita.oid,)).fetchone() == (conflicts,)
        for query, params in attempts(approval_id):
            with pytest.raises(pg_errors.InsufficientPrivilege, match="separation of duties"):
                session.execute(query, params)
    assert counts(conn) == before
    assert {p.role: p.overlaps for p in list_principals(conn)}[rita.name] == tuple(conflicts)
    every = list(CONFLICT_TEXT)  # the SQL words and the Python words are the same, for every code
    assert conn.execute("SELECT gcos._conflicts_text(%s)", (every,)).fetchone() == (conflicts_text(every),)
    assert set(CONFLICT_TEXT) <= set(OVERLAP_TEXT)
