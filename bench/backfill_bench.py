"""Benchmark: step 9's batched backfill run by the kernel (`gcos commit BACKFILL-SEED`) against one ``INSERT … SELECT``.

A script, not a test: it prints and asserts nothing. Issue 13 sets the goal: where schema public is adopted, the
kernel's batched backfill over the default 1,043,000 birth_registry rows keeps at least 0.9 of the throughput of a
single ``INSERT … SELECT`` of the same rows, with every batch under seed 002's 5 s statement limit.

The specs and plans are copied to a temp project (rehearsal evidence lands there); ``--batch-size`` sets step
9's ``batch.size`` in that copy, since the kernel runs the batch size of the spec it rehearsed and was approved.
It builds seed 002's reference world (``--rows``, at least the 1,000,000 SB-10 re-verifies) once in a template
database, installs gcos, maps two LOGIN roles to named human principals (a sovereign and an operator), adopts
schema public (`gcos adopt public`) and then tells the story the way `gcos demo` does, through the same commands
a user runs: steps 1-4, 6 and 8 are rehearsed by the operator, approved (and their decisions decided) by the
sovereign and committed by the operator, all in the kernel; step 9 is rehearsed. Then, ``--runs`` times and
interleaved (batched, single, single, batched, ...), each side gets its own fresh copy of that template:

* **batched**: the sovereign approves step 9 and decides A-5, A-3, A-4 on the copy (approvals and decisions
  bind the database incarnation, so the template's would not count on a copy; untimed), then the operator
  runs ``gcos.commands.commit`` (``gcos commit BACKFILL-SEED``): the kernel's start (gates, the fingerprint
  before, the step's mutation), one ``gcos.batch_next`` transaction per batch (statement_timeout 5 s,
  approvals re-checked, cursor advanced), the close (the fingerprint after, stop conditions, success checks,
  commit record). Timed whole ("gcos commit") and split by the progress reports: start, batch loop (the
  report before the first batch to the one after the last) and close.
* **single**: the spec's batch statement with after = min(id) - 1 and upto = max(id), in one transaction as
  the superuser (no statement timeout: under the seed's 5 s limit it would be cancelled), timed with its
  COMMIT.

Each measurement starts after a CHECKPOINT; the printed figures are medians, and the throughput ratio is
single time / batched time (1.0 = as fast as the single statement).

Usage:
    python bench/backfill_bench.py                      # embedded server under a temp dir, 1,043,000 rows
    python bench/backfill_bench.py --runs 5 --batch-size 20000
    python bench/backfill_bench.py --dsn postgresql://postgres@localhost/postgres   # a superuser DSN
"""

from __future__ import annotations

import argparse
import re
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
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from gcos import adopt, commands, reference_world
from gcos.embedded import EmbeddedServer
from gcos.install import install
from gcos.principals import add_principal
from gcos.spec import Project, StepSpec, load_project
from gcos.target import SessionSettings, Target

REPO = Path(__file__).resolve().parent.parent
STEP = "BACKFILL-SEED"
DEPENDENCIES = ("SB-12", "SB-13", "SB-10", "SB-11", "T6-T7", "ACTIVATION")  # steps 1-4, 6 and 8
MIN_ROWS = 1_000_000  # SB-10's re-verify: birth_registry as large as at build time, or the kernel refuses it
EXPIRY = "24h"
BATCH_LIMIT_MS = 5_000  # seed 002's statement limit, which the kernel's client sets for every batch
PEOPLE = {"sovereign": "Bench Sovereign", "operator": "Bench Operator"}  # gcos role -> principal name


@dataclass(frozen=True)
class Server:
    admin_dsn: str
    template: str  # the prepared world
    project: Path  # the project the bench runs: a copy of this repository's specs (step 9 maybe resized)
    logins: dict[str, str]  # gcos role -> a DSN of the LOGIN role mapped to that principal (no database)

    def as_(self, who: str, database: str) -> Target:
        """The named principal `who` (sovereign, operator) connected to `database`."""
        return Target(make_conninfo(self.logins[who], dbname=database), "--dsn")


@dataclass(frozen=True)
class Batched:
    total_s: float  # gcos commit, gates, mutation, batches and close included
    loop_s: float  # progress report before the first batch to the one after the last
    start_s: float  # gcos commit called to that first report: spec load, registration, gates, mutation
    close_s: float  # the last report to gcos commit returning: stop conditions, success checks, record
    batches: int
    rows_written: int
    max_batch_ms: int


@dataclass(frozen=True)
class Single:
    seconds: float
    rows_written: int


# ------------------------------------------------------------------------------------------ the world


def commit_through_kernel(srv: Server, database: str, step: StepSpec, decided: set[str]) -> None:
    """What a user does for one step: rehearse (operator), decide and approve (sovereign), commit (operator)."""
    settings = SessionSettings.from_env()
    operator = srv.as_("operator", database)
    commands.rehearse(operator, srv.project, step.id, settings=settings)
    approve(srv, database, step, decided)
    commands.commit(operator, srv.project, step.id, settings=settings)


