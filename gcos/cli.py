"""The gcos command line: parse, call ONE function of gcos.commands, render its result, map errors to exits.

This is the only module that prints or exits. Errors become the contract's exit codes here and only here.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import psycopg
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.tree import Tree

from gcos import __version__, commands
from gcos.embedded import ServerStatus
from gcos.errors import DatabaseUnavailable, ExitCode, GcosError
from gcos.target import Target, resolve_target

T = TypeVar("T")

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

app = typer.Typer(
    help="gcos: plan, rehearse, approve and commit PostgreSQL build steps, with evidence an auditor can check.\n\n"
    "Start with: gcos demo   (builds seed 002's reference world on the embedded PostgreSQL)",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
db_app = typer.Typer(
    help="The embedded PostgreSQL server gcos runs under .gcos/ (the default target).", no_args_is_help=True
)
app.add_typer(db_app, name="db")

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


# --------------------------------------------------------------------------- plumbing


def jsonable(value: Any) -> Any:
    """Result objects as plain JSON: dataclasses by field (plus `ok` where they define it)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        data = {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value) if f.repr}
        if hasattr(type(value), "ok"):
            data["ok"] = getattr(value, "ok")  # noqa: B009 - a property some results define
        return data
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _emit_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(jsonable(payload), indent=2, default=str) + "\n")


def _run(
    as_json: bool,
    action: Callable[[], T],
    render: Callable[[T], None],
    render_details: Callable[[Any], None] | None = None,
) -> None:
    """Call the core, render the result, and turn every failure into its documented exit code."""
    try:
        result = action()
    except GcosError as exc:
        _fail(exc, as_json, render_details)
    except psycopg.OperationalError as exc:
        _fail(
            DatabaseUnavailable(
                f"the database is unreachable ({str(exc).splitlines()[0]}); check the target and retry."
            ),
            as_json,
            None,
        )
    except (KeyboardInterrupt, typer.Exit):
        raise
    except Exception as exc:
        if os.environ.get("GCOS_DEBUG"):
            traceback.print_exc()
        _fail(
            GcosError(
                f"internal error: {type(exc).__name__}: {exc}; rerun with GCOS_DEBUG=1 for the traceback and report it."
            ),
            as_json,
            None,
        )
    if as_json:
        _emit_json({"ok": True, "result": result})
    else:
        render(result)


def _fail(exc: GcosError, as_json: bool, render_details: Callable[[Any], None] | None) -> None:
    if as_json:
        _emit_json({"ok": False, "exit_code": int(exc.exit_code), "error": exc.message, "details": exc.details})
    else:
        if render_details and exc.details is not None:
            render_details(exc.details)
        err.print(f"[bold red]error:[/] {exc.message}", markup=True, highlight=False, soft_wrap=True)
    raise typer.Exit(int(exc.exit_code))


def _target(dsn: str | None) -> Target:
    return resolve_target(dsn)


def _project(project: Path | None) -> Path:
    return (project or Path.cwd()).resolve()


# --------------------------------------------------------------------------- db


def _render_server(status: ServerStatus) -> None:
    state = "[green]running[/]" if status.running else "[yellow]stopped[/]"
    out.print(f"embedded PostgreSQL {status.version or ''}: {state}")
    out.print(f"  data: {status.data_dir}")
    out.print(f"  log:  {status.log_file}")
    if status.running:
        out.print(f"  pid:  {status.pid}")
        out.print(f"  url:  {status.url}")


@db_app.command("up", epilog="Example: gcos db up")
def db_up(as_json: JsonOpt = False) -> None:
    """Start the embedded PostgreSQL under .gcos/ (creates it on first use; safe to run twice)."""
    _run(as_json, commands.db_up, _render_server)


@db_app.command("down", epilog="Example: gcos db down")
def db_down(as_json: JsonOpt = False) -> None:
    """Stop the embedded PostgreSQL (its data stays under .gcos/)."""
    _run(as_json, commands.db_down, _render_server)


@db_app.command("status", epilog="Example: gcos db status --json")
def db_status(as_json: JsonOpt = False) -> None:
    """Say whether the embedded PostgreSQL is running, and where its data and log are."""
    _run(as_json, commands.db_status, _render_server)


@db_app.command("url", epilog='Example: psql "$(gcos db url)"')
def db_url(as_json: JsonOpt = False) -> None:
    """Print the connection URL of the embedded server (starting it if needed); it holds no password."""
    _run(as_json, lambda: _target(None).display, lambda url: out.print(url, soft_wrap=True))


# --------------------------------------------------------------------------- plan / verify


_MARK = {True: "[green]✔[/]", False: "[red]✘[/]", None: "[yellow]?[/]"}


