"""Benchmark: step 9's batched backfill (gcos.batched.apply_batched) against one ``INSERT … SELECT`` of the same rows.

A script, not a test: it prints and asserts nothing. Issue 6 sets the goal: the batched backfill over the
default 1,043,000 birth_registry rows keeps at least 0.8 of the throughput of a single ``INSERT … SELECT``,
with every batch under seed 002's 5 s statement limit.

It builds seed 002's reference world once in a template database, installs gcos, commits steps 1-4, 6 and 8
directly (their mutation plus a commit ledger record, as the tests do) and rehearses step 9 there; a
sovereign role is created for the run. Then, ``--runs`` times and interleaved (batched, single, single,
batched, ...), each side gets its own fresh copy of that template:

* **batched**: the sovereign approves step 9 and decides A-5, A-3, A-4 (approvals bind the database), then
  ``apply_batched`` runs it with the spec's batch size (or ``--batch-size``): the gate transaction, every
  batch (each its own transaction, statement_timeout 5 s, approvals re-checked, cursor advanced), the
  close (stop conditions, success evidence, fingerprints, commit record). Timed whole ("apply_batched")
  and from the start of the first batch to the commit of the last ("batch loop").
* **single**: the spec's batch statement with after = min(id) - 1 and upto = max(id), in one transaction
  (no statement timeout: under the seed's 5 s limit it would be cancelled), timed with its COMMIT.

Each measurement starts after a CHECKPOINT; the printed figures are medians, and the throughput ratio is
single time / batched time (1.0 = as fast as the single statement).

Usage:
    python bench/backfill_bench.py                      # embedded server under a temp dir, 1,043,000 rows
    python bench/backfill_bench.py --runs 5 --batch-size 20000
    python bench/backfill_bench.py --dsn postgresql://postgres@localhost/postgres   # a superuser DSN
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from gcos import approvals, execute, fingerprint, ledger, reference_world, rehearsal
from gcos.batched import BATCH_STATEMENT_LIMIT_MS, BatchProgress, apply_batched
from gcos.embedded import EmbeddedServer
from gcos.install import install
from gcos.principals import add_principal
from gcos.spec import Project, load_project
from gcos.target import SessionSettings, Target

REPO = Path(__file__).resolve().parent.parent
STEP = "BACKFILL-SEED"
DEPENDENCIES = ("SB-12", "SB-13", "SB-10", "SB-11", "T6-T7", "ACTIVATION")  # steps 1-4, 6 and 8
DAY = timedelta(hours=24)


@dataclass(frozen=True)
class Server:
    admin_dsn: str
    template: str  # the prepared world
    role: str  # the sovereign's LOGIN role
    role_dsn: str  # its DSN (the database is chosen per copy)


@dataclass(frozen=True)
class Batched:
    total_s: float  # apply_batched, gates and close included
    loop_s: float  # first batch start to last batch commit
    batches: int
    rows_written: int
    max_batch_ms: int


@dataclass(frozen=True)
class Single:
    seconds: float
    rows_written: int


# ------------------------------------------------------------------------------------------ the world


def commit_directly(conn: psycopg.Connection[Any], project: Project, step_id: str) -> None:
    """What `gcos commit` leaves behind, without its gates: the mutation, then the commit record."""
    step = project.steps[step_id]
    plan = project.plan_of(step_id)
    assert plan is not None and step.mutation is not None
    before = fingerprint.take(conn, watch=step.watch)
    with conn.transaction():
        conn.execute(step.mutation.sql)
    after = fingerprint.take(conn, watch=step.watch)
    payload = {
        "format_version": 1,
        "run_id": uuid.uuid4().hex,
        "outcome": "applied",
        "plan_id": plan.id,
        "plan_hash": plan.hash,
        "fingerprint_before": execute.fingerprint_summary(before),
        "fingerprint_after": execute.fingerprint_summary(after),
    }
    # a commit counts only with the allowing policy decision of its own trace (what gcos commit writes)
    trace = ledger.new_trace_id()
    decision = ledger.append(
        conn, "policy_decision", {"allow": True}, step_id=step_id, spec_hash=step.hash, trace_id=trace
    )
    payload["policy_decision_seq"] = decision.seq
    ledger.append(conn, "commit", execute.ledger_safe(payload), step_id=step_id, spec_hash=step.hash, trace_id=trace)


def prepare_template(dsn: str, project: Project, rows: int, role: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        reference_world.build_world(conn, rows=rows)
        install(conn)
        conn.execute(sql.SQL("GRANT gcos_sovereign TO {}").format(sql.Identifier(role)))
        add_principal(conn, role, name="Bench Sovereign", kind="human", roles=("sovereign",), grant=False)
        for step_id in DEPENDENCIES:
            commit_directly(conn, project, step_id)
        result = rehearsal.rehearse(conn, project, project.steps[STEP], settings=SessionSettings.from_env())
        if not result.ok:
            raise SystemExit(f"the rehearsal of {STEP} did not pass: {result.message}")
        conn.execute("VACUUM ANALYZE")


@contextmanager
def server(admin_dsn: str | None, rows: int, project: Project) -> Iterator[Server]:
    """An embedded server under a temp dir (or the server of --dsn) with the prepared template and role."""
    home: Path | None = None
    embedded: EmbeddedServer | None = None
    if admin_dsn is None:
        home = Path(tempfile.mkdtemp(prefix="gcos-bench-"))
        embedded = EmbeddedServer(home)
        embedded.up()
        admin_dsn = embedded.url("postgres")
    template = f"gcos_backfill_{uuid.uuid4().hex[:8]}"
    role = f"gcos_bench_{uuid.uuid4().hex[:8]}_sovereign"
    password = secrets.token_hex(12)
    try:
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            admin.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password))
            )
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(template)))
        prepare_template(make_conninfo(admin_dsn, dbname=template), project, rows, role)
        yield Server(admin_dsn, template, role, make_conninfo(admin_dsn, user=role, password=password))
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(template)))
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        if embedded is not None:
            embedded.down()
            shutil.rmtree(home or "", ignore_errors=True)


@contextmanager
def fresh_copy(srv: Server) -> Iterator[str]:
    name = f"gcos_backfill_run_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(srv.admin_dsn, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(srv.template))
        )
        admin.execute("CHECKPOINT")
    try:
        yield make_conninfo(srv.admin_dsn, dbname=name)
    finally:
        with psycopg.connect(srv.admin_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


# ------------------------------------------------------------------------------------------ measurements


def measure_batched(srv: Server, project: Project, batch_size: int | None) -> Batched:
    step = project.steps[STEP]
    with fresh_copy(srv) as dsn:
        with psycopg.connect(make_conninfo(srv.role_dsn, dbname=make_dbname(dsn)), autocommit=True) as sovereign:
            approvals.approve(sovereign, project, step, verdict="approve", expires_in=DAY)
            for decision in step.decisions:
                approvals.decide(sovereign, decision, verdict="approve", expires_in=DAY)
        marks: list[float] = []

        def progress(p: BatchProgress) -> None:
            marks.append(time.perf_counter())

        start = time.perf_counter()
        result = apply_batched(
            Target(dsn, "--dsn"),
            project,
            step,
            settings=SessionSettings.from_env(),
            progress=progress,
            batch_size=batch_size,
        )
        total = time.perf_counter() - start
    return Batched(total, marks[-1] - marks[0], result.batches, result.rows_written, result.max_batch_ms)


def make_dbname(dsn: str) -> str:
    return str(conninfo_to_dict(dsn)["dbname"])


def measure_single(srv: Server, project: Project) -> Single:
    step = project.steps[STEP]
    assert step.batch is not None
    with fresh_copy(srv) as dsn, psycopg.connect(dsn, autocommit=True) as conn:
        bounds = conn.execute("SELECT min(id) - 1, max(id) FROM birth_registry").fetchone()
        assert bounds is not None
        start = time.perf_counter()
        with conn.transaction():
            conn.execute("SET LOCAL statement_timeout = 0")
            written = conn.execute(
                step.batch.sql, {"after": bounds[0], "upto": bounds[1], "run_id": uuid.uuid4().hex}
            ).rowcount
        return Single(time.perf_counter() - start, written)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--dsn", help="superuser DSN of a server to create the scratch databases on")
    parser.add_argument("--rows", type=int, default=reference_world.DEFAULT_ROWS, help="birth_registry rows")
    parser.add_argument("--runs", type=int, default=3, help="runs per side (the median is printed)")
    parser.add_argument("--batch-size", type=int, default=None, help="keys per batch (default: the spec's)")
    args = parser.parse_args(argv)

    project = load_project(REPO)
    step = project.steps[STEP]
    assert step.batch is not None
    size = args.batch_size or step.batch.size
    started = time.perf_counter()
    with server(args.dsn, args.rows, project) as srv:
        with psycopg.connect(make_conninfo(srv.admin_dsn, dbname=srv.template)) as conn:
            version = conn.info.server_version
        print(
            f"world: reference world ({args.rows:,} birth_registry rows), steps 1-4, 6, 8 committed, step 9 "
            f"rehearsed; PostgreSQL {version // 10000}.{version % 10000}; prepared in "
            f"{time.perf_counter() - started:.1f} s"
        )
        batched: list[Batched] = []
        single: list[Single] = []
        for run in range(args.runs):
            order = ("batched", "single") if run % 2 == 0 else ("single", "batched")
            for side in order:
                if side == "batched":
                    b = measure_batched(srv, project, size)
                    batched.append(b)
                    print(
                        f"  run {run + 1}: batched {b.total_s:.2f} s (batch loop {b.loop_s:.2f} s, "
                        f"{b.batches} batches, slowest {b.max_batch_ms} ms, {b.rows_written:,} rows)",
                        flush=True,
                    )
                else:
                    s = measure_single(srv, project)
                    single.append(s)
                    print(
                        f"  run {run + 1}: single INSERT … SELECT {s.seconds:.2f} s ({s.rows_written:,} rows)",
                        flush=True,
                    )
    total = statistics.median(b.total_s for b in batched)
    loop = statistics.median(b.loop_s for b in batched)
    one = statistics.median(s.seconds for s in single)
    rows = batched[0].rows_written
    slowest = max(b.max_batch_ms for b in batched)
    print(
        f"batched backfill ({size:,} keys per batch): apply_batched {total:.2f} s ({rows / total:,.0f} rows/s), "
        f"batch loop {loop:.2f} s ({rows / loop:,.0f} rows/s)   median of {args.runs}"
    )
    print(f"single INSERT … SELECT: {one:.2f} s ({single[0].rows_written / one:,.0f} rows/s)   median of {args.runs}")
    print(
        f"throughput ratio (goal >= 0.8): batch loop {one / loop:.2f}, whole apply_batched with gates, "
        f"fingerprints and checks {one / total:.2f}"
    )
    print(
        f"slowest batch {slowest} ms vs the {BATCH_STATEMENT_LIMIT_MS // 1000} s statement limit "
        f"({'every batch under it' if slowest < BATCH_STATEMENT_LIMIT_MS else 'OVER THE LIMIT'}); "
        f"the single statement took {one:.1f} s"
        + (" and would be cancelled under that limit" if one * 1000 >= BATCH_STATEMENT_LIMIT_MS else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
