"""Renderers: each draws one result of gcos.commands on the Console it is given (never a global one).

`stdout()` and `stderr()` make the two consoles a command writes to; `emit_json` is the --json output.
The core is imported for types only (or inside a renderer that needs a value), so importing this module
costs rich and nothing more.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from rich.progress import Progress, ProgressColumn, TaskID

    from gcos import adopt, commands, evidence, install, ledger, planning
    from gcos import drift as drift_mod
    from gcos.embedded import ServerStatus
    from gcos.principals import Principal
    from gcos.results import BatchedResult, BatchProgress, CommitResult, RehearsalResult

MARK = {True: "[green]✔[/]", False: "[red]✘[/]", None: "[yellow]?[/]"}


def stdout() -> Console:
    """The console for results."""
    return Console(highlight=False)


def stderr() -> Console:
    """The console for errors, the details of a refusal, and progress bars."""
    return Console(stderr=True, highlight=False)


def jsonable(value: Any) -> Any:
    """Result objects as plain JSON: dataclasses by field (plus `ok` where they define it)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        data = {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value) if f.repr}
        if hasattr(type(value), "ok"):
            data["ok"] = getattr(value, "ok")  # noqa: B009 - a property some results define
        return data
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def emit_json(payload: Any) -> None:
    """The --json output: one indented JSON document on stdout."""
    sys.stdout.write(json.dumps(jsonable(payload), indent=2, default=str) + "\n")


# --------------------------------------------------------------------------- progress


def progress(err: Console, *columns: ProgressColumn) -> Progress:
    """A rich progress display on `err` that stays on screen when it ends (rich.progress loads here: only the
    commands that show progress pay for it)."""
    from rich.progress import Progress

    return Progress(*columns, console=err, transient=False)


def row_columns(unit: str = "", rate: bool = False) -> tuple[ProgressColumn, ...]:
    """Label, bar, done/total (with a unit), optionally a rate field, elapsed and remaining time."""
    from rich.progress import BarColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    counts = TextColumn("{task.completed:,}/{task.total:,}" + (f" {unit}" if unit else ""))
    extra = (TextColumn("{task.fields[rate]}"),) if rate else ()
    return (TextColumn("{task.description}"), BarColumn(), counts, *extra, TimeElapsedColumn(), TimeRemainingColumn())


class Bar:
    """One rich progress bar fed by the core's progress(label, done, total) callback."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: TaskID | None = None

    def __call__(self, label: str, done: int, total: int) -> None:
        if self.task is None:
            self.task = self.progress.add_task(label, total=total)
        self.progress.update(self.task, description=label, completed=done, total=total)


class BatchBar:
    """The progress bar of a batched commit, fed by the core's BatchProgress callback."""

    def __init__(self, progress: Progress, step: str) -> None:
        self.progress = progress
        self.step = step
        self.task: TaskID | None = None

    def __call__(self, p: BatchProgress) -> None:
        if self.task is None:
            self.task = self.progress.add_task(f"{self.step} batches", total=p.total_rows, rate="")
        self.progress.update(self.task, completed=p.done_rows, total=p.total_rows, rate=f"{p.rate_rows_s:,} rows/s")


# --------------------------------------------------------------------------- db, plan, verify, rehearse


def server(out: Console, status: ServerStatus) -> None:
    state = "[green]running[/]" if status.running else "[yellow]stopped[/]"
    out.print(f"embedded PostgreSQL {status.version or ''}: {state}")
    out.print(f"  data: {status.data_dir}")
    out.print(f"  log:  {status.log_file}")
    if status.running:
        out.print(f"  pid:  {status.pid}")
        out.print(f"  url:  {status.url}")


