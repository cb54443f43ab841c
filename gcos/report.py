"""Evidence reports and packs: what an auditor reads, and checks offline (issue 6 item 5; CONTRACT.md
"Commands": ``gcos report [STEP] --format md|html|json --out DIR``; seed 000 "evidence pack + manifest").

Everything is read in ONE ``REPEATABLE READ, READ ONLY`` transaction: the ledger (every record and the head),
the approvals tables (cross-checked against the ledger's approval records), the principals and the
database's identity and time. The ledger is verified (``ledger.check_rows``) before anything is written: a
report is never built from a broken chain. Every number shown - seqs, hashes, check values, approval ids and
expiries, fingerprints, footprints, gates - is copied from a ledger record; the only derived facts are the
step states (``state.project_states``, the same projection ``gcos status`` uses) and whether an approval
had expired at the report's database time.

Formats (one view model, so they cannot disagree):

* ``md``: ``index.md`` and one ``<STEP>.md`` per step;
* ``html``: one self-contained ``report.html`` (inline CSS, no scripts, no network references), the build
  order drawn as inline SVG (laid out here by dependency depth, nodes coloured by state) then the steps;
* ``json``: an evidence pack - ``ledger.json`` (every record's seq, prev_hash, hash and canonical text),
  ``anchor.json`` (the head, as ``gcos ledger anchor`` writes it), ``steps/<STEP>.json``, ``report.md`` and
  ``manifest.json`` (the sha256 of every other file). ``verify_pack`` checks a pack with no database.

Every file carries ``format_version``; nothing from a DSN is written (the database is named by its system
identifier and name); every file is written to a temporary name and renamed into place, the manifest last.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import jinja2
import psycopg
import yaml

from gcos import __version__ as gcos_version
from gcos import ledger, state
from gcos.canonical import content_hash
from gcos.errors import LedgerBroken, SpecError
from gcos.gates import rollback_subject_hash
from gcos.spec import Project, StepSpec

FORMAT_VERSION = 1
FORMATS = ("md", "html", "json")
MANIFEST = "manifest.json"
LEDGER_FILE = "ledger.json"
ANCHOR_FILE = "anchor.json"
STEPS_DIR = "steps"
REPORT_MD = "report.md"
HTML_FILE = "report.html"
INDEX_MD = "index.md"

# Node colours of the build-order graph (and the legend): fill, text.
STATE_COLOURS: dict[str, tuple[str, str]] = {
    state.PLANNED: ("#9e9e9e", "#ffffff"),
    state.REHEARSED: ("#1f6fd1", "#ffffff"),
    state.APPROVED: ("#f2a900", "#1b1b1b"),
    state.COMMITTED: ("#2e8540", "#ffffff"),
    state.ROLLED_BACK: ("#7b3fa0", "#ffffff"),
}
POLICY_KINDS = ("policy_decision", "commit_refused", "rollback_refused")
APPLY_KINDS = ("commit", "rollback")


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ReportResult:
    out_dir: Path
    files: tuple[Path, ...]  # every file written, the manifest (json) last
    format: str
    steps: tuple[str, ...]  # the steps reported, in build order
    ledger_head_seq: int | None


# --------------------------------------------------------------------------- small helpers


def shown(value: Any) -> str:
    """How a value from a ledger record is shown in md and html: text as it is, anything else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def utc_text(moment: datetime) -> str:
    """A database time as the ledger writes times: UTC, microseconds, a trailing Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _dumps(value: Any) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def _write_atomic(path: Path, data: bytes) -> Path:
    """Write `data` to `path` through a new temporary file in the same directory (mode 0666 less the umask, as
    any file the user writes), flushed to disk, then renamed into place: a reader sees the old file or the new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return path


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


# --------------------------------------------------------------------------- reading the database


@dataclass(frozen=True)
class _Snapshot:
    rows: list[ledger.Row]
    entries: list[ledger.LedgerEntry]
    head: tuple[int, str] | None
    system_identifier: str
    database: str
    db_now: datetime
    approval_rows: list[tuple[Any, ...]]
    principals: dict[int, state.PrincipalNow]


def _read(conn: psycopg.Connection[Any]) -> _Snapshot:
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise SpecError("A report reads the database in its own transaction; commit or roll back first.")
    with ledger.map_db_errors(), conn.transaction():
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
    return _Snapshot(rows, entries, head, str(ident[0]), str(ident[1]), ident[2], approval_rows, principals)


def _time_or_none(text: Any) -> datetime | None:
    try:
        return state.parse_time(text)
    except ValueError:
        return None


