"""Only the chain is trusted (issue 12 items 1 and 2): ``gcos ledger verify --pack`` rebuilds every file of a
pack from its ledger records with the report builder itself and compares bytes, so every tamper class is
named even when the forger recomputes the manifest; signed anchors and packs verify with plain ``ssh-keygen``,
and a pack rewritten whole, chain recomputed, fails against a signed anchor kept elsewhere.

One small real history (module scope) on the adopted reference world: SB-12 rehearsed, approved by a
sovereign (one approval revoked first), committed by a named operator; SB-13 rehearsed and approved. The
other steps of the project were never rehearsed: the ledger registers no spec of theirs."""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import PROJECT_DIRS, REPO
from psycopg import sql
from psycopg.conninfo import make_conninfo

from gcos import commands, evidence, ledger
from gcos.canonical import canonical_bytes
from gcos.errors import LedgerBroken
from gcos.evidence.pack import rebuild
from gcos.principals import add_principal
from gcos.target import Target

SIGNER = "audit-key@example.org"


@dataclass(frozen=True)
class Signed:
    pack: Path  # signed with --sign: manifest.json.sig
    anchor: Path  # kept elsewhere, signed: anchor.json.sig beside it
    allowed: Path  # allowed_signers naming SIGNER
    key: Path


@pytest.fixture(scope="module")
def signed(
    pg_admin_dsn: str, adopted_world_template: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Signed]:
    name = f"gcos_test_{uuid.uuid4().hex[:12]}"
    password = secrets.token_hex(12)
    sovereign, operator = (f"gcos_t_{uuid.uuid4().hex[:8]}_{who}" for who in ("sue", "opal"))
    with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(adopted_world_template)
            )
        )
        for role in (sovereign, operator):
            admin.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password))
            )
    dsn = make_conninfo(pg_admin_dsn, dbname=name)
    base = tmp_path_factory.mktemp("pack_tamper")
    project = base / "project"
    for part in PROJECT_DIRS:
        shutil.copytree(REPO / part, project / part)
    key = base / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", SIGNER, "-f", str(key)], check=True)
    allowed = base / "allowed_signers"
    allowed.write_text(f'{SIGNER} namespaces="gcos-anchor,gcos-pack" {(base / "key.pub").read_text()}')
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            add_principal(conn, sovereign, name="Sue Sovereign", kind="human", roles=["sovereign"])
            add_principal(conn, operator, name="Opal Operator", kind="human", roles=["operator"])
        sue = Target(make_conninfo(dsn, user=sovereign, password=password), "--dsn")
        opal = Target(make_conninfo(dsn, user=operator, password=password), "--dsn")
        assert commands.rehearse(opal, project, "SB-12").ok
        early = commands.approve(sue, project, "SB-12", verdict="approve", expires_in="2h")
        commands.revoke(sue, early.approval_id, reason="signed too early")
        commands.approve(sue, project, "SB-12", verdict="approve", expires_in="1d")
        assert commands.commit(opal, project, "SB-12").ok
        assert commands.rehearse(opal, project, "SB-13").ok
        commands.approve(sue, project, "SB-13", verdict="approve", expires_in="3d")
        admin = Target(dsn, "--dsn")
        anchor = base / "kept" / "anchor.json"
        anchor.parent.mkdir()
        commands.ledger_anchor(admin, anchor, sign=key)
        here = Path.cwd()
        os.chdir(base)  # a relative --out, as users type it (`gcos report --format json --out evidence`)
        try:
            result = commands.report(admin, project, None, "json", Path("pack"), sign=key)
        finally:
            os.chdir(here)
        assert result.files[-1].name == "manifest.json.sig"
        yield Signed(base / "pack", anchor, allowed, key)
    finally:
        with psycopg.connect(pg_admin_dsn, autocommit=True) as admin_conn:
            admin_conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            for role in (sovereign, operator):
                admin_conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def _copy(signed: Signed, tmp_path: Path) -> Path:
    pack = tmp_path / "pack"
    shutil.copytree(signed.pack, pack)
    return pack


