"""The seams the merge of 024-028 left (issue 10; gcos/sql/029_seams.sql), each through the kernel as real roles:

- an expiring exception (025) waives a stop of a batched step in every batch (027), as at the close: the batches
  proceed, a stop record marks the waived stop beside the one that held, and never the committer's own;
- a batched run is stitched to the rehearsal's trace (026): batch_started, a batch's stop record and the commit
  carry the trace of the rehearsal the policy decision rested on, each process's own as attempt_trace_id;
- only a sovereign revokes a decision (a council member revoking a sovereign's `reject` would reopen gate 6).

Step 9 on the small world of tests/test_batched.py; the stop tampered after batch 1 as tests/test_step_rules.py does.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from test_batched import DAY, ROWS, SIZE, SPEC, STEP, Kit, at_batch, make_kit

from gcos import approvals, exceptions, ledger
from gcos.domain import Kind, Outcome, StepState
from gcos.errors import ExitCode, GateRefused, GcosError
from gcos.principals import add_principal
from gcos.spec import load_project

FINDING = "a governance finding type set to auto-remediate (C-7.4 escalates to findings only)"
EMIT = "§70.2 #2 emit-before-register (an outbox event of an unregistered or inactive type)"


@pytest.fixture
def kit(pg_admin_dsn: str, small_world: str, tmp_path: Path) -> Iterator[Kit]:
    yield from make_kit(pg_admin_dsn, small_world, tmp_path / "project")


def waive_finding(kit: Kit) -> int:
    """The sovereign (not the operator who commits) waives step 9's finding-type stop for an hour."""
    receipt = exceptions.record(kit.target("sovereign"), kit.project_dir, STEP, FINDING, expires_in="1h", reason="R-9")
    return receipt.exception_id


def auto_remediate(kit: Kit) -> None:
    kit.admin.execute("UPDATE finding_type_registry SET escalation = 'auto_remediate' WHERE domain = 'governance'")


def stray_emit(kit: Kit) -> None:
    kit.admin.execute(
        "ALTER TABLE event_outbox DROP CONSTRAINT event_outbox_event_type_fkey; "
        "INSERT INTO event_outbox (id, event_type, event_domain, created_at) "
        "VALUES (md5('stray')::uuid, 'governance.unregistered', 'governance', now())"
    )


def worker_rows(kit: Kit) -> tuple[str, str]:
    """The sweep's cursor status and heartbeat status."""
    row = kit.admin.execute(
        "SELECT c.status, h.status FROM gov_worker_cursor c JOIN queue_heartbeat h ON h.executor_name = c.worker_name "
        "WHERE c.worker_name = 'gov_backfill_sweep' AND c.source = 'birth_registry'"
    ).fetchone()
    assert row is not None
    return str(row[0]), str(row[1])


def one(kit: Kit, kind: str) -> ledger.LedgerEntry:
    (entry,) = [e for e in kit.records() if e.kind == kind]
    return entry


# --------------------------------------------------------------------------- item 1: exceptions in every batch


def test_an_exception_on_a_stop_lets_every_batch_of_a_batched_step_proceed(kit: Kit) -> None:
    """Without the waiver batch 2 stops (exit 4, tests/test_step_rules.py); with it every batch commits and the
    close reports the stop held and waived by that exception."""
    kit.rehearse()
    kit.approve()
    exception_id = waive_finding(kit)
    result = kit.commit(progress=at_batch(1, lambda: auto_remediate(kit)))
    assert result.ok and result.outcome == Outcome.APPLIED, result.message
    kit.complete()
    (waived,) = [s for s in result.stops if s.waived]
    assert waived.name == FINDING and waived.held and waived.waived["exception_id"] == exception_id
    assert Kind.STOP not in kit.kinds() and kit.state() == StepState.COMMITTED


def test_a_stop_record_marks_the_waived_stop_beside_the_one_that_held_under_the_rehearsals_trace(kit: Kit) -> None:
    """A plan's global stop is never waived: the batch stops on it, and its stop record lists the step's stop that
    held too, marked waived; the record is the run's, under the rehearsal's trace."""
    kit.rehearse()
    kit.approve()
    exception_id = waive_finding(kit)

    def tamper() -> None:
        auto_remediate(kit)
        stray_emit(kit)

    kit.fails(ExitCode.STOP_HELD, progress=at_batch(1, tamper))
    stop = kit.records()[-1]
    assert stop.kind == Kind.STOP and stop.payload["batch"] == 2
    held = {s["name"]: s.get("waived") for s in stop.payload["stops"]}
    assert held.keys() == {FINDING, EMIT} and held[EMIT] is None
    assert held[FINDING] is not None and held[FINDING]["exception_id"] == exception_id
    rehearsal = one(kit, Kind.REHEARSAL)
    assert stop.record["trace_id"] == rehearsal.record["trace_id"] != stop.payload["attempt_trace_id"]
    assert stop.payload["attempt_trace_id"] == one(kit, Kind.BATCH_STARTED).payload["attempt_trace_id"]


