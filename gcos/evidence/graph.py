"""The layout of the build-order graph the html report draws as inline SVG. Pure: a project, the states of
its steps and the reported steps in; frames, nodes, edges and a legend with their coordinates out (the template
only draws them).

What it must make true at a glance (issue 12 item 4):

* one frame per plan (steps in no plan get a frame of their own), stacked top to bottom;
* only DIRECT dependencies are drawn: an edge A -> C is omitted when C also depends on some B that depends on
  A (it is listed under the graph instead); a dependency that crosses frames is listed too, never drawn;
* no edge passes behind a box: steps sit in columns by dependency depth inside their frame, and an edge that
  spans several columns gets a slot of its own in each column it passes (the layered "dummy node" method), so
  it runs through a gap between boxes; between two columns it curves inside the column gap, where no box is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
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
NODE_W, NODE_H, COL_GAP, ROW_GAP, MARGIN, LEGEND_H = 180, 62, 56, 22, 20, 40
SLOT_H = 14  # the height a passing edge takes in a column it crosses
FRAME_PAD, FRAME_LABEL, FRAME_GAP = 14, 22, 16  # inside a plan's frame; its title band; between frames
TITLE_CHARS = 27
LABEL_CHAR_W = 7.4  # a generous width per character of a frame's 12px bold title
LEGEND_STEP = 150  # the legend's width per state
ARROW = 7  # the arrowhead's length


@dataclass
class _Item:
    """One entry of a column: a step's box, or the slot an edge passing the column runs through."""

    key: str  # the step id, or "edge:<from>><to>:<column>"
    height: float
    preds: list[str] = field(default_factory=list)  # keys in the previous column it connects to
    y: float = 0.0


def direct_dependencies(project: Project) -> dict[str, list[str]]:
    """Every step -> the dependencies it does not also reach through another dependency (the transitive
    reduction), in its depends_on order."""
    ancestors = _ancestors(project)
    out: dict[str, list[str]] = {}
    for step_id, step in project.steps.items():
        deps = [d for d in step.depends_on if d in project.steps]
        out[step_id] = [d for d in deps if not any(d in ancestors[o] for o in deps if o != d)]
    return out


def frames_of(project: Project) -> list[tuple[str | None, str, list[str]]]:
    """(plan id, title, steps) per frame: every plan in order, then the steps in no plan (plan id None)."""
    frames: list[tuple[str | None, str, list[str]]] = []
    seen: set[str] = set()
    for plan in project.plans.values():
        members = [s for s in plan.steps if s in project.steps and s not in seen]
        seen.update(members)
        if members:
            frames.append((plan.id, f"plan {plan.id}: {plan.title}", members))
    rest = [s for s in project.steps if s not in seen]
    if rest:
        frames.append((None, "steps in no plan", rest))
    return frames


def step_order(project: Project) -> list[str]:
    """The steps as the graph lists them: frame by frame, each in its plan's order."""
    return [s for _, _, members in frames_of(project) for s in members]


def columns_by_depth(ids: Sequence[str], direct: Mapping[str, Sequence[str]]) -> dict[int, list[str]]:
    """Column (dependency depth inside `ids`: 0 for a step with no dependency among them, else one more than
    its deepest one) -> its steps in `ids` order."""
    depth: dict[str, int] = {}
    members = set(ids)

    def depth_of(step_id: str) -> int:
        if step_id not in depth:
            deps = [d for d in direct[step_id] if d in members]
            depth[step_id] = 1 + max((depth_of(d) for d in deps), default=-1)
        return depth[step_id]

    columns: dict[int, list[str]] = {}
    for step_id in ids:
        columns.setdefault(depth_of(step_id), []).append(step_id)
    return columns


