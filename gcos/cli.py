"""The gcos command line: parse, call ONE function of gcos.commands, render its result, map errors to exits.

This is the only module that prints or exits. Errors become the contract's exit codes here and only here.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import psycopg
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.tree import Tree

from gcos import __version__, apply, batched, commands, ledger, rehearsal
from gcos import adopt as adopt_mod
from gcos import drift as drift_mod
from gcos import install as install_mod
from gcos.embedded import ServerStatus
from gcos.errors import ExitCode, GcosError, from_database
from gcos.principals import OVERLAP_TEXT, Principal
from gcos.target import Target, resolve_target

T = TypeVar("T")

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

app = typer.Typer(
    help="gcos: plan, rehearse, approve and commit PostgreSQL build steps, with evidence an auditor can check.\n\n"
    "Start with: gcos demo   (builds seed 002's reference world on the embedded PostgreSQL)",
    no_args_is_help=True,
    add_completion=False,
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

DsnOpt = Annotated[
    str | None,
    typer.Option(
        "--dsn",
        help="Target database (libpq URI or key=value). Default: $GCOS_DSN, then $DATABASE_URL, "
        "then the embedded server under .gcos/.",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout instead of text.")]
ProjectOpt = Annotated[
    Path,
    typer.Option(
        "--project",
        "-C",
        help="The gcos project directory (holds steps/ and plans/).",
        file_okay=False,
        show_default="current directory",
    ),
]
StepArg = Annotated[str, typer.Argument(help="A step id (SB-12, case-insensitive) or its position (step-1).")]


# --------------------------------------------------------------------------- plumbing


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


def _emit_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(jsonable(payload), indent=2, default=str) + "\n")


def _run(
    as_json: bool,
    action: Callable[[], T],
    render: Callable[[T], None],
    render_details: Callable[[Any], None] | None = None,
) -> None:
    """Call the core, render the result, and turn every failure into its documented exit code."""
    try:
        result = action()
    except GcosError as exc:
        _fail(exc, as_json, render_details)
    except psycopg.Error as exc:
        if os.environ.get("GCOS_DEBUG"):
            traceback.print_exc()
        internal = (
            f"internal error: {type(exc).__name__}: {exc}; rerun with GCOS_DEBUG=1 for the traceback and report it."
        )
        _fail(from_database(exc) or GcosError(internal + "."), as_json, None)
    except (KeyboardInterrupt, typer.Exit):
        raise
    except Exception as exc:
        if os.environ.get("GCOS_DEBUG"):
            traceback.print_exc()
        _fail(
            GcosError(
                f"internal error: {type(exc).__name__}: {exc}; rerun with GCOS_DEBUG=1 for the traceback and report it."
            ),
            as_json,
            None,
        )
    if as_json:
        _emit_json({"ok": True, "result": result})
    else:
        render(result)


def _fail(exc: GcosError, as_json: bool, render_details: Callable[[Any], None] | None) -> None:
    if as_json:
        _emit_json({"ok": False, "exit_code": int(exc.exit_code), "error": exc.message, "details": exc.details})
    else:
        if render_details and exc.details is not None:
            render_details(exc.details)
        err.print(f"[bold red]error:[/] {exc.message}", markup=True, highlight=False, soft_wrap=True)
    raise typer.Exit(int(exc.exit_code))


def _target(dsn: str | None) -> Target:
    return resolve_target(dsn)


def _project(project: Path | None) -> Path:
    return (project or Path.cwd()).resolve()


# --------------------------------------------------------------------------- db


def _render_server(status: ServerStatus) -> None:
    state = "[green]running[/]" if status.running else "[yellow]stopped[/]"
    out.print(f"embedded PostgreSQL {status.version or ''}: {state}")
    out.print(f"  data: {status.data_dir}")
    out.print(f"  log:  {status.log_file}")
    if status.running:
        out.print(f"  pid:  {status.pid}")
        out.print(f"  url:  {status.url}")


@db_app.command("up", epilog="Example: gcos db up")
def db_up(as_json: JsonOpt = False) -> None:
    """Start the embedded PostgreSQL under .gcos/ (creates it on first use; safe to run twice)."""
    _run(as_json, commands.db_up, _render_server)


@db_app.command("down", epilog="Example: gcos db down")
def db_down(as_json: JsonOpt = False) -> None:
    """Stop the embedded PostgreSQL (its data stays under .gcos/)."""
    _run(as_json, commands.db_down, _render_server)


@db_app.command("status", epilog="Example: gcos db status --json")
def db_status(as_json: JsonOpt = False) -> None:
    """Say whether the embedded PostgreSQL is running, and where its data and log are."""
    _run(as_json, commands.db_status, _render_server)


@db_app.command("url", epilog='Example: psql "$(gcos db url)"')
def db_url(as_json: JsonOpt = False) -> None:
    """Print the connection URL of the embedded server (starting it if needed); it holds no password."""
    _run(as_json, lambda: _target(None).display, lambda url: out.print(url, soft_wrap=True))


# --------------------------------------------------------------------------- plan / verify


_MARK = {True: "[green]✔[/]", False: "[red]✘[/]", None: "[yellow]?[/]"}


def _render_plan(report: commands.PlanReport, explain: bool = False) -> None:
    for p in report.plans:
        tree = Tree(f"[bold]plan {p.id}[/] — {p.title}  [dim]plan hash {p.plan_hash[:12]}[/]")
        for s in p.steps:
            node = tree.add(
                f"[bold]{s.ref}[/] [cyan]{s.id}[/] {s.title}  [magenta]{s.state}[/] "
                f"[dim]{s.mode}, spec {s.spec_hash[:12]}[/]"
            )
            if explain:
                for g in s.gates:
                    node.add(f"{_MARK[g.holds]} {g.name}: [dim]{g.reason}[/]")
            else:
                node.add("  ".join(f"{_MARK[g.holds]} {g.short}" for g in s.gates))
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


@app.command("plan", epilog="Example: gcos plan --explain")
def plan_cmd(
    project: ProjectOpt = Path("."),
    explain: Annotated[bool, typer.Option("--explain", help="Show every gate's reason and the global stops.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Validate every step spec and the plan DAG, then print the build order with each step's gates.

    Reads only the files under steps/ and plans/; it does not touch any database.
    """
    _run(as_json, lambda: commands.plan(_project(project)), lambda report: _render_plan(report, explain))


