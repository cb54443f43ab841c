"""Batched steps: a keyset backfill in many short transactions, gated like any commit, resumable after a kill.

Seed 002 step 9 ("run gov_backfill_sweep incrementally/resumably over birth_registry (keyset on id,
idempotency key collection_name:entity_code) ... 5s statement limit ... Birth untouched ... cursor
advances") and issue 6 item 3. A step with ``mode: batched`` is applied in three phases, on one connection
that holds a session advisory lock for the step (a second runner waits lock_timeout, then exit 8):

1. **Start** (one transaction, READ COMMITTED, like apply.py's gate phase): the database's commit lock → the
   approval rows locked FOR SHARE → the schema fingerprint, re-verify and the plan's global stops, read now →
   the seven gates, decided by the database on that world (``gates.evaluate``; on resume adjusted by the run
   rules below). Refused: nothing runs, a ``commit_refused`` record, exit 3 (exit 6 when the first reason is
   re-verify). Allowed: the spec's mutation (which marks the sweep started), the ``policy_decision`` record
   and a ``batch_started`` record {run_id, cursor start, batch size, the fingerprint before the run, the
   rehearsal relied on}, and the gates once more by the database clock, then COMMIT.
2. **Batches**: keyset ranges (after, upto] of ``batch.table`` ordered by ``batch.key``, at most ``size`` keys
   each. Every batch is its own short transaction with ``statement_timeout`` = 5 s (the seed's statement
   limit) and the session's lock_timeout: the approvals are locked FOR SHARE and gates 5 and 6 re-checked (a
   revocation waits for at most one batch, and the next one sees it: exit 3, the batches before it stay),
   the batch SQL runs with ``%(after)s``, ``%(upto)s`` and ``%(run_id)s``, its row counters are read before and
   after it in the same transaction (a write to ``batch.table`` stops the run: exit 4), and the cursor row
   of ``gov_worker_cursor`` (``batch.cursor``) advances to ``upto`` - compare-and-set on the watermark it had
   - IN THE SAME transaction. A killed run therefore resumes exactly after its last committed batch; the
   spec's ON CONFLICT DO NOTHING on its idempotency keys is a second guard, never the first.
3. **Close** (one transaction): the commit lock, gates 5 and 6 again, the step's and plan's stop conditions
   and the success evidence (as apply.py does), gates 5 and 6 by the clock once more. Pass: the ``commit``
   record (same payload keys as apply.py's, outcome ``applied``, so ``state.py`` projects the step as
   committed), with ``fingerprint_before`` = the fingerprint taken when the run started. Fail: a ``stop``
   record and exit 4; the rows already written stay (they are idempotent, carry the run id, and the rollback
   evidence removes them by run).

**Resume.** A run whose ``batch_started`` record has no later applied ``commit`` record of the step is open;
the next ``apply_batched`` of the step resumes it (same run id, from the cursor's watermark) instead of
starting a new one. It is gated again, in its own start transaction, with the full set of gates - but two
of them describe the world before the run, which the run itself has since moved, so on resume:

* gate 1 also requires the spec hash and plan hash the run started with (a run is finished by the spec
  that started it; an edited spec is refused: restore it, or roll the partial run back by its run id);
* gate 3 (re-verify) must hold now AND no stop condition of the step or plan may hold on the partly
  applied world (the run's invariants: Birth unwritten, high-risk verdicts unknown, cursor present);
* gate 4 (rehearsal) holds if it holds as for a commit, or if the rehearsal that opened the run passed and
  the schema fingerprint is still the one the run started on (a rehearsal run during an open run cannot
  pass: its rollback evidence would also remove the run's rows);
* gates 2, 5, 6 and 7 are evaluated exactly as for a commit: approvals unexpired, unrevoked, not self;
  decisions in force; dependencies committed; global stops clear; not already committed.

The mutation runs again (step 9's only marks the sweep running, idempotently), and a ``batch_resumed``
record {run_id, of the batch_started seq, resumed_from} joins the ledger with the new policy decision. The
commit record then carries the run's ``fingerprint_before`` from ``batch_started`` (so a rollback is proven
against the world before the run), ``footprint.rows_net`` (net rows per watched table over the whole run)
and ``footprint.row_deltas`` (inserted/updated/deleted as counted in this process's transactions; a killed
process's counters die with it).

Only integer keys are supported (``gov_worker_cursor.watermark_kind = 'int'``, the watermark stored as text).
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import errors as pgerrors
from psycopg import sql

from gcos import approvals, execute, fingerprint, gates, history, kernel, ledger, sqlcheck
from gcos.apply import read_world_now, set_local_timeouts, take_commit_lock
from gcos.checks import CheckResult, evaluate_all
from gcos.domain import Kind, Outcome
from gcos.errors import DatabaseUnavailable, GateRefused, GcosError, ReverifyMismatch, SpecError, StopHeld
from gcos.install import require_installed
from gcos.spec import Batch, PlanSpec, Project, StepSpec
from gcos.target import SessionSettings, Target, connect

FORMAT_VERSION = 1
BATCH_STATEMENT_LIMIT = "5s"  # seed 002 step 9: "non-resumable/blanket full scan that times out (5s statement limit)"
BATCH_STATEMENT_LIMIT_MS = 5000
CURSOR_TABLE = "gov_worker_cursor"  # SB-13's cursor table: (worker_name, source) -> text watermark
STARTED, RESUMED = Kind.BATCH_STARTED, Kind.BATCH_RESUMED
APPLIED, RESUMED_APPLIED = Outcome.APPLIED, Outcome.RESUMED_APPLIED
_STOP_ON_RESUME = "stop condition"


@dataclass(frozen=True)
class BatchProgress:
    """Where a batched run stands, after each committed batch (and once before the first)."""

    done_rows: int  # rows of batch.table at or below the cursor (including a resumed run's earlier batches)
    total_rows: int  # rows of batch.table when this process started
    batches: int  # batches committed by this process
    last_key: int | None  # the cursor's watermark
    rate_rows_s: int  # rows of batch.table per second over this process's batches
    eta_s: int | None  # seconds left at that rate (None before the first batch)


@dataclass(frozen=True)
class BatchedResult:
    step: str
    ref: str
    spec_hash: str
    run_id: str
    outcome: str  # applied | resumed_applied | stopped | refused
    message: str
    batches: int = 0  # batches committed by this process
    rows_seen: int = 0  # rows of batch.table those batches covered
    rows_written: int = 0  # rows the batch statements inserted (their row count)
    resumed_from: int | None = None  # the watermark a resumed run continued after
    max_batch_ms: int = 0  # the slowest batch transaction, wall clock, COMMIT included
    ledger_seq: int | None = None  # the commit record (or the refusal / stop record)
    stops: tuple[execute.StopResult, ...] = ()
    success: tuple[CheckResult, ...] = ()
    decision: gates.PolicyDecisionRecord | None = None
    row_deltas: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.outcome in (APPLIED, RESUMED_APPLIED)


class _Halt(Exception):
    """Ends the run: the ledger kind to record, its payload, the sentence and the error to raise."""

    def __init__(self, kind: str, message: str, error: type[GcosError], payload: dict[str, Any]) -> None:
        super().__init__(message)
        self.kind, self.message, self.error, self.payload = kind, message, error, payload


@dataclass
class _Run:
    """What the phases share."""

    step: StepSpec
    plan: PlanSpec | None
    project: Project
    settings: SessionSettings
    trace_id: str
    run_id: str = ""
    size: int = 0
    resumed_of: ledger.LedgerEntry | None = None  # the batch_started record of the run being resumed
    started_seq: int | None = None  # the batch_started record this process wrote
    start_fp: dict[str, Any] = field(default_factory=dict)  # fingerprint summary before the run
    start_relations: tuple[str, ...] = ()
    watermark: int | None = None
    started_from: int | None = None  # the watermark this process started from
    decision: gates.PolicyDecisionRecord | None = None
    decision_seq: int = 0
    counters: dict[int, str] = field(default_factory=dict)  # relid -> name: batch.table and the batch's targets
    source_oid: int = 0
    deltas: dict[str, dict[str, int]] = field(default_factory=dict)
    batches: int = 0
    rows_seen: int = 0
    rows_written: int = 0
    max_batch_ms: int = 0
    break_glass: bool = False  # never on this client path (only the kernel's records can say true)

    def base(self) -> dict[str, Any]:
        return {"step": self.step.id, "ref": self.step.ref, "spec_hash": self.step.hash, "run_id": self.run_id}

    def result(self, outcome: str, message: str, **extra: Any) -> BatchedResult:
        return BatchedResult(
            **self.base(),
            outcome=outcome,
            message=message,
            batches=self.batches,
            rows_seen=self.rows_seen,
            rows_written=self.rows_written,
            resumed_from=self.started_from if self.resumed_of is not None else None,
            max_batch_ms=self.max_batch_ms,
            decision=self.decision,
            row_deltas={k: dict(v) for k, v in self.deltas.items()},
            **extra,
        )


# --------------------------------------------------------------------------- the entry point


def apply_batched(
    target: Target,
    project: Project,
    step: StepSpec,
    *,
    settings: SessionSettings,
    progress: Callable[[BatchProgress], None] | None = None,
    after_batch: Callable[[int], None] | None = None,
    batch_size: int | None = None,
) -> BatchedResult:
    """Commit a batched step: gate, start (or resume) its run, apply it batch by batch, close it.

    Where the kernel runs (schema public adopted) the kernel commits batched steps (gcos/kernel_batched.py);
    this client path refuses there.

    `progress` is called before the first batch and after each committed one; `after_batch(n)` (a test
    hook) after batch n of this process committed. `batch_size` overrides the spec's ``batch.size``.
    Raises GateRefused (3) / ReverifyMismatch (6) when a gate refuses, StopHeld (4) when a stop condition
    holds or success evidence fails (committed batches stay, idempotent), DatabaseUnavailable (8) on a lock
    timeout or a lost connection (run again: the run resumes after its last committed batch). The error's
    ``details`` is the :class:`BatchedResult`."""
    if step.mode != "batched" or step.batch is None:
        raise SpecError(f"{step.id} is not a batched step (mode {step.mode}); commit it with `gcos commit`.")
    size = step.batch.size if batch_size is None else batch_size
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise SpecError(f"batch size must be a positive integer, not {size!r}.")
    plan = project.plan_of(step.id)
    execute.static_check(step, plan)
    run = _Run(step, plan, project, settings, ledger.new_trace_id(), size=size)
    conn = connect(target, settings)
    try:
        require_installed(conn)
        _not_adopted(conn, step)
        _lock_step(conn, run)
        gates.register(conn, step, plan)  # the database judges registered documents only
        try:
            _start(conn, run)
            _batches(conn, run, progress, after_batch)
            return _close(conn, run)
        except _Halt as halt:
            raise _record_halt(conn, run, halt) from None
        except pgerrors.LockNotAvailable as exc:
            message = (
                f"{step.id} could not get a lock within lock_timeout {settings.lock_timeout} "
                f"({_first_line(exc)}){_kept(run)}; retry when the lock holder is done, the run resumes."
            )
            stop = _Halt("stop", message, DatabaseUnavailable, {"outcome": "lock_timeout"})
            raise _record_halt(conn, run, stop) from exc
        except psycopg.OperationalError as exc:
            if not conn.broken:  # the server answered with an error: that transaction was rolled back
                message = (
                    f"{step.id} failed in the database ({_first_line(exc)}){_kept(run)}; retry: the run resumes "
                    "after its last committed batch."
                )
                stop = _Halt("stop", message, DatabaseUnavailable, {"outcome": "database_error"})
                raise _record_halt(conn, run, stop) from exc
            message = (
                f"the connection to the database was lost during {step.id} ({_first_line(exc)}){_kept(run)}; "
                f"run `gcos status {step.id}`, then commit it again: an unfinished run resumes after its last "
                "committed batch, a committed one is never re-applied."
            )
            raise DatabaseUnavailable(message, details=run.result("stopped", message)) from exc
    finally:
        conn.close()


def _not_adopted(conn: psycopg.Connection[Any], step: StepSpec) -> None:
    """Where schema public is adopted only the kernel runs a step's batches (gcos/sql/013_kernel_batched.sql)."""
    if kernel.adopted(conn):
        raise GateRefused(
            f"schema public is adopted, so the kernel commits {step.id} in batches: run `gcos commit {step.id}` "
            "(as a named human operator)."
        )


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip() or type(exc).__name__).splitlines()[0]