def graph_layout(project: Project, states: Mapping[str, str], selected: Sequence[str] = ()) -> dict[str, Any]:
    """Frames (one per plan), nodes, the drawn (direct, same-frame) edges as paths with arrowheads, the
    dependencies left undrawn (implied through others, or across frames), and the legend."""
    direct = direct_dependencies(project)
    frames, nodes, edges = [], [], []
    top, width = float(MARGIN), float(MARGIN * 2 + len(state.STATES) * LEGEND_STEP)
    for plan_id, title, members in frames_of(project):
        frame, frame_nodes, frame_edges = _frame(project, direct, members, top, states, selected)
        frame["w"] = max(frame["w"], round(len(title) * LABEL_CHAR_W + 24, 1))  # the title fits its frame
        frames.append({"plan": plan_id, "title": title, **frame})
        nodes += frame_nodes
        edges += frame_edges
        top += frame["h"] + FRAME_GAP
        width = max(width, frame["w"] + MARGIN * 2)
    frame_of = {s: plan_id for plan_id, _, members in frames_of(project) for s in members}
    undrawn = [
        {"from": dep, "to": sid, "why": "implied" if dep not in direct[sid] else "another plan"}
        for sid in step_order(project)
        for dep in project.steps[sid].depends_on
        if dep in project.steps and (dep not in direct[sid] or frame_of[dep] != frame_of[sid])
    ]
    height = top - FRAME_GAP + MARGIN
    legend = [
        {"state": name, "fill": STATE_COLOURS[name][0], "x": MARGIN + i * LEGEND_STEP, "y": height + 8}
        for i, name in enumerate(state.STATES)
    ]
    return {
        "width": round(width, 1),
        "height": round(height + LEGEND_H, 1),
        "frames": frames,
        "nodes": nodes,
        "edges": edges,
        "undrawn": undrawn,
        "legend": legend,
    }