def _render_verify(result: commands.VerifyResult) -> None:
    table = Table(title=f"re-verify {result.step} ({result.ref}) on {result.target}", title_justify="left")
    table.add_column("check")
    table.add_column("expected", justify="right")
    table.add_column("actual", justify="right")
    table.add_column("", justify="center")
    for c in result.checks:
        table.add_row(c.name, c.expected, c.shown_actual, _MARK[c.ok])
    out.print(table)
    if result.ok:
        out.print(
            f"[green]all {len(result.checks)} re-verify checks of {result.step} hold[/] "
            f"[dim](spec {result.spec_hash[:12]})[/]"
        )


@app.command("verify", epilog="Example: gcos verify step-1    (or: gcos verify SB-12 --json)")
def verify_cmd(step: StepArg, dsn: DsnOpt = None, project: ProjectOpt = Path("."), as_json: JsonOpt = False) -> None:
    """Run a step's live re-verify checks in a READ ONLY transaction and show expected vs actual.

    Exit 6 if any check does not hold; exit 2 if a check is not one row of one column.
    """
    _run(
        as_json,
        lambda: commands.verify(_target(dsn), _project(project), step),
        _render_verify,
        render_details=lambda d: _render_verify(d) if isinstance(d, commands.VerifyResult) else None,
    )


# --------------------------------------------------------------------------- rehearse


def _render_rehearsal(result: rehearsal.RehearsalResult) -> None:
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
        table.add_row("re-verify", c.name, c.expected, c.shown_actual, _MARK[c.ok])
    for s in result.stops:
        table.add_row("stop", s.name, "does not hold", s.detail, _MARK[not s.held])
    for c in result.success:
        table.add_row("success", c.name, c.expected, c.shown_actual, _MARK[c.ok])
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


