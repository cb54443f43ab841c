"""Every fact a recorded gate decision was judged on, checked against the hash chain before it is replayed.

A policy decision carries its facts (041); the chain proves only that the record was not changed after it was
written. Replay re-judges the facts, so a fact the kernel recorded wrongly, or a whole pack rewritten with a
recomputed chain, would replay "as recorded". These checks tie each fact to the chain's own records written
before the decision: the spec and plan documents to their hashes, the step's history and the dependencies' to
the commit and rollback records, the rehearsal relied on to its record, the approvals, decisions and
exceptions to their records and revocations. What the chain cannot confirm (the principals' kind, roles and
conflicts as they were; the database incarnation; the measured world) is listed, not trusted silently.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from gcos.canonical import canonical_bytes

Records = Sequence[Mapping[str, Any]]
UNCONFIRMED = (
    "approvers', deciders' and the actor's principals as they were (kind, roles, conflicts, persons)",
    "the database incarnation (system identifier, name, oid)",
    "the measured world (schema hash, re-verify results, global stops)",
    "whether each exception applied to this actor",
)


def same_instant(a: Any, b: Any) -> bool:
    """Two timestamps (ISO text, as records and facts print them) are one instant; None only equals None."""
    if a is None or b is None:
        return a is None and b is None
    try:
        return datetime.fromisoformat(str(a).replace("Z", "+00:00")) == datetime.fromisoformat(
            str(b).replace("Z", "+00:00")
        )
    except ValueError:
        return False


def _hash(document: Any) -> str:
    return hashlib.sha256(canonical_bytes(document)).hexdigest()


def step_history(step: str, before: Records) -> dict[str, Any]:
    """gcos._step_history (010) over the chain: applied commits and rollbacks that an allowing policy decision
    of the same step and trace preceded."""
    by_seq = {r["seq"]: r for r in before}
    counted = []
    for r in before:
        pay = r.get("payload") or {}
        if r.get("step_id") != step or r["kind"] not in ("commit", "rollback") or pay.get("outcome") != "applied":
            continue
        d = by_seq.get(pay.get("policy_decision_seq")) or {"seq": r["seq"]}
        if d["seq"] < r["seq"] and d["kind"] == "policy_decision" and d.get("step_id") == step:
            counted += (
                [r] if (d.get("payload") or {}).get("allow") is True and d.get("trace_id") == r.get("trace_id") else []
            )
    c = max((r for r in counted if r["kind"] == "commit"), key=lambda r: r["seq"], default=None)
    rb = max((r for r in counted if r["kind"] == "rollback"), key=lambda r: r["seq"], default=None)
    committed = c is not None and (rb is None or rb["seq"] < c["seq"])
    after = ((c or {}).get("payload") or {}).get("fingerprint_after") or {}
    return {"committed": committed, "last_commit_seq": c and c["seq"], "rollback_seq": rb and rb["seq"],
            "epoch_seq": max(c["seq"] if c else 0, rb["seq"] if rb else 0),
            "commit_seq": c["seq"] if committed and c else None,
            "commit_spec_hash": c.get("spec_hash") if committed and c else None,
            "commit_schema_hash": after.get("schema_hash") if committed else None}  # fmt: skip


def _history_problem(what: str, said: Mapping[str, Any] | None, chain: Mapping[str, Any]) -> str | None:
    said = said or {}
    for key, value in chain.items():
        if said.get(key) != value:
            return f"{what} has {key} {said.get(key)!r}; the chain says {value!r}"
    return None


def _documents(facts: Mapping[str, Any], before: Records) -> str | None:
    spec_hash = facts.get("spec_hash")
    if "spec" in facts and _hash(facts["spec"]) != spec_hash:
        return f"its spec document hashes to {_hash(facts['spec'])[:12]}, not the spec hash {str(spec_hash)[:12]}"
    if "plan" in facts and _hash(facts["plan"]) != facts.get("plan_given"):
        return f"its plan document does not hash to the plan hash {str(facts.get('plan_given'))[:12]} it names"
    if "spec" in facts and not any(r.get("spec_hash") == spec_hash for r in before if r["kind"] == "rehearsal"):
        return f"no rehearsal record before it names spec {str(spec_hash)[:12]}"
    return None


def _rehearsal(facts: Mapping[str, Any], before: Records, history: Mapping[str, Any]) -> str | None:
    step, said = facts.get("step_id"), facts.get("rehearsal")
    window = [r for r in before if r["kind"] == "rehearsal" and r.get("step_id") == step
              and (r["seq"] < (history.get("commit_seq") or 0) if facts.get("action") == "rollback"
                   else r["seq"] > history["epoch_seq"])]  # fmt: skip
    if said is None:
        return f"its facts name no rehearsal, but the chain holds rehearsal seq {window[-1]['seq']}" if window else None
    rec = next((r for r in window if r["seq"] == said.get("seq")), None)
    if rec is None:
        return f"its rehearsal seq {said.get('seq')} is not a rehearsal of {step} the chain holds in its window"
    later = [r["seq"] for r in window if r["seq"] > rec["seq"] and (r.get("payload") or {}).get("kernel") is True]
    if later:
        return f"it relied on rehearsal seq {rec['seq']}, but the chain holds a later kernel rehearsal seq {later[-1]}"
    pay, actor = rec.get("payload") or {}, rec.get("actor") or {}
    chain = {"spec_hash": rec.get("spec_hash"), "plan_hash": pay.get("plan_hash"), "outcome": pay.get("outcome"),
             "entry_schema_hash": ((pay.get("fingerprints") or {}).get("entry") or {}).get("schema_hash"),
             "actor_oid": actor.get("role_oid"), "actor_name": actor.get("principal")}  # fmt: skip
    return _history_problem(f"its rehearsal seq {rec['seq']}", said, {k: v for k, v in chain.items() if v is not None})


def _revoked(before: Records, kind: str, key: str) -> set[Any]:
    return {(r.get("payload") or {}).get(key) for r in before if r["kind"] == kind}


def _decisions(facts: Mapping[str, Any], before: Records) -> str | None:
    revoked = _revoked(before, "decision_revocation", "decision_id")
    for name, rows in (facts.get("decision_rows") or {}).items():
        chain = {(r.get("payload") or {}).get("decision_id"): r for r in before
                 if r["kind"] == "decision" and (r.get("payload") or {}).get("decision") == name}  # fmt: skip
        ids = [row.get("id") for row in rows]
        if set(ids) != set(chain):
            return f"its facts list decisions {ids} for {name}; the chain holds {list(chain)}"
        for row in rows:
            rec = chain[row.get("id")]
            pay, actor = rec.get("payload") or {}, rec.get("actor") or {}
            want = {"verdict": pay.get("verdict"), "text_hash": pay.get("text_hash"),
                    "revoked": row.get("id") in revoked, "oid": actor.get("role_oid"),
                    "as_sovereign": "sovereign" in (pay.get("decider_roles") or [])}  # fmt: skip
            problem = _history_problem(f"decision {row.get('id')}", row, want)
            if problem is None and not same_instant(row.get("expires_at"), pay.get("expires_at")):
                said_at, chain_at = row.get("expires_at"), pay.get("expires_at")
                problem = f"decision {row.get('id')} expires at {said_at}; the chain says {chain_at}"
            if problem is not None:
                return problem
    return None


def _exceptions(facts: Mapping[str, Any], before: Records) -> str | None:
    if facts.get("action") == "rollback" or "step_id" not in facts:
        return None
    revoked = _revoked(before, "exception_revocation", "exception_id")
    now = facts.get("now")
    chain = {(r.get("payload") or {}).get("exception_id"): r for r in before
             if r["kind"] == "exception" and r.get("spec_hash") == facts.get("spec_hash")
             and (r.get("payload") or {}).get("exception_id") not in revoked}  # fmt: skip
    in_force = [i for i, r in chain.items() if _later(r["payload"].get("expires_at"), now)]
    said = {e.get("exception_id"): e for e in facts.get("exceptions") or []}
    if set(said) != set(in_force):
        return f"its facts list exceptions {list(said)} in force; the chain holds {in_force}"
    for i, e in said.items():
        pay = chain[i]["payload"]
        want = {"check_kind": pay.get("check_kind"), "check": pay.get("check"), "ledger_seq": chain[i]["seq"]}
        for key, value in want.items():
            if e.get(key) != value:
                return f"its facts say exception {i} has {key} {e.get(key)!r}; the chain says {value!r}"
    return None


def _later(a: Any, b: Any) -> bool:
    try:
        return datetime.fromisoformat(str(a).replace("Z", "+00:00")) > datetime.fromisoformat(
            str(b).replace("Z", "+00:00")
        )
    except ValueError:
        return False


def _dependencies(facts: Mapping[str, Any], before: Records) -> str | None:
    for dep, said in (facts.get("dependencies") or {}).items():
        problem = _history_problem(f"dependency {dep}", said, step_history(dep, before))
        if problem:
            return problem
    return None


def _resume(facts: Mapping[str, Any], before: Records) -> str | None:
    """The open run a resumed batched decision was adapted to is the chain's batch_started record (013's
    gcos._batch_open over the chain)."""
    said = (facts.get("resume") or {}).get("open")
    if said is None:
        return None
    step = facts.get("step_id")
    started = [r for r in before if r["kind"] == "batch_started" and r.get("step_id") == step]
    rec = started[-1] if started else None
    if rec is None or rec["seq"] != said.get("seq"):
        last = f"seq {rec['seq']}" if rec else "none"
        return f"it resumed the run opened at seq {said.get('seq')}; the chain's last batch_started of {step} is {last}"
    pay = rec.get("payload") or {}
    want = {"run_id": pay.get("run_id"), "spec_hash": rec.get("spec_hash"), "plan_hash": pay.get("plan_hash"),
            "rehearsal_seq": pay.get("rehearsal_seq"),
            "schema_hash": (pay.get("fingerprint_before") or {}).get("schema_hash")}  # fmt: skip
    return _history_problem(f"the open run of seq {rec['seq']}", said, want)


def facts_problem(record: Mapping[str, Any], facts: Mapping[str, Any], records: Records) -> str | None:
    """The first fact of the decision `record` that the chain before it contradicts, or None."""
    before = [r for r in records if r["seq"] < record["seq"]]
    step = facts.get("step_id")
    if step is not None and step != record.get("step_id"):
        return f"its facts judge step {step}, but the record is of {record.get('step_id')}"
    checks: Iterable[Any] = ()
    if step is not None:
        history = step_history(str(step), before)
        checks = (
            lambda: _documents(facts, before),
            lambda: _history_problem(f"the history of {step}", facts.get("history"), history),
            lambda: _rehearsal(facts, before, history),
            lambda: _decisions(facts, before),
            lambda: _exceptions(facts, before),
            lambda: _dependencies(facts, before),
            lambda: _resume(facts, before),
        )
    return next((p for p in (check() for check in checks) if p is not None), None)
