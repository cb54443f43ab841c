"""Server-side cost of 047's catalog proof against the digest fingerprint it replaces (issue 13 item 2).

A script, not a test: on a database with gcos installed (e.g. one kept by `bench/fingerprint_bench.py --keep`),
as gcos_owner like the kernel, it prints the median of `--runs` of: gcos._catalog_mark(), gcos._catalog_unchanged
(mark), gcos._kernel_digests(watch) (043's after_rollback/exit pass) and gcos._kernel_digests_proved with no table
mark (what is measured instead when the proof holds), each in its own transaction; then 052's stored proof:
gcos._catalog_proof('{gcos}', false) (mark, schema and store) and gcos._catalog_proof_read('{gcos}', false)
(the stored row checked), and the same with the object map (a rehearsal's entry).

    python bench/catalog_proof_bench.py DSN --runs 7
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import psycopg
from psycopg.types.json import Jsonb


def timed(conn: psycopg.Connection[Any], query: str, args: tuple[Any, ...] = ()) -> tuple[float, Any]:
    """One statement in its own transaction: seconds and its value."""
    started = time.perf_counter()
    with conn.transaction():
        conn.execute("SET LOCAL ROLE gcos_owner")
        row = conn.execute(query, args).fetchone()
    return time.perf_counter() - started, row[0] if row else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dsn", help="superuser DSN of a database with gcos installed")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        objects = conn.execute("SELECT count(*) FROM pg_class").fetchone()
        times: dict[str, list[float]] = {}
        for _ in range(args.runs):
            took, mark = timed(conn, "SELECT gcos._catalog_mark()")
            times.setdefault("_catalog_mark()", []).append(took)
            took, held = timed(conn, "SELECT gcos._catalog_unchanged(%s)", (Jsonb(mark),))
            assert held, "the proof failed on a quiet database"
            times.setdefault("_catalog_unchanged(mark)", []).append(took)
            took, entry = timed(conn, "SELECT gcos._kernel_digests('{}')")
            times.setdefault("_kernel_digests (043's pass)", []).append(took)
            took, _ = timed(conn, "SELECT gcos._kernel_digests_proved('{}', %s, '{}')", (Jsonb(entry),))
            times.setdefault("_kernel_digests_proved (the rest)", []).append(took)
        for _ in range(args.runs):
            for objects_too in (False, True):
                label = " with the object map" if objects_too else ""
                conn.execute("DELETE FROM gcos.catalog_proof")
                took, got = timed(conn, "SELECT gcos._catalog_proof('{gcos}', %s)", (objects_too,))
                assert got["established"] == "measured", got["established"]
                times.setdefault(f"_catalog_proof measured{label}", []).append(took)
                took, got = timed(conn, "SELECT gcos._catalog_proof_read('{gcos}', %s)", (objects_too,))
                assert got is not None, "the stored proof failed on a quiet database"
                times.setdefault(f"_catalog_proof proved{label}", []).append(took)
        print(f"pg_class rows: {objects[0] if objects else '?'}, median of {args.runs}")
        for label, values in times.items():
            print(f"  {label:36s} {statistics.median(values) * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
