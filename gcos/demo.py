"""The whole gated story of seed 002 on the reference world, as `gcos demo` tells it.

Build the world, install gcos, create demo principals as real database roles (a sovereign, a council
member, an operator, an agent), put schema public under the kernel (gcos adopt), then for every step in plan
order: rehearse in the kernel (the agent rehearses the first step, the operator the others), (once) show a
commit refused for lack of approval and an agent refused as approver, record decisions and approvals on the
approvers' own connections, commit in the kernel as the operator (the batched backfill too, in resumable
batches the kernel runs one by one), and finally verify the ledger and write the reports. Re-running it says
what is already done.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from gcos import adopt, approvals, evidence, kernel, kernel_batched, ledger, principals, state
from gcos.errors import GateRefused, GcosError
from gcos.install import install
from gcos.results import BatchProgress
from gcos.spec import Project, StepSpec
from gcos.target import SessionSettings, Target, connect

DEMO_ROLES = {  # database role -> (display name, kind, gcos roles)
    "gcos_demo_sovereign": ("Demo Sovereign", "human", ("sovereign",)),
    "gcos_demo_council": ("Demo Council Member", "human", ("council",)),
    "gcos_demo_operator": ("Demo Operator", "human", ("operator",)),
    "gcos_demo_agent": ("Demo Agent", "agent", ("operator",)),
}
EXPIRY = "24h"


@dataclass(frozen=True)
class DemoEvent:
    step: str
    action: str  # rehearse | commit | approve | decide | refused | skip | ledger | report | setup
    outcome: str  # ok | refused | done | failed
    detail: str


@dataclass(frozen=True)
class StoryResult:
    events: tuple[DemoEvent, ...]
    committed: tuple[str, ...]
    ledger_records: int
    report_dir: str | None


Progress = Callable[[str, int, int], None]


def _ensure_roles(admin: psycopg.Connection[Any], target: Target) -> dict[str, Target]:
    """Create (or re-key) the demo LOGIN roles and map them to principals; return a target per role."""
    targets: dict[str, Target] = {}
    for role, (name, kind, roles) in DEMO_ROLES.items():
        password = secrets.token_urlsafe(18)
        exists = admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
        verb = "ALTER" if exists else "CREATE"
        admin.execute(sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password)))
        principals.add_principal(admin, role, name=name, kind=kind, roles=roles)
        targets[role] = Target(make_conninfo(target.dsn, user=role, password=password), target.source)
    return targets


def _steps_in_order(project: Project) -> list[StepSpec]:
    ordered: list[StepSpec] = []
    for plan in project.plans.values():
        ordered += [project.steps[s] for s in plan.steps]
    return ordered


def tell(
    target: Target,
    project: Project,
    *,
    settings: SessionSettings,
    report_dir: Path | None,
    progress: Progress | None = None,
) -> StoryResult:
    """Run the gated story; every refusal shown is a real refusal recorded in the ledger."""
    events: list[DemoEvent] = []

    def note(step: str, action: str, outcome: str, detail: str) -> None:
        events.append(DemoEvent(step, action, outcome, detail))

    with connect(target, settings) as admin:
        result = install(admin)
        note(
            "-",
            "setup",
            "done",
            f"gcos schema version {result.version_after}" + (" installed" if result.applied else " already installed"),
        )
        roles = _ensure_roles(admin, target)
        note("-", "setup", "done", "principals: " + ", ".join(f"{n} ({k})" for n, k, _ in DEMO_ROLES.values()))
        note("-", "setup", "done", _adopt_public(admin))
    sovereign, council, agent = (roles["gcos_demo_sovereign"], roles["gcos_demo_council"], roles["gcos_demo_agent"])
    operator = roles["gcos_demo_operator"]
    shown_refusals = False
    decided: set[str] = set()
    for step in _steps_in_order(project):
        with connect(target, settings) as conn:
            current = _state(conn, project)[step.id]
        if current.state == "committed":
            note(step.id, "skip", "done", f"already committed (ledger seq {current.commit_seq})")
            continue
        rehearser = operator if shown_refusals else agent  # agents may rehearse; they never approve
        with connect(rehearser, settings) as conn:
            rehearsed = kernel.rehearse(
                conn, project, step, settings=settings, evidence_dir=project.root / "rehearsals"
            )
        who = "the agent" if rehearser is agent else "the operator"
        note(step.id, "rehearse", "ok", f"{rehearsed.message} (by {who}, ledger seq {rehearsed.ledger_seq})")
        if not shown_refusals:
            shown_refusals = True
            try:
                kernel.commit(operator, project, step, action="commit", settings=settings)
            except GateRefused as exc:
                note(step.id, "refused", "refused", f"commit before any approval: {exc.message}")
            with connect(agent, settings) as conn:
                try:
                    approvals.approve(
                        conn, project, step, verdict="approve", expires_in=approvals.parse_duration(EXPIRY)
                    )
                except GcosError as exc:
                    note(step.id, "refused", "refused", f"the agent tried to approve: {exc.message}")
        for decision in step.decisions:
            if decision in decided:
                continue
            with connect(sovereign, settings) as conn:
                decided_receipt = approvals.decide(
                    conn,
                    decision,
                    verdict="approve",
                    expires_in=approvals.parse_duration(EXPIRY),
                    note="gcos demo: decided by the sovereign",
                )
            decided.add(decision)
            note(
                step.id,
                "decide",
                "ok",
                f"{decided_receipt.principal} approved decision {decision} (ledger seq "
                f"{decided_receipt.ledger_seq}, expires {decided_receipt.expires_at:%Y-%m-%d %H:%M} UTC)",
            )
        for signer in (sovereign, council)[: step.signers]:
            with connect(signer, settings) as conn:
                receipt = approvals.approve(
                    conn,
                    project,
                    step,
                    verdict="approve",
                    expires_in=approvals.parse_duration(EXPIRY),
                    note="gcos demo: read the rehearsal evidence",
                )
            note(
                step.id,
                "approve",
                "ok",
                f"{receipt.principal} approved spec {receipt.spec_hash[:12]}… "
                f"(approval {receipt.approval_id}, saw rehearsal seq {receipt.rehearsal_seq})",
            )
        if step.mode == "batched":

            def batch_progress(p: BatchProgress, label: str = f"{step.id} backfill") -> None:
                if progress:
                    progress(label, p.done_rows, p.total_rows)

            done = kernel_batched.commit_batched(operator, project, step, settings=settings, progress=batch_progress)
            note(step.id, "commit", "ok", f"{done.message.rstrip('.')} (by the operator, batch by batch in the kernel)")
        else:
            applied = kernel.commit(operator, project, step, action="commit", settings=settings)
            note(step.id, "commit", "ok", f"{applied.message.rstrip('.')} (by the operator)")

    with connect(target, settings) as conn:
        verified = ledger.verify(conn)
        note(
            "-",
            "ledger",
            "ok",
            f"ledger intact: {verified.records} records re-hashed from genesis, head seq {verified.head_seq}",
        )
        committed = tuple(s for s, st in _state(conn, project).items() if st.state == "committed")
        written: str | None = None
        if report_dir is not None:
            for fmt in ("html", "md", "json"):
                made = evidence.build_report(conn, project, step_id=None, fmt=fmt, out_dir=report_dir / fmt)
            written = str(report_dir)
            note(
                "-",
                "report",
                "ok",
                f"reports written to {report_dir} (html, md, json evidence pack; last: {len(made.files)} files)",
            )
    return StoryResult(tuple(events), committed, verified.records, written)


def _adopt_public(admin: psycopg.Connection[Any]) -> str:
    """Put schema public under the kernel (once): from then on only gcos changes it."""
    if kernel.adopted(admin):
        return "schema public is adopted: only the kernel changes it"
    (change,) = adopt.adopt(admin, ["public"]).schemas
    return (
        f"schema public adopted (ledger seq {change.ledger_seq}): owned by gcos_kernel, {len(change.revoked)} "
        "write privilege(s) revoked; from now on only the kernel changes it"
    )


def _state(conn: psycopg.Connection[Any], project: Project) -> dict[str, state.StepState]:
    return state.read_states(conn, project)
