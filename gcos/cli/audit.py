"""Auditing a pack offline: gcos audit replay."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gcos.cli.app import app, run
from gcos.cli.options import JsonOpt

if TYPE_CHECKING:
    from rich.console import Console

    from gcos.evidence.replay import ReplayReport

audit_app = typer.Typer(
    help="Check an evidence pack offline, with no access to the target database.", no_args_is_help=True
)
app.add_typer(audit_app, name="audit")


def _lines(out: Console, decisions: list[dict[str, Any]]) -> None:
    for d in decisions:
        verdict = "allow" if d["allow"] else "deny"
        if d["match"]:
            out.print(
                f"seq {d['seq']} {d['action']} {d['step_id']}: {verdict} and all {d['gates_matched']} gates match"
            )
        else:
            out.print(f"seq {d['seq']} {d['action']} {d['step_id']}: DOES NOT MATCH: {d['problem']}")


def _render(out: Console, report: ReplayReport) -> None:
    _lines(out, report.to_dict()["decisions"])
    out.print(f"{len(report.decisions)} policy decisions replayed with gcos.judge_gates: every one matches its record")


@audit_app.command("replay", epilog="Example: gcos audit replay --pack evidence/")
def replay_cmd(
    pack: Annotated[
        Path, typer.Option("--pack", help="A JSON evidence pack (gcos report --format json).", file_okay=False)
    ],
    as_json: JsonOpt = False,
) -> None:
    """Re-judge every recorded gate decision from the facts its ledger record carries, on a scratch embedded
    PostgreSQL with the same gate SQL the kernel ran; names the first decision that does not match (exit 7)."""
    from gcos.evidence.replay import audit_replay

    run(as_json, lambda: audit_replay(pack), _render, render_details=lambda out, d: _lines(out, d["decisions"]))