@app.command("rehearse", epilog="Example: gcos rehearse step-1     (or: gcos rehearse SB-12 --json)")
def rehearse_cmd(step: StepArg, dsn: DsnOpt = None, project: ProjectOpt = Path("."), as_json: JsonOpt = False) -> None:
    """Rehearse a step inside BEGIN..ROLLBACK and prove the database at exit equals the one at entry.

    Refuses SQL the spec does not allow before anything runs (exit 2); re-verify mismatch (6); a stop
    condition or failed success evidence (4); entry != exit (5); a lock not granted in time (8).
    Every rehearsal is a ledger record, with evidence files under rehearsals/STEP/.
    """
    _run(
        as_json,
        lambda: commands.rehearse(_target(dsn), _project(project), step),
        _render_rehearsal,
        render_details=lambda d: _render_rehearsal(d) if isinstance(d, rehearsal.RehearsalResult) else None,
    )


# --------------------------------------------------------------------------- approvals, status, commit, rollback

VerdictOpt = Annotated[
    str,
    typer.Option("--verdict", help="approve, reject, approve_with_conditions or defer (only approve opens a gate)."),
]
ExpiresOpt = Annotated[
    str, typer.Option("--expires-in", help="Mandatory expiry from now by the database clock: 24h, 30m, 7d, 1h30m.")
]
NoteOpt = Annotated[str | None, typer.Option("--note", help="Free text kept with the record.")]


def _render_receipt(receipt: Any) -> None:
    fields = jsonable(receipt)
    headline = ", ".join(f"{k} {v}" for k, v in fields.items() if v not in (None, "", []))
    out.print(f"[green]recorded[/]: {headline}", soft_wrap=True)


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
    _run(
        as_json,
        lambda: commands.approve(
            _target(dsn), _project(project), step, verdict=verdict, expires_in=expires_in, note=note, rollback=rollback
        ),
        _render_receipt,
    )


