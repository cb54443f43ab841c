"""`gcos audit replay` (issue 12 item 3): every policy decision of a pack is re-judged from the facts its record
carries, by the same gcos.judge_gates the kernel called, on a database that is not the target; a fact changed
(chain re-hashed, so only replay can notice) is named by the decision's seq."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import PROJECT_DIRS, REPO
from psycopg import sql
from psycopg.conninfo import make_conninfo

from gcos import approvals, commands, evidence
from gcos.canonical import canonical_bytes
from gcos.errors import GateRefused, LedgerBroken
from gcos.evidence import replay
from gcos.principals import add_principal
from gcos.spec import load_project
from gcos.target import Target


@dataclass(frozen=True)
class Pack:
    path: Path
    refused_seq: int  # SB-12's commit refused: no approval
    allowed_seq: int  # SB-12's commit allowed
    again_seq: int  # SB-12's commit refused again: already committed
    rollback_refused_seq: int  # SB-12's rollback refused: no approval of the rollback
    rollback_seq: int  # SB-12's rollback allowed


@pytest.fixture(scope="module")
def pack(pg_admin_dsn: str, adopted_world_template: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pack]:
    """A demo-like history on a copy of the adopted reference world: a refused commit, a revoked approval, an
    approval, the commit, a second commit refused; then its JSON evidence pack."""
    name = f"gcos_test_{uuid.uuid4().hex[:12]}"
    sue, opal, password = (
        f"gcos_t_{uuid.uuid4().hex[:8]}_sue",
        f"gcos_t_{uuid.uuid4().hex[:8]}_opal",
        secrets.token_hex(12),
    )
    with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(adopted_world_template)
            )
        )
        for role in (sue, opal):
            admin.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password))
            )
    dsn = make_conninfo(pg_admin_dsn, dbname=name)
    project_dir = tmp_path_factory.mktemp("replay") / "project"
    for part in PROJECT_DIRS:
        shutil.copytree(REPO / part, project_dir / part)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            add_principal(conn, sue, name="Sue Sovereign", kind="human", roles=["sovereign"])
            add_principal(conn, opal, name="Opal Operator", kind="human", roles=["operator"])
        as_sue = Target(make_conninfo(dsn, user=sue, password=password), "--dsn")
        as_opal = Target(make_conninfo(dsn, user=opal, password=password), "--dsn")
        assert commands.rehearse(as_opal, project_dir, "SB-12").ok
        with pytest.raises(GateRefused) as first:
            commands.commit(as_opal, project_dir, "SB-12")
        early = commands.approve(as_sue, project_dir, "SB-12", verdict="approve", expires_in="2h", note="too early")
        commands.revoke(as_sue, early.approval_id, reason="signed too early")
        commands.approve(as_sue, project_dir, "SB-12", verdict="approve", expires_in="1d")
        committed = commands.commit(as_opal, project_dir, "SB-12")
        assert committed.ok
        with pytest.raises(GateRefused) as again:
            commands.commit(as_opal, project_dir, "SB-12")
        with pytest.raises(GateRefused):
            commands.rollback(as_opal, project_dir, "SB-12")
        commands.approve(as_sue, project_dir, "SB-12", verdict="approve", expires_in="1d", rollback=True)
        assert commands.rollback(as_opal, project_dir, "SB-12").ok
        out = tmp_path_factory.mktemp("replay") / "pack"
        with psycopg.connect(dsn, autocommit=True) as conn:
            evidence.build_report(conn, load_project(project_dir), step_id=None, fmt="json", out_dir=out)
        records = replay.load_records(out)
        decisions = [r["seq"] for r in records if replay.decision_of(r) is not None]
        refused = [first.value.details["ledger_seq"], again.value.details["ledger_seq"]]  # type: ignore[index]
        assert len(decisions) == 5 and decisions[0] == refused[0] and decisions[2] == refused[1]
        yield Pack(out, *decisions)
    finally:
        with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            for role in (sue, opal):
                admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def _rewrite(src: Path, dst: Path, seq: int, change: Any) -> None:
    """Copy the pack, apply `change` to record `seq`, and re-hash the chain from there on (a forger's rewrite)."""
    shutil.copytree(src, dst)
    doc = json.loads((dst / "ledger.json").read_text())
    prev = None
    for row in doc["records"]:
        record = json.loads(row["canonical"])
        if row["seq"] == seq:
            change(record)
        if row["seq"] >= seq:
            record["prev_hash"] = prev if prev is not None else record["prev_hash"]
            row["canonical"] = canonical_bytes(record).decode()
            row["prev_hash"] = record["prev_hash"]
            row["hash"] = hashlib.sha256(row["canonical"].encode()).hexdigest()
        prev = row["hash"]
    (dst / "ledger.json").write_text(json.dumps(doc))


def test_every_decision_of_the_pack_replays_as_recorded(pack: Pack, dsn: str, gcos_installed: None) -> None:
    report = replay.audit_replay(pack.path, scratch_dsn=dsn)
    assert [(d.seq, d.allow, d.problem) for d in report.decisions] == [
        (pack.refused_seq, False, None),
        (pack.allowed_seq, True, None),
        (pack.again_seq, False, None),
        (pack.rollback_refused_seq, False, None),
        (pack.rollback_seq, True, None),
    ]
    assert [d.action for d in report.decisions] == ["commit"] * 3 + ["rollback"] * 2
    assert all(d.gates == 7 for d in report.decisions)


def _later_clock(record: dict[str, Any]) -> None:
    facts = record["payload"]["facts"]
    facts["now"] = (datetime.fromisoformat(facts["now"]) + timedelta(days=2)).isoformat()


def _shorter_approval(record: dict[str, Any]) -> None:
    row = record["payload"]["facts"]["approval_rows"][-1]
    row["expires_at"] = record["payload"]["facts"]["now"]


def _revocation_hidden(record: dict[str, Any]) -> None:
    record["payload"]["facts"]["approval_rows"][0]["revoked"] = False


def _other_rehearsal(record: dict[str, Any]) -> None:
    record["payload"]["facts"]["rehearsal"]["seq"] -= 1


def _rehearsal_outcome(record: dict[str, Any]) -> None:
    record["payload"]["facts"]["rehearsal"]["entry_schema_hash"] = "0" * 64


def _history_rewritten(record: dict[str, Any]) -> None:
    record["payload"]["facts"]["history"]["epoch_seq"] = 1


def _spec_edited(record: dict[str, Any]) -> None:
    record["payload"]["facts"]["spec"]["approvals"]["roles"] = ["operator"]


def _exception_invented(record: dict[str, Any]) -> None:
    record["payload"]["facts"]["exceptions"] = [{"exception_id": 99, "check_kind": "reverify", "check": "x",
                                                 "applies": True}]  # fmt: skip


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (_later_clock, "allow: recorded True, replayed False"),  # two days on, the approval has expired
        (_shorter_approval, "expires at"),  # a fact the chain's approval record contradicts
        (_revocation_hidden, "has revoked False; the chain says True"),
        (_other_rehearsal, "is not a rehearsal of SB-12 the chain holds in its window"),
        (_rehearsal_outcome, "has entry_schema_hash '000000000000"),
        (_history_rewritten, "the history of SB-12 has epoch_seq 1; the chain says 0"),
        (_spec_edited, "its spec document hashes to"),
        (_exception_invented, "its facts list exceptions [99] in force; the chain holds []"),
    ],
)
def test_a_changed_fact_names_its_decision(
    pack: Pack, dsn: str, gcos_installed: None, tmp_path: Path, change: Any, named: str
) -> None:
    forged = tmp_path / "forged"
    _rewrite(pack.path, forged, pack.allowed_seq, change)
    with pytest.raises(LedgerBroken) as broken:
        replay.audit_replay(forged, scratch_dsn=dsn)
    assert (
        f"Policy decision seq {pack.allowed_seq} (commit of SB-12) does not replay as recorded" in broken.value.message
    )
    assert named in broken.value.message
    details = broken.value.details
    assert isinstance(details, dict)
    assert [d["match"] for d in details["decisions"]] == [True, False, True, True, True]


