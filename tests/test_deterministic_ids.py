"""Run ids derive from content, never uuid4 (issue 10 item 8, seed 003 A3 "Idempotency keys are deterministic or
content-addressed; no random UUIDs"; gcos/sql/022_durable_records_and_run_ids.sql).

The derivation, recomputed here in Python from the records' own fields and the database's identity:
    run_id = 12 hex of the ledger position || first 20 hex of sha256(JCS({action, database: {system_identifier,
             database_oid}, ledger_seq: position, plan_hash, spec_hash}))
A rehearsal's position is the head it started on (its record's seq - 1 when nothing else was appended meanwhile);
a commit's, the head the client read just before the call (the seq before its policy decision). The kernel
refuses an id that is not derived, or that a recorded run of the step already carries.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from test_commit import World, adopted_world

from gcos import kernel, registry
from gcos.canonical import canonical_bytes
from gcos.domain import Kind
from gcos.errors import GateRefused
from gcos.spec import load_project

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def world(world_dsn: str, gcos_adopted: None, project_dir: Path) -> Iterator[World]:
    yield from adopted_world(world_dsn, project_dir)


def derived(w: World, spec_hash: str, plan_hash: str, action: str, position: int) -> str:
    """The documented derivation, independently of the database's gcos.run_id."""
    row = w.admin.execute("SELECT system_identifier, database_oid::bigint FROM gcos.database_incarnation()").fetchone()
    assert row is not None
    content = {
        "action": action,
        "database": {"system_identifier": row[0], "database_oid": row[1]},
        "ledger_seq": position,
        "plan_hash": plan_hash,
        "spec_hash": spec_hash,
    }
    return f"{position:012x}" + hashlib.sha256(canonical_bytes(content)).hexdigest()[:20]


def hashes(w: World, step_id: str) -> tuple[str, str]:
    project = load_project(w.project)
    plan = project.plan_of(step_id)
    assert plan is not None
    return project.step(step_id).hash, plan.hash


def test_two_rehearsals_of_one_spec_have_ids_derived_from_where_each_started(world: World) -> None:
    world.rehearse()
    world.rehearse()
    first, second = world.records(Kind.REHEARSAL)
    ids = []
    for entry in (first, second):
        payload = entry.payload
        run_id = payload["run_id"]
        assert run_id == derived(world, entry.record["spec_hash"], payload["plan_hash"], "rehearse", entry.seq - 1)
        ids.append(run_id)
    assert ids[0] != ids[1]  # the first one's record moved the head


def test_a_commit_carries_the_id_its_client_derived_before_the_call(world: World) -> None:
    world.rehearse()
    world.approve()
    result = world.commit()
    (commit,) = world.records(Kind.COMMIT)
    decision_seq = commit.payload["policy_decision_seq"]
    spec_hash, plan_hash = commit.record["spec_hash"], commit.payload["plan_hash"]
    assert result.run_id == commit.payload["run_id"] == derived(world, spec_hash, plan_hash, "commit", decision_seq - 1)
    decision = world.entries(after=decision_seq - 1)[0]
    assert decision.kind == Kind.POLICY_DECISION and decision.payload["trace_id"] == commit.record["trace_id"]


def test_a_batched_run_derives_its_id_the_same_way(world: World) -> None:
    """Step 9 unapproved in the reference world: its start is refused, and the refusal carries the run id the
    client derived (action commit) at the head it read."""
    with pytest.raises(GateRefused):
        world.commit("BACKFILL-SEED")
    (refused,) = world.records(Kind.COMMIT_REFUSED, "BACKFILL-SEED")
    payload = refused.payload
    assert payload["mode"] == "batched"
    spec_hash, plan_hash = hashes(world, "BACKFILL-SEED")
    assert payload["run_id"] == derived(world, spec_hash, plan_hash, "commit", refused.seq - 1)


def test_the_kernel_takes_only_a_derived_unused_run_id(world: World) -> None:
    """A retry at the same position gets the same id; an id from nowhere, from the future or already recorded is
    refused (22023) and records nothing."""
    step, plan = load_project(world.project).step("SB-12"), load_project(world.project).plan_of("SB-12")
    assert plan is not None
    call = "SELECT gcos.commit(%s, %s, 'commit', %s, %s)"
    with world.person("operator").connect() as conn:
        spec_hash, plan_hash = registry.register_spec(conn, step), registry.register_plan(conn, plan)
        run = kernel.derive_run_id(conn, spec_hash, plan_hash, "commit")
        assert kernel.derive_run_id(conn, spec_hash, plan_hash, "commit") == run  # same position, same id
        head = world.head()
        assert run == derived(world, spec_hash, plan_hash, "commit", head)
        future = derived(world, spec_hash, plan_hash, "commit", head + 5)
        for bad in (secrets.token_hex(16), future, derived(world, spec_hash, plan_hash, "rollback", head)):
            with pytest.raises(psycopg.errors.InvalidParameterValue, match="not derived"):
                conn.execute(call, (spec_hash, plan_hash, bad, "1" * 32))
        assert world.head() == head
        conn.execute(call, (spec_hash, plan_hash, run, "1" * 32))  # unapproved: refused, and recorded
        (refused,) = world.entries(after=head)
        assert refused.kind == Kind.COMMIT_REFUSED and refused.payload["run_id"] == run
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="already recorded"):
            conn.execute(call, (spec_hash, plan_hash, run, "1" * 32))  # the same id again: a stale position
        assert kernel.derive_run_id(conn, spec_hash, plan_hash, "commit") != run  # the head moved
    assert world.head() == refused.seq


def test_no_random_uuid_makes_an_id(world: World) -> None:
    """No gcos function draws a random uuid but the ledger writer's default trace and span ids (landed in
    001/008; trace ids are not idempotency keys), and no gcos module calls uuid4."""
    rows = world.admin.execute(
        "SELECT proname FROM pg_proc WHERE pronamespace = 'gcos'::regnamespace AND prosrc ~ 'gen_random_uuid'"
    ).fetchall()
    assert {r[0] for r in rows} <= {"_ledger_write"}
    python = [p for p in (REPO / "gcos").rglob("*.py") if re.search(r"\buuid4\b|uuid\.uuid1\b", p.read_text())]
    assert python == []
