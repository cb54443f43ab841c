"""What the kernel finds only once the step is applied inside the commit's transaction (a stop condition that
holds, a success check that fails or cannot run) undoes the step: a recorded stop and the world as it was;
exit 4, or 2 where the check's SQL errored (CONTRACT.md "Exit codes"; gcos/sql/011_kernel_rehearse.sql
"Outcomes", 012_kernel_commit.sql step 5)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_commit import World, adopted_world

from gcos import fingerprint
from gcos.domain import Kind, Outcome
from gcos.errors import ExitCode

# Each holds at rehearsal (6 owner agencies) and not at commit, once a superuser has added a seventh.
STOP = "stop:\n  - name: a seventh owner agency\n    sql: SELECT count(*) > 6 FROM owner_agencies\n"
FAILS = "success:\n  - name: six owner agencies\n    sql: SELECT count(*) FROM owner_agencies\n    expect: 6\n"
ERRORS = (
    "success:\n  - name: errors at commit\n"
    "    sql: SELECT 1 / (7 - (SELECT count(*) FROM owner_agencies))::int\n    expect: 1\n"
)


@pytest.fixture
def world(world_dsn: str, gcos_adopted: None, project_dir: Path) -> Iterator[World]:
    yield from adopted_world(world_dsn, project_dir)


@pytest.mark.parametrize(
    ("section", "outcome", "exit_code"),
    [
        (STOP, Outcome.STOPPED, ExitCode.STOP_HELD),
        (FAILS, Outcome.SUCCESS_FAILED, ExitCode.STOP_HELD),
        (ERRORS, "commit_failed", ExitCode.BAD_INPUT),
    ],
    ids=["stop holds", "success fails", "success errors"],
)
def test_what_fails_inside_the_commit_is_a_recorded_stop_and_the_world_stays(
    world: World, section: str, outcome: str, exit_code: ExitCode
) -> None:
    spec = world.project / "steps" / "01-sb-12.yaml"
    head = section.split("\n", 1)[0] + "\n"
    spec.write_text(spec.read_text().replace(head, section, 1))
    world.rehearse()
    world.approve()
    world.admin.execute("INSERT INTO owner_agencies VALUES ('T-7', 'A seventh agency', 'office')")
    before = fingerprint.take(world.admin)
    mark = world.head()
    code, out = world.cli("commit", "SB-12")
    assert code == exit_code and out["details"]["outcome"] == outcome, out
    (stop,) = world.entries(after=mark)
    assert stop.kind == Kind.STOP and stop.payload["outcome"] == outcome and stop.payload["kernel"] is True
    assert stop.seq == out["details"]["ledger_seq"]
    assert fingerprint.take(world.admin).hash == before.hash and world.owner("governance_ruleset") is None
