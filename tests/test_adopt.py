"""`gcos adopt` (issue 9 item 1, the single write aperture): after adoption, nobody but gcos_kernel writes to
the schema; reads stay; the ledger lists what was taken; --release gives it all back.

Attacked as the people gcos governs: an operator, a sovereign, a council member, an agent, the schema's
previous owner and a human gcos admin who does not own the schema.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from conftest import MakeRole, Role
from psycopg import sql
from typer.testing import CliRunner

from gcos import adopt, ledger
from gcos.cli import app
from gcos.errors import GateRefused, SpecError
from gcos.install import install

SCHEMA_SQL = """
CREATE SCHEMA app;
CREATE TABLE app.t (id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY, label text);
CREATE INDEX t_label_idx ON app.t (label);
INSERT INTO app.t (label) VALUES ('one'), ('two');
CREATE VIEW app.v AS SELECT id, label FROM app.t;
CREATE MATERIALIZED VIEW app.mv AS SELECT id, label FROM app.t;
CREATE SEQUENCE app.seq;
CREATE FUNCTION app.f() RETURNS integer LANGUAGE sql AS 'SELECT 1';
CREATE FUNCTION app.secret() RETURNS bigint LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog
    AS 'SELECT count(*) FROM app.t';
CREATE TYPE app.mood AS ENUM ('calm', 'wild');
CREATE DOMAIN app.pos AS integer CHECK (VALUE > 0);
GRANT USAGE ON SCHEMA app TO {everyone};
GRANT CREATE ON SCHEMA app TO {operator}, {agent};
GRANT SELECT ON app.t, app.v, app.mv, app.seq TO {everyone};
GRANT INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON app.t TO {operator}, {agent};
GRANT INSERT, UPDATE ON app.v TO {operator};
GRANT USAGE, UPDATE ON SEQUENCE app.seq TO {operator}, {agent};
GRANT UPDATE (label) ON app.t TO {sovereign};
GRANT INSERT (label), SELECT (label) ON app.t TO {council};
GRANT SELECT ON app.t TO {council} WITH GRANT OPTION;
GRANT INSERT ON app.t TO PUBLIC;
GRANT SELECT ON app.v TO PUBLIC;
"""

# What nobody but gcos_kernel may do on an adopted schema (each must fail with SQLSTATE 42501).
DENIED = [
    "CREATE TABLE app.x (a integer)",
    "CREATE VIEW app.x AS SELECT 1 AS a",
    "CREATE FUNCTION app.x() RETURNS integer LANGUAGE sql AS 'SELECT 1'",
    "CREATE SEQUENCE app.x",
    "CREATE TYPE app.x AS ENUM ('a')",
    "ALTER TABLE app.t ADD COLUMN z integer",
    "ALTER TABLE app.t RENAME TO t2",
    "ALTER TABLE app.t ENABLE ROW LEVEL SECURITY",
    "ALTER VIEW app.v RENAME TO v2",
    "ALTER MATERIALIZED VIEW app.mv RENAME TO mv2",
    "ALTER INDEX app.t_label_idx SET (fillfactor = 50)",
    "ALTER SEQUENCE app.seq RESTART",
    "ALTER FUNCTION app.f() RENAME TO f2",
    "ALTER FUNCTION app.secret() SECURITY INVOKER",
    "ALTER TYPE app.mood ADD VALUE 'x'",
    "ALTER DOMAIN app.pos SET DEFAULT 1",
    "ALTER SCHEMA app RENAME TO app2",
    "DROP TABLE app.t",
    "DROP VIEW app.v",
    "DROP MATERIALIZED VIEW app.mv",
    "DROP INDEX app.t_label_idx",
    "DROP SEQUENCE app.seq",
    "DROP FUNCTION app.f()",
    "DROP FUNCTION app.secret()",
    "DROP TYPE app.mood",
    "DROP DOMAIN app.pos",
    "DROP SCHEMA app CASCADE",
    "INSERT INTO app.t (label) VALUES ('x')",
    "INSERT INTO app.v (label) VALUES ('x')",
    "UPDATE app.t SET label = 'y'",
    "UPDATE app.v SET label = 'y'",
    "DELETE FROM app.t",
    "TRUNCATE app.t",
    "COMMENT ON TABLE app.t IS 'x'",
    "COMMENT ON SCHEMA app IS 'x'",
    "CREATE TRIGGER x BEFORE INSERT ON app.t FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()",
    "CREATE RULE x AS ON INSERT TO app.t DO INSTEAD NOTHING",
    "CREATE POLICY x ON app.t USING (true)",
    "CREATE INDEX ON app.t (id, label)",
    "REINDEX TABLE app.t",
    "REFRESH MATERIALIZED VIEW app.mv",
    "LOCK TABLE app.t IN ACCESS EXCLUSIVE MODE",
    "SELECT pg_catalog.nextval('app.seq')",
    "SELECT pg_catalog.setval('app.seq', 42)",
    "SELECT app.secret()",
]

READS = [
    "SELECT count(*) FROM app.t",
    "SELECT count(*) FROM app.v",
    "SELECT count(*) FROM app.mv",
    "SELECT last_value FROM app.seq",
    "SELECT app.f()",
    "SELECT 'calm'::app.mood",
    "SELECT 1::app.pos",
]

# Owner and privileges of everything in schema app (columns included), as sets, by name.
STATE_SQL = """
WITH objs AS (
    SELECT 'schema ' || nspname AS object, nspowner AS owner, COALESCE(nspacl, acldefault('n', nspowner)) AS acl
      FROM pg_namespace WHERE nspname = 'app'
    UNION ALL
    SELECT 'rel ' || c.oid::regclass::text, c.relowner,
           COALESCE(c.relacl, acldefault(CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END::"char", c.relowner))
      FROM pg_class c WHERE c.relnamespace = 'app'::regnamespace
    UNION ALL
    SELECT 'column ' || a.attrelid::regclass::text || '.' || a.attname, NULL, a.attacl
      FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
     WHERE c.relnamespace = 'app'::regnamespace AND a.attnum > 0 AND a.attacl IS NOT NULL AND cardinality(a.attacl) > 0
    UNION ALL
    SELECT 'routine ' || p.oid::regprocedure::text, p.proowner, COALESCE(p.proacl, acldefault('f', p.proowner))
      FROM pg_proc p WHERE p.pronamespace = 'app'::regnamespace
    UNION ALL
    SELECT 'type ' || t.oid::regtype::text, t.typowner, COALESCE(t.typacl, acldefault('T', t.typowner))
      FROM pg_type t WHERE t.typnamespace = 'app'::regnamespace
)
SELECT o.object, pg_get_userbyid(o.owner),
       ARRAY(SELECT concat_ws(' ', CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(x.grantee) END,
                              x.privilege_type, x.is_grantable, pg_get_userbyid(x.grantor))
               FROM aclexplode(o.acl) x ORDER BY 1)
  FROM objs o ORDER BY 1
