"""Register step specs and plans in the database's content-addressed registry (gcos.specs, gcos.plans).

The kernel rehearses and commits only registered specs and runs the SQL stored with them, so the
database computes the hash itself (sha256 of ``gcos.jcs(document)``, gcos/sql/006_registry.sql). This
module sends the document gcos.spec built (SQL files inlined) and refuses when the database's hash is not
the one gcos computed: approvals and evidence name the client's hash, and a spec registered under any
other would be a different spec to them.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from gcos import ledger
from gcos.errors import LedgerBroken, translated
from gcos.spec import PlanSpec, StepSpec

_QUERIES = {"spec": "SELECT gcos.register_spec(%s)", "plan": "SELECT gcos.register_plan(%s)"}


def register_spec(conn: psycopg.Connection[Any], step: StepSpec, *, trace_id: str | None = None) -> str:
    """Register `step` (idempotent) and return its spec hash as the database computed it. A new
    registration's record goes under `trace_id` (the run it is part of), else a trace of its own."""
    return _register(conn, "spec", f"step {step.id}", step.document, step.hash, trace_id)


def register_plan(conn: psycopg.Connection[Any], plan: PlanSpec, *, trace_id: str | None = None) -> str:
    """Register `plan` (idempotent) and return its plan hash as the database computed it."""
    return _register(conn, "plan", f"plan {plan.id}", plan.document, plan.hash, trace_id)


def _register(
    conn: psycopg.Connection[Any], what: str, label: str, document: dict[str, Any], expected: str, trace_id: str | None
) -> str:
    """One transaction (a savepoint inside the caller's): registered only if both hashes agree.

    GateRefused (exit 3) when the session may not register, SpecError (exit 2) for a document the
    database refuses, LedgerBroken (exit 7) when the two canonicalizers disagree: an integrity failure
    that retrying cannot fix, and nothing is registered."""
    nul = f"{label} holds a character PostgreSQL text cannot store (NUL, \\u0000); remove it from the spec."
    with translated({"22P05": nul}), conn.transaction():
        ledger.trace_context(conn, trace_id)  # register_spec takes no trace id: the transaction carries it
        row = conn.execute(_QUERIES[what], (Jsonb(document),)).fetchone()
        computed = str(row[0]) if row and row[0] is not None else ""
        if computed != expected:
            raise LedgerBroken(
                f"the database computed {what} hash {computed[:12] or 'nothing'}… for {label} but gcos computed "
                f"{expected[:12] or 'nothing'}…: the canonical JSON of the database and of this gcos disagree, so "
                "nothing was registered; run `gcos install` to align the gcos schema and report the spec if it "
                "persists.",
                details={"what": what, "label": label, "database": computed, "client": expected},
            )
    return computed
