"""history.py, the one reader of the ledger: on real ledgers built by the KERNEL's commits and rollbacks (schema
public adopted), it agrees with the database's own reading (``gcos._step_history``, what the gates rely on), and a
commit or rollback record a superuser appends without an allowing policy decision of its own trace never counts:
not as the commit in force, not as the one a rollback undoes, not as the drift baseline."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import fingerprint
from test_gates import Desk, open_desk

from gcos import commands, domain, drift, history, ledger
from gcos.errors import ExitCode, ReverifyMismatch
from gcos.ledger import LedgerEntry


@pytest.fixture
def world(world_dsn: str, project_dir: Path, gcos_adopted: None) -> Iterator[Desk]:
    yield from open_desk(world_dsn, project_dir)


def agrees(w: Desk, step: str) -> history.StepHistory:
    """The client's reading of `step`, after asserting it is the database's (gcos._step_history)."""
    h = history.read(ledger.read_all(w.admin)).step(step)
    force, rollback = h.commit_in_force, h.last_rollback
    row = w.admin.execute("SELECT gcos._step_history(%s)", (step,)).fetchone()
    assert row is not None and dict(row[0]) == {
        "committed": h.committed,
        "last_commit_seq": h.last_commit.seq if h.last_commit else None,
        "rollback_seq": rollback.seq if rollback else None,
        "epoch_seq": h.epoch_seq,
        "commit_seq": force.seq if force else None,
        "commit_spec_hash": force.spec_hash if force else None,
        "commit_schema_hash": force.schema_hash_after if force else None,
    }
    return h


def forge(w: Desk, kind: str, step: str, payload: dict[str, Any]) -> int:
    """A record appended by the superuser through gcos.ledger_append, in a trace of its own (only the kernel marks
    a record "kernel", so a copied kernel payload loses that mark)."""
    body = {k: v for k, v in payload.items() if k != "kernel"}
    return ledger.append(w.admin, kind, body, step_id=step, spec_hash=w.project.step(step).hash).seq


def live_fingerprint(w: Desk, step: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The live world as a commit record keeps it: the summary and the whole fingerprint."""
    fp = fingerprint(w.admin, w.project.step(step).watch)
    return {"hash": fp["hash"], "schema_hash": fp["schema_hash"], "tables": fp["tables"]}, fp


def commit_sb12(w: Desk) -> LedgerEntry:
    seq = w.land("SB-12")
    (record,) = w.records("commit")
    assert record.seq == seq and record.payload["kernel"] is True
    return record


def test_a_forged_commit_is_no_commit_and_no_drift_baseline(world: Desk) -> None:
    w = world
    record = commit_sb12(w)
    h = agrees(w, "SB-12")
    assert h.committed and h.commit_in_force is not None and h.commit_in_force.seq == record.seq

    # issue 9: an UPDATE behind gcos's back, then a commit record carrying the world after it as its fingerprint
    w.execute(
        "UPDATE law_articles SET heading = heading || ' (edited)' WHERE ctid = (SELECT min(ctid) FROM law_articles)"
    )
    summary, full = live_fingerprint(w, "SB-12")
    forged = forge(
        w,
        domain.Kind.COMMIT,
        "SB-12",
        {
            **record.payload,
            "run_id": uuid.uuid4().hex,
            "fingerprint_after": summary,
            "fingerprint_after_full": full,
            "policy_decision_seq": record.payload["policy_decision_seq"],  # the real decision, of another trace
        },
    )
    unbacked = forge(w, domain.Kind.COMMIT, "SB-12", {"outcome": "applied", "run_id": uuid.uuid4().hex})
    read = history.read(ledger.read_all(w.admin))
    assert {forged, unbacked}.isdisjoint({c.seq for c in read.step("SB-12").commits})
    assert agrees(w, "SB-12").commit_in_force == h.commit_in_force
    (status,) = commands.status(w.target(), w.project_dir, "SB-12").steps
    assert status.state == domain.StepState.COMMITTED and str(record.seq) in status.detail
    with pytest.raises(ReverifyMismatch) as info:
        drift.detect(w.admin)
    assert info.value.exit_code == ExitCode.REVERIFY_MISMATCH and info.value.details.baseline_seq == record.seq


