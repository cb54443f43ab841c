"""Authority by database role (issue 3 item 3; CONTRACT.md "Authority"; seed 000 P3 "DB role-based
capability", P4 "expiry mandatory, knife-edge inclusive"; seed 004 sections 3-4 "human-only approvers,
privilege wall, every call audited"): the write aperture, append-only tables, and forged identities."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from conftest import MakeRole, Role
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.types.json import Jsonb

from gcos import ledger
from gcos.adopt import adopt
from gcos.errors import ExitCode, GateRefused
from gcos.install import install

SPEC = hashlib.sha256(b"spec SB-12").hexdigest()
PLAN = hashlib.sha256(b"plan 70").hexdigest()
TEXT = hashlib.sha256(b"decision A-4").hexdigest()
TRACE = "c" * 32  # every record names its trace (024_traces)
APPEND_ONLY = {  # table -> a column to name in an UPDATE
    "os_proposal_approvals": "note",
    "approval_revocations": "reason",
    "decisions": "note",
    "decision_revocations": "reason",
    "principals_history": "display_name",
    "ledger": "canonical",
    "schema_version": "name",
}
PROTECTED = {**APPEND_ONLY, "principals": "display_name", "ledger_head": "hash"}


def future(days: float = 1) -> datetime:
    return datetime.now(UTC) + timedelta(days=days)


def approve(
    session: psycopg.Connection[Any],
    *,
    expires: datetime | None = None,
    note: str | None = None,
    rehearsal_seq: int | None = None,
    spec: str = SPEC,
) -> tuple[int, int, str]:
    row = session.execute(
        "SELECT * FROM gcos.record_approval(%s, %s, %s, %s, %s, %s, %s, %s)",
        ("SB-12", spec, PLAN, "approve", expires or future(), note, rehearsal_seq, None if rehearsal_seq else TRACE),
    ).fetchone()
    assert row is not None
    return row[0], row[1], row[2]


def decide(session: psycopg.Connection[Any], *, expires: datetime | None = None) -> tuple[int, int, str]:
    row = session.execute(
        "SELECT * FROM gcos.record_decision(%s, %s, %s, %s, %s, %s)",
        ("A-4", TEXT, "approve", expires or future(), None, TRACE),
    ).fetchone()
    assert row is not None
    return row[0], row[1], row[2]


@pytest.fixture
def world(conn: psycopg.Connection[Any], make_role: MakeRole) -> dict[str, Role]:
    """Two human approvers, an operator and an auditor, with one approval, decision and revocation of each."""
    people = {
        "alice": make_role("alice", kind="human", roles=("sovereign",), grant=("sovereign",)),
        "bob": make_role("bob", kind="human", roles=("council",), grant=("council",)),
        "opal": make_role("opal", kind="human", roles=("operator",), grant=("operator",)),
        "audrey": make_role("audrey", kind="human", roles=("auditor",), grant=("auditor",)),
    }
    with people["alice"].connect() as alice, people["bob"].connect() as bob:
        approve(alice)
        approval, _, _ = approve(alice)
        decision, _, _ = decide(alice)
        decide(alice)
        bob.execute("SELECT * FROM gcos.revoke_approval(%s, %s, md5('t'))", (approval, "spec changed"))
        alice.execute(
            "SELECT * FROM gcos.revoke_decision(%s, %s, md5('t'))", (decision, "superseded")
        )  # a sovereign's (029)
    return people


# --------------------------------------------------------------------------- the privilege wall


def test_operator_is_refused_update_delete_truncate_and_insert_on_every_protected_table(world: dict[str, Role]) -> None:
    with world["opal"].connect() as opal:
        for table, column in PROTECTED.items():
            name = sql.Identifier("gcos", table)
            statements = [
                sql.SQL("UPDATE {} SET {} = {}").format(name, sql.Identifier(column), sql.Identifier(column)),
                sql.SQL("DELETE FROM {}").format(name),
                sql.SQL("TRUNCATE {}").format(name),
                sql.SQL("INSERT INTO {} DEFAULT VALUES").format(name),
            ]
            for statement in statements:
                with pytest.raises(pg_errors.InsufficientPrivilege):
                    opal.execute(statement)
            opal.execute(sql.SQL("SELECT count(*) FROM {}").format(name))  # reading is allowed
        for call in (
            "SELECT nextval('gcos.os_proposal_approvals_id_seq')",
            "SELECT * FROM gcos._ledger_write('approval', NULL, NULL, NULL, NULL, '{}')",
            "SELECT * FROM gcos.record_approval('SB-12', repeat('a', 64), repeat('b', 64), 'approve', "
            "now() + interval '1 day', NULL, NULL)",
            "SELECT * FROM gcos.revoke_approval(1, 'no', md5('t'))",
        ):
            with pytest.raises(pg_errors.InsufficientPrivilege):
                opal.execute(call)


def test_append_only_triggers_hold_for_a_superuser_even_in_replica_mode(
    conn: psycopg.Connection[Any], world: dict[str, Role]
) -> None:
    enabled = conn.execute(
        "SELECT DISTINCT t.tgenabled FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
        "WHERE c.relnamespace = 'gcos'::regnamespace AND NOT t.tgisinternal"
    ).fetchall()
    assert enabled == [("A",)]  # ENABLE ALWAYS: fires whatever session_replication_role says
    checks: list[tuple[str, str]] = []
    for table, column in APPEND_ONLY.items():
        checks += [
            (table, f"UPDATE gcos.{table} SET {column} = {column}"),
            (table, f"DELETE FROM gcos.{table}"),
            (table, f"TRUNCATE gcos.{table} CASCADE"),
        ]
    checks += [
        ("principals", "DELETE FROM gcos.principals"),
        ("principals", "TRUNCATE gcos.principals CASCADE"),
        ("ledger_head", "DELETE FROM gcos.ledger_head"),
        ("ledger_head", "TRUNCATE gcos.ledger_head"),
        ("ledger_head", "UPDATE gcos.ledger_head SET seq = seq - 1"),
        ("ledger_head", "INSERT INTO gcos.ledger_head VALUES (false, 0, repeat('0', 64))"),
    ]
    for mode in ("origin", "replica"):
        for table, statement in checks:
            with pytest.raises(psycopg.DatabaseError) as info, conn.transaction():
                conn.execute(sql.SQL("SET LOCAL session_replication_role = {}").format(sql.Literal(mode)))
                conn.execute(statement.encode())
            assert info.value.sqlstate == "GC001", (mode, table, statement, info.value)
    assert ledger.verify(conn).ok


# --------------------------------------------------------------------------- who may approve


def test_only_registered_human_sovereigns_and_councillors_may_approve_and_only_sovereigns_decide(
    conn: psycopg.Connection[Any], make_role: MakeRole
) -> None:
    refused = {
        "is a superuser": make_role("root", kind="human", roles=("sovereign",), grant=("sovereign",), superuser=True),
        "of kind agent": make_role("agent", kind="agent", roles=("sovereign", "council"), grant=("sovereign",)),
        "of kind service": make_role("service", kind="service", roles=("council",), grant=("council",)),
        "not a registered principal": make_role("ghost", grant=("sovereign",)),
        "holds neither the sovereign nor the council role": make_role(
            "op", kind="human", roles=("operator", "admin", "auditor"), grant=("sovereign", "council")
        ),
    }
    for reason, role in refused.items():
        with role.connect() as session:
            for action in (approve, decide):
                with pytest.raises(pg_errors.InsufficientPrivilege, match=reason):
                    action(session)
            with pytest.raises(pg_errors.InsufficientPrivilege, match=reason):
                session.execute("SELECT * FROM gcos.revoke_approval(1, 'x', md5('t'))")
    assert conn.execute("SELECT count(*) FROM gcos.os_proposal_approvals").fetchone() == (0,)
    councillor = make_role("cora", kind="human", roles=("council",), grant=("council",))
    with councillor.connect() as session:
        approve(session)
        with pytest.raises(pg_errors.InsufficientPrivilege, match="is not a sovereign and cannot record a decision"):
            decide(session)


def test_expiry_is_mandatory_finite_and_in_the_future(conn: psycopg.Connection[Any], make_role: MakeRole) -> None:
    alice = make_role("alice", kind="human", roles=("sovereign",), grant=("sovereign",))
    with alice.connect() as session:
        for expires in ("NULL", "'infinity'", "now()", "now() - interval '1 second'"):
            for function in (
                "record_approval('SB-12', %(spec)s, %(plan)s, 'approve', {}, NULL, NULL, md5('t'))",
                "record_decision('A-4', %(text)s, 'approve', {}, NULL, md5('t'))",
            ):
                query = ("SELECT * FROM gcos." + function.format(expires)).encode()
                with pytest.raises(pg_errors.InvalidParameterValue, match="expir"):
                    session.execute(query, {"spec": SPEC, "plan": PLAN, "text": TEXT})
        for bad in (("SB 12", SPEC, PLAN, "approve"), ("SB-12", "x", PLAN, "approve"), ("SB-12", SPEC, PLAN, "yes")):
            with pytest.raises(pg_errors.InvalidParameterValue):
                session.execute(
                    "SELECT * FROM gcos.record_approval(%s, %s, %s, %s, %s, NULL, NULL, %s)", (*bad, future(), TRACE)
                )


def test_an_approval_is_bound_to_its_target_and_its_ledger_record(
    conn: psycopg.Connection[Any], make_role: MakeRole
) -> None:
    alice = make_role("alice", kind="human", roles=("sovereign",), grant=("sovereign",))
    passed = {"outcome": "passed", "plan_hash": PLAN}  # 031: an approval rests on a passing rehearsal of its plan
    rehearsal = ledger.append(conn, "rehearsal", passed, step_id="SB-12", spec_hash=SPEC)
    other = ledger.append(conn, "rehearsal", passed, step_id="SB-12", spec_hash="c" * 64)
    stopped = ledger.append(conn, "rehearsal", {**passed, "outcome": "stop_held"}, step_id="SB-12", spec_hash=SPEC)
    elsewhere = ledger.append(conn, "rehearsal", {**passed, "plan_hash": "d" * 64}, step_id="SB-12", spec_hash=SPEC)
    expires = future(2)
    with alice.connect() as session:
        session.execute("SET TimeZone = 'Pacific/Chatham'")
        approval_id, seq, digest = approve(session, expires=expires, note="as rehearsed", rehearsal_seq=rehearsal.seq)
        for wrong in (other.seq, 10_000, stopped.seq, elsewhere.seq):
            with pytest.raises(pg_errors.InvalidParameterValue, match="ledger record"):
                approve(session, rehearsal_seq=wrong)
    row = conn.execute(
        "SELECT a.approver_oid::bigint, a.approver, a.approver_role::text, a.approver_roles, a.system_identifier, "
        "a.database_name::text, a.rehearsal_seq, a.expires_at, s.system_identifier::text, current_database()::text "
        "FROM gcos.os_proposal_approvals a, pg_control_system() s WHERE a.id = %s",
        (approval_id,),
    ).fetchone()
    assert row is not None
    assert row[:4] == (alice.oid, "Alice", alice.name, ["sovereign"])
    assert (row[4], row[5]) == (row[8], row[9]) and row[6] == rehearsal.seq and row[7] == expires
    entry = ledger.read_all(conn)[seq - 1]
    assert entry.hash == digest and entry.kind == "approval"
    assert entry.record["actor"] == {
        "principal": "Alice",
        "role": alice.name,
        "role_oid": alice.oid,
        "kind": "human",
        "login_role": alice.name,  # gcos 8: who really logged in, and (16+) the authenticated identity
        "system_user": entry.record["actor"]["system_user"],
    }
    assert entry.payload["approval_id"] == approval_id and entry.payload["rehearsal_seq"] == rehearsal.seq
    assert entry.payload["expires_at"] == expires.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    oid = conn.execute("SELECT oid::bigint FROM pg_database WHERE datname = current_database()").fetchone()
    assert oid is not None  # gcos 8 binds the database OID too
    assert entry.payload["target"] == {"system_identifier": row[8], "database": row[9], "database_oid": oid[0]}
    orphans = conn.execute(
        "SELECT count(*) FROM gcos.os_proposal_approvals a LEFT JOIN gcos.ledger l ON l.seq = a.ledger_seq "
        "AND l.kind = 'approval' AND (l.record #>> '{payload,approval_id}')::bigint = a.id "
        "AND (l.record #>> '{actor,role_oid}')::oid = a.approver_oid WHERE l.seq IS NULL"
    ).fetchone()
    assert orphans == (0,)
    assert ledger.verify(conn).ok


def test_revocation_is_an_append_and_happens_once(conn: psycopg.Connection[Any], world: dict[str, Role]) -> None:
    status = conn.execute("SELECT id, in_force, revoked_by FROM gcos.approval_status ORDER BY id").fetchall()
    assert status == [(1, True, None), (2, False, "Bob")]
    decisions = conn.execute("SELECT id, in_force FROM gcos.decision_status ORDER BY id").fetchall()
    assert decisions == [(1, False), (2, True)]
    with world["alice"].connect() as alice:
        with pytest.raises(pg_errors.InvalidParameterValue, match="already revoked"):
            alice.execute("SELECT * FROM gcos.revoke_approval(2, 'again', md5('t'))")
        with pytest.raises(pg_errors.InvalidParameterValue, match="does not exist"):
            alice.execute("SELECT * FROM gcos.revoke_approval(99, 'none', md5('t'))")
    kinds = [e.kind for e in ledger.read_all(conn)]
    assert kinds.count("approval_revocation") == 1 and kinds.count("decision_revocation") == 1
    assert ledger.verify(conn).ok


def test_auditor_reads_and_verifies_but_writes_nothing(world: dict[str, Role]) -> None:
    with world["audrey"].connect() as audrey:
        assert ledger.verify(audrey).ok
        assert ledger.export_anchor(audrey).seq == len(ledger.read_all(audrey))
        for table in PROTECTED:
            audrey.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier("gcos", table)))
        with pytest.raises(GateRefused, match=r"(?i)permission denied"):
            ledger.append(audrey, "rehearsal", {})
        with pytest.raises(pg_errors.InsufficientPrivilege):
            approve(audrey)


# --------------------------------------------------------------------------- forged identities


def test_a_forged_identity_never_becomes_the_approver(conn: psycopg.Connection[Any], make_role: MakeRole) -> None:
    alice = make_role("alice", kind="human", roles=("sovereign",), grant=("sovereign",))
    bob = make_role("bob", kind="human", roles=("sovereign",), grant=("sovereign",))
    mallory = make_role("mallory", kind="human", roles=("operator",), grant=("operator", "sovereign"))
    for member in (bob, mallory):
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(alice.name), sql.Identifier(member.name)))
    own = f"{bob.name}_s"
    conn.execute(sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(sql.Identifier(own), sql.Identifier(bob.name)))
    alice_q, own_q = sql.Literal(alice.name), sql.Identifier(own)

    # An operator (granted gcos_sovereign and alice's role) is refused by every route.
    with mallory.connect() as session:
        attempts: list[sql.SQL | sql.Composed] = [
            sql.SQL("SELECT 1"),
            sql.SQL("SET ROLE gcos_sovereign"),
            sql.SQL("SET ROLE {}").format(sql.Identifier(alice.name)),
            sql.SQL("SELECT set_config('gcos.principal', {}, false)").format(alice_q),
        ]
        for attempt in attempts:
            session.execute(attempt)
            with pytest.raises(pg_errors.InsufficientPrivilege, match="principal Mallory holds neither"):
                approve(session)
        session.execute("RESET ROLE")
        with pytest.raises(pg_errors.InsufficientPrivilege):
            session.execute(sql.SQL("SET SESSION AUTHORIZATION {}").format(sql.Identifier(alice.name)))
        with pytest.raises(pg_errors.InsufficientPrivilege):
            session.execute(
                "INSERT INTO gcos.os_proposal_approvals (step_id, spec_hash, plan_hash, verdict, approver_oid,"
                " approver, approver_role, approver_roles, system_identifier, database_name, expires_at, created_at,"
                " ledger_seq)"
                " VALUES ('SB-12', %s, %s, 'approve', %s, 'Alice', %s, '{sovereign}', '0', 'x', now() + interval '1d',"
                " now(), 1)",
                (SPEC, PLAN, alice.oid, alice.name),
            )

    # A real sovereign trying to pass as another one gets a record in its own name, or a refusal.
    recorded = 0
    with bob.connect() as session:
        for forged in (
            "SELECT * FROM gcos.record_approval(%s, %s, %s, 'approve', %s, NULL, NULL, p_approver => %s)",
            "SELECT * FROM gcos.record_approval(%s, %s, %s, 'approve', %s, NULL, NULL, NULL, NULL, %s)",
        ):
            with pytest.raises(pg_errors.UndefinedFunction):
                session.execute(forged.encode(), ("SB-12", SPEC, PLAN, future(), alice.name))
        with pytest.raises(GateRefused) as refused:  # no client appends records at all (015)
            ledger.append(session, "approval", {"approver": alice.name})
        assert refused.value.exit_code == ExitCode.GATE_REFUSED
        approve(session, note=f"approved by {alice.name}")  # a flag-like note is just text
        recorded += 1
        session.execute(sql.SQL("SELECT set_config('gcos.approver', {}, false)").format(alice_q))
        session.execute(sql.SQL("SET application_name = {}").format(alice_q))
        approve(session)
        recorded += 1
        session.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(alice.name)))  # current_user = alice
        approve(session)
        recorded += 1
        session.execute("RESET ROLE")
        # shadows in pg_temp, first on the search_path
        session.execute(
            sql.SQL(
                "CREATE TEMP TABLE principals AS SELECT {oid}::oid AS role_oid, {name}::name AS role_name, "
                "'Alice'::text AS display_name, 'human'::text AS kind, ARRAY['sovereign'] AS roles; "
                "CREATE TEMP VIEW pg_roles AS SELECT * FROM pg_catalog.pg_roles WHERE rolname = {name}; "
                "CREATE FUNCTION pg_temp._session_actor(OUT role_oid oid, OUT role_name text, "
                "OUT is_superuser boolean, "
                "OUT principal text, OUT kind text, OUT roles text[]) LANGUAGE sql "
                "AS $$ SELECT {oid}::oid, {name}::text, false, 'Alice', 'human', ARRAY['sovereign'] $$; "
                "SET search_path = pg_temp, gcos, pg_catalog"
            ).format(oid=sql.Literal(alice.oid), name=alice_q)
        )
        session.execute(
            "SELECT * FROM record_approval('SB-12', %s, %s, 'approve', %s, NULL, NULL, %s)",
            (SPEC, PLAN, future(), TRACE),
        )
        recorded += 1
        session.execute("DISCARD TEMP")
        # shadows in its own schema, first on the search_path (ahead of pg_catalog itself)
        session.execute(
            sql.SQL(
                "CREATE TABLE {s}.principals AS SELECT {oid}::oid AS role_oid, 'Alice'::text AS display_name; "
                "CREATE VIEW {s}.pg_roles AS SELECT * FROM pg_catalog.pg_roles WHERE rolname = {name}; "
                "CREATE FUNCTION {s}.clock_timestamp() RETURNS timestamptz LANGUAGE sql "
                "AS $$ SELECT 'epoch'::timestamptz $$; "
                "CREATE FUNCTION {s}._session_actor(OUT role_oid oid, OUT role_name text, OUT is_superuser boolean, "
                "OUT principal text, OUT kind text, OUT roles text[]) LANGUAGE sql "
                "AS $$ SELECT {oid}::oid, {name}::text, false, 'Alice', 'human', ARRAY['sovereign'] $$; "
                "CREATE FUNCTION {s}.record_approval(text, text, text, text, timestamptz, text, bigint) "
                "RETURNS TABLE (approval_id bigint, ledger_seq bigint, ledger_hash text) LANGUAGE sql "
                "AS $$ SELECT 0::bigint, 0::bigint, 'forged'::text $$; "
                "SET search_path = {s}, gcos, pg_catalog"
            ).format(s=own_q, oid=sql.Literal(alice.oid), name=alice_q)
        )
        fake = session.execute(
            "SELECT * FROM record_approval('SB-12', %s, %s, 'approve', %s, NULL, NULL)", (SPEC, PLAN, future())
        ).fetchone()
        assert fake == (0, 0, "forged")  # its own function ran: nothing was recorded
        approve(session)  # the client names gcos.record_approval: the real one, unaffected by the shadows
        recorded += 1

    rows = conn.execute(
        "SELECT approver_oid::bigint, approver, approver_role::text, created_at > now() - interval '1 hour' "
        "FROM gcos.os_proposal_approvals"
    ).fetchall()
    assert rows == [(bob.oid, "Bob", bob.name, True)] * recorded
    actors = {
        (e.record["actor"]["role"], e.record["actor"]["role_oid"])
        for e in ledger.read_all(conn)
        if e.kind == "approval"
    }
    assert actors == {(bob.name, bob.oid)}
    assert ledger.verify(conn).ok


# --------------------------------------------------------------------------- the aperture in the catalog


# Functions that run spec SQL (checks, stop conditions) or resolve watched names keep the CALLER's search_path,
# by design (009_kernel_checks.sql, 005_fingerprint.sql): they are SECURITY INVOKER, and the kernel pins the path
# before it calls them. Every other gcos function pins pg_catalog, pg_temp.
CALLER_PATH = {"check_value", "evaluate_check", "stop_holds", "fingerprint", "fingerprint_digests"}  # 042
ALL_GCOS = ["gcos_admin", "gcos_auditor", "gcos_council", "gcos_operator", "gcos_sovereign"]
READERS = ["gcos_admin", "gcos_auditor", "gcos_operator"]
KERNEL_READERS = sorted([*READERS, "gcos_kernel"])
# The seven gates in SQL (010_gates.sql): invoker functions, so every helper is executable by the gcos roles.
GATES_SQL = [
    "rollback_subject_hash", "_short", "_jtext", "_jint", "_same_person", "_roles_text", "_jarray_text", "_gate",
    "_conflict_problem", "_incarnation_problem", "_step_history", "_rehearsal_relied_on", "_rollback_subjects",
    "_gates_cross_check", "_gates_context", "_state_text", "_gate_spec", "_committed_dependants",
    "_gate_dependencies", "_gate_reverify", "_gate_rehearsal_rollback", "_gate_rehearsal", "_approval_binding",
    "_approver_problem", "_approvals_judged", "_approvals_count", "_gate_approvals", "_decision_word",
    "_gate_decisions", "_gate_state", "_gates_unregistered", "evaluate_gates", "_utc", "_conflicts_text",
    "_expect_text",  # 015
    "_person_key", "_person_of", "_one_person", "_approvals_require", "_approvals_needed", "_role_word",  # 020
    "_signers_missing",  # 020
    "decision_text_hash",  # 024: what a decision record is bound to
    "_fact_person", "_facts_persons", "_gates_facts", "judge_gates",  # 041: decisions judged on recorded facts
    "_fp_rehash", "_governed_after", "_schema_at", "_schema_changes", "_units_related", "_commit_units",  # 028
    "_rollback_out_of_order",  # 028
    "_commit_code",  # 031: the code a later commit changed counts as an overlap
]  # fmt: skip
ALL_AND_KERNEL = sorted([*ALL_GCOS, "gcos_kernel"])
# The kernel's executors (011_kernel_rehearse.sql) act as gcos_kernel, the owner of adopted schemas: owned by it,
# executable by gcos_owner alone (the kernel's orchestrators), and those that run step SQL pin public, pg_temp.
KERNEL_EXECUTORS = {
    "_kernel_exec", "_kernel_batch", "_kernel_bounds", "_kernel_check", "_kernel_stop",
    # 013_kernel_batched.sql: the cursor row, keyset ranges and counts, one batch with its row count
    "_kernel_cursor", "_kernel_cursor_move", "_kernel_range", "_kernel_keys", "_kernel_batch_rows",
}  # fmt: skip
KERNEL_OWNED = {*KERNEL_EXECUTORS, "_kernel_fingerprint", "_kernel_digests"}  # 043
KERNEL_OWNED |= {"_kernel_tables_mark", "_kernel_digests_proved"}  # 048: the watched tables' mark and proof
KERNEL_OWNED |= {"_kernel_fingerprint_entry"}  # 052: a rehearsal's entry through the stored proof
# 021: what the adopted view public.os_proposal_approvals calls, owned by the kernel (an adopted view may not
# depend on a routine another role could replace), an invoker function.
SEED_APPROVALS_KERNEL = {"proposal_approvals"}
# 035: the online steps' entry points, and the one function a superuser owns (granting gcos_kernel needs ADMIN
# OPTION on it, which no lasting role may hold).
ONLINE_ENTRIES = ["rehearse_online", "online_begin", "online_next", "online_done", "online_finish", "online_sweep"]
ONLINE_SU = {"_online_member"}
# 040: the window shield's trigger function, owned by the kernel (an adopted table's trigger may depend only on what
# the kernel or a superuser owns), executable by its owner alone
WINDOW_KERNEL = {"_window_shield"}
WINDOW_ADOPT = ["_window_shielded", "_window_unshielded", "_window_shield_ensure", "_window_shield_drop"]
ADOPTION_HELPERS = {
    "_acl_apply", "_acl_delta", "_acl_grantable_by_us", "_acl_items", "_acl_lockdown", "_acl_objects", "_acl_of",
    "_acl_realize", "_acl_release_want", "_adopt_check_objects", "_adopt_links", "_object_parts", "_adopt_check_views",
    "_adopt_exec", "_adopt_lockdown", "_adopt_no_members", "_adopt_schemas", "_adopt_state", "_adopt_take",
    "_adopt_violations", "_alter_keyword", "_bypass_writers", "_grantee_sql", "_kernel_admins", "_kernel_members",
    "_kernel_oid", "_kernel_session_begin", "_kernel_session_end", "_object_owner", "_release_acls",
    "_release_check_owners", "_release_owners", "_role_label", "_schema_objects",
}  # fmt: skip


def test_every_function_pins_its_search_path_and_grants_are_exact(conn: psycopg.Connection[Any]) -> None:
    install(conn)
    rows = conn.execute(
        "SELECT p.proname, p.prosecdef, p.proconfig, pg_get_userbyid(p.proowner), "
        "ARRAY(SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END FROM "
        "aclexplode(COALESCE(p.proacl, acldefault('f', p.proowner))) a "
        "WHERE a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner ORDER BY 1) "
        "FROM pg_proc p WHERE p.pronamespace = 'gcos'::regnamespace"
    ).fetchall()
    assert rows and {r[0] for r in rows if r[3] != "gcos_owner"} == {
        *KERNEL_OWNED,
        *SEED_APPROVALS_KERNEL,
        *ONLINE_SU,
        *WINDOW_KERNEL,
    }
    assert all(r[3] == "gcos_kernel" for r in rows if r[0] in KERNEL_OWNED)
    pinned = {r[0] for r in rows if r[2] and r[2][0] == "search_path=pg_catalog, pg_temp"}
    assert {r[0] for r in rows if r[2] and r[2][0] == "search_path=public, pg_temp"} == KERNEL_EXECUTORS
    assert {r[0] for r in rows} - pinned - KERNEL_EXECUTORS == CALLER_PATH
    assert all(not r[1] for r in rows if r[0] in CALLER_PATH)  # caller's path only where the caller's rights apply
    definer = {r[0] for r in rows if r[1]}
    assert definer == {
        "installed_version",
        "whoami",
        "ledger_append",
        "add_principal",
        "record_approval",
        "record_decision",
        "revoke_approval",
        "revoke_decision",
        "lock_approvals",
        "register_spec",
        "register_plan",
        "_adopt_begin",
        "_adopt_record",
        "rehearse",
        "_rehearse_measured",  # 016: the rehearsal itself, called only by gcos.rehearse under the shared lock
        "commit",
        "_commit_kernel",  # 022: the commit itself, called only by gcos.commit once the run id is derived
        "batch_start",
        "_batch_start_kernel",  # 022: likewise for gcos.batch_start
        "batch_next",
        "batch_close",
        "explain_gates",
        "record_drift",
        "sessions_in_transaction",
        "valid_approvals",  # 021: read-only, what public.os_proposal_approvals lists
        "approvals_on_record",  # 021: read-only, the ledger's side of step 5's check
        "record_exception",  # 025: a sovereign waives one check
        "revoke_exception",  # 025
        *KERNEL_OWNED,
        *ONLINE_ENTRIES,  # 035: online steps
        *ONLINE_SU,
        "_online_guard",  # 035: the event trigger reads the tickets, which only gcos_owner may
        "_catalog_proof",  # 052: the only writer of gcos.catalog_proof, every value computed by itself
        "_catalog_proof_read",  # 052: reads gcos.catalog_proof, which no caller may
    }
    approvers = ["gcos_council", "gcos_sovereign"]
    expected = {
        "installed_version": ["PUBLIC"],
        "whoami": ["PUBLIC"],
        "jcs": ["PUBLIC"],
        "_jcs_string": ["PUBLIC"],
        "database_incarnation": ["PUBLIC"],
        "run_id": ALL_GCOS,  # 022: the derivation of run ids, for clients and auditors
        "record_drift": ALL_GCOS,  # 015: the kernel measures and writes; the caller only asks (auditors too)
        "sessions_in_transaction": ALL_AND_KERNEL,  # 017: pids, roles and states, never query texts
        "add_principal": ["gcos_admin"],
        "record_approval": approvers,
        "record_decision": approvers,
        "revoke_approval": approvers,
        "revoke_decision": approvers,
        "register_spec": ["gcos_admin", "gcos_operator"],
        "register_plan": ["gcos_admin", "gcos_operator"],
        "principal_conflicts": ALL_GCOS,
        "adopt": ["gcos_admin"],
        "release": ["gcos_admin"],
        "_adopt_begin": ["gcos_admin"],
        "_adopt_record": ["gcos_admin"],
        "rehearse": ["gcos_admin", "gcos_operator"],
        "commit": ["gcos_admin", "gcos_operator"],
        "batch_start": ["gcos_admin", "gcos_operator"],
        "batch_next": ["gcos_admin", "gcos_operator"],
        "batch_close": ["gcos_admin", "gcos_operator"],
        "explain_gates": ALL_GCOS,
        "_invalid": ["gcos_kernel"],
        **{name: ["gcos_owner"] for name in KERNEL_OWNED},
        **{name: ["gcos_admin"] for name in ADOPTION_HELPERS},
        "fingerprint": READERS,
        **dict.fromkeys(
            ["fingerprint_at", "_fp_json_sql", "_fp_order_sql", "_fp_query", "_fp_resolve"], KERNEL_READERS
        ),
        **dict.fromkeys(
            ["_fp_schema", "_fp_schema_head", "_fp_schema_text", "_fp_sequences", "_fp_tables"], KERNEL_READERS
        ),
        **dict.fromkeys(["_fp_schema_parts", "_fp_schema_digested", "_fp_take"], KERNEL_READERS),  # 042
        **dict.fromkeys(["fingerprint_digests", "fingerprint_objects"], READERS),  # 042
        "_table_state": ["gcos_kernel"],  # 048
        **dict.fromkeys(["_fp_take_proved", "_fp_tables_text"], KERNEL_READERS),  # 048; under fingerprint_digests (052)
        **dict.fromkeys(["_catalog_proof", "_catalog_proof_read"], KERNEL_READERS),  # 052: the stored catalog proof
        "_fp_digests_stored": READERS,  # 052
        **dict.fromkeys(["check_value", "evaluate_check", "expect_holds", "_same", "stop_holds"], ALL_AND_KERNEL),
        **dict.fromkeys(["footprint_probe", "footprint", "allow_violations", "_ident_parts", "_named"], ALL_GCOS),
        **dict.fromkeys(["_names", "_user_schema"], ALL_AND_KERNEL),
        **dict.fromkeys(GATES_SQL, ALL_GCOS),
        **dict.fromkeys(["_approvals_now", *SEED_APPROVALS_KERNEL], ALL_GCOS),  # 021
        **dict.fromkeys(["valid_approvals", "approvals_on_record"], ALL_AND_KERNEL),  # 021: step checks read them
        "record_exception": ["gcos_sovereign"],  # 025: only a sovereign waives a check
        "revoke_exception": ["gcos_sovereign"],
        **dict.fromkeys(["_exceptions_in_force", "_waive", "_waived_text"], ALL_GCOS),  # 025: evaluate_gates reads them
        **{name: ["gcos_admin", "gcos_operator"] for name in ONLINE_ENTRIES},  # 035
        "_online_member": ["gcos_owner"],  # 035: only the online kernel functions lend gcos_kernel's rights
        # 040: gcos.adopt and gcos.release (caller's rights) put the window shield on and take it off
        **{name: ["gcos_admin"] for name in WINDOW_ADOPT},
    }
    assert {r[0]: r[4] for r in rows if r[4]} == expected
    writable = conn.execute(
        "SELECT c.relname, a.privilege_type, pg_get_userbyid(a.grantee) FROM pg_class c, aclexplode(c.relacl) a "
        "WHERE c.relnamespace = 'gcos'::regnamespace AND a.grantee <> c.relowner AND a.privilege_type <> 'SELECT'"
    ).fetchall()
    assert writable == []


# --------------------------------------------------------------------------- the ledger is closed (015)

PEOPLE = {  # every kind of principal a client can log in as
    "operator": {"kind": "human", "roles": ("operator",), "grant": ("operator",)},
    "agent": {"kind": "agent", "roles": ("operator",), "grant": ("operator",)},
    "sovereign": {"kind": "human", "roles": ("sovereign",), "grant": ("sovereign",)},
    "council": {"kind": "human", "roles": ("council",), "grant": ("council",)},
    "admin": {"kind": "human", "roles": ("admin",), "grant": ("admin",)},
    "auditor": {"kind": "human", "roles": ("auditor",), "grant": ("auditor",)},
}
FORGED = ["drift", "rehearsal", "commit", "policy_decision", "stop", "made_up_kind"]


@pytest.mark.parametrize("adopted", [False, True], ids=["public-not-adopted", "public-adopted"])
def test_no_role_but_a_superuser_appends_any_record(
    conn: psycopg.Connection[Any], make_role: MakeRole, adopted: bool
) -> None:
    """Issue 9 (seed 000, "a single write aperture"): no client makes the database say something happened, not
    even drift; only the kernel's own functions write, and where the kernel governs nothing nobody writes at all."""
    conn.execute("CREATE TABLE public.kept (id integer PRIMARY KEY)")
    if adopted:
        adopt(conn, ["public"])
    people = {who: make_role(who, **spec) for who, spec in PEOPLE.items()}
    before = len(ledger.read_all(conn))
    for who, role in people.items():
        with role.connect() as session:
            for kind in FORGED:
                for function in ("ledger_append", "_ledger_write"):
                    query = sql.SQL("SELECT * FROM gcos.{}(%s, 'SB-12', NULL, NULL, NULL, %s)").format(
                        sql.Identifier(function)
                    )
                    with pytest.raises(pg_errors.InsufficientPrivilege):
                        session.execute(query, (kind, Jsonb({"outcome": "applied", "differences": ["forged"]})))
            with pytest.raises(GateRefused) as info:  # the client library says so too: exit 3
                ledger.append(session, "drift", {"differences": ["forged"]}, step_id="SB-12")
            assert info.value.exit_code == ExitCode.GATE_REFUSED, who
    assert len(ledger.read_all(conn)) == before
    assert ledger.append(conn, "note", {"by": "superuser"}).record["actor"]["role"] == conn.info.user


def test_a_stray_grant_opens_nothing(conn: psycopg.Connection[Any], make_role: MakeRole) -> None:
    """gcos.ledger_append refuses every caller but a superuser itself, whoever grants EXECUTE on it."""
    operator = make_role("operator", **PEOPLE["operator"])
    conn.execute(
        sql.SQL("GRANT EXECUTE ON FUNCTION gcos.ledger_append(text, text, text, text, text, jsonb) TO {}").format(
            sql.Identifier(operator.name)
        )
    )
    with operator.connect() as session, pytest.raises(pg_errors.InsufficientPrivilege, match="only the kernel records"):
        session.execute("SELECT * FROM gcos.ledger_append('drift', 'SB-12', NULL, NULL, NULL, '{}')")
    assert [e.kind for e in ledger.read_all(conn)].count("drift") == 0
