"""Who decides: gcos approve / decide / revoke, and gcos principals add / list / whoami.

Every record is made as the database role the connection authenticates; no flag names a person.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gcos.cli import render
from gcos.cli.app import app, principals_app, run
from gcos.cli.options import (
    DsnOpt,
    ExpiresOpt,
    JsonOpt,
    NoteOpt,
    ProjectOpt,
    StepArg,
    VerdictOpt,
    project_dir,
    target,
)


@app.command("approve", epilog="Example: gcos approve SB-12 --verdict approve --expires-in 24h --note 'read R-2'")
def approve_cmd(
    step: StepArg,
    verdict: VerdictOpt,
    expires_in: ExpiresOpt,
    note: NoteOpt = None,
    rollback: Annotated[bool, typer.Option("--rollback", help="Approve the rollback of the step's commit.")] = False,
    dsn: DsnOpt = None,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Record YOUR verdict on a step, as the database role you connect with (never a flag).

    The approval is bound to the step's current spec hash, its plan's hash and this database, names the
    rehearsal you saw, and expires. Superusers, agents and services are refused.
    """
    from gcos import commands

    run(
        as_json,
        lambda: commands.approve(
            target(dsn),
            project_dir(project),
            step,
            verdict=verdict,
            expires_in=expires_in,
            note=note,
            rollback=rollback,
        ),
        render.receipt,
    )


@app.command("decide", epilog="Example: gcos decide A-4 --verdict approve --expires-in 7d")
def decide_cmd(
    decision: Annotated[str, typer.Argument(help="The decision's name, e.g. A-4 or C-1.")],
    verdict: VerdictOpt,
    expires_in: ExpiresOpt,
    note: NoteOpt = None,
    dsn: DsnOpt = None,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Record YOUR verdict, as a sovereign, on a named decision a step requires (silence is never approval).

    The record is bound to the hash of the decision's text in the project's plan (an edited text no longer
    counts) and expires; a decider never commits the step that needs the decision.
    """
    from gcos import commands

    run(
        as_json,
        lambda: commands.decide(
            target(dsn), project_dir(project), decision, verdict=verdict, expires_in=expires_in, note=note
        ),
        render.receipt,
    )


@app.command("revoke", epilog="Example: gcos revoke 17 --reason 'spec under review'   (or --decision for a decision)")
def revoke_cmd(
    record_id: Annotated[int, typer.Argument(help="The approval id (or decision id with --decision).")],
    reason: Annotated[str | None, typer.Option("--reason", help="Why, kept with the revocation.")] = None,
    decision: Annotated[bool, typer.Option("--decision", help="Revoke a decision record instead.")] = False,
    dsn: DsnOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Withdraw an approval or decision. A commit that already holds its lock finishes first; after that the
    revocation counts."""
    from gcos import commands

    run(as_json, lambda: commands.revoke(target(dsn), record_id, reason=reason, decision=decision), render.receipt)


@principals_app.command(
    "add", epilog='Example: gcos principals add alice --name "Alice Nguyen" --kind human --roles sovereign'
)
def principals_add(
    role: Annotated[str, typer.Argument(help="An existing database (login) role.")],
    name: Annotated[str, typer.Option("--name", help="The principal's display name, e.g. a person's full name.")],
    kind: Annotated[str, typer.Option("--kind", help="human, agent or service (only humans may approve).")],
    roles: Annotated[
        list[str],
        typer.Option(
            "--roles",
            help="gcos roles: sovereign, council, company_admin, domain_admin, operator, auditor, admin "
            "(comma-separated or repeated).",
        ),
    ],
    person: Annotated[
        str | None,
        typer.Option(
            "--person",
            help="The person this principal belongs to (default: its name; unchanged when re-adding). "
            "Principals of one person count as one signer.",
        ),
    ] = None,
    dsn: DsnOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Map a database role to a named principal (admin only). Identity is always the connection's role."""
    from gcos import commands

    wanted = [r.strip() for item in roles for r in item.split(",") if r.strip()]
    run(
        as_json,
        lambda: commands.principals_add(target(dsn), role, name=name, kind=kind, roles=wanted, person=person),
        render.principal,
    )


@principals_app.command("list", epilog="Example: gcos principals list --json")
def principals_list(dsn: DsnOpt = None, as_json: JsonOpt = False) -> None:
    """List every principal with its database role, person, kind and gcos roles."""
    from gcos import commands

    run(as_json, lambda: commands.principals_list(target(dsn)), render.principals)


@principals_app.command("whoami", epilog='Example: gcos principals whoami --dsn "postgresql://alice@db/prod"')
def principals_whoami(dsn: DsnOpt = None, as_json: JsonOpt = False) -> None:
    """Show the principal the database authenticates this connection as (its session_user)."""
    from gcos import commands

    run(as_json, lambda: commands.whoami(target(dsn)), render.principal)
