"""Expiring exceptions (issue 10 item 6, seed 000 P4; gcos/sql/025_exceptions.sql): a sovereign, never the committer,
waives one named stop, success or re-verify check of one step until it expires; rehearsal and commit honour it and
report the check as waived, and the commit's policy decision lists it.

Real roles on a copy of the adopted reference world (tests/test_commit.py World): an operator rehearses and commits,
sovereigns record exceptions and approve, a council member is refused. A stop is made to hold by the world itself
(a column added to evolution_snapshots), a success check by the project's spec (one more check that fails).
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import Role
from psycopg import sql
from psycopg.conninfo import make_conninfo
from test_commit import World, adopted_world

from gcos import commands, exceptions
from gcos.domain import Kind
from gcos.errors import GateRefused, GcosError, SpecError
from gcos.principals import add_principal
from gcos.spec import load_project

STOP = "evolution_snapshots schema change"
SUCCESS = "two draft ruleset rows"


@pytest.fixture
def world(world_dsn: str, gcos_adopted: None, project_dir: Path) -> Iterator[World]:
    yield from adopted_world(world_dsn, project_dir)


def make_person(w: World, key: str, roles: tuple[str, ...], person: str) -> Role:
    """A human principal of `roles` belonging to `person` (World.person makes one per key of its fixed table)."""
    name, password = f"gcos_t_{uuid.uuid4().hex[:8]}_{key}", secrets.token_hex(12)
    w.admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(name), sql.Literal(password)))
    for role in roles:
        w.admin.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(f"gcos_{role}"), sql.Identifier(name)))
    add_principal(w.admin, name, name=key.title(), kind="human", roles=roles, grant=False, person=person)
    row = w.admin.execute("SELECT oid::bigint FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
    assert row is not None
    w.people[key] = Role(name, make_conninfo(w.dsn, user=name, password=password), int(row[0]))
    return w.people[key]


def waive(w: World, check: str, who: str = "sovereign", **kw: Any) -> exceptions.ExceptionReceipt:
    return exceptions.record(
        w.target(who), w.project, "SB-12", check, expires_in=kw.pop("expires_in", "1h"), reason="R-7 accepted", **kw
    )


def rehearse(w: World) -> Any:
    """The rehearsal's result, passed or not (a failed one is raised with the result as its details)."""
    try:
        return commands.rehearse(w.target("operator"), w.project, "SB-12")
    except GcosError as exc:
        return exc.details


def hold_the_stop(w: World) -> None:
    w.admin.execute("ALTER TABLE evolution_snapshots ADD COLUMN gcos_note text")


def add_failing_success(w: World) -> None:
    spec = w.project / "steps" / "01-sb-12.yaml"
    text = spec.read_text(encoding="utf-8")
    extra = f"success:\n  - name: {SUCCESS}\n    sql: SELECT count(*) FROM governance_ruleset\n    expect: 2\n"
    spec.write_text(text.replace("success:\n", extra, 1), encoding="utf-8")


def raw_record(w: World, who: str, check: str, expires: str | None) -> None:
    """gcos.record_exception called directly, as `who`, on SB-12's registered spec."""
    step = load_project(w.project).step("SB-12")
    with psycopg.connect(w.person(who).dsn, autocommit=True) as conn:
        conn.execute(
            "SELECT * FROM gcos.record_exception('SB-12', %s, 'stop', %s, "
            "pg_catalog.clock_timestamp() + %s::interval, 'why')",
            (step.hash, check, expires),
        )


