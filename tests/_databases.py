"""The test server and its databases: where the embedded server lives, its test settings, one admin session
per process, and CREATE/DROP DATABASE the cheapest way each server allows (tests/conftest.py's fixtures).

Setup is most of what a test of the kernel costs: ~650 of the suite's tests each get a database copied from
a session template and dropped after it; see _server_parent, FILE_COPY_FROM and _admin for what each saves.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

GIB = 1024**3
SHM_FREE, MEM_AVAILABLE = 4 * GIB, 8 * GIB
"""What a worker's embedded server in memory needs free (its data reach ~1 GiB: three 206 MB templates of the
reference world, a copy, the WAL) in /dev/shm, and in the machine (tmpfs pages cannot be swapped out)."""


def _server_parent() -> str | None:
    """Where the embedded test server's data directory goes: GCOS_TEST_PG_PARENT if set (empty: the temp dir),
    else /dev/shm when it is a tmpfs with room (SHM_FREE, MEM_AVAILABLE), else the temp dir.

    Every test of the kernel creates and drops a database of ~300 files: on a disk file system (ext4 here) that
    cost the server's backend 110-270 ms of CPU, in memory ~20 ms (CREATE DATABASE from the installed template,
    a connection, DROP DATABASE; PostgreSQL 18, fsync off, a loaded machine; its journal and writeback aside)."""
    chosen = os.environ.get("GCOS_TEST_PG_PARENT")
    if chosen is not None:
        return chosen or None
    try:
        mounts = Path("/proc/mounts").read_text().split("\n")
        meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line)
        shm = os.statvfs("/dev/shm")
    except OSError:
        return None
    tmpfs = any(line.split()[1:3] == ["/dev/shm", "tmpfs"] for line in mounts if line.strip())
    available = int(meminfo.get("MemAvailable", "0 kB").split()[0]) * 1024
    free = shm.f_bavail * shm.f_frsize
    return "/dev/shm" if tmpfs and free >= SHM_FREE and available >= MEM_AVAILABLE else None


# Durability the throw-away test server does not need; each costs a sync per commit, CREATE or DROP DATABASE.
_TEST_SERVER_SETTINGS = {"fsync": "off", "full_page_writes": "off", "synchronous_commit": "off"}


def _tune_test_server(admin_dsn: str) -> None:
    """Switch the session's own embedded server to _TEST_SERVER_SETTINGS (reloadable: no restart)."""
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        for name, value in _TEST_SERVER_SETTINGS.items():
            admin.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value)))
        admin.execute("SELECT pg_catalog.pg_reload_conf()")
    for _ in range(100):  # the reload is asynchronous: wait until a new session sees it
        with psycopg.connect(admin_dsn, autocommit=True) as check:
            if check.execute("SELECT pg_catalog.current_setting('fsync')").fetchone() == ("off",):
                return
        time.sleep(0.05)
    raise RuntimeError("the embedded test server did not take its test settings")


FILE_COPY_FROM = 64 * 1024 * 1024
"""Template size (bytes) from which a copy goes file by file (15+) on a server that syncs: a WAL-logged copy
of the 1M-row world writes all of it to the WAL again, while a file copy of a small template costs two
checkpoints of the whole server (measured on a PostgreSQL 15 with fsync on: 2.4 s a copy of the installed
template, against 0.57 s WAL-logged). Without fsync (the embedded test server) a checkpoint syncs nothing and
every template goes file by file: the installed template in ~30 ms against ~43 ms WAL-logged (quiet, PG 18),
with less CPU (no WAL record of every page)."""

_template_sizes: dict[str, int] = {}
_admins: dict[str, psycopg.Connection[Any]] = {}
_syncs: dict[str, bool] = {}