def _expired(text: Any, db_now: datetime) -> bool:
    """Whether an expiry from a ledger record had passed at the report's database time (``<=`` is expired)."""
    moment = _time_or_none(text)
    return moment is None or moment <= db_now


def _cross_check_approvals(snapshot: _Snapshot) -> None:
    """The approvals tables must say what the ledger's approval records say (they are written together)."""
    revoked = {
        int(e.payload["approval_id"]): e.seq
        for e in snapshot.entries
        if e.kind == "approval_revocation" and isinstance(e.payload.get("approval_id"), int)
    }
    from_ledger = set()
    for e in snapshot.entries:
        if e.kind != "approval" or not isinstance(e.payload.get("approval_id"), int):
            continue
        aid = int(e.payload["approval_id"])
        expires = _time_or_none(e.payload.get("expires_at"))
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


# --------------------------------------------------------------------------- the view model


def _record_view(e: ledger.LedgerEntry) -> dict[str, Any]:
    actor = _dict(e.record.get("actor"))
    return {
        "seq": e.seq,
        "prev_hash": e.prev_hash,
        "hash": e.hash,
        "kind": e.kind,
        "recorded_at": e.record.get("recorded_at"),
        "trace_id": e.record.get("trace_id"),
        "step_id": e.record.get("step_id"),
        "spec_hash": e.record.get("spec_hash"),
        "actor": {k: actor.get(k) for k in ("principal", "role", "kind")},
        "canonical": e.canonical,
    }


def _fingerprint_view(fp: Any) -> dict[str, Any]:
    fp = _dict(fp)
    tables = _dict(fp.get("tables"))
    return {
        "hash": fp.get("hash"),
        "schema_hash": fp.get("schema_hash"),
        "tables": {name: _dict(tables[name]) for name in sorted(tables)},
    }


def _rehearsal_view(e: ledger.LedgerEntry, step: StepSpec) -> dict[str, Any]:
    p = e.payload
    checks = _dict(p.get("checks"))
    fps = _dict(p.get("fingerprints"))
    footprint = p.get("footprint")
    return {
        "seq": e.seq,
        "hash": e.hash,
        "recorded_at": e.record.get("recorded_at"),
        "spec_hash": e.record.get("spec_hash"),
        "of_current_spec": e.record.get("spec_hash") == step.hash,
        "actor": _dict(e.record.get("actor")).get("principal") or _dict(e.record.get("actor")).get("role"),
        "run_id": p.get("run_id"),
        "plan_id": p.get("plan_id"),
        "plan_hash": p.get("plan_hash"),
        "outcome": p.get("outcome"),
        "message": p.get("message"),
        "duration_us": p.get("duration_us"),
        "fingerprints": {
            name: _fingerprint_view(fps.get(name)) for name in ("entry", "inside", "after_rollback", "exit")
        },
        "footprint": footprint if isinstance(footprint, dict) else None,
        "reverify": [_dict(c) for c in _list(checks.get("reverify"))],
        "stop": [_dict(c) for c in _list(checks.get("stop"))],
        "success": [_dict(c) for c in _list(checks.get("success"))],
        "residue": _list(_dict(p.get("residue")).get("sequences")),
        "differences": _list(p.get("differences")),
    }


def _policy_view(e: ledger.LedgerEntry) -> dict[str, Any]:
    decision = e.payload if e.kind == "policy_decision" else _dict(e.payload.get("policy_decision"))
    return {
        "seq": e.seq,
        "hash": e.hash,
        "kind": e.kind,
        "recorded_at": e.record.get("recorded_at"),
        "actor": _dict(e.record.get("actor")).get("principal") or _dict(e.record.get("actor")).get("role"),
        "action": decision.get("action"),
        "allow": decision.get("allow"),
        "trace_id": decision.get("trace_id"),
        "evaluated_at": decision.get("evaluated_at"),
        "spec_hash": decision.get("spec_hash"),
        "plan_hash": decision.get("plan_hash"),
        "refusal": decision.get("refusal"),
        "failed": _list(decision.get("failed")),
        "gates": [_dict(g) for g in _list(decision.get("gates"))],
    }


def _apply_view(e: ledger.LedgerEntry) -> dict[str, Any]:
    p = e.payload
    return {
        "seq": e.seq,
        "hash": e.hash,
        "kind": e.kind,
        "recorded_at": e.record.get("recorded_at"),
        "spec_hash": e.record.get("spec_hash"),
        "actor": _dict(e.record.get("actor")).get("principal") or _dict(e.record.get("actor")).get("role"),
        "outcome": p.get("outcome"),
        "run_id": p.get("run_id"),
        "plan_hash": p.get("plan_hash"),
        "policy_decision_seq": p.get("policy_decision_seq"),
        "of_commit_seq": p.get("of_commit_seq"),
        "fingerprint_before": _fingerprint_view(p.get("fingerprint_before")),
        "fingerprint_after": _fingerprint_view(p.get("fingerprint_after")),
        "footprint": p.get("footprint") if isinstance(p.get("footprint"), dict) else None,
    }