def test_who_may_record_and_which_exceptions_never_apply(world: World) -> None:
    hold_the_stop(world)
    assert rehearse(world).outcome == "stopped"  # registers the spec
    with pytest.raises(GateRefused):
        waive(world, STOP, who="council")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):  # 42501 from the database, whatever a client checks
        raw_record(world, "council", STOP, "1h")
    for check, expires in [("no such check", "1h"), (STOP, None), (STOP, "-1 second"), (STOP, "0")]:
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            raw_record(world, "sovereign", check, expires)
    with pytest.raises(SpecError):
        waive(world, "no such check")
    assert world.records(Kind.EXCEPTION) == []

    # revoked: recorded, then withdrawn, not honoured
    code, out = world.cli("except", "SB-12", STOP, "--expires-in", "1h", "--reason", "R-7", who="sovereign")
    assert code == 0 and out["ok"] is True, out
    revoked = out["result"]["exception_id"]
    code, out = world.cli("except", "--revoke", str(revoked), "--reason", "fixed upstream", who="sovereign")
    assert code == 0 and out["result"]["exception_id"] == revoked, out
    assert rehearse(world).outcome == "stopped"
    # expired (expires_at <= now): the database clock passes it, then the rehearsal does not honour it
    short = waive(world, STOP, expires_in="1s")
    deadline = time.monotonic() + 30
    while world.admin.execute("SELECT clock_timestamp() <= %s", (short.expires_at,)).fetchone() != (False,):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    result = rehearse(world)
    assert result.outcome == "stopped" and not any(s.waived for s in result.stops)
    # in force on the spec it was bound to, not on an edited one
    waive(world, STOP)
    assert rehearse(world).outcome == "passed"
    add_failing_success(world)
    edited = rehearse(world)
    assert edited.outcome == "stopped" and not any(s.waived for s in edited.stops)
    kinds = [e.kind for e in world.entries() if e.kind.startswith("exception")]
    assert kinds == [Kind.EXCEPTION, Kind.EXCEPTION_REVOCATION, Kind.EXCEPTION, Kind.EXCEPTION]


def test_rehearsal_and_commit_honour_a_sovereigns_exception_but_not_the_committers_own(world: World) -> None:
    hold_the_stop(world)
    add_failing_success(world)
    assert rehearse(world).outcome == "stopped"
    stop = waive(world, STOP)
    assert rehearse(world).outcome == "success_failed"
    success = waive(world, SUCCESS)
    passed = rehearse(world)
    assert passed.outcome == "passed", passed.message
    (waived_stop,) = [s for s in passed.stops if s.waived]
    assert waived_stop.name == STOP and waived_stop.held and waived_stop.waived["exception_id"] == stop.exception_id
    (waived_check,) = [c for c in passed.success if c.waived]
    assert waived_check.name == SUCCESS and not waived_check.ok
    record = world.records(Kind.REHEARSAL, "SB-12")[-1].payload
    assert {e["exception_id"] for e in record["exceptions"]} == {stop.exception_id, success.exception_id}

    # the approver is another sovereign; the committer "Sov-Op" is the person who recorded the exceptions
    make_person(world, "approver", ("sovereign",), "Another Sovereign")
    world.approve(who="approver")
    make_person(world, "sov-op", ("operator",), "Sovereign")
    head = world.head()
    with pytest.raises(GcosError):
        commands.commit(world.target("sov-op"), world.project, "SB-12")
    (stopped,) = [e for e in world.entries(after=head) if e.kind == Kind.STOP]
    decision = stopped.payload["policy_decision"]
    assert decision["exceptions"] == []
    assert {e["exception_id"] for e in decision["exceptions_not_applied"]} == {stop.exception_id, success.exception_id}
    assert world.owner("governance_ruleset") is None

    committed = world.commit()
    assert committed.ok
    assert committed.decision is not None
    assert {e["exception_id"] for e in committed.decision.exceptions} == {stop.exception_id, success.exception_id}
    (policy,) = [e for e in world.records(Kind.POLICY_DECISION, "SB-12")]
    assert {e["exception_id"] for e in policy.payload["exceptions"]} == {stop.exception_id, success.exception_id}
    assert [s.name for s in committed.stops if s.waived] == [STOP]
    assert [c.name for c in committed.success if c.waived] == [SUCCESS]
    assert world.owner("governance_ruleset") is not None

    # the report shows the exceptions of the step, and those its commit applied
    report = commands.report(world.target("operator"), world.project, "SB-12", "md", world.project / "out")
    (text,) = [f.read_text(encoding="utf-8") for f in report.files if f.suffix == ".md" and "SB-12" in f.name]
    assert "Exceptions (checks of SB-12 waived by a sovereign)" in text
    assert f"Exceptions applied: stop {STOP} (exception {stop.exception_id} by Sovereign" in text


def test_revoke_takes_no_step_check_or_expiry(tmp_path: Path) -> None:
    """`gcos except --revoke ID` with a step, a check or an expiry is refused before any connection (exit 2)."""
    from typer.testing import CliRunner

    from gcos.cli import app

    result = CliRunner().invoke(
        app, ["except", "SB-12", "--revoke", "1", "--dsn", "postgresql://nobody@/none?host=/nonexistent", "--json"]
    )
    assert result.exit_code == 2, result.output
    assert "takes only --reason" in " ".join(result.output.split())
