"""gcos demo on a real server: the reference world, then seed 002's whole gated story on it."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
from typer.testing import CliRunner

from gcos import ledger, record_evidence
from gcos.cli import app


def test_demo_tells_the_whole_story_then_says_what_is_already_done(world_dsn: str, project_dir: Path) -> None:
    runner = CliRunner()
    first = runner.invoke(app, ["demo", "--dsn", world_dsn, "-C", str(project_dir), "--json"])
    assert first.exit_code == 0, first.output
    result = json.loads(first.stdout)["result"]
    assert result["world"]["built"] is False  # the world was cloned in: "already built"
    events = result["story"]["events"]
    refusals = [e["detail"] for e in events if e["outcome"] == "refused"]
    assert any(d.startswith("commit before any approval: No approval for SB-12") for d in refusals), refusals
    assert any(d.startswith("the agent tried to approve") for d in refusals), refusals
    assert len(result["story"]["committed"]) == 9
    with psycopg.connect(world_dsn, autocommit=True) as conn:
        entries = ledger.read_all(conn)
        assert ledger.verify(conn).ok
        row = conn.execute("SELECT count(*) FROM governance_candidate_state").fetchone()
    commits = {e.record["step_id"] for e in entries if e.kind == "commit"}
    assert commits == {
        "SB-12",
        "SB-13",
        "SB-10",
        "SB-11",
        "VERIFY-1-4",
        "T6-T7",
        "SB-1-2",
        "ACTIVATION",
        "BACKFILL-SEED",
    }
    assert row is not None and row[0] > 0
    # Every commit, the batched backfill's included, was made by the kernel as the demo's named operator.
    for commit in (e for e in entries if e.kind == "commit"):
        assert commit.record["actor"]["role"] == "gcos_demo_operator", commit.record["step_id"]
        assert commit.record["actor"]["principal"] == "Demo Operator"
        assert commit.payload["kernel"] is True and commit.payload["break_glass"] is False
    backfill = next(e for e in entries if e.kind == "commit" and e.record["step_id"] == "BACKFILL-SEED")
    assert backfill.payload["mode"] == "batched" and backfill.payload["batch"]["batches"] > 1
    started = [e for e in entries if e.kind == "batch_started"]
    assert [(e.record["actor"]["role"], e.payload["kernel"]) for e in started] == [("gcos_demo_operator", True)]
    # Each commit and the refusal have their evidence files beside the rehearsals', as `gcos commit` writes them.
    assert [e.record["step_id"] for e in entries if e.kind == "commit_refused"] == ["SB-12"]
    for record in (e for e in entries if e.kind in ("commit", "commit_refused")):
        stem = f"{record_evidence.file_stem(record)}.json"
        doc = json.loads((project_dir / "rehearsals" / record.record["step_id"] / stem).read_text(encoding="utf-8"))
        assert doc["canonical"] == record.canonical and doc["ledger"]["hash"] == record.hash
    assert (project_dir / "gcos-report" / "html" / "report.html").is_file()
    assert (project_dir / "gcos-report" / "json" / "manifest.json").is_file()
    assert_issue_10_rules(world_dsn, entries, project_dir)

    again = runner.invoke(app, ["demo", "--dsn", world_dsn, "-C", str(project_dir)], terminal_width=250)
    assert again.exit_code == 0, again.output
    assert " ".join(again.stdout.split()).count("already committed") == 9
    with psycopg.connect(world_dsn, autocommit=True) as conn:
        assert [e for e in ledger.read_all(conn) if e.kind == "commit"] == [e for e in entries if e.kind == "commit"]


# A demo on a small world it builds, stopping where the seed needs the full one: test_anywhere.py's
# test_demo_from_the_wheel_works_in_an_empty_directory_on_a_small_world_it_builds (the same run, from the wheel).


def test_demo_rejects_a_nonsense_row_count(dsn: str) -> None:
    result = CliRunner().invoke(app, ["demo", "--rows", "0", "--dsn", dsn])
    assert result.exit_code == 2
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()
    assert row == (0,)  # nothing was written


def assert_issue_10_rules(dsn: str, entries: list[ledger.LedgerEntry], project_dir: Path) -> None:
    """The demo under issue 10's rules: a sovereign signs every step, SB-1-2 rests on C-1 and C-2 decided by the
    sovereign (not the committer), step 8's first governance emit follows activation, every commit joins the
    trace of the rehearsal it rests on and names it, and the worker rows say the backfill completed."""
    by_seq = {e.seq: e for e in entries}
    for commit in (e for e in entries if e.kind == "commit"):
        step, causes = commit.record["step_id"], commit.payload["causation"]
        rehearsal = by_seq[causes["rehearsal_seq"]]
        assert rehearsal.kind == "rehearsal" and rehearsal.record["step_id"] == step
        assert commit.record["trace_id"] == rehearsal.record["trace_id"], step
        signers = {by_seq[seq].record["actor"]["role"] for seq in causes["approval_seqs"]}
        assert "gcos_demo_sovereign" in signers, step
    decided = {e.payload["decision"]: e for e in entries if e.kind == "decision"}
    for name in ("C-1", "C-2"):
        assert decided[name].record["actor"]["role"] == "gcos_demo_sovereign"
        assert len(decided[name].payload["text_hash"]) == 64
    with psycopg.connect(dsn, autocommit=True) as conn:
        emits = conn.execute(
            "SELECT count(*) FILTER (WHERE o.created_at > t.activated_at), count(*) FROM event_outbox AS o "
            "JOIN event_type_registry AS t USING (event_type) WHERE o.event_domain = 'governance'"
        ).fetchone()
        worker = conn.execute(
            "SELECT status FROM gov_worker_cursor WHERE worker_name = 'gov_backfill_sweep' AND source = %s",
            ("birth_registry",),
        ).fetchone()
    assert emits is not None and emits[0] == emits[1] >= 1
    assert worker == ("completed",)
    report = (project_dir / "gcos-report" / "md" / "SB-1-2.md").read_text()
    assert "Rests on: rehearsal seq" in report and "trace `" in report
