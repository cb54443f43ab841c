"""Decisions are a sovereign's, never the committer's, always expire, and are bound to their text (issue 10
item 3; gcos/sql/024_sovereign_decisions.sql).

Seed 002 §70.2 #8: a C-7/C-1/C-2 decision may not be "ratified by silence (silence ≠ approval) or recorded by an
agent that may not record (D10 sovereign)"; §70.1 step 7: "A-8 (C-1 + C-2) recorded". The plan carries each
decision's text; a decision record binds sha256(text); gate 6 counts it only for that text, from a sovereign, for
a commit by someone else. Every scenario runs on a copy of the reference world whose schema public the kernel
governs, as real LOGIN roles mapped to principals (tests/test_gates.py `Desk`).
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors as pg_errors
from test_gates import Desk, open_desk
from typer.testing import CliRunner

from gcos import ledger
from gcos.cli import app
from gcos.errors import ExitCode, GateRefused, SpecError
from gcos.spec import load_project


@pytest.fixture
def desk(world_dsn: str, project_dir: Path, gcos_adopted: None) -> Iterator[Desk]:
    yield from open_desk(world_dsn, project_dir)


def text_hash(d: Desk, name: str) -> str:
    return hashlib.sha256(d.project.decision_text(name).encode("utf-8")).hexdigest()


def ready(d: Desk) -> None:
    """SB-1-2 rehearsed by Rita and cross-signed by Alice (sovereign) and Bob (council): only gate 6 is left."""
    d.rehearse("SB-1-2")
    d.approve("alice", "SB-1-2")
    d.approve("bob", "SB-1-2")


def test_only_a_sovereign_records_a_decision_and_it_binds_the_text(desk: Desk) -> None:
    with pytest.raises(GateRefused, match="is not a sovereign and cannot record a decision") as caught:
        desk.decide("bob", "C-1")  # a council member: refused, nothing written
    assert caught.value.exit_code == ExitCode.GATE_REFUSED
    assert desk.admin.execute("SELECT count(*) FROM gcos.decisions").fetchone() == (0,)
    assert not desk.records("decision")
    with pytest.raises(GateRefused, match="of kind agent"):
        desk.decide("aggie", "C-1")
    record_id = desk.decide("carol", "C-1")
    (entry,) = desk.records("decision")
    assert entry.payload["decision_id"] == record_id and entry.payload["text_hash"] == text_hash(desk, "C-1")
    row = desk.admin.execute("SELECT text_hash, decider FROM gcos.decisions WHERE id = %s", (record_id,)).fetchone()
    assert row == (text_hash(desk, "C-1"), "Carol")
    assert ledger.verify(desk.admin).ok


def test_a_decision_always_expires(desk: Desk) -> None:
    with desk.connect("carol") as conn:
        for expires in ("NULL", "'infinity'", "clock_timestamp() - interval '1 second'"):
            query = "SELECT * FROM gcos.record_decision('C-1', %s, 'approve', " + expires + ", NULL)"
            with pytest.raises(pg_errors.InvalidParameterValue, match="expir"):
                conn.execute(query.encode(), (text_hash(desk, "C-1"),))
        with pytest.raises(pg_errors.InvalidParameterValue, match="sha256 of its text"):
            conn.execute("SELECT * FROM gcos.record_decision('C-1', 'edited', 'approve', now() + interval '1h', NULL)")
    with pytest.raises(SpecError, match="must be in the future"):
        desk.decide("carol", "C-1", expires_in="0s")
    assert desk.admin.execute("SELECT count(*) FROM gcos.decisions").fetchone() == (0,)


def test_sb_1_2_needs_both_c1_and_c2(desk: Desk) -> None:
    assert desk.project.step("SB-1-2").decisions == ("C-1", "C-2")  # A-8 is two decisions
    ready(desk)
    c1 = desk.decide("carol", "C-1")
    g = desk.judge("SB-1-2").gate("decisions")
    assert not g.allow and g.reason == "decision C-2 has never been recorded" and g.evidence == (c1,)
    assert (
        g.remedy
        == "ask a sovereign who is not the committer to run: gcos decide C-2 --verdict approve --expires-in 24h"
    )
    with pytest.raises(GateRefused):
        desk.commit("SB-1-2")
    c2 = desk.decide("carol", "C-2")
    g = desk.judge("SB-1-2").gate("decisions")
    assert g.allow and g.evidence == (c1, c2)


def test_the_committer_is_never_the_decider(desk: Desk) -> None:
    """Sam (operator and sovereign) decides C-1 and C-2 and commits: refused, gate 6 says why; Opal commits."""
    ready(desk)
    for name in ("C-1", "C-2"):
        desk.decide("sam", name)
    assert desk.judge("SB-1-2", who="opal").gate("decisions").allow
    with pytest.raises(GateRefused) as caught:
        desk.commit("SB-1-2", who="sam")
    details: Any = caught.value.details
    assert [g["gate"] for g in details["decision"]["gates"] if not g["allow"]] == ["decisions"]
    (gate6,) = (g for g in details["decision"]["gates"] if g["gate"] == "decisions")
    assert "is by Sam, who is committing: the decider never commits the step that needs the decision" in gate6["reason"]
    assert desk.records("commit_refused")
    result = desk.commit("SB-1-2", who="opal")
    assert result.ok, result.message


def test_an_edited_decision_no_longer_counts(desk: Desk) -> None:
    ready(desk)
    old = {name: desk.decide("carol", name) for name in ("C-1", "C-2")}
    assert desk.judge("SB-1-2").gate("decisions").allow
    plan = desk.project_dir / "plans" / "sb-1-2.yaml"
    plan.write_text(plan.read_text().replace("one accountable owner per scope", "two accountable owners per scope"))
    g = desk.judge("SB-1-2").gate("decisions")
    assert not g.allow and g.evidence == (old["C-2"],)
    assert f"decision C-1 has no approve in force: record {old['C-1']} decided text " in g.reason
    assert "the decision was edited, so decide it again" in g.reason
    again = desk.decide("carol", "C-1")  # decided on the new text: counts
    assert desk.judge("SB-1-2").gate("decisions").evidence == (again, old["C-2"])


def test_a_decider_who_is_no_longer_a_sovereign_no_longer_counts(desk: Desk) -> None:
    ready(desk)
    for name in ("C-1", "C-2"):
        desk.decide("carol", name)
    carol = desk.role("carol")
    desk.admin.execute(
        "SELECT * FROM gcos.add_principal(%s, 'Carol', 'human', ARRAY['council'], p_trace_id => md5('t'))",
        (carol.name,),
    )
    g = desk.judge("SB-1-2").gate("decisions")
    assert not g.allow and "is by Carol, who is no longer a sovereign" in g.reason


def test_every_decision_a_step_requires_has_its_text_in_the_plan(tmp_path: Path, project_dir: Path) -> None:
    root = tmp_path / "p"
    shutil.copytree(project_dir, root, ignore=shutil.ignore_patterns("rehearsals"))
    plan = root / "plans" / "sb-1-2.yaml"
    text = plan.read_text()
    plan.write_text(text[: text.index("  C-2:")] + text[text.index("global_stop:") :])
    with pytest.raises(SpecError, match="SB-1-2 requires decision C-2, and the plan does not carry its text"):
        load_project(root)


def test_gcos_decide_reads_the_text_from_the_plan(desk: Desk) -> None:
    def decide(who: str) -> Any:
        args = ["decide", "C-2", "--verdict", "approve", "--expires-in", "1h", "--json"]
        args += ["--dsn", desk.role(who).dsn, "--project", str(desk.project_dir)]
        return CliRunner().invoke(app, args)

    refused = decide("bob")
    assert refused.exit_code == ExitCode.GATE_REFUSED, refused.output
    assert "is not a sovereign" in refused.output
    done = decide("carol")
    assert done.exit_code == 0, done.output
    assert text_hash(desk, "C-2") in done.output
    with psycopg.connect(desk.dsn) as conn:
        assert conn.execute("SELECT decision, text_hash FROM gcos.decisions").fetchall() == [
            ("C-2", text_hash(desk, "C-2"))
        ]
