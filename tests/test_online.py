"""Online steps (`mode: online`, issue 11 item 5; gcos/sql/035_online_steps.sql, gcos/online.py): concurrent
statements run outside a transaction, each decided by the kernel; the rehearsal runs the transactional
equivalent and says so; a failed CREATE INDEX CONCURRENTLY leaves an INVALID index that the next attempt finds
and drops; the success checks prove pg_index.indisvalid; and the window in which a session holds gcos_kernel's
rights for its one ticketed statement is attacked from inside and outside.

Real roles on an adopted copy of the reference world (World from test_commit.py); outcomes are read from the
ledger and the catalog, never from sentences."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb
from test_commit import World, adopted_world

from gcos import commands, ledger, online, registry, sqlcheck
from gcos.errors import GateRefused, SpecError
from gcos.spec import load_project
from gcos.spec.load import load_step

INDEX = "evolution_snapshots_scope_idx"


def step_yaml(sql: str, *, allow: str = f"{{create_index: {INDEX}}}", mode: str = "online", step: str = "IDX-1") -> str:
    return textwrap.dedent(
        """\
        id: {step}
        title: An index built online
        order: 90
        mode: {mode}
        depends_on: []
        approvals: {{signers: 1, roles: [sovereign]}}
        watch: [evolution_snapshots]
        mutation:
          sql: |
        {sql}
          allow:
            - {allow}
        success:
          - name: the index is valid
            sql: SELECT coalesce(bool_and(indisvalid), false) FROM pg_index WHERE indexrelid = to_regclass('public.{index}')
            expect: true
        rollback:
          sql: DROP INDEX IF EXISTS {index};
        """
    ).format(step=step, mode=mode, sql=textwrap.indent(sql.strip(), "    "), allow=allow, index=INDEX)


def add_step(project: Path, text: str, step: str = "IDX-1") -> None:
    (project / "steps" / f"90-{step.lower()}.yaml").write_text(text)
    (project / "plans" / f"{step.lower()}.yaml").write_text(f"id: {step.lower()}\ntitle: online\nsteps: [{step}]\n")


CIC = f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {INDEX} ON evolution_snapshots (scope);"


@pytest.fixture
def ow(world_dsn: str, gcos_adopted: None, project_dir: Path) -> Iterator[World]:
    add_step(project_dir, step_yaml(CIC))
    yield from adopted_world(world_dsn, project_dir)


def index_state(w: World, name: str = INDEX) -> Any:
    """None while absent, else pg_index.indisvalid."""
    row = w.admin.execute(
        "SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass(%s)", (f"public.{name}",)
    ).fetchone()
    return None if row is None else row[0]


def members(w: World) -> list[str]:
    rows = w.admin.execute(
        "SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member "
        "WHERE m.roleid = 'gcos_kernel'::regrole"
    ).fetchall()
    return [r[0] for r in rows]


def test_online_step_rehearses_its_equivalent_then_commits_concurrently(ow: World) -> None:
    ow.rehearse("IDX-1")
    (rehearsal,) = ow.records("rehearsal", "IDX-1")
    assert rehearsal.payload["outcome"] == "passed"
    assert rehearsal.payload["online"]["rehearsed"] == "the transactional equivalent"
    assert "CONCURRENTLY" not in rehearsal.payload["online"]["sql"].upper()
    assert index_state(ow) is None  # rolled back
    ow.approve("IDX-1")
    result = ow.commit("IDX-1")
    assert result.outcome == "applied"
    assert index_state(ow) is True
    (record,) = ow.records("commit", "IDX-1")
    assert record.payload["online"] is True and record.payload["indexes"] == [{"index": INDEX, "valid": True}]
    assert members(ow) == []  # the lent rights are gone
    assert ow.state("IDX-1") == "committed"