"""


@dataclass(frozen=True)
class World:
    owner: Role  # created schema app; not a superuser, not a principal
    people: dict[str, Role]  # operator, sovereign, council, agent principals
    admin: Role  # a human gcos admin who does not own the schema


def state(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return conn.execute(STATE_SQL).fetchall()


def ledger_kinds(conn: psycopg.Connection[Any]) -> list[str]:
    return [e.kind for e in ledger.read_all(conn)]


def kernel_members(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM pg_auth_members WHERE roleid = 'gcos_kernel'::regrole").fetchone()
    assert row is not None
    return int(row[0])


def sqlstate_of(role: Role, statements: list[str]) -> dict[str, str | None]:
    """Each statement run as `role`, each in its own transaction that is rolled back: None if it succeeded,
    else its SQLSTATE."""
    outcome: dict[str, str | None] = {}
    with role.connect() as c:
        for statement in statements:
            try:
                with c.transaction(force_rollback=True):
                    c.execute(statement.encode())
                outcome[statement] = None
            except psycopg.Error as exc:
                outcome[statement] = exc.sqlstate
    return outcome


@pytest.fixture
def world(conn: psycopg.Connection[Any], make_role: MakeRole) -> Iterator[World]:
    owner = make_role("appowner")
    conn.execute(
        sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(
            sql.Identifier(conn.info.dbname), sql.Identifier(owner.name)
        )
    )
    people = {
        "operator": make_role("operator", kind="human", roles=("operator",), grant=("operator",)),
        "sovereign": make_role("sovereign", kind="human", roles=("sovereign",), grant=("sovereign",)),
        "council": make_role("council", kind="human", roles=("council",), grant=("council",)),
        "agent": make_role("agent", kind="agent", roles=("operator",), grant=("operator",)),
    }
    admin = make_role("admin", kind="human", roles=("admin",), grant=("admin",))
    names = {k: sql.Identifier(r.name) for k, r in people.items()}
    everyone = sql.SQL(", ").join(names.values())
    with owner.connect() as c:
        c.execute(sql.SQL(SCHEMA_SQL).format(everyone=everyone, **names))  # type: ignore[arg-type]
        if c.info.server_version >= 170000:  # REFRESH, LOCK, VACUUM ... without owning
            c.execute(sql.SQL("GRANT MAINTAIN ON app.t, app.mv TO {}").format(names["operator"]))
    with people["council"].connect() as c:  # a grant by a grant-option holder, not by the owner
        c.execute(sql.SQL("GRANT SELECT ON app.t TO {}").format(names["agent"]))
    yield World(owner, people, admin)
    conn.execute("DROP SCHEMA IF EXISTS app, base CASCADE")  # before the roles go: grants by a non-owner


@pytest.fixture
def adopted(conn: psycopg.Connection[Any], world: World) -> Iterator[adopt.AdoptResult]:
    yield adopt.adopt(conn, ["app"])


def test_adopted_schema_is_the_kernels_and_nobody_else_writes(
    conn: psycopg.Connection[Any], world: World, adopted: adopt.AdoptResult
) -> None:
    (change,) = adopted.schemas
    assert change.status is adopt.Status.ADOPTED and adopted.changed
    owners = conn.execute(
        "SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class WHERE relnamespace = 'app'::regnamespace "
        "UNION SELECT DISTINCT pg_get_userbyid(proowner) FROM pg_proc WHERE pronamespace = 'app'::regnamespace "
        "UNION SELECT DISTINCT pg_get_userbyid(typowner) FROM pg_type WHERE typnamespace = 'app'::regnamespace "
        "UNION SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'app'"
    ).fetchall()
    assert owners == [("gcos_kernel",)]
    assert kernel_members(conn) == 0
    for who, role in [*world.people.items(), ("previous owner", world.owner), ("admin", world.admin)]:
        outcome = sqlstate_of(role, DENIED)
        wrong = {statement: code for statement, code in outcome.items() if code != "42501"}
        assert wrong == {}, f"{who} was not denied"
    for who, role in world.people.items():
        outcome = sqlstate_of(role, READS)
        assert outcome == dict.fromkeys(READS), f"{who} lost a read"
    assert conn.execute("SELECT count(*) FROM app.t").fetchone() == (2,)


def test_grant_by_a_reader_changes_nothing(
    conn: psycopg.Connection[Any], world: World, adopted: adopt.AdoptResult
) -> None:
    """GRANT by a role without grant option is, per PostgreSQL, a WARNING ("no privileges were granted") when
    it holds some privilege on the object, a 42501 when it holds none: either way nothing changes."""
    before = state(conn)
    attempts = [
        "GRANT INSERT ON app.t TO PUBLIC",
        "GRANT SELECT ON app.t TO PUBLIC",
        "GRANT CREATE ON SCHEMA app TO PUBLIC",
    ]
    for role in [*world.people.values(), world.owner]:  # the previous owner is a reader now, like the others
        outcome = sqlstate_of(role, attempts)
        assert set(outcome.values()) <= {None, "42501"}
    assert state(conn) == before


def test_the_ledger_lists_what_was_taken(
    conn: psycopg.Connection[Any], world: World, adopted: adopt.AdoptResult
) -> None:
    (change,) = adopted.schemas
    entry = ledger.read_all(conn)[-1]
    assert (entry.kind, entry.seq) == ("adopt", change.ledger_seq)
    assert ledger.verify(conn).ok
    payload = entry.payload
    assert payload["schema"] == "app"
    assert {o["previous_owner"] for o in payload["owners"]} == {world.owner.name}
    assert {o["object"] for o in payload["owners"]} >= {"app", "app.t", "app.v", "app.mv", "app.seq", "app.f()"}
    revoked = {(p["grantee"], p["privilege"], p["object"], p["grantable"]) for p in payload["revoked"]}
    op, agent, sov, council = (world.people[k].name for k in ("operator", "agent", "sovereign", "council"))
    for who in (op, agent):
        for privilege in ("INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"):
            assert (who, privilege, "app.t", False) in revoked
        assert {(who, "CREATE", "app", False), (who, "USAGE", "app.seq", False)} <= revoked
    assert (sov, "UPDATE", "app.t.label", False) in revoked
    assert {(council, "INSERT", "app.t.label", False), (council, "SELECT", "app.t", True)} <= revoked
    assert ("PUBLIC", "INSERT", "app.t", False) in revoked
    if conn.info.server_version >= 170000:
        assert {(op, "MAINTAIN", "app.t", False), (op, "MAINTAIN", "app.mv", False)} <= revoked
    council_grants = [p for p in payload["revoked"] if p["grantor"] == council]
    assert [(p["grantee"], p["privilege"]) for p in council_grants] == [(agent, "SELECT")]
    assert not any(
        p["privilege"] == "SELECT" and not p["grantable"] and p["grantor"] != council for p in payload["revoked"]
    )  # every read stays (the agent's, granted by the kernel now)
    granted = {(p["grantee"], p["privilege"], p["object"], p["grantable"]) for p in payload["granted"]}
    assert {g for g in granted if g[0] != world.owner.name} == {(council, "SELECT", "app.t", False)}  # no grant option
    assert [(p["grantee"], p["object"]) for p in payload["revoked_execute"]] == [("PUBLIC", "app.secret()")]
    readers = (op, agent, sov, council, world.owner.name)  # the previous owner could read every table too
    assert {(d["on"], d["grantee"]) for d in payload["default_privileges"]} == {
        (on, name) for on in ("TABLES", "SEQUENCES") for name in readers
    }
    assert len(change.revoked) == len(payload["revoked"]) and change.revoked_execute[0].grantee == "PUBLIC"
    assert conn.execute("SELECT schema_name, ledger_seq, released_at FROM gcos.adopted_schemas").fetchall() == [
        ("app", change.ledger_seq, None)
    ]


def test_the_kernel_creates_readable_tables(conn: psycopg.Connection[Any], world: World, adopted: Any) -> None:
    conn.execute("SET ROLE gcos_kernel")
    conn.execute("CREATE TABLE app.later (a integer)")
    conn.execute("CREATE FUNCTION app.later_f() RETURNS integer LANGUAGE sql SECURITY DEFINER AS 'SELECT 1'")
    conn.execute("RESET ROLE")
    outcome = sqlstate_of(
        world.people["agent"], ["SELECT * FROM app.later", "INSERT INTO app.later VALUES (1)", "SELECT app.later_f()"]
    )
    assert list(outcome.values()) == [None, "42501", "42501"]


def test_records_cannot_be_forged(conn: psycopg.Connection[Any], world: World, make_role: MakeRole) -> None:
    conn.execute("CREATE SCHEMA other; CREATE TABLE other.t (a integer)")
    admin, operator = world.admin, world.people["operator"]
    for role in (admin, operator, world.people["agent"]):
        outcome = sqlstate_of(
            role,
            [
                "SELECT * FROM gcos.ledger_append('adopt', NULL, NULL, md5('t'), NULL, '{\"schema\": \"other\"}')",
                "SELECT * FROM gcos.ledger_append('release', NULL, NULL, md5('t'), NULL, '{}')",
                "SELECT * FROM gcos._adopt_record('other'::regnamespace, 'adopt')",
                "INSERT INTO gcos.adopted_schemas (schema_oid, schema_name, adopted_at, ledger_seq) "
                "VALUES ('other'::regnamespace, 'other', now(), 1)",
            ],
        )
        assert set(outcome.values()) == {"42501"}, role.name
    with admin.connect() as c, c.transaction(), pytest.raises(psycopg.errors.InsufficientPrivilege):
        c.execute("SELECT gcos._adopt_begin('other'::regnamespace, 'adopt')")
        c.execute("SELECT * FROM gcos._adopt_record('other'::regnamespace, 'adopt')")  # nothing was adopted
    # a superuser who hands the schema over by hand cannot record it as an adoption either
    with conn.transaction(force_rollback=True):
        conn.execute("ALTER SCHEMA other OWNER TO gcos_kernel; ALTER TABLE other.t OWNER TO gcos_kernel")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM gcos._adopt_record('other'::regnamespace, 'adopt')")
    with conn.transaction(force_rollback=True):
        conn.execute("SELECT gcos._adopt_begin('other'::regnamespace, 'adopt')")
        conn.execute("ALTER SCHEMA other OWNER TO gcos_kernel")  # the table is still someone else's
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM gcos._adopt_record('other'::regnamespace, 'adopt')")
    assert "adopt" not in ledger_kinds(conn)
    assert conn.execute("SELECT count(*) FROM gcos.adopted_schemas").fetchone() == (0,)


def test_release_gives_everything_back(conn: psycopg.Connection[Any], world: World) -> None:
    before = state(conn)
    adopted = adopt.adopt(conn, ["app"])
    assert state(conn) != before
    released = adopt.release(conn, ["app"])
    (change,) = released.schemas
    assert change.status is adopt.Status.RELEASED
    assert state(conn) == before
    assert conn.execute(
        "SELECT count(*) FROM pg_default_acl WHERE defaclnamespace = 'app'::regnamespace"
    ).fetchone() == (0,)
    entry = ledger.read_all(conn)[-1]
    assert (entry.kind, entry.seq, entry.payload["adopt_seq"]) == (
        "release",
        change.ledger_seq,
        adopted.schemas[0].ledger_seq,
    )
    assert {o["owner"] for o in entry.payload["owners"]} == {world.owner.name}
    assert conn.execute("SELECT release_seq FROM gcos.adopted_schemas").fetchone() == (change.ledger_seq,)
    assert sqlstate_of(world.people["operator"], ["INSERT INTO app.t (label) VALUES ('back')"]) == {
        "INSERT INTO app.t (label) VALUES ('back')": None
    }
    # and it can be adopted again
    again = adopt.adopt(conn, ["app"])
    assert again.schemas[0].status is adopt.Status.ADOPTED
    assert ledger.verify(conn).ok


def test_adopting_twice_is_a_no_op(conn: psycopg.Connection[Any], world: World, adopted: adopt.AdoptResult) -> None:
    kinds, after = ledger_kinds(conn), state(conn)
    second = adopt.adopt(conn, ["app", "app"])
    assert [(s.schema, s.status, s.ledger_seq, s.violations) for s in second.schemas] == [
        ("app", adopt.Status.ALREADY_ADOPTED, adopted.schemas[0].ledger_seq, ())
    ]
    assert not second.changed and ledger_kinds(conn) == kinds and state(conn) == after
    # a superuser's change afterwards is not undone, but named
    conn.execute(sql.SQL("GRANT INSERT ON app.t TO {}").format(sql.Identifier(world.people["operator"].name)))
    (third,) = adopt.adopt(conn, ["app"]).schemas
    assert third.status is adopt.Status.ALREADY_ADOPTED and len(third.violations) == 1
    assert ledger_kinds(conn) == kinds


def test_refusals_change_nothing(conn: psycopg.Connection[Any], world: World) -> None:
    before, kinds = state(conn), ledger_kinds(conn)
    with world.admin.connect() as c, pytest.raises(GateRefused):  # a human admin who owns nothing
        adopt.adopt(c, ["app"])
    for role in (world.people["operator"], world.owner):  # not admins: no EXECUTE on gcos.adopt
        with role.connect() as c, pytest.raises(GateRefused):
            adopt.adopt(c, ["app"])
    with pytest.raises(SpecError):
        adopt.release(conn, ["app"])  # not adopted
    for bad in (["nope"], ["gcos"], ["pg_catalog"], ["app", "nope"], []):
        with pytest.raises(SpecError):
            adopt.adopt(conn, bad)
    admin = sql.Identifier(world.admin.name)
    for role in ("gcos_kernel", "pg_write_all_data"):  # a member of the kernel; one who writes around ACLs
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(role), admin))
        with pytest.raises(GateRefused):
            adopt.adopt(conn, ["app"])
        conn.execute(sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(role), admin))
    assert state(conn) == before and ledger_kinds(conn) == kinds
    assert conn.execute("SELECT count(*) FROM gcos.adopted_schemas").fetchone() == (0,)


def test_what_the_kernel_would_read_or_run_elsewhere_is_refused(conn: psycopg.Connection[Any], world: World) -> None:
    """A view reading another schema's table (the kernel could not read it); a trigger calling another
    schema's routine its owner could replace (it would run as the kernel): adopt both schemas, or neither."""
    with world.owner.connect() as c:
        c.execute(
            "CREATE SCHEMA base; CREATE TABLE base.src (a integer); CREATE VIEW app.through AS SELECT a FROM base.src"
        )
    before = state(conn)
    with pytest.raises(SpecError):
        adopt.adopt(conn, ["app"])
    assert state(conn) == before
    with world.owner.connect() as c:
        c.execute(
            "DROP VIEW app.through; CREATE FUNCTION base.touch() RETURNS trigger LANGUAGE plpgsql "
            "AS 'BEGIN RETURN NEW; END'; "
            "CREATE TRIGGER touch BEFORE UPDATE ON app.t FOR EACH ROW EXECUTE FUNCTION base.touch()"
        )
    before = state(conn)
    with pytest.raises(SpecError):
        adopt.adopt(conn, ["app"])
    assert state(conn) == before
    both = adopt.adopt(conn, ["app", "base"])
    assert [s.status for s in both.schemas] == [adopt.Status.ADOPTED] * 2
    assert sqlstate_of(world.owner, ["INSERT INTO base.src VALUES (1)"]) == {"INSERT INTO base.src VALUES (1)": "42501"}
    adopt.release(conn, ["base", "app"])
    assert state(conn) == before


