"""The JSON evidence pack: ``ledger.json``, ``anchor.json``, the registered documents it shows
(``registry/specs/<hash>.json``, ``registry/plans/<hash>.json``), ``steps/<STEP>.json``, ``report.md`` and,
written last, ``manifest.json`` with the sha256 of every other file (``verify.verify_pack`` checks it offline).

Only the chain is trusted, and only the chain feeds the builder (gcos.evidence.chain): the steps and plans are
the ones the ledger registered, each document the one whose hash the chain names (its file's sha256), gate 5's
evidence is derived from the approval, revocation, commit and rollback records, and every time-dependent word
is as of the last record's clock. ``verify_pack`` rebuilds every file with this same builder (:func:`rebuild`)
and compares bytes; the manifest carries nothing the builder reads but the scope and the generator."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from gcos import __version__ as gcos_version
from gcos import ledger
from gcos.errors import LedgerBroken, SpecError
from gcos.evidence import chain
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
from gcos.evidence.view import report_context

SIGNATURE = "manifest.json.sig"  # ``gcos report --format json --sign KEY``: an SSH signature of the manifest


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
    (out_dir / SIGNATURE).unlink(missing_ok=True)
    manifest_path.unlink()
    leftover = sorted(p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*") if not p.is_dir())
    if leftover:
        raise SpecError(
            f"{out_dir} holds files that are not part of its previous evidence pack ({leftover[0]}); "
            "choose an empty directory for a pack."
        )


def write_pack(out_dir: Path, scope: str | None, snapshot: Snapshot) -> tuple[Path, ...]:
    """Write the pack of `scope` (one step, or None: every step the chain registered) to `out_dir`; return its
    files, the manifest last. Only the chain feeds it (gcos.evidence.chain), never the live project or states."""
    if not snapshot.rows:
        raise SpecError("The ledger is empty: there is nothing to put in an evidence pack yet.")
    if scope is not None and scope not in chain.current_steps(snapshot.entries):
        raise SpecError(
            f"The ledger holds no registered spec of {scope}: rehearse it before writing its evidence pack."
        )
    out_dir = out_dir.resolve()
    clear_old_pack(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.gcos-", dir=out_dir.parent))
    try:  # written whole beside it, then moved in (the manifest last): a failure leaves no half pack behind
        files = _write(staging, snapshot, scope)
        moved = []
        for path in files:
            target = out_dir / path.relative_to(staging)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
            moved.append(target)
        return tuple(moved)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write(out_dir: Path, snapshot: Snapshot, scope: str | None) -> tuple[Path, ...]:
    """The pack of `snapshot`'s chain and registered documents, as of its last record's clock."""
    out_dir = out_dir.resolve()  # files are named relative to it, and `--out evidence` is how users type it
    clear_old_pack(out_dir)
    last = snapshot.rows[-1]
    now = chain.clock(snapshot.entries)
    project, written = chain.chain_project(snapshot.entries, snapshot.documents, out_dir)
    states = chain.chain_states(snapshot.entries, project, now)
    as_of = Snapshot(
        snapshot.rows,
        snapshot.entries,
        (last.seq, last.hash),
        snapshot.system_identifier,
        snapshot.database,
        now,
        [],
        {},
    )
    chosen = [project.steps[scope]] if scope is not None else list(project.steps.values())
    context = report_context(project, as_of, states, chosen, scope)
    anchor = ledger.Anchor(
        last.seq,
        last.hash,
        str(snapshot.entries[-1].record["recorded_at"]),
        snapshot.system_identifier,
        snapshot.database,
    )
    database = {"system_identifier": snapshot.system_identifier, "name": snapshot.database}
    ledger_doc = {
        "format_version": FORMAT_VERSION,
        "database": database,
        "head": {"seq": last.seq, "hash": last.hash},
        "records": [
            {"seq": r.seq, "prev_hash": r.prev_hash, "hash": r.hash, "canonical": r.canonical} for r in snapshot.rows
        ],
    }
    written += [
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
        "scope": scope,
        "steps": [s["id"] for s in context["steps"]],
        "ledger": {"head_seq": last.seq, "head_hash": last.hash, "records": len(snapshot.rows)},
        "files": {p.relative_to(out_dir).as_posix(): sha256_file(p) for p in written},
    }
    written.append(write_atomic(out_dir / MANIFEST, dumps(manifest)))
    return tuple(written)


def _broken(message: str) -> LedgerBroken:
    return LedgerBroken(f"The evidence pack is broken: {message}.")


def rebuild(
    manifest: Mapping[str, Any], rows: list[ledger.Row], pack_anchor: ledger.Anchor, out_dir: Path, pack_dir: Path
) -> None:
    """Write into `out_dir` the pack the builder makes from `rows` (the pack's ledger) and the registered
    documents `pack_dir` carries under the hashes the chain names, with the same code as ``gcos report
    --format json``. The manifest gives only the generator (which must be this one) and the scope."""
    generator = manifest.get("generator")
    if generator != f"gcos {gcos_version}":
        raise _broken(f"it was written by {generator}, this is gcos {gcos_version}: verify it with that version")
    scope = manifest.get("scope")
    if scope is not None and not isinstance(scope, str):
        raise _broken(f"{MANIFEST} scope is not a step id")
    entries = [
        ledger.LedgerEntry(r.seq, r.prev_hash, r.hash, r.canonical, ledger.parse_canonical(r.canonical)) for r in rows
    ]
    snapshot = Snapshot(
        rows,
        entries,
        (rows[-1].seq, rows[-1].hash),
        pack_anchor.system_identifier,
        pack_anchor.database,
        chain.clock(entries),
        [],
        {},
        chain.read_documents(pack_dir),
    )
    if scope is not None and scope not in chain.current_steps(entries):
        raise _broken(f"{MANIFEST} scope names {scope}, a step the ledger does not register")
    _write(out_dir, snapshot, scope)
