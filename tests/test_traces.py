"""One trace per step run (issue 10 item 7; seed 001: "Every evidence record includes trace_id. Orphan records
are invalid."): the database refuses a record without a trace id (gcos/sql/024_traces.sql); rehearse -> approve
-> commit of one step share the rehearsal's trace and the commit names the rehearsal and approvals it rests on;
the rehearsal's evidence file and the reports carry the trace and the causation."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from test_commit import World, adopted_world

from gcos import evidence, ledger
from gcos.domain import Kind
from gcos.errors import SpecError
from gcos.spec import load_project

TRACE = "ab" * 16
DECIDE = (
    "SELECT * FROM gcos.record_decision('A-4', repeat('ab', 32), 'approve', clock_timestamp() + interval '1h', NULL)"
)


@pytest.fixture
def world(world_dsn: str, gcos_adopted: None, project_dir: Path) -> Iterator[World]:
    yield from adopted_world(world_dsn, project_dir)


def test_a_record_without_a_trace_id_is_refused_even_to_a_superuser(world: World) -> None:
    """Neither ledger_append (a superuser's) nor an aperture mints a trace: with none given, 22023."""
    sovereign = world.person("sovereign")
    head = world.head()
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="trace"):
        world.admin.execute("SELECT * FROM gcos.ledger_append('note', NULL, NULL, NULL, NULL, '{}')")
    with psycopg.connect(sovereign.dsn, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="trace"):
            conn.execute(DECIDE)
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="trace"):
            conn.execute(
                "SELECT * FROM gcos.record_approval('SB-12', repeat('a', 64), repeat('b', 64), 'approve', "
                "clock_timestamp() + interval '1h', NULL, NULL)"
            )
        # the transaction's trace context is a trace id too (for the functions that take none)
        with conn.transaction():
            conn.execute("SELECT pg_catalog.set_config('gcos.trace_id', %s, true)", (TRACE,))
            conn.execute(DECIDE)
    assert world.head() == head + 1
    (decision,) = world.entries(head)
    assert decision.kind == Kind.DECISION and decision.record["trace_id"] == TRACE


def test_rehearse_approve_commit_share_one_trace_and_name_their_causes(world: World) -> None:
    world.rehearse()
    (rehearsal,) = world.records(Kind.REHEARSAL, "SB-12")
    trace = rehearsal.record["trace_id"]
    approval = world.approve()
    (approved,) = world.records(Kind.APPROVAL, "SB-12")
    assert approved.record["trace_id"] == trace
    assert approved.payload["rehearsal_seq"] == rehearsal.seq == approved.payload["causation"]["rehearsal_seq"]
    world.commit()
    (decision,) = [e for e in world.records(Kind.POLICY_DECISION, "SB-12") if e.payload["allow"]]
    (commit,) = world.records(Kind.COMMIT, "SB-12")
    assert decision.record["trace_id"] == commit.record["trace_id"] == decision.payload["trace_id"] == trace
    assert commit.payload["attempt_trace_id"] != trace  # the client's own attempt, kept beside the run's trace
    assert commit.payload["causation"] == {
        "rehearsal_seq": rehearsal.seq,
        "approval_ids": [approval.approval_id],
        "approval_seqs": [approved.seq],
        "policy_decision_seq": decision.seq,
    }
    assert commit.payload["policy_decision_seq"] == decision.seq
    # every record of the step carries a well-formed trace (none minted by the database)
    assert all(len(e.record["trace_id"]) == 32 for e in world.entries())


def test_an_approval_of_a_rehearsal_keeps_its_trace(world: World) -> None:
    """A trace id other than the rehearsal's is refused; a seq that is no rehearsal too."""
    world.rehearse()
    (rehearsal,) = world.records(Kind.REHEARSAL, "SB-12")
    sovereign = world.person("sovereign")
    call = (
        "SELECT * FROM gcos.record_approval('SB-12', %s, %s, 'approve', clock_timestamp() + interval '1h', "
        "NULL, %s, %s)"
    )
    plan_hash = rehearsal.payload["plan_hash"]
    with psycopg.connect(sovereign.dsn, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="belongs to its trace"):
            conn.execute(call, (rehearsal.record["spec_hash"], plan_hash, rehearsal.seq, TRACE))
        other = world.records(Kind.SPEC_REGISTERED, "SB-12")[0].seq
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="not a rehearsal"):
            conn.execute(call, (rehearsal.record["spec_hash"], plan_hash, other, None))


def test_rehearsal_evidence_and_reports_show_trace_and_causation(world: World, tmp_path: Path) -> None:
    world.rehearse()
    (rehearsal,) = world.records(Kind.REHEARSAL, "SB-12")
    trace = rehearsal.record["trace_id"]
    files = sorted((world.project / "rehearsals" / "SB-12").iterdir())
    document = json.loads(next(p for p in files if p.suffix == ".json").read_text())
    assert document["trace_id"] == trace
    assert f"trace `{trace}`" in next(p for p in files if p.suffix == ".md").read_text()
    world.approve()
    world.commit()
    (commit,) = world.records(Kind.COMMIT, "SB-12")
    (approved,) = world.records(Kind.APPROVAL, "SB-12")
    with psycopg.connect(world.dsn, autocommit=True) as conn:
        project = load_project(world.project)
        evidence.build_report(conn, project, step_id="SB-12", fmt="md", out_dir=tmp_path / "md")
        evidence.build_report(conn, project, step_id="SB-12", fmt="json", out_dir=tmp_path / "json")
    text = "\n".join(p.read_text(encoding="utf-8") for p in (tmp_path / "md").rglob("*.md"))
    assert f"trace `{trace}`; policy decision seq {commit.payload['policy_decision_seq']}" in text
    assert f"Rests on: rehearsal seq {rehearsal.seq}, approvals {approved.payload['approval_id']}" in text
    assert f"(ledger seqs {approved.seq})" in text
    step_json = _step_json(tmp_path / "json", "SB-12")
    (applied,) = [c for c in _applies(step_json) if c["seq"] == commit.seq]
    assert applied["trace_id"] == trace and applied["causation"]["rehearsal_seq"] == rehearsal.seq
    assert all(r["trace_id"] for r in step_json["records"])


def _step_json(root: Path, step: str) -> dict[str, Any]:
    (path,) = [p for p in root.rglob(f"{step}.json")]
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _applies(step_json: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for value in step_json.values():
        if isinstance(value, list):
            found += [v for v in value if isinstance(v, dict) and v.get("kind") == Kind.COMMIT and "causation" in v]
    return found


def test_python_clients_name_a_trace(world: World) -> None:
    """ledger.trace_context sets the transaction's trace; a bad one is refused before the database sees it."""
    with psycopg.connect(world.dsn) as conn:
        assert ledger.trace_context(conn, TRACE) == TRACE
        assert conn.execute("SELECT current_setting('gcos.trace_id')").fetchone() == (TRACE,)
    with psycopg.connect(world.dsn) as conn, pytest.raises(SpecError, match="32 lowercase hex"):
        ledger.trace_context(conn, "nope")