def approve(srv: Server, database: str, step: StepSpec, decided: set[str]) -> None:
    """The sovereign decides the step's decisions not yet decided here and approves the step."""
    sovereign = srv.as_("sovereign", database)
    for decision in step.decisions:
        if decision not in decided:
            commands.decide(
                sovereign, srv.project, decision, verdict="approve", expires_in=EXPIRY, note="backfill bench"
            )
            decided.add(decision)
    commands.approve(sovereign, srv.project, step.id, verdict="approve", expires_in=EXPIRY, note="backfill bench")


def prepare_template(srv: Server, project: Project, rows: int) -> None:
    """The reference world, gcos installed, the principals mapped, public adopted, steps 1-4, 6, 8 committed
    and step 9 rehearsed, all as a user would do it."""
    with psycopg.connect(make_conninfo(srv.admin_dsn, dbname=srv.template), autocommit=True) as conn:
        reference_world.build_world(conn, rows=rows)
        install(conn)
        for role, name in PEOPLE.items():
            login = str(conninfo_to_dict(srv.logins[role])["user"])
            add_principal(conn, login, name=name, kind="human", roles=(role,))
        adopt.adopt(conn, ["public"])
    decided: set[str] = set()
    for step_id in DEPENDENCIES:
        commit_through_kernel(srv, srv.template, project.steps[step_id], decided)
    commands.rehearse(srv.as_("operator", srv.template), srv.project, STEP, settings=SessionSettings.from_env())
    with psycopg.connect(make_conninfo(srv.admin_dsn, dbname=srv.template), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def copy_project(into: Path, batch_size: int | None) -> Project:
    """This repository's specs and plans under `into` (rehearsal evidence lands there, not in the repository),
    with step 9's batch.size set to `batch_size`: the kernel runs the batch size of the spec it was shown."""
    for part in ("steps", "plans", "rollback"):
        shutil.copytree(REPO / part, into / part)
    if batch_size is not None:
        spec = into / "steps" / "09-backfill-seed.yaml"
        text, count = re.subn(r"(?m)^(  size: )\d+$", rf"\g<1>{batch_size}", spec.read_text())
        if count != 1:
            raise SystemExit(f"{spec}: found no single batch size line to set --batch-size in")
        spec.write_text(text)
    return load_project(into)


@contextmanager
def server(admin_dsn: str | None, project_dir: Path) -> Iterator[Server]:
    """An embedded server under a temp dir (or the server of --dsn) with an empty template and two LOGIN roles."""
    home: Path | None = None
    embedded: EmbeddedServer | None = None
    if admin_dsn is None:
        home = Path(tempfile.mkdtemp(prefix="gcos-bench-"))
        embedded = EmbeddedServer(home)
        embedded.up()
        admin_dsn = embedded.url("postgres")
    tag = uuid.uuid4().hex[:8]
    template = f"gcos_backfill_{tag}"
    logins = {role: f"gcos_bench_{tag}_{role}" for role in PEOPLE}
    try:
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            dsns = {}
            for role, login in logins.items():
                password = secrets.token_hex(12)
                admin.execute(
                    sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(login), sql.Literal(password))
                )
                dsns[role] = make_conninfo(admin_dsn, user=login, password=password)
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(template)))
        yield Server(admin_dsn, template, project_dir, dsns)
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(template)))
            for login in logins.values():
                admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(login)))
        if embedded is not None:
            embedded.down()
            shutil.rmtree(home or "", ignore_errors=True)


