"""Seed 002 steps 2, 8 and 9 as the seed words them (issue 10 items 4 and 5), on the small world of
tests/test_batched.py (steps 1-4, 6 and 8 applied, gcos installed, public adopted):

- step 9 judges its stops in every batch: a batch on which one holds is undone, the run stops (exit 4), the
  batches before it stay; the worker rows say `stopped`, and `completed` after a full run (gcos/sql/027);
- step 8's success evidence needs a real first governance emit after registration and activation;
- step 2 stops on a scheduled gov_* job in cron.job, and proves RR-8 in the column without leaving a trace."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from psycopg.types.json import Jsonb
from test_batched import BATCHES, STEP, Kit, at_batch, make_kit

from gcos.domain import Kind, Outcome
from gcos.errors import ExitCode
from gcos.spec import load_project


@pytest.fixture
def kit(pg_admin_dsn: str, small_world: str, tmp_path: Path) -> Iterator[Kit]:
    yield from make_kit(pg_admin_dsn, small_world, tmp_path / "project")


def worker_rows(kit: Kit) -> tuple[str, str]:
    """The sweep's cursor status and heartbeat status."""
    row = kit.admin.execute(
        "SELECT c.status, h.status FROM gov_worker_cursor c JOIN queue_heartbeat h ON h.executor_name = c.worker_name "
        "WHERE c.worker_name = 'gov_backfill_sweep' AND c.source = 'birth_registry'"
    ).fetchone()
    assert row is not None
    return str(row[0]), str(row[1])


def spec_item(kit: Kit, step: str, section: str, name: str) -> dict[str, Any]:
    """One check or stop of a step's registered document, by the start of its name."""
    (item,) = [
        c for c in load_project(kit.project_dir).steps[step].document[section] if c.get("name", "").startswith(name)
    ]
    return dict(item)


def check_ok(kit: Kit, check: dict[str, Any]) -> bool:
    (result,) = kit.admin.execute("SELECT gcos.evaluate_check(%s)", (Jsonb(check),)).fetchone() or (None,)
    assert result is not None and result.get("error") is None, result
    return bool(result["ok"])


def stop_holds(kit: Kit, stop: dict[str, Any]) -> bool:
    (held,) = kit.admin.execute("SELECT holds FROM gcos.stop_holds(%s, 0)", (Jsonb(stop),)).fetchone() or (None,)
    assert held is not None
    return bool(held)


# --------------------------------------------------------------------------- item 4: step 9


def test_a_batch_on_which_a_stop_holds_is_undone_and_the_run_stops_with_the_worker_rows_saying_so(kit: Kit) -> None:
    """After batch 1 a governance finding type is set to auto-remediate (C-7.4): batch 2 sees the stop hold in
    its own transaction, is undone, and the run stops (exit 4) with batch 1's rows kept and the sweep `stopped`."""
    kit.rehearse()
    kit.approve()

    def tamper() -> None:
        kit.admin.execute("UPDATE finding_type_registry SET escalation = 'auto_remediate' WHERE domain = 'governance'")

    kit.fails(ExitCode.STOP_HELD, progress=at_batch(1, tamper))
    stop = kit.records()[-1]
    assert stop.kind == Kind.STOP and stop.payload["batch"] == 2 and stop.payload["outcome"] == Outcome.STOPPED
    (held,) = [s["name"] for s in stop.payload["stops"]]
    assert held.startswith("a governance finding type set to auto-remediate")
    assert kit.counts()[2:] == kit.after_batches(1)  # batch 2 undone, batch 1 stays (as 013 documents)
    assert stop.payload["worker"]["key"] == "on_stop" and "error" not in stop.payload["worker"]
    assert worker_rows(kit) == ("stopped", "stopped") and Kind.COMMIT not in kit.kinds()


def test_a_global_stop_holding_in_a_batch_stops_the_run_too(kit: Kit) -> None:
    """The plan's global_stop is judged per batch as well: an emit of an unregistered type (§70.2 #2)."""
    kit.rehearse()
    kit.approve()

    def tamper() -> None:
        kit.admin.execute(
            "ALTER TABLE event_outbox DROP CONSTRAINT event_outbox_event_type_fkey; "
            "INSERT INTO event_outbox (id, event_type, event_domain, created_at) "
            "VALUES (md5('stray')::uuid, 'governance.unregistered', 'governance', now())"
        )

    kit.fails(ExitCode.STOP_HELD, progress=at_batch(1, tamper))
    stop = kit.records()[-1]
    assert stop.payload["batch"] == 2 and [s["name"] for s in stop.payload["stops"]] == [
        "§70.2 #2 emit-before-register (an outbox event of an unregistered or inactive type)"
    ]
    assert kit.counts()[2:] == kit.after_batches(1) and worker_rows(kit)[0] == "stopped"


