"""Before anyone approves: gcos plan (files only), gcos verify (live, READ ONLY), gcos rehearse (BEGIN..ROLLBACK)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from gcos.cli import render
from gcos.cli.app import app, run
from gcos.cli.options import DsnOpt, JsonOpt, ProjectOpt, StepArg, project_dir, target


@app.command("plan", epilog="Example: gcos plan --explain")
def plan_cmd(
    project: ProjectOpt = Path("."),
    explain: Annotated[bool, typer.Option("--explain", help="Show every gate's reason and the global stops.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Validate every step spec and the plan DAG, run every static check gcos rehearse runs, then print the
    build order with each step's gates.

    Reads only the files under steps/ and plans/; it does not touch any database (so it shows no state:
    gcos status does). SQL that gcos rehearse would refuse (outside the allow list, a statement that cannot
    run in a transaction ...) is refused here with exit 2.
    """
    from gcos import commands

    run(
        as_json,
        lambda: commands.plan(project_dir(project)),
        lambda out, report: render.plan(out, report, explain),
        render_details=lambda out, details: _refused_plan(out, details, explain),
    )


def _refused_plan(out: Console, details: Any, explain: bool) -> None:
    from gcos.planning import PlanReport

    if isinstance(details, PlanReport):
        render.plan(out, details, explain)


@app.command("verify", epilog="Example: gcos verify step-1    (or: gcos verify SB-12 --json)")
def verify_cmd(step: StepArg, dsn: DsnOpt = None, project: ProjectOpt = Path("."), as_json: JsonOpt = False) -> None:
    """Run a step's live re-verify checks in a READ ONLY transaction and show expected vs actual.

    Exit 6 if any check does not hold; exit 2 if a check is not one row of one column.
    """
    from gcos import commands

    run(
        as_json,
        lambda: commands.verify(target(dsn), project_dir(project), step),
        render.verify,
        render_details=render.verify_details,
    )


@app.command("rehearse", epilog="Example: gcos rehearse step-1     (or: gcos rehearse SB-12 --json)")
def rehearse_cmd(step: StepArg, dsn: DsnOpt = None, project: ProjectOpt = Path("."), as_json: JsonOpt = False) -> None:
    """Rehearse a step inside BEGIN..ROLLBACK and prove the database at exit equals the one at entry.

    Refuses SQL the spec does not allow before anything runs (exit 2); re-verify mismatch (6); a stop
    condition or failed success evidence (4); entry != exit (5); a lock not granted in time (8).
    Every rehearsal is a ledger record, with evidence files under rehearsals/STEP/.
    """
    from gcos import commands

    run(
        as_json,
        lambda: commands.rehearse(target(dsn), project_dir(project), step),
        render.rehearsal,
        render_details=render.rehearsal_details,
    )
