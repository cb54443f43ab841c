"""Evidence files of the records that change or judge the world after a rehearsal: commits, rollbacks, their
refusals and stops, and drift. They sit beside the rehearsals' (gcos/rehearsal_evidence.py), in
``rehearsals/<STEP>/<time>-seq<N>-<kind>.json`` and ``.md``, so a step's folder tells its whole story in order.

The JSON holds the whole ledger record (canonical text included, whose sha256 is the record's hash), so each
file can be checked against the chain by hand; the Markdown is what a reader looks at first: outcome, what it
rested on (causation: rehearsal, approvals, policy decision), the gates, fingerprints, footprint, differences.

``recorded`` is the hook the commands (and ``gcos demo``) wrap around commit, rollback or drift, successful or
refused: it writes the files of every such record the action appended (seq above the head read before it), on
ONE connection held idle (autocommit, no snapshot) across the action. The files are evidence, not the record:
the ledger is. So a file that cannot be written after a commit or rollback that applied does not turn it into
a failure (the command exits 0); the result carries one sentence naming the file and the command that writes
it again from the ledger (``gcos report STEP --format records``, ``regenerate`` below). A refusal keeps its own
error and exit code, with that sentence added."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, fields, replace
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import jinja2
import psycopg

from gcos import ledger
from gcos.domain import Kind
from gcos.errors import GcosError
from gcos.target import SessionSettings

FORMAT_VERSION = 1
KINDS = (Kind.COMMIT, Kind.ROLLBACK, Kind.COMMIT_REFUSED, Kind.ROLLBACK_REFUSED, Kind.STOP, Kind.DRIFT)
NO_STEP = "_world"  # the folder of a record that names no step
R = TypeVar("R")


def file_stem(entry: ledger.LedgerEntry) -> str:
    """``<time>-seq<N>-<kind>``: sorts with the rehearsals' ``<time>-seq<N>`` files of the same folder."""
    stamp = str(entry.record.get("recorded_at", "")).replace(":", "").replace("-", "")
    return f"{stamp}-seq{entry.seq}-{entry.kind}"


def document(entry: ledger.LedgerEntry) -> dict[str, Any]:
    """The JSON evidence of one record: the record itself, and its canonical text to hash."""
    return {
        "format_version": FORMAT_VERSION,
        "ledger": {
            "seq": entry.seq,
            "hash": entry.hash,
            "prev_hash": entry.prev_hash,
            "recorded_at": entry.record.get("recorded_at"),
        },
        "kind": entry.kind,
        "step_id": entry.record.get("step_id"),
        "spec_hash": entry.record.get("spec_hash"),
        "trace_id": entry.record.get("trace_id"),
        "actor": entry.record.get("actor"),
        "payload": entry.payload,
        "canonical": entry.canonical,
    }


def write_evidence(evidence_dir: Path, entry: ledger.LedgerEntry) -> tuple[str, ...]:
    """rehearsals/<STEP>/<time>-seq<N>-<kind>.json and .md for one record of KINDS."""
    folder = evidence_dir / str(entry.record.get("step_id") or NO_STEP)
    folder.mkdir(parents=True, exist_ok=True)
    json_path = _write_atomic(
        folder / f"{file_stem(entry)}.json", json.dumps(document(entry), indent=2, sort_keys=True) + "\n"
    )
    md_path = _write_atomic(folder / f"{file_stem(entry)}.md", markdown(entry))
    return (str(json_path), str(md_path))


def _write_atomic(path: Path, text: str) -> Path:
    """Written to a temporary name and renamed into place: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        with suppress(OSError):
            tmp.unlink()
        raise OSError(exc.errno, exc.strerror, str(path)) from exc  # name the file, not its temporary name
    return path


@cache
def _template() -> jinja2.Template:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("gcos.evidence", "templates"),
        autoescape=False,  # Markdown, written as the values are (as the rehearsals' files)
        undefined=jinja2.ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return env.get_template("record.md.j2")


def markdown(entry: ledger.LedgerEntry) -> str:
    """The record's Markdown evidence."""
    p = entry.payload
    decision = p if entry.kind == Kind.POLICY_DECISION else p.get("policy_decision")
    return _template().render(
        entry=entry,
        p=p,
        decision=decision if isinstance(decision, dict) else None,
        causation=p.get("causation") if isinstance(p.get("causation"), dict) else None,
        actor=entry.record.get("actor") if isinstance(entry.record.get("actor"), dict) else {},
    )


def head_seq(conn: psycopg.Connection[Any]) -> int | None:
    """The last seq of the ledger (0 when empty; None where gcos is not installed: the action says so itself)."""
    if conn.execute("SELECT to_regclass('gcos.ledger') IS NULL").fetchone() == (True,):
        return None
    row = conn.execute("SELECT COALESCE(max(seq), 0) FROM gcos.ledger").fetchone()
    return int(row[0]) if row else 0


def written_since(conn: psycopg.Connection[Any], evidence_dir: Path, after: int, step_id: str | None) -> list[str]:
    """Write the evidence files of every record of KINDS after seq `after` (of `step_id`, or any step when
    None); return their paths."""
    rows = conn.execute(
        "SELECT seq FROM gcos.ledger WHERE seq > %s AND kind = ANY(%s) AND (%s::text IS NULL OR step_id = %s)"
        " ORDER BY seq",  # only the records that get files are read whole (a batched run appends many others)
        (after, [str(k) for k in KINDS], step_id, step_id),
    ).fetchall()
    files: list[str] = []
    for row in rows:
        files += write_evidence(evidence_dir, ledger.read_one(conn, int(row[0])))
    return files


