"""Checking an evidence pack offline, with no database (``gcos ledger verify --pack DIR``): the manifest's
hashes, the chain of ``ledger.json`` from genesis, the anchor and heads, every step file, then EVERY file
rebuilt from the chain by the builder itself (``pack.rebuild``) and compared byte for byte, so an edit with
the manifest recomputed is named too; with ``allowed_signers``, the SSH signatures of the manifest and of a
kept anchor. The first bad thing is named in a LedgerBroken (exit 7)."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from gcos import ledger
from gcos.canonical import content_hash
from gcos.errors import LedgerBroken, SpecError
from gcos.evidence.common import (
    ANCHOR_FILE,
    FORMAT_VERSION,
    LEDGER_FILE,
    MANIFEST,
    STEPS_DIR,
    as_dict,
    as_list,
    sha256_file,
)
from gcos.evidence.pack import SIGNATURE, rebuild


def verify_pack(
    pack_dir: Path, anchor: ledger.Anchor | None = None, allowed_signers: Path | None = None
) -> ledger.VerifyReport:
    """Check an evidence pack with no database: every file's sha256 against manifest.json (a changed, missing
    or extra file is named), the hash chain of ledger.json from genesis (``ledger.check_rows``), anchor.json
    and the manifest against the last record, and each steps/*.json against the ledger and its spec hash.
    `anchor` is one kept elsewhere (``gcos ledger anchor``): the pack's ledger must contain it. Then every file
    is rebuilt from the chain and compared; with `allowed_signers`, manifest.json.sig must verify.
    Raises LedgerBroken (exit 7) naming the first bad thing; returns the chain's VerifyReport."""
    pack_dir = Path(pack_dir)
    if not pack_dir.is_dir():
        raise SpecError(f"{pack_dir} is not a directory; pass the evidence pack's directory.")
    manifest, listed = _check_manifest(pack_dir)
    doc, rows = _read_ledger(pack_dir)
    try:
        pack_anchor = ledger.Anchor.from_dict(_load_json(pack_dir, ANCHOR_FILE))
    except SpecError as exc:
        raise _broken(f"{ANCHOR_FILE} is not a gcos ledger anchor") from exc
    report = ledger.check_rows(rows, anchor=pack_anchor)
    if not report.ok:
        raise _broken(f"{LEDGER_FILE} fails at seq {report.first_bad_seq}: {report.reason}", report)
    _check_heads(manifest, doc, rows[-1], pack_anchor)
    by_seq = {r.seq: r for r in rows}
    for rel in sorted(r for r in listed if r.startswith(f"{STEPS_DIR}/")):
        _check_step_file(pack_dir, rel, by_seq)
    _check_rebuilt(pack_dir, manifest, rows, pack_anchor)
    if anchor is not None:
        report = _check_kept_anchor(rows, anchor, (pack_anchor.system_identifier, pack_anchor.database))
    signer = None
    if allowed_signers is not None:
        from gcos.evidence import signing

        signer = signing.verify_file(pack_dir / MANIFEST, pack_dir / SIGNATURE, allowed_signers, signing.PACK_NAMESPACE)
    return dataclasses.replace(report, pack_files=len(listed) + 1, pack_signed_by=signer)


def _broken(message: str, report: ledger.VerifyReport | None = None) -> LedgerBroken:
    return LedgerBroken(f"The evidence pack is broken: {message}.", details=report)


def _load_json(pack_dir: Path, rel: str) -> Any:
    try:
        return ledger.parse_canonical((pack_dir / rel).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise _broken(f"{rel} is not readable JSON ({exc})") from exc


def _pack_files(pack_dir: Path) -> set[str]:
    """Every file under the pack (relative POSIX paths); a symlink or anything but a regular file is broken."""
    found: set[str] = set()
    for root, dirs, names in os.walk(pack_dir):
        for name in [*names, *(d for d in dirs if (Path(root) / d).is_symlink())]:
            path = Path(root) / name
            rel = path.relative_to(pack_dir).as_posix()
            if path.is_symlink() or not path.is_file():
                raise _broken(f"{rel} is not a regular file")
            found.add(rel)
    return found


def _check_manifest(pack_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The manifest and its files: exactly the pack's other files, each with the sha256 it lists."""
    if not (pack_dir / MANIFEST).is_file():
        raise _broken(f"{MANIFEST} is missing")
    manifest = _load_json(pack_dir, MANIFEST)
    listed = as_dict(manifest).get("files")
    if as_dict(manifest).get("format_version") != FORMAT_VERSION or not isinstance(listed, dict):
        raise _broken(f"{MANIFEST} is not a format_version {FORMAT_VERSION} gcos manifest")
    for rel in listed:
        parts = PurePosixPath(rel).parts
        if PurePosixPath(rel).is_absolute() or ".." in parts or not parts or rel == MANIFEST:
            raise _broken(f"{MANIFEST} lists {rel!r}, which is not a file of the pack")
    present = _pack_files(pack_dir) - {MANIFEST, SIGNATURE}
    for rel in sorted(listed):
        if rel not in present:
            raise _broken(f"{rel} is listed in {MANIFEST} but missing")
    for rel in sorted(present):
        if rel not in listed:
            raise _broken(f"{rel} is not listed in {MANIFEST}: a file was added")
    for rel in sorted(listed):
        actual = sha256_file(pack_dir / rel)
        if actual != listed[rel]:
            raise _broken(f"{rel} was changed (its sha256 is {actual}, {MANIFEST} says {listed[rel]})")
    for required in (LEDGER_FILE, ANCHOR_FILE):
        if required not in listed:
            raise _broken(f"{required} is missing")
    return manifest, listed


def _read_ledger(pack_dir: Path) -> tuple[dict[str, Any], list[ledger.Row]]:
    """ledger.json and its rows (each a seq and three strings; at least one)."""
    doc = as_dict(_load_json(pack_dir, LEDGER_FILE))
    records = doc.get("records")
    if doc.get("format_version") != FORMAT_VERSION or not isinstance(records, list):
        raise _broken(f"{LEDGER_FILE} is not a format_version {FORMAT_VERSION} gcos ledger export")
    rows: list[ledger.Row] = []
    for index, item in enumerate(records):
        item = as_dict(item)
        if not (
            type(item.get("seq")) is int
            and all(isinstance(item.get(k), str) for k in ("prev_hash", "hash", "canonical"))
        ):
            raise _broken(f"{LEDGER_FILE} record #{index + 1} is not a ledger row (seq, prev_hash, hash, canonical)")
        rows.append(ledger.Row(item["seq"], item["prev_hash"], item["hash"], item["canonical"]))
    if not rows:
        raise _broken(f"{LEDGER_FILE} holds no records")
    return doc, rows


def _check_heads(
    manifest: Mapping[str, Any], doc: Mapping[str, Any], last: ledger.Row, pack_anchor: ledger.Anchor
) -> None:
    """anchor.json, the head of ledger.json and the manifest's ledger all name the last record, and the
    manifest and ledger.json name the anchor's database."""
    head = as_dict(doc.get("head"))
    if (pack_anchor.seq, pack_anchor.hash) != (last.seq, last.hash):
        raise _broken(
            f"{ANCHOR_FILE} holds seq {pack_anchor.seq}, not the last record of {LEDGER_FILE} (seq {last.seq})"
        )
    if (head.get("seq"), head.get("hash")) != (last.seq, last.hash):
        raise _broken(f"the head in {LEDGER_FILE} is not its last record (seq {last.seq})")
    ledger_info = as_dict(manifest.get("ledger"))
    if (ledger_info.get("head_seq"), ledger_info.get("head_hash")) != (last.seq, last.hash):
        raise _broken(
            f"{MANIFEST} names ledger head seq {ledger_info.get('head_seq')}, the ledger ends at seq {last.seq}"
        )
    identity = (pack_anchor.system_identifier, pack_anchor.database)
    for where, data in ((MANIFEST, manifest.get("database")), (LEDGER_FILE, doc.get("database"))):
        db = as_dict(data)
        if (db.get("system_identifier"), db.get("name")) != identity:
            raise _broken(f"{where} names another database than {ANCHOR_FILE}")


def _check_kept_anchor(rows: list[ledger.Row], anchor: ledger.Anchor, identity: tuple[str, str]) -> ledger.VerifyReport:
    """The pack's ledger against an anchor kept elsewhere: same database, and the chain contains it."""
    if (anchor.system_identifier, anchor.database) != identity:
        raise SpecError(
            f"The anchor is for database {anchor.database!r} on system {anchor.system_identifier}, not "
            f"{identity[1]!r} on system {identity[0]}; use the anchor exported from the pack's database."
        )
    kept = ledger.check_rows(rows, anchor=anchor)
    if not kept.ok:
        raise _broken(f"{LEDGER_FILE} fails at seq {kept.first_bad_seq} against the kept anchor: {kept.reason}", kept)
    return kept


def _check_step_file(pack_dir: Path, rel: str, by_seq: Mapping[int, ledger.Row]) -> None:
    """A step file: its spec document hashes to its spec hash, and every record it shows is the ledger's."""
    step = as_dict(_load_json(pack_dir, rel))
    if step.get("format_version") != FORMAT_VERSION:
        raise _broken(f"{rel} is not a format_version {FORMAT_VERSION} step report")
    spec = as_dict(step.get("spec"))
    if content_hash(spec.get("document")) != spec.get("hash"):
        raise _broken(f"{rel}: the spec document does not hash to its spec hash {spec.get('hash')}")
    for record in as_list(step.get("records")):
        record = as_dict(record)
        row = by_seq.get(record.get("seq"))  # type: ignore[arg-type]
        if row is None or (record.get("hash"), record.get("prev_hash"), record.get("canonical")) != (
            row.hash,
            row.prev_hash,
            row.canonical,
        ):
            raise _broken(f"{rel}: record seq {record.get('seq')} differs from {LEDGER_FILE}")


def _check_rebuilt(pack_dir: Path, manifest: Mapping[str, Any], rows: list[ledger.Row], anchor: ledger.Anchor) -> None:
    """Every file of the pack is what the builder writes from the chain: same file set, same bytes."""
    with tempfile.TemporaryDirectory(prefix="gcos-verify-") as tmp:
        out = Path(tmp) / "pack"
        rebuild(manifest, rows, anchor, out, pack_dir)
        expected = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
        present = _pack_files(pack_dir) - {SIGNATURE}
        for rel in sorted(present - expected):
            raise _broken(f"{rel} is not a file the builder writes from this ledger: a file was added")
        for rel in sorted(expected - present):
            raise _broken(f"{rel} is missing: the builder writes it from this ledger")
        for rel in sorted(expected, key=lambda r: (r == MANIFEST, r)):
            got, want = (pack_dir / rel).read_bytes(), (out / rel).read_bytes()
            if got != want:
                raise _broken(f"{rel} is not what the ledger gives: {first_difference(rel, got, want)}")


def first_difference(rel: str, got: bytes, want: bytes) -> str:
    """Where a file first departs from its rebuild: a JSON field path, else a line number."""
    if rel.endswith(".json"):
        try:
            found = _json_difference(json.loads(got), json.loads(want), "")
        except ValueError:
            found = None
        if found:
            return found
    got_lines, want_lines = got.decode("utf-8", "replace").splitlines(), want.decode("utf-8", "replace").splitlines()
    for number, (a, b) in enumerate(zip(got_lines, want_lines, strict=False), start=1):
        if a != b:
            return f"line {number} reads {_clip(a)}, the ledger gives {_clip(b)}"
    return f"it has {len(got_lines)} lines, the ledger gives {len(want_lines)} (or its bytes differ in layout)"


def _clip(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False)
    return repr(text if len(text) <= 80 else text[:77] + "...")


def _json_difference(got: Any, want: Any, path: str) -> str | None:
    """The first JSON path where `got` differs from `want` (keys in sorted order, list items in order)."""
    if isinstance(got, dict) and isinstance(want, dict):
        for key in sorted(set(got) | set(want)):
            where = f"{path}.{key}" if path else str(key)
            if key not in got or key not in want:
                return f"field {where} is {'missing' if key not in got else 'added'}"
            found = _json_difference(got[key], want[key], where)
            if found:
                return found
        return None
    if isinstance(got, list) and isinstance(want, list):
        for index, (a, b) in enumerate(zip(got, want, strict=False)):
            found = _json_difference(a, b, f"{path}[{index}]")
            if found:
                return found
        if len(got) != len(want):
            return f"field {path} holds {len(got)} items, the ledger gives {len(want)}"
        return None
    if got != want or type(got) is not type(want):
        return f"field {path} reads {_clip(got)}, the ledger gives {_clip(want)}"
    return None
