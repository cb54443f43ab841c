"""`gcos install` (issue 3 item 1): versioned, idempotent, upgrades in place, safe to run concurrently."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from gcos import ledger
from gcos.errors import GateRefused, GcosError, SpecError
from gcos.install import Migration, install, installed_version, migrations

GROUP_ROLES = ["gcos_admin", "gcos_auditor", "gcos_council", "gcos_operator", "gcos_owner", "gcos_sovereign"]

SNAPSHOT = """
SELECT 'class', c.relname::text, concat_ws(' ', c.relkind, pg_get_userbyid(c.relowner), c.relacl)
  FROM pg_class c WHERE c.relnamespace = 'gcos'::regnamespace
UNION ALL
SELECT 'column', a.attrelid::regclass::text || '.' || a.attname,
       concat_ws(' ', format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attgenerated,
                 pg_get_expr(d.adbin, d.adrelid))
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE c.relnamespace = 'gcos'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'constraint', conrelid::regclass::text || '.' || conname, pg_get_constraintdef(oid)
  FROM pg_constraint WHERE connamespace = 'gcos'::regnamespace
UNION ALL
SELECT 'trigger', tgrelid::regclass::text || '.' || tgname, concat_ws(' ', tgenabled, pg_get_triggerdef(oid))
  FROM pg_trigger WHERE tgrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'gcos'::regnamespace)
UNION ALL
SELECT 'function', p.oid::regprocedure::text,
       concat_ws(' ', md5(p.prosrc), p.prosecdef, pg_get_userbyid(p.proowner), p.proacl, p.proconfig)
  FROM pg_proc p WHERE p.pronamespace = 'gcos'::regnamespace
UNION ALL
SELECT 'schema', nspname::text, concat_ws(' ', pg_get_userbyid(nspowner), nspacl)
  FROM pg_namespace WHERE nspname = 'gcos'
UNION ALL
SELECT 'default_acl', concat_ws(' ', defaclrole::regrole, defaclobjtype), defaclacl::text FROM pg_default_acl
UNION ALL
SELECT 'role', rolname::text, concat_ws(' ', rolcanlogin, rolsuper, rolinherit) FROM pg_roles
 WHERE rolname IN ('gcos_owner', 'gcos_admin', 'gcos_operator', 'gcos_sovereign', 'gcos_council', 'gcos_auditor')
