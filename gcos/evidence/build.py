"""``gcos report``: read a snapshot, build the view model, write md, html or the JSON evidence pack."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from gcos import record_evidence, state
from gcos.errors import SpecError
from gcos.evidence.common import HTML_FILE, INDEX_MD, write_atomic
from gcos.evidence.graph import STATE_COLOURS, graph_layout
from gcos.evidence.junit import JUNIT_FILE, junit_xml
from gcos.evidence.pack import write_pack
from gcos.evidence.render import render
from gcos.evidence.snapshot import cross_check_approvals, read_snapshot
from gcos.evidence.view import report_context
from gcos.spec import Project

FORMATS = ("md", "html", "json", "junit", "records")


@dataclass(frozen=True)
class ReportResult:
    out_dir: Path
    files: tuple[Path, ...]  # every file written, the manifest (json) last
    format: str
    steps: tuple[str, ...]  # the steps reported, in build order
    ledger_head_seq: int | None


def build_report(
    conn: psycopg.Connection[Any], project: Project, *, step_id: str | None, fmt: str, out_dir: Path
) -> ReportResult:
    """Write the report of one step (`step_id`, any form ``Project.step`` accepts) or of every step to
    `out_dir`, as ``md``, ``html``, ``json`` (an evidence pack), ``junit`` (junit.xml, for CI) or ``records``
    (the commit, rollback, refusal, stop and drift evidence files, as the commands write them beside the
    rehearsals': ``--out rehearsals`` writes again one a command could not write). `conn` must be
    idle; it is read in one REPEATABLE READ, READ ONLY transaction. LedgerBroken (exit 7) if the ledger or the
    approvals disagree."""
    if fmt not in FORMATS:
        raise SpecError(f"Report format {fmt!r} is not one of {', '.join(FORMATS)}.")
    chosen = [project.step(step_id)] if step_id else list(project.steps.values())
    snapshot = read_snapshot(conn)
    cross_check_approvals(snapshot)
    states = state.read_states(conn, project, snapshot.entries)
    context = report_context(project, snapshot, states, chosen, chosen[0].id if step_id else None)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise SpecError(f"{out_dir} is not a directory; choose a directory for --out.")
    try:
        if fmt == "md":
            files = _write_md(out_dir, context)
        elif fmt == "html":
            context["graph"] = graph_layout(project, {k: v.state for k, v in states.items()}, [s.id for s in chosen])
            context["colours"] = STATE_COLOURS
            files = (write_atomic(out_dir / HTML_FILE, render("html", "report.html.j2", **context)),)
        elif fmt == "junit":
            files = (write_atomic(out_dir / JUNIT_FILE, junit_xml(context)),)
        elif fmt == "records":
            files = record_evidence.regenerate(snapshot.entries, out_dir, {s.id for s in chosen} if step_id else None)
        else:
            files = write_pack(out_dir, chosen[0].id if step_id else None, snapshot)
    except OSError as exc:
        raise SpecError(f"Cannot write the report to {out_dir} ({exc.strerror}); choose a writable directory.") from exc
    last = snapshot.rows[-1] if snapshot.rows else None
    return ReportResult(out_dir, files, fmt, tuple(s.id for s in chosen), last.seq if last else None)


def _write_md(out_dir: Path, context: Mapping[str, Any]) -> tuple[Path, ...]:
    files = [
        write_atomic(out_dir / f"{step['id']}.md", render("md", "step.md.j2", step=step, **context))
        for step in context["steps"]
    ]
    files.append(write_atomic(out_dir / INDEX_MD, render("md", "index.md.j2", links=True, **context)))
    return tuple(files)