def test_every_kind_of_object_and_extension_members(conn: psycopg.Connection[Any], gcos_installed: None) -> None:
    install(conn)
    conn.execute(
        """
        CREATE SCHEMA odd;
        CREATE TABLE odd.p (id integer, k integer) PARTITION BY RANGE (k);
        CREATE TABLE odd.p1 PARTITION OF odd.p FOR VALUES FROM (0) TO (10);
        CREATE TABLE odd.ser (id serial PRIMARY KEY, a integer, b integer);
        CREATE TYPE odd.r AS RANGE (subtype = int8);
        CREATE TYPE odd.c AS (a integer, b text);
        CREATE COLLATION odd.coll (provider = libc, locale = 'C');
        CREATE OPERATOR odd.=== (leftarg = integer, rightarg = integer, function = int4eq);
        CREATE OPERATOR CLASS odd.oc FOR TYPE integer USING btree AS OPERATOR 1 <;
        CREATE TEXT SEARCH CONFIGURATION odd.ts (COPY = pg_catalog.english);
        CREATE TEXT SEARCH DICTIONARY odd.td (TEMPLATE = simple);
        CREATE STATISTICS odd.st ON a, b FROM odd.ser;
        CREATE CONVERSION odd.cv FOR 'LATIN1' TO 'UTF8' FROM iso8859_1_to_utf8;
        CREATE AGGREGATE odd.ag(integer) (sfunc = int4pl, stype = integer);
        CREATE PROCEDURE odd.pr() LANGUAGE sql AS 'SELECT 1';
        CREATE EXTENSION citext SCHEMA odd;
        """
    )
    result = adopt.adopt(conn, ["odd"])
    (change,) = result.schemas
    assert any("citext" in m for m in change.extension_members)
    not_kernel = conn.execute(
        """SELECT (pg_identify_object(d.classid, d.objid, 0)).identity FROM pg_depend d
            WHERE d.refclassid = 'pg_namespace'::regclass AND d.refobjid = 'odd'::regnamespace AND d.deptype = 'n'
              AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = d.classid AND e.objid = d.objid
                                AND e.deptype = 'e')
              AND d.classid <> 'pg_extension'::regclass
              AND gcos._object_owner(d.classid, d.objid) <> 'gcos_kernel'::regrole"""
    ).fetchall()
    assert not_kernel == []
    assert conn.execute("SELECT pg_get_userbyid(extowner) FROM pg_extension WHERE extname = 'citext'").fetchone() != (
        "gcos_kernel",
    )
    adopt.release(conn, ["odd"])
    assert conn.execute(
        "SELECT count(*) FROM pg_class WHERE relnamespace = 'odd'::regnamespace AND relowner = 'gcos_kernel'::regrole"
    ).fetchone() == (0,)