def _render_plan(report: commands.PlanReport, explain: bool = False) -> None:
    for p in report.plans:
        tree = Tree(f"[bold]plan {p.id}[/] — {p.title}  [dim]plan hash {p.plan_hash[:12]}[/]")
        for s in p.steps:
            node = tree.add(
                f"[bold]{s.ref}[/] [cyan]{s.id}[/] {s.title}  [magenta]{s.state}[/] "
                f"[dim]{s.mode}, spec {s.spec_hash[:12]}[/]"
            )
            if explain:
                for g in s.gates:
                    node.add(f"{_MARK[g.holds]} {g.name}: [dim]{g.reason}[/]")
            else:
                node.add("  ".join(f"{_MARK[g.holds]} {g.short}" for g in s.gates))
        if p.global_stop:
            stops = tree.add(f"{len(p.global_stop)} global stop conditions, checked at every rehearse and commit")
            if explain:
                for name in p.global_stop:
                    stops.add(f"[dim]{name}[/]")
        out.print(tree)
    if report.unplanned:
        out.print(f"[yellow]steps in no plan:[/] {', '.join(report.unplanned)}")
    hint = "" if explain else "; gcos plan --explain gives each gate's reason"
    out.print(f"[dim]✔ holds  ✘ does not hold  ? known only at verify/rehearse/approve/commit time{hint}[/]")


@app.command("plan", epilog="Example: gcos plan --explain")
def plan_cmd(
    project: ProjectOpt = Path("."),
    explain: Annotated[bool, typer.Option("--explain", help="Show every gate's reason and the global stops.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Validate every step spec and the plan DAG, then print the build order with each step's gates.

    Reads only the files under steps/ and plans/; it does not touch any database.
    """
    _run(as_json, lambda: commands.plan(_project(project)), lambda report: _render_plan(report, explain))


def _render_verify(result: commands.VerifyResult) -> None:
    table = Table(title=f"re-verify {result.step} ({result.ref}) on {result.target}", title_justify="left")
    table.add_column("check")
    table.add_column("expected", justify="right")
    table.add_column("actual", justify="right")
    table.add_column("", justify="center")
    for c in result.checks:
        table.add_row(c.name, c.expected, c.shown_actual, _MARK[c.ok])
    out.print(table)
    if result.ok:
        out.print(
            f"[green]all {len(result.checks)} re-verify checks of {result.step} hold[/] "
            f"[dim](spec {result.spec_hash[:12]})[/]"
        )


@app.command("verify", epilog="Example: gcos verify step-1    (or: gcos verify SB-12 --json)")
def verify_cmd(step: StepArg, dsn: DsnOpt = None, project: ProjectOpt = Path("."), as_json: JsonOpt = False) -> None:
    """Run a step's live re-verify checks in a READ ONLY transaction and show expected vs actual.

    Exit 6 if any check does not hold; exit 2 if a check is not one row of one column.
    """
    _run(
        as_json,
        lambda: commands.verify(_target(dsn), _project(project), step),
        _render_verify,
        render_details=lambda d: _render_verify(d) if isinstance(d, commands.VerifyResult) else None,
    )


# --------------------------------------------------------------------------- demo


class _Bar:
    """One rich progress bar fed by the core's progress(label, done, total) callback."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: TaskID | None = None

    def __call__(self, label: str, done: int, total: int) -> None:
        if self.task is None:
            self.task = self.progress.add_task(label, total=total)
        self.progress.update(self.task, description=label, completed=done, total=total)


@app.command("demo", epilog="Example: gcos demo            (or: gcos demo --rows 10000 for a small world)")
def demo_cmd(
    rows: Annotated[int, typer.Option("--rows", min=1, help="birth_registry rows to build.")] = 1_043_000,
    dsn: DsnOpt = None,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Build seed 002's reference world (on the embedded PostgreSQL unless --dsn says otherwise), then print
    the build order and a live re-verify of step 1. Re-running it on a built world says so and goes on."""

    def action() -> commands.DemoResult:
        target = _target(dsn)
        if as_json:
            return commands.demo(target, _project(project), rows)
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:,}/{task.total:,}"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=err, transient=False) as progress:
            return commands.demo(target, _project(project), rows, _Bar(progress))

    def render(result: commands.DemoResult) -> None:
        w = result.world
        verb = "built" if w.built else "already built (left as it is)"
        out.print(f"[bold]reference world of seed 002 {verb}[/] on {w.target}")
        out.print("  " + ", ".join(f"{k} {v:,}" for k, v in sorted(w.counts.items())))
        _render_plan(result.plan)
        _render_verify(result.verify)

    _run(as_json, action, render)


@app.callback(invoke_without_command=True)
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the gcos version and exit.")] = False,
) -> None:
    if version:
        out.print(f"gcos {__version__}")
        raise typer.Exit(0)


def main() -> None:
    """Console-script entry point: usage errors exit 2 (click's own code), everything else as mapped above."""
    try:
        app()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (ExitCode.INTERNAL if exc.code else 0)
        sys.exit(code)
