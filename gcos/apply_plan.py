"""`gcos apply PLAN`: commit every step of a plan in plan order, each through the same kernel commit (and the
same gates) as `gcos commit STEP`. A step already committed with the spec on disk is skipped and said so; one
committed with another spec (edited since) stops the run (exit 3); the first refusal stops the run with that
refusal's exit code and sentence, naming what was committed before it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gcos import history, ledger
from gcos.errors import GateRefused, GcosError, SpecError
from gcos.spec import Project


@dataclass(frozen=True)
class Applied:
    step: str
    outcome: str  # committed | skipped | refused
    detail: str
    ledger_seq: int | None = None


@dataclass(frozen=True)
class ApplyResult:
    plan: str
    steps: tuple[Applied, ...]
    stopped_at: str | None = None  # the step refused, if one was

    @property
    def ok(self) -> bool:
        return self.stopped_at is None


def plan_steps(project: Project, plan_id: str) -> tuple[str, ...]:
    """The plan's steps in plan order; an unknown plan is bad input (exit 2)."""
    plan = project.plans.get(plan_id)
    if plan is None:
        known = ", ".join(sorted(project.plans)) or "none"
        raise SpecError(f"there is no plan {plan_id!r} in {project.root / 'plans'} (plans: {known}); name one of them.")
    return plan.steps


def apply(
    project: Project,
    plan_id: str,
    committed_now: Callable[[], list[ledger.LedgerEntry]],
    commit: Callable[[str], Any],
) -> ApplyResult:
    """Commit each step of `plan_id` in order with `commit(step_id)`; `committed_now()` reads the ledger, so that
    a step committed before (or by another session meanwhile) is skipped. The first refusal is re-raised with
    its own exit code, its sentence prefixed with where the run stopped, and this result as details."""
    done: list[Applied] = []
    for step_id in plan_steps(project, plan_id):
        h = history.read(committed_now()).step(step_id)
        last = h.last_commit if h.committed else None
        if last is not None and last.spec_hash == project.steps[step_id].hash:
            done.append(Applied(step_id, "skipped", f"already committed (ledger seq {last.seq})"))
            continue
        try:
            if last is not None:
                raise GateRefused(history.edited_since_commit(step_id, last.seq, last.spec_hash))
            result = commit(step_id)
        except GcosError as exc:
            done.append(Applied(step_id, "refused", exc.message))
            summary = ApplyResult(plan_id, tuple(done), stopped_at=step_id)
            exc.message = f"gcos apply {plan_id} stopped at {step_id}{_before(done)}: {exc.message}"
            exc.args = (exc.message,)
            exc.details = {"apply": summary, "refusal": exc.details}
            raise
        done.append(
            Applied(step_id, "committed", str(getattr(result, "message", "")), getattr(result, "ledger_seq", None))
        )
    return ApplyResult(plan_id, tuple(done))


def _before(done: list[Applied]) -> str:
    committed = [a.step for a in done if a.outcome == "committed"]
    skipped = [a.step for a in done if a.outcome == "skipped"]
    parts = []
    if committed:
        parts.append(f"committed {', '.join(committed)}")
    if skipped:
        parts.append(f"skipped {', '.join(skipped)} (already committed)")
    return f" ({'; '.join(parts)})" if parts else " (nothing committed before it)"