def _frame(
    project: Project,
    direct: Mapping[str, Sequence[str]],
    members: Sequence[str],
    top: float,
    states: Mapping[str, str],
    selected: Sequence[str],
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """Lay out one frame whose top edge is at `top`: its box, its nodes, its edges."""
    inside = set(members)
    local = {s: [d for d in direct[s] if d in inside] for s in members}
    columns = columns_by_depth(members, local)
    col_of = {s: c for c, ids in columns.items() for s in ids}
    items, chains = _items(columns, local, col_of)
    _order(items)
    inner_top = top + FRAME_LABEL + FRAME_PAD
    tallest = max(_stack_height(col) for col in items.values())
    for col in items.values():
        y = inner_top + (tallest - _stack_height(col)) / 2
        for item in col:
            item.y = y
            y += item.height + ROW_GAP
    left = MARGIN + FRAME_PAD
    xs = {c: left + c * (NODE_W + COL_GAP) for c in items}
    where = {it.key: (c, it) for c, col in items.items() for it in col}
    nodes = [_node(project, s, xs[col_of[s]], where[s][1].y, states, selected) for s in members]
    edges = _edges(chains, where, xs, local)
    ncols = max(items) + 1
    frame = {
        "x": MARGIN,
        "y": round(top, 1),
        "w": round(FRAME_PAD * 2 + ncols * NODE_W + (ncols - 1) * COL_GAP, 1),
        "h": round(FRAME_LABEL + FRAME_PAD * 2 + tallest, 1),
        "label_y": round(top + 16, 1),
    }
    return frame, nodes, edges


def _stack_height(col: Sequence[_Item]) -> float:
    return sum(it.height for it in col) + max(len(col) - 1, 0) * ROW_GAP


def _items(
    columns: Mapping[int, Sequence[str]], local: Mapping[str, Sequence[str]], col_of: Mapping[str, int]
) -> tuple[dict[int, list[_Item]], dict[tuple[str, str], list[str]]]:
    """The columns' items (steps, then a slot per edge per column it passes) and each edge's chain of keys."""
    items: dict[int, list[_Item]] = {c: [_Item(s, NODE_H) for s in ids] for c, ids in sorted(columns.items())}
    by_key = {it.key: it for col in items.values() for it in col}
    chains: dict[tuple[str, str], list[str]] = {}
    for c in sorted(columns):
        for sid in columns[c]:
            for dep in local[sid]:
                chain, prev = [dep], dep
                for k in range(col_of[dep] + 1, c):
                    slot = _Item(f"edge:{dep}>{sid}:{k}", SLOT_H, [prev])
                    items[k].append(slot)
                    by_key[slot.key] = slot
                    chain.append(slot.key)
                    prev = slot.key
                by_key[sid].preds.append(prev)
                chain.append(sid)
                chains[(dep, sid)] = chain
    return items, chains


def _order(items: Mapping[int, list[_Item]]) -> None:
    """Order each column (after the first) by the mean position of what its items connect to on the left,
    ties in their first order: few crossings, and a passing slot beside the boxes it runs between."""
    rank: dict[str, int] = {}
    for c in sorted(items):
        col = items[c]
        if c > 0:
            first = {it.key: i for i, it in enumerate(col)}
            keys = {it.key: (_mean([rank[p] for p in it.preds if p in rank]), first[it.key]) for it in col}
            col.sort(key=lambda it: keys[it.key])
        for i, it in enumerate(col):
            rank[it.key] = i


def _mean(values: Sequence[int]) -> float:
    return sum(values) / len(values) if values else -1.0


def _node(
    project: Project, step_id: str, x: float, y: float, states: Mapping[str, str], selected: Sequence[str]
) -> dict[str, Any]:
    step = project.steps[step_id]
    current = states.get(step_id, state.PLANNED)
    fill, ink = STATE_COLOURS.get(current, STATE_COLOURS[state.PLANNED])
    title = step.title if len(step.title) <= TITLE_CHARS else step.title[: TITLE_CHARS - 1] + "…"
    return {
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


def _port(item: _Item, index: int, count: int) -> float:
    """Spread the ends of several edges over the middle of a box's side (a slot has one edge: its middle)."""
    if item.height < NODE_H or count < 2:
        return item.y + item.height / 2
    span = NODE_H - 24
    return item.y + NODE_H / 2 + span * (index / (count - 1) - 0.5)


def _edges(
    chains: Mapping[tuple[str, str], Sequence[str]],
    where: Mapping[str, tuple[int, _Item]],
    xs: Mapping[int, float],
    local: Mapping[str, Sequence[str]],
) -> list[dict[str, Any]]:
    """One path per drawn edge: out of the dependency's right side, through its slots (straight across each
    column it passes), into the dependent's left side; every curve stays inside a column gap."""
    out_ports: dict[str, list[tuple[str, str]]] = {}
    in_ports: dict[str, list[tuple[str, str]]] = {}
    for pair in chains:
        out_ports.setdefault(pair[0], []).append(pair)
        in_ports.setdefault(pair[1], []).append(pair)
    for pairs in out_ports.values():
        pairs.sort(key=lambda p: where[chains[p][1]][1].y)
    for pairs in in_ports.values():
        pairs.sort(key=lambda p: where[chains[p][-2]][1].y)
    edges = []
    for sid in local:
        for dep in local[sid]:
            pair = (dep, sid)
            chain = chains[pair]
            c0, first = where[dep]
            x, y = xs[c0] + NODE_W, _port(first, out_ports[dep].index(pair), len(out_ports[dep]))
            d = [f"M {x:.1f} {y:.1f}"]
            for key in chain[1:]:
                c, item = where[key]
                end = key == sid
                nx = xs[c] - (ARROW if end else 0)
                ny = _port(item, in_ports[sid].index(pair), len(in_ports[sid])) if end else item.y + SLOT_H / 2
                bend = (nx - x) / 2
                d.append(f"C {x + bend:.1f} {y:.1f}, {nx - bend:.1f} {ny:.1f}, {nx:.1f} {ny:.1f}")
                x, y = nx, ny
                if not end:
                    x = xs[c] + NODE_W
                    d.append(f"L {x:.1f} {y:.1f}")
            arrow = f"{x + ARROW:.1f},{y:.1f} {x:.1f},{y - 4.5:.1f} {x:.1f},{y + 4.5:.1f}"
            edges.append({"from": dep, "to": sid, "d": " ".join(d), "arrow": arrow})
    return edges


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
