"""`gcos plan`: every spec and the DAG validated, every static check `gcos rehearse` runs before it touches the
database (kernel.static_check: the SQL against the allow list and every refusal class, the checks read-only),
and the build order laid out with each step's commit gates as far as the specs alone can tell. It is offline:
no server is touched, so it shows no state (it cannot read one: `gcos status` does)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gcos import kernel
from gcos.errors import SpecError
from gcos.spec import PlanSpec, StepSpec, load_project

SQL_GATE = "SQL passes rehearse's static check"


@dataclass(frozen=True)
class Gate:
    """One commit gate of a step as far as it can be known without acting: holds True/False/None (unknown)."""

    name: str
    holds: bool | None
    reason: str
    short: str  # a few words for one-line views


@dataclass(frozen=True)
class PlannedStep:
    id: str
    ref: str
    title: str
    mode: str
    spec_hash: str
    depends_on: tuple[str, ...]
    state: str | None  # None: not read (plan is offline; gcos status reads it)
    gates: tuple[Gate, ...]
    source: str | None


@dataclass(frozen=True)
class PlannedPlan:
    id: str
    title: str
    plan_hash: str
    steps: tuple[PlannedStep, ...]
    global_stop: tuple[str, ...]


@dataclass(frozen=True)
class PlanReport:
    project: str
    plans: tuple[PlannedPlan, ...]
    unplanned: tuple[str, ...] = ()


def static_gates(step: StepSpec, plan: PlanSpec | None) -> tuple[Gate, ...]:
    """The contract's commit gates, evaluated only as far as the specs alone can tell."""
    mandatory = plan.fold_ins.get(step.id, ()) if plan else ()
    missing = [f for f in mandatory if f not in step.fold_ins]
    if missing:
        fold_ins = Gate(
            "spec valid, fold-ins declared",
            False,
            f"mandatory fold-in {', '.join(missing)} not declared in {step.path.name}",
            f"fold-in {', '.join(missing)} missing",
        )
    else:
        reason = f"fold-ins declared: {', '.join(mandatory)}" if mandatory else "valid; no mandatory fold-ins"
        fold_ins = Gate(
            "spec valid, fold-ins declared",
            True,
            reason,
            f"fold-ins {', '.join(mandatory)}" if mandatory else "spec valid",
        )
    deps = ", ".join(step.depends_on)
    roles = "/".join(step.signer_roles)
    required = ", ".join(f"at least {n} {role}" for role, n in step.signer_require)
    decisions = ", ".join(step.decisions)
    return (
        fold_ins,
        Gate(
            "dependencies committed",
            None if deps else True,
            f"needs {deps} committed" if deps else "no dependencies",
            f"after {deps}" if deps else "no deps",
        ),
        Gate(
            "re-verify holds now",
            None,
            f"{len(step.reverify)} live check(s): run gcos verify {step.id}",
            f"re-verify ({len(step.reverify)})",
        ),
        Gate(
            "rehearsed entry==exit on this spec hash",
            None,
            f"needs a passing rehearsal of spec {step.hash[:12]}",
            "rehearsal",
        ),
        Gate(
            "approved",
            None,
            f"needs {step.signers} distinct human {roles} approval(s), {required}, bound to {step.hash[:12]}",
            f"{step.signers} {roles}",
        ),
        Gate(
            "decisions hold",
            None if decisions else True,
            f"needs an unexpired approve on {decisions} by a sovereign who is not the committer, bound to its "
            f"text in the plan: ask a sovereign to run gcos decide {step.decisions[0]}"
            if decisions
            else "no decisions required",
            decisions or "no decisions",
        ),
        Gate("global stop conditions clear", None, "checked at rehearse and commit", "global stops"),
    )


def sql_gate(step: StepSpec, plan: PlanSpec) -> Gate:
    """The static check rehearse runs first (exit 2 there), run here without a database."""
    try:
        kernel.static_check(step, plan)
    except SpecError as exc:
        return Gate(SQL_GATE, False, exc.message, "SQL refused")
    return Gate(SQL_GATE, True, "every statement allowed; checks read-only", "SQL ok")


def plan(project_dir: Path) -> PlanReport:
    """Validate every spec and the DAG, run rehearse's static checks, and lay out the build order with each
    step's known gates; SpecError (exit 2, the report as details) when a static check refuses a step."""
    project = load_project(project_dir)
    planned: list[PlannedPlan] = []
    in_plans: set[str] = set()
    for p in project.plans.values():
        steps = []
        for step_id in p.steps:
            step = project.steps[step_id]
            in_plans.add(step_id)
            steps.append(
                PlannedStep(
                    step.id,
                    step.ref,
                    step.title,
                    step.mode,
                    step.hash,
                    step.depends_on,
                    None,
                    (*static_gates(step, p), sql_gate(step, p)),
                    step.source,
                )
            )
        planned.append(PlannedPlan(p.id, p.title, p.hash, tuple(steps), tuple(s.name for s in p.global_stop)))
    unplanned = tuple(s for s in project.steps if s not in in_plans)
    report = PlanReport(str(project.root), tuple(planned), unplanned)
    refused = [
        (s.id, g.reason) for p in planned for s in p.steps for g in s.gates if g.name == SQL_GATE and g.holds is False
    ]
    if refused:
        said = "; ".join(reason.rstrip(".") for _, reason in refused)
        raise SpecError(
            f"{len(refused)} step(s) would be refused by gcos rehearse: {said}; fix the SQL or the allow list.",
            details=report,
        )
    return report
