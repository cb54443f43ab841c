"""The execution core shared by rehearse and commit: a step's SQL run one statement at a time in the
caller's transaction, with proof after each that the transaction is open and the session identity
unchanged; stop conditions, footprint, blockers; the session residue a step can leave (settings changed
other than by SET LOCAL, session advisory locks); and the small helpers records share.

Nothing here opens, commits or rolls back a transaction, writes the ledger or chooses an outcome's
wording beyond the step's own failure: rehearsal.py, apply.py and batched.py orchestrate.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from gcos import fingerprint, sqlcheck
from gcos.checks import evaluate, plain_value
from gcos.errors import Condition, GcosError, ResidueFound, StopHeld, condition_of
from gcos.spec import Check, Expectation, PlanSpec, StepSpec, StopCondition
from gcos.target import SessionSettings

BATCHES_REHEARSED = 2  # a batched step rehearses its mutation and its first batches
SEQUENCE_RESIDUE = "sequence_state"
# Settings that belong to one transaction (BEGIN ISOLATION LEVEL ...) and end with it.
PER_TRANSACTION = frozenset({"transaction_isolation", "transaction_read_only", "transaction_deferrable"})
# This backend's advisory locks as the key the caller passed: one bigint, or two integers (oids hold them
# unsigned, so values from 2^31 up are negative integers) — then the lock mode.
_ADVISORY_LOCKS = (
    "SELECT CASE l.objsubid WHEN 1 THEN ((l.classid::bigint << 32) | l.objid::bigint)::text "
    "ELSE (l.classid::bigint - (l.classid::bigint >> 31) * 4294967296)::text || ',' "
    "|| (l.objid::bigint - (l.objid::bigint >> 31) * 4294967296)::text END || ' (' || l.mode || ')' "
    "FROM pg_catalog.pg_locks AS l WHERE l.locktype = 'advisory' AND l.pid = pg_catalog.pg_backend_pid()"
)


@dataclass(frozen=True)
class StopResult:
    """One stop condition judged inside the transaction: held means the step must not stand."""

    name: str
    kind: str
    held: bool
    detail: str


@dataclass(frozen=True)
class Footprint:
    """What the step changed inside its transaction: tables created and dropped, rows per table."""

    new_tables: tuple[str, ...]
    dropped_tables: tuple[str, ...]
    row_deltas: dict[str, dict[str, int]]  # table -> inserted/updated/deleted inside the transaction


@dataclass(frozen=True)
class SessionState:
    """What outlives a transaction in a session: advisory locks (key and mode) and session-level settings."""

    advisory_locks: frozenset[str]
    settings: dict[str, str]


class Outcome(Exception):
    """Ends the transaction early with a recorded outcome (the transaction always rolls back)."""

    def __init__(self, outcome: str, message: str, error: type[GcosError]) -> None:
        super().__init__(message)
        self.outcome, self.message, self.error = outcome, message, error


# --------------------------------------------------------------------------- static checks


def static_check(step: StepSpec, plan: PlanSpec | None) -> None:
    """Refuse, before anything runs, SQL the spec does not allow (exit 2, the statement quoted)."""
    forbid_columns = [n for s in (*step.stop, *plan_stops(plan)) if s.kind == "forbid_columns" for n in s.names]
    forbid_objects = [n for s in (*step.stop, *plan_stops(plan)) if s.kind == "forbid_objects" for n in s.names]
    if step.mutation:
        sqlcheck.check_mutation(step, extra_forbid_columns=forbid_columns, extra_forbid_objects=forbid_objects)
    sqlcheck.check_rollback(step)
    if step.batch:
        sqlcheck.check_batch(step)
    for section, checks in (("re-verify", step.reverify), ("success", step.success)):
        for check in checks:
            sqlcheck.check_query(check.sql, label=f"step {step.id} {section} check {check.name!r}")
    for stop in (*step.stop, *plan_stops(plan)):
        if stop.sql:
            sqlcheck.check_query(stop.sql, label=f"step {step.id} stop condition {stop.name!r}")


def plan_stops(plan: PlanSpec | None) -> tuple[StopCondition, ...]:
    return plan.global_stop if plan else ()


# --------------------------------------------------------------------------- stop conditions


def _holds(conn: psycopg.Connection[Any], query: str, params: Sequence[Any] = ()) -> Any:
    with conn.transaction():
        row = conn.execute(query, params).fetchone()
    return plain_value(row[0]) if row else None


_USER_SCHEMAS = "n.nspname NOT IN ('information_schema', 'gcos') AND n.nspname !~ '^pg_'"


def evaluate_stop(conn: psycopg.Connection[Any], stop: StopCondition, footprint: Footprint) -> StopResult:
    """Whether one stop condition holds inside the open transaction."""
    if stop.kind == "sql":
        assert stop.sql is not None
        result = evaluate(conn, Check(stop.name, stop.sql, Expectation("eq", True)), section="stop condition")
        detail = f"error: {result.error}" if result.error else f"returned {result.shown_actual}"
        return StopResult(stop.name, stop.kind, result.ok or bool(result.error), detail)
    if stop.kind == "forbid_columns":
        found = _holds(
            conn,
            "SELECT string_agg(DISTINCT c.relname || '.' || a.attname, ', ') FROM pg_attribute a "
            "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            f"WHERE a.attnum > 0 AND NOT a.attisdropped AND {_USER_SCHEMAS} AND a.attname = ANY(%s)",
            (list(stop.names),),
        )
        return StopResult(stop.name, stop.kind, bool(found), f"found {found}" if found else "none present")
    if stop.kind == "forbid_objects":
        found = _holds(
            conn,
            "SELECT string_agg(DISTINCT name, ', ') FROM ("
            " SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            f"  WHERE {_USER_SCHEMAS} AND c.relname = ANY(%s)"
            " UNION ALL SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
            f"  WHERE {_USER_SCHEMAS} AND p.proname = ANY(%s)"
            " UNION ALL SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace"
            f"  WHERE {_USER_SCHEMAS} AND t.typname = ANY(%s) AND t.typtype <> 'c'"
            " UNION ALL SELECT tg.tgname FROM pg_trigger tg WHERE NOT tg.tgisinternal AND tg.tgname = ANY(%s)"
            ") AS objects",
            [list(stop.names)] * 4,
        )
        return StopResult(stop.name, stop.kind, bool(found), f"found {found}" if found else "none present")
    limit = stop.limit if stop.limit is not None else 0
    count = len(footprint.new_tables)
    return StopResult(stop.name, stop.kind, count > limit, f"{count} new table(s), limit {limit}")


def footprint_of(
    conn: psycopg.Connection[Any], entry: fingerprint.Fingerprint, inside: fingerprint.Fingerprint
) -> Footprint:
    """New and dropped tables (from the fingerprints) and row deltas per table inside this transaction."""
    before = set(entry.schema.get("relation", {}))
    after = set(inside.schema.get("relation", {}))
    tables_now = table_identities(conn)
    with conn.transaction():
        rows = conn.execute(
            "SELECT quote_ident(schemaname) || '.' || quote_ident(relname), n_tup_ins, n_tup_upd, n_tup_del "
            "FROM pg_stat_xact_user_tables "
            "WHERE (n_tup_ins + n_tup_upd + n_tup_del) > 0 AND schemaname <> 'gcos' ORDER BY 1"
        ).fetchall()
    deltas = {str(r[0]): {"inserted": int(r[1]), "updated": int(r[2]), "deleted": int(r[3])} for r in rows}
    return Footprint(
        new_tables=tuple(sorted((after - before) & tables_now)),
        dropped_tables=tuple(sorted(before - after)),
        row_deltas=deltas,
    )


def table_identities(conn: psycopg.Connection[Any]) -> set[str]:
    with conn.transaction():
        rows = conn.execute(
            "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            f"WHERE c.relkind IN ('r', 'p') AND {_USER_SCHEMAS}"
        ).fetchall()
    return {str(r[0]) for r in rows}


# --------------------------------------------------------------------------- running SQL


def set_local_timeouts(conn: psycopg.Connection[Any], settings: SessionSettings) -> None:
    """The session's timeouts for this transaction only (set_config(..., true) is SET LOCAL)."""
    for name, value in (
        ("lock_timeout", settings.lock_timeout),
        ("statement_timeout", settings.statement_timeout),
        ("idle_in_transaction_session_timeout", settings.idle_in_transaction_session_timeout),
    ):
        conn.execute("SELECT set_config(%s, %s, true)", (name, value))


