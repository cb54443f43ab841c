"""The seven commit and rollback gates, as the database decides them (CONTRACT.md "Gates that COMMIT must pass").

The rules live in one place: ``gcos.evaluate_gates`` (gcos/sql/010_gates.sql). It reads the ledger, the
approvals, the decisions, who the principals are now, the database incarnation and its own clock, and judges
the REGISTERED spec and plan against the world the caller measured in its transaction (the schema
fingerprint, re-verify, the plan's global stops). :func:`evaluate` is the one call of it; :func:`world` builds
what it is given. Nothing here decides a gate: this module holds the decision's types (a
:class:`PolicyDecisionRecord` of seven :class:`GateResult`, built from the database's payload), the words
and constants used to render them, and the best-effort registration a judgement needs.

Every commit or rollback attempt writes the decision's payload (plus its trace id) to the ledger as a
``policy_decision`` record, allowed or refused (seed 001: PolicyDecisionRecord; seed 000: fail-closed gates).
A table that disagrees with the ledger raises GC007 in the database: LedgerBroken, exit 7.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from gcos import registry
from gcos.canonical import content_hash
from gcos.domain import Gate
from gcos.errors import GateRefused, translated
from gcos.spec import PlanSpec, StepSpec

FORMAT_VERSION = 1
VERDICTS = ("approve", "reject", "approve_with_conditions", "defer")
ACTIONS = ("commit", "rollback")
SUBJECT_STEP = "step"
SUBJECT_ROLLBACK = "rollback"
CONFLICT_TEXT = {  # gcos.principal_conflicts codes, as words after "who is" (gcos._conflicts_text says the same)
    "superuser": "a superuser",
    "createrole": "a CREATEROLE role (before PostgreSQL 16 it can grant itself gcos_owner)",
    "gcos_kernel": "a member of gcos_kernel",
    "gcos_owner": "a member of gcos_owner",
    "gcos_admin": "a member of gcos_admin",
    "pg_write_all_data": "a member of pg_write_all_data (it writes every table around the grants)",
    "pg_maintain": "a member of pg_maintain (it can lock and maintain every table)",
    "admin": "a gcos admin",
}

GATE_TITLES = {str(g): g.heading for g in Gate}  # gate id -> title (domain.Gate holds them)
GATE_NAMES = tuple(str(g) for g in Gate)  # in contract order: gate 1 is "spec", gate 7 is "state"
_TRACE = re.compile(r"[0-9a-f]{32}")


def rollback_subject_hash(spec_hash: str) -> str:
    """What a rollback approval binds instead of the spec hash: sha256(JCS({"rollback_of": spec_hash})).

    ``gcos.record_approval`` has no subject column, so an approval of the rollback of a step is recorded
    with this hash in ``spec_hash`` (``gcos.rollback_subject_hash`` computes the same); it can never be
    mistaken for (or count as) an approval of the commit."""
    return content_hash({"rollback_of": spec_hash})


def conflicts_text(codes: Iterable[str]) -> str:
    """Separation-of-duties conflicts (``gcos.principal_conflicts`` codes) as words: "a member of gcos_owner"."""
    return ", ".join(CONFLICT_TEXT.get(c, f"in conflict ({c})") for c in codes)


def short(value: str | None) -> str:
    """A hash as people read it in a sentence: its first 12 hex digits and an ellipsis (``gcos._short``)."""
    return f"{value[:12]}…" if value else "(none)"


def utc_text(at: datetime) -> str:
    """A time as the ledger writes it: UTC, microseconds, a trailing Z."""
    if at.tzinfo is None:
        raise ValueError("gcos compares aware datetimes only (the database clock is timestamptz)")
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --------------------------------------------------------------------------- the decision's types


@dataclass(frozen=True)
class GateResult:
    gate: str  # spec | dependencies | reverify | rehearsal | approvals | decisions | state
    allow: bool
    reason: str  # a plain sentence (no trailing period), why it holds or not
    remedy: str  # what opens it, ending with the command, e.g. "ask a sovereign to run: gcos approve ..."
    number: int = 0  # the contract's gate number, 1-7
    known: bool = True  # False: could not be decided from what was measured (fail closed: refused)
    command: str = ""  # the bare command inside the remedy
    evidence: tuple[int, ...] = ()  # approval ids, decision ids or ledger seqs this gate relied on
    decisive: bool = False  # a refusal that makes every other one moot (already committed, nothing to undo)

    @property
    def title(self) -> str:
        return GATE_TITLES.get(self.gate, self.gate)

    @classmethod
    def from_payload(cls, g: Mapping[str, Any]) -> GateResult:
        """One gate of a ``policy_decision`` payload (the database's, or one read back from the ledger)."""
        return cls(
            gate=str(g["gate"]),
            allow=g["allow"] is True,
            reason=str(g.get("reason") or ""),
            remedy=str(g.get("remedy") or ""),
            number=int(g.get("number") or 0),
            known=g.get("known", True) is True,
            command=str(g.get("command") or ""),
            evidence=tuple(int(e) for e in g.get("evidence") or ()),
            decisive=g.get("decisive", False) is True,
        )

    def to_payload(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "gate": self.gate,
            "allow": self.allow,
            "known": self.known,
            "reason": self.reason,
            "remedy": self.remedy,
            "command": self.command,
            "evidence": list(self.evidence),
            "decisive": self.decisive,
        }


@dataclass(frozen=True)
class PolicyDecisionRecord:
    allow: bool
    action: str
    step_id: str
    spec_hash: str
    plan_hash: str | None
    gates: tuple[GateResult, ...]
    trace_id: str
    evaluated_at: str  # the database clock, UTC ISO text with microseconds
    # the exceptions (025) this decision honours: exception_id, check_kind, check, by, expires_at, reason ...
    exceptions: tuple[dict[str, Any], ...] = ()

    @property
    def failed(self) -> tuple[GateResult, ...]:
        return tuple(g for g in self.gates if not g.allow)

    @property
    def first_failed(self) -> GateResult | None:
        """The refusal to tell first: a decisive one (already committed, nothing to roll back), else gate order."""
        failed = self.failed
        return next((g for g in failed if g.decisive), failed[0]) if failed else None

    def gate(self, name: str) -> GateResult:
        for result in self.gates:
            if result.gate == name:
                return result
        raise KeyError(name)

    def refusal_sentence(self) -> str:
        """The first failed gate's reason and remedy as one sentence ('' when every gate holds), as the
        database's payload says it (``refusal``)."""
        first = self.first_failed
        if first is None:
            return ""
        text = f"{first.reason}; {first.remedy}" if first.remedy else first.reason
        return text[:1].upper() + text[1:]

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any], *, trace_id: str | None = None) -> PolicyDecisionRecord:
        """A decision from its payload (``gcos.evaluate_gates``'s answer, or a ledger record's)."""
        return cls(
            allow=payload["allow"] is True,
            action=str(payload["action"]),
            step_id=str(payload.get("step_id") or ""),
            spec_hash=str(payload["spec_hash"]),
            plan_hash=payload.get("plan_hash"),
            gates=tuple(GateResult.from_payload(g) for g in payload["gates"]),
            trace_id=trace_id if trace_id is not None else str(payload.get("trace_id") or ""),
            evaluated_at=str(payload.get("evaluated_at") or ""),
            exceptions=tuple(dict(e) for e in payload.get("exceptions") or ()),
        )

    def to_payload(self) -> dict[str, Any]:
        """The ledger payload of kind "policy_decision" (strings, integers, booleans and null only)."""
        return {
            "format_version": FORMAT_VERSION,
            "allow": self.allow,
            "action": self.action,
            "step_id": self.step_id,
            "spec_hash": self.spec_hash,
            "plan_hash": self.plan_hash,
            "trace_id": self.trace_id,
            "evaluated_at": self.evaluated_at,
            "gates": [g.to_payload() for g in self.gates],
            "failed": [g.gate for g in self.failed],
            "refusal": self.refusal_sentence() or None,
            "exceptions": [dict(e) for e in self.exceptions],
        }


