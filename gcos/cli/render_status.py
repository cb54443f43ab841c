"""Renderers of what the ledger says: gcos status (one row per step, `flyway info` style; the per-gate detail
of one step), gcos log, gcos apply, gcos approvals. Like render.py, each draws one result on a given Console."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from gcos.cli.render import MARK, applied_details, jsonable

if TYPE_CHECKING:
    from gcos import apply_plan, commands
    from gcos.approval_list import ApprovalList
    from gcos.ledger_log import LogReport

STATE_STYLE = {
    "committed": "green",
    "approved": "cyan",
    "rehearsed": "blue",
    "planned": "white",
    "rolled_back": "yellow",
    "interrupted, resumable": "bold yellow",
    "committed, spec changed": "bold red",
}


def _when(text: str | None) -> str:
    """A ledger time to the second, without the zone (always UTC)."""
    return text[:19].replace("T", " ") if text else "-"


def status(out: Console, report: commands.StatusReport) -> None:
    if not report.adopted:
        out.print(
            "[yellow]schema public is not adopted[/]: the kernel measures, rehearses and commits nothing here; "
            "an admin runs `gcos adopt public` first.",
            soft_wrap=True,
        )
    if report.detail:
        for s in report.steps:
            step_detail(out, s)
        return
    table = Table(title=f"gcos status on {report.target}", title_justify="left")
    for column in ("step", "id", "title", "state", "when (UTC)", "by", "next"):
        table.add_column(column, overflow="fold")
    for s in report.steps:
        row = s.row
        shown = row.shown if row else str(s.state)
        colour = STATE_STYLE.get(shown, "white")
        table.add_row(
            s.ref,
            s.id,
            s.title,
            f"[{colour}]{shown}[/]",
            _when(row.when if row else None),
            (row.by if row else None) or "-",
            row.next if row else "",
        )
    out.print(table)
    out.print("[dim]gcos status STEP shows each gate of one step; gcos log STEP its ledger history[/]")


def step_detail(out: Console, s: commands.StepStatus) -> None:
    """One step: its row, then each gate and why it holds or not; a committed step is done, its gates moot."""
    row = s.row
    shown = row.shown if row else str(s.state)
    colour = STATE_STYLE.get(shown, "white")
    out.print(f"[bold]{s.ref}[/] [cyan]{s.id}[/] {s.title}: [{colour}]{shown}[/] [dim]({s.detail})[/]", soft_wrap=True)
    if row is not None:
        out.print(f"    when {_when(row.when)}, by {row.by or '-'}; next: {row.next}", soft_wrap=True)
    if row is not None and row.done:
        out.print(
            f"    [green]✔ done[/]: the commit is in force; gcos log {s.id} shows its history "
            f"(a rollback needs its own approval: gcos approve {s.id} --rollback)",
            soft_wrap=True,
        )
        return
    for g in s.decision.gates:
        remedy = f" — {g.remedy}" if (g.remedy and not g.allow) else ""
        mark = MARK[g.allow if g.known else None]
        out.print(f"    {mark} {g.number} {g.title}: [dim]{g.reason}{remedy}[/]", soft_wrap=True)


def log(out: Console, report: LogReport) -> None:
    title = f"ledger history of {report.step}" if report.step else "ledger history"
    table = Table(title=title, title_justify="left")
    for column in ("seq", "kind", "step", "when (UTC)", "who", "trace", "outcome"):
        table.add_column(column, overflow="fold")
    for r in report.rows:
        table.add_row(
            str(r.seq), r.kind, r.step_id or "-", _when(r.when), r.who or "-", (r.trace_id or "-")[:12], r.outcome
        )
    out.print(table)
    if not report.rows:
        out.print("no ledger record" + (f" of {report.step}" if report.step else "") + " yet")
    for note in report.notes:
        out.print(f"[bold yellow]{note}[/]", soft_wrap=True)


def applied_plan(out: Console, result: apply_plan.ApplyResult) -> None:
    marks = {"committed": "[green]✔ committed[/]", "skipped": "[dim]- skipped[/]", "refused": "[red]✘ refused[/]"}
    for a in result.steps:
        out.print(f"  {marks.get(a.outcome, a.outcome)} [cyan]{a.step}[/]: {a.detail}", soft_wrap=True)
    if result.ok:
        committed = sum(1 for a in result.steps if a.outcome == "committed")
        out.print(f"[green]plan {result.plan} applied[/]: {committed} step(s) committed, the rest already were")


def applied_plan_details(err: Console, details: Any) -> None:
    """What ran before the refusal, then the refused commit's gates."""
    if not isinstance(details, dict):
        return
    summary = details.get("apply")
    if summary is not None:
        applied_plan(err, summary)
    applied_details(err, jsonable(details.get("refusal")))


def approvals(out: Console, result: ApprovalList) -> None:
    title = f"approvals of {result.step}" if result.step else "approvals"
    table = Table(title=title, title_justify="left")
    for column in ("id", "step", "for", "verdict", "by", "expires (UTC)", "revoked", "counts now"):
        table.add_column(column, overflow="fold")
    for a in result.approvals:
        counts = f"{MARK[True]} yes" if a.counts else f"{MARK[False]} no: {a.why}"
        table.add_row(
            str(a.id), a.step, a.subject, a.verdict, a.approver, _when(a.expires_at), a.revoked or "-", counts
        )
    out.print(table)
    if not result.approvals:
        out.print("no approval recorded" + (f" for {result.step}" if result.step else "") + " yet")
    else:
        out.print("[dim]withdraw one with: gcos revoke ID --reason TEXT[/]")
