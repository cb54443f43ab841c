"""The commit and rollback gates as pure functions of facts (CONTRACT.md "Gates that COMMIT must pass").

Nothing here touches a database or reads a clock: the caller gathers :class:`Facts` (``approvals.gather_facts``
does, inside the commit transaction, with the database's ``clock_timestamp()`` as ``db_now``) and
:func:`evaluate` turns them into a :class:`PolicyDecisionRecord` - one :class:`GateResult` per contract gate,
each with a plain reason and the command that would open it. The record is written to the ledger for every
commit or rollback attempt, allowed or refused (seed 001: PolicyDecisionRecord; seed 000: fail-closed gates).

The rules of gate 5 (seed 002 §70.0 M-1, seed 004 §§3-5, seed 000 P4):

* only the verdict ``approve`` opens it (``reject``, ``defer``, ``approve_with_conditions`` never do);
* the approval is bound to this spec hash, this plan hash and this target (system identifier, database
  name and, when the facts know it, database OID: a same-cluster clone renamed to the original's name has
  another OID; an approval recorded before OIDs were bound never counts then), and to the subject of the
  action: approvals of a step's commit and of its rollback never stand in for each other (a rollback
  approval is recorded with ``spec_hash = rollback_subject_hash(spec hash)``);
* it is unexpired by the database clock, knife-edge inclusive (``expires_at <= db_now`` is expired), and
  unrevoked; an approval recorded before the step's last commit or rollback is spent;
* the approver is a human principal, not a superuser, holding one of the step's signer roles, and with no
  separation-of-duties conflict NOW (``conflicts``: member of gcos_kernel, gcos_owner or gcos_admin, a gcos
  admin, or CREATEROLE before PostgreSQL 16 - read at commit time, so a membership granted after approving
  still drops the approval);
* the approver is neither the principal who ran the rehearsal being relied on nor the one committing
  (no self-approval);
* each principal's latest word counts (a later ``reject`` by the same principal supersedes an ``approve``);
  signers are distinct principals: by role OID, and two roles mapped to one person's name count once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gcos.canonical import content_hash

FORMAT_VERSION = 1
VERDICTS = ("approve", "reject", "approve_with_conditions", "defer")
ACTIONS = ("commit", "rollback")
SUBJECT_STEP = "step"
SUBJECT_ROLLBACK = "rollback"
HUMAN = "human"
COMMITTED = "committed"
DEFAULT_EXPIRY = "24h"  # what remedies suggest for --expires-in
CONFLICT_TEXT = {  # gcos.principal_conflicts codes, as words after "who is"
    "superuser": "a superuser",
    "createrole": "a CREATEROLE role (before PostgreSQL 16 it can grant itself gcos_owner)",
    "gcos_kernel": "a member of gcos_kernel",
    "gcos_owner": "a member of gcos_owner",
    "gcos_admin": "a member of gcos_admin",
    "pg_write_all_data": "a member of pg_write_all_data (it writes every table around the grants)",
    "pg_maintain": "a member of pg_maintain (it can lock and maintain every table)",
    "admin": "a gcos admin",
}
MAX_LISTED = 5  # approvals named one by one in a reason

GATE_TITLES = {
    "spec": "spec and plan valid, fold-ins declared",
    "dependencies": "dependencies committed",
    "reverify": "re-verify holds now",
    "rehearsal": "rehearsed entry==exit on this spec and schema",
    "approvals": "approved by distinct named humans",
    "decisions": "required decisions hold",
    "state": "global stops clear, step in the right state",
}


def rollback_subject_hash(spec_hash: str) -> str:
    """What a rollback approval binds instead of the spec hash: sha256(JCS({"rollback_of": spec_hash})).

    ``gcos.record_approval`` has no subject column, so an approval of the rollback of a step is recorded
    with this hash in ``spec_hash``; it can never be mistaken for (or count as) an approval of the commit."""
    return content_hash({"rollback_of": spec_hash})


def conflicts_text(codes: Iterable[str]) -> str:
    """Separation-of-duties conflicts (``gcos.principal_conflicts`` codes) as words: "a member of gcos_owner"."""
    return ", ".join(CONFLICT_TEXT.get(c, f"in conflict ({c})") for c in codes)


def short(value: str | None) -> str:
    """A hash as people read it in a sentence: its first 12 hex digits and an ellipsis."""
    return f"{value[:12]}…" if value else "(none)"


def utc_text(at: datetime) -> str:
    """A time as the ledger writes it: UTC, microseconds, a trailing Z."""
    if at.tzinfo is None:
        raise ValueError("gcos compares aware datetimes only (the database clock is timestamptz)")
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --------------------------------------------------------------------------- facts


@dataclass(frozen=True)
class ApprovalFact:
    """One recorded approval of a step (or of its rollback), as the gates see it.

    ``spec_hash`` is the step spec hash the approval is about (for a rollback approval: the spec whose
    rollback it approves, decoded from its recorded subject hash). ``kind``, ``roles`` and ``is_superuser``
    describe the approver NOW (a principal reclassified as an agent, or a role made superuser, stops
    counting); ``kind`` is None when the role is no longer a principal or no longer exists. ``database_oid``
    is None for approvals recorded before gcos bound the OID; ``conflicts`` are the approver's
    separation-of-duties conflicts now (``gcos.principal_conflicts``; ``approvals.gather_facts`` fills them)."""

    id: int
    step_id: str
    verdict: str
    principal: str | None
    role_oid: int
    kind: str | None
    roles: tuple[str, ...]
    is_superuser: bool
    spec_hash: str
    plan_hash: str
    system_identifier: str
    database: str
    expires_at: datetime
    revoked: bool
    subject: str = SUBJECT_STEP
    ledger_seq: int = 0
    role: str | None = None  # the database role name at approval time
    database_oid: int | None = None
    conflicts: tuple[str, ...] = ()


@dataclass(frozen=True)
class DecisionFact:
    id: int
    decision: str
    verdict: str
    principal: str | None
    role_oid: int
    kind: str | None
    is_superuser: bool
    expires_at: datetime
    revoked: bool
    ledger_seq: int = 0
    system_identifier: str | None = None  # the incarnation it was recorded in (None: before gcos schema 8)
    database: str | None = None
    database_oid: int | None = None
    conflicts: tuple[str, ...] = ()  # the decider's separation-of-duties conflicts now


@dataclass(frozen=True)
class RehearsalFact:
    seq: int
    spec_hash: str | None
    plan_hash: str | None
    outcome: str | None
    entry_schema_hash: str | None
    actor_role_oid: int | None
    actor_principal: str | None = None


@dataclass(frozen=True)
class Facts:
    """Everything the gates look at, gathered by the caller at one moment (``db_now``)."""

    step_id: str
    spec_hash: str
    plan_id: str | None
    plan_hash: str | None
    action: str  # commit | rollback
    mandatory_fold_ins: tuple[str, ...]
    declared_fold_ins: tuple[str, ...]
    dependency_states: dict[str, str]  # depends_on id -> state from the projection
    reverify_ok: bool | None
    reverify_reason: str
    rehearsal: RehearsalFact | None  # commit: the latest rehearsal since the last commit/rollback;
    # rollback: the latest rehearsal before the commit being undone (it proved the rollback evidence)
    current_schema_hash: str | None  # recomputed now; None = not known (e.g. for status)
    approvals: tuple[ApprovalFact, ...]  # every approval recorded for this step id, either subject
    signers_required: int
    signer_roles: tuple[str, ...]
    decisions_required: tuple[str, ...]
    decisions: tuple[DecisionFact, ...]
    global_stops_held: tuple[str, ...]
    state: str  # this step's state from the projection
    actor_role_oid: int  # who commits / rolls back (session_user)
    target_system_identifier: str
    target_database: str
    db_now: datetime  # the DATABASE's clock_timestamp()
    actor_principal: str | None = None
    dependents_committed: tuple[str, ...] = ()  # committed steps that depend on this one (rollback)
    epoch_seq: int = 0  # seq of the step's last commit (rollback) or last rollback (commit): older approvals are spent
    commit_seq: int | None = None  # the commit in force (rollback)
    committed_spec_hash: str | None = None
    commit_schema_hash: str | None = None  # schema fingerprint recorded right after that commit
    target_database_oid: int | None = None  # None: the incarnation is unknown, OIDs are not compared


@dataclass(frozen=True)
class GateResult:
    gate: str  # spec | dependencies | reverify | rehearsal | approvals | decisions | state
    allow: bool
    reason: str  # a plain sentence (no trailing period), why it holds or not
    remedy: str  # what opens it, ending with the command, e.g. "ask a sovereign to run: gcos approve ..."
    number: int = 0  # the contract's gate number, 1-7
    known: bool = True  # False: could not be decided from these facts (status without a live check)
    command: str = ""  # the bare command inside the remedy
    evidence: tuple[int, ...] = ()  # approval ids, decision ids or ledger seqs this gate relied on
    decisive: bool = False  # a refusal that makes every other one moot (already committed, nothing to undo)

    @property
    def title(self) -> str:
        return GATE_TITLES.get(self.gate, self.gate)

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
    evaluated_at: str  # db_now, UTC ISO text with microseconds

    @property
    def failed(self) -> tuple[GateResult, ...]:
        return tuple(g for g in self.gates if not g.allow)

    def gate(self, name: str) -> GateResult:
        for result in self.gates:
            if result.gate == name:
                return result
        raise KeyError(name)

    def refusal_sentence(self) -> str:
        """The first failed gate's reason and remedy as one sentence ('' when every gate holds); a decisive
        refusal (the step is already committed, or there is no commit to roll back) goes first."""
        if self.allow:
            return ""
        failed = self.failed
        first = next((g for g in failed if g.decisive), failed[0])
        text = f"{first.reason}; {first.remedy}" if first.remedy else first.reason
        return text[:1].upper() + text[1:]

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
        }


# --------------------------------------------------------------------------- approval rules


@dataclass(frozen=True)
class ApprovalCount:
    """How the approvals of one subject stand: which count, and why each other one does not."""

    counted: tuple[ApprovalFact, ...]  # one per distinct principal
    discounted: tuple[tuple[ApprovalFact, str], ...]  # (approval, why it does not count)
    required: int
    self_approvals: tuple[ApprovalFact, ...] = ()  # discounted as the rehearser's or the committer's own

    @property
    def holds(self) -> bool:
        return len(self.counted) >= self.required


_SELF = "(no self-approval)"


def _norm_name(name: str | None) -> str | None:
    return " ".join(name.split()).casefold() if name else None


def _who(a: ApprovalFact | DecisionFact) -> str:
    return a.principal or f"role oid {a.role_oid}"


def _same_person(oid: int, name: str | None, other_oid: int | None, other_name: str | None) -> bool:
    if other_oid is not None and oid == other_oid:
        return True
    mine, theirs = _norm_name(name), _norm_name(other_name)
    return mine is not None and mine == theirs


def count_approvals(
    approvals: Iterable[ApprovalFact],
    *,
    step_id: str,
    spec_hash: str,
    plan_hash: str | None,
    subject: str,
    required: int,
    signer_roles: Sequence[str],
    db_now: datetime,
    system_identifier: str | None = None,
    database: str | None = None,
    rehearser: tuple[int | None, str | None] | None = None,
    actor: tuple[int | None, str | None] | None = None,
    epoch_seq: int = 0,
    database_oid: int | None = None,
) -> ApprovalCount:
    """Apply the gate-5 rules. `system_identifier`/`database`/`database_oid` None skips that part of the
    target check (a projection that does not know the target); `actor` None skips the committer check
    (status before anyone commits)."""
    mine = sorted((a for a in approvals if a.step_id == step_id), key=lambda a: (a.ledger_seq, a.id))
    discounted: list[tuple[ApprovalFact, str]] = []
    bound: list[ApprovalFact] = []
    for a in mine:
        target = (system_identifier, database, database_oid)
        why = _binding_problem(a, spec_hash, plan_hash, subject, target, db_now, epoch_seq)
        if why:
            discounted.append((a, why))
        else:
            bound.append(a)
    # Each principal's latest word (among approvals bound here and in force) is its verdict.
    latest: dict[int, ApprovalFact] = {}
    for a in bound:
        latest[a.role_oid] = a
    candidates: list[ApprovalFact] = []
    selfish: list[ApprovalFact] = []
    for a in bound:
        if latest[a.role_oid] is not a:
            later = latest[a.role_oid]
            if later.verdict == a.verdict:
                why = f"is by {_who(a)} again (as approval {later.id}): one person counts once"
            else:
                why = f"is superseded by {_who(a)}'s later {later.verdict} (approval {later.id})"
            discounted.append((a, why))
            continue
        why = _approver_problem(a, signer_roles, rehearser, actor)
        if why:
            discounted.append((a, why))
            if why.endswith(_SELF):
                selfish.append(a)
        else:
            candidates.append(a)
    counted: list[ApprovalFact] = []
    for a in candidates:
        twin = next((c for c in counted if _same_person(a.role_oid, a.principal, c.role_oid, c.principal)), None)
        if twin is not None:
            discounted.append(
                (a, f"is by {_who(a)} again (as approval {twin.id}): one person counts once, whatever their roles")
            )
        else:
            counted.append(a)
    discounted.sort(key=lambda item: item[0].id)
    return ApprovalCount(tuple(counted), tuple(discounted), required, tuple(selfish))


def _binding_problem(
    a: ApprovalFact,
    spec_hash: str,
    plan_hash: str | None,
    subject: str,
    target: tuple[str | None, str | None, int | None],
    db_now: datetime,
    epoch_seq: int,
) -> str | None:
    system_identifier, database, database_oid = target
    if a.subject != subject:
        what = "the rollback" if a.subject == SUBJECT_ROLLBACK else "the commit"
        wanted = "the rollback" if subject == SUBJECT_ROLLBACK else "the commit"
        return f"approves {what} of {a.step_id}, not {wanted}"
    if a.spec_hash != spec_hash:
        return f"is bound to spec {short(a.spec_hash)}, not the current {short(spec_hash)}"
    if plan_hash is None or a.plan_hash != plan_hash:
        return f"is bound to plan {short(a.plan_hash)}, not the current {short(plan_hash)}"
    if system_identifier is not None and a.system_identifier != system_identifier:
        return f"is from another database system ({a.system_identifier}, this is {system_identifier})"
    if database is not None and a.database != database:
        return f"is from another database ({a.database}, this is {database})"
    if database_oid is not None and a.database_oid != database_oid:
        return _incarnation_problem(a.database, a.database_oid, database_oid)
    if a.revoked:
        return "was revoked"
    if a.expires_at <= db_now:
        return f"expired at {utc_text(a.expires_at)} (database clock now {utc_text(db_now)})"
    if a.ledger_seq and a.ledger_seq <= epoch_seq:
        return f"was recorded before {a.step_id}'s last commit or rollback (seq {epoch_seq}) and is spent"
    return None


def _incarnation_problem(name: str | None, recorded: int | None, current: int) -> str:
    if recorded is None:
        return "was recorded before gcos bound approvals to the database OID, so it never counts; record it again"
    return (
        f"is from another incarnation of database {name} (OID {recorded}, this is OID {current}): "
        "a copy made with CREATE DATABASE … TEMPLATE refuses it"
    )


def _conflict_problem(who: str, conflicts: Sequence[str]) -> str:
    return (
        f"is by {who}, who is {conflicts_text(conflicts)}: separation of duties keeps whoever can change gcos "
        "from approving (revoke that from their role, or ask another approver)"
    )


def _approver_problem(
    a: ApprovalFact,
    signer_roles: Sequence[str],
    rehearser: tuple[int | None, str | None] | None,
    actor: tuple[int | None, str | None] | None,
) -> str | None:
    who = _who(a)
    if a.verdict != "approve":
        return f"has verdict {a.verdict} (only approve opens the gate)"
    if a.kind is None:
        return f"is by {who}, who is no longer a registered principal"
    if a.kind != HUMAN:
        article = "an" if a.kind[:1] in "aeiou" else "a"
        return f"is by {who}, {article} {a.kind} principal (only humans approve)"
    if a.is_superuser:
        return f"is by {who}, whose role is a superuser (a superuser's approval proves nothing)"
    if a.conflicts:
        return _conflict_problem(who, a.conflicts)
    if not set(a.roles) & set(signer_roles):
        held = ", ".join(a.roles) or "no gcos role"
        return f"is by {who}, who holds {held}, not {_roles_text(signer_roles)}"
    if rehearser is not None and _same_person(a.role_oid, a.principal, *rehearser):
        return f"is by {who}, who ran the rehearsal {_SELF}"
    if actor is not None and _same_person(a.role_oid, a.principal, *actor):
        role = "the one rolling it back" if a.subject == SUBJECT_ROLLBACK else "the committer himself"
        return f"is by {who}, {role} {_SELF}"
    return None


def _roles_text(roles: Sequence[str], *, article: bool = False) -> str:
    names = list(roles) or ["sovereign"]
    text = " or ".join(f"{r} member" if r == "council" else r for r in names)
    if not article:
        return text
    return ("an " if text[:1] in "aeiou" else "a ") + text


# --------------------------------------------------------------------------- the gates


def _approve_command(facts: Facts) -> str:
    flag = " --rollback" if facts.action == "rollback" else ""
    return f"gcos approve {facts.step_id}{flag} --verdict approve --expires-in {DEFAULT_EXPIRY}"


def _result(
    number: int,
    gate: str,
    allow: bool,
    reason: str,
    command: str,
    lead: str = "run",
    *,
    known: bool = True,
    evidence: Iterable[int] = (),
    decisive: bool = False,
) -> GateResult:
    remedy = f"{lead}: {command}" if command else lead
    return GateResult(gate, allow, reason, remedy, number, known, command, tuple(evidence), decisive)


def gate_spec(facts: Facts) -> GateResult:
    """Gate 1: the spec and plan validate (the caller loaded them) and the mandatory fold-ins are declared."""
    sid = facts.step_id
    if facts.plan_id is None or facts.plan_hash is None:
        return _result(
            1,
            "spec",
            False,
            f"{sid} is in no plan, so nothing can bind its plan hash",
            "gcos plan",
            f"add {sid} to a plan under plans/, then check with",
        )
    missing = [f for f in facts.mandatory_fold_ins if f not in facts.declared_fold_ins]
    if missing:
        return _result(
            1,
            "spec",
            False,
            f"plan {facts.plan_id} makes fold-in {', '.join(missing)} mandatory for {sid} and its spec "
            "does not declare it",
            f"gcos rehearse {sid}",
            f"apply and declare {', '.join(missing)} under fold_ins in {sid}'s spec, then run",
        )
    if facts.action == "rollback" and facts.committed_spec_hash and facts.committed_spec_hash != facts.spec_hash:
        return _result(
            1,
            "spec",
            False,
            f"{sid} was committed with spec {short(facts.committed_spec_hash)} but its spec is now "
            f"{short(facts.spec_hash)}: the rollback evidence to apply is not the one committed",
            f"gcos rollback {sid}",
            f"restore {sid}'s spec as committed ({short(facts.committed_spec_hash)}), then run",
        )
    declared = f"; fold-ins declared: {', '.join(facts.mandatory_fold_ins)}" if facts.mandatory_fold_ins else ""
    return _result(
        1,
        "spec",
        True,
        f"spec {short(facts.spec_hash)} and plan {facts.plan_id} {short(facts.plan_hash)} are valid{declared}",
        "",
        "nothing to do",
    )


def gate_dependencies(facts: Facts) -> GateResult:
    """Gate 2: every depends_on step is committed (commit); no committed step depends on it (rollback)."""
    sid = facts.step_id
    if facts.action == "rollback":
        if facts.dependents_committed:
            names = ", ".join(facts.dependents_committed)
            return _result(
                2,
                "dependencies",
                False,
                f"{names} depend{'s' if len(facts.dependents_committed) == 1 else ''} on {sid} and "
                f"{'is' if len(facts.dependents_committed) == 1 else 'are'} committed",
                f"gcos rollback {facts.dependents_committed[-1]}",
                "roll back the dependents first",
            )
        return _result(2, "dependencies", True, f"no committed step depends on {sid}", "", "nothing to do")
    waiting = [(d, s) for d, s in facts.dependency_states.items() if s != COMMITTED]
    if waiting:
        listed = ", ".join(f"{d} ({s})" for d, s in waiting)
        return _result(
            2,
            "dependencies",
            False,
            f"{sid} depends on {listed}, not yet committed",
            f"gcos commit {waiting[0][0]}",
            "commit it first",
        )
    deps = ", ".join(facts.dependency_states)
    return _result(
        2,
        "dependencies",
        True,
        f"dependencies {deps} are committed" if deps else "no dependencies",
        "",
        "nothing to do",
    )


def gate_reverify(facts: Facts) -> GateResult:
    """Gate 3: the live re-verify checks hold now (a rollback is proven by the fingerprint instead)."""
    sid = facts.step_id
    if facts.action == "rollback":
        return _result(
            3,
            "reverify",
            True,
            f"re-verify describes the world before {sid}'s commit; a rollback is "
            "proven by the pre-commit fingerprint instead",
            "",
            "nothing to do",
        )
    if facts.reverify_ok is None:
        return _result(
            3, "reverify", False, f"re-verify of {sid} has not been run here", f"gcos verify {sid}", known=False
        )
    if not facts.reverify_ok:
        why = facts.reverify_reason.strip().rstrip(".") or "a check does not hold"
        return _result(
            3,
            "reverify",
            False,
            f"re-verify of {sid} does not hold: {why}",
            f"gcos verify {sid}",
            "fix the world or the spec, then check with",
        )
    why = facts.reverify_reason.strip().rstrip(".")
    return _result(3, "reverify", True, f"re-verify of {sid} holds" + (f": {why}" if why else ""), "", "nothing to do")


def gate_rehearsal(facts: Facts) -> GateResult:
    """Gate 4: a passing rehearsal of THIS spec hash and plan, on the schema fingerprint the database has now."""
    sid = facts.step_id
    r = facts.rehearsal
    again = f"gcos rehearse {sid}"
    if facts.action == "rollback":
        if facts.commit_seq is None:
            return _result(
                4, "rehearsal", False, f"{sid} has no commit in force to roll back", f"gcos status {sid}", "check with"
            )
        if r is None or r.outcome != "passed" or r.spec_hash != facts.spec_hash:
            return _result(
                4,
                "rehearsal",
                False,
                f"no passing rehearsal of spec {short(facts.spec_hash)} preceded "
                f"{sid}'s commit (seq {facts.commit_seq}), so its rollback evidence is unproven",
                f"gcos status {sid}",
                "check with",
            )
        if facts.current_schema_hash is None:
            return _result(
                4,
                "rehearsal",
                False,
                f"rehearsal seq {r.seq} proved the rollback evidence; the schema "
                f"is compared with the one after commit seq {facts.commit_seq} when rolling back",
                f"gcos rollback {sid}",
                "compared by",
                known=False,
                evidence=(r.seq,),
            )
        if facts.commit_schema_hash is None or facts.current_schema_hash != facts.commit_schema_hash:
            return _result(
                4,
                "rehearsal",
                False,
                f"database changed since the commit of {sid} (seq "
                f"{facts.commit_seq}: schema {short(facts.commit_schema_hash)}, now "
                f"{short(facts.current_schema_hash)}) — its rollback evidence no longer applies",
                "gcos drift",
                "find what changed with",
            )
        return _result(
            4,
            "rehearsal",
            True,
            f"rehearsal seq {r.seq} proved the rollback evidence and the schema "
            f"is as commit seq {facts.commit_seq} left it",
            "",
            "nothing to do",
            evidence=(r.seq,),
        )
    if r is None:
        after = ""
        if facts.epoch_seq:
            last = "rollback" if facts.state == "rolled_back" else "commit or rollback"
            after = f" since its last {last} (seq {facts.epoch_seq})"
        return _result(4, "rehearsal", False, f"{sid} has no rehearsal{after}", again)
    if r.spec_hash != facts.spec_hash:
        return _result(
            4,
            "rehearsal",
            False,
            f"the latest rehearsal of {sid} (seq {r.seq}) is of spec "
            f"{short(r.spec_hash)}, not the current {short(facts.spec_hash)}",
            again,
        )
    if r.outcome != "passed":
        return _result(
            4,
            "rehearsal",
            False,
            f"the latest rehearsal of {sid} (seq {r.seq}) did not pass (outcome {r.outcome})",
            again,
            "fix it, then run",
        )
    if facts.plan_hash is None or r.plan_hash != facts.plan_hash:
        return _result(
            4,
            "rehearsal",
            False,
            f"the latest rehearsal of {sid} (seq {r.seq}) ran under plan "
            f"{short(r.plan_hash)}, not the current {short(facts.plan_hash)}",
            again,
        )
    if r.entry_schema_hash is None:
        return _result(
            4,
            "rehearsal",
            False,
            f"the latest rehearsal of {sid} (seq {r.seq}) recorded no entry schema fingerprint",
            again,
        )
    if facts.current_schema_hash is None:
        return _result(
            4,
            "rehearsal",
            False,
            f"rehearsal seq {r.seq} of spec {short(r.spec_hash)} passed; the "
            "schema is compared with its entry fingerprint at commit",
            f"gcos commit {sid}",
            "compared by",
            known=False,
            evidence=(r.seq,),
        )
    if facts.current_schema_hash != r.entry_schema_hash:
        return _result(
            4,
            "rehearsal",
            False,
            f"database changed since rehearsal — rehearse again (rehearsal seq "
            f"{r.seq} ran on schema {short(r.entry_schema_hash)}, the schema is now "
            f"{short(facts.current_schema_hash)})",
            again,
        )
    return _result(
        4,
        "rehearsal",
        True,
        f"rehearsal seq {r.seq} of spec {short(r.spec_hash)} passed on the schema the database has now",
        "",
        "nothing to do",
        evidence=(r.seq,),
    )


def approvals_for(facts: Facts, *, with_actor: bool = True) -> ApprovalCount:
    """Gate 5's count for these facts (`with_actor=False`: as if nobody were committing yet)."""
    r = facts.rehearsal
    rehearser = (r.actor_role_oid, r.actor_principal) if r is not None else None
    return count_approvals(
        facts.approvals,
        step_id=facts.step_id,
        spec_hash=facts.spec_hash,
        plan_hash=facts.plan_hash,
        subject=SUBJECT_ROLLBACK if facts.action == "rollback" else SUBJECT_STEP,
        required=facts.signers_required,
        signer_roles=facts.signer_roles,
        db_now=facts.db_now,
        system_identifier=facts.target_system_identifier,
        database=facts.target_database,
        rehearser=rehearser,
        actor=(facts.actor_role_oid, facts.actor_principal) if with_actor else None,
        epoch_seq=facts.epoch_seq,
        database_oid=facts.target_database_oid,
    )


