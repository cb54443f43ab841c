"""The project: every step and plan under one root, validated together as one build order.

A spec file is checked alone by gcos.spec.load; what only the whole project can tell is checked here:
unique ids and orders, dependencies that exist and are spelled as declared, no cycle, and plans that
list known steps, each step in at most one plan and after the steps it depends on.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from gcos.errors import SpecError
from gcos.spec.load import load_plan, step_document, step_from
from gcos.spec.model import PlanSpec, StepSpec
from gcos.spec.project_file import ProjectFile, check_vocabulary, load_project_file

STEP_REF = re.compile(r"^step-(\d+)$", re.IGNORECASE)


@dataclass(frozen=True)
class Project:
    """Every step and plan of a gcos project, validated together (ids, orders, the DAG)."""

    root: Path
    steps: dict[str, StepSpec]  # by canonical id, in order
    plans: dict[str, PlanSpec]
    config: ProjectFile | None = None  # gcos.yaml (or its defaults)

    def step(self, ref: str) -> StepSpec:
        """Address a step case-insensitively by id (SB-10, sb-10) or by order (step-3)."""
        wanted = ref.strip()
        by_order = STEP_REF.match(wanted)
        for spec in self.steps.values():
            if spec.id.upper() == wanted.upper() or (by_order and spec.order == int(by_order.group(1))):
                return spec
        known = ", ".join(f"{s.id} (step-{s.order})" for s in self.steps.values()) or "none"
        raise SpecError(f"unknown step {ref!r}; known steps: {known}.")

    def decision_text(self, name: str) -> str:
        """The text of decision `name` as the project's plans carry it (one text, whichever plans carry it)."""
        texts = {p.decisions[name] for p in self.plans.values() if name in p.decisions}
        if not texts:
            raise SpecError(f"no plan carries the text of decision {name}; add it under decisions: in the plan.")
        if len(texts) > 1:
            carriers = ", ".join(p.id for p in self.plans.values() if name in p.decisions)
            raise SpecError(f"plans {carriers} carry different texts of decision {name}; make them one text.")
        return texts.pop()

    def plan_of(self, step_id: str) -> PlanSpec | None:
        for plan in self.plans.values():
            if step_id in plan.steps:
                return plan
        return None


