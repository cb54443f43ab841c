"""What every part of the evidence shares: the format version and file names, how a ledger value is shown,
and how files are written (atomically) and hashed (the manifest and ``verify_pack`` must agree on it)."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
LEDGER_FILE = "ledger.json"
ANCHOR_FILE = "anchor.json"
STEPS_DIR = "steps"
REPORT_MD = "report.md"
HTML_FILE = "report.html"
INDEX_MD = "index.md"


def shown(value: Any) -> str:
    """How a value from a ledger record is shown in md and html: text as it is, anything else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def utc_text(moment: datetime) -> str:
    """A database time as the ledger writes times: UTC, microseconds, a trailing Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def as_dict(value: Any) -> dict[str, Any]:
    """A ledger value read as an object: anything else reads as empty (a report shows what is there)."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    """A ledger value read as a list: anything else reads as empty."""
    return value if isinstance(value, list) else []


def sha256_file(path: Path) -> str:
    """The sha256 of a file's bytes, as the manifest lists it and ``sha256sum`` prints it."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()


def dumps(value: Any) -> bytes:
    """A JSON file of the pack: indented, keys sorted, UTF-8, a trailing newline (stable bytes, stable hashes)."""
    return (json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def write_atomic(path: Path, data: bytes) -> Path:
    """Write `data` to `path` through a new temporary file in the same directory (mode 0666 less the umask, as
    any file the user writes), flushed to disk, then renamed into place: a reader sees the old file or the new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return path