def _approval_views(
    entries: Sequence[ledger.LedgerEntry], step: StepSpec, counted: Iterable[int], db_now: datetime
) -> list[dict[str, Any]]:
    revocations = {
        int(e.payload["approval_id"]): e
        for e in entries
        if e.kind == "approval_revocation" and isinstance(e.payload.get("approval_id"), int)
    }
    spec_hashes = {step.hash} | {str(e.record["spec_hash"]) for e in entries if e.record.get("spec_hash")}
    rollback_hashes = {rollback_subject_hash(h) for h in spec_hashes}
    counting = set(counted)
    out = []
    for e in entries:
        if e.kind != "approval" or not isinstance(e.payload.get("approval_id"), int):
            continue
        aid = int(e.payload["approval_id"])
        actor = _dict(e.record.get("actor"))
        revocation = revocations.get(aid)
        expires_at = e.payload.get("expires_at")
        bound = e.record.get("spec_hash")
        out.append(
            {
                "id": aid,
                "seq": e.seq,
                "hash": e.hash,
                "recorded_at": e.record.get("recorded_at"),
                "principal": actor.get("principal"),
                "db_role": actor.get("role"),
                "principal_kind": actor.get("kind"),
                "approver_roles": _list(e.payload.get("approver_roles")),
                "verdict": e.payload.get("verdict"),
                "expires_at": expires_at,
                "expired": _expired(expires_at, db_now),
                "bound_hash": bound,
                "subject": "rollback" if bound in rollback_hashes else "step",
                "bound_to_current_spec": bound == step.hash,
                "plan_hash": e.payload.get("plan_hash"),
                "rehearsal_seq": e.payload.get("rehearsal_seq"),
                "note": e.payload.get("note"),
                "revoked": revocation is not None,
                "revocation": None
                if revocation is None
                else {
                    "seq": revocation.seq,
                    "hash": revocation.hash,
                    "revocation_id": revocation.payload.get("revocation_id"),
                    "reason": revocation.payload.get("reason"),
                    "by": _dict(revocation.record.get("actor")).get("principal"),
                    "recorded_at": revocation.record.get("recorded_at"),
                },
                "counts_now": aid in counting,
            }
        )
    return out


def _decision_views(
    entries: Sequence[ledger.LedgerEntry], names: Sequence[str], db_now: datetime
) -> list[dict[str, Any]]:
    revoked = {
        int(e.payload["decision_id"]): e
        for e in entries
        if e.kind == "decision_revocation" and isinstance(e.payload.get("decision_id"), int)
    }
    out = []
    for e in entries:
        if e.kind != "decision" or e.payload.get("decision") not in names:
            continue
        did = e.payload.get("decision_id")
        expires_at = e.payload.get("expires_at")
        revocation = revoked.get(did) if isinstance(did, int) else None
        out.append(
            {
                "id": did,
                "seq": e.seq,
                "hash": e.hash,
                "decision": e.payload.get("decision"),
                "verdict": e.payload.get("verdict"),
                "principal": _dict(e.record.get("actor")).get("principal"),
                "expires_at": expires_at,
                "expired": _expired(expires_at, db_now),
                "revoked": revocation is not None,
                "revocation_seq": revocation.seq if revocation is not None else None,
            }
        )
    return out


def _step_entries(entries: Sequence[ledger.LedgerEntry], step: StepSpec) -> list[ledger.LedgerEntry]:
    """The step's own records and the records of the decisions it requires (gate 6 relied on them)."""
    return [
        e
        for e in entries
        if e.record.get("step_id") == step.id
        or (e.kind in ("decision", "decision_revocation") and e.payload.get("decision") in step.decisions)
    ]


def _spec_yaml(document: Mapping[str, Any]) -> str:
    class _Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    _Dumper.add_representer(str, text)
    return yaml.dump(dict(document), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=110)