def _kept(run: _Run) -> str:
    if run.started_seq is None and run.resumed_of is None:
        return "; nothing was applied"
    if run.watermark is None:
        return f"; run {run.run_id} was started (ledger seq {run.started_seq}) and resumes when committed again"
    return f"; run {run.run_id} is committed up to key {run.watermark} and those batches stay"


def _lock_step(conn: psycopg.Connection[Any], run: _Run) -> None:
    """One runner per batched step: a session advisory lock, released when the connection ends (a killed
    process's backend ends with it)."""
    try:
        conn.execute(
            "SELECT pg_catalog.pg_advisory_lock(pg_catalog.hashtextextended(%s, 0))", (f"gcos:batched:{run.step.id}",)
        )
    except pgerrors.LockNotAvailable:
        raise DatabaseUnavailable(
            f"another run of {run.step.id} is in progress and did not end within lock_timeout "
            f"{run.settings.lock_timeout}; wait for it (or for its session to end), then retry."
        ) from None


def _record_halt(conn: psycopg.Connection[Any], run: _Run, halt: _Halt) -> GcosError:
    """Append the refusal or stop (in its own transaction: the failed one was rolled back) and build the error."""
    payload = {"run_id": run.run_id or None, "action": "commit", "mode": "batched", **halt.payload}
    payload.setdefault("reason", halt.message)
    seq: int | None = None
    try:
        entry = ledger.append(
            conn,
            halt.kind,
            execute.ledger_safe(payload),
            step_id=run.step.id,
            spec_hash=run.step.hash,
            trace_id=run.trace_id,
        )
        seq = entry.seq
    except (GcosError, psycopg.Error):
        if not conn.broken:
            raise
    outcome = "refused" if halt.kind == "commit_refused" else "stopped"
    return halt.error(halt.message, details=run.result(outcome, halt.message, ledger_seq=seq))


