"""What the ledger says and acting on a whole plan: gcos log (history), gcos approvals (ids for gcos revoke),
gcos apply (commit every step of a plan in plan order)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from gcos.cli import render, render_status
from gcos.cli.app import app, run
from gcos.cli.options import DsnOpt, JsonOpt, ProjectOpt, project_dir, target

if TYPE_CHECKING:
    from gcos.apply_plan import ApplyResult

OptionalStep = Annotated[str | None, typer.Argument(help="A step id or step-N; every step if omitted.")]


@app.command("log", epilog="Example: gcos log SB-12     (or: gcos log --json for the whole ledger)")
def log_cmd(
    step: OptionalStep = None, dsn: DsnOpt = None, project: ProjectOpt = Path("."), as_json: JsonOpt = False
) -> None:
    """Print the ledger's history, oldest first: seq, kind, when, who, trace and outcome of every record.

    With a STEP, only that step's records (rehearsals, approvals, policy decisions, commits, rollbacks,
    stops). A batched run that began and neither finished nor stopped is named with the command that resumes it.
    """
    from gcos import commands

    run(as_json, lambda: commands.log(target(dsn), project_dir(project), step), render_status.log)


@app.command("approvals", epilog="Example: gcos approvals SB-12    (then: gcos revoke ID --reason TEXT)")
def approvals_cmd(
    step: OptionalStep = None, dsn: DsnOpt = None, project: ProjectOpt = Path("."), as_json: JsonOpt = False
) -> None:
    """List approvals with the id gcos revoke needs: who, verdict, expiry, revocation, and whether it counts now.

    "Counts now" is gate 5 as the database evaluates a commit of the step for someone who only looks.
    """
    from gcos import commands

    run(as_json, lambda: commands.approvals_list(target(dsn), project_dir(project), step), render_status.approvals)


@app.command("apply", epilog="Example: gcos apply build")
def apply_cmd(
    plan: Annotated[str, typer.Argument(help="The plan id (the `id:` of a file under plans/).")],
    dsn: DsnOpt = None,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Commit every step of a plan in plan order, each exactly as gcos commit STEP would (same gates).

    Steps already committed are skipped and said so. The first refusal stops the run with that refusal's
    exit code and sentence (3 a gate, 4 a stop, 6 re-verify ...); the steps committed before it stay.
    """
    from gcos import commands

    def action() -> ApplyResult:
        where, root = target(dsn), project_dir(project)
        if as_json:
            return commands.apply(where, root, plan)
        with render.progress(render.stderr(), *render.row_columns("rows", rate=True)) as bar:
            return commands.apply(where, root, plan, progress=render.BatchBar(bar, plan))

    run(
        as_json,
        action,
        render_status.applied_plan,
        render_details=render_status.applied_plan_details,
        details_on_stderr=True,
    )
