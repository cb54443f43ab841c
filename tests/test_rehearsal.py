"""gcos rehearse on a world whose schema public the kernel governs: the kernel (gcos/sql/011) runs the step in a
transaction it always rolls back, proves entry == exit, and every outcome has its exit code and its record;
nothing the rehearsal did stays, whatever the outcome."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import MakeRole, Role, fingerprint
from typer.testing import CliRunner

from gcos import commands, ledger, registry
from gcos.cli import app
from gcos.domain import Kind, Outcome
from gcos.errors import ExitCode, GcosError
from gcos.spec import load_project
from gcos.target import SessionSettings, Target

SB_12 = "steps/01-sb-12.yaml"
WATCH = (
    "evolution_snapshots",
    "measurement_registry",
    "laws",
    "law_versions",
    "law_articles",
    "event_type_registry",
    "queue_heartbeat",
    "dot_domains",
)
"""The tables the reference plan's steps read or write: their rows join the world's fingerprint here."""


@pytest.fixture
def operator(world_dsn: str, gcos_adopted: None, world_role: MakeRole) -> Role:
    """A named human operator on a copy of the reference world whose schema public the kernel governs."""
    return world_role("op", kind="human", roles=("operator",), grant=("operator",))


def target(role: Role) -> Target:
    return Target(role.dsn, "--dsn")


def edit(project_dir: Path, old: str, new: str, path: str = SB_12) -> None:
    """Change a spec of the scratch project (the text must be there once)."""
    file = project_dir / path
    text = file.read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    file.write_text(text.replace(old, new), encoding="utf-8")


def world_state(dsn: str) -> tuple[str, dict[str, int]]:
    """The world's fingerprint (gcos.fingerprint): schema and watched rows (the hash), and every sequence."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        taken = fingerprint(conn, WATCH)
    return taken["hash"], taken["sequences"]


def rehearsals(dsn: str) -> list[ledger.LedgerEntry]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return [e for e in ledger.read_all(conn) if e.kind == Kind.REHEARSAL]


def open_gcos_sessions(dsn: str) -> list[Any]:
    """gcos sessions of this test's database still in a transaction or waiting: a rehearsal must leave none
    (other tests' gcos sessions in other databases of the server are theirs)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(
            "SELECT pid, state, wait_event FROM pg_stat_activity WHERE application_name = 'gcos'"
            " AND datname = current_database() AND (state LIKE 'idle in%%' OR state = 'active')"
        ).fetchall()


def test_a_passing_rehearsal_proves_entry_equals_exit_and_leaves_the_world_as_it_was(
    operator: Role, world_dsn: str, project_dir: Path
) -> None:
    """SB-12 of the main plan and step 7 (SB-1/SB-2, its own decision-gated plan, rehearsed on its own)."""
    before = world_state(world_dsn)
    for ref, new_tables in (
        ("SB-12", {"public.governance_ruleset"}),
        ("step-7", {"public.governance_object_ownership"}),
    ):
        commands.rehearse(target(operator), project_dir, ref)
        record = rehearsals(world_dsn)[-1]
        prints = record.payload["fingerprints"]
        assert record.payload["outcome"] == Outcome.PASSED, record.payload["message"]
        assert prints["entry"]["hash"] == prints["after_rollback"]["hash"] == prints["exit"]["hash"]
        assert prints["inside"]["schema_hash"] != prints["entry"]["schema_hash"]  # the step did run
        assert new_tables <= set(record.payload["footprint"]["new_tables"])
        assert record.payload["allow_violations"] == [] and record.payload["residue"]["session"] == []
        # the kernel's exit fingerprint is the one gcos.fingerprint gives of the world afterwards
        step = load_project(project_dir).step(ref)
        with psycopg.connect(world_dsn, autocommit=True) as conn:
            assert prints["exit"]["hash"] == fingerprint(conn, step.watch)["hash"]
    assert world_state(world_dsn) == before
    assert open_gcos_sessions(world_dsn) == []


# --------------------------------------------------------------------------- every failure: its exit, its record


def activate_the_ruleset(project_dir: Path) -> None:
    """Seed 002 step 1 stop: "ruleset would be created active/activated without A-4"."""
    edit(
        project_dir,
        "    WHERE r.ruleset_version = 1;\n",
        "    WHERE r.ruleset_version = 1;\n    UPDATE governance_ruleset SET activated_at = now();\n",
    )
    edit(
        project_dir,
        "    - {comment: governance_ruleset}\n",
        "    - {comment: governance_ruleset}\n    - {update: governance_ruleset}\n",
    )


def expect_two_rulesets(project_dir: Path) -> None:
    edit(
        project_dir,
        "    sql: SELECT count(*) FROM governance_ruleset\n    expect: 1\n",
        "    sql: SELECT count(*) FROM governance_ruleset\n    expect: 2\n",
    )


LEFT_BEHIND = """\
    ALTER TABLE laws ADD COLUMN extra integer;
    ALTER TABLE laws ADD CONSTRAINT extra_check CHECK (true);
    CREATE INDEX extra_idx ON laws (law_id);
    CREATE TRIGGER extra_trg BEFORE UPDATE ON laws FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger();
    CREATE FUNCTION extra_fn() RETURNS int LANGUAGE sql AS 'SELECT 1';
    CREATE VIEW extra_view AS SELECT 1 AS one;
    CREATE TYPE extra_enum AS ENUM ('a', 'b');
  allow:
    - {alter_table: laws}
    - {create_index: extra_idx}
    - {create_function: extra_fn}
    - {create_view: extra_view}
    - {create_type: extra_enum}