# --------------------------------------------------------------------------- phase 1: start or resume


def _start(conn: psycopg.Connection[Any], run: _Run) -> None:
    step, plan = run.step, run.plan
    conn.isolation_level = psycopg.IsolationLevel.READ_COMMITTED
    with conn.transaction():
        set_local_timeouts(conn, run.settings)
        take_commit_lock(conn)
        approvals.lock_approvals(conn, step.id, step.decisions)
        run.resumed_of = history.read_now(conn).step(step.id).open_run
        run.run_id = str(run.resumed_of.payload.get("run_id")) if run.resumed_of else uuid.uuid4().hex
        if run.resumed_of is not None:
            run.watermark = run.started_from = _peek_watermark(conn, run)
        now = read_world_now(conn, step, plan)
        before = now.fingerprint
        no_footprint = execute.Footprint((), (), {})
        stops_now: tuple[execute.StopResult, ...] = ()
        if run.resumed_of is not None:
            stops_now = tuple(execute.evaluate_stop(conn, s, no_footprint) for s in step.stop)

        def decide() -> gates.PolicyDecisionRecord:
            measured = now.measured(step)
            decision = gates.evaluate(conn, step, plan, action="commit", measured=measured, trace_id=run.trace_id)
            if run.resumed_of is not None:
                decision = _resume_decision(decision, run, run.resumed_of, before.schema_hash, stops_now)
            return decision

        decision = decide()
        run.decision = decision
        if not decision.allow:
            raise _refusal(run, decision)
        identity = execute.session_identity(conn)
        statements = sqlcheck.split(step.mutation.sql) if step.mutation else []
        try:
            execute.run_statements(conn, step, "mutation", statements, identity)
        except execute.Outcome as stop:
            raise _Halt("stop", stop.message, stop.error, {"outcome": stop.outcome}) from None
        run.watermark = _read_cursor(conn, run)
        run.started_from = run.watermark
        decision_entry = ledger.append(
            conn,
            "policy_decision",
            _decision_payload(decision, run),
            step_id=step.id,
            spec_hash=step.hash,
            trace_id=run.trace_id,
        )
        run.decision_seq = decision_entry.seq
        cursor = {"worker": _batch(run).cursor_worker, "source": _batch(run).cursor_source}
        if run.resumed_of is None:
            run.start_fp = execute.fingerprint_summary(before)
            run.start_relations = tuple(sorted(before.schema.get("relation", {})))
            rehearsal_gate = decision.gate("rehearsal")
            payload: dict[str, Any] = {
                "format_version": FORMAT_VERSION,
                "run_id": run.run_id,
                "plan_id": plan.id if plan else None,
                "plan_hash": plan.hash if plan else None,
                "policy_decision_seq": decision_entry.seq,
                "rehearsal_seq": rehearsal_gate.evidence[0] if rehearsal_gate.evidence else None,
                "batch": {"table": _batch(run).table, "key": _batch(run).key, "size": run.size},
                "cursor": {**cursor, "start": _text(run.watermark)},
                "fingerprint_before": run.start_fp,
                "relations_before": list(run.start_relations),
                "break_glass": run.break_glass,
            }
            kind = STARTED
        else:
            started = run.resumed_of.payload
            run.start_fp = dict(started.get("fingerprint_before") or {})
            run.start_relations = tuple(str(r) for r in started.get("relations_before") or ())
            payload = {
                "format_version": FORMAT_VERSION,
                "run_id": run.run_id,
                "of_seq": run.resumed_of.seq,
                "policy_decision_seq": decision_entry.seq,
                "batch": {"table": _batch(run).table, "key": _batch(run).key, "size": run.size},
                "cursor": {**cursor, "resumed_from": _text(run.watermark)},
                "break_glass": run.break_glass,
            }
            kind = RESUMED
        marker = ledger.append(
            conn, kind, execute.ledger_safe(payload), step_id=step.id, spec_hash=step.hash, trace_id=run.trace_id
        )
        # The last statement before COMMIT: the gates again, by the database clock now (an approval or decision
        # that expired meanwhile refuses the start; the run's own records are no commit to the gates).
        final = decide()
        if not final.allow:
            raise _refusal(run, final, late=True)
    if run.resumed_of is None:
        run.started_seq = marker.seq


