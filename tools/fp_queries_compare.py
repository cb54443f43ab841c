"""Compare the fingerprint's catalog queries with the reference texts (tests/data/fingerprint_sql_reference):
row for row (identity, definition) and time per category, each measured on a fresh connection (cold) and
again (warm), under the settings gcos._fp_take runs them with.

    python tools/fp_queries_compare.py DSN [CATEGORY ...]
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
    " SET jit = off; SET extra_float_digits = 1; SET timezone = 'UTC'; SET datestyle = 'ISO, YMD';"
    " SET intervalstyle = 'postgres'; SET bytea_output = 'hex'; SET row_security = off"
)


def adapt(text: str, version: int) -> str:
    for since, column, replacement in fingerprint._NEWER_COLUMNS:
        if version < since:
            text = text.replace(column, replacement)
    return text.replace("%(exclude)s", "$1").replace("%(no_extensions)s", "$2")


def run(dsn: str, text: str, noext: bool) -> tuple[float, float, list[tuple[str, str]]]:
    times = []
    rows: list[tuple[str, str]] = []
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(SETTINGS)
        for _ in range(2):
            t = time.perf_counter()
            rows = c.execute(
                "SELECT * FROM ("
                + text.replace("$1", "'{gcos}'::text[]").replace("$2", str(noext))
                + ") AS q(identity, definition)",
                prepare=False,
            ).fetchall()
            times.append(time.perf_counter() - t)
    return times[0], times[1], sorted(rows)


def main() -> int:
    dsn = sys.argv[1]
    with psycopg.connect(dsn, autocommit=True) as c:
        version = c.info.server_version
        noext = c.execute("SELECT NOT EXISTS (SELECT FROM pg_extension WHERE extname <> 'plpgsql')").fetchone()[0]
    names = sys.argv[2:] or [*fingerprint.CATEGORIES, "sequence_state", "sequence_state_legacy"]
    bad = 0
    tot = [0.0] * 4
    for name in names:
        if name == ("sequence_state_legacy" if version >= 180000 else "sequence_state"):
            continue
        old = adapt((REFERENCE / f"{name}.sql").read_text(), version)
        new = adapt((ROOT / "gcos" / "fingerprint_sql" / f"{name}.sql").read_text(), version)
        oc, ow, orows = min(run(dsn, old, noext) for _ in range(3))
        res = [run(dsn, new, noext) for _ in range(3)]
        nc = statistics.median(r[0] for r in res)
        nw = statistics.median(r[1] for r in res)
        same = res[0][2] == orows
        bad += not same
        for i, v in enumerate((oc, ow, nc, nw)):
            tot[i] += v
        print(
            f"{name:16s} rows {len(orows):6d} old cold {oc * 1000:6.1f} warm {ow * 1000:6.1f}  "
            f"new cold {nc * 1000:6.1f} warm {nw * 1000:6.1f}  {'same' if same else 'DIFFERENT'}"
        )
        if not same:
            a, b = set(orows), set(res[0][2])
            for r in sorted(a - b)[:3]:
                print("  only old:", r)
            for r in sorted(b - a)[:3]:
                print("  only new:", r)
    print(
        f"total old cold {tot[0] * 1000:.1f} warm {tot[1] * 1000:.1f}"
        f"  new cold {tot[2] * 1000:.1f} warm {tot[3] * 1000:.1f}"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