def gate_approvals(facts: Facts) -> GateResult:
    """Gate 5: enough distinct, named, human approvals bound to exactly this spec, plan, target and subject."""
    sid = facts.step_id
    count = approvals_for(facts)
    what = f"the rollback of {sid}" if facts.action == "rollback" else sid
    need = facts.signers_required
    ids = tuple(a.id for a in count.counted)
    if count.holds:
        names = ", ".join(f"{_who(a)} (approval {a.id}, expires {utc_text(a.expires_at)})" for a in count.counted)
        return _result(5, "approvals", True, f"{what} is approved by {names}", "", "nothing to do", evidence=ids)
    conflicted = (a for a, _ in count.discounted if a.conflicts)
    excluded = [_who(a) for a in (*count.self_approvals, *conflicted, *count.counted)]
    other = f" other than {', '.join(dict.fromkeys(excluded))}" if excluded else ""
    lead = f"ask {_roles_text(facts.signer_roles, article=True)}{other} to run"
    if not count.counted and not count.discounted:
        return _result(
            5,
            "approvals",
            False,
            f"no approval for {what} bound to spec {short(facts.spec_hash)}",
            _approve_command(facts),
            lead,
        )
    have = ", ".join(f"{_who(a)} (approval {a.id})" for a in count.counted)
    head = (
        f"{what} needs {need} distinct approver{'s' if need != 1 else ''} and has "
        f"{len(count.counted)}{f' ({have})' if have else ''}"
    )
    why = [f"approval {a.id} by {_who(a)} {reason}" for a, reason in count.discounted[:MAX_LISTED]]
    more = len(count.discounted) - MAX_LISTED
    if more > 0:
        why.append(f"and {more} more")
    if not count.counted and len(count.discounted) == 1:
        a, reason = count.discounted[0]
        head = f"no approval counts for {what}: approval {a.id} by {_who(a)} {reason}"
        return _result(5, "approvals", False, head, _approve_command(facts), lead, evidence=ids)
    reason = f"{head}: {'; '.join(why)}" if why else head
    return _result(5, "approvals", False, reason, _approve_command(facts), lead, evidence=ids)


