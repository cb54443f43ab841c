"""The reference world of seed 002: the live baseline its nine build steps re-verify.

The world is plain SQL under ``gcos/world/`` (package data): the schema, the small reference tables
with the seed's exact counts, ``birth_registry`` filled in chunks with ``generate_series``, its keys,
and a baseline manifest. It is deterministic (no ``random()``, no clock in any stored value), so
two builds give identical content, and it is built in ONE transaction, so a failure leaves nothing.

The seed leaves some names open; our choices (explained in ``01_schema.sql``):
``law_articles``/``laws``/``law_versions`` hold "law counts 47/5/12", ``entity_changelog`` and
``event_consumer_cursor`` are the "changelog" and "cursor" watermark sources, ``owner_agencies``,
``implementation_units``, ``finding_type_registry`` and ``kb_documents``/``kb_document_revisions``
hold what steps 6 and 7 read and patch, and ``reference_world_baseline`` is the manifest and marker.
``os_proposal_approvals`` is a view, not a table: of the approvals gcos records and gate 5 counts now
where gcos is installed (``gcos install`` turns a world built without gcos into that), else empty.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType
from typing import Any

import psycopg
from psycopg import pq

DEFAULT_ROWS = 1_043_000
"""birth_registry rows of the default world: seed 002 step 3, "birth_registry size ... ~1.043M"."""

MARKER_TABLE = "reference_world_baseline"
"""The manifest table; its presence is what `world_exists` looks for."""

SEED_COUNTS: Mapping[str, int] = MappingProxyType(
    {
        "law_articles": 47,  # seed 002 step 1: "law counts 47/5/12"
        "laws": 5,
        "law_versions": 12,
        "evolution_snapshots": 1,  # step 1: "evolution_snapshots baseline (1)"
        "measurement_registry": 140,  # step 1: "measurement_registry 140 enabled"
        "queue_heartbeat": 3,  # step 2: "queue_heartbeat baseline (3)"
        "event_pending": 0,  # step 2: "event_pending 0"
        "event_type_registry": 40,  # step 4: "event_type_registry 40 (governance 0)"
        "dot_domains": 46,  # step 6: "dot_domains 46"
        "dot_tools": 309,  # step 6: "dot_tools 309 (gov 0)"
        "dot_coverage_required": 11,  # step 6: "dot_coverage_required 11"
        "apr_action_types": 6,  # step 7: "apr_action_types 6 (no governance types)"
        "owner_agencies": 6,  # step 7: "the 6 owner agencies present"
        "os_proposal_approvals": 0,  # §70.0: "Live: os_proposal_approvals=0" (a view: no approval yet)
    }
)
"""Row counts the seed states for the baseline (birth_registry is `rows`)."""

Progress = Callable[[str, int, int], None]

_SCHEMA = "01_schema.sql"
_REFERENCE_DATA = "02_reference_data.sql"
_BIRTH_CHUNK = "03_birth_registry_chunk.sql"
_BIRTH_FINISH = "04_birth_registry_finish.sql"
_MANIFEST = "05_manifest.sql"
_MAX_CHUNKS = 8


class WorldExistsError(RuntimeError):
    """The target database already holds the reference world (or its marker table)."""


@dataclass(frozen=True)
class WorldSummary:
    """What `build_world` built: every table of the world and its row count."""

    counts: dict[str, int]


def world_sql(name: str) -> str:
    """The text of one of the world's SQL files (package data under gcos/world/)."""
    return resources.files("gcos").joinpath("world", name).read_text(encoding="utf-8")


def world_exists(conn: psycopg.Connection[Any]) -> bool:
    """True when the database already holds the reference world (its manifest table exists)."""
    row = conn.execute("SELECT to_regclass('public.reference_world_baseline') IS NOT NULL").fetchone()
    return bool(row and row[0])


def _chunks(rows: int) -> list[tuple[int, int]]:
    """Split 1..rows into at most _MAX_CHUNKS inclusive ranges of nearly equal size."""
    count = min(_MAX_CHUNKS, rows)
    bounds = [rows * i // count for i in range(count + 1)]
    return [(bounds[i] + 1, bounds[i + 1]) for i in range(count)]


def build_world(
    conn: psycopg.Connection[Any],
    *,
    rows: int = DEFAULT_ROWS,
    progress: Progress | None = None,
) -> WorldSummary:
    """Build seed 002's reference world in an empty database, in one transaction.

    `conn` must be an idle connection (gcos uses autocommit ones). `rows` is the number of
    birth_registry rows (default 1,043,000). `progress(label, done, total)` is called after each
    phase; the birth_registry fill reports once per chunk. Raises ValueError for a bad `rows` or a
    busy connection, WorldExistsError when the world is already there, psycopg errors otherwise
    (in which case nothing was built).
    """
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
        raise ValueError(f"rows must be a positive integer, not {rows!r}")
    if conn.info.transaction_status != pq.TransactionStatus.IDLE:
        raise ValueError("build_world needs an idle connection (no transaction in progress)")
    chunks = _chunks(rows)
    total = 4 + len(chunks)
    done = 0

    def report(label: str) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(label, done, total)

    with conn.transaction():
        if world_exists(conn):
            raise WorldExistsError("the reference world is already built in this database")
        conn.execute("SET LOCAL search_path = public")
        conn.execute("SET LOCAL statement_timeout = 0")
        conn.execute(world_sql(_SCHEMA))
        report("schema")
        conn.execute(world_sql(_REFERENCE_DATA))
        report("reference tables")
        chunk_sql = world_sql(_BIRTH_CHUNK)
        for lo, hi in chunks:
            conn.execute(chunk_sql, {"lo": lo, "hi": hi})
            report(f"birth_registry {hi:,}/{rows:,} rows")
        conn.execute(world_sql(_BIRTH_FINISH))
        report("birth_registry keys, changelog")
        conn.execute(world_sql(_MANIFEST))
        counts = {
            str(name): int(n)
            for name, n in conn.execute(
                "SELECT table_name, baseline_rows FROM reference_world_baseline ORDER BY table_name"
            ).fetchall()
        }
        report("baseline manifest")
    return WorldSummary(counts=counts)