def test_a_managed_service_administrator_adopts_without_becoming_the_kernel(
    conn: psycopg.Connection[Any], world: World, make_role: MakeRole
) -> None:
    """The database owner with CREATEROLE (and, from PostgreSQL 16, ADMIN OPTION on gcos_kernel) and
    membership in the objects' owner: it grants itself gcos_kernel inside the transaction only."""
    dbo = make_role("dbo", kind="human", roles=("admin",), grant=("admin",))
    conn.execute(sql.SQL("ALTER ROLE {} CREATEROLE").format(sql.Identifier(dbo.name)))
    conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(world.owner.name), sql.Identifier(dbo.name)))
    if conn.info.server_version >= 160000:
        conn.execute(
            sql.SQL("GRANT gcos_kernel TO {} WITH ADMIN TRUE, INHERIT FALSE, SET FALSE").format(
                sql.Identifier(dbo.name)
            )
        )
    database = sql.Identifier(conn.info.dbname)
    conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(database, sql.Identifier(dbo.name)))
    try:
        before = state(conn)
        with dbo.connect() as c:
            assert adopt.adopt(c, ["app"]).schemas[0].status is adopt.Status.ADOPTED
            assert kernel_members(conn) == (1 if conn.info.server_version >= 160000 else 0)  # the ADMIN-only grant
            assert adopt.release(c, ["app"]).schemas[0].status is adopt.Status.RELEASED
        # Everything is back but the council's own grant to the agent: the administrator may not SET ROLE to
        # the council to grant as it (the agent keeps its SELECT from the owner), and the record says so.
        lost = [(b[0], sorted(set(b[2]) - set(a[2]))) for b, a in zip(before, state(conn), strict=True) if a != b]
        council, agent = world.people["council"].name, world.people["agent"].name
        assert lost == [("rel app.t", [f"{agent} SELECT f {council}"])]
        restored = ledger.read_all(conn)[-1].payload["granted"]
        assert not any(p["grantor"] == council for p in restored)
        assert [k for k in ledger_kinds(conn) if k in ("adopt", "release")] == ["adopt", "release"]
    finally:
        conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(database, sql.Identifier(conn.info.user)))
        conn.execute(sql.SQL("REVOKE gcos_kernel FROM {}").format(sql.Identifier(dbo.name)))