def test_a_judgement_changed_with_its_facts_kept_is_named(
    pack: Pack, dsn: str, gcos_installed: None, tmp_path: Path
) -> None:
    forged = tmp_path / "forged"

    def deny_to_allow(record: dict[str, Any]) -> None:
        gate = record["payload"]["policy_decision"]["gates"][4]  # a refusal record embeds its decision
        gate["allow"], gate["reason"] = True, "SB-12 is approved by nobody at all"

    _rewrite(pack.path, forged, pack.refused_seq, deny_to_allow)
    with pytest.raises(LedgerBroken) as broken:
        replay.audit_replay(forged, scratch_dsn=dsn)
    assert f"seq {pack.refused_seq}" in broken.value.message
    assert "gate 5 approvals allow: recorded True, replayed False" in broken.value.message


def test_the_cli_replays_on_its_own_embedded_server(pack: Pack, tmp_path: Path) -> None:
    env = {**os.environ, "GCOS_HOME": str(tmp_path)}
    env.pop("GCOS_DSN", None)
    run = subprocess.run([sys.executable, "-m", "gcos.cli", "audit", "replay", "--pack", str(pack.path), "--json"],
                         capture_output=True, text=True, env=env, timeout=300, check=False)  # fmt: skip
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)["result"]
    assert result["ok"] is True
    assert [d["seq"] for d in result["decisions"]] == [
        pack.refused_seq,
        pack.allowed_seq,
        pack.again_seq,
        pack.rollback_refused_seq,
        pack.rollback_seq,
    ]


