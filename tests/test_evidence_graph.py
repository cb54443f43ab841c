"""The build-order graph's layout (gcos/evidence/graph.py), on its own: no database, a project and states in,
coordinates out. The html report draws exactly these nodes and edges (test_report.py checks the drawing)."""

from __future__ import annotations

import random
import re
from dataclasses import replace
from typing import Any

import pytest
from conftest import REPO

from gcos import state
from gcos.evidence import STATE_COLOURS, graph_layout
from gcos.evidence.graph import (
    COL_GAP,
    FRAME_PAD,
    LABEL_CHAR_W,
    NODE_H,
    NODE_W,
    TITLE_CHARS,
    direct_dependencies,
    step_order,
)
from gcos.spec import Project, load_project


@pytest.fixture(scope="module")
def project() -> Project:
    return load_project(REPO)


def diamond(base: Project) -> Project:
    """A -> B, A -> C, B and C -> D, and A -> D directly (implied through B and C); E in no plan, no deps."""
    template = next(iter(base.steps.values()))
    deps = {"A": (), "B": ("A",), "C": ("A",), "D": ("B", "C", "A"), "E": ()}
    steps = {
        sid: replace(template, id=sid, order=n, title=f"Step {sid}", depends_on=d)
        for n, (sid, d) in enumerate(deps.items(), start=1)
    }
    plan = replace(next(iter(base.plans.values())), id="p", steps=("A", "C", "B", "D"))
    return Project(base.root, steps, {"p": plan})


def ancestors(project: Project, step_id: str) -> set[str]:
    found: set[str] = set()
    for dep in project.steps[step_id].depends_on:
        found |= {dep, *ancestors(project, dep)}
    return found


def depth(project: Project, step_id: str) -> int:
    return max((1 + depth(project, d) for d in project.steps[step_id].depends_on), default=0)


def by_id(graph: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["id"]: n for n in graph["nodes"]}


def tangle(base: Project, seed: int) -> Project:
    """Fourteen steps with random dependencies on earlier ones (long edges over several columns), two plans and
    two steps in no plan: a layout that a naive router would draw through boxes."""
    rnd = random.Random(seed)
    template = next(iter(base.steps.values()))
    ids = [f"S{n}" for n in range(14)]
    steps = {}
    for n, sid in enumerate(ids):
        pool = ids[:n] if n < 9 else ids[9:n]
        deps = tuple(rnd.sample(pool, min(len(pool), rnd.randint(0, 3))))
        steps[sid] = replace(template, id=sid, order=n + 1, title=f"Step {sid}", depends_on=deps)
    plan = next(iter(base.plans.values()))
    plans = {"a": replace(plan, id="a", steps=tuple(ids[:9])), "b": replace(plan, id="b", steps=tuple(ids[9:12]))}
    return Project(base.root, steps, plans)


def worlds(project: Project) -> dict[str, Project]:
    return {"reference": project, "diamond": diamond(project), **{f"tangle{s}": tangle(project, s) for s in range(6)}}


NAMES = ["reference", "diamond", *(f"tangle{s}" for s in range(6))]


