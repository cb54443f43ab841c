"""The gcos command line: parse, call ONE function of gcos.commands, render its result, map errors to exits.

This package is the only code that prints or exits; errors become the contract's exit codes in one place,
gcos.cli.app.run. The command modules register on the app when imported, in the order --help lists them.

Nothing is imported until it is needed: `gcos --version` prints without loading typer (about 0.2 s of
imports), and `gcos.cli.app` (the typer app, as `from gcos.cli import app` gives it) registers the command
modules on first use.
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import typer

__all__ = ["app", "main"]


def _registered() -> typer.Typer:
    """Import the command modules, which register on the app as they load, and return the app."""
    from gcos.cli import scaffold  # noqa: F401, I001 - init, new (import order is --help order)
    from gcos.cli import project  # noqa: F401 - plan, verify, rehearse
    from gcos.cli import authority  # noqa: F401 - approve, decide, revoke; principals add/list/whoami
    from gcos.cli import exceptions  # noqa: F401 - except
    from gcos.cli import commit  # noqa: F401 - status, commit, rollback
    from gcos.cli import log  # noqa: F401 - log, approvals, apply
    from gcos.cli import evidence  # noqa: F401 - drift, report; ledger verify/anchor
    from gcos.cli import demo  # noqa: F401 - demo
    from gcos.cli import db  # noqa: F401 - install, adopt; db up/down/status/url
    from gcos.cli import audit  # noqa: F401 - audit replay

    return sys.modules["gcos.cli.app"].app  # type: ignore[no-any-return]


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
    _registered()
    from gcos.cli.app import main as typer_main

    typer_main()