def test_a_rollback_undoes_the_commit_in_force_whatever_was_appended_after_it(world: Desk) -> None:
    w = world
    record = commit_sb12(w)
    # a superuser's commit record with a made-up "before": the kernel's rollback must still prove the real one
    bogus = {"hash": "0" * 64, "schema_hash": "0" * 64, "tables": {}}
    decision_seq = record.payload["policy_decision_seq"]
    forge(
        w,
        domain.Kind.COMMIT,
        "SB-12",
        {"outcome": "applied", "fingerprint_before": bogus, "policy_decision_seq": decision_seq},
    )
    w.approve("alice", "SB-12", rollback=True)
    undone = w.rollback("SB-12")
    assert undone.ok, undone.message
    assert undone.fingerprint_after["hash"] == record.payload["fingerprint_before"]["hash"]
    (rollback,) = w.records("rollback")
    assert rollback.payload["of_commit_seq"] == record.seq
    h = agrees(w, "SB-12")
    assert not h.committed and h.commit_in_force is None and h.last_rollback is not None
    assert h.last_rollback.seq == rollback.seq and h.epoch_seq == rollback.seq
    assert drift.detect(w.admin).baseline_seq == rollback.seq  # the kernel's baseline: no drift from it

    # a forged commit after the rollback, and a forged rollback: neither counts
    forge(w, domain.Kind.COMMIT, "SB-12", {"outcome": "applied", "policy_decision_seq": decision_seq})
    forge(w, domain.Kind.ROLLBACK, "SB-12", {"outcome": "applied", "of_commit_seq": record.seq})
    h = agrees(w, "SB-12")
    assert not h.committed and h.epoch_seq == rollback.seq
    (status,) = commands.status(w.target(), w.project_dir, "SB-12").steps
    assert status.state == domain.StepState.ROLLED_BACK


# --------------------------------------------------------------------------- constructed records (no database)


def entry(
    seq: int, kind: str, payload: dict[str, Any], *, trace: str | None = "a" * 32, step: str = "S-1"
) -> LedgerEntry:
    record: dict[str, Any] = {"seq": seq, "kind": kind, "step_id": step, "payload": payload}
    if trace is not None:
        record["trace_id"] = trace
    return LedgerEntry(seq, "0" * 64, f"{seq:064x}", "{}", record)


def test_only_a_backing_decision_of_the_same_step_and_trace_counts() -> None:
    backed = {"outcome": "applied", "policy_decision_seq": 1}
    h = history.read(
        [
            entry(1, "policy_decision", {"allow": True}),
            entry(2, "commit", backed, trace="b" * 32),  # another trace
            entry(3, "commit", backed, step="S-2"),  # another step
            entry(4, "commit", {"outcome": "applied", "policy_decision_seq": 5}),  # a later decision
            entry(5, "policy_decision", {"allow": True}),
            entry(6, "commit", {"outcome": "stopped", "policy_decision_seq": 1}),  # not applied
            entry(7, "policy_decision", {"allow": True}, trace=None),
            entry(8, "commit", {"outcome": "applied", "policy_decision_seq": 7}, trace=None),  # no trace: as SQL
            entry(9, "policy_decision", {"allow": False}),
            entry(10, "commit", {"outcome": "applied", "policy_decision_seq": 9}),  # refused
        ]
    )
    assert h.step("S-1").commits == [] and h.step("S-2").commits == []
    h = history.read([entry(1, "policy_decision", {"allow": True}), entry(2, "commit", backed)])
    assert [c.seq for c in h.step("S-1").commits] == [2]


def test_the_open_batched_run_is_the_last_start_not_followed_by_an_applied_commit() -> None:
    started = entry(2, "batch_started", {"run_id": "r1"})
    entries = [entry(1, "policy_decision", {"allow": True}), started]
    assert history.read(entries).step("S-1").open_run == started
    entries.append(entry(3, "commit", {"outcome": "stopped"}))
    assert history.read(entries).step("S-1").open_run == started
    entries.append(entry(4, "commit", {"outcome": "applied", "policy_decision_seq": 1}))
    assert history.read(entries).step("S-1").open_run is None
    again = entry(5, "batch_started", {"run_id": "r2"})
    assert history.read([*entries, again]).step("S-1").open_run == again