@app.command("decide", epilog="Example: gcos decide A-4 --verdict approve --expires-in 7d")
def decide_cmd(
    decision: Annotated[str, typer.Argument(help="The decision's name, e.g. A-4 or C-7.1.")],
    verdict: VerdictOpt,
    expires_in: ExpiresOpt,
    note: NoteOpt = None,
    dsn: DsnOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Record YOUR verdict on a named decision a step requires (silence is never approval)."""
    _run(
        as_json,
        lambda: commands.decide(_target(dsn), decision, verdict=verdict, expires_in=expires_in, note=note),
        _render_receipt,
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
    _run(as_json, lambda: commands.revoke(_target(dsn), record_id, reason=reason, decision=decision), _render_receipt)


def _gate_mark(g: Any) -> str:
    return _MARK[g.allow if g.known else None]


def _render_status(report: commands.StatusReport) -> None:
    for s in report.steps:
        out.print(
            f"[bold]{s.ref}[/] [cyan]{s.id}[/] {s.title}: [magenta]{s.state}[/] [dim]({s.detail})[/]", soft_wrap=True
        )
        for g in s.decision.gates:
            remedy = f" — {g.remedy}" if (g.remedy and not g.allow) else ""
            out.print(f"    {_gate_mark(g)} {g.number} {g.title}: [dim]{g.reason}{remedy}[/]", soft_wrap=True)


@app.command("status", epilog="Example: gcos status SB-12     (or: gcos status --json for every step)")
def status_cmd(
    step: Annotated[str | None, typer.Argument(help="A step id or step-N; all steps if omitted.")] = None,
    dsn: DsnOpt = None,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Each commit gate of each step, and why it holds or not, without acting. States come from the ledger."""
    _run(as_json, lambda: commands.status(_target(dsn), _project(project), step), _render_status)


def _render_apply(result: apply.ApplyResult | batched.BatchedResult) -> None:
    colour = "green" if result.ok else "red"
    out.print(f"[{colour}]{result.message}[/]", soft_wrap=True)
    if result.decision:
        for g in result.decision.gates:
            out.print(f"    {_gate_mark(g)} {g.number} {g.title}: [dim]{g.reason}[/]", soft_wrap=True)
    if isinstance(result, apply.ApplyResult) and result.fingerprint_after:
        out.print(
            f"[dim]fingerprint before {result.fingerprint_before.get('hash', '-')[:16]}… after "
            f"{result.fingerprint_after.get('hash', '-')[:16]}…[/]"
        )


def _render_apply_details(details: Any) -> None:
    decision = details.get("decision") if isinstance(details, dict) else None
    for g in (decision or {}).get("gates", []):
        mark = _MARK[g["allow"] if g["known"] else None]
        err.print(f"    {mark} {g['number']} {g['gate']}: {g['reason']}", soft_wrap=True)


BreakGlassOpt = Annotated[
    bool,
    typer.Option(
        "--break-glass",
        help="Let a superuser session commit where the kernel runs (schema public adopted); every record of "
        "the run says so. Named human operators never need it.",
    ),
]


@app.command("commit", epilog="Example: gcos commit SB-12")
def commit_cmd(
    step: StepArg,
    dsn: DsnOpt = None,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
    break_glass: BreakGlassOpt = False,
) -> None:
    """Apply a step atomically with its ledger record — only if every gate holds inside the transaction.

    Refused (exit 3) without a passing rehearsal on this schema, enough unexpired approvals by other named
    humans, the required decisions, committed dependencies; stop or success failure (4); re-verify (6).
    Where schema public is adopted the kernel commits inside the database, as a named human operator.
    A batched step (mode: batched) runs in resumable keyset batches, each its own transaction, with a
    progress bar; if it is killed, the same command resumes it after the last committed batch.
    """

    def action() -> apply.ApplyResult | batched.BatchedResult:
        target, root = _target(dsn), _project(project)
        if as_json:
            return commands.commit(target, root, step, break_glass=break_glass)
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:,}/{task.total:,} rows"),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=err, transient=False) as bar:
            task: list[TaskID] = []

            def progress(p: batched.BatchProgress) -> None:
                if not task:
                    task.append(bar.add_task(f"{step} batches", total=p.total_rows, rate=""))
                bar.update(task[0], completed=p.done_rows, total=p.total_rows, rate=f"{p.rate_rows_s:,} rows/s")

            return commands.commit(target, root, step, progress=progress, break_glass=break_glass)

    _run(as_json, action, _render_apply, render_details=_render_apply_details)


@app.command("rollback", epilog="Example: gcos rollback SB-11   (after: gcos approve SB-11 --rollback ...)")
def rollback_cmd(
    step: StepArg,
    dsn: DsnOpt = None,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
    break_glass: BreakGlassOpt = False,
) -> None:
    """Apply a committed step's rollback evidence and prove the world is back at its pre-commit fingerprint.

    Needs its own approval (gcos approve STEP --rollback); refused while a dependent step is committed.
    """
    _run(
        as_json,
        lambda: commands.rollback(_target(dsn), _project(project), step, break_glass=break_glass),
        _render_apply,
        render_details=_render_apply_details,
    )


# --------------------------------------------------------------------------- drift


def _render_drift(result: drift_mod.DriftResult) -> None:
    if result.baseline_seq is None:
        out.print("nothing committed yet: there is no recorded fingerprint to drift from")
    elif result.ok:
        out.print(
            f"[green]no drift[/]: the live world matches the fingerprint recorded after ledger seq "
            f"{result.baseline_seq} ({result.baseline_step})"
        )
    for d in result.differences[:50]:
        out.print(f"  [red]drift:[/] {d}", soft_wrap=True)


@app.command("drift", epilog="Example: gcos drift --json")
def drift_cmd(dsn: DsnOpt = None, as_json: JsonOpt = False) -> None:
    """Compare the live world with the fingerprint recorded after the last commit or rollback.

    Any difference is appended to the ledger as a drift record and shown as a diff (exit 6).
    """
    _run(
        as_json,
        lambda: commands.drift(_target(dsn)),
        _render_drift,
        render_details=lambda d: _render_drift(d) if isinstance(d, drift_mod.DriftResult) else None,
    )