def _rehash_manifest(pack: Path) -> None:
    """What a forger does after any edit: recompute the manifest so every sha256 matches again."""
    manifest = json.loads((pack / "manifest.json").read_text())
    present = {p.relative_to(pack).as_posix() for p in pack.rglob("*") if p.is_file()}
    present -= {"manifest.json", "manifest.json.sig"}
    manifest["files"] = {rel: evidence.sha256_file(pack / rel) for rel in sorted(present)}
    (pack / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def _edit_json(path: Path, change: Callable[[Any], None]) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def _rows(pack: Path) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = json.loads((pack / "ledger.json").read_text())["records"]
    return records


def _seq_of(pack: Path, kind: str, step: str) -> int:
    for r in _rows(pack):
        record = json.loads(r["canonical"])
        if record["kind"] == kind and record["step_id"] == step:
            return int(r["seq"])
    raise AssertionError(f"no {kind} of {step}")


def _edit_payload(pack: Path) -> None:
    seq = _seq_of(pack, "commit", "SB-12")

    def change(doc: Any) -> None:
        row = doc["records"][seq - 1]
        row["canonical"] = row["canonical"].replace('"outcome":"applied"', '"outcome":"applied_twice"')

    _edit_json(pack / "ledger.json", change)


def _edit_state(pack: Path) -> None:
    def change(doc: Any) -> None:
        assert doc["state"]["state"] == "committed"
        doc["state"]["state"] = "rolled_back"

    _edit_json(pack / "steps" / "SB-12.json", change)


def _edit_approver(pack: Path) -> None:
    text = (pack / "report.md").read_text()
    assert "Sue Sovereign" in text
    (pack / "report.md").write_text(text.replace("Sue Sovereign", "Carl Council", 1))


def _reorder(pack: Path) -> None:
    def change(doc: Any) -> None:
        doc["records"][2], doc["records"][3] = doc["records"][3], doc["records"][2]

    _edit_json(pack / "ledger.json", change)


TAMPERS: dict[str, tuple[Callable[[Path], None], str]] = {
    "payload": (_edit_payload, r"ledger\.json fails at seq \d+: the record's content does not match its hash"),
    "derived_json": (
        _edit_state,
        "steps/SB-12.json is not what the ledger gives: field state.state reads 'rolled_back'",
    ),
    "derived_md": (_edit_approver, r"report\.md is not what the ledger gives: line \d+ reads .*Carl Council"),
    "removed": (lambda p: (p / "steps" / "SB-13.json").unlink(), "steps/SB-13.json is missing: the builder writes it"),
    "added": (lambda p: (p / "notes.md").write_text("all fine\n"), "notes.md is not a file the builder writes"),
    "reordered": (_reorder, "ledger.json fails at seq 3"),
}


@pytest.mark.parametrize("tamper", sorted(TAMPERS))
def test_every_tamper_is_named_even_with_the_manifest_recomputed(signed: Signed, tmp_path: Path, tamper: str) -> None:
    pack = _copy(signed, tmp_path)
    edit, named = TAMPERS[tamper]
    edit(pack)
    _rehash_manifest(pack)
    with pytest.raises(LedgerBroken, match=named) as broken:
        evidence.verify_pack(pack)
    assert broken.value.exit_code == 7


def test_the_untouched_pack_is_what_the_chain_rebuilds_and_its_signatures_verify(
    signed: Signed, tmp_path: Path
) -> None:
    report = commands.verify_pack(signed.pack, signed.anchor, signed.allowed)
    assert report.ok and report.anchor_seq == report.head_seq
    files = [p for p in signed.pack.rglob("*") if p.is_file() and p.name != "manifest.json.sig"]
    assert (report.pack_files, report.pack_signed_by, report.anchor_signed) == (len(files), SIGNER, True)
    unsigned = commands.verify_pack(signed.pack)  # what a verify without allowed_signers can say it checked
    assert (unsigned.pack_files, unsigned.pack_signed_by, unsigned.anchor_signed) == (len(files), None, False)
    manifest = json.loads((signed.pack / "manifest.json").read_text())
    pack = json.loads((signed.pack / "anchor.json").read_text())
    rows = [ledger.Row(r["seq"], r["prev_hash"], r["hash"], r["canonical"]) for r in _rows(signed.pack)]
    rebuild(manifest, rows, ledger.Anchor.from_dict(pack), tmp_path / "rebuilt", signed.pack)
    for path in signed.pack.rglob("*"):
        if path.is_file() and path.name != "manifest.json.sig":
            assert (tmp_path / "rebuilt" / path.relative_to(signed.pack)).read_bytes() == path.read_bytes()


def _unsigned(signed: Signed, tmp_path: Path) -> Path:
    pack = _copy(signed, tmp_path)
    (pack / "manifest.json.sig").unlink()
    return pack


def test_the_builder_reads_nothing_but_the_chain(signed: Signed, tmp_path: Path) -> None:
    """The pack's project, gate 5's evidence and its clock come from the chain: what a forger changes in the
    manifest and regenerates with the builder changes nothing."""
    manifest = json.loads((signed.pack / "manifest.json").read_text())
    rows = _rows(signed.pack)
    assert "derivation" not in manifest
    assert manifest["created_at"] == json.loads(rows[-1]["canonical"])["recorded_at"]
    assert manifest["steps"] == ["SB-12", "SB-13"]  # registered; the project's never-rehearsed steps are not
    sb13 = json.loads((signed.pack / "steps" / "SB-13.json").read_text())
    assert sb13["state"]["state"] == "approved"
    assert [(a["counts_now"], a["expired"]) for a in sb13["approvals"]] == [(True, False)]
    spec_file = signed.pack / sb13["spec"]["path"]  # registry/specs/<hash>.json: sha256sum checks it
    assert spec_file.parent.as_posix().endswith("registry/specs")
    assert hashlib.sha256(spec_file.read_bytes()).hexdigest() == sb13["spec"]["hash"] == spec_file.stem
    forged = {
        **manifest,
        "created_at": "2999-01-01T00:00:00.000000Z",
        "derivation": {"approved": {}, "steps": {}, "plans": {}, "project_file": None},
    }
    anchor = ledger.Anchor.from_dict(json.loads((signed.pack / "anchor.json").read_text()))
    rebuilt = tmp_path / "rebuilt"
    rebuild(
        forged,
        [ledger.Row(r["seq"], r["prev_hash"], r["hash"], r["canonical"]) for r in rows],
        anchor,
        rebuilt,
        signed.pack,
    )
    for path in signed.pack.rglob("*"):
        if path.is_file() and path.name != "manifest.json.sig":
            assert (rebuilt / path.relative_to(signed.pack)).read_bytes() == path.read_bytes()


def _unregistered_spec(pack: Path) -> None:
    """SB-13 shown at a spec no record names: a new document, carried and hashed as the pack carries one."""
    step = json.loads((pack / "steps" / "SB-13.json").read_text())
    old = pack / step["spec"]["path"]
    document = json.loads(old.read_text())
    document["title"] = "Harmless cosmetic change"
    text = canonical_bytes(document)
    digest = hashlib.sha256(text).hexdigest()
    (old.parent / f"{digest}.json").write_bytes(text)
    old.unlink()
    step["spec"] = {"hash": digest, "path": f"registry/specs/{digest}.json", "document": document}
    step["title"] = document["title"]
    _edit_json(pack / "steps" / "SB-13.json", lambda doc: doc.update(step))


def _approval_dropped(pack: Path) -> None:
    """SB-13's approval no longer counted, so "approved" reads "rehearsed"."""

    def change(doc: Any) -> None:
        doc["state"].update(state="rehearsed", approval_ids=[])
        doc["approvals"][0]["counts_now"] = False

    _edit_json(pack / "steps" / "SB-13.json", change)


def _clock_shifted(pack: Path) -> None:
    """created_at moved past SB-13's approval expiry, its expiry flag flipped to match."""
    _edit_json(pack / "manifest.json", lambda doc: doc.update(created_at="2999-01-01T00:00:00.000000Z"))
    _edit_json(pack / "steps" / "SB-13.json", lambda doc: doc["approvals"][0].update(expired=True))


FORGERIES: dict[str, tuple[Callable[[Path], None], str]] = {
    "unregistered_spec": (
        _unregistered_spec,
        r"registry/specs/[0-9a-f]{64}\.json is missing: the ledger names it as the spec of SB-13",
    ),
    "approval_dropped": (_approval_dropped, r"steps/SB-13\.json is not what the ledger gives: field approvals\[0\]"),
    "clock_shifted": (
        _clock_shifted,
        r"steps/SB-13\.json is not what the ledger gives: field approvals\[0\]\.expired reads 'true', "
        "the ledger gives 'false'",
    ),
}


@pytest.mark.parametrize("forgery", sorted(FORGERIES))
def test_an_unsigned_pack_forged_consistently_is_named(signed: Signed, tmp_path: Path, forgery: str) -> None:
    pack = _unsigned(signed, tmp_path)
    assert evidence.verify_pack(pack).ok
    edit, named = FORGERIES[forgery]
    edit(pack)
    _rehash_manifest(pack)
    with pytest.raises(LedgerBroken, match=named) as broken:
        evidence.verify_pack(pack)
    assert broken.value.exit_code == 7


@pytest.mark.parametrize(("signed_file", "namespace"), [("pack", "gcos-pack"), ("anchor", "gcos-anchor")])
def test_signatures_verify_with_plain_ssh_keygen(signed: Signed, signed_file: str, namespace: str) -> None:
    target = signed.pack / "manifest.json" if signed_file == "pack" else signed.anchor
    sig = target.with_name(target.name + ".sig")

    def verify(ns: str) -> subprocess.CompletedProcess[bytes]:
        with target.open("rb") as data:
            argv = ["ssh-keygen", "-Y", "verify", "-f", str(signed.allowed), "-I", SIGNER, "-n", ns, "-s", str(sig)]
            return subprocess.run(argv, stdin=data, capture_output=True, check=False)

    assert verify(namespace).returncode == 0
    other = "gcos-anchor" if namespace == "gcos-pack" else "gcos-pack"
    assert verify(other).returncode != 0  # an anchor's signature is never a pack's


def test_a_pack_edited_after_signing_fails_its_signature(signed: Signed, tmp_path: Path) -> None:
    pack = _copy(signed, tmp_path)
    _edit_json(pack / "manifest.json", lambda doc: doc.update(scope=None, generator=doc["generator"] + " "))
    with pytest.raises(LedgerBroken):
        evidence.verify_pack(pack)  # the generator is not this gcos
    shutil.copy(signed.pack / "manifest.json", pack / "manifest.json")
    (pack / "manifest.json").write_bytes((pack / "manifest.json").read_bytes() + b"\n")
    with pytest.raises(LedgerBroken, match=r"manifest\.json is not what the ledger gives"):
        evidence.verify_pack(pack)
    shutil.copy(signed.pack / "manifest.json", pack / "manifest.json")
    (pack / "manifest.json.sig").unlink()
    assert evidence.verify_pack(pack).ok  # unsigned is still consistent ...
    with pytest.raises(LedgerBroken, match=r"manifest\.json\.sig is missing"):
        evidence.verify_pack(pack, allowed_signers=signed.allowed)  # ... but not signed


def _forge_chain(rows: list[dict[str, Any]], seq: int, change: Callable[[dict[str, Any]], None]) -> list[ledger.Row]:
    """Edit record `seq` and recompute every hash after it: a chain that verifies from genesis."""
    out: list[ledger.Row] = []
    prev = ledger.GENESIS_PREV_HASH
    for r in rows:
        record = json.loads(r["canonical"])
        if r["seq"] == seq:
            change(record)
        record["prev_hash"] = prev
        canonical = canonical_bytes(record)
        digest = hashlib.sha256(canonical).hexdigest()
        out.append(ledger.Row(r["seq"], prev, digest, canonical.decode("utf-8")))
        prev = digest
    return out


def test_a_pack_rewritten_whole_fails_against_the_signed_anchor_kept_elsewhere(signed: Signed, tmp_path: Path) -> None:
    seq = _seq_of(signed.pack, "approval", "SB-12")
    forged_rows = _forge_chain(_rows(signed.pack), seq, lambda rec: rec["actor"].update(principal="Mallory"))
    last = forged_rows[-1]
    original = ledger.Anchor.from_dict(json.loads((signed.pack / "anchor.json").read_text()))
    forged_anchor = ledger.Anchor(
        last.seq, last.hash, original.recorded_at, original.system_identifier, original.database
    )
    forged = tmp_path / "forged"
    manifest = json.loads((signed.pack / "manifest.json").read_text())
    rebuild(manifest, forged_rows, forged_anchor, forged, signed.pack)  # the builder itself writes a consistent forgery
    assert "Mallory" in (forged / "report.md").read_text()
    assert evidence.verify_pack(forged).ok  # alone, a whole rewrite is consistent: only an anchor kept elsewhere tells
    with pytest.raises(LedgerBroken, match=rf"against the kept anchor: seq {original.seq} does not match") as broken:
        commands.verify_pack(forged, signed.anchor, signed.allowed)
    assert broken.value.exit_code == 7
    with pytest.raises(LedgerBroken, match=r"manifest\.json\.sig is missing"):
        commands.verify_pack(forged, None, signed.allowed)
    # The forger replaces the kept anchor too: its signature is not the organisation's.
    fake = tmp_path / "fake" / "anchor.json"
    fake.parent.mkdir()
    fake.write_text(json.dumps(forged_anchor.to_dict(), indent=2, sort_keys=True) + "\n")
    shutil.copy(signed.anchor.with_name("anchor.json.sig"), fake.with_name("anchor.json.sig"))
    with pytest.raises(LedgerBroken, match=re.escape("anchor.json.sig does not verify anchor.json")):
        commands.verify_pack(forged, fake, signed.allowed)
