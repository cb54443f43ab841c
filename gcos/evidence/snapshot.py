"""What the database says, read once: the ledger (every record and the head), the approvals tables, the
registered spec and plan documents, the principals, and the database's identity and time, in ONE
``REPEATABLE READ, READ ONLY`` transaction. The chain is verified before anything else happens (a report is
never built from a broken ledger), and the approvals tables must say what the ledger's approval records say."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from gcos import ledger, state
from gcos.domain import Kind
from gcos.errors import LedgerBroken, SpecError, translated


@dataclass(frozen=True)
class Snapshot:
    rows: list[ledger.Row]
    entries: list[ledger.LedgerEntry]
    head: tuple[int, str] | None
    system_identifier: str
    database: str
    db_now: datetime
    approval_rows: list[tuple[Any, ...]]
    principals: dict[int, state.PrincipalNow]
    documents: Mapping[str, str] = field(default_factory=dict)  # registered spec/plan hash -> canonical text


def read_snapshot(conn: psycopg.Connection[Any]) -> Snapshot:
    """Read everything a report shows in one snapshot of `conn` (which must be idle); LedgerBroken if the chain
    does not verify, SpecError if gcos is not installed."""
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise SpecError("A report reads the database in its own transaction; commit or roll back first.")
    with translated(), conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        found = conn.execute("SELECT pg_catalog.to_regclass('gcos.ledger') IS NOT NULL").fetchone()
        if found is None or not found[0]:
            raise SpecError("gcos is not installed in this database; run `gcos install` first.")
        ident = conn.execute(
            "SELECT s.system_identifier::text, pg_catalog.current_database()::text, pg_catalog.now() "
            "FROM pg_catalog.pg_control_system() AS s"
        ).fetchone()
        assert ident is not None
        rows = [
            ledger.Row(int(r[0]), str(r[1]), str(r[2]), str(r[3]))
            for r in conn.execute("SELECT seq, prev_hash, hash, canonical FROM gcos.ledger ORDER BY seq, hash")
        ]
        heads = conn.execute("SELECT seq, hash FROM gcos.ledger_head").fetchall()
        approval_rows = conn.execute(
            "SELECT a.id, a.step_id, a.spec_hash, a.plan_hash, a.verdict, a.expires_at, a.ledger_seq, r.ledger_seq "
            "FROM gcos.os_proposal_approvals AS a LEFT JOIN gcos.approval_revocations AS r ON r.approval_id = a.id "
            "ORDER BY a.id"
        ).fetchall()
        principal_rows = conn.execute(
            "SELECT p.role_oid::bigint, p.display_name, p.kind, p.roles, COALESCE(r.rolsuper, false), "
            "r.oid IS NOT NULL FROM gcos.principals AS p LEFT JOIN pg_catalog.pg_roles AS r ON r.oid = p.role_oid"
        ).fetchall()
        documents = {
            str(h): str(text)
            for h, text in conn.execute(
                "SELECT spec_hash, canonical FROM gcos.specs UNION ALL SELECT plan_hash, canonical FROM gcos.plans"
            )
        }
    head = (int(heads[0][0]), str(heads[0][1])) if len(heads) == 1 else None
    check = ledger.check_rows(rows, head=head)
    if not check.ok:
        raise LedgerBroken(
            f"The ledger is broken at seq {check.first_bad_seq} ({check.reason}); no report is built from a broken "
            "ledger: run `gcos ledger verify` and keep the database as evidence.",
            details=check,
        )
    if head is not None and head[0] == 0:
        head = None
    principals = {
        int(oid): state.PrincipalNow(int(oid), name, kind if exists else None, tuple(roles or ()), bool(superuser))
        for oid, name, kind, roles, superuser, exists in principal_rows
    }
    entries = [
        ledger.LedgerEntry(r.seq, r.prev_hash, r.hash, r.canonical, ledger.parse_canonical(r.canonical)) for r in rows
    ]
    return Snapshot(rows, entries, head, str(ident[0]), str(ident[1]), ident[2], approval_rows, principals, documents)


def time_or_none(text: Any) -> datetime | None:
    """A time from a ledger record, or None where it is not one."""
    try:
        return state.parse_time(text)
    except ValueError:
        return None


def expired(text: Any, db_now: datetime) -> bool:
    """Whether an expiry from a ledger record had passed at the report's database time (``<=`` is expired)."""
    moment = time_or_none(text)
    return moment is None or moment <= db_now


def cross_check_approvals(snapshot: Snapshot) -> None:
    """The approvals tables must say what the ledger's approval records say (they are written together)."""
    revoked = {
        int(e.payload["approval_id"]): e.seq
        for e in snapshot.entries
        if e.kind == Kind.APPROVAL_REVOCATION and isinstance(e.payload.get("approval_id"), int)
    }
    from_ledger = set()
    for e in snapshot.entries:
        if e.kind != Kind.APPROVAL or not isinstance(e.payload.get("approval_id"), int):
            continue
        aid = int(e.payload["approval_id"])
        expires = time_or_none(e.payload.get("expires_at"))
        from_ledger.add(
            (
                aid,
                e.record.get("step_id"),
                e.record.get("spec_hash"),
                e.payload.get("plan_hash"),
                e.payload.get("verdict"),
                expires,
                e.seq,
                revoked.get(aid),
            )
        )
    from_table = {tuple(r) for r in snapshot.approval_rows}
    if from_ledger != from_table:
        odd = sorted({str(x[0]) for x in from_ledger ^ from_table})
        raise LedgerBroken(
            f"The approvals in gcos.os_proposal_approvals and in the ledger disagree (approval {', '.join(odd)}); "
            "run `gcos ledger verify` and keep the database as evidence."
        )
