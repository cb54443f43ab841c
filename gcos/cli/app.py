"""The typer app and the ONE place where a GcosError becomes its exit code (`run` and `fail`).

Command modules register on `app` and its groups; each command body calls one function of gcos.commands
through `run`, which renders the result or maps the failure. Nothing heavy is imported here: the core,
psycopg and rich load only when a command runs, so `gcos --version` and `--help` start fast.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

from gcos import __version__
from gcos.cli import _coerce

_coerce.install()  # str/Path/int parameters coerced without importing pydantic (gcos/cli/_coerce.py)

if TYPE_CHECKING:
    from rich.console import Console

    from gcos.errors import GcosError

T = TypeVar("T")

app = typer.Typer(
    help="gcos: plan, rehearse, approve and commit PostgreSQL build steps, with evidence an auditor can check.\n\n"
    "Start with: gcos demo   (builds seed 002's reference world on the embedded PostgreSQL)",
    no_args_is_help=True,
    add_completion=True,  # --install-completion, --show-completion (bash, zsh, fish, PowerShell)
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
db_app = typer.Typer(
    help="The embedded PostgreSQL server gcos runs under .gcos/ (the default target).", no_args_is_help=True
)
app.add_typer(db_app, name="db")
principals_app = typer.Typer(help="Who may do what: database roles mapped to named principals.", no_args_is_help=True)
app.add_typer(principals_app, name="principals")
ledger_app = typer.Typer(
    help="The append-only, hash-chained evidence ledger in the target database.", no_args_is_help=True
)
app.add_typer(ledger_app, name="ledger")


def run(
    as_json: bool,
    action: Callable[[], T],
    render: Callable[[Console, T], None],
    render_details: Callable[[Console, Any], None] | None = None,
    *,
    details_on_stderr: bool = False,
) -> None:
    """Call the core, render the result, and turn every failure into its documented exit code.

    `render_details` draws what a failure carries (the checks that did not hold, the gates) before the
    error line, on stdout unless `details_on_stderr`.
    """
    import psycopg

    from gcos.errors import GcosError, from_database

    try:
        result = action()
    except GcosError as exc:
        fail(exc, as_json, render_details, details_on_stderr)
    except psycopg.Error as exc:
        if os.environ.get("GCOS_DEBUG"):
            traceback.print_exc()
        internal = (
            f"internal error: {type(exc).__name__}: {exc}; rerun with GCOS_DEBUG=1 for the traceback and report it."
        )
        fail(from_database(exc) or GcosError(internal + "."), as_json, None)
    except KeyboardInterrupt:
        fail(interrupted(), as_json, None)
    except typer.Exit:
        raise
    except Exception as exc:
        if os.environ.get("GCOS_DEBUG"):
            traceback.print_exc()
        fail(
            GcosError(
                f"internal error: {type(exc).__name__}: {exc}; rerun with GCOS_DEBUG=1 for the traceback and report it."
            ),
            as_json,
            None,
        )
    from gcos.cli import render as r

    try:
        if as_json:
            r.emit_json({"ok": True, "result": result})
        else:
            render(r.stdout(), result)
    except BrokenPipeError:
        _reader_left()
    except SystemExit as exc:  # rich meets EPIPE itself: it points stdout at devnull and exits 1
        if isinstance(exc.__context__, BrokenPipeError):
            _reader_left()
        raise


def interrupted() -> GcosError:
    """Ctrl-C outside a batched run (which says its own, gcos/kernel_batched.py): every gcos write is one
    transaction the server rolls back when its client stops before COMMIT, so the sentence can say that."""
    from gcos.errors import Interrupted

    return Interrupted(
        "Interrupted (Ctrl-C): the database rolled back the transaction in flight, so "
        "nothing of it was applied (what had already committed stays); run `gcos status` to see where each "
        "step stands."
    )


def fail(
    exc: GcosError,
    as_json: bool,
    render_details: Callable[[Console, Any], None] | None,
    details_on_stderr: bool = False,
) -> NoReturn:
    """Print the error (JSON envelope or one red line on stderr) and exit with the error's code."""
    from gcos.cli import render as r

    if as_json:
        r.emit_json({"ok": False, "exit_code": int(exc.exit_code), "error": exc.message, "details": exc.details})
    else:
        err = r.stderr()
        if render_details and exc.details is not None:
            render_details(err if details_on_stderr else r.stdout(), exc.details)
        err.print(f"[bold red]error:[/] {exc.message}", markup=True, highlight=False, soft_wrap=True)
    raise typer.Exit(int(exc.exit_code))


@app.callback(invoke_without_command=True)
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the gcos version and exit.")] = False,
) -> None:
    if version:
        from gcos.cli import render as r

        r.stdout().print(f"gcos {__version__}")
        raise typer.Exit(0)


def main() -> None:
    """Console-script entry point: usage errors exit 2 (click's own code), everything else as mapped above."""
    try:
        app(prog_name="gcos")  # also under `python -m gcos`, so shell completion is installed for `gcos`
    except KeyboardInterrupt:  # pressed outside a command body (parsing, imports): nothing was started
        sys.stderr.write("gcos: interrupted (Ctrl-C) before any database work began; nothing was applied.\n")
        sys.exit(_INTERRUPTED)
    except SystemExit as exc:
        if isinstance(exc.code, int):
            sys.exit(exc.code)
        from gcos.errors import ExitCode

        sys.exit(ExitCode.INTERNAL if exc.code else 0)


_INTERRUPTED = 130  # gcos.errors.ExitCode.INTERRUPTED, without importing the core at start-up


def _reader_left() -> NoReturn:
    """`gcos status | head -1`: the reader closed the pipe, which is not an error of gcos. Point stdout at
    devnull so the interpreter's final flush does not fail again, and exit 0 quietly."""
    try:
        stdout = sys.stdout.fileno()
    except (OSError, ValueError):  # not a file descriptor (an in-process runner): no final flush can fail
        raise typer.Exit(0) from None
    os.dup2(os.open(os.devnull, os.O_WRONLY), stdout)
    raise typer.Exit(0)
