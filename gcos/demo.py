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
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from gcos import adopt, approvals, evidence, kernel, kernel_batched, ledger, principals, record_evidence, state
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
    story = _Story(project, settings, progress)
    story.set_up(target)
    for step in _steps_in_order(project):
        with connect(target, settings) as conn:
            current = _state(conn, project)[step.id]
        if current.state == "committed":
            story.note(step.id, "skip", "done", f"already committed (ledger seq {current.commit_seq})")
            continue
        story.rehearse(step)
        if not story.shown_refusals:
            story.show_refusals(step)
        story.decide(step)
        story.approve(step)
        story.commit(step)
    return story.finish(target, report_dir)


@dataclass
class _Story:
    """The demo's actors and what it has told so far."""

    project: Project
    settings: SessionSettings
    progress: Progress | None
    events: list[DemoEvent] = field(default_factory=list)
    roles: dict[str, Target] = field(default_factory=dict)
    decided: set[str] = field(default_factory=set)
    shown_refusals: bool = False

    def note(self, step: str, action: str, outcome: str, detail: str) -> None:
        self.events.append(DemoEvent(step, action, outcome, detail))

    def role(self, name: str) -> Target:
        return self.roles[f"gcos_demo_{name}"]

    def set_up(self, target: Target) -> None:
        """Install gcos, create the demo principals, adopt schema public."""
        with connect(target, self.settings) as admin:
            result = install(admin)
            done = " installed" if result.applied else " already installed"
            self.note("-", "setup", "done", f"gcos schema version {result.version_after}{done}")
            self.roles = _ensure_roles(admin, target)
            self.note("-", "setup", "done", "principals: " + ", ".join(f"{n} ({k})" for n, k, _ in DEMO_ROLES.values()))
            self.note("-", "setup", "done", _adopt_public(admin))

    def rehearse(self, step: StepSpec) -> None:
        """The agent rehearses the first step, the operator the others (agents may rehearse, never approve)."""
        who = "operator" if self.shown_refusals else "agent"
        with connect(self.role(who), self.settings) as conn:
            rehearsed = kernel.rehearse(
                conn, self.project, step, settings=self.settings, evidence_dir=self.project.root / "rehearsals"
            )
        self.note(step.id, "rehearse", "ok", f"{rehearsed.message} (by the {who}, ledger seq {rehearsed.ledger_seq})")

    def show_refusals(self, step: StepSpec) -> None:
        """Once: a commit before any approval is refused, and the agent cannot approve."""
        self.shown_refusals = True
        try:
            with self.recorded(step):
                kernel.commit(self.role("operator"), self.project, step, action="commit", settings=self.settings)
        except GateRefused as exc:
            self.note(step.id, "refused", "refused", f"commit before any approval: {exc.message}")
        with connect(self.role("agent"), self.settings) as conn:
            try:
                approvals.approve(
                    conn, self.project, step, verdict="approve", expires_in=approvals.parse_duration(EXPIRY)
                )
            except GcosError as exc:
                self.note(step.id, "refused", "refused", f"the agent tried to approve: {exc.message}")

    def decide(self, step: StepSpec) -> None:
        """The sovereign (never the committing operator) records each decision the step requires, once, bound
        to its text in the plan: C-1 and C-2 for SB-1-2."""
        for decision in step.decisions:
            if decision in self.decided:
                continue
            with connect(self.role("sovereign"), self.settings) as conn:
                receipt = approvals.decide(
                    conn,
                    self.project,
                    decision,
                    verdict="approve",
                    expires_in=approvals.parse_duration(EXPIRY),
                    note="gcos demo: decided by the sovereign",
                )
            self.decided.add(decision)
            self.note(
                step.id,
                "decide",
                "ok",
                f"{receipt.principal} approved decision {decision} (ledger seq "
                f"{receipt.ledger_seq}, expires {receipt.expires_at:%Y-%m-%d %H:%M} UTC)",
            )

    def approve(self, step: StepSpec) -> None:
        """The sovereign approves, and the council member too where the step asks for two signers."""
        for signer in (self.role("sovereign"), self.role("council"))[: step.signers]:
            with connect(signer, self.settings) as conn:
                receipt = approvals.approve(
                    conn,
                    self.project,
                    step,
                    verdict="approve",
                    expires_in=approvals.parse_duration(EXPIRY),
                    note="gcos demo: read the rehearsal evidence",
                )
            self.note(
                step.id,
                "approve",
                "ok",
                f"{receipt.principal} approved spec {receipt.spec_hash[:12]}… "
                f"(approval {receipt.approval_id}, saw rehearsal seq {receipt.rehearsal_seq})",
            )

    def commit(self, step: StepSpec) -> None:
        """The operator commits in the kernel; a batched step batch by batch."""
        operator = self.role("operator")
        if step.mode != "batched":
            with self.recorded(step) as files:
                applied = kernel.commit(operator, self.project, step, action="commit", settings=self.settings)
            self.note(step.id, "commit", "ok", f"{applied.message.rstrip('.')} (by the operator){files.said()}")
            return

        def batch_progress(p: BatchProgress, label: str = f"{step.id} backfill") -> None:
            if self.progress:
                self.progress(label, p.done_rows, p.total_rows)

        with self.recorded(step) as files:
            done = kernel_batched.commit_batched(
                operator, self.project, step, settings=self.settings, progress=batch_progress
            )
        said = f"{done.message.rstrip('.')} (by the operator, batch by batch in the kernel){files.said()}"
        self.note(step.id, "commit", "ok", said)

    def recorded(self, step: StepSpec) -> AbstractContextManager[record_evidence.Recorded]:
        """The commit's (or refusal's) evidence files beside the rehearsals', as `gcos commit` writes them."""
        return record_evidence.recorded(
            lambda: connect(self.role("operator"), record_evidence.evidence_settings(self.settings)),
            self.project.root / "rehearsals",
            step.id,
        )

    def finish(self, target: Target, report_dir: Path | None) -> StoryResult:
        """Verify the ledger and write the reports."""
        with connect(target, self.settings) as conn:
            verified = ledger.verify(conn)
            self.note(
                "-",
                "ledger",
                "ok",
                f"ledger intact: {verified.records} records re-hashed from genesis, head seq {verified.head_seq}",
            )
            committed = tuple(s for s, st in _state(conn, self.project).items() if st.state == "committed")
            written: str | None = None
            if report_dir is not None:
                for fmt in ("html", "md", "json"):
                    made = evidence.build_report(conn, self.project, step_id=None, fmt=fmt, out_dir=report_dir / fmt)
                written = str(report_dir)
                self.note(
                    "-",
                    "report",
                    "ok",
                    f"reports written to {report_dir} (html, md, json evidence pack; last: {len(made.files)} files)",
                )
        return StoryResult(tuple(self.events), committed, verified.records, written)


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
