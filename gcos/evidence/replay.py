"""`gcos audit replay --pack DIR`: re-judge every recorded gate decision from the facts the chain carries.

Each policy_decision record (kernel 041 onwards) holds, beside its verdict, the facts it was judged on
(``payload.facts``: the spec and plan, the step's history, the rehearsal relied on, the approvals and
decisions with their principals as they were, dependency states, exceptions, the measured world and the
database clock). Replay reads the pack's ``ledger.json`` only, checks its chain, checks those facts against
the chain's own approval, revocation and install records, then loads them into a scratch PostgreSQL (an
embedded server of its own: the target database is never contacted) with gcos installed at the schema
version in force at the decision, and calls ``gcos.judge_gates`` -- the function the live kernel called --
comparing allow/deny and every gate's verdict, reason and remedy with what was recorded.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from gcos import install, ledger
from gcos.errors import LedgerBroken, SpecError
from gcos.evidence.common import LEDGER_FILE
from gcos.evidence.replay_facts import facts_problem, same_instant

GATE_FIELDS = ("number", "gate", "allow", "known", "decisive", "reason", "remedy", "command", "evidence")
DECISION_FIELDS = ("allow", "action", "step_id", "spec_hash", "plan_hash", "evaluated_at", "failed", "refusal")
FIRST_FACTS_VERSION = 41  # the kernel records a decision's facts from this schema version on
NO_FACTS = "it records no facts (written before gcos schema version 41), so it cannot be replayed"


@dataclass(frozen=True)
class Replayed:
    """One decision replayed: `problem` is None when the replay matched the record in every field."""

    seq: int
    step_id: str | None
    action: str | None
    allow: bool | None
    gates: int
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "step_id": self.step_id, "action": self.action, "allow": self.allow,
                "gates_matched": self.gates, "match": self.problem is None, "problem": self.problem}  # fmt: skip


@dataclass
class ReplayReport:
    """Every decision of a pack, in ledger order."""

    decisions: list[Replayed] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(d.problem is None for d in self.decisions)

    @property
    def first_mismatch(self) -> Replayed | None:
        return next((d for d in self.decisions if d.problem is not None), None)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "decisions": [d.to_dict() for d in self.decisions]}


def load_records(pack: Path) -> list[dict[str, Any]]:
    """The pack's ledger records, parsed, after checking their chain (LedgerBroken when it does not hold)."""
    path = pack / LEDGER_FILE
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        rows = [ledger.Row(int(r["seq"]), str(r["prev_hash"]), str(r["hash"]), str(r["canonical"]))
                for r in doc["records"]]  # fmt: skip
    except FileNotFoundError as exc:
        raise SpecError(f"{path} does not exist: point --pack at a directory `gcos report` wrote.") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise LedgerBroken(f"{path} is not a gcos ledger export ({exc}).") from exc
    report = ledger.check_rows(rows)
    if not report.ok:
        raise LedgerBroken(
            f"The pack's ledger is broken at seq {report.first_bad_seq}: {report.reason}; nothing replayed."
        )
    return [ledger.parse_canonical(r.canonical) for r in rows]


def _chain_problem(
    seq: int, step: str | None, facts: Mapping[str, Any], records: Sequence[Mapping[str, Any]]
) -> str | None:
    """Why the decision's approval facts disagree with the chain's approval records before it, or None."""
    earlier = [r for r in records if r["seq"] < seq]
    revoked = {r["payload"].get("approval_id") for r in earlier if r["kind"] == "approval_revocation"}
    chain = {r["payload"].get("approval_id"): r for r in earlier if r["kind"] == "approval" and r["step_id"] == step}
    rows = {row.get("id"): row for row in facts.get("approval_rows", [])}
    if set(rows) != set(chain):
        return f"its facts list approvals {sorted(rows)} but the chain holds {sorted(chain)} for {step} before it"
    for approval_id, row in rows.items():
        rec = chain[approval_id]
        said = rec["payload"]
        recorded = {"ledger_seq": rec["seq"], "spec_hash": rec["spec_hash"], "plan_hash": said.get("plan_hash"),
                    "verdict": said.get("verdict"), "approver_oid": rec["actor"].get("role_oid"),
                    "revoked": approval_id in revoked}  # fmt: skip
        for key, value in recorded.items():
            if row.get(key) != value:
                return f"its facts say approval {approval_id} has {key} {row.get(key)!r}; the chain says {value!r}"
        if not same_instant(row.get("expires_at"), rec["payload"].get("expires_at")):
            return (f"its facts say approval {approval_id} expires at {row.get('expires_at')}; "
                    f"the chain says {rec['payload'].get('expires_at')}")  # fmt: skip
    return None