# --------------------------------------------------------------------------- report


@app.command(
    "report", epilog="Example: gcos report --format html --out evidence/   (or: gcos report SB-12 --format md)"
)
def report_cmd(
    step: Annotated[str | None, typer.Argument(help="One step (id or step-N); the whole plan if omitted.")] = None,
    fmt: Annotated[
        str,
        typer.Option("--format", help="md, html (one self-contained file) or json (an evidence pack with a manifest)."),
    ] = "html",
    out_dir: Annotated[Path, typer.Option("--out", help="Directory to write into.", file_okay=False)] = Path(
        "gcos-report"
    ),
    dsn: DsnOpt = None,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Write evidence reports an auditor can check: specs and hashes, rehearsals, approvals, policy decisions,
    ledger records and how to verify them. A json pack verifies offline with gcos ledger verify --pack DIR."""
    _run(
        as_json,
        lambda: commands.report(_target(dsn), _project(project), step, fmt, out_dir),
        lambda r: out.print(
            f"[green]{len(r.files)} file(s) written[/] to {r.out_dir} ({r.format}; ledger head seq "
            f"{r.ledger_head_seq}): " + ", ".join(str(f.name) for f in r.files[:6]) + (" …" if len(r.files) > 6 else "")
        ),
    )


# --------------------------------------------------------------------------- demo


class _Bar:
    """One rich progress bar fed by the core's progress(label, done, total) callback."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: TaskID | None = None

    def __call__(self, label: str, done: int, total: int) -> None:
        if self.task is None:
            self.task = self.progress.add_task(label, total=total)
        self.progress.update(self.task, description=label, completed=done, total=total)


@app.command("demo", epilog="Example: gcos demo      (or: gcos demo --dsn postgresql://postgres@localhost/scratch)")
def demo_cmd(
    rows: Annotated[
        int,
        typer.Option(
            "--rows",
            min=1,
            help="birth_registry rows to build; seed 002's step 3 re-verifies at least "
            "1,000,000, so a smaller world stops there (exit 6).",
        ),
    ] = 1_043_000,
    dsn: DsnOpt = None,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Build seed 002's reference world (on the embedded PostgreSQL unless --dsn says otherwise) and tell the
    whole gated story on it: install gcos, create demo principals as real database roles, rehearse every step,
    show refusals, record decisions and approvals as the approvers' own connections, commit all nine steps,
    verify the ledger and write the reports (gcos-report/). Re-running it says what is already done."""

    def action() -> commands.DemoResult:
        target = _target(dsn)
        if as_json:
            return commands.demo(target, _project(project), rows)
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:,}/{task.total:,}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=err, transient=False) as progress:
            return commands.demo(target, _project(project), rows, _Bar(progress))

    def render(result: commands.DemoResult) -> None:
        w = result.world
        verb = "built" if w.built else "already built (left as it is)"
        out.print(f"[bold]reference world of seed 002 {verb}[/] on {w.target}")
        out.print("  " + ", ".join(f"{k} {v:,}" for k, v in sorted(w.counts.items())))
        if result.verify:
            _render_verify(result.verify)
            _render_plan(result.plan)
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

    _run(as_json, action, render)


# --------------------------------------------------------------------------- install / principals / ledger


def _render_install(result: install_mod.InstallResult) -> None:
    if result.applied:
        before = result.version_before if result.version_before is not None else "none"
        out.print(
            f"[green]gcos schema installed[/]: version {before} -> {result.version_after} ({', '.join(result.applied)})"
        )
    else:
        out.print(f"gcos schema already at version {result.version_after}: nothing to do")


@app.command("install", epilog="Example: gcos install --dsn postgresql://admin@db.example/prod")
def install_cmd(dsn: DsnOpt = None, as_json: JsonOpt = False) -> None:
    """Create the gcos schema, its roles, approvals table, principals and ledger (idempotent; upgrades in place).

    Run it as a superuser. Re-running it on an installed database changes nothing.
    """
    _run(as_json, lambda: commands.install(_target(dsn)), _render_install)


def _privilege_lines(privileges: tuple[adopt_mod.Privilege, ...], limit: int = 12) -> list[str]:
    """Privileges grouped per grantee and object: 'op: INSERT, UPDATE on table app.t'."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for p in privileges:
        where = f"{p.type} {p.object}"
        grouped.setdefault((p.grantee, where), []).append(p.privilege + (" WITH GRANT OPTION" if p.grantable else ""))
    lines = [f"{grantee}: {', '.join(privs)} on {where}" for (grantee, where), privs in grouped.items()]
    return lines[:limit] + ([f"… and {len(lines) - limit} more (--json lists them all)"] if len(lines) > limit else [])


def _render_adopt(result: adopt_mod.AdoptResult) -> None:
    for s in result.schemas:
        if s.status is adopt_mod.Status.ALREADY_ADOPTED:
            out.print(f"schema {s.schema} is already adopted (ledger seq {s.ledger_seq}): nothing to do")
            for v in s.violations:
                out.print(f"  [red]no longer holds:[/] {v}", soft_wrap=True)
            continue
        before: dict[str, int] = {}
        for o in s.owners:
            name = o.previous_owner if s.status is adopt_mod.Status.ADOPTED else o.owner
            before[name] = before.get(name, 0) + 1
        owners = ", ".join(f"{name} {count}" for name, count in sorted(before.items()))
        if s.status is adopt_mod.Status.ADOPTED:
            out.print(
                f"[green]adopted schema {s.schema}[/] (ledger seq {s.ledger_seq}): {len(s.owners)} object(s) now "
                f"owned by {adopt_mod.KERNEL_ROLE} (were: {owners or 'none'})"
            )
            out.print(f"  revoked {len(s.revoked)} privilege(s)")
        else:
            out.print(
                f"[green]released schema {s.schema}[/] (ledger seq {s.ledger_seq}): {len(s.owners)} object(s) "
                f"handed back ({owners or 'none'})"
            )
            out.print(f"  re-granted {len(s.granted)} privilege(s), took back {len(s.revoked)} the adoption gave")
        for line in _privilege_lines(s.granted if s.status is adopt_mod.Status.RELEASED else s.revoked):
            out.print(f"    {line}", soft_wrap=True)
        if s.revoked_execute:
            routines = sorted({f"{p.object} from {p.grantee}" for p in s.revoked_execute})
            out.print(f"  revoked EXECUTE of SECURITY DEFINER routines: {', '.join(routines)}", soft_wrap=True)
        defaults: dict[tuple[str, str], list[str]] = {}
        for d in s.default_privileges:
            defaults.setdefault((d.on.lower(), d.privilege), []).append(d.grantee)
        verb = "readable" if s.status is adopt_mod.Status.ADOPTED else "no longer readable by default"
        for (on, privilege), grantees in defaults.items():
            line = f"  {on} the kernel creates later are {verb}: {privilege} to {', '.join(grantees)}"
            out.print(line, soft_wrap=True)
        if s.extension_members:
            out.print(f"  left alone (extension members): {', '.join(s.extension_members)}", soft_wrap=True)
        if s.kernel_admins:
            out.print(f"  [yellow]could make themselves gcos_kernel:[/] {', '.join(s.kernel_admins)}", soft_wrap=True)


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
    if release:
        _run(as_json, lambda: commands.release(_target(dsn), schemas), _render_adopt)
    else:
        _run(as_json, lambda: commands.adopt(_target(dsn), schemas), _render_adopt)


def _render_principal(p: Principal | None) -> None:
    if p is None:
        out.print("this database role is not a gcos principal; ask a gcos admin to run: gcos principals add ROLE ...")
        return
    out.print(f"[bold]{p.name}[/] — role {p.role} (oid {p.role_oid}), {p.kind}, roles: {', '.join(p.roles) or 'none'}")


def _render_principals(rows: list[Principal]) -> None:
    table = Table(title="gcos principals", title_justify="left")
    for column in ("role", "name", "kind", "gcos roles", "separation of duties"):
        table.add_column(column)
    for p in rows:
        flags = "; ".join(OVERLAP_TEXT.get(code, code) for code in p.overlaps)
        if p.conflicts:
            flags = f"[red]may not approve or decide:[/red] {flags}"
        table.add_row(p.role, p.name, p.kind, ", ".join(p.roles), flags or "[green]clear[/green]")
    out.print(table)


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
            "--roles", help="gcos roles: sovereign, council, operator, auditor, admin (comma-separated or repeated)."
        ),
    ],
    dsn: DsnOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Map a database role to a named principal (admin only). Identity is always the connection's role."""
    wanted = [r.strip() for item in roles for r in item.split(",") if r.strip()]
    _run(
        as_json,
        lambda: commands.principals_add(_target(dsn), role, name=name, kind=kind, roles=wanted),
        _render_principal,
    )


