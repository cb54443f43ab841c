"""Time each category's whole aggregating statement (gcos._fp_schema_head + the query) as gcos._fp_take
runs it, for the loaded query and for the working tree's file, best of 15 warm runs and
the median of 5 cold ones (a fresh connection's first run).

    python tools/fp_head_time.py DSN [CATEGORY ...]
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import psycopg

from gcos import fingerprint

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "tests" / "data" / "fingerprint_sql_reference"
SETTINGS = (
    "SET search_path = pg_catalog, pg_temp; SET join_collapse_limit = 1; SET from_collapse_limit = 1;"
    " SET jit = off; SET extra_float_digits = 1"
)


def adapt(text: str, version: int) -> str:
    for since, column, replacement in fingerprint._NEWER_COLUMNS:
        if version < since:
            text = text.replace(column, replacement)
    return text.replace("%(exclude)s", "$1").replace("%(no_extensions)s", "$2")


def timed(dsn: str, stmts: list[str], runs: int = 15) -> list[tuple[float, float, str]]:
    """Per statement: median cold time (first run on each of 5 fresh connections) and best warm time,
    the statements interleaved so that load from other processes falls on all of them alike."""
    cold: list[list[float]] = [[] for _ in stmts]
    warm: list[list[float]] = [[] for _ in stmts]
    outs = [""] * len(stmts)
    for _ in range(5):
        for i, stmt in enumerate(stmts):
            with psycopg.connect(dsn, autocommit=True) as c:
                c.execute(SETTINGS)
                t = time.perf_counter()
                row = c.execute(stmt, prepare=False).fetchone()
                cold[i].append(time.perf_counter() - t)
                outs[i] = str(row[0] if row else "")
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(SETTINGS)
        for _ in range(runs):
            for i, stmt in enumerate(stmts):
                t = time.perf_counter()
                c.execute(stmt, prepare=False).fetchone()
                warm[i].append(time.perf_counter() - t)
    return [(statistics.median(cold[i]), min(warm[i]), outs[i]) for i in range(len(stmts))]


def main() -> int:
    dsn = sys.argv[1]
    with psycopg.connect(dsn, autocommit=True) as c:
        version = c.info.server_version
        head = c.execute("SELECT gcos._fp_schema_head(false)").fetchone()[0]
    bad = 0
    tot = [0.0] * 4
    for name in sys.argv[2:] or fingerprint.CATEGORIES:
        stmts = []
        for base in (REFERENCE, ROOT / "gcos" / "fingerprint_sql"):
            q = adapt((base / f"{name}.sql").read_text(), version)
            q = q.replace("$1", "'{gcos}'::text[]").replace("$2", "true")
            stmts.append(head + q + "\n) AS q(identity, definition)")
        res = timed(dsn, stmts)
        same = res[0][2] == res[1][2]
        bad += not same
        for i, v in enumerate((res[0][0], res[0][1], res[1][0], res[1][1])):
            tot[i] += v
        print(
            f"{name:18s} old cold {res[0][0] * 1000:6.1f} warm {res[0][1] * 1000:6.1f}"
            f"   new cold {res[1][0] * 1000:6.1f}"
            f" warm {res[1][1] * 1000:6.1f}   {'same' if same else 'DIFFERENT'}"
        )
    print(
        f"total old cold {tot[0] * 1000:.1f} warm {tot[1] * 1000:.1f}"
        f"   new cold {tot[2] * 1000:.1f} warm {tot[3] * 1000:.1f}"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
