"""Acting on the database: gcos status (the gates, without acting), gcos commit, gcos rollback."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from gcos.cli import render, render_status
from gcos.cli.app import app, run
from gcos.cli.options import BreakGlassOpt, DsnOpt, JsonOpt, ProjectOpt, StepArg, project_dir, target

if TYPE_CHECKING:
    from gcos.results import BatchedResult, CommitResult


@app.command("status", epilog="Example: gcos status SB-12     (or: gcos status --json for every step)")
def status_cmd(
    step: Annotated[str | None, typer.Argument(help="A step id or step-N; all steps if omitted.")] = None,
    dsn: DsnOpt = None,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """One row per step: its state, when, by whom, and what is next; with a STEP, each gate and why it holds.

    States come from the ledger, gates from the database, without acting. A committed step is done; a batched
    run that began and neither finished nor stopped shows "interrupted, resumable" and the command resuming it.
    """
    from gcos import commands

    run(as_json, lambda: commands.status(target(dsn), project_dir(project), step), render_status.status)


@app.command("commit", epilog="Example: gcos commit SB-12")
def commit_cmd(
    step: StepArg,
    dsn: DsnOpt = None,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
    break_glass: BreakGlassOpt = False,
) -> None:
    """Apply a step atomically with its ledger record — only if every gate holds inside the transaction.

    Refused (exit 3) without a passing rehearsal on this schema, enough unexpired approvals by other named
    humans, the required decisions, committed dependencies; stop or success failure (4); re-verify (6).
    The kernel commits inside the database, as a named human operator (schema public must be adopted).
    A batched step (mode: batched) runs in resumable keyset batches, each its own transaction, with a
    progress bar; if it is killed, the same command resumes it after the last committed batch.
    """
    from gcos import commands

    def action() -> CommitResult | BatchedResult:
        where, root = target(dsn), project_dir(project)
        if as_json:
            return commands.commit(where, root, step, break_glass=break_glass)
        with render.progress(render.stderr(), *render.row_columns("rows", rate=True)) as bar:
            bar_of_batches = render.BatchBar(bar, step)
            return commands.commit(where, root, step, progress=bar_of_batches, break_glass=break_glass)

    run(as_json, action, render.applied, render_details=render.applied_details, details_on_stderr=True)


@app.command("rollback", epilog="Example: gcos rollback SB-11   (after: gcos approve SB-11 --rollback ...)")
def rollback_cmd(
    step: StepArg,
    dsn: DsnOpt = None,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
    break_glass: BreakGlassOpt = False,
) -> None:
    """Apply a committed step's rollback evidence and prove the world is back at its pre-commit fingerprint.

    Needs its own approval (gcos approve STEP --rollback); refused while a dependent step is committed.
    """
    from gcos import commands

    run(
        as_json,
        lambda: commands.rollback(target(dsn), project_dir(project), step, break_glass=break_glass),
        render.applied,
        render_details=render.applied_details,
        details_on_stderr=True,
    )
