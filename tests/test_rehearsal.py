"""gcos rehearse: BEGIN..ROLLBACK on a real server, entry == exit proven, every outcome recorded."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from gcos import commands, fingerprint, ledger
from gcos.cli import app
from gcos.errors import DatabaseUnavailable, ResidueFound, ReverifyMismatch
from gcos.install import install
from gcos.rehearsal import RehearsalHooks
from gcos.spec import load_project
from gcos.target import SessionSettings, Target

REPO = Path(__file__).resolve().parent.parent
MAIN_PLAN = ["SB-12", "SB-13", "SB-10", "SB-11", "VERIFY-1-4", "T6-T7", "ACTIVATION", "BACKFILL-SEED"]


@pytest.fixture
def world(world_dsn: str, gcos_installed: None) -> Target:
    """The reference world with gcos installed (rehearsals are ledger records)."""
    with psycopg.connect(world_dsn, autocommit=True) as conn:
        install(conn)
    return Target(world_dsn, "--dsn")


def world_fingerprint(target: Target, watch: tuple[str, ...] = ()) -> fingerprint.Fingerprint:
    with psycopg.connect(target.dsn, autocommit=True) as conn:
        return fingerprint.take(conn, watch=watch)


def apply_directly(target: Target, step_id: str) -> None:
    """Simulate the commit of a step by running its mutation (what commit will apply)."""
    step = load_project(REPO).steps[step_id]
    if step.mutation:
        with psycopg.connect(target.dsn, autocommit=True) as conn, conn.transaction():
            conn.execute(step.mutation.sql)


def rehearsal_records(target: Target) -> list[ledger.LedgerEntry]:
    with psycopg.connect(target.dsn, autocommit=True) as conn:
        return [e for e in ledger.read_all(conn) if e.kind == "rehearsal"]


def gcos_sessions_in_transaction(target: Target) -> list[Any]:
    with psycopg.connect(target.dsn, autocommit=True) as conn:
        return conn.execute(
            "SELECT pid, state FROM pg_stat_activity WHERE application_name = 'gcos' AND state LIKE 'idle in%'"
        ).fetchall()


def test_every_step_of_the_reference_plan_rehearses_in_order_and_changes_nothing(
    world: Target, project_dir: Path
) -> None:
    watch = ("birth_registry", "evolution_snapshots", "event_type_registry", "queue_heartbeat", "dot_domains")
    for step_id in MAIN_PLAN:
        before = world_fingerprint(world, watch)
        result = commands.rehearse(world, project_dir, step_id)
        assert result.ok, (step_id, result.message)
        assert result.entry["hash"] == result.exit["hash"]
        assert result.after_rollback.get("hash", result.entry["hash"]) == result.entry["hash"]
        after = world_fingerprint(world, watch)
        assert after.hash == before.hash, (step_id, fingerprint.describe(fingerprint.diff(before, after)))
        apply_directly(world, step_id)  # the next step sees the world as its predecessors left it
    records = rehearsal_records(world)
    assert [r.record["step_id"] for r in records] == MAIN_PLAN
    assert all(r.payload["outcome"] == "passed" for r in records)
    assert gcos_sessions_in_transaction(world) == []


def test_the_sb_1_2_line_rehearses_on_its_own(world: Target, project_dir: Path) -> None:
    result = commands.rehearse(world, project_dir, "step-7")
    assert result.ok, result.message
    assert set(result.footprint.new_tables if result.footprint else ()) >= {
        "public.governance_object_ownership",
        "public.governance_responsibility_scope",
    }


def test_a_rehearsal_leaves_a_ledger_record_and_evidence_files(world: Target, project_dir: Path) -> None:
    result = commands.rehearse(world, project_dir, "SB-12")
    (record,) = rehearsal_records(world)
    assert record.seq == result.ledger_seq and record.record["spec_hash"] == result.spec_hash
    payload = record.payload
    assert payload["outcome"] == "passed"
    assert payload["fingerprints"]["entry"]["hash"] == payload["fingerprints"]["exit"]["hash"]
    assert [c["name"] for c in payload["checks"]["success"]] == [
        c.name for c in load_project(project_dir).steps["SB-12"].success
    ]
    assert payload["footprint"]["new_tables"] == ["public.governance_ruleset"]
    assert payload["duration_us"] > 0
    json_file, md_file = (Path(p) for p in result.evidence)
    assert json_file.parent == project_dir / "rehearsals" / "SB-12"
    document = json.loads(json_file.read_text())
    assert document["format_version"] == 1 and document["ledger"]["seq"] == record.seq
    assert "entry == exit" in md_file.read_text() or "passed" in md_file.read_text()


def test_a_reverify_mismatch_stops_before_any_mutation(world: Target, project_dir: Path) -> None:
    before = world_fingerprint(world)
    with pytest.raises(ReverifyMismatch, match="governance_ruleset present"):
        commands.rehearse(world, project_dir, "SB-10")  # its predecessors were never applied
    assert world_fingerprint(world).hash == before.hash
    (record,) = rehearsal_records(world)
    assert record.payload["outcome"] == "reverify_mismatch" and record.payload["fingerprints"]["entry"] == {}


def test_a_statement_outside_the_allow_list_is_refused_before_anything_runs(world: Target, project_dir: Path) -> None:
    path = project_dir / "steps" / "01-sb-12.yaml"
    text = path.read_text()
    path.write_text(text.replace("mutation:\n  sql: |\n", "mutation:\n  sql: |\n    DELETE FROM law_articles;\n", 1))
    before = world_fingerprint(world, ("law_articles",))
    result = CliRunner().invoke(app, ["rehearse", "SB-12", "--dsn", world.dsn, "-C", str(project_dir)])
    assert result.exit_code == 2, result.output
    assert "DELETE FROM law_articles" in " ".join(result.stderr.split())
    assert world_fingerprint(world, ("law_articles",)).hash == before.hash
    assert rehearsal_records(world) == []


def test_a_stop_condition_that_holds_is_exit_4_and_rolled_back(world: Target, project_dir: Path) -> None:
    """Seed 002 step 1 stop: "ruleset would be created active/activated without A-4"."""
    path = project_dir / "steps" / "01-sb-12.yaml"
    text = path.read_text()
    text = text.replace(
        "    WHERE r.ruleset_version = 1;\n",
        "    WHERE r.ruleset_version = 1;\n    UPDATE governance_ruleset SET activated_at = now();\n",
        1,
    )
    text = text.replace(
        "    - {comment: governance_ruleset}\n",
        "    - {comment: governance_ruleset}\n    - {update: governance_ruleset}\n",
        1,
    )
    path.write_text(text)
    assert "UPDATE governance_ruleset" in (load_project(project_dir).steps["SB-12"].mutation.sql or "")  # type: ignore[union-attr]
    before = world_fingerprint(world, ("evolution_snapshots",))
    result = CliRunner().invoke(app, ["rehearse", "SB-12", "--dsn", world.dsn, "-C", str(project_dir)])
    assert result.exit_code == 4, result.output
    assert "stop condition 'ruleset created active/activated without A-4' of SB-12 held" in " ".join(
        result.stderr.split()
    )
    assert world_fingerprint(world, ("evolution_snapshots",)).hash == before.hash
    assert rehearsal_records(world)[-1].payload["outcome"] == "stopped"


def test_an_unproven_rollback_is_exit_5(world: Target, project_dir: Path) -> None:
    (project_dir / "rollback" / "sb-12.sql").write_text("DROP TABLE governance_ruleset;\n")  # forgets the snapshot row
    with pytest.raises(ResidueFound, match="rollback evidence of SB-12 does not return"):
        commands.rehearse(world, project_dir, "SB-12")
    assert rehearsal_records(world)[-1].payload["outcome"] == "rollback_unproven"


CATEGORY_CHANGES = {
    # category reported by the fingerprint -> a change made inside the rehearsal, then force-committed
    "column": "ALTER TABLE laws ADD COLUMN extra integer",
    "constraint": "ALTER TABLE laws ADD CONSTRAINT extra_check CHECK (true)",
    "index": "CREATE INDEX extra_idx ON laws (law_id)",
    "trigger": "CREATE TRIGGER extra_trg BEFORE UPDATE ON laws FOR EACH ROW "
    "EXECUTE FUNCTION suppress_redundant_updates_trigger()",
    "function": "CREATE FUNCTION extra_fn() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    "relation": "CREATE VIEW extra_view AS SELECT 1 AS one",
    "sequence": "CREATE SEQUENCE extra_seq INCREMENT 7",
    "type": "CREATE TYPE extra_enum AS ENUM ('a', 'b')",
    "policy": "CREATE POLICY extra_policy ON laws USING (true)",
    "schema": "CREATE SCHEMA extra_schema",
    "table_data": "UPDATE measurement_registry SET description = description || '.' WHERE metric_key = "
    "(SELECT min(metric_key) FROM measurement_registry)",
}


@pytest.mark.parametrize("category", sorted(CATEGORY_CHANGES))
def test_a_forced_commit_is_seen_by_the_fingerprint_in_each_category(
    world: Target, project_dir: Path, category: str
) -> None:
    change = CATEGORY_CHANGES[category]
    hooks = RehearsalHooks(force_commit=True, inside=lambda conn: conn.execute(change))
    settings = SessionSettings.from_env()
    with pytest.raises(ResidueFound) as caught:
        commands.rehearse(world, project_dir, "SB-12", settings=settings, hooks=hooks)
    assert "entry != exit" in caught.value.message
    record = rehearsal_records(world)[-1].payload
    assert record["outcome"] == "residue"
    assert any(d.startswith(f"{category} ") for d in record["differences"]), record["differences"]


def test_analyze_during_a_rehearsal_changes_nothing(world: Target, project_dir: Path) -> None:
    def analyze(_: psycopg.Connection[Any]) -> None:
        with psycopg.connect(world.dsn, autocommit=True) as other:
            other.execute("ANALYZE evolution_snapshots")
            other.execute("ANALYZE measurement_registry")
            other.execute("VACUUM measurement_registry")

    result = commands.rehearse(world, project_dir, "SB-12", hooks=RehearsalHooks(inside=analyze))
    assert result.ok and result.entry["hash"] == result.exit["hash"]


def test_a_held_lock_is_exit_8_naming_the_blocker_and_leaves_nothing_open(world: Target, project_dir: Path) -> None:
    holder = psycopg.connect(world.dsn, autocommit=True)
    holder.execute("SET application_name = 'the-blocker'")
    holder.execute("BEGIN")
    holder.execute("LOCK TABLE evolution_snapshots IN SHARE MODE")  # readers pass, the step's INSERT waits
    holder_pid = holder.info.backend_pid
    settings = SessionSettings(lock_timeout="500ms")
    try:
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable) as caught:
            commands.rehearse(world, project_dir, "SB-12", settings=settings)
        elapsed = time.monotonic() - started
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert f"pid {holder_pid}" in caught.value.message and "LOCK TABLE evolution_snapshots" in caught.value.message
    assert "ShareLock on evolution_snapshots" in caught.value.message
    assert caught.value.exit_code == 8
    assert elapsed < 0.5 + 10  # lock_timeout plus a margin for the fingerprints, not the blocker's lifetime
    assert gcos_sessions_in_transaction(world) == []
    assert rehearsal_records(world)[-1].payload["outcome"] == "lock_timeout"


def test_rehearse_needs_gcos_installed(world_dsn: str, project_dir: Path) -> None:
    result = CliRunner().invoke(app, ["rehearse", "SB-12", "--dsn", world_dsn, "-C", str(project_dir)])
    assert result.exit_code == 2
    assert "gcos install" in result.stderr


def test_concurrent_rehearsals_do_not_see_each_other(world: Target, project_dir: Path) -> None:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            assert commands.rehearse(world, project_dir, "SB-12").ok
        except BaseException as exc:  # collected and re-raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(rehearsal_records(world)) == 2