def test_cli_adopt_and_release(dsn: str, world: World) -> None:
    runner = CliRunner()
    first = runner.invoke(app, ["adopt", "app", "--dsn", dsn, "--json"])
    assert first.exit_code == 0, first.output
    body = json.loads(first.stdout)
    assert body["ok"] and body["result"]["schemas"][0]["status"] == "adopted"
    text = runner.invoke(app, ["adopt", "app", "--dsn", dsn], terminal_width=200)
    assert text.exit_code == 0, text.output
    second = runner.invoke(app, ["adopt", "app", "--dsn", dsn, "--json"])
    assert json.loads(second.stdout)["result"]["schemas"][0]["status"] == "already_adopted"
    released = runner.invoke(app, ["adopt", "--release", "app", "--dsn", dsn], terminal_width=200)
    assert released.exit_code == 0, released.output
    again = runner.invoke(app, ["adopt", "--release", "app", "--dsn", dsn, "--json"])
    assert again.exit_code == 2 and json.loads(again.stdout)["exit_code"] == 2
    missing = runner.invoke(app, ["adopt", "nope", "--dsn", dsn])
    assert missing.exit_code == 2


# Review findings (PostgreSQL 15 and 18), as (setup, attack, the outside object named): each setup links
# schema app to an object outside it that the operator ({op}) owns; {owner} owns the end in app. The attack
# is what the operator did to the kernel's objects through that link once app alone was adopted.
LINKS = {
    "partition": (
        "CREATE TABLE public.pp (id integer, v text) PARTITION BY RANGE (id); ALTER TABLE public.pp OWNER TO {op};"
        "CREATE TABLE app.part1 PARTITION OF public.pp FOR VALUES FROM (0) TO (10);"
        "ALTER TABLE app.part1 OWNER TO {owner}",
        "INSERT INTO public.pp VALUES (1, 'x')",
        "public.pp",
    ),
    "inheritance": (
        "CREATE TABLE public.ip (a integer); ALTER TABLE public.ip OWNER TO {op};"
        "CREATE TABLE app.ic (b integer) INHERITS (public.ip); ALTER TABLE app.ic OWNER TO {owner}",
        "UPDATE public.ip SET a = 2",
        "public.ip",
    ),
    "foreign key": (
        "CREATE TABLE public.fkp (id integer PRIMARY KEY); ALTER TABLE public.fkp OWNER TO {op};"
        "CREATE TABLE app.acc (id integer REFERENCES public.fkp ON DELETE CASCADE);"
        "ALTER TABLE app.acc OWNER TO {owner}",
        "DELETE FROM public.fkp",
        "public.fkp",
    ),
    "enum": (
        "CREATE TYPE public.mood AS ENUM ('ok'); ALTER TYPE public.mood OWNER TO {op};"
        "CREATE TABLE app.u (m public.mood); ALTER TABLE app.u OWNER TO {owner}",
        "ALTER TYPE public.mood RENAME VALUE 'ok' TO 'ko'",
        "public.mood",
    ),
    "domain": (
        "CREATE DOMAIN public.money_d AS numeric CHECK (VALUE > 0); ALTER DOMAIN public.money_d OWNER TO {op};"
        "CREATE TABLE app.w (d public.money_d); ALTER TABLE app.w OWNER TO {owner}",
        "DROP DOMAIN public.money_d CASCADE",
        "public.money_d",
    ),
    "view": (
        "CREATE TABLE public.base (a integer); ALTER TABLE public.base OWNER TO {op};"
        "GRANT SELECT ON public.base TO PUBLIC;"
        "CREATE VIEW app.bv AS SELECT a FROM public.base; ALTER VIEW app.bv OWNER TO {owner}",
        "DROP TABLE public.base CASCADE",
        "public.base",
    ),
    "partition into": (
        "CREATE TABLE app.ledger (id integer, v text) PARTITION BY RANGE (id); ALTER TABLE app.ledger OWNER TO {owner};"
        "GRANT SELECT ON app.ledger TO PUBLIC;"
        "CREATE TABLE public.ledger_p1 PARTITION OF app.ledger FOR VALUES FROM (0) TO (10);"
        "ALTER TABLE public.ledger_p1 OWNER TO {op}",
        "INSERT INTO public.ledger_p1 VALUES (1, 'forged')",
        "public.ledger_p1",
    ),
}


