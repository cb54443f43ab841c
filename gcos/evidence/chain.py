"""The builder's inputs as the chain gives them, for the JSON evidence pack: nothing else feeds it.

* **The project.** Every step and plan the ledger registered (``spec_registered``/``plan_registered``), each at
  the document its latest record names (the latest record of the step, or naming the plan, whose spec or
  plan hash it registered). The documents themselves are the registry's canonical texts (gcos.specs and
  gcos.plans), carried in the pack as ``registry/specs/<hash>.json`` and ``registry/plans/<hash>.json``: the
  chain names the hash, the file's sha256 must be it (``sha256sum`` checks it), and the loader reads it.
  A step the ledger never registered (planned, never rehearsed) has no record, so no pack shows it.
* **The clock.** Every time-dependent word (an approval, decision or exception expired; created_at) is as of
  the last record's ``recorded_at``, never the wall or database clock when the pack was written.
* **Gate 5's evidence** for a rehearsed step: the approvals the chain shows counting at that clock (see
  :func:`counted_approvals`), never a list carried beside the chain.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from gcos import history, ledger, state
from gcos.domain import Kind, StepState
from gcos.errors import LedgerBroken, SpecError
from gcos.evidence.common import as_dict, as_list, write_atomic
from gcos.evidence.snapshot import expired
from gcos.spec import Project
from gcos.spec.load import load_plan, step_document, step_from
from gcos.spec.model import PlanSpec, StepSpec

REGISTRY_DIR = "registry"
_T = TypeVar("_T")


def clock(entries: Sequence[ledger.LedgerEntry]) -> datetime:
    """The chain's clock: the last record's ``recorded_at``."""
    try:
        return state.parse_time(entries[-1].record.get("recorded_at"))
    except (IndexError, ValueError) as exc:
        raise LedgerBroken("The evidence pack is broken: the last ledger record has no recorded_at time.") from exc


def _current(entries: Sequence[ledger.LedgerEntry]) -> tuple[dict[str, str], dict[str, str]]:
    """step id -> its current spec hash, plan id -> its current plan hash, by the latest record naming one
    the chain registered for it."""
    spec_of: dict[str, str] = {}  # registered spec hash -> step id
    plan_of: dict[str, str] = {}  # registered plan hash -> plan id
    steps: dict[str, str] = {}
    plans: dict[str, str] = {}
    for e in entries:
        if e.kind == Kind.SPEC_REGISTERED and isinstance(e.payload.get("hash"), str):
            spec_of[e.payload["hash"]] = str(e.record.get("step_id"))
        elif e.kind == Kind.PLAN_REGISTERED and isinstance(e.payload.get("hash"), str):
            plan_of[e.payload["hash"]] = str(e.payload.get("plan_id"))
        spec_hash, step_id = e.record.get("spec_hash"), e.record.get("step_id")
        if isinstance(spec_hash, str) and spec_of.get(spec_hash) == step_id:
            steps[str(step_id)] = spec_hash
        named = e.payload.get("hash") if e.kind == Kind.PLAN_REGISTERED else e.payload.get("plan_hash")
        if isinstance(named, str) and named in plan_of:
            plans[plan_of[named]] = named
    return steps, plans


def current_steps(entries: Sequence[ledger.LedgerEntry]) -> dict[str, str]:
    """step id -> the spec hash the chain holds current for it (every step the ledger registered)."""
    return _current(entries)[0]


def _document(documents: Mapping[str, str], digest: str, out_dir: Path, part: str, what: str) -> Path:
    """Write the registered document `digest` to ``registry/<part>/<digest>.json`` under `out_dir`; it must be
    carried and its bytes must hash to the name the chain gives it."""
    text = documents.get(digest)
    if text is None:
        raise LedgerBroken(
            f"The evidence pack is broken: {REGISTRY_DIR}/{part}/{digest}.json is missing: the ledger names it as "
            f"{what}."
        )
    if hashlib.sha256(text.encode("utf-8")).hexdigest() != digest:
        raise LedgerBroken(
            f"The evidence pack is broken: {REGISTRY_DIR}/{part}/{digest}.json does not hash to its name, the "
            f"hash the ledger registered for {what}."
        )
    return write_atomic(out_dir / REGISTRY_DIR / part / f"{digest}.json", text.encode("utf-8"))


def chain_project(
    entries: Sequence[ledger.LedgerEntry], documents: Mapping[str, str], out_dir: Path
) -> tuple[Project, list[Path]]:
    """The project the chain registered, its documents written under `out_dir` (the pack) and loaded from
    there by the spec loader itself; the files written. Nothing registered: SpecError."""
    out_dir = out_dir.resolve()
    steps_now, plans_now = _current(entries)
    if not steps_now:
        raise SpecError("The ledger registers no step yet: rehearse a step before writing an evidence pack.")
    written: list[Path] = []
    plans: dict[str, PlanSpec] = {}
    for plan_id, digest in sorted(plans_now.items()):
        written.append(_document(documents, digest, out_dir, "plans", f"plan {plan_id}"))
        plan = _load(load_plan, written[-1], f"plan {plan_id}")
        if (plan.id, plan.hash) != (plan_id, digest):
            raise LedgerBroken(f"The evidence pack is broken: {written[-1].name} is not plan {plan_id} as registered.")
        plans[plan.id] = plan
    steps: list[StepSpec] = []
    for step_id, digest in sorted(steps_now.items()):
        written.append(_document(documents, digest, out_dir, "specs", f"the spec of {step_id}"))
        spec = _load(lambda p: step_from(step_document(p, out_dir), p), written[-1], f"step {step_id}")
        if (spec.id, spec.hash) != (step_id, digest):
            raise LedgerBroken(f"The evidence pack is broken: {written[-1].name} is not step {step_id} as registered.")
        steps.append(spec)
    ordered = {s.id: s for s in sorted(steps, key=lambda s: (s.order, s.id))}
    return Project(root=out_dir, steps=ordered, plans=plans, config=None), written


def _load(loader: Callable[[Path], _T], path: Path, what: str) -> _T:
    try:
        return loader(path)
    except SpecError as exc:
        raise LedgerBroken(
            f"The evidence pack is broken: the registered document of {what} does not load ({exc})."
        ) from exc


def counted_approvals(
    entries: Sequence[ledger.LedgerEntry], step: StepSpec, plan: PlanSpec | None, now: datetime
) -> tuple[int, ...]:
    """Gate 5's evidence at `now` as the chain shows it (the rules of gcos._approval_binding, _approvals_judged
    and _approver_problem over the approval records): approvals of the step's current spec and plan, after its
    last commit or rollback, not revoked, not expired; each approver's latest word; by a human holding a role
    the step asks for, who did not run the rehearsal relied on; enough of them (signers, require). Empty if
    gate 5 does not hold. The approvers' principals are read as the records state them, not as they are now."""
    h = history.read(entries).step(step.id)
    rehearsal = h.latest_rehearsal(after=h.epoch_seq)
    revoked = {e.payload.get("approval_id") for e in entries if e.kind == Kind.APPROVAL_REVOCATION}
    latest: dict[object, ledger.LedgerEntry] = {}
    for e in entries:
        if (
            e.kind == Kind.APPROVAL
            and e.record.get("step_id") == step.id
            and e.record.get("spec_hash") == step.hash
            and plan is not None
            and e.payload.get("plan_hash") == plan.hash
            and e.payload.get("approval_id") not in revoked
            and not expired(e.payload.get("expires_at"), now)
            and e.seq > h.epoch_seq
        ):
            latest[as_dict(e.record.get("actor")).get("role_oid")] = e
    counted: list[ledger.LedgerEntry] = []
    for e in sorted(latest.values(), key=lambda x: x.seq):
        actor = as_dict(e.record.get("actor"))
        roles = {str(r) for r in as_list(e.payload.get("approver_roles"))}
        if (
            e.payload.get("verdict") == "approve"
            and actor.get("kind") == "human"
            and roles & set(step.signer_roles)
            and (rehearsal is None or actor.get("role_oid") != rehearsal.actor_role_oid)
        ):
            counted.append(e)
    persons = {as_dict(e.record.get("actor")).get("principal") for e in counted}
    enough = len(persons) >= step.signers and all(
        sum(role in as_list(e.payload.get("approver_roles")) for e in counted) >= n for role, n in step.signer_require
    )
    return tuple(int(e.payload["approval_id"]) for e in counted) if enough else ()


def chain_states(entries: Sequence[ledger.LedgerEntry], project: Project, now: datetime) -> dict[str, state.StepState]:
    """Every step's state from the chain alone: the projection, with gate 5's evidence from the chain at `now`."""
    states = state.project_states(entries, project)
    approved = {}
    for step_id, current in states.items():
        if current.state == StepState.REHEARSED:
            ids = counted_approvals(entries, project.steps[step_id], project.plan_of(step_id), now)
            if ids:
                approved[step_id] = ids
    return state.project_states(entries, project, approved=approved) if approved else states


def read_documents(pack_dir: Path) -> dict[str, str]:
    """The registered documents a pack carries, by the hash their file is named after (checked on use)."""
    found: dict[str, str] = {}
    for part in ("specs", "plans"):
        for path in sorted((pack_dir / REGISTRY_DIR / part).glob("*.json")):
            try:
                found[path.stem] = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise LedgerBroken(f"The evidence pack is broken: {path.name} is not readable ({exc}).") from exc
    return found
