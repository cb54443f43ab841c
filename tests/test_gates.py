"""The commit gates as pure functions of facts (issue 5 items 2, 4 and 7; CONTRACT.md "Gates that COMMIT must
pass"; seed 000 P4 "expiry_at <= now => expired (knife-edge inclusive)"; seed 002 §70.0 "No step flips to GO by
self-approval"; seed 004 §§2-5 "human only, >=2 distinct human signers, verdicts, bound to the artifact hash").

No database here: every Facts is constructed, every reason sentence and remedy is checked."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gcos import ledger
from gcos.canonical import content_hash
from gcos.gates import (
    GATES,
    ApprovalFact,
    DecisionFact,
    Facts,
    RehearsalFact,
    count_approvals,
    evaluate,
    rollback_subject_hash,
    short,
)

NOW = datetime(2025, 6, 1, 12, 0, 0, 123456, tzinfo=UTC)
US = timedelta(microseconds=1)
SPEC = content_hash({"id": "SB-12", "mutation": {"sql": "CREATE TABLE governance_ruleset (id int);"}})
PLAN = hashlib.sha256(b"plan build").hexdigest()
SCHEMA = hashlib.sha256(b"schema at entry").hexdigest()
SYSID = "7391234567890123456"
DB = "world"
TRACE = "0123456789abcdef0123456789abcdef"
ALICE, BOB, CAROL, OPAL, RITA = 1001, 1002, 1003, 2001, 2002


def approval(id: int = 1, **kw: Any) -> ApprovalFact:
    base: dict[str, Any] = dict(
        id=id,
        step_id="SB-12",
        verdict="approve",
        principal="Alice",
        role_oid=ALICE,
        kind="human",
        roles=("sovereign",),
        is_superuser=False,
        spec_hash=SPEC,
        plan_hash=PLAN,
        system_identifier=SYSID,
        database=DB,
        expires_at=NOW + timedelta(hours=1),
        revoked=False,
        subject="step",
        ledger_seq=100 + id,
    )
    base.update(kw)
    return ApprovalFact(**base)


def decision(id: int = 1, **kw: Any) -> DecisionFact:
    base: dict[str, Any] = dict(
        id=id,
        decision="A-8",
        verdict="approve",
        principal="Alice",
        role_oid=ALICE,
        kind="human",
        is_superuser=False,
        expires_at=NOW + timedelta(hours=1),
        revoked=False,
        ledger_seq=200 + id,
    )
    base.update(kw)
    return DecisionFact(**base)


REHEARSAL = RehearsalFact(
    seq=10,
    spec_hash=SPEC,
    plan_hash=PLAN,
    outcome="passed",
    entry_schema_hash=SCHEMA,
    actor_role_oid=RITA,
    actor_principal="Rita",
)


def facts(**kw: Any) -> Facts:
    base: dict[str, Any] = dict(
        step_id="SB-12",
        spec_hash=SPEC,
        plan_id="build",
        plan_hash=PLAN,
        action="commit",
        mandatory_fold_ins=(),
        declared_fold_ins=(),
        dependency_states={},
        reverify_ok=True,
        reverify_reason="3 checks hold",
        rehearsal=REHEARSAL,
        current_schema_hash=SCHEMA,
        approvals=(approval(),),
        signers_required=1,
        signer_roles=("sovereign",),
        decisions_required=(),
        decisions=(),
        global_stops_held=(),
        state="approved",
        actor_role_oid=OPAL,
        target_system_identifier=SYSID,
        target_database=DB,
        db_now=NOW,
        actor_principal="Opal",
    )
    base.update(kw)
    return Facts(**base)


def rollback_facts(**kw: Any) -> Facts:
    base: dict[str, Any] = dict(
        action="rollback",
        state="committed",
        commit_seq=50,
        committed_spec_hash=SPEC,
        commit_schema_hash=hashlib.sha256(b"schema after commit").hexdigest(),
        epoch_seq=50,
        current_schema_hash=hashlib.sha256(b"schema after commit").hexdigest(),
        approvals=(approval(7, subject="rollback", ledger_seq=60),),
    )
    base.update(kw)
    return facts(**base)


def gate(f: Facts, name: str) -> Any:
    return evaluate(f, trace_id=TRACE).gate(name)


def refused(f: Facts, name: str) -> tuple[str, str]:
    record = evaluate(f, trace_id=TRACE)
    assert not record.allow
    result = record.gate(name)
    assert not result.allow, result
    return result.reason, result.remedy


# --------------------------------------------------------------------------- the record


def test_all_gates_hold_and_the_record_is_a_valid_ledger_payload() -> None:
    record = evaluate(facts(), trace_id=TRACE)
    assert record.allow and record.refusal_sentence() == "" and not record.failed
    assert [g.number for g in record.gates] == [1, 2, 3, 4, 5, 6, 7] == list(range(1, len(GATES) + 1))
    assert record.evaluated_at == "2025-06-01T12:00:00.123456Z"
    payload = record.to_payload()
    ledger.check_payload(payload)  # ints, strings, booleans, null: what the ledger takes
    assert payload["allow"] is True and payload["refusal"] is None and payload["failed"] == []
    assert payload["gates"][4]["evidence"] == [1] and payload["gates"][3]["evidence"] == [10]
    assert record.gate("approvals").reason.startswith("SB-12 is approved by Alice (approval 1, expires 2025-06-01T13")


def test_refusal_sentence_is_the_first_failed_gate_reason_and_remedy() -> None:
    record = evaluate(facts(approvals=(), global_stops_held=("law counts moved",)), trace_id=TRACE)
    assert not record.allow and [g.gate for g in record.failed] == ["approvals", "state"]
    assert record.refusal_sentence() == (
        f"No approval for SB-12 bound to spec {SPEC[:12]}…; "
        "ask a sovereign to run: gcos approve SB-12 --verdict approve --expires-in 24h"
    )
    payload = record.to_payload()
    ledger.check_payload(payload)
    assert payload["allow"] is False and payload["failed"] == ["approvals", "state"]
    assert payload["refusal"] == record.refusal_sentence()
    assert payload["gates"][4]["command"] == "gcos approve SB-12 --verdict approve --expires-in 24h"


def test_evaluate_refuses_bad_action_or_trace_id() -> None:
    with pytest.raises(ValueError, match="action"):
        evaluate(facts(action="apply"), trace_id=TRACE)
    with pytest.raises(ValueError, match="trace_id"):
        evaluate(facts(), trace_id="not-a-trace")


# --------------------------------------------------------------------------- gates 1-4, 7


def test_gate1_plan_and_fold_ins() -> None:
    reason, remedy = refused(facts(plan_id=None, plan_hash=None), "spec")
    assert reason == "SB-12 is in no plan, so nothing can bind its plan hash"
    assert remedy == "add SB-12 to a plan under plans/, then check with: gcos plan"
    reason, remedy = refused(facts(mandatory_fold_ins=("F-57-1", "F-57-2"), declared_fold_ins=("F-57-2",)), "spec")
    assert reason == "plan build makes fold-in F-57-1 mandatory for SB-12 and its spec does not declare it"
    assert remedy == "apply and declare F-57-1 under fold_ins in SB-12's spec, then run: gcos rehearse SB-12"
    ok = gate(facts(mandatory_fold_ins=("F-57-1",), declared_fold_ins=("F-57-1",)), "spec")
    assert ok.allow and ok.reason.endswith("fold-ins declared: F-57-1")


def test_gate2_dependencies_committed() -> None:
    reason, remedy = refused(facts(dependency_states={"SB-12": "committed", "SB-13": "approved"}), "dependencies")
    assert reason == "SB-12 depends on SB-13 (approved), not yet committed"
    assert remedy == "commit it first: gcos commit SB-13"
    assert gate(facts(dependency_states={"SB-13": "committed"}), "dependencies").allow


def test_gate3_reverify() -> None:
    reason, remedy = refused(
        facts(reverify_ok=False, reverify_reason="measurement_registry enabled: 139 != 140."), "reverify"
    )
    assert reason == "re-verify of SB-12 does not hold: measurement_registry enabled: 139 != 140"
    assert remedy == "fix the world or the spec, then check with: gcos verify SB-12"
    unknown = gate(facts(reverify_ok=None), "reverify")
    assert not unknown.allow and not unknown.known and unknown.remedy == "run: gcos verify SB-12"


def test_gate4_rehearsal_of_this_spec_plan_and_schema() -> None:
    reason, remedy = refused(facts(rehearsal=None), "rehearsal")
    assert (reason, remedy) == ("SB-12 has no rehearsal", "run: gcos rehearse SB-12")
    reason, _ = refused(facts(rehearsal=None, epoch_seq=40, state="rolled_back"), "rehearsal")
    assert reason == "SB-12 has no rehearsal since its last rollback (seq 40)"
    old = hashlib.sha256(b"older spec").hexdigest()
    reason, remedy = refused(facts(rehearsal=dataclasses.replace(REHEARSAL, spec_hash=old)), "rehearsal")
    assert reason == f"the latest rehearsal of SB-12 (seq 10) is of spec {old[:12]}…, not the current {SPEC[:12]}…"
    assert remedy == "run: gcos rehearse SB-12"
    reason, remedy = refused(facts(rehearsal=dataclasses.replace(REHEARSAL, outcome="stopped")), "rehearsal")
    assert (reason, remedy) == (
        "the latest rehearsal of SB-12 (seq 10) did not pass (outcome stopped)",
        "fix it, then run: gcos rehearse SB-12",
    )
    reason, _ = refused(facts(rehearsal=dataclasses.replace(REHEARSAL, plan_hash=old)), "rehearsal")
    assert reason == f"the latest rehearsal of SB-12 (seq 10) ran under plan {old[:12]}…, not the current {PLAN[:12]}…"
    now = hashlib.sha256(b"schema now").hexdigest()
    reason, remedy = refused(facts(current_schema_hash=now), "rehearsal")
    assert reason == (
        f"database changed since rehearsal — rehearse again (rehearsal seq 10 ran on schema "
        f"{SCHEMA[:12]}…, the schema is now {now[:12]}…)"
    )
    assert remedy == "run: gcos rehearse SB-12"
    unknown = gate(facts(current_schema_hash=None), "rehearsal")
    assert not unknown.allow and not unknown.known and unknown.evidence == (10,)


def test_gate7_global_stops_and_no_recommit() -> None:
    reason, remedy = refused(facts(global_stops_held=("§70.2 #2 law counts moved from 47/5/12",)), "state")
    assert reason == "global stop condition held: §70.2 #2 law counts moved from 47/5/12"
    assert remedy == "resolve it in the database, then run: gcos rehearse SB-12"
    reason, remedy = refused(facts(state="committed", commit_seq=50), "state")
    assert reason == "SB-12 is already committed (commit seq 50) and is never re-applied"
    assert remedy == "to apply it again, first run: gcos rollback SB-12"
    # "already committed" is what the refusal says, even when earlier gates fail too
    record = evaluate(facts(state="committed", commit_seq=50, rehearsal=None, approvals=()), trace_id=TRACE)
    assert [g.gate for g in record.failed] == ["rehearsal", "approvals", "state"]
    assert record.refusal_sentence() == (
        "SB-12 is already committed (commit seq 50) and is never re-applied; "
        "to apply it again, first run: gcos rollback SB-12"
    )
    assert gate(facts(state="rolled_back"), "state").allow


# --------------------------------------------------------------------------- gate 5: approvals


@pytest.mark.parametrize(
    ("offset", "counts"),
    [(-US, False), (timedelta(0), False), (US, True)],
    ids=["expired-1us-ago", "expires-exactly-now", "expires-in-1us"],
)
def test_gate5_expiry_knife_edge_by_the_database_clock(offset: timedelta, counts: bool) -> None:
    f = facts(approvals=(approval(expires_at=NOW + offset),))
    result = gate(f, "approvals")
    assert result.allow is counts
    if not counts:
        at = (NOW + offset).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        assert result.reason == (
            f"no approval counts for SB-12: approval 1 by Alice expired at {at} "
            "(database clock now 2025-06-01T12:00:00.123456Z)"
        )
        assert result.remedy == "ask a sovereign to run: gcos approve SB-12 --verdict approve --expires-in 24h"


@pytest.mark.parametrize("verdict", ["reject", "defer", "approve_with_conditions"])
def test_gate5_only_the_verdict_approve_opens_it(verdict: str) -> None:
    reason, remedy = refused(facts(approvals=(approval(verdict=verdict),)), "approvals")
    assert reason == (
        f"no approval counts for SB-12: approval 1 by Alice has verdict {verdict} (only approve opens the gate)"
    )
    assert remedy == "ask a sovereign to run: gcos approve SB-12 --verdict approve --expires-in 24h"


def test_gate5_a_later_reject_supersedes_the_same_principals_approve() -> None:
    f = facts(approvals=(approval(1), approval(2, verdict="reject")))
    reason, _ = refused(f, "approvals")
    assert reason == (
        "SB-12 needs 1 distinct approver and has 0: approval 1 by Alice is superseded by Alice's later reject "
        "(approval 2); approval 2 by Alice has verdict reject (only approve opens the gate)"
    )


def test_gate5_no_approval_at_all() -> None:
    reason, remedy = refused(facts(approvals=()), "approvals")
    assert reason == f"no approval for SB-12 bound to spec {SPEC[:12]}…"
    assert remedy == "ask a sovereign to run: gcos approve SB-12 --verdict approve --expires-in 24h"


def test_gate5_cross_sign_one_signer_where_two_are_required() -> None:
    f = facts(
        step_id="SB-1-2",
        signers_required=2,
        signer_roles=("sovereign", "council"),
        approvals=(approval(1, step_id="SB-1-2"),),
    )
    reason, remedy = refused(f, "approvals")
    assert reason == "SB-1-2 needs 2 distinct approvers and has 1 (Alice (approval 1))"
    assert remedy == (
        "ask a sovereign or council member other than Alice to run: "
        "gcos approve SB-1-2 --verdict approve --expires-in 24h"
    )
    both = facts(
        step_id="SB-1-2",
        signers_required=2,
        signer_roles=("sovereign", "council"),
        approvals=(
            approval(1, step_id="SB-1-2"),
            approval(2, step_id="SB-1-2", principal="Bob", role_oid=BOB, roles=("council",)),
        ),
    )
    result = gate(both, "approvals")
    assert result.allow and result.evidence == (1, 2)


def test_gate5_two_roles_of_one_person_count_once() -> None:
    # The same role signing twice (e.g. once as sovereign, once as council) is one principal.
    same_oid = facts(
        signers_required=2,
        signer_roles=("sovereign", "council"),
        approvals=(approval(1), approval(2, roles=("council",))),
    )
    reason, _ = refused(same_oid, "approvals")
    assert reason == (
        "SB-12 needs 2 distinct approvers and has 1 (Alice (approval 2)): "
        "approval 1 by Alice is by Alice again (as approval 2): one person counts once"
    )
    # Two database roles mapped to one person's name are one person too.
    same_name = facts(signers_required=2, approvals=(approval(1), approval(2, role_oid=CAROL, principal=" alice ")))
    reason, _ = refused(same_name, "approvals")
    assert reason.endswith(
        "approval 2 by  alice  is by  alice  again (as approval 1): one person counts once, whatever their roles"
    )


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"kind": "agent"}, "is by Alice, an agent principal (only humans approve)"),
        ({"kind": "service"}, "is by Alice, a service principal (only humans approve)"),
        ({"kind": None}, "is by Alice, who is no longer a registered principal"),
        ({"is_superuser": True}, "is by Alice, whose role is a superuser (a superuser's approval proves nothing)"),
        ({"roles": ("operator",)}, "is by Alice, who holds operator, not sovereign"),
        ({"revoked": True}, "was revoked"),
        ({"database": "other"}, "is from another database (other, this is world)"),
        ({"system_identifier": "111"}, f"is from another database system (111, this is {SYSID})"),
        ({"plan_hash": SCHEMA}, f"is bound to plan {SCHEMA[:12]}…, not the current {PLAN[:12]}…"),
        ({"role_oid": RITA, "principal": "Rita"}, "is by Rita, who ran the rehearsal (no self-approval)"),
        ({"role_oid": OPAL, "principal": "Opal"}, "is by Opal, the committer himself (no self-approval)"),
        ({"ledger_seq": 40}, "was recorded before SB-12's last commit or rollback (seq 40) and is spent"),
    ],
    ids=[
        "agent",
        "service",
        "not-a-principal",
        "superuser",
        "wrong-role",
        "revoked",
        "other-database",
        "other-system",
        "older-plan",
        "rehearser",
        "committer",
        "spent",
    ],
)
def test_gate5_why_an_approval_does_not_count(changes: dict[str, Any], why: str) -> None:
    f = facts(approvals=(approval(**changes),), epoch_seq=40)
    reason, remedy = refused(f, "approvals")
    who = changes.get("principal", "Alice")
    assert reason == f"no approval counts for SB-12: approval 1 by {who} {why}"
    assert remedy.endswith("to run: gcos approve SB-12 --verdict approve --expires-in 24h")


def test_gate5_self_approval_remedy_names_who_may_not_sign() -> None:
    _, remedy = refused(facts(approvals=(approval(role_oid=OPAL, principal="Opal"),)), "approvals")
    assert remedy == "ask a sovereign other than Opal to run: gcos approve SB-12 --verdict approve --expires-in 24h"


def test_gate5_self_approval_is_by_person_not_only_by_role() -> None:
    # The committer connected through another database role mapped to the same name still cannot sign.
    f = facts(approvals=(approval(role_oid=CAROL, principal="Opal"),))
    reason, _ = refused(f, "approvals")
    assert reason == (
        "no approval counts for SB-12: approval 1 by Opal is by Opal, the committer himself (no self-approval)"
    )


def test_gate5_spec_hash_after_a_one_byte_edit() -> None:
    edited = content_hash({"id": "SB-12", "mutation": {"sql": "CREATE TABLE governance_ruleset (id int) ;"}})
    assert edited != SPEC
    f = facts(spec_hash=edited, rehearsal=dataclasses.replace(REHEARSAL, spec_hash=edited))
    reason, remedy = refused(f, "approvals")
    assert reason == (
        f"no approval counts for SB-12: approval 1 by Alice is bound to spec {SPEC[:12]}…, "
        f"not the current {edited[:12]}…"
    )
    assert remedy == "ask a sovereign to run: gcos approve SB-12 --verdict approve --expires-in 24h"


def test_gate5_lists_every_reason_and_caps_the_list() -> None:
    many = tuple(approval(i, verdict="defer", role_oid=3000 + i, principal=f"P{i}") for i in range(1, 9))
    reason, _ = refused(facts(approvals=many), "approvals")
    assert reason.startswith("SB-12 needs 1 distinct approver and has 0: approval 1 by P1 has verdict defer")
    assert reason.endswith("approval 5 by P5 has verdict defer (only approve opens the gate); and 3 more")


def test_gate5_rollback_and_commit_approvals_never_stand_in_for_each_other() -> None:
    reason, remedy = refused(facts(approvals=(approval(subject="rollback"),)), "approvals")
    assert reason == "no approval counts for SB-12: approval 1 by Alice approves the rollback of SB-12, not the commit"
    assert remedy == "ask a sovereign to run: gcos approve SB-12 --verdict approve --expires-in 24h"
    reason, remedy = refused(rollback_facts(approvals=(approval(ledger_seq=60),)), "approvals")
    assert reason == (
        "no approval counts for the rollback of SB-12: approval 1 by Alice approves the commit of "
        "SB-12, not the rollback"
    )
    assert remedy == "ask a sovereign to run: gcos approve SB-12 --rollback --verdict approve --expires-in 24h"
    assert evaluate(rollback_facts(), trace_id=TRACE).allow


def test_rollback_subject_hash_is_distinct_and_stable() -> None:
    assert rollback_subject_hash(SPEC) == rollback_subject_hash(SPEC) == content_hash({"rollback_of": SPEC})
    assert rollback_subject_hash(SPEC) != SPEC and len(rollback_subject_hash(SPEC)) == 64


def test_count_approvals_without_target_or_committer() -> None:
    count = count_approvals(
        (approval(role_oid=OPAL, principal="Opal", database="x"),),
        step_id="SB-12",
        spec_hash=SPEC,
        plan_hash=PLAN,
        subject="step",
        required=1,
        signer_roles=("sovereign",),
        db_now=NOW,
    )
    assert count.holds and [a.id for a in count.counted] == [1]


# --------------------------------------------------------------------------- gate 6: decisions


def test_gate6_decisions() -> None:
    need = {"decisions_required": ("A-8",)}
    assert gate(facts(**need, decisions=(decision(),)), "decisions").allow
    reason, remedy = refused(facts(**need), "decisions")
    assert reason == "decision A-8 has never been recorded"
    assert remedy == "ask a sovereign or council member to run: gcos decide A-8 --verdict approve --expires-in 24h"
    reason, _ = refused(facts(**need, decisions=(decision(expires_at=NOW),)), "decisions")
    assert reason == "decision A-8 has no approve in force: record 1 expired at 2025-06-01T12:00:00.123456Z"
    assert gate(facts(**need, decisions=(decision(expires_at=NOW + US),)), "decisions").allow
    reason, _ = refused(facts(**need, decisions=(decision(revoked=True),)), "decisions")
    assert reason == "decision A-8 has no approve in force: record 1 was revoked"
    reason, _ = refused(facts(**need, decisions=(decision(kind="agent"),)), "decisions")
    assert reason == "decision A-8 has no approve in force: record 1 is by Alice, not a human principal"
    reason, _ = refused(facts(**need, decisions=(decision(is_superuser=True),)), "decisions")
    assert reason == "decision A-8 has no approve in force: record 1 is by Alice, a superuser"
    reason, _ = refused(facts(**need, decisions=(decision(1), decision(2, verdict="defer"))), "decisions")
    assert reason == "decision A-8 stands at defer (record 2 by Alice)"
    both = facts(decisions_required=("A-3", "A-4"), decisions=(decision(1, decision="A-4"),))
    reason, remedy = refused(both, "decisions")
    assert reason == "decision A-3 has never been recorded"
    assert remedy.endswith("gcos decide A-3 --verdict approve --expires-in 24h")
    ok = gate(
        facts(decisions_required=("A-3", "A-4"), decisions=(decision(1, decision="A-4"), decision(2, decision="A-3"))),
        "decisions",
    )
    assert ok.allow and ok.evidence == (2, 1)


# --------------------------------------------------------------------------- rollback


def test_rollback_gates() -> None:
    assert evaluate(rollback_facts(), trace_id=TRACE).allow
    reason, remedy = refused(rollback_facts(state="rolled_back", commit_seq=None), "state")
    assert reason == "SB-12 is not committed (state rolled_back); there is nothing to roll back"
    assert remedy == "check with: gcos status SB-12"
    reason, remedy = refused(rollback_facts(dependents_committed=("SB-10",)), "dependencies")
    assert (reason, remedy) == (
        "SB-10 depends on SB-12 and is committed",
        "roll back the dependents first: gcos rollback SB-10",
    )
    reason, _ = refused(rollback_facts(dependents_committed=("SB-10", "VERIFY-1-4")), "dependencies")
    assert reason == "SB-10, VERIFY-1-4 depend on SB-12 and are committed"
    edited = hashlib.sha256(b"edited after commit").hexdigest()
    reason, remedy = refused(
        rollback_facts(spec_hash=edited, approvals=(approval(7, subject="rollback", ledger_seq=60, spec_hash=edited),)),
        "spec",
    )
    assert reason == (
        f"SB-12 was committed with spec {SPEC[:12]}… but its spec is now {edited[:12]}…: the "
        "rollback evidence to apply is not the one committed"
    )
    assert remedy == f"restore SB-12's spec as committed ({SPEC[:12]}…), then run: gcos rollback SB-12"
    drifted = hashlib.sha256(b"drifted").hexdigest()
    reason, remedy = refused(rollback_facts(current_schema_hash=drifted), "rehearsal")
    assert reason.startswith("database changed since the commit of SB-12 (seq 50: schema")
    assert remedy == "find what changed with: gcos drift"
    reason, _ = refused(rollback_facts(rehearsal=None), "rehearsal")
    assert reason == (
        f"no passing rehearsal of spec {SPEC[:12]}… preceded SB-12's commit (seq 50), so its rollback "
        "evidence is unproven"
    )
    # a rollback approval given before the commit in force is spent
    reason, _ = refused(rollback_facts(approvals=(approval(7, subject="rollback", ledger_seq=45),)), "approvals")
    assert reason == (
        "no approval counts for the rollback of SB-12: approval 7 by Alice was recorded before SB-12's "
        "last commit or rollback (seq 50) and is spent"
    )
    reason, _ = refused(
        rollback_facts(approvals=(approval(7, subject="rollback", ledger_seq=60, role_oid=OPAL, principal="Opal"),)),
        "approvals",
    )
    assert reason.endswith("approval 7 by Opal is by Opal, the one rolling it back (no self-approval)")
    # re-verify and decisions do not gate a rollback
    assert gate(rollback_facts(reverify_ok=False, decisions_required=("A-8",)), "reverify").allow
    assert gate(rollback_facts(decisions_required=("A-8",)), "decisions").allow


def test_short_hash() -> None:
    assert short(SPEC) == SPEC[:12] + "…" and short(None) == "(none)"