"""
"""A change in each category of the fingerprint an allow list can permit (schemas, standalone sequences and
policies it cannot: those stop the step), none of which the rollback evidence undoes."""
LEFT_BEHIND_NAMED = (
    "column public.laws.extra added",
    "constraint public.laws.extra_check added",
    "index public.extra_idx added",
    "trigger public.laws.extra_trg added",
    "function public.extra_fn() added",
    "relation public.extra_view added",
    "type public.extra_enum added",
    "table_data public.laws changed",
    "table_data public.evolution_snapshots changed",
)


def forget_to_undo(project_dir: Path) -> None:
    (project_dir / "rollback" / "sb-12.sql").write_text("DROP TABLE governance_ruleset;\n")  # the snapshot row stays
    edit(project_dir, "\n  allow:\n", "\n" + LEFT_BEHIND)


def break_a_success_check(project_dir: Path) -> None:
    edit(
        project_dir,
        "    sql: SELECT count(*) FROM governance_ruleset\n",
        "    sql: SELECT count(*) / 0 FROM governance_ruleset\n",
    )


def divide_by_zero(project_dir: Path) -> None:
    edit(
        project_dir,
        "    WHERE r.ruleset_version = 1;\n",
        "    WHERE r.ruleset_version = 1;\n    INSERT INTO governance_ruleset (ruleset_version) VALUES (1 / 0);\n",
    )


@dataclass(frozen=True)
class Fault:
    step: str
    exit: ExitCode
    outcome: Outcome
    change: Callable[[Path], None] = lambda _: None
    blocker: str | None = None
    """SQL another session holds in an open transaction while the rehearsal runs."""


FAULTS = {
    "stop condition holds": Fault("SB-12", ExitCode.STOP_HELD, Outcome.STOPPED, activate_the_ruleset),
    "success evidence fails": Fault("SB-12", ExitCode.STOP_HELD, Outcome.SUCCESS_FAILED, expect_two_rulesets),
    "rollback evidence leaves changes": Fault("SB-12", ExitCode.RESIDUE, Outcome.ROLLBACK_UNPROVEN, forget_to_undo),
    "re-verify mismatch": Fault("SB-10", ExitCode.REVERIFY_MISMATCH, Outcome.REVERIFY_MISMATCH),  # SB-12/13 not applied
    "success check errors": Fault("SB-12", ExitCode.BAD_INPUT, Outcome.CHECK_FAILED, break_a_success_check),
    "mutation errors": Fault("SB-12", ExitCode.BAD_INPUT, Outcome.MUTATION_FAILED, divide_by_zero),
    "table locked by another session": Fault(
        "SB-12",
        ExitCode.DATABASE_UNAVAILABLE,
        Outcome.LOCK_TIMEOUT,
        blocker="LOCK TABLE evolution_snapshots IN SHARE MODE",  # readers pass, the step's INSERT waits
    ),
}


@contextmanager
def held(dsn: str, blocker: str | None) -> Iterator[None]:
    """`blocker` run by another session in a transaction kept open around the block."""
    if blocker is None:
        yield
        return
    with psycopg.connect(dsn, autocommit=True) as holder:
        holder.execute("BEGIN")
        holder.execute(blocker)
        try:
            yield
        finally:
            holder.execute("ROLLBACK")


@pytest.mark.parametrize("fault", FAULTS.values(), ids=list(FAULTS))
def test_a_failed_rehearsal_has_its_exit_and_record_and_leaves_the_world_as_it_was(
    operator: Role, world_dsn: str, project_dir: Path, fault: Fault
) -> None:
    fault.change(project_dir)
    before = world_state(world_dsn)
    with held(world_dsn, fault.blocker), pytest.raises(GcosError) as caught:
        started = time.monotonic()
        commands.rehearse(target(operator), project_dir, fault.step, settings=SessionSettings(lock_timeout="500ms"))
    assert caught.value.exit_code == fault.exit, caught.value.message
    assert time.monotonic() - started < 0.5 + 10  # a lock is waited for lock_timeout, not the blocker's lifetime
    (record,) = rehearsals(world_dsn)
    assert record.record["step_id"] == fault.step and record.payload["outcome"] == fault.outcome
    assert record.payload["kernel"] is True
    assert world_state(world_dsn) == before
    assert open_gcos_sessions(world_dsn) == []
    if fault.outcome == Outcome.STOPPED:
        held_stops = [s["name"] for s in record.payload["checks"]["stop"] if s["held"]]
        assert held_stops == ["ruleset created active/activated without A-4"]
    if fault.outcome == Outcome.SUCCESS_FAILED:
        assert [c["name"] for c in record.payload["checks"]["success"] if not c["ok"]] == ["no other ruleset row"]
    if fault.outcome == Outcome.ROLLBACK_UNPROVEN:  # every difference the rollback evidence left is named
        prints = record.payload["fingerprints"]
        assert prints["after_rollback"]["hash"] != prints["entry"]["hash"] == prints["exit"]["hash"]
        assert all(f'"{d}"' in record.payload["message"] for d in LEFT_BEHIND_NAMED), record.payload["message"]
    if fault.outcome == Outcome.REVERIFY_MISMATCH:  # nothing ran: no fingerprint, no footprint
        assert record.payload["fingerprints"]["entry"] == {} and record.payload["footprint"] is None
        failed = {c["name"] for c in record.payload["checks"]["reverify"] if not c["ok"]}
        assert "governance_ruleset present (FK target)" in failed


# --------------------------------------------------------------------------- other sessions at work meanwhile


def rehearse_while_waiting(role: Role, project_dir: Path, count: int, meanwhile: Callable[[], None]) -> list[Any]:
    """`count` rehearsals of SB-12 whose mutation waits for advisory lock 515, held by another session until
    every one of them waits (inside its transaction, after its entry fingerprint) and `meanwhile` has run."""
    edit(
        project_dir,
        "    WHERE r.ruleset_version = 1;\n",
        "    WHERE r.ruleset_version = 1 AND pg_advisory_xact_lock(515) IS NOT NULL;\n",
    )
    outcomes: list[Any] = []

    def run() -> None:
        try:
            outcomes.append(commands.rehearse(target(role), project_dir, "SB-12").outcome)
        except GcosError as exc:
            outcomes.append(exc.exit_code)

    with psycopg.connect(role.dsn, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(515)")
        threads = [threading.Thread(target=run) for _ in range(count)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        waiting = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'gcos' AND wait_event_type = 'Lock'"
        while holder.execute(waiting).fetchone() != (count,):
            assert time.monotonic() < deadline, "the rehearsals never reached the advisory lock"
            time.sleep(0.05)
        meanwhile()
        holder.execute("SELECT pg_advisory_unlock(515)")
        for thread in threads:
            thread.join()
    return outcomes


def test_analyze_and_vacuum_by_another_session_during_a_rehearsal_change_nothing(
    operator: Role, world_dsn: str, project_dir: Path
) -> None:
    """Statistics and storage are not the world: a rehearsal that spans them still proves entry == exit."""

    def analyze() -> None:
        with psycopg.connect(world_dsn, autocommit=True) as other:
            other.execute("ANALYZE evolution_snapshots")
            other.execute("ANALYZE measurement_registry")
            other.execute("VACUUM measurement_registry")

    assert rehearse_while_waiting(operator, project_dir, 1, analyze) == [Outcome.PASSED]
    prints = rehearsals(world_dsn)[-1].payload["fingerprints"]
    assert prints["entry"]["hash"] == prints["exit"]["hash"]


def test_concurrent_rehearsals_do_not_see_each_other(operator: Role, world_dsn: str, project_dir: Path) -> None:
    assert rehearse_while_waiting(operator, project_dir, 2, lambda: None) == [Outcome.PASSED, Outcome.PASSED]
    assert [r.payload["outcome"] for r in rehearsals(world_dsn)] == [Outcome.PASSED, Outcome.PASSED]


def test_a_rehearsal_waiting_for_a_commit_names_who_holds_the_commit_lock(
    operator: Role, world_dsn: str, project_dir: Path
) -> None:
    """A commit holds the commit lock exclusively; a rehearsal that waits lock_timeout for its share is exit 8,
    naming the holder, and writes nothing."""
    with psycopg.connect(world_dsn, autocommit=True) as holder, holder.transaction():
        holder.execute("SELECT pg_advisory_xact_lock(pg_catalog.hashtextextended('gcos:commit', 0))")
        with pytest.raises(GcosError) as busy:
            commands.rehearse(target(operator), project_dir, "SB-12", settings=SessionSettings(lock_timeout="200ms"))
        assert busy.value.exit_code == ExitCode.DATABASE_UNAVAILABLE
        assert f"pid {holder.info.backend_pid}" in busy.value.message
    assert rehearsals(world_dsn) == []


def test_a_rehearsal_shares_the_commit_lock_and_outlives_other_appends(
    operator: Role, world_dsn: str, project_dir: Path
) -> None:
    """While a rehearsal runs, commits (which take the commit lock exclusively) wait for it, other rehearsals do
    not, and whatever else reaches the ledger meanwhile (here a registration) does not fail it (READ COMMITTED:
    its record follows the others)."""
    seen: dict[str, Any] = {}

    def meanwhile() -> None:
        with psycopg.connect(world_dsn) as other:  # one transaction: both tries hold until it ends
            key = "pg_catalog.hashtextextended('gcos:commit', 0)"
            seen["exclusive"] = other.execute(f"SELECT pg_try_advisory_xact_lock({key})").fetchone()
            seen["shared"] = other.execute(f"SELECT pg_try_advisory_xact_lock_shared({key})").fetchone()
        with psycopg.connect(world_dsn, autocommit=True) as admin:
            project = load_project(project_dir)
            seen["registered"] = registry.register_spec(admin, project.step("SB-11"))

    assert rehearse_while_waiting(operator, project_dir, 1, meanwhile) == [Outcome.PASSED]
    assert seen["exclusive"] == (False,) and seen["shared"] == (True,)
    with psycopg.connect(world_dsn, autocommit=True) as conn:
        entries = ledger.read_all(conn)
    registered = seen["registered"]
    (registration,) = [e for e in entries if e.kind == Kind.SPEC_REGISTERED and e.record["spec_hash"] == registered]
    (rehearsal,) = [e for e in entries if e.kind == Kind.REHEARSAL]
    assert registration.seq < rehearsal.seq  # appended while the rehearsal ran, before its record


# --------------------------------------------------------------------------- refused before anything runs


def test_a_statement_outside_the_allow_list_is_refused_before_anything_runs(
    operator: Role, world_dsn: str, project_dir: Path
) -> None:
    edit(project_dir, "mutation:\n  sql: |\n", "mutation:\n  sql: |\n    DELETE FROM law_articles;\n")
    before = world_state(world_dsn)
    done = CliRunner().invoke(app, ["rehearse", "SB-12", "--dsn", operator.dsn, "-C", str(project_dir)])
    assert done.exit_code == ExitCode.BAD_INPUT, done.output
    assert "DELETE FROM law_articles" in " ".join(done.stderr.split())  # the refused statement is quoted
    assert world_state(world_dsn) == before
    assert rehearsals(world_dsn) == []


def test_rehearse_needs_gcos_installed(world_dsn: str, project_dir: Path) -> None:
    done = CliRunner().invoke(app, ["rehearse", "SB-12", "--dsn", world_dsn, "-C", str(project_dir)])
    assert done.exit_code == ExitCode.BAD_INPUT
    assert "gcos install" in done.stderr


def test_the_shipped_schemas_are_valid_so_no_command_rechecks_them() -> None:
    """Issue 13 item 2: the loader no longer checks the schemas against their metaschema in every process."""
    from gcos.spec.load import check_shipped_schemas, shipped_schemas

    check_shipped_schemas()
    assert {"step.schema.json", "plan.schema.json", "project.schema.json"} <= set(shipped_schemas())


def test_the_api_imports_what_a_command_touches_only_when_it_touches_it() -> None:
    """`import gcos.commands` (what every command loads) does not load the report builder or jinja2; touching
    gcos.commands.evidence loads them, so the lazy names are the real modules."""
    import subprocess
    import sys

    code = (
        "import sys, gcos.commands as c; print('jinja2' in sys.modules, 'gcos.evidence.build' in sys.modules); "
        "print(callable(c.evidence.build_report), 'gcos.evidence.build' in sys.modules)"
    )
    root = str(Path(__file__).resolve().parent.parent)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert out.stdout.split() == ["False", "False", "True", "True"]
