"""The evidence files of a kernel rehearsal (rehearsals/<STEP>/<time>-seq<N>.json and .md): the JSON is the
record the kernel appended to the ledger, the Markdown (evidence/templates/rehearsal.md.j2) shows every part
of it an auditor reads, failed checks and held stop conditions included."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import MakeRole, Role
from typer.testing import CliRunner

from gcos import commands, ledger
from gcos.cli import app
from gcos.domain import Kind, Outcome
from gcos.errors import ExitCode, StopHeld
from gcos.spec import load_project
from gcos.target import Target


@pytest.fixture
def operator(world_dsn: str, gcos_adopted: None, world_role: MakeRole) -> Role:
    """A named human operator on a copy of the reference world whose schema public the kernel governs."""
    return world_role("op", kind="human", roles=("operator",), grant=("operator",))


def evidence(project_dir: Path, step_id: str, entry: ledger.LedgerEntry) -> tuple[dict[str, Any], list[str]]:
    """The step's two evidence files, named after the ledger record: the JSON document and the Markdown lines."""
    stamp = str(entry.record["recorded_at"]).replace(":", "").replace("-", "")
    folder = project_dir / "rehearsals" / step_id
    assert sorted(p.name for p in folder.iterdir()) == [f"{stamp}-seq{entry.seq}.json", f"{stamp}-seq{entry.seq}.md"]
    document = json.loads((folder / f"{stamp}-seq{entry.seq}.json").read_text(encoding="utf-8"))
    return document, (folder / f"{stamp}-seq{entry.seq}.md").read_text(encoding="utf-8").splitlines()


def header(entry: ledger.LedgerEntry, ref: str) -> list[str]:
    """The Markdown's first lines, as they follow from the record."""
    p = entry.payload
    prints = p["fingerprints"]
    return [
        f"# Rehearsal of {entry.record['step_id']} ({ref}): {p['outcome']}",
        "",
        f"- {p['message']}",
        f"- spec hash `{entry.record['spec_hash']}`; plan {p['plan_id']} `{p['plan_hash']}`",
        f"- ledger record seq {entry.seq}, hash `{entry.hash}`, at {entry.record['recorded_at']}",
        f"- trace `{entry.record['trace_id']}` (the step run: its approvals and commit carry it)",
        f"- entry fingerprint `{prints['entry']['hash']}`; exit fingerprint `{prints['exit']['hash']}`",
        f"- duration {p['duration_us'] / 1e6:.3f} s; run id `{p['run_id']}`",
    ]