@principals_app.command("list", epilog="Example: gcos principals list --json")
def principals_list(dsn: DsnOpt = None, as_json: JsonOpt = False) -> None:
    """List every principal with its database role, kind and gcos roles."""
    _run(as_json, lambda: commands.principals_list(_target(dsn)), _render_principals)


@principals_app.command("whoami", epilog='Example: gcos principals whoami --dsn "postgresql://alice@db/prod"')
def principals_whoami(dsn: DsnOpt = None, as_json: JsonOpt = False) -> None:
    """Show the principal the database authenticates this connection as (its session_user)."""
    _run(as_json, lambda: commands.whoami(_target(dsn)), _render_principal)


def _render_ledger_report(report: ledger.VerifyReport) -> None:
    if report.ok:
        anchored = f", consistent with the anchor at seq {report.anchor_seq}" if report.anchor_seq else ""
        head = f"head seq {report.head_seq} {report.head_hash[:16]}…" if report.head_hash else "empty"
        out.print(f"[green]ledger intact[/]: {report.records} record(s) re-hashed from genesis, {head}{anchored}")
        if not report.anchor_seq:
            out.print(
                "[dim]without an anchor a truncated tail or a full rewrite cannot be detected: "
                "keep one with gcos ledger anchor --out FILE[/]"
            )
    else:
        out.print(f"[red]first bad record: seq {report.first_bad_seq}[/]: {report.reason}")


