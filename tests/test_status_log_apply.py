"""Issue 11 item 7: `gcos plan` runs rehearse's static checks offline; `gcos status` is one row per step
(state, when, by whom, what is next; committed is done) with the gates behind `gcos status STEP`; `gcos log
[STEP]` prints the ledger history; `gcos apply PLAN` commits every approved step in plan order and stops at the
first refusal with its exit code; `gcos approvals [STEP]` lists the ids `gcos revoke` needs; a batched run that
began and neither finished nor stopped is "interrupted, resumable" in status and log.

People are real LOGIN roles (tests/test_commit.py's World, tests/test_batched.py's Kit): a human operator
rehearses and commits, a sovereign approves and revokes. Outcomes are read from exit codes and --json."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO
from test_batched import STEP as BACKFILL
from test_batched import Kit, at_batch, make_kit, terminate
from test_commit import World, adopted_world
from typer.testing import CliRunner

from gcos import commands, kernel, ledger
from gcos.cli import app
from gcos.domain import Kind
from gcos.errors import ExitCode, SpecError
from gcos.spec import load_project
from gcos.target import LIBPQ_ENV


@pytest.fixture
def world(world_dsn: str, gcos_adopted: None, project_dir: Path) -> Iterator[World]:
    yield from adopted_world(world_dsn, project_dir)


@pytest.fixture
def kit(pg_admin_dsn: str, small_world: str, tmp_path: Path) -> Iterator[Kit]:
    yield from make_kit(pg_admin_dsn, small_world, tmp_path / "project")


# --------------------------------------------------------------------------- plan, offline


def _project(root: Path) -> Path:
    for name in ("steps", "plans", "rollback"):
        shutil.copytree(REPO / name, root / name)
    return root


def test_plan_runs_rehearses_static_checks_and_touches_no_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No target named anywhere: a server touched would be the embedded one under ./.gcos; with PGHOST at a
    socket directory where nothing listens, a connection would fail (exit 8). Plan passes both, shows no state,
    and refuses (exit 2) the SQL rehearse refuses, with rehearse's own sentence."""
    root = _project(tmp_path / "project")
    for var in ("GCOS_DSN", "DATABASE_URL", "GCOS_HOME", "PGPASSWORD", *LIBPQ_ENV):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    done = runner.invoke(app, ["plan", "-C", str(root), "--json"])
    assert done.exit_code == 0, done.output
    steps = [s for p in json.loads(done.stdout)["result"]["plans"] for s in p["steps"]]
    assert steps and all(s["state"] is None for s in steps)  # offline: no state read, none claimed
    assert all(g["holds"] is True for s in steps for g in s["gates"] if g["name"].startswith("SQL passes"))
    assert not (tmp_path / ".gcos").exists() and "embedded" not in done.stderr

    spec = root / "steps" / "01-sb-12.yaml"
    spec.write_text(
        spec.read_text().replace("mutation:\n  sql: |\n", "mutation:\n  sql: |\n    UPDATE laws SET status = 'x';\n", 1)
    )
    project = load_project(root)
    with pytest.raises(SpecError) as rehearse_says:
        kernel.static_check(project.steps["SB-12"], project.plans["build"])
    (tmp_path / "nothing-listens").mkdir()
    monkeypatch.setenv("PGHOST", str(tmp_path / "nothing-listens"))
    refused = runner.invoke(app, ["plan", "-C", str(root), "--json"])
    assert refused.exit_code == ExitCode.BAD_INPUT, refused.output
    body = json.loads(refused.stdout)
    assert rehearse_says.value.message.rstrip(".") in body["error"] and "not in the allow list" in body["error"]
    sb12 = next(s for p in body["details"]["plans"] for s in p["steps"] if s["id"] == "SB-12")
    assert [g["holds"] for g in sb12["gates"] if g["name"].startswith("SQL passes")] == [False]
    assert not (tmp_path / ".gcos").exists()


# --------------------------------------------------------------------------- status, log, approvals


def _cli(w: World, *args: str, who: str | None = "operator") -> tuple[int, dict]:
    return w.cli(*args, who=who)


def _rows(w: World, who: str = "sovereign") -> dict[str, dict]:
    code, out = w.cli("status", who=who)
    assert code == 0, out
    return {s["id"]: s for s in out["result"]["steps"]}