def _resume_decision(
    decision: gates.PolicyDecisionRecord,
    run: _Run,
    started: ledger.LedgerEntry,
    schema_now: str,
    stops_now: tuple[execute.StopResult, ...],
) -> gates.PolicyDecisionRecord:
    """The commit gates, adapted to resuming run `started` (see the module docstring)."""
    sid, plan = run.step.id, run.plan
    payload = started.payload
    seq = started.seq
    out: list[gates.GateResult] = []
    for g in decision.gates:
        if g.gate == "spec" and g.allow:
            started_plan = payload.get("plan_hash")
            if started.record.get("spec_hash") != run.step.hash or started_plan != (plan.hash if plan else None):
                g = gates.GateResult(
                    "spec",
                    False,
                    f"run {run.run_id} of {sid} started (ledger seq {seq}) with spec "
                    f"{gates.short(started.record.get('spec_hash'))} under plan {gates.short(started_plan)}, and "
                    f"they are now {gates.short(run.step.hash)} and {gates.short(plan.hash if plan else None)}: "
                    "a run is finished by the spec and plan that started it",
                    f"restore the spec and plan as they were at seq {seq}, then run: gcos commit {sid}",
                    1,
                    command=f"gcos commit {sid}",
                    evidence=(seq,),
                )
        elif g.gate == "reverify" and g.allow:
            held = [s for s in stops_now if s.held]
            if held:
                g = gates.GateResult(
                    "reverify",
                    False,
                    f"{_STOP_ON_RESUME} {held[0].name!r} of {sid} holds on the partly applied run {run.run_id} "
                    f"({held[0].detail})",
                    f"investigate, then roll the run back by its run id; check with: gcos verify {sid}",
                    3,
                    command=f"gcos verify {sid}",
                )
            else:
                g = dataclasses.replace(
                    g, reason=f"{g.reason}; no stop condition of {sid} holds on the partly applied run {run.run_id}"
                )
        elif g.gate == "rehearsal" and not g.allow:
            start_schema = (payload.get("fingerprint_before") or {}).get("schema_hash")
            relied = payload.get("rehearsal_seq")
            if start_schema == schema_now and isinstance(relied, int):
                g = gates.GateResult(
                    "rehearsal",
                    True,
                    f"resuming run {run.run_id}: rehearsal seq {relied} opened it (ledger seq {seq}) and the "
                    f"schema is still the one it started on ({gates.short(schema_now)}); as a commit: {g.reason}",
                    "nothing to do",
                    4,
                    evidence=(relied,),
                )
        out.append(g)
    results = tuple(out)
    return dataclasses.replace(decision, allow=all(r.allow for r in results), gates=results)


