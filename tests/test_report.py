"""Evidence reports and packs (issue 6 item 5: "a test that a report's numbers equal the ledger's"; "The HTML
report opens in a browser with no network access and shows the graph"; CONTRACT.md "Commands" `gcos report`;
seed 000 "evidence pack + manifest").

A small, real history on the reference world (seed 002) whose schema public the kernel governs, built once for
this module, every outcome record written by the KERNEL for a named actor: SB-12 rehearsed by an operator, its
commit refused for lack of approval, approved by a sovereign's own database role (one approval revoked, one in
force), committed by the named human operator; SB-13 rehearsed and approved; SB-11 rehearsed. Every number the md,
html and json reports show is compared with the ledger records read straight from the database."""

from __future__ import annotations

import json
import re
import secrets
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import PROJECT_DIRS, REPO
from markupsafe import escape
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from gcos import commands, evidence, ledger, state
from gcos.errors import GateRefused, LedgerBroken, SpecError
from gcos.evidence.graph import direct_dependencies
from gcos.install import install
from gcos.principals import add_principal
from gcos.spec import Project, load_project
from gcos.target import Target

CHROMIUM = Path("/usr/bin/chromium")


@dataclass(frozen=True)
class History:
    dsn: str  # the world database, as the superuser
    project_dir: Path
    project: Project
    sovereign: str  # the sovereign's role name
    operator: str  # the operator's role name: it rehearses and commits
    auditor_dsn: str  # a LOGIN role whose principal holds only the auditor role
    password: str  # the sovereign's password: it must never reach a report
    refused_seq: int  # the commit_refused record of SB-12
    commit_seq: int  # the commit record of SB-12
    revoked_id: int
    approval_id: int  # the approval of SB-12 that the commit relied on
    sb13_approval_id: int

    def entries(self) -> list[ledger.LedgerEntry]:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            return ledger.read_all(conn)

    def states(self) -> dict[str, str]:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            return {k: v.state for k, v in state.read_states(conn, self.project).items()}

    def build(self, fmt: str, out: Path, step_id: str | None = None) -> evidence.ReportResult:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            return evidence.build_report(conn, self.project, step_id=step_id, fmt=fmt, out_dir=out)


