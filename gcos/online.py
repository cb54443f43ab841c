"""Online steps (`mode: online`): statements that cannot run in a transaction block (CREATE INDEX
CONCURRENTLY and its kin) run one by one outside a transaction, every one of them decided by the kernel
(gcos/sql/035_online_steps.sql, mended in 036).

The client names the statements (PostgreSQL's parser, via gcos.sqlcheck) and the kernel checks that they are
the registered mutation's own text, beginning and ending outside its comments and quoted text (its own lexer,
037), and sends back the text it runs. Rehearsal: gcos.rehearse_online runs the transactional equivalent
(CONCURRENTLY taken out) under BEGIN..ROLLBACK and its record says so. Commit: gcos.online_begin evaluates the
gates and opens the run; gcos.online_next runs a plain statement in its own kernel transaction, or lends this
session gcos_kernel's rights for one ticketed statement, which the client then sends top-level, verbatim;
gcos.online_done takes the rights back and proves the piece (the kernel saw the statement start; its index exists,
valid, or is gone); gcos.online_finish judges the stops (a held one is a stop record, exit 4), success and index
validity, and writes the commit record."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from gcos import kernel, ledger, registry, rehearsal_evidence, sqlcheck
from gcos.errors import GcosError, SpecError, translated
from gcos.install import require_installed
from gcos.results import CommitResult, RehearsalResult
from gcos.spec import Project, StepSpec
from gcos.target import SessionSettings, Target, connect, set_local_timeouts


def pieces(step: StepSpec) -> list[str]:
    """The mutation's statements, verbatim, in order (the kernel checks they tile its registered SQL)."""
    if step.mutation is None:
        raise SpecError(f"step {step.id} has mode: online but no mutation; online steps run a mutation's statements.")
    return [st.text for st in sqlcheck.split(step.mutation.sql)]


def rehearse(
    conn: psycopg.Connection[Any], project: Project, step: StepSpec, *, settings: SessionSettings, evidence_dir: Path
) -> RehearsalResult:
    """As kernel.rehearse, through gcos.rehearse_online: the transactional equivalent, rolled back."""
    plan = kernel._plan(project, step)
    kernel.require_adopted(conn, step, "rehearse")
    kernel.static_check(step, plan)
    trace = ledger.new_trace_id()
    spec_hash = registry.register_spec(conn, step, trace_id=trace)
    plan_hash = registry.register_plan(conn, plan, trace_id=trace)
    conn.isolation_level = psycopg.IsolationLevel.READ_COMMITTED
    try:
        with conn.transaction():
            set_local_timeouts(conn, settings)
            row = conn.execute(
                "SELECT gcos.rehearse_online(%s, %s, %s, %s)", (spec_hash, plan_hash, trace, Jsonb(pieces(step)))
            ).fetchone()
    except psycopg.Error as exc:
        busy = kernel.commit_lock_busy(conn, exc, settings, step.id)
        if busy is not None:
            raise busy from exc
        with translated():
            raise
    finally:
        conn.isolation_level = None
    assert row is not None
    body: dict[str, Any] = dict(row[0])
    seq = int(body.pop("ledger_seq"))
    body.pop("ledger_hash", None)
    result = kernel.result_of(step, spec_hash, body, seq)
    online = body.get("online") or {}
    result = dataclasses.replace(result, message=f"{result.message} ({online.get('note', 'online')})")
    files = rehearsal_evidence.write_evidence(evidence_dir, result, ledger.read_one(conn, seq), body)
    result = dataclasses.replace(result, evidence=files)
    error = kernel.OUTCOME_ERRORS.get(result.outcome)
    if error is not None:
        raise error(result.message, details=result)
    return result


def _call(conn: psycopg.Connection[Any], settings: SessionSettings, query: str, args: tuple[Any, ...]) -> Any:
    """One kernel call in its own transaction (READ COMMITTED), its jsonb result."""
    conn.isolation_level = psycopg.IsolationLevel.READ_COMMITTED
    try:
        with translated(), conn.transaction():
            set_local_timeouts(conn, settings)
            row = conn.execute(query, args).fetchone()
    finally:
        conn.isolation_level = None
    assert row is not None
    return row[0]


def _ticketed(conn: psycopg.Connection[Any], settings: SessionSettings, run_id: str, statement: str) -> Any:
    """Send the ticketed statement top-level, verbatim, then report back (the rights end either way)."""
    error: str | None = None
    sqlstate: str | None = None
    try:
        conn.execute(statement.encode(), prepare=False)  # bytes: sent as written, no placeholder parsing
    except psycopg.Error as exc:
        error, sqlstate = (str(exc).strip() or type(exc).__name__).splitlines()[0], exc.sqlstate
    except BaseException:
        if not conn.closed and not conn.broken:
            _call(conn, settings, "SELECT gcos.online_done(%s, %s)", (run_id, "interrupted by the operator"))
        raise
    return _call(conn, settings, "SELECT gcos.online_done(%s, %s, %s)", (run_id, error, sqlstate))


def commit(
    target: Target, project: Project, step: StepSpec, *, settings: SessionSettings, break_glass: bool = False
) -> CommitResult:
    """Open the run (gates), run each statement as the kernel says, finish (success, validity, record)."""
    plan = kernel._plan(project, step)
    kernel.static_check(step, plan)
    with connect(target, settings) as conn:
        require_installed(conn)
        kernel.require_adopted(conn, step, "commit")
        trace = ledger.new_trace_id()
        spec_hash = registry.register_spec(conn, step, trace_id=trace)
        plan_hash = registry.register_plan(conn, plan, trace_id=trace)
        run_id = kernel.derive_run_id(conn, spec_hash, plan_hash, "commit")
        base = {"action": "commit", "step": step.id, "ref": step.ref, "spec_hash": step.hash, "run_id": run_id}
        args = (spec_hash, plan_hash, run_id, trace, Jsonb(pieces(step)), break_glass)
        body = dict(_call(conn, settings, "SELECT gcos.online_begin(%s, %s, %s, %s, %s, %s)", args))
        while body.get("outcome") == "open":
            step_body = dict(_call(conn, settings, "SELECT gcos.online_next(%s)", (run_id,)))
            if step_body["kind"] == "ticket":
                step_body = dict(_ticketed(conn, settings, run_id, str(step_body["sql"])))
            if step_body["kind"] == "stopped":
                body = step_body
            elif step_body["kind"] == "done":
                body = dict(_call(conn, settings, "SELECT gcos.online_finish(%s)", (run_id,)))
    return kernel._applied(step, base, body)


def sweep(conn: psycopg.Connection[Any]) -> int:
    """End the online windows whose session is gone (rights revoked, run stopped); how many."""
    with translated(), conn.transaction():
        row = conn.execute("SELECT gcos.online_sweep()").fetchone()
    return int(row[0]) if row else 0


__all__ = ["GcosError", "commit", "pieces", "rehearse", "sweep"]
