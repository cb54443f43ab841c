"""The gcos command line: parse, call ONE function of gcos.commands, render its result, map errors to exits.

This package is the only code that prints or exits; errors become the contract's exit codes in one place,
gcos.cli.app.run. The command modules register on the app when imported, in the order --help lists them.

Nothing is imported until it is needed: `gcos --version` prints without loading typer (about 0.2 s of
imports); a command registers only the module that defines it (COMMANDS), so `gcos rehearse` does not
import the other nine; `gcos --help`, completion and an unknown command register them all, and `gcos.cli.app`
(the typer app, as `from gcos.cli import app` gives it) registers every module on first use.
"""

from __future__ import annotations

import os
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import typer

__all__ = ["app", "main"]


MODULES = ("scaffold", "project", "authority", "exceptions", "commit", "log", "evidence", "demo", "db", "audit")
"""The command modules in --help order: each registers its commands on the app as it is imported."""

COMMANDS: dict[str, str] = {
    "init": "scaffold", "new": "scaffold",
    "plan": "project", "verify": "project", "rehearse": "project",
    "approve": "authority", "decide": "authority", "revoke": "authority", "principals": "authority",
    "except": "exceptions",
    "status": "commit", "commit": "commit", "rollback": "commit",
    "log": "log", "approvals": "log", "apply": "log",
    "drift": "evidence", "report": "evidence", "ledger": "evidence",
    "demo": "demo",
    "install": "db", "adopt": "db", "db": "db",
    "audit": "audit",
}  # fmt: skip
"""Each top-level command (or group) and the ONE module that registers it (and every command of its group):
`gcos rehearse ...` imports gcos.cli.project alone. tests/test_startup.py checks it against the real modules."""


def _registered(only: str | None = None) -> typer.Typer:
    """Import the command modules (or `only` that one), which register on the app as they load; the app."""
    import importlib

    for name in (only,) if only else MODULES:
        importlib.import_module(f"gcos.cli.{name}")
    return sys.modules["gcos.cli.app"].app  # type: ignore[no-any-return]


def _module_for(argv: list[str]) -> str | None:
    """The one command module `argv` needs, or None (every module: --help, completion, an unknown command)."""
    if not argv or os.environ.get("_GCOS_COMPLETE"):  # typer's shell completion lists every command
        return None
    return COMMANDS.get(argv[0])


class _Package(types.ModuleType):
    """`gcos.cli.app` is the registered typer app, never the submodule of that name: importing the submodule
    binds it on the package, which a plain module attribute (or a module __getattr__) would then return."""

    @property
    def app(self) -> typer.Typer:
        return _registered()

    @app.setter
    def app(self, _module: Any) -> None:
        """The import system binds the submodule gcos.cli.app here; the property keeps answering the app."""


sys.modules[__name__].__class__ = _Package


def main() -> None:
    """Console-script entry point (`gcos`, `python -m gcos`, `python -m gcos.cli`).

    `gcos --version` alone answers before typer loads; everything else goes through the typer app, which
    maps usage errors to exit 2 and every failure to its documented code (gcos.cli.app.main).
    """
    if sys.argv[1:] == ["--version"]:
        from gcos import __version__

        sys.stdout.write(f"gcos {__version__}\n")
        return
    _registered(_module_for(sys.argv[1:]))  # `gcos rehearse ...` registers only rehearse's module
    from gcos.cli.app import main as typer_main

    typer_main()