def shown(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def test_the_evidence_files_are_the_record_the_kernel_wrote_as_the_operator(
    operator: Role, world_dsn: str, project_dir: Path
) -> None:
    done = CliRunner().invoke(app, ["rehearse", "SB-12", "--dsn", operator.dsn, "-C", str(project_dir), "--json"])
    assert done.exit_code == ExitCode.OK, done.output
    result = json.loads(done.stdout)["result"]
    with psycopg.connect(world_dsn, autocommit=True) as conn:
        entry = ledger.read_one(conn, result["ledger_seq"])
    assert entry.kind == Kind.REHEARSAL and entry.payload["kernel"] is True
    assert (entry.record["actor"]["role"], entry.record["actor"]["principal"]) == (operator.name, "Op")
    assert entry.record["spec_hash"] == load_project(project_dir).step("SB-12").hash
    document, md = evidence(project_dir, "SB-12", entry)
    assert sorted(result["evidence"]) == sorted(str(p) for p in (project_dir / "rehearsals" / "SB-12").iterdir())
    record = entry.record
    assert document.pop("ledger") == {"seq": entry.seq, "hash": entry.hash, "recorded_at": record["recorded_at"]}
    assert document.pop("spec_hash") == record["spec_hash"]
    assert document.pop("trace_id") == record["trace_id"]  # seed 001: every evidence record includes trace_id
    assert document == entry.payload  # the JSON file is the kernel's record, nothing added or left out

    p = entry.payload
    assert md[:8] == header(entry, "step-1")
    assert [line for line in md if line.startswith("## ")] == [
        "## Footprint",
        "## Re-verify",
        "## Success evidence",
        "## Stop conditions",
    ]
    assert {"- new tables: public.governance_ruleset", "- public.governance_ruleset: +1 ~0 -0",
            "- public.evolution_snapshots: +1 ~0 -0"} <= set(md)  # fmt: skip
    for section in ("reverify", "success"):
        for c in p["checks"][section]:
            assert f"| {c['name']} | {shown(c['expected'])} | {shown(c['actual'])} | yes |" in md
    assert [line for line in md if line.endswith(" | no | returned false |")] == [
        f"| {s['name']} | no | returned false |" for s in p["checks"]["stop"] if s["kind"] == "sql"
    ]
    assert md[-1] == f"Verify the chain with `gcos ledger verify`; this record is seq {entry.seq}."


PROBE = """\
id: EV-1
order: 50
title: Evidence probe
source: "test fixture"
approvals: {signers: 1, roles: [sovereign]}
watch: [evolution_snapshots]
reverify:
  - name: one baseline snapshot
    sql: SELECT count(*) FROM evolution_snapshots
    expect: 1
mutation:
  sql: |
    INSERT INTO evolution_snapshots (snapshot_id, scope, subject, content_hash, payload, taken_at)
    SELECT gen_random_uuid(), 'probe', 'birth ' || nextval(pg_get_serial_sequence('birth_registry', 'id')), 'x', '{}',
           now();
  allow:
    - {insert: evolution_snapshots}
stop:
  - name: a probe row exists
    sql: SELECT count(*) > 0 FROM evolution_snapshots WHERE scope = 'probe'
  - name: never
    sql: SELECT false
success:
  - name: two probe rows
    sql: SELECT count(*) FROM evolution_snapshots WHERE scope = 'probe'
    expect: 2
  - name: a ratio
    sql: SELECT 0.5
    expect: {between: [0, 1]}
rollback:
  sql: DELETE FROM evolution_snapshots WHERE scope = 'probe';
mode: transactional
"""


def test_a_stopped_rehearsal_shows_the_held_stop_the_failed_checks_and_the_residue(
    operator: Role, world_dsn: str, project_dir: Path
) -> None:
    (project_dir / "steps" / "50-ev-1.yaml").write_text(PROBE, encoding="utf-8")
    (project_dir / "plans" / "ev.yaml").write_text(
        "id: ev\ntitle: evidence\nsource: test\nsteps: [EV-1]\nfold_ins: {}\nglobal_stop: []\n", encoding="utf-8"
    )
    with pytest.raises(StopHeld):
        commands.rehearse(Target(operator.dsn, "--dsn"), project_dir, "EV-1")
    with psycopg.connect(world_dsn, autocommit=True) as conn:
        entry = [e for e in ledger.read_all(conn) if e.kind == Kind.REHEARSAL][-1]
    assert entry.payload["outcome"] == Outcome.STOPPED
    document, md = evidence(project_dir, "EV-1", entry)
    assert document["checks"]["success"][1]["actual"] == "0.5"  # the ledger keeps non-integers as text
    assert md[:9] == [
        *header(entry, "step-50"),
        "- known residue (sequences, non-transactional): public.birth_registry_id_seq",
    ]
    tail = md[md.index("## Footprint") :]
    assert tail == [
        "## Footprint",
        "",
        "- new tables: none",
        "- public.evolution_snapshots: +1 ~0 -0",
        "",
        "## Re-verify",
        "",
        "| check | expected | actual | ok |",
        "|---|---|---|---|",
        "| one baseline snapshot | 1 | 1 | yes |",
        "",
        "## Success evidence",
        "",
        "| check | expected | actual | ok |",
        "|---|---|---|---|",
        "| two probe rows | 2 | 1 | NO |",
        "| a ratio | between [0, 1] | 0.5 | yes |",
        "",
        "## Stop conditions",
        "",
        "| condition | held | detail |",
        "|---|---|---|",
        "| a probe row exists | HELD | returned true |",
        "| never | no | returned false |",
        "",
        f"Verify the chain with `gcos ledger verify`; this record is seq {entry.seq}.",
    ]