def _decision_payload(decision: gates.PolicyDecisionRecord, run: _Run) -> dict[str, Any]:
    body = decision.to_payload()
    body["mode"] = "batched"
    body["run_id"] = run.run_id
    if run.resumed_of is not None:
        body["resume_of_seq"] = run.resumed_of.seq
    return body


def _refusal(run: _Run, decision: gates.PolicyDecisionRecord, *, late: bool = False) -> _Halt:
    """exit 6 when the first reason is re-verify (CONTRACT.md exit codes), 4 when it is a stop condition
    holding on a resumed run's partly applied world, else 3."""
    first = decision.first_failed
    assert first is not None  # only a refused decision is a refusal
    error: type[GcosError] = GateRefused
    if first.gate == "reverify":
        error = StopHeld if first.reason.startswith(_STOP_ON_RESUME) else ReverifyMismatch
    message = decision.refusal_sentence()
    if late:
        message = f"{message} (found at the last check before COMMIT; that transaction was rolled back)"
    if run.resumed_of is not None:
        where = f"up to key {run.watermark}" if run.watermark is not None else "without a batch yet"
        message = f"{message} (run {run.run_id} stays committed {where}; it resumes once every gate holds)"
    payload: dict[str, Any] = {"policy_decision": _decision_payload(decision, run)}
    if late:
        payload["at"] = "before_commit"
    return _Halt("commit_refused", message, error, payload)


def _batch(run: _Run) -> Batch:
    assert run.step.batch is not None
    return run.step.batch


def _text(key: int | None) -> str | None:
    return None if key is None else str(key)


def _peek_watermark(conn: psycopg.Connection[Any], run: _Run) -> int | None:
    """The cursor's watermark as an integer, for messages (None when absent or not an integer)."""
    batch = _batch(run)
    query = sql.SQL("SELECT watermark FROM {} WHERE worker_name = %s AND source = %s").format(
        sql.Identifier(CURSOR_TABLE)
    )
    try:
        with conn.transaction():  # a savepoint: a missing cursor table must not abort the gate transaction
            row = conn.execute(query, (batch.cursor_worker, batch.cursor_source)).fetchone()
    except pgerrors.UndefinedTable:
        return None
    try:
        return int(row[0]) if row and row[0] is not None else None
    except ValueError:
        return None


