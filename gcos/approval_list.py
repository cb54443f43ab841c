"""`gcos approvals [STEP]`: every approval recorded (of one step, or all), with the id `gcos revoke` needs, who,
the verdict, when it expires, whether it was revoked, and whether it counts now. "Counts now" is the database's
word: the ids gate 5 relied on when it evaluated the step for `gcos status` (nobody committing)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import psycopg

from gcos import domain, gates, ledger, state
from gcos.spec import Project


@dataclass(frozen=True)
class ApprovalRow:
    id: int
    step: str
    subject: str  # commit | rollback | another spec
    verdict: str
    approver: str
    approver_roles: tuple[str, ...]
    created_at: str
    expires_at: str
    revoked: str | None  # "by WHO at WHEN (reason)" when revoked
    in_force: bool  # neither expired nor revoked
    counts: bool  # gate 5 counts it now
    why: str  # one phrase: why it counts or not


@dataclass(frozen=True)
class ApprovalList:
    step: str | None
    approvals: tuple[ApprovalRow, ...]


QUERY = """
SELECT id, step_id, spec_hash, verdict, approver, approver_roles, created_at, expires_at,
       revoked_by, revoked_at, revocation_reason, in_force
  FROM gcos.approval_status
 WHERE %(step)s::text IS NULL OR step_id = %(step)s::text
 ORDER BY id
"""


def read(
    conn: psycopg.Connection[Any], project: Project, step_id: str | None, counting: Mapping[str, Collection[int]]
) -> ApprovalList:
    """The approvals of `step_id` (all when None); `counting` maps a step to the approval ids gate 5 counts now."""
    out = []
    for r in conn.execute(QUERY, {"step": step_id}).fetchall():
        (aid, sid, spec_hash, verdict, approver, roles, created, expires, rev_by, rev_at, rev_reason, in_force) = r
        step = project.steps.get(sid)
        if step is not None and spec_hash == step.hash:
            subject = "commit"
        elif step is not None and spec_hash == gates.rollback_subject_hash(step.hash):
            subject = "rollback"
        else:
            subject = "another spec"
        counts = aid in counting.get(sid, ())
        revoked = (
            f"by {rev_by} at {rev_at.isoformat()}" + (f" ({rev_reason})" if rev_reason else "") if rev_at else None
        )
        out.append(
            ApprovalRow(
                aid,
                sid,
                subject,
                verdict,
                approver,
                tuple(roles),
                created.isoformat(),
                expires.isoformat(),
                revoked,
                bool(in_force),
                counts,
                _why(counts, bool(in_force), revoked, subject, verdict),
            )
        )
    return ApprovalList(step_id, tuple(out))


def counting(conn: psycopg.Connection[Any], project: Project, step_id: str | None) -> dict[str, tuple[int, ...]]:
    """The approval ids gate 5 counts now for each step (or `step_id`), as the database evaluates a commit for
    someone who only looks; a committed step's approvals are spent (state.py), so none counts."""
    entries = ledger.read_all(conn)
    states = state.project_states(entries, project)
    out = {}
    for sid, step in project.steps.items():
        if step_id not in (None, sid) or states[sid].state == domain.StepState.COMMITTED:
            continue
        measured = gates.world(as_actor=False)
        decision = gates.evaluate(
            conn, step, project.plan_of(sid), action="commit", measured=measured, trace_id=ledger.new_trace_id()
        )
        out[sid] = decision.gate("approvals").evidence  # those that count, also while too few
    return out


def _why(counts: bool, in_force: bool, revoked: str | None, subject: str, verdict: str) -> str:
    if counts:
        return "counts now"
    if revoked:
        return "revoked"
    if not in_force:
        return "expired"
    if subject == "another spec":
        return "bound to another spec hash (the spec changed since)"
    if subject == "rollback":
        return "approves the rollback, not the commit"
    if verdict != "approve":
        return f"verdict {verdict} does not approve"
    return "does not count now: gcos status STEP says why"
