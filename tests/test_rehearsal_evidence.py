"""The evidence files of a kernel rehearsal (rehearsals/<STEP>/<time>-seq<N>.json and .md): the JSON is the
record the kernel appended to the ledger, the Markdown (evidence/templates/rehearsal.md.j2) shows every part
of it an auditor reads, failed checks and held stop conditions included."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import MakeRole, Role
from test_commit import World, adopted_world
from test_global_stops import BUS
from typer.testing import CliRunner

from gcos import commands, ledger, record_evidence
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


# --------------------------------------------------------------------------- commit, rollback and stop records
# (gcos/record_evidence.py: beside the rehearsals', written by the command that appended the record)


@pytest.fixture
def world(world_dsn: str, gcos_adopted: None, project_dir: Path) -> Iterator[World]:
    yield from adopted_world(world_dsn, project_dir)


def record_files(w: World, step: str, kind: str) -> dict[int, dict[str, Any]]:
    """The `kind` evidence documents of `step` on disk, by seq; each .json has its .md beside it."""
    out = {}
    for path in sorted((w.project / "rehearsals" / step).glob(f"*-seq*-{kind}.json")):
        assert path.with_suffix(".md").is_file()
        doc = json.loads(path.read_text(encoding="utf-8"))
        out[int(doc["ledger"]["seq"])] = doc
    return out


def same_as_ledger(doc: dict[str, Any], entry: ledger.LedgerEntry) -> None:
    assert doc["kind"] == entry.kind and doc["canonical"] == entry.canonical and doc["ledger"]["hash"] == entry.hash


def test_a_rollback_and_its_refusal_write_their_evidence_files(world: World) -> None:
    world.rehearse()
    world.approve()
    committed = world.commit()
    (commit,) = world.records(Kind.COMMIT)
    assert committed.evidence == tuple(str(p) for p in record_paths(world, commit)) and not committed.evidence_missing

    code, out = world.cli("rollback", "SB-12")  # no rollback approval yet: refused, and its files written
    assert code == ExitCode.GATE_REFUSED and "evidence_missing" not in out["details"], out
    (refusal,) = world.records(Kind.ROLLBACK_REFUSED)
    same_as_ledger(record_files(world, "SB-12", Kind.ROLLBACK_REFUSED)[refusal.seq], refusal)

    world.approve(rollback=True)
    code, out = world.cli("rollback", "SB-12")
    assert code == 0 and out["result"]["evidence_missing"] is None, out
    (rollback,) = world.records(Kind.ROLLBACK)
    assert out["result"]["evidence"] == [str(p) for p in record_paths(world, rollback)]
    (doc,) = record_files(world, "SB-12", Kind.ROLLBACK).values()
    same_as_ledger(doc, rollback)
    md = record_paths(world, rollback)[1].read_text(encoding="utf-8")
    assert f"hash `{rollback.hash}`" in md


def record_paths(w: World, entry: ledger.LedgerEntry) -> list[Path]:
    stem = record_evidence.file_stem(entry)
    return [w.project / "rehearsals" / str(entry.record["step_id"]) / f"{stem}.{ext}" for ext in ("json", "md")]


def test_a_stop_at_commit_writes_its_evidence_files(world: World) -> None:
    """The footprint stop holds only after the mutation (as in test_global_stops): the kernel writes a `stop`
    record, the command exits 4, and the record's files are beside the rehearsal's."""
    world.rehearse()
    world.approve()
    world.admin.execute(
        "DELETE FROM reference_world_baseline WHERE table_name IN (SELECT table_name FROM reference_world_baseline"
        " WHERE table_name !~ %s AND to_regclass('public.' || table_name) IS NOT NULL ORDER BY table_name LIMIT 5)",
        (BUS,),
    )
    code, out = world.cli("commit", "SB-12")
    assert code == ExitCode.STOP_HELD, out
    (stop,) = world.records(Kind.STOP)
    (doc,) = record_files(world, "SB-12", Kind.STOP).values()
    same_as_ledger(doc, stop)
    assert "§70.2 #7 footprint exceeds 5 new tables" in record_paths(world, stop)[1].read_text(encoding="utf-8")


def block_folder(w: World, step: str) -> Path:
    """Make rehearsals/<step> unwritable even for root: the folder becomes a plain file (its files kept aside)."""
    folder = w.project / "rehearsals" / step
    if folder.exists():
        folder.rename(folder.with_name(f"{step}.kept"))
    folder.write_text("not a folder\n", encoding="utf-8")
    return folder


def test_evidence_that_cannot_be_written_never_fails_an_applied_commit_and_report_writes_it_again(
    world: World,
) -> None:
    world.rehearse()
    blocked = block_folder(world, "SB-12")
    code, out = world.cli("commit", "SB-12")  # refused (no approval): its own exit code, and the sentence
    assert code == ExitCode.GATE_REFUSED, out
    missing = out["details"]["evidence_missing"]
    assert missing.startswith(f"Its evidence file {blocked} could not be written (")
    assert "`gcos report SB-12 --format records --out" in missing and out["error"].endswith(missing)
    assert world.records(Kind.COMMIT_REFUSED)

    world.approve()
    runner = CliRunner()
    args = ["commit", "SB-12", "--dsn", world.person("operator").dsn, "--project", str(world.project)]
    done = runner.invoke(app, args)
    assert done.exit_code == 0, done.output  # applied: the files are evidence, the ledger record is the fact
    (commit,) = world.records(Kind.COMMIT)
    assert f"Its evidence file {blocked} could not be written" in " ".join(done.output.split())
    assert not any(p.exists() for p in record_paths(world, commit))

    blocked.unlink()
    again = world.project / "rehearsals"
    code, out = world.cli("report", "SB-12", "--format", "records", "--out", str(again))
    assert code == 0, out
    kinds = {Path(f).name.split("-", 2)[-1] for f in out["result"]["files"]}
    assert {p.name.split("-", 2)[-1] for p in record_paths(world, commit)} <= kinds
    (doc,) = record_files(world, "SB-12", Kind.COMMIT).values()
    same_as_ledger(doc, commit)
    (refused,) = record_files(world, "SB-12", Kind.COMMIT_REFUSED).values()
    same_as_ledger(refused, world.records(Kind.COMMIT_REFUSED)[0])


def test_without_gcos_commit_and_drift_still_say_install_first(dsn: str, project_dir: Path) -> None:
    """The evidence hook reads the ledger's head before the action; where there is no ledger it steps aside and
    the action's own refusal (exit 2, run `gcos install`) is what the user sees, no files, no extra sentence."""
    runner = CliRunner()
    for args in (["commit", "SB-12", "--project", str(project_dir)], ["drift", "--project", str(project_dir)]):
        done = runner.invoke(app, [*args, "--dsn", dsn, "--json"])
        out = json.loads(done.stdout)
        assert done.exit_code == ExitCode.BAD_INPUT, out
        assert out["error"] == "gcos is not installed in this database; run `gcos install` first.", out
    assert not list((project_dir / "rehearsals").glob("*/*-seq*"))