def test_status_is_one_row_per_step_and_committed_is_done(world: World) -> None:
    rows = _rows(world)
    assert rows["SB-12"]["row"]["shown"] == "planned" and rows["SB-12"]["row"]["when"] is None
    assert "gcos rehearse SB-12" in rows["SB-12"]["row"]["next"]
    world.rehearse()
    rehearsed = _rows(world)["SB-12"]["row"]
    assert rehearsed["shown"] == "rehearsed" and rehearsed["by"] == "Operator" and rehearsed["when"]
    assert "gcos approve SB-12" in rehearsed["next"]
    world.approve()
    approved = _rows(world)["SB-12"]["row"]
    assert (approved["shown"], approved["by"], approved["next"]) == (
        "approved",
        "Sovereign",
        "commit it: gcos commit SB-12",
    )
    world.commit()
    (commit,) = world.records(Kind.COMMIT, "SB-12")
    done = _rows(world)["SB-12"]["row"]
    assert done == {
        "shown": "committed",
        "when": commit.record["recorded_at"],
        "by": "Operator",
        "next": "done",
        "done": True,
        "resume": None,
    }
    text = CliRunner().invoke(
        app, ["status", "--dsn", world.person("sovereign").dsn, "-C", str(world.project)], terminal_width=250
    )
    line = next(line for line in text.stdout.splitlines() if "SB-12" in line)
    assert "committed" in line and "done" in line and "✘" not in line
    one = CliRunner().invoke(
        app, ["status", "SB-12", "--dsn", world.person("sovereign").dsn, "-C", str(world.project)], terminal_width=250
    )
    assert (
        one.exit_code == 0
        and "done" in one.stdout
        and "✘" not in one.stdout
        and " ".join(one.stdout.split()).count("gcos approve SB-12") == one.stdout.count("--rollback") == 1
    )  # a committed step is done: no red gate, no advice to approve it (only how to roll it back)
    other = CliRunner().invoke(
        app, ["status", "SB-13", "--dsn", world.person("operator").dsn, "-C", str(world.project)], terminal_width=250
    )
    assert "✘ 4" in other.stdout and "gcos rehearse SB-13" in " ".join(other.stdout.split())  # the gate detail


def test_log_prints_the_ledger_history_of_a_step(world: World) -> None:
    world.rehearse()
    world.approve()
    world.commit()
    code, out = world.cli("log", "step-1", who="sovereign")
    assert code == 0, out
    rows = out["result"]["rows"]
    expected = [e for e in world.entries() if e.record.get("step_id") == "SB-12"]
    assert [(r["seq"], r["kind"]) for r in rows] == [(e.seq, e.kind) for e in expected]
    by_kind = {r["kind"]: r for r in rows}
    assert by_kind["rehearsal"]["outcome"] == "passed" and by_kind["rehearsal"]["who"] == "Operator"
    assert by_kind["approval"]["outcome"] == "approve" and by_kind["approval"]["who"] == "Sovereign"
    assert by_kind["commit"]["outcome"] == "applied" and by_kind["policy_decision"]["outcome"] == "allow"
    commit = next(e for e in expected if e.kind == Kind.COMMIT)
    assert (
        by_kind["commit"]["trace_id"] == commit.record["trace_id"]
        and by_kind["commit"]["when"] == commit.record["recorded_at"]
    )
    code, everything = world.cli("log", who="sovereign")
    assert code == 0 and len(everything["result"]["rows"]) == len(ledger.read_all(world.admin))


def test_approvals_lists_the_ids_revoke_needs_and_whether_each_counts(world: World) -> None:
    world.rehearse()
    first = world.approve().approval_id
    code, out = world.cli("approvals", "SB-12", who="sovereign")
    assert code == 0, out
    (row,) = out["result"]["approvals"]
    assert (row["id"], row["approver"], row["verdict"], row["counts"], row["revoked"]) == (
        first,
        "Sovereign",
        "approve",
        True,
        None,
    )
    commands.revoke(world.target("sovereign"), first, reason="second look")  # the id approvals listed
    code, out = world.cli("approvals", "SB-12", who="operator")
    (row,) = out["result"]["approvals"]
    assert row["counts"] is False and row["why"] == "revoked" and "second look" in row["revoked"]
    assert _rows(world)["SB-12"]["row"]["shown"] == "rehearsed"


# --------------------------------------------------------------------------- apply


def test_apply_commits_in_plan_order_skips_the_committed_and_stops_at_the_first_refusal(world: World) -> None:
    world.rehearse("SB-12")
    world.approve("SB-12")
    world.commit("SB-12")
    world.rehearse("SB-13")  # a rehearsal is bound to the schema it ran on: after SB-12's commit
    world.approve("SB-13")
    head = world.head()
    code, out = world.cli("apply", "build")
    assert code == ExitCode.GATE_REFUSED, out
    assert out["error"].startswith(
        "gcos apply build stopped at SB-10 (committed SB-13; skipped SB-12 (already committed))"
    )
    steps = [(a["step"], a["outcome"]) for a in out["details"]["apply"]["steps"]]
    assert steps == [("SB-12", "skipped"), ("SB-13", "committed"), ("SB-10", "refused")]
    kinds = [(e.kind, e.record.get("step_id")) for e in world.entries(after=head) if e.kind != Kind.SPEC_REGISTERED]
    assert (Kind.COMMIT, "SB-13") in kinds and (Kind.COMMIT_REFUSED, "SB-10") in kinds
    assert not any(k == Kind.COMMIT and s != "SB-13" for k, s in kinds)  # nothing after the refusal ran
    text = CliRunner().invoke(
        app, ["apply", "build", "--dsn", world.person("operator").dsn, "-C", str(world.project)], terminal_width=250
    )
    said = " ".join(text.stderr.split())
    assert text.exit_code == ExitCode.GATE_REFUSED, text.output
    assert "skipped SB-12, SB-13 (already committed)" in said and "- skipped SB-13: already committed" in said
    code, again = world.cli("apply", "sb-1-2")
    assert code == ExitCode.GATE_REFUSED and again["error"].startswith("gcos apply sb-1-2 stopped at SB-1-2 (nothing")
    code, unknown = world.cli("apply", "nope")
    assert code == ExitCode.BAD_INPUT and "no plan 'nope'" in unknown["error"]