def _version_at(records: Sequence[Mapping[str, Any]], seq: int) -> int | None:
    """The gcos schema version the chain's install records say was in force at `seq`."""
    versions = [r["payload"].get("version_after") for r in records if r["kind"] == "install" and r["seq"] < seq]
    return next((int(v) for v in reversed(versions) if isinstance(v, int)), None)


def _difference(recorded: Mapping[str, Any], judged: Mapping[str, Any]) -> str | None:
    """The first field where the replayed judgement differs from the recorded one, or None."""
    for key in DECISION_FIELDS:
        if recorded.get(key) != judged.get(key):
            return f"{key}: recorded {recorded.get(key)!r}, replayed {judged.get(key)!r}"
    rec_gates, new_gates = recorded.get("gates") or [], judged.get("gates") or []
    if len(rec_gates) != len(new_gates):
        return f"gates: recorded {len(rec_gates)}, replayed {len(new_gates)}"
    for old, new in zip(rec_gates, new_gates, strict=True):
        for key in GATE_FIELDS:
            if old.get(key) != new.get(key):
                where = f"gate {old.get('number')} {old.get('gate')} {key}"
                return f"{where}: recorded {old.get(key)!r}, replayed {new.get(key)!r}"
    for key in ("exceptions", "exceptions_not_applied"):
        if recorded.get(key, []) != judged.get(key, []):
            return f"{key}: recorded {recorded.get(key)!r}, replayed {judged.get(key)!r}"
    return None