@contextmanager
def statement_errors(step: StepSpec, section: str, statement: sqlcheck.Statement) -> Iterator[None]:
    """The step's own SQL failing (or hitting statement_timeout) is the step's outcome (exit 4, rolled
    back), not a database error; a lock timeout or a lost connection leaves unchanged for the caller."""
    quoted = " ".join(statement.text.split())[:120]
    try:
        yield
    except psycopg.Error as exc:
        if condition_of(exc) is Condition.TIMEOUT:
            raise Outcome(
                "statement_timeout",
                f'{section} of {step.id} line {statement.line} hit statement_timeout and was rolled back: "{quoted}"; '
                "make the step incremental (seed 002 step 9: 5 s statement limit).",
                StopHeld,
            ) from exc
        if isinstance(exc, psycopg.OperationalError):
            raise  # the database's trouble (a lock, a lost connection), not the step's: the caller's to word
        said = (exc.diag.message_primary if isinstance(exc, psycopg.DatabaseError) else None) or str(exc)
        raise Outcome(
            f"{section}_failed",
            f"{section} of {step.id} failed at line {statement.line} and was rolled back: {said.strip()} "
            f'("{quoted}"); fix the spec and rehearse again.',
            StopHeld,
        ) from exc


def run_statements(
    conn: psycopg.Connection[Any],
    step: StepSpec,
    section: str,
    statements: Sequence[sqlcheck.Statement],
    identity: tuple[Any, ...],
) -> None:
    """Run each statement alone, then prove the transaction is still open and the role unchanged."""
    for statement in statements:
        with statement_errors(step, section, statement):
            conn.execute(statement.text)  # spec SQL, refused by sqlcheck unless allowed
        assert_session(conn, step, section, statement, identity)


