"""The rehearsal's Markdown evidence, rendered from templates/rehearsal.md.j2: the same bytes as the
hand-built Markdown it replaced (evidence files are hashed), for every section the template has."""

from __future__ import annotations

import json
from pathlib import Path

from gcos.checks import CheckResult
from gcos.execute import Footprint, StopResult
from gcos.ledger import LedgerEntry
from gcos.rehearsal_evidence import RehearsalResult, markdown, payload, write_evidence

ENTRY = LedgerEntry(7, "0" * 64, "a" * 8, "{}", {"recorded_at": "2026-11-29T10:11:12.345678Z"})
FULL = RehearsalResult(
    step="SB-12",
    ref="step-1",
    spec_hash="b" * 8,
    plan_id="build",
    plan_hash="c" * 8,
    run_id="d" * 32,
    outcome="residue",
    message="entry != exit after rehearsing SB-12: a | pipe; investigate.",
    reverify=(CheckResult("absent", "SELECT 1", "true", True, True),),
    stops=(
        StopResult("no law write", "sql", True, "returned true"),
        StopResult("few tables", "max_new_tables", False, "0"),
    ),
    success=(
        CheckResult("one row", "SELECT 1", "1", 2, False),
        CheckResult("broken", "SELECT 1", "1", None, False, error="division by zero"),
        CheckResult("ratio", "SELECT 1", "0.5", 0.5, True),
    ),
    footprint=Footprint(("public.t",), (), {"public.t": {"inserted": 1, "updated": 0, "deleted": 2}}),
    entry={"hash": "e" * 8},
    exit={"hash": "f" * 8},
    differences=("relation public.t added", "session setting work_mem 4MB -> 8MB"),
    residue=("public.s_id_seq",),
    duration_us=1234567,
)
BARE = RehearsalResult("X-1", "x", "b" * 8, None, None, "d" * 32, "reverify_mismatch", "re-verify of X-1 failed.")

# Produced by the hand-built rehearsal._markdown of main (a2658fb..1b5bfee) from FULL and BARE with ENTRY.
FULL_MD = """\
# Rehearsal of SB-12 (step-1): residue

- entry != exit after rehearsing SB-12: a | pipe; investigate.
- spec hash `bbbbbbbb`; plan build `cccccccc`
- ledger record seq 7, hash `aaaaaaaa`, at 2026-11-29T10:11:12.345678Z
- entry fingerprint `eeeeeeee`; exit fingerprint `ffffffff`
- duration 1.235 s; run id `dddddddddddddddddddddddddddddddd`
- known residue (sequences, non-transactional): public.s_id_seq

## Differences entry vs exit

- relation public.t added
- session setting work_mem 4MB -> 8MB

## Footprint

- new tables: public.t
- public.t: +1 ~0 -2

## Re-verify

| check | expected | actual | ok |
|---|---|---|---|
| absent | true | true | yes |

## Success evidence

| check | expected | actual | ok |
|---|---|---|---|
| one row | 1 | 2 | NO |
| broken | 1 | error: division by zero | NO |
| ratio | 0.5 | 0.5 | yes |

## Stop conditions

| condition | held | detail |
|---|---|---|
| no law write | HELD | returned true |
| few tables | no | 0 |

Verify the chain with `gcos ledger verify`; this record is seq 7.
"""
BARE_MD = """\
# Rehearsal of X-1 (x): reverify_mismatch

- re-verify of X-1 failed.
- spec hash `bbbbbbbb`; plan None `None`
- ledger record seq 7, hash `aaaaaaaa`, at 2026-11-29T10:11:12.345678Z
- entry fingerprint `-`; exit fingerprint `-`
- duration 0.000 s; run id `dddddddddddddddddddddddddddddddd`

Verify the chain with `gcos ledger verify`; this record is seq 7.
"""


def test_every_section_renders_as_the_hand_built_markdown_did() -> None:
    assert markdown(FULL, ENTRY) == FULL_MD
    assert markdown(BARE, ENTRY) == BARE_MD


def test_an_empty_footprint_says_none() -> None:
    empty = RehearsalResult(**{**BARE.__dict__, "footprint": Footprint((), (), {})})
    assert "- new tables: none\n" in markdown(empty, ENTRY)


def test_the_evidence_files_are_the_payload_and_the_markdown(tmp_path: Path) -> None:
    body = payload(FULL)
    json_path, md_path = write_evidence(tmp_path, FULL, ENTRY, body)
    assert Path(json_path).name == "20261129T101112.345678Z-seq7.json"
    document = json.loads(Path(json_path).read_text(encoding="utf-8"))
    assert document["ledger"] == {"seq": 7, "hash": "a" * 8, "recorded_at": ENTRY.record["recorded_at"]}
    assert document["checks"]["success"][2]["actual"] == "0.5"  # the ledger keeps floats as text
    assert Path(md_path).read_bytes() == FULL_MD.encode("utf-8")