def decision_of(record: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The gate decision a record holds: a policy_decision's payload, or the one a refusal record embeds."""
    payload = record.get("payload")
    if not isinstance(payload, dict):
        return None
    if record.get("kind") == "policy_decision":
        return payload
    embedded = payload.get("policy_decision")
    return embedded if isinstance(embedded, dict) and "gates" in embedded else None


# gcos._batch_authority (013): a batched run re-checks gates 5 and 6 before each batch and at close; the kernel
# keeps those two of evaluate_gates' seven and words allow/failed/refusal from them with gcos._batch_decided.
BATCH_AUTHORITY = """
    SELECT gcos._batch_decided(d, (SELECT pg_catalog.jsonb_agg(e ORDER BY o)
                                     FROM pg_catalog.jsonb_array_elements(d -> 'gates') WITH ORDINALITY AS x(e, o)
                                    WHERE e ->> 'gate' IN ('approvals', 'decisions')))
      FROM gcos.judge_gates(%(f)s) AS d
"""
# gcos._batch_start_kernel (029): resuming an open run adapts the gates with gcos._batch_resume_gates (013) to the
# open run, the schema now and the stops held, which the kernel records in the facts from 044 on.
BATCH_RESUME = """
    SELECT gcos._batch_resume_gates(gcos.judge_gates(%(f)s), %(f)s #> '{resume,open}', %(f)s ->> 'spec_hash',
                                    %(f)s ->> 'plan_given', %(f)s #>> '{resume,schema_now}', %(f)s #> '{resume,stops}')
"""


def _judge(
    conn: psycopg.Connection[Any], payload: Mapping[str, Any], facts: Mapping[str, Any]
) -> tuple[dict[str, Any], str | None]:
    """The decision the kernel's own SQL makes of `facts`, composed as the recording kernel function composed it."""
    if payload.get("mode") == "batched" and "at" in payload:
        query = BATCH_AUTHORITY
    elif "resume_of_seq" in payload:
        if "resume" not in facts:
            return {}, "it resumed a batched run and records no resume facts (written before gcos schema version 44)"
        query = BATCH_RESUME
    else:
        query = "SELECT gcos.judge_gates(%(f)s)"
    row = conn.execute(query, {"f": Jsonb(facts)}).fetchone()
    return (row[0] if row else {}), None


def _replay_one(
    conn: psycopg.Connection[Any], record: Mapping[str, Any], records: Sequence[Mapping[str, Any]]
) -> Replayed:
    payload = decision_of(record) or {}
    base = {"seq": record["seq"], "step_id": record.get("step_id"), "action": payload.get("action"),
            "allow": payload.get("allow")}  # fmt: skip
    facts = payload.get("facts")
    if not isinstance(facts, dict):
        return Replayed(**base, gates=0, problem=NO_FACTS)
    problem = _chain_problem(record["seq"], record.get("step_id"), facts, records) or facts_problem(
        record, facts, records
    )
    if problem is not None:
        return Replayed(**base, gates=0, problem=problem)
    wanted = max(_version_at(records, record["seq"]) or 0, FIRST_FACTS_VERSION)
    if (install.installed_version(conn) or 0) < wanted:
        install.install(conn, upto=min(wanted, len(install.migrations())))
    judged, problem = _judge(conn, payload, facts)
    if problem is not None:
        return Replayed(**base, gates=0, problem=problem)
    problem = _difference(payload, judged)
    matched = sum(1 for o, n in zip(payload.get("gates") or [], judged.get("gates") or [], strict=False) if o == n)
    return Replayed(**base, gates=matched, problem=problem)


def replay_records(conn: psycopg.Connection[Any], records: Sequence[Mapping[str, Any]]) -> ReplayReport:
    """Replay every gate decision of `records` in a scratch database `conn` (gcos installed on demand)."""
    report = ReplayReport()
    for record in records:
        if decision_of(record) is not None:
            report.decisions.append(_replay_one(conn, record, records))
    return report


@contextmanager
def scratch_database() -> Iterator[psycopg.Connection[Any]]:
    """A throw-away embedded PostgreSQL of replay's own, in a temporary home, stopped afterwards."""
    from gcos.embedded import EmbeddedServer

    with tempfile.TemporaryDirectory(prefix="gcos-replay-") as home:
        server = EmbeddedServer(Path(home))
        server.up()
        try:
            with psycopg.connect(server.url(), autocommit=True) as conn:
                yield conn
        finally:
            server.down()


def replay_pack(pack: Path, scratch_dsn: str | None = None) -> ReplayReport:
    """Replay the decisions of the pack at `pack`; `scratch_dsn` names an empty scratch database to use instead
    of starting an embedded server (it must not be the target: replay installs gcos into it)."""
    records = load_records(pack)
    if not any(decision_of(r) is not None for r in records):
        raise SpecError(f"The pack at {pack} records no gate decision: there is nothing to replay.")
    if scratch_dsn is not None:
        with psycopg.connect(scratch_dsn, autocommit=True) as conn:
            return replay_records(conn, records)
    with scratch_database() as conn:
        return replay_records(conn, records)


def audit_replay(pack: Path, scratch_dsn: str | None = None) -> ReplayReport:
    """`gcos audit replay`: the report when every decision replays as recorded; LedgerBroken (exit 7) naming
    the first decision that does not, with every decision's result as its details."""
    report = replay_pack(pack, scratch_dsn)
    bad = report.first_mismatch
    if bad is not None:
        raise LedgerBroken(
            f"Policy decision seq {bad.seq} ({bad.action} of {bad.step_id}) does not replay as recorded: "
            f"{bad.problem}.",
            details=report.to_dict(),
        )
    return report