# --------------------------------------------------------------------------- interrupted, resumable


def test_an_interrupted_batched_run_is_interrupted_resumable_with_its_command(kit: Kit) -> None:
    kit.rehearse()
    kit.approve()
    kit.fails(ExitCode.DATABASE_UNAVAILABLE, progress=at_batch(2, lambda: terminate(kit)))
    runner = CliRunner()
    base = ["--dsn", kit.person("sovereign").dsn, "-C", str(kit.project_dir), "--json"]
    status = json.loads(runner.invoke(app, ["status", BACKFILL, *base]).stdout)["result"]["steps"][0]["row"]
    assert status["shown"] == "interrupted, resumable" and status["by"] == "Op"  # the principal's name
    assert status["next"].endswith(f"gcos commit {BACKFILL}") and status["resume"]["batches"] == 2
    assert f"after key {status['resume']['watermark']}" in status["next"]
    log = json.loads(runner.invoke(app, ["log", BACKFILL, *base]).stdout)["result"]
    assert log["notes"] and log["notes"][0].endswith(f"interrupted, resumable: gcos commit {BACKFILL}")
    kit.commit()  # the command it names resumes and finishes the run
    status = json.loads(runner.invoke(app, ["status", BACKFILL, *base]).stdout)["result"]["steps"][0]["row"]
    assert status["shown"] == "committed" and status["next"] == "done"
    assert json.loads(runner.invoke(app, ["log", BACKFILL, *base]).stdout)["result"]["notes"] == []


def test_a_run_stopped_by_a_revocation_is_not_interrupted(kit: Kit) -> None:
    """A run that stopped (here: its approval revoked between batches, a commit_refused of the run) is not
    "interrupted": status shows the state the ledger projects and what opens its gates again."""
    kit.rehearse()
    approval = kit.approve()

    def revoke() -> None:
        commands.revoke(kit.target("sovereign"), approval, reason="stop the sweep")

    kit.fails(ExitCode.GATE_REFUSED, progress=at_batch(1, revoke))
    base = ["--dsn", kit.person("sovereign").dsn, "-C", str(kit.project_dir), "--json"]
    runner = CliRunner()
    row = json.loads(runner.invoke(app, ["status", BACKFILL, *base]).stdout)["result"]["steps"][0]["row"]
    assert row["shown"] == "rehearsed" and row["resume"] is None and "gcos approve" in row["next"]
    assert json.loads(runner.invoke(app, ["log", BACKFILL, *base]).stdout)["result"]["notes"] == []


def test_a_step_edited_after_its_commit_is_not_done_and_apply_stops_there(world: World) -> None:
    """The commit in force is of another spec than the one on disk: status says so (not done) and what to do;
    apply refuses there (exit 3) rather than skip it as committed; the way out it advises works."""
    world.rehearse("SB-12")
    world.approve("SB-12")
    world.commit("SB-12")
    (commit,) = world.records(Kind.COMMIT, "SB-12")
    spec = world.project / "steps" / "01-sb-12.yaml"
    committed = spec.read_text()
    spec.write_text(committed.replace("not law. Created as draft", "not law (v2). Created as draft"))
    row = _rows(world)["SB-12"]["row"]
    assert (row["shown"], row["done"], row["when"]) == ("committed, spec changed", False, commit.record["recorded_at"])
    assert (
        f"changed since its commit (ledger seq {commit.seq}, spec" in row["next"]
        and "gcos rollback SB-12" in row["next"]
    )
    head = world.head()
    code, out = world.cli("apply", "build")
    assert code == ExitCode.GATE_REFUSED, out
    assert out["error"].startswith(
        "gcos apply build stopped at SB-12 (nothing committed before it): the spec of SB-12 changed since its commit"
    )
    assert "changed since its commit" in out["error"]
    assert [(a["step"], a["outcome"]) for a in out["details"]["apply"]["steps"]] == [("SB-12", "refused")]
    assert not [e for e in world.entries(after=head) if e.kind in (Kind.COMMIT, Kind.COMMIT_REFUSED)]
    spec.write_text(committed)  # the kernel rolls back with the spec as committed, as the advice says
    world.approve("SB-12", rollback=True)
    code, out = world.cli("rollback", "SB-12")
    assert code == 0, out
    assert _rows(world)["SB-12"]["row"]["shown"] == "rolled_back"