# --------------------------------------------------------------------------- the one evaluation


def world(
    *,
    schema_hash: str | None = None,
    reverify: Sequence[Mapping[str, Any]] | None = None,
    global_stops: Sequence[Mapping[str, Any]] | None = None,
    as_actor: bool = True,
) -> dict[str, Any]:
    """The measured world ``gcos.evaluate_gates`` judges (p_world). A part left None was not measured: the
    gates that need it refuse as unknown. `reverify` is one ``gcos.evaluate_check`` result per re-verify check
    of the spec, in order ({name, expected, actual, ok, error}); `global_stops` one {name, holds, detail} per
    global stop item of the plan but max_new_tables; `as_actor` False (``gcos status``): nobody is committing,
    so the session's own approvals are not self-approvals."""
    measured: dict[str, Any] = {}
    if schema_hash is not None:
        measured["schema_hash"] = schema_hash
    if reverify is not None:
        measured["reverify"] = [dict(r) for r in reverify]
    if global_stops is not None:
        measured["global_stops"] = [dict(s) for s in global_stops]
    if not as_actor:
        measured["as_actor"] = False
    return measured


def evaluate(
    conn: psycopg.Connection[Any],
    step: StepSpec,
    plan: PlanSpec | None,
    *,
    action: str,
    measured: Mapping[str, Any],
    trace_id: str,
) -> PolicyDecisionRecord:
    """Every gate of `action` on `step` under `plan`, decided by the database now, in the caller's transaction
    (with the session's role as the committer unless `measured` says ``as_actor`` false). The registered
    documents with these hashes are judged: register them first (:func:`register`). LedgerBroken (exit 7)
    when the approvals or decisions tables disagree with the ledger (GC007)."""
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {', '.join(ACTIONS)}, not {action!r}")
    if not _TRACE.fullmatch(trace_id):
        raise ValueError("trace_id must be 32 lowercase hex digits")
    with translated():
        row = conn.execute(
            "SELECT gcos.evaluate_gates(%s, %s, %s, %s)",
            (step.hash, plan.hash if plan else None, action, Jsonb(dict(measured))),
        ).fetchone()
    assert row is not None  # a function call always returns its row
    return PolicyDecisionRecord.from_payload(row[0], trace_id=trace_id)


def explain(
    conn: psycopg.Connection[Any], step: StepSpec, plan: PlanSpec | None, *, trace_id: str
) -> PolicyDecisionRecord:
    """The decision a commit of `step` would get now, on the world as the KERNEL measures it (where schema
    public is adopted: ``gcos.explain_gates``), for someone who only looks. The kernel reads what it owns,
    which a sovereign or an operator may not be able to read."""
    with translated():
        row = conn.execute(
            "SELECT gcos.explain_gates(%s, %s, 'commit')", (step.hash, plan.hash if plan else None)
        ).fetchone()
    assert row is not None  # a function call always returns its row
    return PolicyDecisionRecord.from_payload(row[0], trace_id=trace_id)


def register(conn: psycopg.Connection[Any], step: StepSpec, plan: PlanSpec | None) -> bool:
    """Register `step` and its plan (idempotent, content-addressed) so that the database can judge them;
    False when the session's role may not register (only operators, admins and superusers may: a sovereign,
    council member or auditor is told by gate 1 that the spec is not registered and what registers it)."""
    try:
        registry.register_spec(conn, step)
        if plan is not None:
            registry.register_plan(conn, plan)
    except GateRefused:
        return False
    return True