def _find_cycle(graph: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A dependency cycle as a list of ids (first repeated at the end), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in graph.get(node, ()):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep) :], dep]
            if dep not in state and (found := visit(dep)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def _load_steps(
    root: Path, plans: Sequence[PlanSpec], checked: bool = True
) -> tuple[dict[str, StepSpec], dict[str, StepSpec]]:
    """Every step under steps/, by id and by upper-cased id; refuse duplicate ids and orders. A step that
    states no order takes its position in the (first) plan that lists it."""
    steps_dir = root / "steps"
    if not steps_dir.is_dir():
        raise SpecError(f"{root} has no steps/ directory; run gcos from a gcos project (see README).")
    documents = [(path, step_document(path, root, checked=checked)) for path in sorted(steps_dir.glob("*.y*ml"))]
    positions: dict[str, int] = {}
    for plan in plans:
        for i, step_id in enumerate(plan.steps, start=1):
            positions.setdefault(step_id, i)
    steps: dict[str, StepSpec] = {}
    by_key: dict[str, StepSpec] = {}
    by_order: dict[int, StepSpec] = {}
    for path, doc in documents:
        stated = "order" in doc
        spec = step_from(doc, path, positions.get(doc["id"]))
        if spec.id.upper() in by_key:
            raise SpecError(f"{path}: step {spec.id}: duplicate step id, also in {by_key[spec.id.upper()].path}.")
        if spec.order in by_order:
            how = "" if stated else " (its position in its plan: it states no order; add order: N)"
            raise SpecError(
                f"{path}: step {spec.id} key order: order {spec.order}{how} is also used by {by_order[spec.order].id} "
                f"({by_order[spec.order].path})."
            )
        by_key[spec.id.upper()] = by_order[spec.order] = steps[spec.id] = spec
    if not steps:
        raise SpecError(f"{steps_dir} holds no step specs (*.yaml).")
    return steps, by_key


def _check_dependencies(steps: Mapping[str, StepSpec], by_key: Mapping[str, StepSpec]) -> None:
    """Every depends_on names a known step exactly as it is spelled, and the graph has no cycle."""
    for spec in steps.values():
        for dep in spec.depends_on:
            if dep.upper() not in by_key:
                raise SpecError(f"{spec.path}: step {spec.id} key depends_on: unknown step {dep!r}.")
            if by_key[dep.upper()].id != dep:
                raise SpecError(
                    f"{spec.path}: step {spec.id} key depends_on: write {by_key[dep.upper()].id!r}, not {dep!r}."
                )
    cycle = _find_cycle({s.id: s.depends_on for s in steps.values()})
    if cycle:
        raise SpecError(f"dependency cycle: {' -> '.join(cycle)}; remove one depends_on edge.")


def _check_plan(path: Path, plan: PlanSpec, steps: Mapping[str, StepSpec], plans: Mapping[str, PlanSpec]) -> None:
    """A plan lists known steps not in another plan, each after the steps it depends on."""
    if plan.id in plans:
        raise SpecError(f"{path}: plan {plan.id}: duplicate plan id, also in {plans[plan.id].path}.")
    for i, step_id in enumerate(plan.steps):
        if step_id not in steps:
            raise SpecError(f"{path}: plan {plan.id} key steps[{i}]: unknown step {step_id!r}.")
        other = next((p for p in plans.values() if step_id in p.steps), None)
        if other:
            raise SpecError(f"{path}: plan {plan.id}: step {step_id} is already in plan {other.id}.")
        for dep in steps[step_id].depends_on:
            if dep in plan.steps and plan.steps.index(dep) > i:
                raise SpecError(
                    f"{path}: plan {plan.id} key steps: {step_id} is listed before {dep}, which it depends on."
                )
    for step_id in plan.fold_ins:
        if step_id not in plan.steps:
            raise SpecError(f"{path}: plan {plan.id} key fold_ins.{step_id}: step is not in this plan.")
    for step_id in plan.steps:
        for name in steps[step_id].decisions:
            if name not in plan.decisions:
                raise SpecError(
                    f"{path}: plan {plan.id} key decisions: {step_id} requires decision {name}, and the plan does "
                    f"not carry its text; add decisions: {{{name}: {{text: ...}}}} (a decision is bound to its text)."
                )


def load_project(root: Path, *, focus: str | None = None) -> Project:
    """Load gcos.yaml, steps/*.yaml and plans/*.yaml under `root` and validate them as one build order.

    With `focus` (a step reference, as Project.step takes it), for a command that registers and runs that step
    alone (`gcos rehearse`): the plans, the project's structure (ids, orders, dependencies, plans, roles) and
    that step are checked in full, the other steps without their JSON Schema and SQL parses (0.1 s of each
    such command); any doubt about them (a document the unchecked path cannot read) loads everything checked,
    so a refusal names the same error as without `focus`."""
    focused = _focused(root, focus) if focus is not None else None
    return focused if focused is not None else _load(root, checked=True)


def _focused(root: Path, focus: str) -> Project | None:
    """The project with only the `focus` step's spec checked in full (see load_project); None where the unchecked
    path cannot vouch for it, so that the checked load decides and names any error exactly as without `focus`."""
    try:
        project = _load(root, checked=False)
        light = project.step(focus)
        spec = step_from(step_document(light.path, project.root), light.path, light.order)
    except Exception:  # unvalidated documents may fail in any way: never an answer, the checked load gives it
        return None
    return project if spec == light else None  # (the file changed between its two reads: load it checked)


def _load(root: Path, *, checked: bool) -> Project:
    root = root.resolve()
    config = load_project_file(root)
    plans_dir = root / "plans"
    loaded = [(path, load_plan(path)) for path in (sorted(plans_dir.glob("*.y*ml")) if plans_dir.is_dir() else [])]
    steps, by_key = _load_steps(root, [plan for _, plan in loaded], checked)
    check_vocabulary(config, steps.values())
    _check_dependencies(steps, by_key)
    plans: dict[str, PlanSpec] = {}
    for path, plan in loaded:
        _check_plan(path, plan, steps, plans)
        plans[plan.id] = plan
    ordered = dict(sorted(steps.items(), key=lambda item: item[1].order))
    return Project(root=root, steps=ordered, plans=plans, config=config)