UNION ALL
SELECT 'version', version::text, concat_ws(' ', name, sha256, applied_at) FROM gcos.schema_version
UNION ALL
SELECT 'ledger', seq::text, hash FROM gcos.ledger
UNION ALL
SELECT 'head', seq::text, hash FROM gcos.ledger_head
ORDER BY 1, 2, 3
"""


def snapshot(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return conn.execute(SNAPSHOT.encode()).fetchall()


def test_shipped_files_are_a_gapless_sequence() -> None:
    files = migrations()
    assert [m.version for m in files] == list(range(1, len(files) + 1)) and len(files) >= 2
    assert all(m.name.startswith(f"{m.version:03d}_") and len(m.sha256) == 64 for m in files)


def test_fresh_install_creates_everything(conn: psycopg.Connection[Any]) -> None:
    assert installed_version(conn) is None
    result = install(conn)
    newest = len(migrations())
    assert (result.version_before, result.version_after, result.changed) == (None, newest, True)
    assert result.applied == [m.name for m in migrations()]
    assert installed_version(conn) == newest
    assert conn.execute("SELECT gcos.installed_version()").fetchone() == (newest,)
    roles = conn.execute(
        "SELECT rolname, rolcanlogin, rolsuper FROM pg_roles WHERE rolname = ANY(%s) ORDER BY 1", (GROUP_ROLES,)
    ).fetchall()
    assert roles == [(name, False, False) for name in GROUP_ROLES]
    owners = conn.execute(
        "SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class WHERE relnamespace = 'gcos'::regnamespace "
        "UNION SELECT DISTINCT pg_get_userbyid(proowner) FROM pg_proc WHERE pronamespace = 'gcos'::regnamespace "
        "AND proname <> '_online_member' "
        "UNION SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'gcos' ORDER BY 1"
    ).fetchall()
    assert owners == [("gcos_kernel",), ("gcos_owner",)]  # the kernel's executors act as gcos_kernel (011)
    # 035: lending gcos_kernel to one ticketed statement needs ADMIN OPTION on it, which only a superuser holds
    assert conn.execute(
        "SELECT r.rolsuper FROM pg_proc p JOIN pg_roles r ON r.oid = p.proowner WHERE p.proname = '_online_member'"
    ).fetchall() == [(True,)]
    tables = {
        r[0]
        for r in conn.execute(
            "SELECT relname FROM pg_class WHERE relnamespace = 'gcos'::regnamespace AND relkind = 'r'"
        )
    }
    assert {
        "schema_version",
        "principals",
        "principals_history",
        "ledger",
        "ledger_head",
        "os_proposal_approvals",
        "approval_revocations",
        "decisions",
        "decision_revocations",
    } <= tables
    versions = conn.execute("SELECT version, name, sha256 FROM gcos.schema_version ORDER BY 1").fetchall()
    assert versions == [(m.version, m.name, m.sha256) for m in migrations()]
    (entry,) = ledger.read_all(conn)
    assert entry.kind == "install" and entry.payload == {
        "version_before": None,
        "version_after": newest,
        "applied": result.applied,
    }
    assert ledger.verify(conn).ok


def test_reinstall_changes_nothing(conn: psycopg.Connection[Any]) -> None:
    install(conn)
    before = snapshot(conn)
    assert len(before) > 100
    result = install(conn)
    assert (result.applied, result.changed, result.version_before) == ([], False, result.version_after)
    assert snapshot(conn) == before


def test_upgrade_in_place_keeps_the_ledger(conn: psycopg.Connection[Any]) -> None:
    first = install(conn, upto=1)
    assert (first.version_after, first.applied) == (1, ["001_foundation.sql"])
    assert conn.execute("SELECT to_regclass('gcos.os_proposal_approvals')").fetchone() == (None,)
    kept = ledger.append(conn, "rehearsal", {"before": "upgrade"})
    assert install(conn, upto=1).applied == []
    second = install(conn)
    assert (second.version_before, second.version_after) == (1, len(migrations()))
    assert second.applied == [m.name for m in migrations()[1:]]
    entries = ledger.read_all(conn)
    assert entries[kept.seq - 1] == kept and entries[-1].kind == "install"
    assert entries[-1].payload["version_before"] == 1
    assert ledger.verify(conn).ok
    assert conn.execute("SELECT count(*) FROM gcos.os_proposal_approvals").fetchone() == (0,)


def test_a_newer_file_set_upgrades_and_an_older_gcos_refuses_it(conn: psycopg.Connection[Any]) -> None:
    install(conn)
    extra = Migration(
        len(migrations()) + 1,
        "999_test_extra.sql",
        """
        SET LOCAL ROLE gcos_owner;
        CREATE TABLE gcos.test_extra (id integer PRIMARY KEY);
        GRANT SELECT ON gcos.test_extra TO gcos_auditor;
    """,
    )
    result = install(conn, files=[*migrations(), extra])
    assert result.applied == ["999_test_extra.sql"] and result.version_after == extra.version
    assert conn.execute(
        "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = 'gcos.test_extra'::regclass"
    ).fetchone() == ("gcos_owner",)
    with pytest.raises(SpecError, match="newer than this gcos"):
        install(conn)
    assert installed_version(conn) == extra.version


def test_bad_requests_are_refused(conn: psycopg.Connection[Any]) -> None:
    with pytest.raises(SpecError, match="versions 1 to"):
        install(conn, upto=99)
    files = migrations()
    with pytest.raises(GcosError, match="out of sequence"):
        install(conn, files=[files[0], Migration(3, "003_gap.sql", "SELECT 1")])
    conn.execute("CREATE SCHEMA gcos")
    with pytest.raises(SpecError, match="not created by gcos install"):
        install(conn)
    conn.execute("DROP SCHEMA gcos")
    with conn.transaction(), pytest.raises(GcosError, match="outside a transaction"):
        install(conn)
    assert installed_version(conn) is None


def test_install_needs_a_superuser(conn: psycopg.Connection[Any], dsn: str) -> None:
    name = f"gcos_t_{uuid.uuid4().hex[:8]}_plain"
    conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'x'").format(sql.Identifier(name)))
    try:
        with (
            psycopg.connect(make_conninfo(dsn, user=name, password="x"), autocommit=True) as plain,
            pytest.raises(GateRefused, match="superuser"),
        ):
            install(plain)
    finally:
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))
    assert installed_version(conn) is None


def test_concurrent_installs_serialize(conn: psycopg.Connection[Any], dsn: str) -> None:
    results: list[Any] = []
    barrier = threading.Barrier(3)

    def run() -> None:
        with psycopg.connect(dsn, autocommit=True) as mine:
            barrier.wait()
            try:
                results.append(install(mine))
            except Exception as exc:  # collected and asserted below
                results.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert all(not isinstance(r, Exception) for r in results), results
    applied = sorted(len(r.applied) for r in results)
    assert applied == [0, 0, len(migrations())]
    assert conn.execute("SELECT count(*) FROM gcos.schema_version").fetchone() == (len(migrations()),)
    assert [e.kind for e in ledger.read_all(conn)] == ["install"]
