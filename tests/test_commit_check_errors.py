"""A check that cannot run inside the commit transaction is a recorded stop (exit 4), never half-applied."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from conftest import MakeRole

from gcos import commands, ledger
from gcos.errors import StopHeld
from gcos.target import Target

# Holds (returns 1) while no approval exists — at rehearsal — and divides by zero once one does — at commit.
ERRORS_AT_COMMIT = "SELECT 1 / (1 - (SELECT count(*) FROM gcos.os_proposal_approvals))::int"


def test_a_success_check_that_errors_at_commit_is_a_recorded_stop(
    world_dsn: str, project_dir: Path, world_role: MakeRole
) -> None:
    path = project_dir / "steps" / "01-sb-12.yaml"
    text = path.read_text()
    marker = "success:\n"
    path.write_text(
        text.replace(marker, f"{marker}  - name: errors at commit\n    sql: {ERRORS_AT_COMMIT}\n    expect: 1\n", 1)
    )
    target = Target(world_dsn, "--dsn")
    sovereign = world_role("sovereign", kind="human", roles=("sovereign",), grant=("sovereign",))
    assert commands.rehearse(target, project_dir, "SB-12").ok
    commands.approve(Target(sovereign.dsn, "--dsn"), project_dir, "SB-12", verdict="approve", expires_in="1h")
    with pytest.raises(StopHeld, match="errors at commit") as caught:
        commands.commit(target, project_dir, "SB-12")
    assert caught.value.exit_code == 4
    with psycopg.connect(world_dsn, autocommit=True) as conn:
        assert conn.execute("SELECT to_regclass('public.governance_ruleset')").fetchone() == (None,)
        kinds = [e.kind for e in ledger.read_all(conn)]
    assert kinds[-1] == "stop" and "commit" not in kinds
