"""gcos demo: seed 002's reference world and the whole gated story on it, with a progress bar."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from gcos.cli import render
from gcos.cli.app import app, run
from gcos.cli.options import DsnOpt, JsonOpt, ProjectOpt, project_dir, target

if TYPE_CHECKING:
    from gcos import commands


@app.command("demo", epilog="Example: gcos demo      (or: gcos demo --dsn postgresql://postgres@localhost/scratch)")
def demo_cmd(
    rows: Annotated[
        int,
        typer.Option(
            "--rows",
            min=1,
            help="birth_registry rows to build; seed 002's step 3 re-verifies at least "
            "1,000,000, so a smaller world stops there (exit 6).",
        ),
    ] = 1_043_000,
    dsn: DsnOpt = None,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Build seed 002's reference world (on the embedded PostgreSQL unless --dsn says otherwise) and tell the
    whole gated story on it: install gcos, create demo principals as real database roles, rehearse every step,
    show refusals, record decisions and approvals as the approvers' own connections, commit all nine steps,
    verify the ledger and write the reports (gcos-report/). Re-running it says what is already done."""
    from gcos import commands as core

    def action() -> commands.DemoResult:
        where = target(dsn)
        if as_json:
            return core.demo(where, project_dir(project), rows)
        with render.progress(render.stderr(), *render.row_columns()) as progress:
            return core.demo(where, project_dir(project), rows, render.Bar(progress))

    run(as_json, action, render.demo)
