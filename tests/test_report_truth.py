"""The report tells the truth at a glance (issue 12 items 4 and 5), on the history of test_report.py plus what
makes a report lie if it is careless: SB-12 rehearsed AGAIN after its commit (a later, failed attempt), a
superuser's change recorded as drift, and SB-11's commit refused (no approval).

* a committed step leads with the rehearsal its commit rested on (the kernel's causation), then later attempts;
* an approval that authorised a commit reads "used by commit seq N";
* commit, refusal and drift records have evidence files of their own beside the rehearsals', tied to the chain;
* ``--format junit``: one testcase per gate per step, a gate that did not hold a failure with the kernel's reason.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from conftest import REPO
from test_report import History, history, of_kind

from gcos import commands, ledger
from gcos.errors import GateRefused, GcosError, ReverifyMismatch
from gcos.evidence import graph_layout
from gcos.target import Target

__all__ = ["history"]  # the module-scoped fixture of test_report.py, built again for this module


@dataclass(frozen=True)
class Truth:
    h: History
    later_seq: int  # the rehearsal of SB-12 after its commit
    drift_seq: int
    sb11_refused_seq: int

    def entries(self) -> list[ledger.LedgerEntry]:
        return self.h.entries()


@pytest.fixture(scope="module")
def truth(history: History) -> Iterator[Truth]:
    h = history
    opal = Target(psycopg.conninfo.make_conninfo(h.dsn, user=h.operator, password=h.password), "--dsn")
    with pytest.raises(GcosError):
        commands.rehearse(opal, h.project_dir, "SB-12")  # governance_ruleset exists now: re-verify fails
    with psycopg.connect(h.dsn, autocommit=True) as admin:
        admin.execute(
            "UPDATE law_articles SET heading = heading || ' (edited)' WHERE ctid = (SELECT min(ctid) FROM law_articles)"
        )
    with pytest.raises(ReverifyMismatch) as drifted:
        commands.drift(Target(h.dsn, "--dsn"), project_dir=h.project_dir)
    with pytest.raises(GateRefused) as refused:
        commands.commit(opal, h.project_dir, "SB-11")
    (later,) = [e for e in of_kind(h.entries(), "rehearsal", "SB-12") if e.seq > h.commit_seq]
    yield Truth(h, later.seq, drifted.value.details.ledger_seq, refused.value.details["ledger_seq"])  # type: ignore[union-attr,index]


def section(text: str, start: str, end: str) -> str:
    return text[text.index(start) : text.index(end, text.index(start))]


def test_a_committed_step_leads_with_the_rehearsal_its_commit_rested_on(truth: Truth, tmp_path: Path) -> None:
    (commit,) = of_kind(truth.entries(), "commit", "SB-12")
    rested = commit.payload["causation"]["rehearsal_seq"]
    rehearsals = [e.seq for e in of_kind(truth.entries(), "rehearsal", "SB-12")]
    assert rehearsals == [rested, truth.later_seq] and rested < commit.seq < truth.later_seq

    truth.h.build("md", tmp_path / "md", step_id="SB-12")
    text = (tmp_path / "md" / "SB-12.md").read_text(encoding="utf-8")
    lead = f"The rehearsal commit seq {commit.seq} rested on is ledger record **seq {rested}**"
    assert lead in text and "The latest rehearsal" not in text
    table = section(text, "All rehearsals of SB-12", "# Approvals")
    rows = [line for line in table.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [r.split(" | ")[:2] for r in rows] == [
        [f"| {rested}", f"rested on by commit seq {commit.seq}"],
        [f"| {truth.later_seq}", "later attempt"],
    ]
    assert f"## Re-verify (rehearsal seq {rested})" in text  # the checks shown are the ones the commit rested on

    truth.h.build("html", tmp_path / "html")
    page = (tmp_path / "html" / "report.html").read_text(encoding="utf-8")
    sb12 = section(page, 'id="step-SB-12"', "</section>")
    assert f"commit seq {commit.seq} rested on</strong> is ledger record <strong>seq {rested}</strong>" in sb12
    assert sb12.index(f'data-rehearsal="{rested}"') < sb12.index(f'data-rehearsal="{truth.later_seq}"')
    sb11 = section(page, 'id="step-SB-11"', "</section>")
    assert "The latest rehearsal is" in sb11  # never committed: its latest rehearsal


def test_an_approval_that_authorised_a_commit_reads_used_by_that_commit(truth: Truth, tmp_path: Path) -> None:
    truth.h.build("md", tmp_path, step_id="SB-12")
    text = (tmp_path / "SB-12.md").read_text(encoding="utf-8")
    entries = truth.entries()
    (commit,) = of_kind(entries, "commit", "SB-12")
    assert commit.payload["causation"]["approval_ids"] == [truth.h.approval_id]
    rows = {
        int(line.split(" | ")[0][2:]): line
        for line in section(text, "# Approvals of SB-12", "# Policy decisions").splitlines()
        if line.startswith("| ") and line[2].isdigit()
    }
    assert rows[truth.h.approval_id].endswith(f"| used by commit seq {commit.seq} |")
    assert rows[truth.h.revoked_id].endswith("| not used; does not count now (revoked) |")
    assert "counts now" not in text


def evidence_files(truth: Truth, step: str) -> dict[int, tuple[str, dict[str, object]]]:
    folder = truth.h.project_dir / "rehearsals" / step
    out = {}
    for path in sorted(folder.glob("*-seq*-*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        out[int(doc["ledger"]["seq"])] = (path.name, doc)
    return out


def test_commit_refusal_and_drift_records_have_evidence_files_beside_the_rehearsals(truth: Truth) -> None:
    entries = {e.seq: e for e in truth.entries()}
    (commit,) = of_kind(list(entries.values()), "commit", "SB-12")
    files = evidence_files(truth, "SB-12")
    expected = {truth.h.refused_seq: "commit_refused", commit.seq: "commit", truth.drift_seq: "drift"}
    assert {seq: doc["kind"] for seq, (_, doc) in files.items()} == expected
    for seq, (name, doc) in files.items():
        e = entries[seq]
        assert name.endswith(f"-seq{seq}-{e.kind}.json")
        assert doc["canonical"] == e.canonical and hashlib.sha256(e.canonical.encode()).hexdigest() == e.hash
        assert doc["ledger"] == {
            "seq": seq,
            "hash": e.hash,
            "prev_hash": e.prev_hash,
            "recorded_at": e.record["recorded_at"],
        }
        assert doc["payload"] == e.payload and doc["trace_id"] == e.record["trace_id"]
    folder = truth.h.project_dir / "rehearsals" / "SB-12"
    rehearsal_files = [p.name for p in folder.glob("*.json") if "-seq" in p.name and p.stem.split("-seq")[1].isdigit()]
    assert len(rehearsal_files) == 2  # beside the two rehearsals' own files

    md = (folder / files[commit.seq][0]).with_suffix(".md").read_text(encoding="utf-8")
    cause = commit.payload["causation"]
    assert f"- rehearsal seq {cause['rehearsal_seq']}" in md
    assert f"- approvals {truth.h.approval_id} (ledger seqs {cause['approval_seqs'][0]})" in md
    assert f"- policy decision seq {cause['policy_decision_seq']}" in md
    assert f"hash `{commit.hash}`" in md and f"trace `{commit.record['trace_id']}`" in md
    refused_md = (folder / files[truth.h.refused_seq][0]).with_suffix(".md").read_text(encoding="utf-8")
    assert "## Policy decision: commit REFUSED" in refused_md and "| NO |" in refused_md
    drift_md = (folder / files[truth.drift_seq][0]).with_suffix(".md").read_text(encoding="utf-8")
    assert any(d in drift_md for d in entries[truth.drift_seq].payload["differences"])
    assert f"Drift from the fingerprint after seq {commit.seq} (commit)" in drift_md
    sb11 = evidence_files(truth, "SB-11")
    assert {seq: doc["kind"] for seq, (_, doc) in sb11.items()} == {truth.sb11_refused_seq: "commit_refused"}


def test_junit_has_one_case_per_gate_per_step_and_refusals_are_failures(truth: Truth, tmp_path: Path) -> None:
    result = commands.report(Target(truth.h.dsn, "--dsn"), truth.h.project_dir, None, "junit", tmp_path)
    assert [p.name for p in result.files] == ["junit.xml"]
    root = ET.parse(tmp_path / "junit.xml").getroot()
    suites = {s.get("name", "").split(" ")[0]: s for s in root.findall("testsuite")}
    assert set(suites) == set(truth.h.project.steps)
    entries = truth.entries()

    refused = next(e for e in entries if e.seq == truth.sb11_refused_seq)
    gates = refused.payload["policy_decision"]["gates"]
    cases = suites["SB-11"].findall("testcase")
    assert cases[0].get("name", "").startswith("rehearsal seq") and cases[0].find("failure") is None
    assert [c.get("name") for c in cases[1:]] == [f"commit gate {g['number']} {g['gate']}" for g in gates]
    for case, gate in zip(cases[1:], gates, strict=True):
        failure = case.find("failure")
        assert (failure is None) == bool(gate["allow"])
        if failure is not None:
            assert failure.get("message") == gate["reason"]
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        assert props["ledger_seq"] == str(truth.sb11_refused_seq)
    assert suites["SB-11"].get("failures") == str(sum(1 for g in gates if not g["allow"])) != "0"

    (decision,) = [e for e in of_kind(entries, "policy_decision", "SB-12") if e.payload.get("allow")]
    sb12 = suites["SB-12"].findall("testcase")
    (commit,) = of_kind(entries, "commit", "SB-12")
    rested = commit.payload["causation"]["rehearsal_seq"]
    assert sb12[0].get("name") == f"rehearsal seq {rested} (rested on by commit seq {commit.seq})"
    assert all(c.find("failure") is None for c in sb12)
    assert len(sb12) == 1 + len(decision.payload["gates"])
    planned = suites["SB-10"].findall("testcase")
    assert [c.find("skipped") is not None for c in planned] == [True, True]
    assert int(root.get("failures", "0")) == sum(int(s.get("failures", "0")) for s in suites.values())


def png_pixels(path: Path) -> tuple[int, int, int, list[bytes]]:
    """Width, height, bytes per pixel and rows (RGB or RGBA) of an 8-bit, non-interlaced PNG, as Chromium
    writes them (no imaging library here: zlib and the five PNG row filters)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks, header = 8, b"", b""
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        header = body if kind == b"IHDR" else header
        chunks += body if kind == b"IDAT" else b""
        pos += 12 + length
    width, height = int.from_bytes(header[0:4], "big"), int.from_bytes(header[4:8], "big")
    depth, colour, interlace = header[8], header[9], header[12]
    assert depth == 8 and colour in (2, 6) and interlace == 0, header
    bpp = 3 if colour == 2 else 4
    raw, prev = zlib.decompress(chunks), bytes(width * bpp)
    rows: list[bytes] = []
    for y in range(height):
        line = raw[y * (width * bpp + 1) : (y + 1) * (width * bpp + 1)]
        kind, row = line[0], bytearray(line[1:])
        for i in range(len(row)):
            a = row[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                row[i] = (row[i] + a) & 255
            elif kind == 2:
                row[i] = (row[i] + b) & 255
            elif kind == 3:
                row[i] = (row[i] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                row[i] = (row[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(row))
        prev = bytes(row)
    return width, height, bpp, rows


@pytest.mark.skipif(shutil.which("chromium") is None, reason="headless Chromium is not installed")
def test_a_real_browser_draws_every_box_where_the_layout_says_in_its_state_colour(truth: Truth, tmp_path: Path) -> None:
    """tools/report_screenshot.py renders the report's graph in headless Chromium; in the PNG, a point inside
    each box (clear of its text) has the colour of the step's state, and the frames' background lies between."""
    truth.h.build("html", tmp_path)
    png = tmp_path / "graph.png"
    tool = REPO / "tools" / "report_screenshot.py"
    done = subprocess.run(
        [sys.executable, str(tool), str(tmp_path / "report.html"), str(png), "--graph-only"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    width, height, bpp, rows = png_pixels(png)
    layout = graph_layout(truth.h.project, truth.h.states())
    assert width >= layout["width"] and height >= layout["height"]
    offset = 9  # the .graph box's border and padding: where the svg's origin lands on the page

    def colour(x: float, y: float) -> str:
        px, py = int(x) + offset, int(y) + offset
        return "#" + rows[py][px * bpp : px * bpp + 3].hex()

    for node in layout["nodes"]:
        assert colour(node["x"] + node["w"] - 14, node["y"] + 8) == node["fill"], node["id"]
    for frame in layout["frames"]:
        assert colour(frame["x"] + frame["w"] - 6, frame["y"] + frame["h"] - 6) == "#f4f6fa", frame["plan"]