def test_a_batched_run_refused_between_batches_and_resumed_replays(
    pg_admin_dsn: str, small_world: str, tmp_path: Path, dsn: str, gcos_installed: None
) -> None:
    """Step 9 in batches: started (seven gates), refused before batch 3 by a revocation (gcos._batch_authority:
    gates 5 and 6 only), resumed under a new approval (gcos._batch_resume_gates over the facts 044 records) and
    closed; every decision replays, and a forged open run in the resume's facts is named."""
    from test_batched import STEP, at_batch, make_kit

    kits = make_kit(pg_admin_dsn, small_world, tmp_path / "project")
    kit = next(kits)
    try:
        kit.rehearse()
        approval = kit.approve()

        def revoke() -> None:
            with kit.person("sovereign").connect() as conn:
                approvals.revoke(conn, approval, "stop the sweep")

        with pytest.raises(GateRefused):
            kit.commit(progress=at_batch(2, revoke))
        kit.approve()
        assert kit.commit().ok
        out = tmp_path / "pack"
        evidence.build_report(kit.admin, load_project(kit.project_dir), step_id=None, fmt="json", out_dir=out)
    finally:
        next(kits, None)
    report = replay.audit_replay(out, scratch_dsn=dsn)
    assert [(d.step_id, d.allow, d.gates, d.problem) for d in report.decisions] == [
        (STEP, True, 7, None),  # the run started
        (STEP, False, 2, None),  # refused at batch 3: gates 5 and 6
        (STEP, True, 7, None),  # resumed and closed
    ]
    resumed = report.decisions[2].seq

    def forged_open(record: dict[str, Any]) -> None:
        record["payload"]["facts"]["resume"]["open"]["schema_hash"] = "0" * 64

    _rewrite(out, tmp_path / "forged", resumed, forged_open)
    with pytest.raises(LedgerBroken) as broken:
        replay.audit_replay(tmp_path / "forged", scratch_dsn=dsn)
    assert f"Policy decision seq {resumed} " in broken.value.message
    assert "the open run of seq" in broken.value.message and "has schema_hash '0000" in broken.value.message


def test_an_online_commit_replays(
    world_dsn: str, gcos_adopted: None, project_dir: Path, dsn: str, gcos_installed: None, tmp_path: Path
) -> None:
    """An online step (035-040, PostgreSQL 16+): refused without approval, then opened by gcos.online_begin; both
    decisions replay."""
    from test_commit import adopted_world
    from test_online import CIC, add_step, step_yaml

    with psycopg.connect(world_dsn) as probe:
        if probe.info.server_version < 160000:
            pytest.skip("online steps need PostgreSQL 16+ (migration 038 refuses them before 16)")
    add_step(project_dir, step_yaml(CIC))
    worlds = adopted_world(world_dsn, project_dir)
    w = next(worlds)
    try:
        w.rehearse("IDX-1")
        with pytest.raises(GateRefused):
            w.commit("IDX-1")
        w.approve("IDX-1")
        assert w.commit("IDX-1").outcome == "applied"
        out = tmp_path / "pack"
        evidence.build_report(w.admin, load_project(project_dir), step_id=None, fmt="json", out_dir=out)
    finally:
        next(worlds, None)
    report = replay.audit_replay(out, scratch_dsn=dsn)
    assert [(d.step_id, d.allow, d.gates, d.problem) for d in report.decisions] == [
        ("IDX-1", False, 7, None),
        ("IDX-1", True, 7, None),
    ]