def _decision_word(
    records: Sequence[DecisionFact], db_now: datetime, target: tuple[str, str, int] | None = None
) -> tuple[DecisionFact | None, str]:
    """The decision's current word (its latest in-force record by a human non-superuser without conflicts,
    recorded in the `target` incarnation when that is known) and, when it is not an approve, why not."""
    if not records:
        return None, "has never been recorded"
    valid: list[DecisionFact] = []
    problems: list[str] = []
    for d in sorted(records, key=lambda x: (x.ledger_seq, x.id)):
        if d.revoked:
            problems.append(f"record {d.id} was revoked")
        elif d.expires_at <= db_now:
            problems.append(f"record {d.id} expired at {utc_text(d.expires_at)}")
        elif target is not None and (d.system_identifier, d.database, d.database_oid) != target:
            problems.append(f"record {d.id} {_decision_target_problem(d, target)}")
        elif d.kind != HUMAN:
            problems.append(f"record {d.id} is by {_who(d)}, not a human principal")
        elif d.is_superuser:
            problems.append(f"record {d.id} is by {_who(d)}, a superuser")
        elif d.conflicts:
            problems.append(f"record {d.id} {_conflict_problem(_who(d), d.conflicts)}")
        else:
            valid.append(d)
    if valid:
        word = valid[-1]
        if word.verdict == "approve":
            return word, ""
        return None, f"stands at {word.verdict} (record {word.id} by {_who(word)})"
    return None, "has no approve in force: " + ", ".join(problems[-3:])


