"""Vouchers: "this exact content already passed these checks, under this exact checking code".

Loading a step spec validates it with JSON Schema and parses its SQL with PostgreSQL's grammar, and a rehearsal
checks the SQL statically before anything runs: about 0.2 s of client CPU per `gcos rehearse` process, imports
of jsonschema and the SQL checks included (issue 13 item 2), spent again on unchanged files. A voucher lets a
process skip a check that already passed on the same bytes.

A voucher is an empty file in the user's cache directory (`$GCOS_CACHE_DIR`, else `$XDG_CACHE_HOME/gcos`, else
`~/.cache/gcos`; `checked/`) named by HMAC-SHA256, under a random key kept beside it (`key`, mode 0600), of the
check's kind, the checking code (the sources of the checkers and the shipped schemas, the versions of pglast and
jsonschema as installed) and the exact content checked. Only passes are vouched for: a refusal is computed
each time, so its message is the same. Changed content or code has another name, so it is checked again; a
voucher forged without the key names nothing a process looks for; a deleted, unreadable or foreign cache
directory only means checking again, and so does a key that another user owns or may write, or that lies in a
directory another user owns or may write (they could have put it there). `GCOS_NO_CACHE=1` turns vouchers off, and
so does running under pytest
unless GCOS_CACHE_DIR is set (the suite tests the checkers themselves).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import stat
import sys
import tempfile
from collections.abc import Callable
from functools import cache
from pathlib import Path

KEY_BYTES = 32


def cache_dir() -> Path | None:
    """The directory of the vouchers and their key, or None when vouchers are off."""
    explicit = os.environ.get("GCOS_CACHE_DIR")
    if os.environ.get("GCOS_NO_CACHE") or (not explicit and os.environ.get("PYTEST_CURRENT_TEST")):
        return None
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gcos"


@cache
def _key(directory: Path) -> bytes | None:
    """The HMAC key under `directory`, made on first use; None (and the cache off, said once on stderr) if it
    cannot be made or read, or if someone else could have written it (see _read_key)."""
    if not _owners_checkable():
        return None  # (no owners to check on this system: vouchers are off by design, see _read_key)
    if not (directory / "key").exists():
        try:
            _make_key(directory)
        except OSError as exc:
            _off(f"its key cannot be made under {directory} ({exc.strerror or exc})")
            return None
    found = _read_key(directory)
    if found is None:
        _off(
            f"{directory}/key is unreadable, not {KEY_BYTES} bytes, or not yours alone (the directory must be yours "
            "and writable by no one else, the key yours with mode 0600)"
        )
        return None
    return found


def _make_key(directory: Path) -> None:
    """A new random key (mode 0600), written whole before it appears under its name, so a process killed meanwhile
    leaves no short key; a key another process made first stays (os.link never replaces), and is the one read."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    (directory / "checked").mkdir(exist_ok=True, mode=0o700)
    fd, temp = tempfile.mkstemp(dir=directory, prefix=".key-")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(secrets.token_bytes(KEY_BYTES))
        with contextlib.suppress(FileExistsError):  # another process made the key first: theirs is read next
            os.link(temp, directory / "key")
    finally:
        os.unlink(temp)


def _off(reason: str) -> None:
    """Vouchers cannot be used: say why (once per process, on stderr, so --json output stays clean); every check
    then runs, as with GCOS_NO_CACHE=1."""
    _say_once(f"gcos: the check cache is off: {reason}; every check runs (GCOS_NO_CACHE=1 silences this)")


@cache
def _say_once(message: str) -> None:
    print(message, file=sys.stderr)


def _owners_checkable() -> bool:
    return hasattr(os, "geteuid") and hasattr(os, "O_DIRECTORY")


def _read_key(directory: Path) -> bytes | None:
    """The key, only when the directory and the key file are this user's own and no one else may write them: a
    key another user could have put there (a shared GCOS_CACHE_DIR, a directory under /tmp, a planted file) would
    let them name vouchers for content that never passed. Read through the directory's descriptor, so what is
    checked is what is read. Where the system has no owners to check (no geteuid, no O_DIRECTORY): no key."""
    if not _owners_checkable():
        return None
    try:
        folder = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return None
    try:
        if not _own(os.fstat(folder), 0o022, stat.S_ISDIR):
            return None
        with os.fdopen(os.open("key", os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=folder), "rb") as handle:
            if not _own(os.fstat(handle.fileno()), 0o077, stat.S_ISREG):
                return None
            data = handle.read(KEY_BYTES + 1)
    except OSError:
        return None
    finally:
        os.close(folder)
    return data if len(data) == KEY_BYTES else None


def _own(st: os.stat_result, others: int, kind: Callable[[int], bool]) -> bool:
    """Of that kind, owned by this process's user, without any of the permission bits `others`."""
    return kind(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & others


@cache
def code_tag() -> bytes:
    """A digest of the code whose verdict a voucher records: gcos's checkers and schemas, pglast and jsonschema
    as installed (their files' names, sizes and times: a reinstall or upgrade changes it)."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for path in code_files(root):
        digest.update(f"{path.relative_to(root)}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    for package in ("pglast", "jsonschema", "referencing"):
        digest.update(_installed(package).encode())
    return digest.digest()


def code_files(root: Path) -> list[Path]:
    """The files of gcos (under `root`) whose code judges content: every gcos module a load and static check
    imports (tests/test_attacks_s22.py holds it to that)."""
    ours = [*(root / "spec").glob("*.py"), *(root / "sqlcheck").glob("*.py"), *(root / "schemas").glob("*.json")]
    names = ("kernel.py", "sql_lines.py", "limits.py", "canonical.py", "errors.py", "__init__.py")
    return sorted([*ours, *(root / name for name in names)])


def _installed(package: str) -> str:
    """Name, size and mtime of each file at the top of an installed package (without importing it)."""
    from importlib.util import find_spec

    spec = find_spec(package)
    if spec is None or not spec.origin:
        return f"{package}: absent\n"
    folder = Path(spec.origin).parent
    lines = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.is_file():
            st = entry.stat()
            lines.append(f"{package}/{entry.name} {st.st_size} {st.st_mtime_ns}")
    return "\n".join(lines) + "\n"


def _name(kind: str, content: bytes) -> tuple[Path, str] | None:
    directory = cache_dir()
    if directory is None:
        return None
    key = _key(directory)
    if key is None:
        return None
    mac = hmac.new(key, kind.encode() + b"\0" + code_tag(), hashlib.sha256)
    mac.update(content)
    return directory / "checked", mac.hexdigest()


def vouched(kind: str, content: bytes) -> bool:
    """Whether checks `kind` passed on exactly `content` under this code (a voucher exists)."""
    found = _name(kind, content)
    return found is not None and (found[0] / found[1]).is_file()


def vouch(kind: str, content: bytes) -> None:
    """Record that checks `kind` passed on `content`; a cache that cannot be written only costs time (said once)."""
    found = _name(kind, content)
    if found is None:
        return
    try:
        found[0].mkdir(parents=True, exist_ok=True, mode=0o700)
        (found[0] / found[1]).touch()
    except OSError as exc:
        _off(f"a voucher cannot be written under {found[0]} ({exc.strerror or exc})")
