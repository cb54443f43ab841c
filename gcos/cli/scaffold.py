"""gcos init and gcos new: a gcos project for a database one already has, and step specs from existing SQL."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gcos.cli.app import app, run
from gcos.cli.options import DsnOpt, JsonOpt, ProjectOpt, project_dir, target

if TYPE_CHECKING:
    from rich.console import Console


def _say(console: Console, text: str) -> None:
    console.print(text, markup=False, soft_wrap=True)


def _render_init(console: Console, result: Any) -> None:
    _say(console, f"gcos project {result.name} written in {result.root}: {', '.join(result.files)}")
    schemas = sorted({t.schema for t in result.tables})
    _say(console, f"found {len(result.tables)} table(s) in schema(s) {', '.join(schemas) or 'none'}:")
    for t in result.tables:
        rows = "unreadable" if t.rows is None else (f"{t.rows} rows" if t.rows <= 10_000 else "over 10000 rows")
        _say(console, f"  {t.schema}.{t.name}  {rows}")
    if result.watch:
        _say(console, f"suggested watch (small tables, in gcos.yaml defaults): {', '.join(result.watch)}")
    _say(console, "next:")
    for line in result.next_steps:
        _say(console, f"  {line}")


def _render_new(console: Console, result: Any) -> None:
    console.print(
        f"step {result.step} written to {result.spec}, rollback to {result.rollback}; added to plan {result.plan}",
        markup=False,
        soft_wrap=True,
    )
    if result.todos:
        console.print(
            f"{result.todos} TODO line(s) in {result.rollback}: gcos refuses this project until you write them.",
            markup=False,
            soft_wrap=True,
        )


@app.command("init", epilog="Example: gcos init --name shop --dsn postgresql://me@db/shop   (or PG* variables)")
def init_cmd(
    name: Annotated[str | None, typer.Option("--name", help="The project's name (default: the directory's).")] = None,
    dsn: DsnOpt = None,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Make this directory a gcos project for an existing database.

    Writes gcos.yaml (name, approver roles, defaults), steps/, plans/, rollback/ and a first plan, lists the
    schemas and tables it finds and suggests the small ones to watch. Never overwrites an existing project.
    """
    from gcos import commands, scaffold

    def act() -> Any:
        scaffold.refuse_existing(project_dir(project))  # before any server is started or reached
        return commands.init(target(dsn), project_dir(project), name)

    run(as_json, act, _render_init)


@app.command("new", epilog="Example: gcos new ADD-EMAIL --sql add_email.sql")
def new_cmd(
    step: Annotated[str, typer.Argument(help="The new step's id, e.g. ADD-EMAIL.")],
    sql_file: Annotated[Path, typer.Option("--sql", help="The SQL file the step runs.", dir_okay=False)],
    plan: Annotated[str | None, typer.Option("--plan", help="The plan to add it to (default: the only one).")] = None,
    title: Annotated[str | None, typer.Option("--title", help="One line saying what the step does.")] = None,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Write a step spec from SQL you already have and add it to the plan (no database needed).

    The allow list is inferred with PostgreSQL's parser; re-verify checks that what it creates is absent; the
    rollback is written where the inverse is mechanical (CREATE -> DROP, ADD COLUMN -> DROP COLUMN, INSERT of
    literal rows -> DELETE) and a TODO line elsewhere, which gcos refuses until you replace it.
    """
    from gcos import commands

    run(as_json, lambda: commands.new(project_dir(project), step, sql_file, plan, title), _render_new)