def _read_cursor(conn: psycopg.Connection[Any], run: _Run) -> int | None:
    """The cursor row (locked until the start commits) and its watermark as an integer key."""
    batch = _batch(run)
    query = sql.SQL(
        "SELECT watermark, watermark_kind, key_column FROM {} WHERE worker_name = %s AND source = %s FOR UPDATE"
    ).format(sql.Identifier(CURSOR_TABLE))
    row = conn.execute(query, (batch.cursor_worker, batch.cursor_source)).fetchone()
    where = f"{CURSOR_TABLE} ({batch.cursor_worker}, {batch.cursor_source})"
    if row is None:
        raise _Halt(
            "stop",
            f"{run.step.id} has no cursor row {where}, so it cannot run resumably; nothing was applied.",
            StopHeld,
            {"outcome": "no_cursor"},
        )
    watermark, kind, key_column = row
    if kind != "int" or key_column != batch.key:
        raise _Halt(
            "stop",
            f"the cursor {where} is keyed on {key_column} ({kind}), not on {batch.key} (int) as the batch is; "
            "nothing was applied.",
            StopHeld,
            {"outcome": "cursor_mismatch"},
        )
    try:
        return None if watermark is None else int(watermark)
    except ValueError:
        raise _Halt(
            "stop",
            f"the cursor {where} holds watermark {watermark!r}, not an integer key; nothing was applied.",
            StopHeld,
            {"outcome": "cursor_mismatch"},
        ) from None


# --------------------------------------------------------------------------- phase 2: the batches


def _set_batch_timeouts(conn: psycopg.Connection[Any], settings: SessionSettings) -> None:
    """One round trip: the seed's statement limit, the session's lock and idle timeouts, a durable COMMIT."""
    conn.execute(
        "SELECT set_config('lock_timeout', %s, true), set_config('statement_timeout', %s, true), "
        "set_config('idle_in_transaction_session_timeout', %s, true), set_config('synchronous_commit', 'on', true)",
        (settings.lock_timeout, BATCH_STATEMENT_LIMIT, settings.idle_in_transaction_session_timeout),
    )


def _prepare_counters(conn: psycopg.Connection[Any], run: _Run, statement: sqlcheck.Statement) -> None:
    """The relations whose row counters each batch reads: its source table and the tables it writes."""
    names = [_batch(run).table, *statement.targets]
    rows = conn.execute(
        "SELECT n, to_regclass(n)::oid::bigint FROM unnest(%s::text[]) AS n WHERE to_regclass(n) IS NOT NULL",
        (names,),
    ).fetchall()
    run.counters = {int(oid): str(name) for name, oid in rows}
    source = conn.execute("SELECT to_regclass(%s)::oid::bigint", (_batch(run).table,)).fetchone()
    if source is None or source[0] is None:
        raise _Halt(
            "stop",
            f"the batch table {_batch(run).table} of {run.step.id} does not exist.",
            StopHeld,
            {"outcome": "no_source"},
        )
    run.source_oid = int(source[0])


def _read_counters(conn: psycopg.Connection[Any], run: _Run) -> dict[int, tuple[int, int, int]]:
    """This transaction's counters (read twice per batch: PostgreSQL 15+ may still add a previous
    transaction's unflushed counts to pg_stat_xact_*, which the difference cancels)."""
    rows = conn.execute(
        "SELECT relid::bigint, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_xact_user_tables "
        "WHERE relid = ANY(%s::oid[])",
        (list(run.counters),),
    ).fetchall()
    return {int(r[0]): (int(r[1]), int(r[2]), int(r[3])) for r in rows}


def _totals(conn: psycopg.Connection[Any], run: _Run) -> tuple[int, int]:
    """Rows of batch.table in all, and at or below the watermark (for progress and ETA)."""
    batch = _batch(run)
    query = sql.SQL("SELECT count(*), count(*) FILTER (WHERE {key} <= %s) FROM {table}").format(
        key=sql.Identifier(batch.key), table=sql.Identifier(*batch.table.split("."))
    )
    row = conn.execute(query, (run.watermark,)).fetchone()
    assert row is not None
    return int(row[0]), int(row[1] or 0)