def _decision_target_problem(d: DecisionFact, target: tuple[str, str, int]) -> str:
    if d.database_oid is None:
        return "was recorded before gcos bound decisions to the database, so it never counts; record it again"
    if (d.system_identifier, d.database) != target[:2]:
        return f"is from another database ({d.database} on system {d.system_identifier})"
    return _incarnation_problem(d.database, d.database_oid, target[2])


def gate_decisions(facts: Facts) -> GateResult:
    """Gate 6: every required decision holds an unexpired, unrevoked approve by a human non-superuser with no
    separation-of-duties conflict, recorded in this database incarnation (when the facts know its OID)."""
    if facts.action == "rollback":
        return _result(
            6, "decisions", True, "decisions gate a commit; a rollback needs its own approval only", "", "nothing to do"
        )
    if not facts.decisions_required:
        return _result(6, "decisions", True, "no decisions required", "", "nothing to do")
    held: list[DecisionFact] = []
    missing: list[tuple[str, str]] = []
    oid = facts.target_database_oid
    target = (facts.target_system_identifier, facts.target_database, oid) if oid is not None else None
    for name in facts.decisions_required:
        word, why = _decision_word([d for d in facts.decisions if d.decision == name], facts.db_now, target)
        if word is None:
            missing.append((name, why))
        else:
            held.append(word)
    ids = tuple(d.id for d in held)
    if missing:
        reason = "; ".join(f"decision {n} {why}" for n, why in missing)
        command = f"gcos decide {missing[0][0]} --verdict approve --expires-in {DEFAULT_EXPIRY}"
        return _result(6, "decisions", False, reason, command, "ask a sovereign or council member to run", evidence=ids)
    listed = ", ".join(f"{d.decision} (record {d.id} by {_who(d)}, expires {utc_text(d.expires_at)})" for d in held)
    return _result(6, "decisions", True, f"decisions hold: {listed}", "", "nothing to do", evidence=ids)