def _step_view(step: StepSpec, project: Project, snapshot: _Snapshot, current: state.StepState) -> dict[str, Any]:
    entries = _step_entries(snapshot.entries, step)
    own = [e for e in entries if e.record.get("step_id") == step.id]
    rehearsals = [e for e in own if e.kind == "rehearsal"]
    plan = project.plan_of(step.id)
    try:
        spec_path = step.path.relative_to(project.root).as_posix()
    except ValueError:
        spec_path = step.path.name
    return {
        "format_version": FORMAT_VERSION,
        "id": step.id,
        "ref": step.ref,
        "order": step.order,
        "title": step.title,
        "source": step.source,
        "mode": step.mode,
        "depends_on": list(step.depends_on),
        "plan": None if plan is None else {"id": plan.id, "title": plan.title, "hash": plan.hash},
        "spec": {"hash": step.hash, "path": spec_path, "document": step.document},
        "state": {
            "state": current.state,
            "detail": current.detail,
            "last_rehearsal_seq": current.last_rehearsal_seq,
            "commit_seq": current.commit_seq,
            "rollback_seq": current.rollback_seq,
            "approval_ids": list(current.approval_ids),
        },
        "approvals_required": {"signers": step.signers, "roles": list(step.signer_roles)},
        "decisions_required": list(step.decisions),
        "rehearsal": _rehearsal_view(rehearsals[-1], step) if rehearsals else None,
        "rehearsals": [
            {
                "seq": e.seq,
                "hash": e.hash,
                "outcome": e.payload.get("outcome"),
                "spec_hash": e.record.get("spec_hash"),
                "recorded_at": e.record.get("recorded_at"),
            }
            for e in rehearsals
        ],
        "approvals": _approval_views(own, step, current.approval_ids, snapshot.db_now),
        "decisions": _decision_views(entries, step.decisions, snapshot.db_now),
        "policy_decisions": [_policy_view(e) for e in own if e.kind in POLICY_KINDS],
        "applied": [_apply_view(e) for e in own if e.kind in APPLY_KINDS],
        "stops": [
            {
                "seq": e.seq,
                "hash": e.hash,
                "action": e.payload.get("action"),
                "outcome": e.payload.get("outcome"),
                "reason": e.payload.get("reason"),
            }
            for e in own
            if e.kind == "stop"
        ],
        "records": [_record_view(e) for e in entries],
    }


# --------------------------------------------------------------------------- the build-order graph


NODE_W, NODE_H, COL_GAP, ROW_GAP, MARGIN, LEGEND_H = 180, 62, 52, 22, 20, 40
TITLE_CHARS = 27


