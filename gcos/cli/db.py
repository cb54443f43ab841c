"""The database gcos works on: the embedded server (gcos db ...), gcos install, gcos adopt."""

from __future__ import annotations

from typing import Annotated

import typer

from gcos.cli import render
from gcos.cli.app import app, db_app, run
from gcos.cli.options import DsnOpt, JsonOpt, target


@db_app.command("up", epilog="Example: gcos db up")
def db_up(as_json: JsonOpt = False) -> None:
    """Start the embedded PostgreSQL under .gcos/ (creates it on first use; safe to run twice)."""
    from gcos import commands

    run(as_json, commands.db_up, render.server)


@db_app.command("down", epilog="Example: gcos db down")
def db_down(as_json: JsonOpt = False) -> None:
    """Stop the embedded PostgreSQL (its data stays under .gcos/)."""
    from gcos import commands

    run(as_json, commands.db_down, render.server)


@db_app.command("status", epilog="Example: gcos db status --json")
def db_status(as_json: JsonOpt = False) -> None:
    """Say whether the embedded PostgreSQL is running, and where its data and log are."""
    from gcos import commands

    run(as_json, commands.db_status, render.server)


@db_app.command("url", epilog='Example: psql "$(gcos db url)"')
def db_url(as_json: JsonOpt = False) -> None:
    """Print where gcos would connect (--dsn aside): GCOS_DSN, DATABASE_URL, the PG* variables, else the
    embedded server's URL. It never starts a server (exit 8 if the embedded one is not running) and never
    prints a password."""
    run(as_json, _url, lambda out, url: out.print(url, soft_wrap=True))


def _url() -> str:
    from gcos.embedded import EmbeddedServer
    from gcos.errors import DatabaseUnavailable
    from gcos.target import resolve_target

    found = resolve_target(None, start_embedded=False)
    if found.source == "embedded":
        server = EmbeddedServer()
        if not server.status().running:
            raise DatabaseUnavailable(
                f"The embedded PostgreSQL under {server.root} is not running; start it with `gcos db up` "
                "(or set GCOS_DSN, DATABASE_URL or PGHOST to use another server)."
            )
        return server.url()
    return found.display


@app.command("install", epilog="Example: gcos install --dsn postgresql://admin@db.example/prod")
def install_cmd(dsn: DsnOpt = None, as_json: JsonOpt = False) -> None:
    """Create the gcos schema, its roles, approvals table, principals and ledger (idempotent; upgrades in place).

    Run it as a superuser, or on a managed service (RDS, Cloud SQL, Azure, Supabase, Neon) as the role with
    CREATEROLE that owns the database: what only a superuser may install is then skipped, each with one sentence
    saying which protection is missing, and that role becomes the first gcos admin. Re-running it on an installed
    database changes nothing (a superuser's re-run puts back what a managed install skipped).
    """
    from gcos import commands

    run(as_json, lambda: commands.install(target(dsn)), render.installed)


@app.command(
    "adopt",
    epilog="Example: gcos adopt public --dsn postgresql://admin@db.example/prod   (undo: gcos adopt --release public)",
)
def adopt_cmd(
    schemas: Annotated[list[str], typer.Argument(help="Schemas to adopt (or release), spelled exactly.")],
    release: Annotated[
        bool, typer.Option("--release", help="Hand the schemas back: previous owners, revoked privileges re-granted.")
    ] = False,
    dsn: DsnOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Put schemas under gcos: gcos_kernel owns them and everything in them; other roles keep what they could
    read and lose every write, DDL and grant privilege (and EXECUTE of SECURITY DEFINER routines).

    Run it after gcos install, as a superuser (or, on a managed service, as the database owner holding ADMIN
    OPTION on gcos_kernel and membership in the objects' owners). Every revoked privilege and previous owner
    is listed and recorded in the ledger; adopting an adopted schema does nothing; releasing one that is not
    adopted is exit 2. All in one transaction: a refusal changes nothing.
    """
    from gcos import commands

    if release:
        run(as_json, lambda: commands.release(target(dsn), schemas), render.adopted)
    else:
        run(as_json, lambda: commands.adopt(target(dsn), schemas), render.adopted)
