"""Evidence: gcos drift, gcos report, gcos ledger verify / anchor."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from gcos.cli import render
from gcos.cli.app import app, ledger_app, run
from gcos.cli.options import DsnOpt, JsonOpt, ProjectOpt, project_dir, target

if TYPE_CHECKING:
    from gcos import ledger

SignOpt = Annotated[
    Path | None,
    typer.Option(
        "--sign", help="An SSH private key: sign with ssh-keygen -Y sign (FILE.sig beside it).", dir_okay=False
    ),
]
AllowedSignersOpt = Annotated[
    Path | None,
    typer.Option(
        "--allowed-signers",
        help="An ssh-keygen allowed_signers file: the pack's and the --anchor's signatures must verify against it.",
        dir_okay=False,
    ),
]


@app.command("drift", epilog="Example: gcos drift --project . --json")
def drift_cmd(
    dsn: DsnOpt = None,
    project: Annotated[
        Path | None,
        typer.Option(
            "--project",
            "-C",
            help="Also write the drift record's evidence files to this project's rehearsals/<STEP>/.",
            file_okay=False,
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Compare the live world with the fingerprint recorded after the last commit or rollback.

    Any difference is appended to the ledger as a drift record and shown as a diff (exit 6); with --project,
    its evidence files go beside the rehearsals' (rehearsals/<STEP>/<time>-seq<N>-drift.json and .md).
    """
    from gcos import commands

    run(
        as_json,
        lambda: commands.drift(target(dsn), project_dir=project_dir(project) if project else None),
        render.drift,
        render_details=render.drift_details,
    )


@app.command(
    "report",
    epilog="Example: gcos report --format html --out evidence/   (or: gcos report --format junit --out ci/)",
)
def report_cmd(
    step: Annotated[str | None, typer.Argument(help="One step (id or step-N); the whole plan if omitted.")] = None,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="md, html (one self-contained file), json (an evidence pack with a manifest), junit "
            "(junit.xml for CI: one testcase per gate per step, refusals as failures) or records (the commit, "
            "rollback, refusal, stop and drift evidence files again from the ledger; --out rehearsals).",
        ),
    ] = "html",
    out_dir: Annotated[Path, typer.Option("--out", help="Directory to write into.", file_okay=False)] = Path(
        "gcos-report"
    ),
    dsn: DsnOpt = None,
    project: ProjectOpt = Path("."),
    sign: SignOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write evidence reports an auditor can check: specs and hashes, rehearsals, approvals, policy decisions,
    ledger records and how to verify them. A json pack verifies offline with gcos ledger verify --pack DIR;
    --sign KEY signs its manifest (manifest.json.sig, namespace gcos-pack) for ssh-keygen -Y verify."""
    from gcos import commands

    run(
        as_json,
        lambda: commands.report(target(dsn), project_dir(project), step, fmt, out_dir, sign=sign),
        render.report,
    )


@ledger_app.command(
    "verify",
    epilog="Example: gcos ledger verify --pack evidence/ --anchor anchors/2026-11-21.json --allowed-signers signers",
)
def ledger_verify(
    anchor: Annotated[
        Path | None,
        typer.Option(
            "--anchor", help="An anchor exported earlier with `gcos ledger anchor`; detects truncation and rewrites."
        ),
    ] = None,
    pack: Annotated[
        Path | None,
        typer.Option(
            "--pack",
            help="Verify a JSON evidence pack (gcos report --format json) offline, with no "
            "database: the hash chain, the anchor, and every file rebuilt from the chain.",
            file_okay=False,
        ),
    ] = None,
    allowed_signers: AllowedSignersOpt = None,
    dsn: DsnOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Recompute every hash of the ledger from genesis and name the first bad record (exit 7). With --pack,
    every file of the pack must be what the builder writes from its chain; with --allowed-signers, signatures
    (the pack's manifest.json.sig, the anchor's ANCHOR.sig) must verify too."""
    from gcos import commands

    def action() -> ledger.VerifyReport:
        if pack is not None:
            return commands.verify_pack(pack, anchor, allowed_signers)
        return commands.ledger_verify(target(dsn), anchor, allowed_signers=allowed_signers)

    run(as_json, action, render.ledger_report, render_details=render.ledger_report_details)


@ledger_app.command("anchor", epilog="Example: gcos ledger anchor --out anchors/$(date +%F).json")
def ledger_anchor(
    out_file: Annotated[
        Path,
        typer.Option("--out", help="Where to write the anchor (JSON); keep it outside the database.", dir_okay=False),
    ],
    sign: SignOpt = None,
    dsn: DsnOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Verify the ledger, then export its head (seq, hash, time, database identity) to a file; --sign KEY also
    writes FILE.sig (ssh-keygen -Y sign, namespace gcos-anchor)."""
    from gcos import commands

    run(
        as_json,
        lambda: commands.ledger_anchor(target(dsn), out_file, sign=sign),
        lambda out, a: out.print(f"anchor written to {out_file}: seq {a.seq}, hash {a.hash}, at {a.recorded_at}"),
    )
