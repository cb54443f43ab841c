"""The kernel's batched functions called directly (gcos/sql/013_kernel_batched.sql; issue 9 item 2), as a client
that skips `gcos commit` would: no client claims a batch record, a batch runs only under the 5 s statement limit,
a batch that writes outside its allow list or its source table is undone and stops the run, and a run closes
only when every key is batched. What `gcos commit` does with these functions is tests/test_batched.py's, on the
same small world (its template and people)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors as pg_errors
from test_batched import SIZE, SPEC, STEP, Kit, make_kit

from gcos import kernel, ledger, registry
from gcos.domain import Kind, Outcome
from gcos.errors import GateRefused
from gcos.spec import load_project


@pytest.fixture
def kit(pg_admin_dsn: str, small_world: str, tmp_path: Path) -> Iterator[Kit]:
    yield from make_kit(pg_admin_dsn, small_world, tmp_path / "project")


def registered(kit: Kit) -> tuple[str, str]:
    """Step 9's spec and plan registered as the operator: the hashes the kernel's functions take."""
    plan = load_project(kit.project_dir).plan_of(STEP)
    assert plan is not None
    with kit.person("operator").connect() as conn:
        return registry.register_spec(conn, kit.step), registry.register_plan(conn, plan)


def call(conn: psycopg.Connection[Any], query: str, params: tuple[Any, ...]) -> Any:
    """The one value a kernel function returns."""
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def test_no_client_claims_a_batch_record(kit: Kit) -> None:
    for who in ("operator", "agent", "sovereign", "council"):
        for kind in (Kind.BATCH_STARTED, Kind.BATCH_RESUMED):
            with kit.person(who).connect() as conn, pytest.raises(GateRefused):
                ledger.append(conn, kind, {"run_id": "0" * 32}, step_id=STEP, spec_hash=kit.step.hash)
    assert Kind.BATCH_STARTED not in kit.kinds() and Kind.BATCH_RESUMED not in kit.kinds()
    for who in ("sovereign", "council"):  # approvers may not even call the kernel's batch functions
        with kit.person(who).connect() as conn, pytest.raises(pg_errors.InsufficientPrivilege):
            conn.execute("SELECT gcos.batch_next(%s, %s)", ("0" * 32, "1" * 32))
    with kit.person("operator").connect() as conn, pytest.raises(pg_errors.InvalidParameterValue):
        conn.execute("SELECT gcos.batch_next(%s, %s)", ("0" * 32, "1" * 32))  # no such run


def test_the_kernel_commits_a_batched_step_only_batch_by_batch(kit: Kit) -> None:
    """gcos.commit of a batched step refuses (0A000, exit 2) and points at batch_start/next/close (019)."""
    spec_hash, plan_hash = registered(kit)
    with kit.person("operator").connect() as conn, pytest.raises(pg_errors.FeatureNotSupported) as refused:
        run = kernel.derive_run_id(conn, spec_hash, plan_hash, "commit")  # 022: run ids derive from content
        conn.execute("SELECT gcos.commit(%s, %s, 'commit', %s, %s)", (spec_hash, plan_hash, run, "f" * 32))
    assert "batch_start" in str(refused.value)
    assert Kind.COMMIT not in kit.kinds() and Kind.POLICY_DECISION not in kit.kinds()


SNEAKS = {  # a data-modifying CTE, put before the batch's own, that writes from the third batch on
    "allow_list": "UPDATE governance_ruleset SET activated_at = activated_at WHERE",
    "source": "UPDATE birth_registry SET source_system = source_system WHERE id = 1 AND",
}


@pytest.mark.parametrize("sneak", sorted(SNEAKS))
def test_a_batch_that_writes_beyond_its_allow_list_or_its_source_is_undone_and_stops_the_run(
    kit: Kit, sneak: str
) -> None:
    """Called as a client without the CLI's static checks: only from the third batch on (the rehearsal runs
    two), the batch SQL also writes a table its allow list does not name, or its own source table."""
    third = kit.key_at(2 * SIZE)  # batch 3 runs after this key
    path = kit.project_dir / SPEC
    sneaky = f"    WITH sneak AS ({SNEAKS[sneak]} %(after)s::bigint >= {third} RETURNING 1),\n    run AS ("
    path.write_text(path.read_text().replace("    WITH run AS (", sneaky, 1))
    spec_hash, plan_hash = registered(kit)
    with kit.person("operator").connect() as conn:
        rehearsed = call(conn, "SELECT gcos.rehearse(%s, %s, %s)", (spec_hash, plan_hash, "2" * 32))
    assert rehearsed["outcome"] == Outcome.PASSED, rehearsed["message"]
    kit.approve()
    ruleset = kit.admin.execute("SELECT count(*), max(xmin::text) FROM governance_ruleset").fetchone()
    trace = "b" * 32
    with kit.person("operator").connect() as conn:
        run = kernel.derive_run_id(conn, spec_hash, plan_hash, "commit")  # 022: run ids derive from content
        started = call(conn, "SELECT gcos.batch_start(%s, %s, %s, %s)", (spec_hash, plan_hash, run, trace))
        assert started["outcome"] == "started", started["message"]
        with pytest.raises(pg_errors.InvalidParameterValue):  # a batch runs under the 5 s statement limit only
            conn.execute("SELECT gcos.batch_next(%s, %s)", (run, trace))
        outcomes = []
        for _ in range(3):
            with conn.transaction():
                conn.execute("SET LOCAL statement_timeout = '5s'")
                body = call(conn, "SELECT gcos.batch_next(%s, %s)", (run, trace))
            outcomes.append(body["outcome"])
    assert outcomes == ["batch", "batch", Outcome.STOPPED], body["message"]
    assert kit.counts()[2:] == kit.after_batches(2)  # batch 3 was undone, the two before it stay
    assert kit.admin.execute("SELECT count(*), max(xmin::text) FROM governance_ruleset").fetchone() == ruleset
    stop = kit.records()[-1]
    assert stop.kind == Kind.STOP and stop.payload["kernel"] is True and stop.payload["run_id"] == run
    assert stop.payload["batch"] == 3 and stop.payload["outcome"] == Outcome.STOPPED
    named = {v["identity"] for v in stop.payload["allow_violations"]}
    assert named == ({"public.governance_ruleset"} if sneak == "allow_list" else {"public.birth_registry"})
    assert stop.record["actor"]["role"] == kit.person("operator").name


def test_a_run_closes_only_when_every_key_is_batched(kit: Kit) -> None:
    """A client calling the kernel directly cannot close a run early: that would commit a partial backfill."""
    kit.rehearse()
    kit.approve()
    spec_hash, plan_hash = registered(kit)
    trace = "d" * 32
    with kit.person("operator").connect() as conn:
        run = kernel.derive_run_id(conn, spec_hash, plan_hash, "commit")  # 022: run ids derive from content
        started = call(conn, "SELECT gcos.batch_start(%s, %s, %s, %s)", (spec_hash, plan_hash, run, trace))
        assert started["outcome"] == "started" and started["run_id"] == run
        with conn.transaction():
            conn.execute("SET LOCAL statement_timeout = '5s'")
            body = call(conn, "SELECT gcos.batch_next(%s, %s)", (run, trace))
        assert body["outcome"] == "batch"
        early = call(conn, "SELECT gcos.batch_close(%s, %s)", (run, trace))
    assert early["outcome"] == "more" and early["watermark"] == int(kit.key_at(SIZE))
    assert kit.kinds()[-2:] == [Kind.POLICY_DECISION, Kind.BATCH_STARTED]  # nothing recorded, no commit
    assert kit.counts()[2:] == kit.after_batches(1)  # the batch stays, the run goes on
