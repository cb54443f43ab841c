"""gcos except: a sovereign waives one named check of one step, for a while (seed 000 P4).

Recorded as the database role the connection authenticates (never a flag); only a sovereign may, and the
commit never honours an exception its own committer recorded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gcos.cli import render
from gcos.cli.app import app, run
from gcos.cli.options import DsnOpt, JsonOpt, ProjectOpt, project_dir, target


@app.command(
    "except",
    epilog="Example: gcos except SB-12 'no governance snapshot yet' --expires-in 24h --reason 'R-7: rerun after fix'"
    "   (withdraw: gcos except --revoke 3 --reason 'fixed')",
)
def except_cmd(
    step: Annotated[str | None, typer.Argument(help="A step id (SB-12) or its position (step-1).")] = None,
    check: Annotated[str | None, typer.Argument(help="The name of one stop, success or re-verify check.")] = None,
    expires_in: Annotated[
        str | None, typer.Option("--expires-in", help="Mandatory expiry by the database clock: 24h, 30m, 7d, 1h30m.")
    ] = None,
    reason: Annotated[str | None, typer.Option("--reason", help="Why the check may be waived (required).")] = None,
    kind: Annotated[
        str | None, typer.Option("--kind", help="stop, success or reverify, when two kinds share the name.")
    ] = None,
    revoke: Annotated[int | None, typer.Option("--revoke", help="Withdraw exception ID instead.")] = None,
    dsn: DsnOpt = None,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Waive ONE named check of a step as YOUR sovereign role, until it expires.

    Bound to the step's current spec hash (an edited spec is not covered), the check's kind and name and this
    database. Rehearsal and commit report the check as waived; the commit's policy decision lists the exception.
    """
    from gcos import exceptions
    from gcos.errors import SpecError

    def act() -> object:
        if revoke is not None:
            if step is not None or check is not None or expires_in is not None or kind is not None:
                raise SpecError(
                    "gcos except --revoke ID takes only --reason; drop STEP, CHECK, --expires-in and --kind."
                )
            return exceptions.revoke(target(dsn), revoke, reason=reason)
        if step is None or check is None or expires_in is None or reason is None:
            raise SpecError("gcos except needs STEP CHECK --expires-in D --reason T (or --revoke ID).")
        return exceptions.record(
            target(dsn), project_dir(project), step, check, expires_in=expires_in, reason=reason, kind=kind
        )

    run(as_json, act, render.receipt)