def graph_layout(project: Project, states: Mapping[str, str], selected: Sequence[str] = ()) -> dict[str, Any]:
    """Nodes (every step of every plan, then any step in no plan) in columns by dependency depth, rows ordered
    by the mean row of their dependencies; edges (depends_on) as cubic curves with an arrowhead polygon."""
    in_plans = [s for plan in project.plans.values() for s in plan.steps]
    ids = [*in_plans, *(s for s in project.steps if s not in in_plans)]
    depth: dict[str, int] = {}

    def depth_of(step_id: str) -> int:
        if step_id not in depth:
            deps = [d for d in project.steps[step_id].depends_on if d in project.steps]
            depth[step_id] = 1 + max((depth_of(d) for d in deps), default=-1)
        return depth[step_id]

    columns: dict[int, list[str]] = {}
    for step_id in ids:
        columns.setdefault(depth_of(step_id), []).append(step_id)
    row: dict[str, int] = {}
    for col in sorted(columns):
        members = columns[col]
        if col > 0:

            def weight(step_id: str) -> tuple[float, int]:
                deps = [row[d] for d in project.steps[step_id].depends_on if d in row]
                return (sum(deps) / len(deps) if deps else 0.0, ids.index(step_id))

            members.sort(key=weight)
        for index, step_id in enumerate(members):
            row[step_id] = index
    rows = max((len(m) for m in columns.values()), default=0)
    height = MARGIN * 2 + rows * NODE_H + max(rows - 1, 0) * ROW_GAP
    nodes: list[dict[str, Any]] = []
    for step_id in ids:
        step = project.steps[step_id]
        col, r = depth[step_id], row[step_id]
        offset = (rows - len(columns[col])) * (NODE_H + ROW_GAP) / 2
        x = MARGIN + col * (NODE_W + COL_GAP)
        y = MARGIN + offset + r * (NODE_H + ROW_GAP)
        current = states.get(step_id, state.PLANNED)
        fill, ink = STATE_COLOURS.get(current, STATE_COLOURS[state.PLANNED])
        title = step.title if len(step.title) <= TITLE_CHARS else step.title[: TITLE_CHARS - 1] + "…"
        nodes.append(
            {
                "id": step_id,
                "ref": step.ref,
                "title": title,
                "state": current,
                "fill": fill,
                "ink": ink,
                "x": round(x, 1),
                "y": round(y, 1),
                "w": NODE_W,
                "h": NODE_H,
                "selected": step_id in selected,
            }
        )
    where: dict[str, dict[str, Any]] = {str(n["id"]): n for n in nodes}
    ancestors: dict[str, set[str]] = {}

    def ancestors_of(step_id: str) -> set[str]:
        if step_id not in ancestors:
            found: set[str] = set()
            for dep in project.steps[step_id].depends_on:
                if dep in project.steps:
                    found |= {dep, *ancestors_of(dep)}
            ancestors[step_id] = found
        return ancestors[step_id]

    pairs = [(dep, str(n["id"])) for n in nodes for dep in project.steps[str(n["id"])].depends_on if dep in where]
    outgoing = {i: sorted((p for p in pairs if p[0] == i), key=lambda p: where[p[1]]["y"]) for i in where}
    incoming = {i: sorted((p for p in pairs if p[1] == i), key=lambda p: where[p[0]]["y"]) for i in where}

    def port(node: dict[str, Any], index: int, count: int) -> float:
        """Spread the ends of several edges over the middle of a node's side."""
        span = NODE_H - 24
        return float(node["y"]) + NODE_H / 2 + (0.0 if count < 2 else span * (index / (count - 1) - 0.5))

    edges = []
    for dep, step_id in pairs:
        a, b = where[dep], where[step_id]
        x1 = a["x"] + NODE_W
        y1 = port(a, outgoing[dep].index((dep, step_id)), len(outgoing[dep]))
        x2 = b["x"] - 7
        y2 = port(b, incoming[step_id].index((dep, step_id)), len(incoming[step_id]))
        bend = max((x2 - x1) / 2, 20)
        implied = any(dep in ancestors_of(other) for other in project.steps[step_id].depends_on if other != dep)
        edges.append(
            {
                "from": dep,
                "to": step_id,
                "implied": implied,  # also reached through another dependency: drawn dashed
                "d": f"M {x1:.1f} {y1:.1f} C {x1 + bend:.1f} {y1:.1f}, {x2 - bend:.1f} {y2:.1f}, {x2:.1f} {y2:.1f}",
                "arrow": f"{x2 + 7:.1f},{y2:.1f} {x2:.1f},{y2 - 4.5:.1f} {x2:.1f},{y2 + 4.5:.1f}",
            }
        )
    width = MARGIN * 2 + (max(columns, default=0) + 1) * NODE_W + max(columns, default=0) * COL_GAP
    legend = []
    for index, name in enumerate(state.STATES):
        fill, _ = STATE_COLOURS[name]
        legend.append({"state": name, "fill": fill, "x": MARGIN + index * 150, "y": height + 8})
    implied_key = None
    if any(e["implied"] for e in edges):
        implied_key = {"x": MARGIN + len(state.STATES) * 150, "y": height + 17}
    return {
        "width": max(width, MARGIN * 2 + len(state.STATES) * 150 + (330 if implied_key else 0)),
        "height": height + LEGEND_H,
        "nodes": nodes,
        "edges": edges,
        "legend": legend,
        "implied_key": implied_key,
    }


# --------------------------------------------------------------------------- templates


_MD_SPECIAL = str.maketrans({ch: f"\\{ch}" for ch in "\\`*[]<>|"})


def _md_cell(value: Any) -> str:
    """Free text made inert in Markdown, table cells included: no HTML, links, code spans or emphasis can be
    injected (a backslash escapes each character that could start one), and it stays on one line."""
    return shown(value).translate(_MD_SPECIAL).replace("\r", " ").replace("\n", "<br>")


def _watched(fps: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, list[Any]]]:
    """Rows of the watched tables: (table, [row count in each fingerprint, "-" where it is absent])."""
    names = sorted({t for fp in fps.values() for t in _dict(fp.get("tables"))})
    return [(t, [_dict(_dict(fp.get("tables")).get(t)).get("rows", "-") for fp in fps.values()]) for t in names]