def test_the_committers_own_exception_waives_nothing_in_a_batch(kit: Kit) -> None:
    """The exception's sovereign and the operator who commits are one person under two roles: not applied."""
    for who, role in (("sovtwo", "sovereign"), ("sovop", "operator")):
        made = kit.make(who, grant=(role,))
        add_principal(kit.admin, made.name, name=who.title(), kind="human", roles=(role,), grant=False, person="Pat")
        kit.made[who] = made
    kit.rehearse()
    kit.approve()  # by the kit's own sovereign, another person
    exceptions.record(kit.target("sovtwo"), kit.project_dir, STEP, FINDING, expires_in="1h", reason="R-9")
    kit.fails(ExitCode.STOP_HELD, who="sovop", progress=at_batch(1, lambda: auto_remediate(kit)))
    stop = kit.records()[-1]
    assert stop.kind == Kind.STOP and stop.payload["batch"] == 2
    assert [(s["name"], "waived" in s) for s in stop.payload["stops"]] == [(FINDING, False)]


# --------------------------------------------------------------------------- item 2: one trace per batched run


def test_rehearse_approve_and_a_batched_commit_share_the_rehearsals_trace(kit: Kit) -> None:
    kit.rehearse()
    kit.approve()
    result = kit.commit()
    assert result.ok, result.message
    rehearsal, approval = one(kit, Kind.REHEARSAL), one(kit, Kind.APPROVAL)
    decision, started, commit = one(kit, Kind.POLICY_DECISION), one(kit, Kind.BATCH_STARTED), one(kit, Kind.COMMIT)
    trace = rehearsal.record["trace_id"]
    assert [e.record["trace_id"] for e in (approval, decision, started, commit)] == [trace] * 4
    assert decision.payload["trace_id"] == trace
    attempt = started.payload["attempt_trace_id"]
    assert attempt != trace and commit.payload["attempt_trace_id"] == attempt
    assert started.payload["causation"]["rehearsal_seq"] == rehearsal.seq
    assert started.payload["causation"]["approval_seqs"] == [approval.seq]
    assert commit.payload["causation"]["rehearsal_seq"] == rehearsal.seq
    assert commit.payload["causation"]["policy_decision_seq"] == decision.seq == commit.payload["policy_decision_seq"]
    assert kit.state() == StepState.COMMITTED  # history still pairs the commit with its decision by trace


# --------------------------------------------------------------------------- item 4: batch.finish in a rehearsal


def test_a_rehearsal_that_reaches_the_end_runs_batch_finish_and_judges_the_worker_rows(kit: Kit) -> None:
    """In batches of half the table the rehearsal's two batches complete the run: its finish is judged, so a finish
    that leaves the cursor saying anything but `completed` fails the rehearsal (it passed unjudged before 029)."""
    spec = kit.project_dir / SPEC
    text = spec.read_text(encoding="utf-8").replace(f"size: {SIZE}", f"size: {ROWS // 2}", 1)
    spec.write_text(text, encoding="utf-8")
    kit.rehearse()
    passed = one(kit, Kind.REHEARSAL).payload
    (check,) = [c for c in passed["checks"]["success"] if c["name"].startswith("when the sweep has reached the end")]
    assert check["ok"] and passed["outcome"] == "passed"
    assert worker_rows(kit) == ("idle", "registered")  # a rehearsal leaves nothing

    spec.write_text(text.replace("SET status = 'completed'", "SET status = 'stopped'", 1), encoding="utf-8")
    with pytest.raises(GcosError) as info:
        kit.rehearse()
    assert info.value.exit_code == ExitCode.STOP_HELD
    failed = [e for e in kit.records() if e.kind == Kind.REHEARSAL][-1].payload
    assert failed["outcome"] == "success_failed" and "when the sweep has reached the end" in failed["message"]


# --------------------------------------------------------------------------- item 3: revoking a decision


def test_only_a_sovereign_revokes_a_decision(kit: Kit) -> None:
    """A sovereign's `reject` stands against a council member's revocation (42501, one sentence)."""
    council = kit.person("council")
    with kit.person("sovereign").connect() as sovereign:
        reject = approvals.decide(sovereign, load_project(kit.project_dir), "A-5", verdict="reject", expires_in=DAY)
    with psycopg.connect(council.dsn, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="only a sovereign revokes a decision"):
            conn.execute("SELECT * FROM gcos.revoke_decision(%s, 'reopen', md5('t'))", (reject.decision_id,))
        with pytest.raises(GateRefused, match="is not a sovereign"):
            approvals.revoke_decision(conn, reject.decision_id, "reopen")
    assert kit.admin.execute("SELECT count(*) FROM gcos.decision_revocations").fetchone() == (0,)
    with kit.person("sovereign").connect() as sovereign:
        revoked = approvals.revoke_decision(sovereign, reject.decision_id, "superseded")
    assert revoked.subject == "A-5" and Kind.DECISION_REVOCATION in [e.kind for e in ledger.read_all(kit.admin)]
