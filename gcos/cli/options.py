"""Options and arguments shared by several commands, declared once, and the two values they resolve to."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from gcos.target import Target

DsnOpt = Annotated[
    str | None,
    typer.Option(
        "--dsn",
        help="Target database (libpq URI or key=value). Default: $GCOS_DSN, then $DATABASE_URL, "
        "then the embedded server under .gcos/.",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout instead of text.")]
ProjectOpt = Annotated[
    Path,
    typer.Option(
        "--project",
        "-C",
        help="The gcos project directory (holds steps/ and plans/).",
        file_okay=False,
        show_default="current directory",
    ),
]
StepArg = Annotated[str, typer.Argument(help="A step id (SB-12, case-insensitive) or its position (step-1).")]
VerdictOpt = Annotated[
    str,
    typer.Option("--verdict", help="approve, reject, approve_with_conditions or defer (only approve opens a gate)."),
]
ExpiresOpt = Annotated[
    str, typer.Option("--expires-in", help="Mandatory expiry from now by the database clock: 24h, 30m, 7d, 1h30m.")
]
NoteOpt = Annotated[str | None, typer.Option("--note", help="Free text kept with the record.")]
BreakGlassOpt = Annotated[
    bool,
    typer.Option(
        "--break-glass",
        help="Let a superuser session commit where the kernel runs (schema public adopted); every record of "
        "the run says so. Named human operators never need it.",
    ),
]


def target(dsn: str | None) -> Target:
    """The database --dsn names (or the environment, or the embedded server: then one line on stderr says
    so, keeping --json stdout clean, and the server starts on the command's first connection — after
    the project validated, so a mistake costs no server)."""
    from gcos.target import resolve_target

    found = resolve_target(dsn, start_embedded=False)
    if found.source == "embedded":  # psutil and the server code only for the embedded target
        from gcos.cli.render import stderr
        from gcos.embedded import EmbeddedServer

        where = EmbeddedServer().root
        stderr().print(
            f"gcos: no --dsn, GCOS_DSN, DATABASE_URL or PG* connection variable is set; "
            f"using the embedded PostgreSQL under {where}.",
            markup=False,
            soft_wrap=True,
        )
    return found


def project_dir(project: Path | None) -> Path:
    """The project directory, absolute."""
    return (project or Path.cwd()).resolve()
