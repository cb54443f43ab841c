"""The gcos command line: parse, call ONE function of gcos.commands, render its result, map errors to exits.

This package is the only code that prints or exits; errors become the contract's exit codes in one place,
gcos.cli.app.run. The command modules register on the app when imported, in the order --help lists them.
"""

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
from gcos.cli.app import app, main

__all__ = ["app", "main"]