def path_points(d: str, per_curve: int = 240) -> list[tuple[float, float]]:
    """Points along an SVG path of M, L and C commands (what graph.py writes), dense enough to find a box."""
    tokens = re.findall(r"[MLC]|-?\d+(?:\.\d+)?", d)
    points: list[tuple[float, float]] = []
    i, here = 0, (0.0, 0.0)
    while i < len(tokens):
        cmd = tokens[i]
        if cmd == "C":
            c = [float(v) for v in tokens[i + 1 : i + 7]]
            p0, p1, p2, p3 = here, (c[0], c[1]), (c[2], c[3]), (c[4], c[5])
            for k in range(per_curve + 1):
                t = k / per_curve
                a, b, e, f = (1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t**2, t**3
                points.append(
                    (a * p0[0] + b * p1[0] + e * p2[0] + f * p3[0], a * p0[1] + b * p1[1] + e * p2[1] + f * p3[1])
                )
            here, i = p3, i + 7
        else:
            x, y = float(tokens[i + 1]), float(tokens[i + 2])
            if cmd == "L":
                points += [(here[0] + (x - here[0]) * k / 60, here[1] + (y - here[1]) * k / 60) for k in range(61)]
            here, i = (x, y), i + 3
            points.append(here)
    return points


def inside(point: tuple[float, float], box: dict[str, Any], slack: float = 0.5) -> bool:
    x, y = point
    return box["x"] + slack < x < box["x"] + box["w"] - slack and box["y"] + slack < y < box["y"] + box["h"] - slack


def test_plan_steps_come_first_then_steps_in_no_plan(project: Project) -> None:
    small = diamond(project)
    assert step_order(small) == ["A", "C", "B", "D", "E"]
    assert [n["id"] for n in graph_layout(small, {})["nodes"]] == ["A", "C", "B", "D", "E"]
    order = step_order(project)
    assert sorted(order) == sorted(project.steps) and len(order) == len(set(order))


@pytest.mark.parametrize("name", NAMES)
def test_no_edge_passes_behind_a_box(project: Project, name: str) -> None:
    """The property the issue asks for: every point of every drawn edge lies outside every box (its own
    endpoints' too: an edge leaves a right side and its arrowhead touches a left side), inside its frame."""
    p = worlds(project)[name]
    graph = graph_layout(p, {})
    nodes = by_id(graph)
    assert graph["edges"], name
    for edge in graph["edges"]:
        points = path_points(edge["d"])
        for node in graph["nodes"]:
            crossing = [pt for pt in points if inside(pt, node)]
            assert not crossing, (
                f"{name}: edge {edge['from']}->{edge['to']} passes behind {node['id']} at {crossing[0]}"
            )
        frame = next(
            f
            for f in graph["frames"]
            if all(inside((n["x"] + 1, n["y"] + 1), f, 0) for n in (nodes[edge["from"]], nodes[edge["to"]]))
        )
        assert all(inside(pt, frame, -0.01) for pt in points), (name, edge["from"], edge["to"])
        tip = [float(v) for v in edge["arrow"].split()[0].split(",")]
        target = nodes[edge["to"]]
        assert tip[0] == target["x"] and target["y"] < tip[1] < target["y"] + NODE_H
        start = points[0]
        source = nodes[edge["from"]]
        assert start[0] == source["x"] + NODE_W and source["y"] < start[1] < source["y"] + NODE_H


@pytest.mark.parametrize("name", NAMES)
def test_only_direct_dependencies_are_drawn_the_rest_are_listed(project: Project, name: str) -> None:
    p = worlds(project)[name]
    graph = graph_layout(p, {})
    plan_of = {s: pid for pid, plan in p.plans.items() for s in plan.steps}
    drawn = {(e["from"], e["to"]) for e in graph["edges"]}
    undrawn = {(u["from"], u["to"]): u["why"] for u in graph["undrawn"]}
    every = {(dep, sid) for sid in p.steps for dep in p.steps[sid].depends_on}
    assert drawn | set(undrawn) == every and not drawn & set(undrawn)
    for dep, sid in every:
        implied = any(dep in ancestors(p, o) for o in p.steps[sid].depends_on if o != dep)
        if implied:
            assert undrawn[(dep, sid)] == "implied"
        elif plan_of.get(dep) != plan_of.get(sid):
            assert undrawn[(dep, sid)] == "another plan"
        else:
            assert (dep, sid) in drawn
    if name == "diamond":
        assert undrawn == {("A", "D"): "implied"}
    if name == "reference":
        assert direct_dependencies(p)["BACKFILL-SEED"] == ["ACTIVATION"]
        assert ("VERIFY-1-4", "ACTIVATION") not in drawn and ("VERIFY-1-4", "BACKFILL-SEED") not in drawn


@pytest.mark.parametrize("name", NAMES)
def test_one_frame_per_plan_holding_exactly_its_steps(project: Project, name: str) -> None:
    p = worlds(project)[name]
    graph = graph_layout(p, {})
    in_plans = {s for plan in p.plans.values() for s in plan.steps}
    expected = [pid for pid, plan in p.plans.items() if plan.steps] + ([None] if set(p.steps) - in_plans else [])
    assert [f["plan"] for f in graph["frames"]] == expected
    for node in graph["nodes"]:
        holders = [
            f
            for f in graph["frames"]
            if inside((node["x"], node["y"]), f, -0.01) and inside((node["x"] + NODE_W, node["y"] + NODE_H), f, -0.01)
        ]
        plan = next((pid for pid, plan in p.plans.items() if node["id"] in plan.steps), None)
        assert [f["plan"] for f in holders] == [plan], (name, node["id"])
    for frame in graph["frames"]:
        assert frame["w"] >= len(frame["title"]) * LABEL_CHAR_W + 24  # its title fits inside it
    for a, b in zip(graph["frames"], graph["frames"][1:], strict=False):
        assert a["y"] + a["h"] < b["y"]


@pytest.mark.parametrize("name", NAMES)
def test_columns_are_depths_inside_a_frame_and_every_edge_points_right(project: Project, name: str) -> None:
    p = worlds(project)[name]
    graph = graph_layout(p, {})
    nodes = by_id(graph)
    for edge in graph["edges"]:
        assert nodes[edge["from"]]["x"] + NODE_W + COL_GAP <= nodes[edge["to"]]["x"]
    for frame in graph["frames"]:
        xs = {n["x"] for n in graph["nodes"] if inside((n["x"] + 1, n["y"] + 1), frame, 0)}
        assert all((x - frame["x"] - FRAME_PAD) % (NODE_W + COL_GAP) == 0 for x in xs)


@pytest.mark.parametrize("name", NAMES)
def test_nodes_do_not_overlap_and_fit_inside_the_drawing(project: Project, name: str) -> None:
    graph = graph_layout(worlds(project)[name], {})
    boxes = [(n["x"], n["y"], n["x"] + n["w"], n["y"] + n["h"]) for n in graph["nodes"]]
    for i, a in enumerate(boxes):
        assert a[0] >= 0 and a[1] >= 0 and a[2] <= graph["width"] and a[3] <= graph["height"]
        for b in boxes[i + 1 :]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)
    for item in graph["legend"]:
        assert item["y"] >= max(f["y"] + f["h"] for f in graph["frames"])