def _admin(pg_admin_dsn: str) -> psycopg.Connection[Any]:
    """This process's one autocommit superuser session on the test server (made again if a test ended it):
    a connection per CREATE and per DROP DATABASE cost two backend starts per test. On 18+ its file copies
    use copy_file_range (file_copy_method = clone: in the kernel, a reflink where the file system has them;
    a world copy ~185 ms of the backend's CPU against ~200 ms read and written, on ext4)."""
    admin = _admins.get(pg_admin_dsn)
    if admin is None or admin.closed or admin.broken:
        admin = psycopg.connect(pg_admin_dsn, autocommit=True)
        clone = "SELECT 'clone' = ANY (enumvals) FROM pg_catalog.pg_settings WHERE name = 'file_copy_method'"
        if admin.execute(clone).fetchone() == (True,):  # 18+, where the platform has it
            admin.execute("SET file_copy_method = clone")
        _admins[pg_admin_dsn] = admin
    return admin


def _as_admin(pg_admin_dsn: str, action: Callable[[psycopg.Connection[Any]], None]) -> None:
    """`action` on the admin session, once more on a new session if a test ended the old one under it."""
    admin = _admin(pg_admin_dsn)
    try:
        action(admin)
    except psycopg.OperationalError:
        if not admin.broken:
            raise
        action(_admin(pg_admin_dsn))


def _close_admins() -> None:
    """At the session's end, before its server stops (an embedded server's fast shutdown would end them)."""
    for admin in _admins.values():
        admin.close()
    _admins.clear()


def _create_database(admin: psycopg.Connection[Any], name: str, template: str | None = None) -> None:
    """CREATE DATABASE, copying `template` (else template1) file by file where the server can (15+) and it is
    cheaper (see FILE_COPY_FROM)."""
    create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template:
        create += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
    if admin.info.server_version >= 150000 and (
        not _server_syncs(admin) or (template and _template_size(admin, template) >= FILE_COPY_FROM)
    ):
        create += sql.SQL(" STRATEGY FILE_COPY")
    admin.execute(create)


def _server_syncs(admin: psycopg.Connection[Any]) -> bool:
    """Whether the server fsyncs (read once per server): a checkpoint costs a sync of every dirty file then."""
    key = f"{admin.info.host}:{admin.info.port}"
    if key not in _syncs:
        row = admin.execute("SELECT pg_catalog.current_setting('fsync')").fetchone()
        _syncs[key] = row is None or row[0] != "off"
    return _syncs[key]


def _template_size(admin: psycopg.Connection[Any], template: str) -> int:
    """The template's size, read once: a session template is complete before it is first copied."""
    if template not in _template_sizes:
        row = admin.execute("SELECT pg_catalog.pg_database_size(%s)::bigint", (template,)).fetchone()
        _template_sizes[template] = int(row[0]) if row else 0
    return _template_sizes[template]


def _drop_database(admin: psycopg.Connection[Any], name: str) -> None:
    _await_sessions_gone(admin, name)
    force = admin.info.server_version >= 130000
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)") if force else sql.SQL("DROP DATABASE IF EXISTS {}")
    admin.execute(drop.format(sql.Identifier(name)))


SESSIONS_GONE = "SELECT pg_catalog.count(*) FROM pg_catalog.pg_stat_activity WHERE datname = %s"


def _await_sessions_gone(admin: psycopg.Connection[Any], name: str) -> None:
    """Wait (~0.1 s at most) until the sessions a test closed have left database `name`: DROP DATABASE that
    finds a backend still exiting sleeps 100 ms before it looks again (CountOtherDBBackends), WITH (FORCE)
    or not; a new admin connection per drop used to give them the time."""
    for _ in range(40):
        if admin.execute(SESSIONS_GONE, (name,)).fetchone() == (0,):
            return
        time.sleep(0.0025)


def _fresh_database(pg_admin_dsn: str, template: str | None = None) -> Iterator[str]:
    name = f"gcos_test_{uuid.uuid4().hex[:12]}"
    _as_admin(pg_admin_dsn, lambda admin: _create_database(admin, name, template))
    try:
        yield make_conninfo(pg_admin_dsn, dbname=name)
    finally:
        _as_admin(pg_admin_dsn, lambda admin: _drop_database(admin, name))