def _md_code(value: Any, table: bool = True) -> str:
    """An inline code span holding the value exactly (a longer fence when the value holds backticks); in a
    table cell a pipe is escaped, as GitHub Flavored Markdown requires even inside code."""
    text = shown(value).replace("\r", " ").replace("\n", " ")
    if table:
        text = text.replace("|", "\\|")
    ticks = "`" * (max((len(s) for s in _backtick_runs(text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def _backtick_runs(text: str) -> list[str]:
    runs, current = [], ""
    for ch in text:
        if ch == "`":
            current += ch
        elif current:
            runs.append(current)
            current = ""
    if current:
        runs.append(current)
    return runs


def _md_fence(text: str) -> str:
    longest = max((len(s) for s in _backtick_runs(text)), default=0)
    return "`" * max(3, longest + 1)


def _environment(fmt: str) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("gcos", "templates"),
        autoescape=fmt == "html",
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["shown"] = shown
    env.filters["cell"] = _md_cell
    env.filters["code"] = _md_code
    env.filters["fence"] = _md_fence
    env.filters["spec_yaml"] = _spec_yaml
    env.filters["watched"] = _watched
    env.filters["pretty"] = lambda value: json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)
    return env


def _render(fmt: str, name: str, **context: Any) -> bytes:
    return _environment(fmt).get_template(name).render(**context).encode("utf-8")


# --------------------------------------------------------------------------- build


def build_report(
    conn: psycopg.Connection[Any], project: Project, *, step_id: str | None, fmt: str, out_dir: Path
) -> ReportResult:
    """Write the report of one step (`step_id`, any form ``Project.step`` accepts) or of every step to
    `out_dir`, as ``md``, ``html`` or ``json`` (an evidence pack). `conn` must be idle; it is read in one
    REPEATABLE READ, READ ONLY transaction. LedgerBroken (exit 7) if the ledger or the approvals disagree."""
    if fmt not in FORMATS:
        raise SpecError(f"Report format {fmt!r} is not one of {', '.join(FORMATS)}.")
    chosen = [project.step(step_id)] if step_id else list(project.steps.values())
    snapshot = _read(conn)
    _cross_check_approvals(snapshot)
    states = state.read_states(conn, project, snapshot.entries)
    steps = [_step_view(s, project, snapshot, states[s.id]) for s in chosen]
    last = snapshot.rows[-1] if snapshot.rows else None
    context: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "gcos_version": gcos_version,
        "created_at": utc_text(snapshot.db_now),
        "database": {"system_identifier": snapshot.system_identifier, "name": snapshot.database},
        "ledger_head": None if last is None else {"seq": last.seq, "hash": last.hash},
        "ledger_records": len(snapshot.rows),
        "scope": chosen[0].id if step_id else None,
        "steps": steps,
        "overview": [
            {
                "id": s.id,
                "ref": s.ref,
                "title": s.title,
                "state": states[s.id].state,
                "detail": states[s.id].detail,
                "spec_hash": s.hash,
                "reported": s in chosen,
            }
            for s in project.steps.values()
        ],
        "plans": [
            {"id": p.id, "title": p.title, "hash": p.hash, "steps": list(p.steps)} for p in project.plans.values()
        ],
    }
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise SpecError(f"{out_dir} is not a directory; choose a directory for --out.")
    try:
        if fmt == "md":
            files = _write_md(out_dir, context)
        elif fmt == "html":
            context["graph"] = graph_layout(project, {k: v.state for k, v in states.items()}, [s.id for s in chosen])
            context["colours"] = STATE_COLOURS
            files = (_write_atomic(out_dir / HTML_FILE, _render("html", "report.html.j2", **context)),)
        else:
            files = _write_pack(out_dir, context, snapshot)
    except OSError as exc:
        raise SpecError(f"Cannot write the report to {out_dir} ({exc.strerror}); choose a writable directory.") from exc
    return ReportResult(out_dir, files, fmt, tuple(s.id for s in chosen), last.seq if last else None)


def _write_md(out_dir: Path, context: Mapping[str, Any]) -> tuple[Path, ...]:
    files = [
        _write_atomic(out_dir / f"{step['id']}.md", _render("md", "step.md.j2", step=step, **context))
        for step in context["steps"]
    ]
    files.append(_write_atomic(out_dir / INDEX_MD, _render("md", "index.md.j2", links=True, **context)))
    return tuple(files)


def _clear_old_pack(out_dir: Path) -> None:
    """Make room for a pack: the directory must be empty, or hold a previous gcos pack whose files go."""
    if not out_dir.is_dir() or not any(out_dir.iterdir()):
        return
    manifest_path = out_dir / MANIFEST
    try:
        old = json.loads(manifest_path.read_text(encoding="utf-8"))
        listed = [PurePosixPath(p) for p in _dict(old.get("files"))] if old.get("format_version") == 1 else None
    except (OSError, ValueError, AttributeError):
        listed = None
    if listed is None or any(p.is_absolute() or ".." in p.parts for p in listed):
        raise SpecError(
            f"{out_dir} is not empty and holds no gcos evidence pack; choose an empty directory for a pack."
        )
    for rel in listed:
        (out_dir / rel).unlink(missing_ok=True)
    manifest_path.unlink()
    leftover = sorted(p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*") if not p.is_dir())
    if leftover:
        raise SpecError(
            f"{out_dir} holds files that are not part of its previous evidence pack ({leftover[0]}); "
            "choose an empty directory for a pack."
        )


def _write_pack(out_dir: Path, context: Mapping[str, Any], snapshot: _Snapshot) -> tuple[Path, ...]:
    if not snapshot.rows:
        raise SpecError("The ledger is empty: there is nothing to put in an evidence pack yet.")
    _clear_old_pack(out_dir)
    last = snapshot.rows[-1]
    recorded_at = ledger.parse_canonical(last.canonical)["recorded_at"]
    anchor = ledger.Anchor(last.seq, last.hash, str(recorded_at), snapshot.system_identifier, snapshot.database)
    database = {"system_identifier": snapshot.system_identifier, "name": snapshot.database}
    ledger_doc = {
        "format_version": FORMAT_VERSION,
        "database": database,
        "head": {"seq": last.seq, "hash": last.hash},
        "records": [
            {"seq": r.seq, "prev_hash": r.prev_hash, "hash": r.hash, "canonical": r.canonical} for r in snapshot.rows
        ],
    }
    written = [
        _write_atomic(out_dir / LEDGER_FILE, _dumps(ledger_doc)),
        _write_atomic(out_dir / ANCHOR_FILE, (json.dumps(anchor.to_dict(), indent=2, sort_keys=True) + "\n").encode()),
    ]
    for step in context["steps"]:
        written.append(_write_atomic(out_dir / STEPS_DIR / f"{step['id']}.json", _dumps(step)))
    written.append(_write_atomic(out_dir / REPORT_MD, _render("md", "pack.md.j2", links=False, **context)))
    manifest = {
        "format_version": FORMAT_VERSION,
        "generator": f"gcos {gcos_version}",
        "created_at": context["created_at"],
        "database": database,
        "scope": context["scope"],
        "steps": [s["id"] for s in context["steps"]],
        "ledger": {"head_seq": last.seq, "head_hash": last.hash, "records": len(snapshot.rows)},
        "files": {p.relative_to(out_dir).as_posix(): sha256_file(p) for p in written},
    }
    written.append(_write_atomic(out_dir / MANIFEST, _dumps(manifest)))
    return tuple(written)


# --------------------------------------------------------------------------- verify a pack offline


def _broken(message: str, report: ledger.VerifyReport | None = None) -> LedgerBroken:
    return LedgerBroken(f"The evidence pack is broken: {message}.", details=report)


def _load_json(pack_dir: Path, rel: str) -> Any:
    try:
        return ledger.parse_canonical((pack_dir / rel).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise _broken(f"{rel} is not readable JSON ({exc})") from exc


def _pack_files(pack_dir: Path) -> set[str]:
    found: set[str] = set()
    for root, dirs, names in os.walk(pack_dir):
        for name in [*names, *(d for d in dirs if (Path(root) / d).is_symlink())]:
            path = Path(root) / name
            rel = path.relative_to(pack_dir).as_posix()
            if path.is_symlink() or not path.is_file():
                raise _broken(f"{rel} is not a regular file")
            found.add(rel)
    return found


def verify_pack(pack_dir: Path, anchor: ledger.Anchor | None = None) -> ledger.VerifyReport:
    """Check an evidence pack with no database: every file's sha256 against manifest.json (a changed, missing
    or extra file is named), the hash chain of ledger.json from genesis (``ledger.check_rows``), anchor.json
    and the manifest against the last record, and each steps/*.json against the ledger and its spec hash.
    `anchor` is one kept elsewhere (``gcos ledger anchor``): the pack's ledger must contain it.
    Raises LedgerBroken (exit 7) naming the first bad thing; returns the chain's VerifyReport."""
    pack_dir = Path(pack_dir)
    if not pack_dir.is_dir():
        raise SpecError(f"{pack_dir} is not a directory; pass the evidence pack's directory.")
    if not (pack_dir / MANIFEST).is_file():
        raise _broken(f"{MANIFEST} is missing")
    manifest = _load_json(pack_dir, MANIFEST)
    listed = _dict(manifest).get("files")
    if _dict(manifest).get("format_version") != FORMAT_VERSION or not isinstance(listed, dict):
        raise _broken(f"{MANIFEST} is not a format_version {FORMAT_VERSION} gcos manifest")
    for rel in listed:
        parts = PurePosixPath(rel).parts
        if PurePosixPath(rel).is_absolute() or ".." in parts or not parts or rel == MANIFEST:
            raise _broken(f"{MANIFEST} lists {rel!r}, which is not a file of the pack")
    present = _pack_files(pack_dir) - {MANIFEST}
    for rel in sorted(listed):
        if rel not in present:
            raise _broken(f"{rel} is listed in {MANIFEST} but missing")
    for rel in sorted(present):
        if rel not in listed:
            raise _broken(f"{rel} is not listed in {MANIFEST}: a file was added")
    for rel in sorted(listed):
        actual = sha256_file(pack_dir / rel)
        if actual != listed[rel]:
            raise _broken(f"{rel} was changed (its sha256 is {actual}, {MANIFEST} says {listed[rel]})")
    for required in (LEDGER_FILE, ANCHOR_FILE):
        if required not in listed:
            raise _broken(f"{required} is missing")

    doc = _dict(_load_json(pack_dir, LEDGER_FILE))
    records = doc.get("records")
    if doc.get("format_version") != FORMAT_VERSION or not isinstance(records, list):
        raise _broken(f"{LEDGER_FILE} is not a format_version {FORMAT_VERSION} gcos ledger export")
    rows: list[ledger.Row] = []
    for index, item in enumerate(records):
        item = _dict(item)
        if not (
            type(item.get("seq")) is int
            and all(isinstance(item.get(k), str) for k in ("prev_hash", "hash", "canonical"))
        ):
            raise _broken(f"{LEDGER_FILE} record #{index + 1} is not a ledger row (seq, prev_hash, hash, canonical)")
        rows.append(ledger.Row(item["seq"], item["prev_hash"], item["hash"], item["canonical"]))
    if not rows:
        raise _broken(f"{LEDGER_FILE} holds no records")
    head = _dict(doc.get("head"))
    head_pair = (head.get("seq"), head.get("hash"))
    try:
        pack_anchor = ledger.Anchor.from_dict(_load_json(pack_dir, ANCHOR_FILE))
    except SpecError as exc:
        raise _broken(f"{ANCHOR_FILE} is not a gcos ledger anchor") from exc
    report = ledger.check_rows(rows, anchor=pack_anchor)
    if not report.ok:
        raise _broken(f"{LEDGER_FILE} fails at seq {report.first_bad_seq}: {report.reason}", report)
    last = rows[-1]
    if (pack_anchor.seq, pack_anchor.hash) != (last.seq, last.hash):
        raise _broken(
            f"{ANCHOR_FILE} holds seq {pack_anchor.seq}, not the last record of {LEDGER_FILE} (seq {last.seq})"
        )
    if head_pair != (last.seq, last.hash):
        raise _broken(f"the head in {LEDGER_FILE} is not its last record (seq {last.seq})")
    ledger_info = _dict(manifest.get("ledger"))
    if (ledger_info.get("head_seq"), ledger_info.get("head_hash")) != (last.seq, last.hash):
        raise _broken(
            f"{MANIFEST} names ledger head seq {ledger_info.get('head_seq')}, the ledger ends at seq {last.seq}"
        )
    identity = (pack_anchor.system_identifier, pack_anchor.database)
    for where, data in ((MANIFEST, manifest.get("database")), (LEDGER_FILE, doc.get("database"))):
        db = _dict(data)
        if (db.get("system_identifier"), db.get("name")) != identity:
            raise _broken(f"{where} names another database than {ANCHOR_FILE}")
    by_seq = {r.seq: r for r in rows}
    for rel in sorted(r for r in listed if r.startswith(f"{STEPS_DIR}/")):
        _check_step_file(pack_dir, rel, by_seq)
    if anchor is not None:
        if (anchor.system_identifier, anchor.database) != identity:
            raise SpecError(
                f"The anchor is for database {anchor.database!r} on system {anchor.system_identifier}, not "
                f"{identity[1]!r} on system {identity[0]}; use the anchor exported from the pack's database."
            )
        kept = ledger.check_rows(rows, anchor=anchor)
        if not kept.ok:
            raise _broken(
                f"{LEDGER_FILE} fails at seq {kept.first_bad_seq} against the kept anchor: {kept.reason}", kept
            )
        return kept
    return report


def _check_step_file(pack_dir: Path, rel: str, by_seq: Mapping[int, ledger.Row]) -> None:
    step = _dict(_load_json(pack_dir, rel))
    if step.get("format_version") != FORMAT_VERSION:
        raise _broken(f"{rel} is not a format_version {FORMAT_VERSION} step report")
    spec = _dict(step.get("spec"))
    if content_hash(spec.get("document")) != spec.get("hash"):
        raise _broken(f"{rel}: the spec document does not hash to its spec hash {spec.get('hash')}")
    for record in _list(step.get("records")):
        record = _dict(record)
        row = by_seq.get(record.get("seq"))  # type: ignore[arg-type]
        if row is None or (record.get("hash"), record.get("prev_hash"), record.get("canonical")) != (
            row.hash,
            row.prev_hash,
            row.canonical,
        ):
            raise _broken(f"{rel}: record seq {record.get('seq')} differs from {LEDGER_FILE}")