def plan(out: Console, report: planning.PlanReport, explain: bool = False) -> None:
    from rich.tree import Tree

    for p in report.plans:
        tree = Tree(f"[bold]plan {p.id}[/] — {p.title}  [dim]plan hash {p.plan_hash[:12]}[/]")
        for s in p.steps:
            node = tree.add(
                f"[bold]{s.ref}[/] [cyan]{s.id}[/] {s.title}  "
                + (f"[magenta]{s.state}[/] " if s.state else "")
                + f"[dim]{s.mode}, spec {s.spec_hash[:12]}[/]"
            )
            if explain:
                for g in s.gates:
                    node.add(f"{MARK[g.holds]} {g.name}: [dim]{g.reason}[/]")
            else:
                node.add("  ".join(f"{MARK[g.holds]} {g.short}" for g in s.gates))
        if p.global_stop:
            stops = tree.add(f"{len(p.global_stop)} global stop conditions, checked at every rehearse and commit")
            if explain:
                for name in p.global_stop:
                    stops.add(f"[dim]{name}[/]")
        out.print(tree)
    if report.unplanned:
        out.print(f"[yellow]steps in no plan:[/] {', '.join(report.unplanned)}")
    hint = "" if explain else "; gcos plan --explain gives each gate's reason"
    out.print(f"[dim]✔ holds  ✘ does not hold  ? known only at verify/rehearse/approve/commit time{hint}[/]")
    out.print("[dim]offline: no database was read, so no state is shown; gcos status shows each step's state[/]")


def verify(out: Console, result: commands.VerifyResult) -> None:
    table = Table(title=f"re-verify {result.step} ({result.ref}) on {result.target}", title_justify="left")
    table.add_column("check")
    table.add_column("expected", justify="right")
    table.add_column("actual", justify="right")
    table.add_column("", justify="center")
    for c in result.checks:
        table.add_row(c.name, c.expected, c.shown_actual, MARK[c.ok])
    out.print(table)
    if result.ok:
        out.print(
            f"[green]all {len(result.checks)} re-verify checks of {result.step} hold[/] "
            f"[dim](spec {result.spec_hash[:12]})[/]"
        )


def verify_details(out: Console, details: Any) -> None:
    from gcos.commands import VerifyResult

    if isinstance(details, VerifyResult):
        verify(out, details)


def _check_mark(ok: bool, waived: dict[str, Any] | None) -> str:
    """A check's mark; a failing check an exception waived says so (025)."""
    if waived and not ok:
        return f"[yellow]waived[/] (exception {waived.get('exception_id')} by {waived.get('by')})"
    return MARK[ok]


def _waived_lines(out: Console, result: CommitResult | BatchedResult) -> None:
    for kind, name, waived in [
        *(("re-verify", c.name, c.waived) for c in getattr(result, "reverify", ())),
        *(("stop", s.name, s.waived) for s in result.stops),
        *(("success", c.name, c.waived) for c in result.success),
    ]:
        if waived:
            out.print(
                f"    [yellow]waived[/] {kind} check {name!r}: exception {waived.get('exception_id')} by "
                f"{waived.get('by')} until {waived.get('expires_at')} ({waived.get('reason')})",
                soft_wrap=True,
            )


def rehearsal(out: Console, result: RehearsalResult) -> None:
    colour = "green" if result.ok else "red"
    out.print(
        f"[bold]rehearsal of {result.step} ({result.ref})[/]: [{colour}]{result.outcome}[/] "
        f"[dim]spec {result.spec_hash[:12]}, {result.duration_us / 1e6:.2f} s, ledger seq {result.ledger_seq}[/]"
    )
    table = Table(title_justify="left", show_header=True)
    table.add_column("phase")
    table.add_column("check")
    table.add_column("expected", justify="right")
    table.add_column("actual", justify="right")
    table.add_column("", justify="center")
    for c in result.reverify:
        table.add_row("re-verify", c.name, c.expected, c.shown_actual, _check_mark(c.ok, c.waived))
    for s in result.stops:
        table.add_row("stop", s.name, "does not hold", s.detail, _check_mark(not s.held, s.waived))
    for c in result.success:
        table.add_row("success", c.name, c.expected, c.shown_actual, _check_mark(c.ok, c.waived))
    out.print(table)
    if result.footprint:
        fp = result.footprint
        deltas = ", ".join(f"{t} +{d['inserted']}/~{d['updated']}/-{d['deleted']}" for t, d in fp.row_deltas.items())
        out.print(f"footprint: new tables {', '.join(fp.new_tables) or 'none'}; rows {deltas or 'unchanged'}")
    if result.entry:
        same = result.entry.get("hash") == result.exit.get("hash")
        out.print(
            f"fingerprint entry {result.entry['hash'][:16]}… exit {result.exit.get('hash', '-')[:16]}… "
            f"{'[green]entry == exit[/]' if same else '[red]entry != exit[/]'}"
        )
    if result.residue:
        out.print(f"[yellow]known residue[/] (sequences advance outside transactions): {', '.join(result.residue)}")
    for d in result.differences[:20]:
        out.print(f"  [red]differs:[/] {d}")
    for path in result.evidence:
        out.print(f"[dim]evidence: {path}[/]")
    if result.ok:
        out.print(f"[green]{result.message}[/]")


