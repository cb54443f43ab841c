"""The build-order graph's layout (gcos/evidence/graph.py), on its own: no database, a project and states in,
coordinates out. The html report draws exactly these nodes and edges (test_report.py checks the drawing)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from conftest import REPO

from gcos import state
from gcos.evidence import STATE_COLOURS, graph_layout
from gcos.evidence.graph import COL_GAP, MARGIN, NODE_H, NODE_W, TITLE_CHARS, columns_by_depth, step_order
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


def test_plan_steps_come_first_then_steps_in_no_plan(project: Project) -> None:
    small = diamond(project)
    assert step_order(small) == ["A", "C", "B", "D", "E"]
    assert [n["id"] for n in graph_layout(small, {})["nodes"]] == ["A", "C", "B", "D", "E"]
    order = step_order(project)
    assert sorted(order) == sorted(project.steps) and len(order) == len(set(order))


@pytest.mark.parametrize("name", ["reference", "diamond"])
def test_columns_are_dependency_depths_and_every_dependency_points_right(project: Project, name: str) -> None:
    p = project if name == "reference" else diamond(project)
    graph = graph_layout(p, {})
    nodes = by_id(graph)
    assert set(nodes) == set(p.steps)
    for sid, node in nodes.items():
        assert node["x"] == MARGIN + depth(p, sid) * (NODE_W + COL_GAP)
        for dep in p.steps[sid].depends_on:
            assert nodes[dep]["x"] + NODE_W < node["x"]
    columns = columns_by_depth(p, step_order(p))
    assert {sid: col for col, members in columns.items() for sid in members} == {sid: depth(p, sid) for sid in p.steps}


@pytest.mark.parametrize("name", ["reference", "diamond"])
def test_nodes_do_not_overlap_and_fit_inside_the_drawing(project: Project, name: str) -> None:
    p = project if name == "reference" else diamond(project)
    graph = graph_layout(p, {})
    boxes = [(n["x"], n["y"], n["x"] + n["w"], n["y"] + n["h"]) for n in graph["nodes"]]
    for i, a in enumerate(boxes):
        assert a[0] >= MARGIN and a[1] >= MARGIN and a[2] <= graph["width"] and a[3] <= graph["height"]
        for b in boxes[i + 1 :]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)
    for item in graph["legend"]:
        assert item["y"] >= max(b[3] for b in boxes)


def test_rows_follow_the_mean_row_of_the_dependencies(project: Project) -> None:
    """In the diamond C is listed before B, so C is above B; D (under both) sits between them."""
    nodes = by_id(graph_layout(diamond(project), {}))
    assert nodes["C"]["y"] < nodes["B"]["y"]
    assert nodes["C"]["y"] < nodes["D"]["y"] < nodes["B"]["y"]
    assert nodes["A"]["y"] < nodes["E"]["y"]  # column 0: plan order, then the step in no plan


@pytest.mark.parametrize("name", ["reference", "diamond"])
def test_one_edge_per_dependency_dashed_exactly_when_implied(project: Project, name: str) -> None:
    p = project if name == "reference" else diamond(project)
    graph = graph_layout(p, {})
    nodes = by_id(graph)
    edges = {(e["from"], e["to"]): e for e in graph["edges"]}
    assert set(edges) == {(dep, sid) for sid in p.steps for dep in p.steps[sid].depends_on}
    for (dep, sid), edge in edges.items():
        others = [d for d in p.steps[sid].depends_on if d != dep]
        assert edge["implied"] == any(dep in ancestors(p, o) for o in others)
        start = [float(v) for v in edge["d"].split()[1:3]]
        tip = [float(v) for v in edge["arrow"].split()[0].split(",")]
        assert start[0] == nodes[dep]["x"] + NODE_W and nodes[dep]["y"] < start[1] < nodes[dep]["y"] + NODE_H
        assert tip[0] == nodes[sid]["x"] and nodes[sid]["y"] < tip[1] < nodes[sid]["y"] + NODE_H
    if name == "diamond":
        assert [k for k, e in edges.items() if e["implied"]] == [("A", "D")]
    assert (graph["implied_key"] is not None) == any(e["implied"] for e in edges.values())


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
