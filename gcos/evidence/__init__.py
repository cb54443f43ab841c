"""Evidence reports and packs: what an auditor reads, and checks offline (issue 6 item 5; CONTRACT.md
"Commands": ``gcos report [STEP] --format md|html|json|junit|records --out DIR``; seed 000 "evidence pack + manifest").

Everything is read in ONE ``REPEATABLE READ, READ ONLY`` transaction: the ledger (every record and the head),
the approvals tables (cross-checked against the ledger's approval records), the principals and the
database's identity and time. The ledger is verified (``ledger.check_rows``) before anything is written: a
report is never built from a broken chain. Every number shown - seqs, hashes, check values, approval ids and
expiries, fingerprints, footprints, gates - is copied from a ledger record; the only derived facts are the
step states (``state.read_states``, the same projection ``gcos status`` uses) and whether an approval
had expired at the report's database time.

Formats (one view model, so they cannot disagree):

* ``md``: ``index.md`` and one ``<STEP>.md`` per step;
* ``html``: one self-contained ``report.html`` (inline CSS, no scripts, no network references), the build
  order drawn as inline SVG (laid out by dependency depth, nodes coloured by state) then the steps;
* ``json``: an evidence pack - ``ledger.json`` (every record's seq, prev_hash, hash and canonical text),
  ``anchor.json`` (the head, as ``gcos ledger anchor`` writes it), ``steps/<STEP>.json``, ``report.md`` and
  ``manifest.json`` (the sha256 of every other file). ``verify_pack`` checks a pack with no database;
* ``junit``: ``junit.xml`` for CI, one testcase per gate per step (refusals are failures);
* ``records``: the commit, rollback, refusal, stop and drift evidence files (gcos/record_evidence.py) written
  again from the ledger, as the commands write them beside the rehearsals'.

Every file carries ``format_version``; nothing from a DSN is written (the database is named by its system
identifier and name); every file is written to a temporary name and renamed into place, the manifest last.

The package, one concept a module (data flows down the list):

* ``common``: format version, file names, how a value is shown, atomic writes and file hashes;
* ``snapshot``: what the database says, read once and checked (chain, approvals tables);
* ``view``: the view model (one dict per step, the report's context) built from a snapshot;
* ``rehearsals``: which rehearsals a step shows and in what order (the one its commit rested on first);
* ``graph``: the layout of the build-order graph (pure: a project and states in, coordinates out);
* ``render``: the Jinja2 environment, its Markdown filters and the templates in ``templates/``;
* ``pack``: the JSON evidence pack and its manifest; ``verify``: checking a pack offline;
* ``junit``: the junit.xml of ``--format junit``;
* ``build``: ``build_report``, which ties them together.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gcos.evidence.build import FORMATS, ReportResult, build_report
    from gcos.evidence.common import FORMAT_VERSION, sha256_file
    from gcos.evidence.graph import STATE_COLOURS, graph_layout
    from gcos.evidence.verify import verify_pack

_HOME = {
    "FORMATS": "build",
    "ReportResult": "build",
    "build_report": "build",
    "FORMAT_VERSION": "common",
    "sha256_file": "common",
    "STATE_COLOURS": "graph",
    "graph_layout": "graph",
    "verify_pack": "verify",
}
"""Where each public name lives: loaded on first use, so a command that only renders a template (a rehearsal's
evidence files load this package for its templates) never imports the report builder, the graph or jinja2's
whole pack machinery."""

__all__ = [
    "FORMATS",
    "FORMAT_VERSION",
    "STATE_COLOURS",
    "ReportResult",
    "build_report",
    "graph_layout",
    "sha256_file",
    "verify_pack",
]


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
