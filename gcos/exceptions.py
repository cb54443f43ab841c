"""Expiring exceptions (seed 000 P4): a sovereign waives one named check of one step, for a while.

``gcos except STEP CHECK --expires-in D --reason T`` calls ``gcos.record_exception`` (gcos/sql/025_exceptions.sql),
which stamps the sovereign from ``session_user`` (a council member, an agent or a superuser is refused, exit 3),
binds the waiver to the step's registered spec hash, the check's kind and name and this database, and appends
an ``exception`` ledger record. Expiry is the database clock's, like approvals'. Whether an exception applies is
decided in the database at rehearsal and commit (never the committer's own); this module only records,
revokes and lists.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from gcos import ledger
from gcos.approvals import aperture_row, parse_duration
from gcos.errors import SpecError, translated
from gcos.spec import StepSpec, load_project
from gcos.target import SessionSettings, Target, connect

CHECK_KINDS = ("stop", "success", "reverify")


@dataclass(frozen=True)
class ExceptionReceipt:
    exception_id: int
    ledger_seq: int
    step_id: str
    spec_hash: str
    check_kind: str  # stop | success | reverify
    check: str
    expires_at: datetime
    reason: str
    principal: str  # the sovereign, from the session role


@dataclass(frozen=True)
class ExceptionRevocation:
    revocation_id: int
    ledger_seq: int
    exception_id: int
    step_id: str
    check: str
    revoked_by: str
    reason: str | None


def check_kind(step: StepSpec, check: str, kind: str | None = None) -> str:
    """The kind of the step's check named `check` (stop, success or reverify); SpecError when the spec has no
    such check, or has one of that name in two kinds and `kind` does not say which."""
    if kind is not None and kind not in CHECK_KINDS:
        raise SpecError(f"check kind {kind!r} is not one of {', '.join(CHECK_KINDS)}.")
    found = [
        k
        for k, items in (("stop", step.stop), ("success", step.success), ("reverify", step.reverify))
        if (kind in (None, k)) and any(c.name == check for c in items)
    ]
    if not found:
        raise SpecError(f"{step.id} has no {kind or 'stop, success or re-verify'} check named {check!r}.")
    if len(found) > 1:
        raise SpecError(f"{step.id} has checks named {check!r} of kinds {', '.join(found)}; say which with --kind.")
    return found[0]


def record(
    target: Target,
    project_dir: Path,
    step_ref: str,
    check: str,
    *,
    expires_in: str,
    reason: str,
    kind: str | None = None,
    settings: SessionSettings | None = None,
) -> ExceptionReceipt:
    """Waive `check` of the step as the connection's sovereign, bound to the step's current spec hash (registered
    by its rehearsal), expiring `expires_in` after the database clock's now."""
    step = load_project(project_dir).step(step_ref)
    delta = parse_duration(expires_in)
    if not reason or not reason.strip():
        raise SpecError("an exception needs a reason (--reason): it is shown wherever the check is waived.")
    found = check_kind(step, check, kind)
    with connect(target, settings) as conn, translated():
        exception_id, ledger_seq = aperture_row(
            conn,
            "SELECT exception_id, ledger_seq FROM gcos.record_exception(%s, %s, %s, %s, "
            "pg_catalog.clock_timestamp() + %s::interval, %s, %s)",
            (step.id, step.hash, found, check, delta, reason, ledger.new_trace_id()),
        )[:2]
        expires_at, principal = aperture_row(
            conn, "SELECT expires_at, recorder FROM gcos.exceptions WHERE id = %s", (exception_id,)
        )
    return ExceptionReceipt(
        int(exception_id), int(ledger_seq), step.id, step.hash, found, check, expires_at, reason, principal
    )


def revoke(
    target: Target, exception_id: int, *, reason: str | None = None, settings: SessionSettings | None = None
) -> ExceptionRevocation:
    """Withdraw an exception (an append: the exception stays, a revocation joins it and the ledger)."""
    with connect(target, settings) as conn, translated():
        revocation_id, ledger_seq = aperture_row(
            conn,
            "SELECT revocation_id, ledger_seq FROM gcos.revoke_exception(%s, %s, %s)",
            (exception_id, reason, ledger.new_trace_id()),
        )[:2]
        step_id, check, revoked_by = aperture_row(
            conn,
            "SELECT e.step_id, e.check_name, r.revoked_by FROM gcos.exception_revocations r "
            "JOIN gcos.exceptions e ON e.id = r.exception_id WHERE r.id = %s",
            (revocation_id,),
        )
    return ExceptionRevocation(int(revocation_id), int(ledger_seq), exception_id, step_id, check, revoked_by, reason)


def on_record(conn: psycopg.Connection[Any], step_id: str | None = None) -> list[dict[str, Any]]:
    """Every exception (of one step, or all), with its revocation and whether it is in force now (the database
    clock): what reports show."""
    rows = conn.execute(
        "SELECT e.id, e.step_id, e.spec_hash, e.check_kind, e.check_name, e.reason, e.recorder, "
        "gcos._utc(e.expires_at), e.ledger_seq, r.revoked_by, "
        "r.id IS NULL AND e.expires_at > pg_catalog.clock_timestamp() "
        "FROM gcos.exceptions e LEFT JOIN gcos.exception_revocations r ON r.exception_id = e.id "
        "WHERE %s::text IS NULL OR e.step_id = %s ORDER BY e.id",
        (step_id, step_id),
    ).fetchall()
    keys = ("exception_id", "step_id", "spec_hash", "check_kind", "check", "reason", "by", "expires_at",
            "ledger_seq", "revoked_by", "in_force")  # fmt: skip
    return [dict(zip(keys, row, strict=True)) for row in rows]