def rehearsal_details(out: Console, details: Any) -> None:
    from gcos.results import RehearsalResult

    if isinstance(details, RehearsalResult):
        rehearsal(out, details)


# --------------------------------------------------------------------------- approvals, status, commit, rollback


def receipt(out: Console, value: Any) -> None:
    fields = jsonable(value)
    headline = ", ".join(f"{k} {v}" for k, v in fields.items() if v not in (None, "", []))
    out.print(f"[green]recorded[/]: {headline}", soft_wrap=True)


def _gate_mark(g: Any) -> str:
    return MARK[g.allow if g.known else None]


def status(out: Console, report: commands.StatusReport) -> None:
    if not report.adopted:
        out.print(
            "[yellow]schema public is not adopted[/]: the kernel measures, rehearses and commits nothing here; "
            "an admin runs `gcos adopt public` first.",
            soft_wrap=True,
        )
    for s in report.steps:
        out.print(
            f"[bold]{s.ref}[/] [cyan]{s.id}[/] {s.title}: [magenta]{s.state}[/] [dim]({s.detail})[/]", soft_wrap=True
        )
        for g in s.decision.gates:
            remedy = f" — {g.remedy}" if (g.remedy and not g.allow) else ""
            out.print(f"    {_gate_mark(g)} {g.number} {g.title}: [dim]{g.reason}{remedy}[/]", soft_wrap=True)


def applied(out: Console, result: CommitResult | BatchedResult) -> None:
    from gcos.results import CommitResult

    colour = "green" if result.ok else "red"
    out.print(f"[{colour}]{result.message}[/]", soft_wrap=True)
    if result.decision:
        for g in result.decision.gates:
            out.print(f"    {_gate_mark(g)} {g.number} {g.title}: [dim]{g.reason}[/]", soft_wrap=True)
    _waived_lines(out, result)
    if isinstance(result, CommitResult) and result.fingerprint_after:
        out.print(
            f"[dim]fingerprint before {result.fingerprint_before.get('hash', '-')[:16]}… after "
            f"{result.fingerprint_after.get('hash', '-')[:16]}…[/]"
        )
    if result.evidence_missing:
        out.print(f"[yellow]{result.evidence_missing}[/]", soft_wrap=True)


def applied_details(err: Console, details: Any) -> None:
    """The gates of a refused commit or rollback, as the error's details carry them (JSON-shaped)."""
    decision = details.get("decision") if isinstance(details, dict) else None
    for g in (decision or {}).get("gates", []):
        mark = MARK[g["allow"] if g["known"] else None]
        err.print(f"    {mark} {g['number']} {g['gate']}: {g['reason']}", soft_wrap=True)


# --------------------------------------------------------------------------- drift, report, ledger


def drift(out: Console, result: drift_mod.DriftResult) -> None:
    if result.baseline_seq is None:
        out.print("nothing committed yet: there is no recorded fingerprint to drift from")
    elif result.ok:
        out.print(
            f"[green]no drift[/]: the live world matches the fingerprint recorded after ledger seq "
            f"{result.baseline_seq} ({result.baseline_step})"
        )
    for d in result.differences[:50]:
        out.print(f"  [red]drift:[/] {d}", soft_wrap=True)


def drift_details(out: Console, details: Any) -> None:
    from gcos.drift import DriftResult

    if isinstance(details, DriftResult):
        drift(out, details)


