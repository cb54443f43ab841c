"""The JSON evidence pack: ``ledger.json``, ``anchor.json``, ``steps/<STEP>.json``, ``report.md`` and, written
last, ``manifest.json`` with the sha256 of every other file (``verify.verify_pack`` checks it offline)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from gcos import __version__ as gcos_version
from gcos import ledger
from gcos.errors import SpecError
from gcos.evidence.common import (
    ANCHOR_FILE,
    FORMAT_VERSION,
    LEDGER_FILE,
    MANIFEST,
    REPORT_MD,
    STEPS_DIR,
    as_dict,
    dumps,
    sha256_file,
    write_atomic,
)
from gcos.evidence.render import render
from gcos.evidence.snapshot import Snapshot


def clear_old_pack(out_dir: Path) -> None:
    """Make room for a pack: the directory must be empty, or hold a previous gcos pack whose files go."""
    if not out_dir.is_dir() or not any(out_dir.iterdir()):
        return
    manifest_path = out_dir / MANIFEST
    try:
        old = json.loads(manifest_path.read_text(encoding="utf-8"))
        listed = [PurePosixPath(p) for p in as_dict(old.get("files"))] if old.get("format_version") == 1 else None
    except (OSError, ValueError, AttributeError):
        listed = None
    if listed is None or any(p.is_absolute() or ".." in p.parts for p in listed):
        raise SpecError(
            f"{out_dir} is not empty and holds no gcos evidence pack; choose an empty directory for a pack."
        )
    for rel in listed:
        (out_dir / rel).unlink(missing_ok=True)
    manifest_path.unlink()
    leftover = sorted(p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*") if not p.is_dir())
    if leftover:
        raise SpecError(
            f"{out_dir} holds files that are not part of its previous evidence pack ({leftover[0]}); "
            "choose an empty directory for a pack."
        )


def write_pack(out_dir: Path, context: Mapping[str, Any], snapshot: Snapshot) -> tuple[Path, ...]:
    """Write the pack of `context` (the report's view model) to `out_dir`; return its files, the manifest last."""
    if not snapshot.rows:
        raise SpecError("The ledger is empty: there is nothing to put in an evidence pack yet.")
    clear_old_pack(out_dir)
    last = snapshot.rows[-1]
    recorded_at = ledger.parse_canonical(last.canonical)["recorded_at"]
    anchor = ledger.Anchor(last.seq, last.hash, str(recorded_at), snapshot.system_identifier, snapshot.database)
    database = {"system_identifier": snapshot.system_identifier, "name": snapshot.database}
    ledger_doc = {
        "format_version": FORMAT_VERSION,
        "database": database,
        "head": {"seq": last.seq, "hash": last.hash},
        "records": [
            {"seq": r.seq, "prev_hash": r.prev_hash, "hash": r.hash, "canonical": r.canonical} for r in snapshot.rows
        ],
    }
    written = [
        write_atomic(out_dir / LEDGER_FILE, dumps(ledger_doc)),
        write_atomic(out_dir / ANCHOR_FILE, (json.dumps(anchor.to_dict(), indent=2, sort_keys=True) + "\n").encode()),
    ]
    for step in context["steps"]:
        written.append(write_atomic(out_dir / STEPS_DIR / f"{step['id']}.json", dumps(step)))
    written.append(write_atomic(out_dir / REPORT_MD, render("md", "pack.md.j2", links=False, **context)))
    manifest = {
        "format_version": FORMAT_VERSION,
        "generator": f"gcos {gcos_version}",
        "created_at": context["created_at"],
        "database": database,
        "scope": context["scope"],
        "steps": [s["id"] for s in context["steps"]],
        "ledger": {"head_seq": last.seq, "head_hash": last.hash, "records": len(snapshot.rows)},
        "files": {p.relative_to(out_dir).as_posix(): sha256_file(p) for p in written},
    }
    written.append(write_atomic(out_dir / MANIFEST, dumps(manifest)))
    return tuple(written)