@pytest.fixture(scope="module")
def history(
    pg_admin_dsn: str, adopted_world_template: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[History]:
    """A copy of the reference world with gcos installed and schema public adopted, a sovereign, an operator and
    an auditor LOGIN role that are principals of THIS database (roles are cluster-wide: unique names, dropped at
    teardown), and the history described above."""
    name = f"gcos_test_{uuid.uuid4().hex[:12]}"
    sovereign, password = f"gcos_t_{uuid.uuid4().hex[:8]}_sue", secrets.token_hex(12)
    operator = f"gcos_t_{uuid.uuid4().hex[:8]}_opal"
    auditor = f"gcos_t_{uuid.uuid4().hex[:8]}_aud"
    people = (sovereign, operator, auditor)
    with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(adopted_world_template)
            )
        )
        for role in people:
            admin.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password))
            )
    dsn = make_conninfo(pg_admin_dsn, dbname=name)
    project_dir = tmp_path_factory.mktemp("report") / "project"
    for part in PROJECT_DIRS:
        shutil.copytree(REPO / part, project_dir / part)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            add_principal(conn, sovereign, name="Sue Sovereign", kind="human", roles=["sovereign"])
            add_principal(conn, operator, name="Opal Operator", kind="human", roles=["operator"])
            add_principal(conn, auditor, name="Al Auditor", kind="human", roles=["auditor"])
        sue = Target(make_conninfo(dsn, user=sovereign, password=password), "--dsn")
        opal = Target(make_conninfo(dsn, user=operator, password=password), "--dsn")

        assert commands.rehearse(opal, project_dir, "SB-12").ok
        with pytest.raises(GateRefused) as refused:
            commands.commit(opal, project_dir, "SB-12")
        refused_seq = refused.value.details["ledger_seq"]  # type: ignore[index]
        revoked = commands.approve(sue, project_dir, "SB-12", verdict="approve", expires_in="2h", note="first look")
        commands.revoke(sue, revoked.approval_id, reason="signed too early")
        approval = commands.approve(sue, project_dir, "SB-12", verdict="approve", expires_in="1d", note="a | b <i>")
        committed = commands.commit(opal, project_dir, "SB-12")
        assert committed.ok and committed.ledger_seq is not None
        assert commands.rehearse(opal, project_dir, "SB-13").ok
        sb13 = commands.approve(sue, project_dir, "SB-13", verdict="approve", expires_in="3d")
        assert commands.rehearse(opal, project_dir, "SB-11").ok
        yield History(
            dsn,
            project_dir,
            load_project(project_dir),
            sovereign,
            operator,
            make_conninfo(dsn, user=auditor, password=password),
            password,
            refused_seq,
            committed.ledger_seq,
            revoked.approval_id,
            approval.approval_id,
            sb13.approval_id,
        )
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for role in people:
                conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            for role in people:
                admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def as_text(value: Any) -> str:
    """A ledger value as a report shows it: text as it is, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def of_kind(entries: list[ledger.LedgerEntry], kind: str, step_id: str) -> list[ledger.LedgerEntry]:
    return [e for e in entries if e.kind == kind and e.record.get("step_id") == step_id]


# --------------------------------------------------------------------------- the story is what we think


def test_the_history_projects_to_every_colour_but_rolled_back(history: History) -> None:
    states = history.states()
    assert states["SB-12"] == "committed"
    assert states["SB-13"] == "approved"
    assert states["SB-11"] == "rehearsed"
    assert states["SB-10"] == "planned"


def test_every_outcome_record_was_written_by_the_kernel_for_the_named_operator(history: History) -> None:
    """The reports below read a ledger the kernel wrote, not one a client appended to."""
    outcomes = [e for e in history.entries() if e.kind in ("rehearsal", "commit_refused", "policy_decision", "commit")]
    assert sorted({e.kind for e in outcomes}) == ["commit", "commit_refused", "policy_decision", "rehearsal"]
    for e in outcomes:
        assert e.kind == "policy_decision" or e.payload["kernel"] is True, (e.seq, e.kind)
        assert e.record["actor"]["role"] == history.operator and e.record["actor"]["principal"] == "Opal Operator"


# --------------------------------------------------------------------------- markdown


def test_markdown_numbers_equal_the_ledger(history: History, tmp_path: Path) -> None:
    result = history.build("md", tmp_path)
    assert result.format == "md" and result.steps == tuple(history.project.steps)
    assert {p.name for p in result.files} == {"index.md", *(f"{s}.md" for s in history.project.steps)}
    entries = history.entries()
    assert result.ledger_head_seq == entries[-1].seq
    text = (tmp_path / "SB-12.md").read_text(encoding="utf-8")
    assert text.startswith("---\nformat_version: 1\n")

    (rehearsal,) = of_kind(entries, "rehearsal", "SB-12")
    assert f"**seq {rehearsal.seq}** (hash `{rehearsal.hash}`)" in text
    checks = rehearsal.payload["checks"]
    for section in ("reverify", "success"):
        assert checks[section]
        for c in checks[section]:
            expected, actual = as_text(c["expected"]), as_text(c["actual"])
            row = f"| {c['name']} | `{expected}` | `{actual}` | {'yes' if c['ok'] else 'NO'} |"
            assert row in text, row
    for s in checks["stop"]:
        assert f"| {s['name']} | {s['kind']} | {'HELD' if s['held'] else 'no'} | `{s['detail']}` |" in text
    fps = rehearsal.payload["fingerprints"]
    for name, fp in fps.items():  # how the kernel established each (047/052), "—" where the record does not say
        assert f"| {name} | `{fp['hash']}` | `{fp['schema_hash']}` | {fp.get('established', '—')} |" in text
    assert {fps[n].get("established") for n in ("entry", "after_rollback", "exit")} <= {"measured", "proved unchanged"}
    assert "established" not in fps["inside"]
    for t, d in rehearsal.payload["footprint"]["row_deltas"].items():
        assert f"| {t} | `{d['inserted']}` | `{d['updated']}` | `{d['deleted']}` |" in text

    approvals = of_kind(entries, "approval", "SB-12")
    assert [a.payload["approval_id"] for a in approvals] == [history.revoked_id, history.approval_id]
    (revocation,) = of_kind(entries, "approval_revocation", "SB-12")
    for a in approvals:
        p = a.payload
        was_revoked = p["approval_id"] == history.revoked_id
        revoked = f"yes, seq {revocation.seq}" if was_revoked else "no"
        use = "not used; does not count now (revoked)" if was_revoked else f"used by commit seq {history.commit_seq}"
        row = (
            f"| {p['approval_id']} | {a.seq} | Sue Sovereign (human) | {history.sovereign} | sovereign | approve | "
            f"{p['expires_at']} | `{a.record['spec_hash']}` | step | {revoked} | {use} |"
        )
        assert row in text, row
    assert "note: a \\| b \\<i\\>" in text  # neither a table nor markup can be broken into

    (refused,) = of_kind(entries, "commit_refused", "SB-12")
    (decision,) = of_kind(entries, "policy_decision", "SB-12")
    (commit,) = of_kind(entries, "commit", "SB-12")
    assert (refused.seq, commit.seq) == (history.refused_seq, history.commit_seq)
    assert commit.payload["policy_decision_seq"] == decision.seq
    assert f"**Ledger seq {refused.seq}** (commit_refused, hash `{refused.hash}`): commit **REFUSED**" in text
    assert f"**Ledger seq {decision.seq}** (policy_decision, hash `{decision.hash}`): commit **ALLOWED**" in text
    for g in refused.payload["policy_decision"]["gates"]:
        assert f"| {g['number']} | {g['gate']} | {'yes' if g['allow'] else 'NO'} |" in text
    assert f"**Ledger seq {commit.seq}**: commit applied (hash `{commit.hash}`)" in text
    assert f"policy decision seq {decision.seq}" in text
    for name in ("fingerprint_before", "fingerprint_after"):
        fp = commit.payload[name]
        label = name.removeprefix("fingerprint_")
        assert f"| {label} | `{fp['hash']}` | `{fp['schema_hash']}` | — |" in text  # (a commit record does not say)

    own = [e for e in entries if e.record.get("step_id") == "SB-12"]
    for e in own:
        assert f"| {e.seq} | {e.kind} | {e.record['recorded_at']} |" in text
        assert f"| `{e.prev_hash}` | `{e.hash}` |" in text
        assert f"```json\n{e.canonical}\n```" in text
    assert f"spec hash `{history.project.steps['SB-12'].hash}`" in text

    index = (tmp_path / "index.md").read_text(encoding="utf-8")
    assert f"head is seq **{entries[-1].seq}**, hash `{entries[-1].hash}`" in index
    assert "| [SB-12](SB-12.md) | step-1 |" in index and "| **committed** |" in index
    assert "gcos ledger verify --pack DIR" in index and "sha256sum" in index


def test_a_one_step_report_takes_any_spelling_of_the_step(history: History, tmp_path: Path) -> None:
    result = history.build("md", tmp_path, step_id="step-2")
    assert result.steps == ("SB-13",)
    assert sorted(p.name for p in result.files) == ["SB-13.md", "index.md"]
    text = (tmp_path / "SB-13.md").read_text(encoding="utf-8")
    (approval,) = of_kind(history.entries(), "approval", "SB-13")
    assert approval.payload["approval_id"] == history.sb13_approval_id
    assert f"| {history.sb13_approval_id} | {approval.seq} |" in text
    assert "| counts toward the next commit |" in text  # it counts now: SB-13 is approved, not yet committed
    assert "state: **approved**" in text
    with pytest.raises(SpecError, match="unknown step"):
        history.build("md", tmp_path, step_id="SB-99")
    with pytest.raises(SpecError, match="format"):
        history.build("pdf", tmp_path)


# --------------------------------------------------------------------------- html


def test_html_is_self_contained_numbers_equal_the_ledger_and_the_graph_has_every_step(
    history: History, tmp_path: Path
) -> None:
    result = history.build("html", tmp_path)
    assert [p.name for p in result.files] == ["report.html"]
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert '<meta name="gcos-format-version" content="1">' in page
    for banned in ("http://", "https://", "<script", "@import", "url(", "<link", "<img", "<iframe"):
        assert banned not in page.lower(), banned

    svg = page[page.index("<svg") : page.index("</svg>")]
    nodes = re.findall(
        r'<g class="node[^"]*" data-step="([^"]+)" data-state="([^"]+)">.*?<rect [^>]*fill="(#[0-9a-f]{6})"', svg, re.S
    )
    states = history.states()
    assert sorted(n[0] for n in nodes) == sorted(history.project.steps)  # one node per step
    for step_id, shown_state, fill in nodes:
        assert shown_state == states[step_id]
        assert fill == evidence.STATE_COLOURS[shown_state][0]
    assert {n[1] for n in nodes} == {"planned", "rehearsed", "approved", "committed"}
    edges = re.findall(r'<path class="edge[^"]*" data-from="([^"]+)" data-to="([^"]+)"', svg)
    direct = direct_dependencies(history.project)
    assert sorted(edges) == sorted((d, sid) for sid, deps in direct.items() for d in deps)  # direct ones only
    listed = re.findall(r'<span data-from="([^"]+)" data-to="([^"]+)">', page[page.index("</svg>") :])
    every = sorted((d, s.id) for s in history.project.steps.values() for d in s.depends_on)
    assert sorted(edges + listed) == every  # the implied ones are listed under the graph
    frames = re.findall(r'<g class="frame" data-plan="([^"]*)">', svg)
    assert frames == list(history.project.plans)  # one frame per plan
    legend = svg[svg.index('<g class="legend">') :]
    for name in state.STATES:  # the legend shows every state's colour
        assert f'fill="{evidence.STATE_COLOURS[name][0]}"' in legend and f">{name}</text>" in legend
    assert len({fill for fill, _ in evidence.STATE_COLOURS.values()}) == len(state.STATES)

    entries = history.entries()
    section = page[page.index('<section class="step" id="step-SB-12"') :]
    section = section[: section.index("</section>")]
    (rehearsal,) = of_kind(entries, "rehearsal", "SB-12")
    for part in ("reverify", "success"):
        for c in rehearsal.payload["checks"][part]:
            row = (
                f'<tr data-check="{escape(c["name"])}"><td>{escape(c["name"])}</td>'
                f"<td><code>{escape(as_text(c['expected']))}</code></td><td><code>{escape(as_text(c['actual']))}</code></td>"
            )
            assert row in section, row
    for name, fp in rehearsal.payload["fingerprints"].items():
        assert f'<tr data-fingerprint="{name}"><td>{name}</td><td class="hash">{fp["hash"]}</td>' in section
        shown = f'<td class="hash">{fp["schema_hash"]}</td><td class="established">{fp.get("established", "—")}</td>'
        assert shown in section
    for a in of_kind(entries, "approval", "SB-12"):
        p = a.payload
        assert f'<tr data-approval="{p["approval_id"]}"><td class="num">{p["approval_id"]}</td>' in section
        assert f"<td>{p['expires_at']}</td>" in section or f"<td>{p['expires_at']} <span" in section
        assert f'<td class="hash">{a.record["spec_hash"]}</td>' in section
    assert "<td>a | b &lt;i&gt;</td>" in section and "<i>" not in page  # escaped, never markup
    for e in entries:
        if e.record.get("step_id") == "SB-12":
            assert f'<tr data-seq="{e.seq}"><td class="num">{e.seq}</td><td>{e.kind}</td>' in section
            assert f'<td class="hash">{e.hash}</td>' in section
            assert f"<pre>{escape(e.canonical)}</pre>" in section
    (decision,) = of_kind(entries, "policy_decision", "SB-12")
    assert f'data-policy-seq="{decision.seq}"' in section and f'data-policy-seq="{history.refused_seq}"' in section


@pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium in this environment")
def test_the_html_renders_headless_without_a_network(history: History, tmp_path: Path) -> None:
    history.build("html", tmp_path / "out")
    png = tmp_path / "report.png"
    done = subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={png}",
            "--window-size=1200,900",
            (tmp_path / "out" / "report.html").as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- the evidence pack


def test_the_pack_holds_the_ledger_the_anchor_and_every_step_and_verifies_offline(
    history: History, tmp_path: Path
) -> None:
    pack = tmp_path / "pack"
    result = history.build("json", pack)
    assert result.files[-1].name == "manifest.json"
    entries = history.entries()
    manifest = json.loads((pack / "manifest.json").read_text())
    assert manifest["format_version"] == 1
    assert manifest["ledger"] == {"head_seq": entries[-1].seq, "head_hash": entries[-1].hash, "records": len(entries)}
    registered = {e.record["step_id"]: e.payload["hash"] for e in entries if e.kind == "spec_registered"}
    plans = {e.payload["hash"] for e in entries if e.kind == "plan_registered"}
    assert set(manifest["files"]) == {  # the steps the ledger registered, each at its registered document
        "ledger.json",
        "anchor.json",
        "report.md",
        *(f"steps/{s}.json" for s in registered),
        *(f"registry/specs/{h}.json" for h in registered.values()),
        *(f"registry/plans/{h}.json" for h in plans),
    }
    assert manifest["created_at"] == entries[-1].record["recorded_at"]  # as of the last record

    exported = json.loads((pack / "ledger.json").read_text())
    assert exported["format_version"] == 1
    assert exported["records"] == [
        {"seq": e.seq, "prev_hash": e.prev_hash, "hash": e.hash, "canonical": e.canonical} for e in entries
    ]
    with psycopg.connect(history.dsn, autocommit=True) as conn:
        anchor = ledger.export_anchor(conn)
    assert (pack / "anchor.json").read_text() == json.dumps(anchor.to_dict(), indent=2, sort_keys=True) + "\n"
    assert manifest["database"] == anchor.to_dict()["database"]

    sb12 = json.loads((pack / "steps" / "SB-12.json").read_text())
    assert sb12["format_version"] == 1
    assert sb12["spec"]["hash"] == history.project.steps["SB-12"].hash
    assert sb12["spec"]["document"] == history.project.steps["SB-12"].document
    assert [r["seq"] for r in sb12["records"]] == [e.seq for e in entries if e.record.get("step_id") == "SB-12"]
    (rehearsal,) = of_kind(entries, "rehearsal", "SB-12")
    assert sb12["rehearsal"]["seq"] == rehearsal.seq
    for part in ("reverify", "stop", "success"):
        assert sb12["rehearsal"][part] == rehearsal.payload["checks"][part]
    assert sb12["rehearsal"]["footprint"] == rehearsal.payload["footprint"]
    for name, fp in rehearsal.payload["fingerprints"].items():
        assert sb12["rehearsal"]["fingerprints"][name]["hash"] == fp["hash"]
        assert sb12["rehearsal"]["fingerprints"][name]["tables"] == fp["tables"]
    approvals = {a.payload["approval_id"]: a for a in of_kind(entries, "approval", "SB-12")}
    assert [(a["id"], a["seq"], a["expires_at"], a["bound_hash"], a["revoked"]) for a in sb12["approvals"]] == [
        (i, a.seq, a.payload["expires_at"], a.record["spec_hash"], i == history.revoked_id)
        for i, a in approvals.items()
    ]
    (refused,) = of_kind(entries, "commit_refused", "SB-12")
    (decision,) = of_kind(entries, "policy_decision", "SB-12")
    assert [(p["seq"], p["allow"], p["gates"]) for p in sb12["policy_decisions"]] == [
        (refused.seq, False, refused.payload["policy_decision"]["gates"]),
        (decision.seq, True, decision.payload["gates"]),
    ]
    assert sb12["state"]["state"] == "committed" and sb12["state"]["commit_seq"] == history.commit_seq

    verified = evidence.verify_pack(pack)
    assert verified.ok and verified.records == len(entries) and verified.head_hash == entries[-1].hash
    assert verified.anchor_seq == entries[-1].seq
    assert evidence.verify_pack(pack, anchor=anchor).ok  # an anchor kept elsewhere
    for path in pack.rglob("*"):  # nothing from a DSN: the sovereign's password never appears
        if path.is_file():
            assert history.password not in path.read_text(encoding="utf-8")
            admin_password = conninfo_to_dict(history.dsn).get("password")
            assert not admin_password or str(admin_password) not in path.read_text(encoding="utf-8")


def test_an_auditor_builds_the_same_pack_read_only(history: History, tmp_path: Path) -> None:
    history.build("json", tmp_path / "admin")
    with psycopg.connect(history.auditor_dsn, autocommit=True) as conn:
        result = evidence.build_report(conn, history.project, step_id=None, fmt="json", out_dir=tmp_path / "auditor")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert result.ledger_head_seq == history.entries()[-1].seq  # reading appended nothing
    for name in ("ledger.json", "anchor.json", "steps/SB-12.json"):
        assert (tmp_path / "auditor" / name).read_bytes() == (tmp_path / "admin" / name).read_bytes()
    assert evidence.verify_pack(tmp_path / "auditor").ok


def _flip_one_byte(path: Path, needle: bytes) -> None:
    data = bytearray(path.read_bytes())
    at = data.index(needle)
    data[at] = ord("0") if data[at] != ord("0") else ord("1")
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("tamper", "named"),
    [
        ("ledger_byte", "ledger.json was changed"),
        ("step_byte", "steps/SB-12.json was changed"),
        ("delete", "steps/SB-13.json is listed in manifest.json but missing"),
        ("add", "extra.txt is not listed in manifest.json"),
        ("anchor_byte", "anchor.json was changed"),
        ("manifest_missing", "manifest.json is missing"),
    ],
)
def test_verify_pack_names_the_file_that_was_tampered_with(
    history: History, tmp_path: Path, tamper: str, named: str
) -> None:
    pack = tmp_path / "pack"
    history.build("json", pack)
    if tamper == "ledger_byte":
        _flip_one_byte(pack / "ledger.json", b'"hash": "')
    elif tamper == "step_byte":
        _flip_one_byte(pack / "steps" / "SB-12.json", b"expected")
    elif tamper == "delete":
        (pack / "steps" / "SB-13.json").unlink()
    elif tamper == "add":
        (pack / "extra.txt").write_text("hello\n")
    elif tamper == "anchor_byte":
        _flip_one_byte(pack / "anchor.json", b'"hash": "')
    else:
        (pack / "manifest.json").unlink()
    with pytest.raises(LedgerBroken, match=re.escape(named)) as broken:
        evidence.verify_pack(pack)
    assert broken.value.exit_code == 7


def _rehash_manifest(pack: Path) -> None:
    """What a forger does after editing a file: recompute the manifest so every sha256 matches again."""
    manifest = json.loads((pack / "manifest.json").read_text())
    manifest["files"] = {rel: evidence.sha256_file(pack / rel) for rel in manifest["files"]}
    (pack / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def test_a_forged_record_is_named_by_seq_even_when_the_manifest_is_rehashed(history: History, tmp_path: Path) -> None:
    pack = tmp_path / "pack"
    history.build("json", pack)
    doc = json.loads((pack / "ledger.json").read_text())
    commit = next(r for r in doc["records"] if json.loads(r["canonical"])["kind"] == "commit")
    commit["canonical"] = commit["canonical"].replace('"outcome":"applied"', '"outcome":"applidd"')
    (pack / "ledger.json").write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    _rehash_manifest(pack)
    with pytest.raises(LedgerBroken, match=f"ledger.json fails at seq {commit['seq']}"):
        evidence.verify_pack(pack)


def test_a_step_file_that_disagrees_with_the_ledger_is_named_even_when_rehashed(
    history: History, tmp_path: Path
) -> None:
    pack = tmp_path / "pack"
    history.build("json", pack)
    path = pack / "steps" / "SB-12.json"
    step = json.loads(path.read_text())
    rehearsal = next(r for r in step["records"] if '"passed"' in r["canonical"])  # after the spec's registration
    rehearsal["canonical"] = rehearsal["canonical"].replace("passed", "failed", 1)
    path.write_text(json.dumps(step, indent=2, sort_keys=True) + "\n")
    _rehash_manifest(pack)
    with pytest.raises(LedgerBroken, match=r"steps/SB-12.json: record seq \d+ differs from ledger.json"):
        evidence.verify_pack(pack)


def test_a_pack_is_rewritten_in_place_but_never_over_foreign_files(history: History, tmp_path: Path) -> None:
    pack = tmp_path / "pack"
    history.build("json", pack, step_id="SB-12")
    history.build("json", pack, step_id="SB-13")  # replaces the previous pack
    assert sorted(p.name for p in (pack / "steps").iterdir()) == ["SB-13.json"]
    assert evidence.verify_pack(pack).ok
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine\n")
    with pytest.raises(SpecError, match="empty directory"):
        history.build("json", foreign)
    assert (foreign / "notes.txt").read_text() == "mine\n"


# --------------------------------------------------------------------------- refusals


def test_no_report_is_built_from_a_broken_ledger(dsn: str, tmp_path: Path) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        install(conn)
        for i in range(3):
            ledger.append(conn, "note", {"i": i})
        conn.execute("ALTER TABLE gcos.ledger DISABLE TRIGGER ALL")
        conn.execute("UPDATE gcos.ledger SET canonical = replace(canonical, '\"i\":1', '\"i\":7') WHERE seq = 3")
        with pytest.raises(LedgerBroken, match="seq 3"):
            evidence.build_report(conn, load_project(REPO), step_id=None, fmt="json", out_dir=tmp_path / "pack")
    assert not (tmp_path / "pack").exists()


def test_a_report_needs_gcos_installed(dsn: str, tmp_path: Path) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn, pytest.raises(SpecError, match="gcos install"):
        evidence.build_report(conn, load_project(REPO), step_id=None, fmt="md", out_dir=tmp_path)