def assert_session(
    conn: psycopg.Connection[Any],
    step: StepSpec,
    section: str,
    statement: sqlcheck.Statement,
    identity: tuple[Any, ...],
) -> None:
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.INTRANS:
        raise Outcome(
            "transaction_lost",
            f"{section} of {step.id} line {statement.line} ended the transaction; refused and rolled back.",
            StopHeld,
        )
    now = session_identity(conn)
    if now != identity:
        raise Outcome(
            "identity_changed",
            f"{section} of {step.id} line {statement.line} changed the session "
            f"identity or timeouts ({identity} -> {now}); refused and rolled back.",
            StopHeld,
        )


def session_identity(conn: psycopg.Connection[Any]) -> tuple[Any, ...]:
    row = conn.execute(
        "SELECT current_user, session_user, current_setting('lock_timeout'), current_setting('statement_timeout'), "
        "current_setting('search_path')"
    ).fetchone()
    return tuple(row) if row else ()


def run_batches(conn: psycopg.Connection[Any], step: StepSpec, run_id: str, identity: tuple[Any, ...]) -> int:
    """Rehearse the first batches of a batched step (keyset ranges over its source table)."""
    assert step.batch is not None
    batch = step.batch
    statement = sqlcheck.Statement(batch.sql, "insert", (), 1)
    after: Any = None
    done = 0
    for _ in range(BATCHES_REHEARSED):
        bounds = conn.execute(
            sql.SQL(
                "SELECT min(k), max(k) FROM (SELECT {key} AS k FROM {table} WHERE %s::bigint IS NULL OR {key} > "
                "%s ORDER BY {key} LIMIT %s) AS b"
            ).format(key=sql.Identifier(batch.key), table=sql.Identifier(*batch.table.split("."))),
            (after, after, batch.size),
        ).fetchone()
        if bounds is None or bounds[0] is None:
            break
        lower = after if after is not None else bounds[0] - 1
        with statement_errors(step, "batch", statement):
            conn.execute(batch.sql, {"after": lower, "upto": bounds[1], "run_id": run_id})
        assert_session(conn, step, "batch", statement, identity)
        after = bounds[1]
        done += 1
    return done


# --------------------------------------------------------------------------- session residue


def session_state(conn: psycopg.Connection[Any]) -> SessionState:
    """This backend's advisory locks and the settings whose source is the session (SET, set_config)."""
    locks = conn.execute(_ADVISORY_LOCKS).fetchall()
    settings = conn.execute("SELECT name, setting FROM pg_catalog.pg_settings WHERE source = 'session'").fetchall()
    return SessionState(frozenset(str(r[0]) for r in locks), {str(r[0]): str(r[1]) for r in settings})


def changed_settings(before: dict[str, str], after: dict[str, str], ignore: frozenset[str]) -> list[str]:
    """Each setting whose session value differs, as 'session setting NAME BEFORE -> AFTER'."""
    names = sorted((set(before) | set(after)) - ignore - PER_TRANSACTION)
    return [
        f"session setting {n} {before.get(n, '(default)')} -> {after.get(n, '(default)')}"
        for n in names
        if before.get(n) != after.get(n)
    ]


def set_locally(statements: Sequence[sqlcheck.Statement]) -> frozenset[str]:
    """The settings the step itself changes with a top-level SET LOCAL (sqlcheck allows nothing else)."""
    return frozenset(t for s in statements if s.kind == "set_local" for t in s.targets)


