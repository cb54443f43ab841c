"""The layout of the build-order graph the html report draws as inline SVG. Pure: a project, the states of
its steps and the reported steps in; nodes, edges and a legend with their coordinates out (the template only
draws them). Steps sit in columns by dependency depth, rows ordered by the mean row of their dependencies."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gcos import state
from gcos.spec import Project

# Node colours of the build-order graph (and the legend): fill, text.
STATE_COLOURS: dict[str, tuple[str, str]] = {
    state.PLANNED: ("#9e9e9e", "#ffffff"),
    state.REHEARSED: ("#1f6fd1", "#ffffff"),
    state.APPROVED: ("#f2a900", "#1b1b1b"),
    state.COMMITTED: ("#2e8540", "#ffffff"),
    state.ROLLED_BACK: ("#7b3fa0", "#ffffff"),
}
NODE_W, NODE_H, COL_GAP, ROW_GAP, MARGIN, LEGEND_H = 180, 62, 52, 22, 20, 40
TITLE_CHARS = 27
LEGEND_STEP = 150  # the legend's width per state
IMPLIED_KEY_W = 330  # the legend's width for the dashed "implied" edge


def graph_layout(project: Project, states: Mapping[str, str], selected: Sequence[str] = ()) -> dict[str, Any]:
    """Nodes (every step of every plan, then any step in no plan) in columns by dependency depth, rows ordered
    by the mean row of their dependencies; edges (depends_on) as cubic curves with an arrowhead polygon."""
    ids = step_order(project)
    columns = columns_by_depth(project, ids)
    rows = max((len(m) for m in columns.values()), default=0)
    height = MARGIN * 2 + rows * NODE_H + max(rows - 1, 0) * ROW_GAP
    nodes = _nodes(project, ids, columns, states, selected)
    edges = _edges(project, nodes)
    width = MARGIN * 2 + (max(columns, default=0) + 1) * NODE_W + max(columns, default=0) * COL_GAP
    legend = []
    for index, name in enumerate(state.STATES):
        fill, _ = STATE_COLOURS[name]
        legend.append({"state": name, "fill": fill, "x": MARGIN + index * LEGEND_STEP, "y": height + 8})
    implied_key = None
    if any(e["implied"] for e in edges):
        implied_key = {"x": MARGIN + len(state.STATES) * LEGEND_STEP, "y": height + 17}
    return {
        "width": max(width, MARGIN * 2 + len(state.STATES) * LEGEND_STEP + (IMPLIED_KEY_W if implied_key else 0)),
        "height": height + LEGEND_H,
        "nodes": nodes,
        "edges": edges,
        "legend": legend,
        "implied_key": implied_key,
    }


def step_order(project: Project) -> list[str]:
    """The steps as the graph lists them: every step of every plan (plan order), then any step in no plan."""
    in_plans = [s for plan in project.plans.values() for s in plan.steps]
    return [*in_plans, *(s for s in project.steps if s not in in_plans)]


def columns_by_depth(project: Project, ids: Sequence[str]) -> dict[int, list[str]]:
    """Column (dependency depth: 0 for a step with no dependency, else one more than its deepest dependency)
    -> its steps, top to bottom: column 0 in `ids` order, later ones by the mean row of their dependencies
    (ties in `ids` order)."""
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
    return columns


def _nodes(
    project: Project,
    ids: Sequence[str],
    columns: Mapping[int, Sequence[str]],
    states: Mapping[str, str],
    selected: Sequence[str],
) -> list[dict[str, Any]]:
    """One box per step: its column's x, its row's y (a shorter column centred), the colours of its state."""
    place = {step_id: (col, r) for col, members in columns.items() for r, step_id in enumerate(members)}
    rows = max((len(m) for m in columns.values()), default=0)
    nodes: list[dict[str, Any]] = []
    for step_id in ids:
        step = project.steps[step_id]
        col, r = place[step_id]
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
    return nodes


def _ancestors(project: Project) -> dict[str, set[str]]:
    """Every step -> every step it depends on, directly or through others."""
    found: dict[str, set[str]] = {}

    def of(step_id: str) -> set[str]:
        if step_id not in found:
            mine: set[str] = set()
            for dep in project.steps[step_id].depends_on:
                if dep in project.steps:
                    mine |= {dep, *of(dep)}
            found[step_id] = mine
        return found[step_id]

    for step_id in project.steps:
        of(step_id)
    return found


def _port(node: Mapping[str, Any], index: int, count: int) -> float:
    """Spread the ends of several edges over the middle of a node's side."""
    span = NODE_H - 24
    return float(node["y"]) + NODE_H / 2 + (0.0 if count < 2 else span * (index / (count - 1) - 0.5))


def _edges(project: Project, nodes: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One curve per dependency between drawn steps, from the right side of the dependency to the left side of
    the dependent, ends spread by the other end's height; dashed (`implied`) when also reached indirectly."""
    where: dict[str, Mapping[str, Any]] = {str(n["id"]): n for n in nodes}
    ancestors = _ancestors(project)
    pairs = [(dep, str(n["id"])) for n in nodes for dep in project.steps[str(n["id"])].depends_on if dep in where]
    outgoing = {i: sorted((p for p in pairs if p[0] == i), key=lambda p: where[p[1]]["y"]) for i in where}
    incoming = {i: sorted((p for p in pairs if p[1] == i), key=lambda p: where[p[0]]["y"]) for i in where}
    edges = []
    for dep, step_id in pairs:
        a, b = where[dep], where[step_id]
        x1 = a["x"] + NODE_W
        y1 = _port(a, outgoing[dep].index((dep, step_id)), len(outgoing[dep]))
        x2 = b["x"] - 7
        y2 = _port(b, incoming[step_id].index((dep, step_id)), len(incoming[step_id]))
        bend = max((x2 - x1) / 2, 20)
        implied = any(dep in ancestors[other] for other in project.steps[step_id].depends_on if other != dep)
        edges.append(
            {
                "from": dep,
                "to": step_id,
                "implied": implied,  # also reached through another dependency: drawn dashed
                "d": f"M {x1:.1f} {y1:.1f} C {x1 + bend:.1f} {y1:.1f}, {x2 - bend:.1f} {y2:.1f}, {x2:.1f} {y2:.1f}",
                "arrow": f"{x2 + 7:.1f},{y2:.1f} {x2:.1f},{y2 - 4.5:.1f} {x2:.1f},{y2 + 4.5:.1f}",
            }
        )
    return edges