def report(out: Console, r: evidence.ReportResult) -> None:
    out.print(
        f"[green]{len(r.files)} file(s) written[/] to {r.out_dir} ({r.format}; ledger head seq "
        f"{r.ledger_head_seq}): " + ", ".join(str(f.name) for f in r.files[:6]) + (" …" if len(r.files) > 6 else "")
    )


def ledger_report(out: Console, report: ledger.VerifyReport) -> None:
    if report.ok:
        anchored = f", consistent with the anchor at seq {report.anchor_seq}" if report.anchor_seq else ""
        head = f"head seq {report.head_seq} {report.head_hash[:16]}…" if report.head_hash else "empty"
        out.print(f"[green]ledger intact[/]: {report.records} record(s) re-hashed from genesis, {head}{anchored}")
        if report.anchor_signed:
            out.print("[green]kept anchor signed[/]: its signature verifies against the allowed signers")
        if report.pack_files is not None:
            out.print(f"[green]pack rebuilt[/]: {report.pack_files} file(s), each identical to what the chain gives")
        if report.pack_signed_by:
            out.print(f"[green]pack signed[/] by {report.pack_signed_by} (namespace gcos-pack)")
        if not report.anchor_seq:
            out.print(
                "[dim]without an anchor a truncated tail or a full rewrite cannot be detected: "
                "keep one with gcos ledger anchor --out FILE[/]"
            )
    else:
        out.print(f"[red]first bad record: seq {report.first_bad_seq}[/]: {report.reason}")


def ledger_report_details(out: Console, details: Any) -> None:
    from gcos.ledger import VerifyReport

    if isinstance(details, VerifyReport):
        ledger_report(out, details)


# --------------------------------------------------------------------------- install, adopt, principals, demo


def installed(out: Console, result: install.InstallResult) -> None:
    if result.applied:
        before = result.version_before if result.version_before is not None else "none"
        out.print(
            f"[green]gcos schema installed[/]: version {before} -> {result.version_after} ({', '.join(result.applied)})"
        )
    else:
        out.print(f"gcos schema already at version {result.version_after}: nothing to do")
    for sentence in (*(f"restored: {r}" for r in result.restored), *result.missing):  # gcos/managed.py
        out.print(f"[yellow]{sentence}[/]" if not sentence.startswith("restored") else sentence)