@pytest.mark.parametrize("case", LINKS)
def test_a_link_to_what_others_control_is_refused_until_adopted_together(
    conn: psycopg.Connection[Any], world: World, case: str
) -> None:
    setup, attack, outside = LINKS[case]
    operator = world.people["operator"]
    ids = {"op": sql.Identifier(operator.name), "owner": sql.Identifier(world.owner.name)}
    conn.execute(sql.SQL(setup).format(**ids))  # type: ignore[arg-type]
    before, kinds = state(conn), ledger_kinds(conn)
    with pytest.raises(SpecError) as refused:
        adopt.adopt(conn, ["app"])
    assert outside in refused.value.message
    assert state(conn) == before and ledger_kinds(conn) == kinds
    both = adopt.adopt(conn, ["app", "public"])  # the set is closed now
    assert [s.status for s in both.schemas] == [adopt.Status.ADOPTED] * 2
    assert sqlstate_of(operator, [attack]) == {attack: "42501"}


RECHECKS = {  # what a superuser does to an adopted schema afterwards, and what the re-check names
    "link": ("CREATE TYPE public.later AS ENUM ('a'); ALTER TYPE public.later OWNER TO {op};"
             "ALTER TABLE app.t ADD COLUMN later public.later", "public.later"),
    "partition": ("CREATE TABLE public.pl (a integer) PARTITION BY LIST (a); ALTER TABLE public.pl OWNER TO {op};"
                  "CREATE TABLE app.pl1 PARTITION OF public.pl FOR VALUES IN (1);"
                  "ALTER TABLE app.pl1 OWNER TO gcos_kernel",
                  "public.pl"),
    "dropped": ("DROP MATERIALIZED VIEW app.mv", "app.mv"),
    "extension": ("CREATE EXTENSION hstore SCHEMA app", "hstore"),
}  # fmt: skip