def test_nodes_take_the_colour_of_their_state_and_mark_the_reported_steps(project: Project) -> None:
    small = diamond(project)
    states = {"A": state.COMMITTED, "B": state.ROLLED_BACK, "C": state.APPROVED, "D": "no such state"}
    nodes = by_id(graph_layout(small, states, selected=["B"]))
    for sid in ("A", "B", "C"):
        assert (nodes[sid]["state"], nodes[sid]["fill"], nodes[sid]["ink"]) == (
            states[sid],
            *STATE_COLOURS[states[sid]],
        )
    assert (nodes["D"]["fill"], nodes["D"]["ink"]) == STATE_COLOURS[state.PLANNED]  # unknown: drawn as planned
    assert (nodes["E"]["state"], nodes["E"]["fill"]) == (state.PLANNED, STATE_COLOURS[state.PLANNED][0])
    assert [sid for sid, n in nodes.items() if n["selected"]] == ["B"]


def test_the_legend_names_every_state_in_its_colour(project: Project) -> None:
    legend = graph_layout(project, {})["legend"]
    assert [(i["state"], i["fill"]) for i in legend] == [(s, STATE_COLOURS[s][0]) for s in state.STATES]


def test_long_titles_are_cut_with_an_ellipsis(project: Project) -> None:
    small = diamond(project)
    steps = dict(small.steps)
    steps["A"] = replace(steps["A"], title="x" * TITLE_CHARS)
    steps["B"] = replace(steps["B"], title="y" * (TITLE_CHARS + 1))
    nodes = by_id(graph_layout(Project(small.root, steps, small.plans), {}))
    assert nodes["A"]["title"] == "x" * TITLE_CHARS
    assert nodes["B"]["title"] == "y" * (TITLE_CHARS - 1) + "…"