@ledger_app.command("verify", epilog="Example: gcos ledger verify --anchor anchors/2026-11-21.json")
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
            "database: file hashes, the hash chain, the anchor.",
            file_okay=False,
        ),
    ] = None,
    dsn: DsnOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Recompute every hash of the ledger from genesis and name the first bad record (exit 7)."""

    def action() -> ledger.VerifyReport:
        if pack is not None:
            return commands.verify_pack(pack, anchor)
        return commands.ledger_verify(_target(dsn), anchor)

    _run(
        as_json,
        action,
        _render_ledger_report,
        render_details=lambda d: _render_ledger_report(d) if isinstance(d, ledger.VerifyReport) else None,
    )


@ledger_app.command("anchor", epilog="Example: gcos ledger anchor --out anchors/$(date +%F).json")
def ledger_anchor(
    out_file: Annotated[
        Path,
        typer.Option("--out", help="Where to write the anchor (JSON); keep it outside the database.", dir_okay=False),
    ],
    dsn: DsnOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Verify the ledger, then export its head (seq, hash, time, database identity) to a file."""
    _run(
        as_json,
        lambda: commands.ledger_anchor(_target(dsn), out_file),
        lambda a: out.print(f"anchor written to {out_file}: seq {a.seq}, hash {a.hash}, at {a.recorded_at}"),
    )


@app.callback(invoke_without_command=True)
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the gcos version and exit.")] = False,
) -> None:
    if version:
        out.print(f"gcos {__version__}")
        raise typer.Exit(0)


def main() -> None:
    """Console-script entry point: usage errors exit 2 (click's own code), everything else as mapped above."""
    try:
        app()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (ExitCode.INTERNAL if exc.code else 0)
        sys.exit(code)