def test_a_full_run_leaves_the_worker_rows_completed_and_its_success_evidence_says_so(kit: Kit) -> None:
    kit.rehearse()
    kit.approve()
    assert worker_rows(kit) == ("idle", "registered")
    result = kit.commit()
    assert result.ok and result.outcome == Outcome.APPLIED, result.message
    kit.complete()
    assert worker_rows(kit) == ("completed", "stopped")  # the heartbeat's vocabulary has no "completed"
    evidence = spec_item(kit, STEP, "success", "when the sweep has reached the end")
    assert check_ok(kit, evidence)
    kit.admin.execute("UPDATE gov_worker_cursor SET status = 'running' WHERE worker_name = 'gov_backfill_sweep'")
    assert not check_ok(kit, evidence)  # a finished sweep that still says running fails the evidence


def test_a_run_that_fails_at_close_undoes_finish_and_says_stopped(kit: Kit) -> None:
    """Success evidence fails at close (the scan runs relabelled after the last batch): finish is undone."""
    kit.rehearse()
    kit.approve()

    def relabel() -> None:
        kit.admin.execute("UPDATE candidate_scan_run SET worker_name = 'another_sweep'")

    kit.fails(ExitCode.STOP_HELD, progress=at_batch(BATCHES, relabel))
    stop = kit.records()[-1]
    assert stop.kind == Kind.STOP and stop.payload["outcome"] == Outcome.SUCCESS_FAILED
    assert stop.payload["worker"]["key"] == "on_stop" and worker_rows(kit) == ("stopped", "stopped")


# --------------------------------------------------------------------------- item 5: steps 8 and 2


def test_step_8_success_needs_a_first_emit_after_registration_and_activation(kit: Kit) -> None:
    """The world holds step 8 applied: its first governance emit is a real row after activation."""
    first = spec_item(kit, "ACTIVATION", "success", "first emit appears in event_outbox")
    assert check_ok(kit, first)
    (emits,) = kit.admin.execute("SELECT count(*) FROM event_outbox WHERE event_domain = 'governance'").fetchone() or (
        0,
    )
    assert emits == 1
    with kit.admin.transaction(force_rollback=True):  # the emit precedes activation
        kit.admin.execute(
            "UPDATE event_outbox o SET created_at = t.activated_at - interval '1 second' "
            "FROM event_type_registry t WHERE t.event_type = o.event_type AND o.event_domain = 'governance'"
        )
        assert not check_ok(kit, first)
    with kit.admin.transaction(force_rollback=True):  # no emit at all
        kit.admin.execute("DELETE FROM event_outbox WHERE event_domain = 'governance'")
        assert not check_ok(kit, first)
    assert check_ok(kit, first)


def test_step_2_stops_on_a_scheduled_governance_job_and_leaves_no_rr8_probe(kit: Kit) -> None:
    cron = spec_item(kit, "SB-13", "stop", "cron scheduled at build time")
    assert not stop_holds(kit, cron)  # the world's scheduler holds no job
    kit.admin.execute(
        "INSERT INTO cron.job (schedule, command, jobname) VALUES ('*/5 * * * *', 'SELECT 1', 'gov_backfill_sweep')"
    )
    assert stop_holds(kit, cron)
    kit.admin.execute("TRUNCATE cron.job")
    kit.admin.execute("INSERT INTO cron.job (schedule, command) VALUES ('0 * * * *', 'CALL gov_sweep_tick()')")
    assert stop_holds(kit, cron)
    rr8 = spec_item(kit, "SB-13", "success", "text watermark stores both")
    assert check_ok(kit, rr8)  # after the commit: no probe row left
    (probes,) = kit.admin.execute(
        "SELECT count(*) FROM gov_worker_cursor WHERE worker_name = 'gov_rr8_probe'"
    ).fetchone() or (None,)
    assert probes == 0
    with kit.admin.transaction(force_rollback=True):  # a probe left behind fails the evidence
        kit.admin.execute(
            "INSERT INTO gov_worker_cursor (worker_name, source, watermark, watermark_kind) "
            "VALUES ('gov_rr8_probe', 'birth_registry', '1055575', 'int')"
        )
        assert not check_ok(kit, rr8)