def _batches(
    conn: psycopg.Connection[Any],
    run: _Run,
    progress: Callable[[BatchProgress], None] | None,
    after_batch: Callable[[int], None] | None,
) -> None:
    step, batch = run.step, _batch(run)
    (statement,) = sqlcheck.check_batch(step)
    _prepare_counters(conn, run, statement)
    total, done = _totals(conn, run)
    bounds = sql.SQL(
        "SELECT count(*), min(k), max(k) FROM (SELECT {key} AS k FROM {table} "
        "WHERE %(after)s::bigint IS NULL OR {key} > %(after)s::bigint ORDER BY {key} LIMIT %(size)s) AS b"
    ).format(key=sql.Identifier(batch.key), table=sql.Identifier(*batch.table.split(".")))
    advance = sql.SQL(
        "UPDATE {} SET watermark = %s, updated_at = now() "
        "WHERE worker_name = %s AND source = %s AND watermark IS NOT DISTINCT FROM %s"
    ).format(sql.Identifier(CURSOR_TABLE))
    began = time.perf_counter()

    def report() -> None:
        if progress is None:
            return
        elapsed = time.perf_counter() - began
        rate = int(run.rows_seen / elapsed) if elapsed > 0 and run.rows_seen else 0
        left = max(total - done, 0)
        eta = int(left / rate) if rate else (0 if left == 0 else None)
        progress(BatchProgress(done, total, run.batches, run.watermark, rate, eta))

    report()
    while True:
        number = run.batches + 1
        t0 = time.perf_counter_ns()
        with conn.transaction():
            _set_batch_timeouts(conn, run.settings)
            _check_authority(conn, run, at=f"batch {number}")
            row = conn.execute(bounds, {"after": run.watermark, "size": run.size}).fetchone()
            assert row is not None
            seen = int(row[0])
            if seen == 0:
                break
            lower = run.watermark if run.watermark is not None else int(row[1]) - 1
            upto = int(row[2])
            identity = execute.session_identity(conn)
            before = _read_counters(conn, run)
            try:
                with execute.statement_errors(step, "batch", statement):
                    written = conn.execute(batch.sql, {"after": lower, "upto": upto, "run_id": run.run_id}).rowcount
                execute.assert_session(conn, step, "batch", statement, identity)
            except execute.Outcome as stop:
                message = (
                    f"batch {number} of {step.id} (keys {lower} < {batch.key} <= {upto}): {stop.message.rstrip('.')}"
                    f"{_kept(run)}; lower the batch size or fix the cause, then commit again to resume."
                )
                detail = {"outcome": stop.outcome, "batch": number, "after": lower, "upto": upto}
                raise _Halt("stop", message, stop.error, detail) from None
            after = _read_counters(conn, run)
            zero = (0, 0, 0)
            delta = {
                oid: (
                    after.get(oid, zero)[0] - before.get(oid, zero)[0],
                    after.get(oid, zero)[1] - before.get(oid, zero)[1],
                    after.get(oid, zero)[2] - before.get(oid, zero)[2],
                )
                for oid in run.counters
            }
            if any(delta.get(run.source_oid, zero)):
                ins, upd, dele = delta[run.source_oid]
                message = (
                    f"batch {number} of {step.id} wrote its source table {batch.table} (+{ins} ~{upd} -{dele}); "
                    f"it was rolled back and the run stopped{_kept(run)} (a backfill never modifies its source)."
                )
                raise _Halt("stop", message, StopHeld, {"outcome": "stopped", "batch": number})
            moved = conn.execute(
                advance, (str(upto), batch.cursor_worker, batch.cursor_source, _text(run.watermark))
            ).rowcount
            if moved != 1:
                message = (
                    f"the cursor {CURSOR_TABLE} ({batch.cursor_worker}, {batch.cursor_source}) is no longer at "
                    f"{run.watermark}: something else moved it; batch {number} was rolled back{_kept(run)}."
                )
                raise _Halt("stop", message, StopHeld, {"outcome": "cursor_moved", "batch": number})
        elapsed_ms = (time.perf_counter_ns() - t0) // 1_000_000
        run.batches = number
        run.rows_seen += seen
        run.rows_written += max(written, 0)
        run.max_batch_ms = max(run.max_batch_ms, elapsed_ms)
        run.watermark = upto
        done += seen
        for oid, (ins, upd, dele) in delta.items():
            if ins or upd or dele:
                acc = run.deltas.setdefault(run.counters[oid], {"inserted": 0, "updated": 0, "deleted": 0})
                acc["inserted"] += ins
                acc["updated"] += upd
                acc["deleted"] += dele
        if after_batch is not None:
            after_batch(number)
        report()


def _check_authority(conn: psycopg.Connection[Any], run: _Run, *, at: str) -> None:
    """Gates 5 and 6 again, as the database decides them now, with the approval rows locked FOR SHARE until
    this transaction ends (the other gates describe the world before the run, which the run moves)."""
    approvals.lock_approvals(conn, run.step.id, run.step.decisions)
    measured = gates.world()  # only gates 5 and 6 are read, and they need nothing measured
    decision = gates.evaluate(conn, run.step, run.plan, action="commit", measured=measured, trace_id=run.trace_id)
    results = (decision.gate("approvals"), decision.gate("decisions"))
    failed = [g for g in results if not g.allow]
    if failed:
        message = (
            f"{failed[0].reason}; {failed[0].remedy} (found at {at} of run {run.run_id}){_kept(run)}; "
            "it resumes once authority is in force again"
        )
        raise _Halt(
            "commit_refused",
            message[:1].upper() + message[1:],
            GateRefused,
            {"at": at, "gates": [g.to_payload() for g in results], "refusal": message},
        )