def gate_state(facts: Facts) -> GateResult:
    """Gate 7: global stop conditions do not hold, and the step is not committed (commit) / is (rollback)."""
    sid = facts.step_id
    if facts.global_stops_held:
        return _result(
            7,
            "state",
            False,
            f"global stop condition held: {'; '.join(facts.global_stops_held)}",
            f"gcos rehearse {sid}",
            "resolve it in the database, then run",
        )
    if facts.action == "rollback":
        if facts.state != COMMITTED:
            return _result(
                7,
                "state",
                False,
                f"{sid} is not committed (state {facts.state}); there is nothing to roll back",
                f"gcos status {sid}",
                "check with",
                decisive=True,
            )
        return _result(
            7, "state", True, f"global stops clear; {sid} is committed (seq {facts.commit_seq})", "", "nothing to do"
        )
    if facts.state == COMMITTED:
        at = f" (commit seq {facts.commit_seq})" if facts.commit_seq else ""
        return _result(
            7,
            "state",
            False,
            f"{sid} is already committed{at} and is never re-applied",
            f"gcos rollback {sid}",
            "to apply it again, first run",
            decisive=True,
        )
    return _result(
        7, "state", True, f"global stops clear; {sid} is not committed yet (state {facts.state})", "", "nothing to do"
    )


GATES: tuple[Callable[[Facts], GateResult], ...] = (
    gate_spec,
    gate_dependencies,
    gate_reverify,
    gate_rehearsal,
    gate_approvals,
    gate_decisions,
    gate_state,
)
_TRACE = re.compile(r"[0-9a-f]{32}")


def evaluate(facts: Facts, *, trace_id: str) -> PolicyDecisionRecord:
    """Every gate, in contract order; allow only if all hold (fail-closed: unknown is a refusal)."""
    if facts.action not in ACTIONS:
        raise ValueError(f"action must be one of {', '.join(ACTIONS)}, not {facts.action!r}")
    if not _TRACE.fullmatch(trace_id):
        raise ValueError("trace_id must be 32 lowercase hex digits")
    results = tuple(gate(facts) for gate in GATES)
    return PolicyDecisionRecord(
        allow=all(r.allow for r in results),
        action=facts.action,
        step_id=facts.step_id,
        spec_hash=facts.spec_hash,
        plan_hash=facts.plan_hash,
        gates=results,
        trace_id=trace_id,
        evaluated_at=utc_text(facts.db_now),
    )