def check_settings(
    conn: psycopg.Connection[Any], step: StepSpec, section: str, baseline: dict[str, str], local: frozenset[str]
) -> None:
    """Inside the transaction: a setting changed other than by a top-level SET LOCAL is residue (exit 5).

    PostgreSQL cannot tell SET from SET LOCAL before the transaction ends and ROLLBACK undoes both, so the
    rehearsal judges here what the commit would keep: a function the step created can call
    set_config(..., false) or SET where the static check cannot see it."""
    changed = changed_settings(baseline, session_state(conn).settings, local)
    if changed:
        raise Outcome(
            "residue",
            f"the {section} of {step.id} changed {'; '.join(changed)}, not by a top-level SET LOCAL: a session-level "
            "change would outlive the commit; remove the SET or set_config(..., false) (also in functions the "
            "step creates) and rehearse again.",
            ResidueFound,
        )


def clear_session_residue(conn: psycopg.Connection[Any], before: SessionState) -> tuple[str, ...]:
    """After the transaction: name the advisory locks and settings the step left, and undo them, so nothing
    leaks into the next command on this connection. New locks are released with pg_advisory_unlock_all(),
    which drops every session advisory lock of the connection (gcos holds none between commands)."""
    after = session_state(conn)
    locks = sorted(after.advisory_locks - before.advisory_locks)
    settings = changed_settings(before.settings, after.settings, frozenset())
    if locks:
        conn.execute("SELECT pg_catalog.pg_advisory_unlock_all()")
    for name in sorted((set(before.settings) | set(after.settings)) - PER_TRANSACTION):
        if name in before.settings and before.settings[name] != after.settings.get(name):
            conn.execute("SELECT pg_catalog.set_config(%s, %s, false)", (name, before.settings[name]))
        elif name not in before.settings:
            conn.execute(sql.SQL("RESET {}").format(sql.Identifier(*name.split("."))))
    return (*(f"session advisory lock {key} still held" for key in locks), *settings)


def with_session_residue(
    step: StepSpec, left: Sequence[str], outcome: str, message: str, error: type[GcosError] | None
) -> tuple[str, str, type[GcosError] | None]:
    """The outcome once session residue is known: residue (exit 5) naming it, whatever happened before."""
    if not left:
        return outcome, message, error
    kept = f" (after: {message})" if message else ""
    return (
        "residue",
        f"rehearsing {step.id} left {'; '.join(left)} in the session after ROLLBACK{kept}; gcos released it — "
        "use pg_advisory_xact_lock and SET LOCAL in the step (and in functions it creates), then rehearse again.",
        ResidueFound,
    )


# --------------------------------------------------------------------------- blockers and record helpers


def blockers(conn: psycopg.Connection[Any], statements: Sequence[sqlcheck.Statement]) -> str:
    """Who holds locks on the tables the step touches (asked after the failed transaction ended)."""
    names = sorted({t for s in statements for t in s.targets})
    rows = conn.execute(
        "SELECT DISTINCT l.pid, a.state, left(regexp_replace(a.query, '\\s+', ' ', 'g'), 100), l.mode, "
        "l.relation::regclass::text FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.granted AND l.pid <> pg_backend_pid() AND l.relation = ANY ("
        "  SELECT to_regclass(n) FROM unnest(%s::text[]) AS n WHERE to_regclass(n) IS NOT NULL) ORDER BY 1",
        (names,),
    ).fetchall()
    if not rows:
        return "no blocker is left now"
    return "; ".join(f"pid {r[0]} ({r[1]}) holds {r[3]} on {r[4]}, running: {r[2]}" for r in rows)


def real_differences(diffs: list[fingerprint.Difference]) -> list[fingerprint.Difference]:
    """The differences that count: a sequence advanced by nextval is known residue, never a failure."""
    return [d for d in diffs if d.category != SEQUENCE_RESIDUE]


def fingerprint_summary(fp: fingerprint.Fingerprint | None) -> dict[str, Any]:
    """A fingerprint as records keep it: hashes and per-table rows and content."""
    if fp is None:
        return {}
    return {
        "hash": fp.hash,
        "schema_hash": fp.schema_hash,
        "tables": {k: {"rows": v.rows, "content": v.content} for k, v in fp.tables.items()},
    }


def micros_since(started_ns: int) -> int:
    return (time.perf_counter_ns() - started_ns) // 1000


def ledger_safe(value: Any) -> Any:
    """The ledger takes integers, never floats: keep floats as their text."""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict):
        return {str(k): ledger_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [ledger_safe(v) for v in value]
    return value