@contextmanager
def fresh_copy(srv: Server) -> Iterator[str]:
    """A new database copied from the template; yields its name and drops it afterwards."""
    name = f"gcos_backfill_run_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(srv.admin_dsn, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(srv.template))
        )
    try:
        yield name
    finally:
        with psycopg.connect(srv.admin_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def checkpoint(srv: Server) -> None:
    with psycopg.connect(srv.admin_dsn, autocommit=True) as admin:
        admin.execute("CHECKPOINT")


# ------------------------------------------------------------------------------------------ measurements


def measure_batched(srv: Server, project: Project) -> Batched:
    """Approve step 9 on a fresh copy (untimed), then time `gcos commit` of it as the operator."""
    with fresh_copy(srv) as database:
        approve(srv, database, project.steps[STEP], set())
        checkpoint(srv)
        marks: list[float] = []

        def progress(p: Any) -> None:  # a BatchProgress, before the first batch and after each committed one
            marks.append(time.perf_counter())

        start = time.perf_counter()
        result: Any = commands.commit(
            srv.as_("operator", database), srv.project, STEP, settings=SessionSettings.from_env(), progress=progress
        )
        total = time.perf_counter() - start
    first, last = marks[0] - start, marks[-1] - start
    return Batched(total, last - first, first, total - last, result.batches, result.rows_written, result.max_batch_ms)


def measure_single(srv: Server, project: Project) -> Single:
    """The spec's batch statement over the whole key range, in one transaction as the superuser."""
    batch = project.steps[STEP].batch
    assert batch is not None
    with fresh_copy(srv) as database:
        checkpoint(srv)
        with psycopg.connect(make_conninfo(srv.admin_dsn, dbname=database), autocommit=True) as conn:
            bounds = conn.execute("SELECT min(id) - 1, max(id) FROM birth_registry").fetchone()
            assert bounds is not None
            start = time.perf_counter()
            with conn.transaction():
                conn.execute("SET LOCAL statement_timeout = 0")
                written = conn.execute(
                    batch.sql, {"after": bounds[0], "upto": bounds[1], "run_id": uuid.uuid4().hex}
                ).rowcount
            return Single(time.perf_counter() - start, written)


# ------------------------------------------------------------------------------------------ the run


def run_all(srv: Server, project: Project, runs: int) -> tuple[list[Batched], list[Single]]:
    batched: list[Batched] = []
    single: list[Single] = []
    for run in range(runs):
        order = ("batched", "single") if run % 2 == 0 else ("single", "batched")
        for side in order:
            if side == "batched":
                b = measure_batched(srv, project)
                batched.append(b)
                print(
                    f"  run {run + 1}: batched (gcos commit in the kernel) {b.total_s:.2f} s (start {b.start_s:.2f} s, "
                    f"batch loop {b.loop_s:.2f} s, close {b.close_s:.2f} s; {b.batches} batches, slowest "
                    f"{b.max_batch_ms} ms, {b.rows_written:,} rows)",
                    flush=True,
                )
            else:
                s = measure_single(srv, project)
                single.append(s)
                print(
                    f"  run {run + 1}: single INSERT … SELECT {s.seconds:.2f} s ({s.rows_written:,} rows)", flush=True
                )
    return batched, single


def summarize(batched: list[Batched], single: list[Single], size: int) -> None:
    total = statistics.median(b.total_s for b in batched)
    loop = statistics.median(b.loop_s for b in batched)
    one = statistics.median(s.seconds for s in single)
    rows = batched[0].rows_written
    slowest = max(b.max_batch_ms for b in batched)
    runs = len(batched)
    print(
        f"batched backfill in the kernel ({size:,} keys per batch, {batched[0].batches} batches): gcos commit "
        f"{total:.2f} s ({rows / total:,.0f} rows/s), batch loop {loop:.2f} s ({rows / loop:,.0f} rows/s), "
        f"start {statistics.median(b.start_s for b in batched):.2f} s, close "
        f"{statistics.median(b.close_s for b in batched):.2f} s   median of {runs}"
    )
    print(f"single INSERT … SELECT: {one:.2f} s ({single[0].rows_written / one:,.0f} rows/s)   median of {runs}")
    print(
        f"throughput ratio single/batched (goal >= 0.9): batch loop {one / loop:.2f}, whole gcos commit with "
        f"gates, mutation, fingerprints and checks {one / total:.2f}"
    )
    print(
        f"slowest batch {slowest} ms vs the {BATCH_LIMIT_MS // 1000} s statement limit "
        f"({'every batch under it' if slowest < BATCH_LIMIT_MS else 'OVER THE LIMIT'}); "
        f"the single statement took {one:.1f} s"
        + (" and would be cancelled under that limit" if one * 1000 >= BATCH_LIMIT_MS else "")
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--dsn", help="superuser DSN of a server to create the scratch databases and roles on")
    parser.add_argument(
        "--rows", type=int, default=reference_world.DEFAULT_ROWS, help=f"birth_registry rows (at least {MIN_ROWS:,})"
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per side (the median is printed)")
    parser.add_argument("--batch-size", type=int, default=None, help="keys per batch (default: the spec's)")
    args = parser.parse_args(argv)
    if args.rows < MIN_ROWS:
        parser.error(f"--rows {args.rows:,}: step 3 (SB-10) re-verifies at least {MIN_ROWS:,} birth_registry rows")

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gcos-bench-project-") as scratch:
        project = copy_project(Path(scratch), args.batch_size)
        batch = project.steps[STEP].batch
        assert batch is not None
        batched, single = bench(args, project, started)
    summarize(batched, single, batch.size)
    return 0


def bench(args: argparse.Namespace, project: Project, started: float) -> tuple[list[Batched], list[Single]]:
    with server(args.dsn, project.root) as srv:
        prepare_template(srv, project, args.rows)
        with psycopg.connect(make_conninfo(srv.admin_dsn, dbname=srv.template)) as conn:
            version = conn.info.server_version
        print(
            f"world: reference world ({args.rows:,} birth_registry rows), schema public adopted, steps 1-4, 6, 8 "
            f"committed and step 9 rehearsed in the kernel; PostgreSQL {version // 10000}.{version % 10000}; "
            f"prepared in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
        return run_all(srv, project, args.runs)


if __name__ == "__main__":
    sys.exit(main())
