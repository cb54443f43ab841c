"""The JSON evidence pack: ``ledger.json``, ``anchor.json``, ``steps/<STEP>.json``, ``report.md`` and, written
last, ``manifest.json`` with the sha256 of every other file (``verify.verify_pack`` checks it offline).

Only the chain is trusted: every derived file is rebuilt by ``verify_pack`` from the pack's ledger records with
this same builder (:func:`rebuild`), and compared byte for byte. What the builder needs beyond the records is
carried in the manifest's ``derivation``: the project (spec and plan documents, as loaded, and gcos.yaml), the
steps reported, and the approvals gate 5 counted for rehearsed steps at the report's database time
(``created_at``). The rebuild loads those documents with the project loader itself; a spec's hash is what the
chain's records name, an approval counted must be an unrevoked approval record of its step in the chain."""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from gcos import __version__ as gcos_version
from gcos import ledger, state
from gcos.domain import Kind, StepState
from gcos.errors import LedgerBroken, SpecError
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
from gcos.spec import Project, load_project

SIGNATURE = "manifest.json.sig"  # ``gcos report --format json --sign KEY``: an SSH signature of the manifest
_SPEC_FILE = re.compile(r"^(steps|plans)/[A-Za-z0-9_.-]+\.ya?ml$")


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


def write_pack(
    out_dir: Path,
    context: Mapping[str, Any],
    snapshot: Snapshot,
    project: Project,
    states: Mapping[str, state.StepState],
) -> tuple[Path, ...]:
    """Write the pack of `context` (the report's view model, built from `project`, `snapshot` and `states`) to
    `out_dir`; return its files, the manifest last. The manifest carries what :func:`rebuild` needs."""
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
        "derivation": derivation(project, states),
    }
    written.append(write_atomic(out_dir / MANIFEST, dumps(manifest)))
    return tuple(written)


def derivation(project: Project, states: Mapping[str, state.StepState]) -> dict[str, Any]:
    """What the builder reads beyond the ledger: the project's documents as loaded (by path under its root) and
    the approvals gate 5 counted, by step, for the steps it found approved."""
    config = project.config
    return {
        "project_file": config.raw if config is not None and config.path is not None else None,
        "steps": {s.path.relative_to(project.root).as_posix(): _in_order(s.document) for s in project.steps.values()},
        "plans": {p.path.relative_to(project.root).as_posix(): _in_order(p.document) for p in project.plans.values()},
        "approved": {k: list(v.approval_ids) for k, v in states.items() if v.state == StepState.APPROVED},
    }


def _in_order(document: Mapping[str, Any]) -> str:
    """A document as JSON text with its keys in their order (the reports show them in that order; the pack's
    JSON files sort keys)."""
    return json.dumps(document, ensure_ascii=False)


def _broken(message: str) -> LedgerBroken:
    return LedgerBroken(f"The evidence pack is broken: {message}.")


def _load_carried_project(carried: Mapping[str, Any], root: Path) -> Project:
    """The project the manifest carries, written out as files and loaded by the project loader itself."""
    if carried.get("project_file") is not None:
        (root / "gcos.yaml").write_text(yaml.safe_dump(carried["project_file"], allow_unicode=True), "utf-8")
    for part in ("steps", "plans"):
        (root / part).mkdir()
        for rel, doc in as_dict(carried.get(part)).items():
            if not _SPEC_FILE.match(rel) or not rel.startswith(f"{part}/"):
                raise _broken(f"{MANIFEST} derivation names {rel!r}, which is not a spec file of a project")
            try:
                text = yaml.safe_dump(json.loads(doc), sort_keys=False, allow_unicode=True)
            except (TypeError, ValueError) as exc:
                raise _broken(f"{MANIFEST} derivation holds {rel!r} as no JSON document") from exc
            (root / rel).write_text(text, encoding="utf-8")
    try:
        return load_project(root)
    except SpecError as exc:
        raise _broken(f"the project in {MANIFEST} derivation does not load ({exc})") from exc


def _approved(carried: Any, entries: Sequence[ledger.LedgerEntry], project: Project) -> dict[str, tuple[int, ...]]:
    """Gate 5's evidence as carried: each approval must be an approval record of its step in the chain, never
    revoked there; anything else is a forged approval."""
    of_step = {
        e.payload.get("approval_id"): e.record.get("step_id")
        for e in entries
        if e.kind == Kind.APPROVAL and isinstance(e.payload.get("approval_id"), int)
    }
    revoked = {e.payload.get("approval_id") for e in entries if e.kind == Kind.APPROVAL_REVOCATION}
    out: dict[str, tuple[int, ...]] = {}
    for step_id, ids in as_dict(carried).items():
        if step_id not in project.steps or not isinstance(ids, list):
            raise _broken(f"{MANIFEST} derivation counts approvals of {step_id!r}, which is not a step")
        for aid in ids:
            if of_step.get(aid) != step_id or aid in revoked:
                raise _broken(
                    f"{MANIFEST} derivation counts approval {aid!r} for {step_id}, which the ledger does not hold "
                    "as an unrevoked approval of that step"
                )
        out[step_id] = tuple(ids)
    return out


def rebuild(manifest: Mapping[str, Any], rows: list[ledger.Row], pack_anchor: ledger.Anchor, out_dir: Path) -> None:
    """Write into `out_dir` the pack the builder makes from `rows` (the pack's ledger) and the inputs the
    manifest carries, with the same code as ``gcos report --format json``."""
    carried = as_dict(manifest.get("derivation"))
    generator = manifest.get("generator")
    if generator != f"gcos {gcos_version}":
        raise _broken(f"it was written by {generator}, this is gcos {gcos_version}: verify it with that version")
    entries = [
        ledger.LedgerEntry(r.seq, r.prev_hash, r.hash, r.canonical, ledger.parse_canonical(r.canonical)) for r in rows
    ]
    try:
        db_now = state.parse_time(manifest.get("created_at"))
    except ValueError as exc:
        raise _broken(f"{MANIFEST} created_at is not a time") from exc
    last = rows[-1]
    if db_now < state.parse_time(ledger.parse_canonical(last.canonical).get("recorded_at")):
        raise _broken(f"{MANIFEST} created_at is before the last record of the ledger")
    snapshot = Snapshot(
        rows, entries, (last.seq, last.hash), pack_anchor.system_identifier, pack_anchor.database, db_now, [], {}
    )
    with tempfile.TemporaryDirectory(prefix="gcos-rebuild-") as tmp:
        (Path(tmp) / "project").mkdir()
        project = _load_carried_project(carried, Path(tmp) / "project")
        states = state.project_states(entries, project, approved=_approved(carried.get("approved"), entries, project))
        reported = manifest.get("steps")
        if not isinstance(reported, list) or any(s not in project.steps for s in reported) or not reported:
            raise _broken(f"{MANIFEST} steps names a step its project does not hold")
        chosen = [project.steps[s] for s in reported]
        scope = manifest.get("scope")
        context = report_context(project, snapshot, states, chosen, scope if isinstance(scope, str) else None)
        write_pack(out_dir, context, snapshot, project, states)
