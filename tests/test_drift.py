"""gcos drift: the KERNEL compares the live world with the fingerprint recorded after the last commit that counts
and records the drift itself (gcos.record_drift, gcos/sql/015_closed_ledger.sql; seed 000: "Drift becomes ledger
artifacts"). No client writes a drift record: it can only ask."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import MakeRole, Role
from psycopg import errors as pg_errors
from psycopg import sql
from typer.testing import CliRunner

from gcos import commands, drift, ledger
from gcos.cli import app
from gcos.domain import Kind
from gcos.errors import ExitCode, GateRefused, ReverifyMismatch
from gcos.target import Target

EDIT_ARTICLE = (
    "UPDATE law_articles SET heading = heading || ' (edited)' WHERE ctid = (SELECT min(ctid) FROM law_articles)"
)


@dataclass
class World:
    dsn: str
    admin: psycopg.Connection[Any]
    project: Path
    people: dict[str, Role]

    def target(self, who: str) -> Target:
        return Target(self.people[who].dsn, "--dsn")

    def commit_sb12(self) -> ledger.LedgerEntry:
        """SB-12 rehearsed by the operator, approved by the sovereign, committed by the operator: by the kernel."""
        assert commands.rehearse(self.target("operator"), self.project, "SB-12").ok
        commands.approve(self.target("sovereign"), self.project, "SB-12", verdict="approve", expires_in="1h")
        assert commands.commit(self.target("operator"), self.project, "SB-12").ok
        (commit,) = self.records(Kind.COMMIT)
        assert commit.payload["kernel"] is True
        return commit

    def records(self, kind: str) -> list[ledger.LedgerEntry]:
        return [e for e in ledger.read_all(self.admin) if e.kind == kind]

    def drift_cli(self, who: str) -> Any:
        return CliRunner().invoke(app, ["drift", "--dsn", self.people[who].dsn], terminal_width=200)


@pytest.fixture
def world(world_dsn: str, world_role: MakeRole, project_dir: Path, gcos_adopted: None) -> Iterator[World]:
    people = {
        "operator": world_role("op", kind="human", roles=("operator",), grant=("operator",)),
        "sovereign": world_role("sov", kind="human", roles=("sovereign",), grant=("sovereign",)),
        "auditor": world_role("aud", kind="human", roles=("auditor",), grant=("auditor",)),
    }
    with psycopg.connect(world_dsn, autocommit=True) as admin:
        yield World(world_dsn, admin, project_dir, people)


def test_no_commit_means_nothing_to_drift_from(world_dsn: str, world_role: MakeRole) -> None:
    auditor = world_role("aud", kind="human", roles=("auditor",), grant=("auditor",))  # public not adopted here
    result = CliRunner().invoke(app, ["drift", "--dsn", auditor.dsn, "--json"])
    assert result.exit_code == 0, result.output
    with psycopg.connect(world_dsn, autocommit=True) as conn:
        assert [e.kind for e in ledger.read_all(conn)].count(Kind.DRIFT) == 0


def test_an_untouched_world_has_no_drift_and_records_nothing(world: World) -> None:
    commit = world.commit_sb12()
    head = len(ledger.read_all(world.admin))
    result = world.drift_cli("auditor")
    assert result.exit_code == 0, result.output
    assert len(ledger.read_all(world.admin)) == head
    with world.people["operator"].connect() as conn:
        found = drift.detect(conn)
    assert (found.baseline_seq, found.baseline_kind, found.compared) == (commit.seq, "commit", "full")
    assert found.ledger_seq is None
    assert found.ok and found.live_hash == commit.payload["fingerprint_after"]["hash"] == found.baseline_hash


def test_a_superusers_change_is_drift_the_kernel_records_with_who_asked_and_what_changed(world: World) -> None:
    commit = world.commit_sb12()
    world.admin.execute("ALTER TABLE governance_ruleset ADD COLUMN sneaky boolean")
    world.admin.execute(EDIT_ARTICLE)
    result = world.drift_cli("auditor")  # an auditor asks; the kernel measures and writes
    assert result.exit_code == ExitCode.REVERIFY_MISMATCH, result.output
    (record,) = world.records(Kind.DRIFT)
    payload = record.payload
    assert record.record["actor"]["role"] == world.people["auditor"].name
    assert record.record["step_id"] == "SB-12"
    assert payload["kernel"] is True and payload["compared"] == "full"
    assert (payload["baseline_seq"], payload["baseline_kind"]) == (commit.seq, "commit")
    assert payload["baseline_hash"] == commit.payload["fingerprint_after"]["hash"] != payload["live_hash"]
    differences = payload["differences"]
    assert "column public.governance_ruleset.sneaky added" in differences, differences
    assert any(d.startswith("table_data public.law_articles changed (content changed") for d in differences)
    assert not any(d.startswith("sequence_state") for d in differences)  # residue is never drift
    assert payload["differences_total"] == len(differences)

    # Asked again by someone else, the drift is measured and recorded again, in their name.
    with world.people["sovereign"].connect() as conn, pytest.raises(ReverifyMismatch) as info:
        drift.detect(conn)
    again = info.value.details
    assert isinstance(again, drift.DriftResult) and again.ledger_seq == record.seq + 1
    assert list(again.differences) == differences
    latest = world.records(Kind.DRIFT)[-1]
    assert latest.record["actor"]["role"] == world.people["sovereign"].name


def _forge_counted_commit(world: World, payload: dict[str, Any]) -> int:
    """A commit record that COUNTS (an allowing policy decision of its step and trace), as only a superuser can
    still append one: what a pre-kernel client commit left in the ledger."""
    trace = ledger.new_trace_id()
    decision = ledger.append(world.admin, Kind.POLICY_DECISION, {"allow": True}, step_id="SB-12", trace_id=trace)
    body = {"outcome": "applied", "policy_decision_seq": decision.seq, **payload}
    return ledger.append(world.admin, Kind.COMMIT, body, step_id="SB-12", trace_id=trace).seq


def test_a_baseline_without_the_whole_fingerprint_is_compared_by_its_summary(world: World) -> None:
    commit = world.commit_sb12()
    summary = commit.payload["fingerprint_after"]
    old = _forge_counted_commit(world, {"fingerprint_after": summary})
    with world.people["auditor"].connect() as conn:
        quiet = drift.detect(conn)
    assert (quiet.baseline_seq, quiet.compared, quiet.differences) == (old, "summary", ())
    world.admin.execute(EDIT_ARTICLE)
    world.admin.execute("ALTER TABLE governance_ruleset ADD COLUMN sneaky boolean")
    with world.people["auditor"].connect() as conn, pytest.raises(ReverifyMismatch):
        drift.detect(conn)
    (record,) = world.records(Kind.DRIFT)
    assert (record.payload["baseline_seq"], record.payload["compared"]) == (old, "summary")
    assert "table_data public.law_articles changed" in record.payload["differences"]
    assert any(d.startswith("schema ") for d in record.payload["differences"]), record.payload["differences"]


def test_a_commit_record_that_does_not_count_is_no_baseline(world: World) -> None:
    """A commit record without an allowing decision of its own trace (a superuser's) cannot hide drift by
    carrying the drifted world as its fingerprint."""
    commit = world.commit_sb12()
    world.admin.execute(EDIT_ARTICLE)
    row = world.admin.execute(
        "SELECT gcos.fingerprint(%s)", (list(commit.payload["fingerprint_after_full"]["tables"]),)
    ).fetchone()
    assert row is not None
    live = row[0]
    summary = {"hash": live["hash"], "schema_hash": live["schema_hash"], "tables": live["tables"]}
    ledger.append(
        world.admin,
        Kind.COMMIT,
        {"outcome": "applied", "fingerprint_after": summary, "fingerprint_after_full": live,
         "policy_decision_seq": commit.payload["policy_decision_seq"]},  # someone else's trace
        step_id="SB-12",
    )  # fmt: skip
    with world.people["auditor"].connect() as conn, pytest.raises(ReverifyMismatch) as info:
        drift.detect(conn)
    assert info.value.details.baseline_seq == commit.seq


def test_who_may_ask_for_drift(world: World, world_role: MakeRole) -> None:
    """Every gcos principal may ask (the kernel measures, the caller chooses nothing it records); a role that is
    no principal, or a superuser acting as someone else, may not."""
    world.commit_sb12()
    world.admin.execute(EDIT_ARTICLE)
    stranger = world_role("stranger", grant=("auditor",))  # a gcos group, but no principal
    outsider = world_role("outsider")
    with stranger.connect() as conn, pytest.raises(pg_errors.InsufficientPrivilege, match="not a registered principal"):
        conn.execute("SELECT gcos.record_drift(NULL)")
    with outsider.connect() as conn, pytest.raises(pg_errors.InsufficientPrivilege):
        conn.execute("SELECT gcos.record_drift(NULL)")
    with psycopg.connect(world.dsn, autocommit=True) as root:
        root.execute(sql.SQL("SET SESSION AUTHORIZATION {}").format(sql.Identifier(world.people["auditor"].name)))
        with pytest.raises(pg_errors.InsufficientPrivilege, match="logged in as"):
            root.execute("SELECT gcos.record_drift(NULL)")
    assert world.records(Kind.DRIFT) == []


def test_a_baseline_where_the_kernel_governs_nothing_is_refused(
    conn: psycopg.Connection[Any], make_role: MakeRole
) -> None:
    """Public not adopted: the kernel cannot read the world, so it does not claim drift (or its absence)."""
    auditor = make_role("aud", kind="human", roles=("auditor",), grant=("auditor",))
    trace = ledger.new_trace_id()
    decision = ledger.append(conn, Kind.POLICY_DECISION, {"allow": True}, step_id="SB-12", trace_id=trace)
    ledger.append(
        conn, Kind.COMMIT, {"outcome": "applied", "policy_decision_seq": decision.seq, "fingerprint_after": {}},
        step_id="SB-12", trace_id=trace,
    )  # fmt: skip
    with auditor.connect() as session, pytest.raises(GateRefused) as info:
        drift.detect(session)
    assert info.value.exit_code == ExitCode.GATE_REFUSED and "adopt public" in str(info.value)
    assert [e.kind for e in ledger.read_all(conn)].count(Kind.DRIFT) == 0