def _privilege_lines(privileges: tuple[adopt.Privilege, ...], limit: int = 12) -> list[str]:
    """Privileges grouped per grantee and object: 'op: INSERT, UPDATE on table app.t'."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for p in privileges:
        where = f"{p.type} {p.object}"
        grouped.setdefault((p.grantee, where), []).append(p.privilege + (" WITH GRANT OPTION" if p.grantable else ""))
    lines = [f"{grantee}: {', '.join(privs)} on {where}" for (grantee, where), privs in grouped.items()]
    return lines[:limit] + ([f"… and {len(lines) - limit} more (--json lists them all)"] if len(lines) > limit else [])


def adopted(out: Console, result: adopt.AdoptResult) -> None:
    from gcos.adopt import Status

    for s in result.schemas:
        if s.status is Status.ALREADY_ADOPTED:
            out.print(f"schema {s.schema} is already adopted (ledger seq {s.ledger_seq}): nothing to do")
            for v in s.violations:
                out.print(f"  [red]no longer holds:[/] {v}", soft_wrap=True)
            continue
        _owners_and_privileges(out, s)
        _defaults_and_leftovers(out, s)


def _owners_and_privileges(out: Console, s: adopt.SchemaChange) -> None:
    """Who owned the objects before, and the privileges revoked (adopt) or re-granted (release)."""
    from gcos.adopt import KERNEL_ROLE, Status

    before: dict[str, int] = {}
    for o in s.owners:
        name = o.previous_owner if s.status is Status.ADOPTED else o.owner
        before[name] = before.get(name, 0) + 1
    owners = ", ".join(f"{name} {count}" for name, count in sorted(before.items()))
    if s.status is Status.ADOPTED:
        out.print(
            f"[green]adopted schema {s.schema}[/] (ledger seq {s.ledger_seq}): {len(s.owners)} object(s) now "
            f"owned by {KERNEL_ROLE} (were: {owners or 'none'})"
        )
        out.print(f"  revoked {len(s.revoked)} privilege(s)")
    else:
        out.print(
            f"[green]released schema {s.schema}[/] (ledger seq {s.ledger_seq}): {len(s.owners)} object(s) "
            f"handed back ({owners or 'none'})"
        )
        out.print(f"  re-granted {len(s.granted)} privilege(s), took back {len(s.revoked)} the adoption gave")
    for line in _privilege_lines(s.granted if s.status is Status.RELEASED else s.revoked):
        out.print(f"    {line}", soft_wrap=True)


def _defaults_and_leftovers(out: Console, s: adopt.SchemaChange) -> None:
    """EXECUTE revoked, default privileges, extension members left alone, roles that could become the kernel."""
    from gcos.adopt import Status

    if s.revoked_execute:
        routines = sorted({f"{p.object} from {p.grantee}" for p in s.revoked_execute})
        out.print(f"  revoked EXECUTE of SECURITY DEFINER routines: {', '.join(routines)}", soft_wrap=True)
    defaults: dict[tuple[str, str], list[str]] = {}
    for d in s.default_privileges:
        defaults.setdefault((d.on.lower(), d.privilege), []).append(d.grantee)
    verb = "readable" if s.status is Status.ADOPTED else "no longer readable by default"
    for (on, privilege), grantees in defaults.items():
        line = f"  {on} the kernel creates later are {verb}: {privilege} to {', '.join(grantees)}"
        out.print(line, soft_wrap=True)
    if s.extension_members:
        out.print(f"  left alone (extension members): {', '.join(s.extension_members)}", soft_wrap=True)
    if s.kernel_admins:
        out.print(f"  [yellow]could make themselves gcos_kernel:[/] {', '.join(s.kernel_admins)}", soft_wrap=True)


def principal(out: Console, p: Principal | None) -> None:
    if p is None:
        out.print("this database role is not a gcos principal; ask a gcos admin to run: gcos principals add ROLE ...")
        return
    out.print(
        f"[bold]{p.name}[/] — role {p.role} (oid {p.role_oid}), person {p.person}, {p.kind}, "
        f"roles: {', '.join(p.roles) or 'none'}"
    )


def principals(out: Console, rows: list[Principal]) -> None:
    from gcos.principals import OVERLAP_TEXT

    table = Table(title="gcos principals", title_justify="left")
    for column in ("role", "name", "person", "kind", "gcos roles", "separation of duties"):
        table.add_column(column)
    for p in rows:
        flags = "; ".join(OVERLAP_TEXT.get(code, code) for code in p.overlaps)
        if p.conflicts:
            flags = f"[red]may not approve or decide:[/red] {flags}"
        table.add_row(p.role, p.name, p.person, p.kind, ", ".join(p.roles), flags or "[green]clear[/green]")
    out.print(table)


def demo(out: Console, result: commands.DemoResult) -> None:
    w = result.world
    verb = "built" if w.built else "already built (left as it is)"
    out.print(f"[bold]reference world of seed 002 {verb}[/] on {w.target}")
    out.print("  " + ", ".join(f"{k} {v:,}" for k, v in sorted(w.counts.items())))
    if result.verify:
        verify(out, result.verify)
        plan(out, result.plan)
    table = Table(title="the gated story of seed 002", title_justify="left")
    for column in ("step", "action", "", "what happened"):
        table.add_column(column)
    marks = {"ok": "[green]✔[/]", "done": "[green]✔[/]", "refused": "[yellow]✘[/]", "failed": "[red]✘[/]"}
    for e in result.story.events:
        table.add_row(e.step, e.action, marks.get(e.outcome, e.outcome), e.detail)
    out.print(table)
    story = result.story
    out.print(
        f"[bold green]{len(story.committed)} steps committed[/], ledger of {story.ledger_records} records "
        f"verified" + (f"; reports in {story.report_dir}" if story.report_dir else "")
    )