@pytest.mark.parametrize("case", RECHECKS)
def test_the_recheck_names_links_missing_objects_and_extensions(
    conn: psycopg.Connection[Any], world: World, adopted: adopt.AdoptResult, case: str
) -> None:
    change, named = RECHECKS[case]
    conn.execute(sql.SQL(change).format(op=sql.Identifier(world.people["operator"].name)))
    (again,) = adopt.adopt(conn, ["app"]).schemas
    assert again.status is adopt.Status.ALREADY_ADOPTED
    assert [v for v in again.violations if named in v] != [], again.violations
    conn.execute("CREATE SCHEMA other")  # what holds no longer in app does not stop another adoption
    assert adopt.adopt(conn, ["other"]).schemas[0].status is adopt.Status.ADOPTED


def test_nobody_but_a_superuser_puts_an_extension_in_an_adopted_schema(
    conn: psycopg.Connection[Any], world: World, adopted: adopt.AdoptResult, make_role: MakeRole
) -> None:
    """A trusted extension skips the schema's CREATE check; its owner could later DROP EXTENSION ... CASCADE
    into adopted columns. The database owner (not a superuser) may still create one elsewhere."""
    assert world.owner.name in adopted.schemas[0].database_creators  # CREATE on the database: named
    dbo = make_role("dbo")
    database = sql.Identifier(conn.info.dbname)
    conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(database, sql.Identifier(dbo.name)))
    try:
        attempt = "CREATE EXTENSION hstore SCHEMA app"
        assert sqlstate_of(dbo, [attempt]) == {attempt: "42501"}
        with dbo.connect() as c:
            c.execute("CREATE SCHEMA mine; CREATE EXTENSION hstore SCHEMA mine")
        moved = "ALTER EXTENSION hstore SET SCHEMA app"
        assert sqlstate_of(dbo, [moved]) == {moved: "42501"}
        in_app = "SELECT count(*) FROM pg_extension WHERE extnamespace = 'app'::regnamespace"
        assert conn.execute(in_app).fetchone() == (0,)
    finally:
        conn.execute("DROP SCHEMA IF EXISTS mine CASCADE")
        conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(database, sql.Identifier(conn.info.user)))


def test_the_previous_owner_keeps_its_reads_until_release(conn: psycopg.Connection[Any], world: World) -> None:
    before = state(conn)
    (change,) = adopt.adopt(conn, ["app"]).schemas
    assert sqlstate_of(world.owner, READS) == dict.fromkeys(READS)
    mine = {(p.object, p.privilege, p.grantable) for p in change.granted if p.grantee == world.owner.name}
    assert {("app", "USAGE", False), ("app.t", "SELECT", False), ("app.seq", "SELECT", False),
            ("app.f()", "EXECUTE", False), ("app.mood", "USAGE", False)} <= mine  # fmt: skip
    assert {p for _, p, _ in mine} <= {"USAGE", "SELECT", "EXECUTE"} and ("app.seq", "USAGE", False) not in mine
    assert ("app.secret()", "EXECUTE", False) not in mine  # SECURITY DEFINER: it would run as the kernel
    adopt.release(conn, ["app"])
    assert state(conn) == before