# --------------------------------------------------------------------------- phase 3: close


def _close(conn: psycopg.Connection[Any], run: _Run) -> BatchedResult:
    step, plan = run.step, run.plan
    with conn.transaction():
        set_local_timeouts(conn, run.settings)
        take_commit_lock(conn)
        _check_authority(conn, run, at="close")
        after = fingerprint.take(conn, watch=step.watch)
        relations_now = set(after.schema.get("relation", {}))
        tables_now = execute.table_identities(conn)
        footprint = execute.Footprint(
            new_tables=tuple(sorted((relations_now - set(run.start_relations)) & tables_now)),
            dropped_tables=tuple(sorted(set(run.start_relations) - relations_now)),
            row_deltas={k: dict(v) for k, v in run.deltas.items()},
        )
        stops = tuple(execute.evaluate_stop(conn, s, footprint) for s in (*step.stop, *execute.plan_stops(plan)))
        success = tuple(evaluate_all(conn, step.success, section="success check"))
        held = [s for s in stops if s.held]
        bad = [c for c in success if not c.ok]
        if held or bad:
            what = (
                f"stop condition {held[0].name!r} of {step.id} held ({held[0].detail})"
                if held
                else f"success check {bad[0].name!r} of {step.id} expected {bad[0].expected}, got {bad[0].shown_actual}"
            )
            message = (
                f"{what}; {step.id} was not committed. The rows run {run.run_id} wrote stay (idempotent, marked "
                f"with the run id; the cursor is at {run.watermark}): the step's rollback evidence removes them by "
                "run, or fix the cause and commit again to close the run."
            )
            detail = {
                "outcome": "stopped" if held else "success_failed",
                "stops": [{"name": s.name, "held": s.held, "detail": s.detail} for s in stops],
                "success": [{"name": c.name, "expected": c.expected, "actual": c.actual, "ok": c.ok} for c in success],
            }
            raise _Halt("stop", message, StopHeld, detail)
        after_summary = execute.fingerprint_summary(after)
        batch = _batch(run)
        record: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "run_id": run.run_id,
            "outcome": APPLIED,
            "plan_id": plan.id if plan else None,
            "plan_hash": plan.hash if plan else None,
            "fingerprint_before": run.start_fp,
            "fingerprint_after": after_summary,
            "policy_decision_seq": run.decision_seq,
            "footprint": {
                "new_tables": list(footprint.new_tables),
                "row_deltas": footprint.row_deltas,
                "rows_net": _rows_net(run.start_fp, after_summary),
            },
            "mode": "batched",
            "batch": {
                "table": batch.table,
                "key": batch.key,
                "size": run.size,
                "batches": run.batches,
                "rows_seen": run.rows_seen,
                "rows_written": run.rows_written,
                "max_batch_ms": run.max_batch_ms,
                "statement_limit_ms": BATCH_STATEMENT_LIMIT_MS,
            },
            "cursor": {
                "worker": batch.cursor_worker,
                "source": batch.cursor_source,
                "end": _text(run.watermark),
                "resumed_from": _text(run.started_from) if run.resumed_of is not None else None,
            },
            "batch_started_seq": run.resumed_of.seq if run.resumed_of is not None else run.started_seq,
            "resumed": run.resumed_of is not None,
            "break_glass": run.break_glass,
        }
        # The last check before the commit record and COMMIT: an approval or decision that expired meanwhile
        # refuses the commit (after the commit record, the gates would read it as this step's commit).
        _check_authority(conn, run, at="the last check before COMMIT")
        entry = ledger.append(
            conn, "commit", execute.ledger_safe(record), step_id=step.id, spec_hash=step.hash, trace_id=run.trace_id
        )
    resumed = run.resumed_of is not None
    how = f"resumed after key {run.started_from}, " if resumed else ""
    message = (
        f"{step.id} committed in batches: {how}{run.batches} batch(es) of up to {run.size} keys, "
        f"{run.rows_written} row(s) written, the slowest {run.max_batch_ms} ms (limit {BATCH_STATEMENT_LIMIT}); "
        f"ledger seq {entry.seq}, run {run.run_id}."
    )
    outcome = RESUMED_APPLIED if resumed else APPLIED
    return run.result(outcome, message, ledger_seq=entry.seq, stops=stops, success=success)


def _rows_net(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    """Net row-count change per watched table over the whole run (every process of it)."""
    old, new = before.get("tables") or {}, after.get("tables") or {}
    out: dict[str, int] = {}
    for name in sorted(set(old) | set(new)):
        change = int((new.get(name) or {}).get("rows") or 0) - int((old.get(name) or {}).get("rows") or 0)
        if change:
            out[name] = change
    return out