def regenerate(entries: Iterable[ledger.LedgerEntry], out_dir: Path, step_ids: set[str] | None) -> tuple[Path, ...]:
    """``gcos report [STEP] --format records --out DIR``: the files of every record of KINDS (of `step_ids`, or
    all, drift included, when None) written again from the ledger, byte for byte what the command wrote."""
    files: list[Path] = []
    for entry in entries:
        step = entry.record.get("step_id")
        if entry.kind in KINDS and (step_ids is None or step in step_ids):
            files += [Path(f) for f in write_evidence(out_dir, entry)]
    return tuple(files)


@dataclass
class Recorded:
    """What ``recorded`` wrote, and the sentence saying which file it could not write (None when all were)."""

    files: list[str] = field(default_factory=list)
    missing: str | None = None
    conn: psycopg.Connection[Any] | None = None  # the held connection, idle: an action may use it (drift does)

    def said(self) -> str:
        """ "" when every file was written, else "; " and the sentence (for a line that already says the outcome)."""
        return f"; {self.missing[0].lower()}{self.missing[1:]}" if self.missing else ""

    def attach(self, result: R) -> R:
        """`result` with ``evidence`` and ``evidence_missing`` filled in (results that have those fields)."""
        names = {f.name for f in fields(result)} if hasattr(result, "__dataclass_fields__") else set()  # type: ignore[arg-type]
        if {"evidence", "evidence_missing"} <= names:
            return replace(result, evidence=tuple(self.files), evidence_missing=self.missing)  # type: ignore[type-var]
        return result


def missing_sentence(exc: Exception, evidence_dir: Path, step_id: str | None) -> str:
    """One sentence: which evidence file (or folder) could not be written, why, and how to write it again."""
    again = f"`gcos report{' ' + step_id if step_id else ''} --format records --out {evidence_dir}`"
    if isinstance(exc, OSError):
        where = exc.filename or evidence_dir
        why = exc.strerror or type(exc).__name__
        return f"Its evidence file {where} could not be written ({why}); {again} writes it again from the ledger."
    return (
        f"Its evidence files could not be read from the ledger for {evidence_dir} ({type(exc).__name__}: "
        f"{str(exc).strip().splitlines()[0] if str(exc).strip() else 'no detail'}); {again} writes them again."
    )


EVIDENCE_APPLICATION = "gcos evidence"
"""The application_name of the connection the hook holds beside the action's (an admin sees which is which)."""


def evidence_settings(settings: SessionSettings | None) -> SessionSettings:
    """The action's session settings, named as the evidence hook's connection."""
    return replace(settings or SessionSettings.from_env(), application_name=EVIDENCE_APPLICATION)


@contextmanager
def recorded(
    connect: Callable[[], psycopg.Connection[Any]], evidence_dir: Path, step_id: str | None
) -> Iterator[Recorded]:
    """Around a commit, rollback or drift: read the head first, then write the files of what the action
    appended, whether it returned or raised (the files of a refusal are evidence too), on one connection.

    Writing them never changes the action's outcome: after success, ``Recorded.missing`` says what is missing
    (``attach`` puts it in the result); after a refusal the sentence is added to the refusal's message and, when
    they are a dict, its details (``evidence_missing``)."""
    conn = connect()
    try:
        before = head_seq(conn)
        done = Recorded(conn=conn)
        try:
            yield done
        except BaseException as exc:
            if before is not None:
                _write_after_refusal(conn, connect, evidence_dir, before, step_id, exc)
            raise
        if before is None:
            return
        try:
            done.files += _write(conn, connect, evidence_dir, before, step_id)
        except (OSError, psycopg.Error) as late:
            done.missing = missing_sentence(late, evidence_dir, step_id)
    finally:
        with suppress(psycopg.Error):
            conn.close()


def _write(
    conn: psycopg.Connection[Any],
    connect: Callable[[], psycopg.Connection[Any]],
    evidence_dir: Path,
    before: int,
    step_id: str | None,
) -> list[str]:
    """written_since on the held connection, or on a fresh one if the server dropped it during the action (an
    idle_session_timeout during a long batched run, say)."""
    try:
        return written_since(conn, evidence_dir, before, step_id)
    except psycopg.OperationalError:
        if not (conn.closed or conn.broken):
            raise
    with connect() as fresh:
        return written_since(fresh, evidence_dir, before, step_id)


def _write_after_refusal(
    conn: psycopg.Connection[Any],
    connect: Callable[[], psycopg.Connection[Any]],
    evidence_dir: Path,
    before: int,
    step_id: str | None,
    exc: BaseException,
) -> None:
    """The refusal is the news: if its files cannot be written, say so in it, keeping its class and exit code."""
    try:
        _write(conn, connect, evidence_dir, before, step_id)
    except Exception as late:
        sentence = missing_sentence(late, evidence_dir, step_id)
        if isinstance(exc, GcosError):
            exc.message = f"{exc.message.rstrip()} {sentence}"
            exc.args = (exc.message,)
            if isinstance(exc.details, dict):
                exc.details = {**exc.details, "evidence_missing": sentence}
        else:
            exc.add_note(sentence)
