"""The kernel rehearses (gcos/sql/011_kernel_rehearse.sql): a registered spec run inside the database as
gcos_kernel, judged there, its rehearsal record appended by the kernel (issue 9 item 2). Called here as SQL,
for who may call it and what step SQL can reach; what `gcos rehearse` makes of each outcome (exit codes,
entry == exit, evidence, residue) is in test_rehearsal.py, test_rehearsal_evidence.py and test_residue.py."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import MakeRole, Role
from psycopg import errors
from psycopg.types.json import Jsonb
from typer.testing import CliRunner

from gcos import commands, ledger, registry
from gcos.cli import app
from gcos.errors import ExitCode
from gcos.spec import Project, load_project
from gcos.target import Target

REPO = Path(__file__).resolve().parent.parent


TRACED = " FROM pg_catalog.set_config('gcos.trace_id', md5('t'), true)"  # the statement's trace (024_traces)


@dataclass
class Kernel:
    """The reference world with gcos installed and public adopted; the repo's project registered."""

    dsn: str
    admin: psycopg.Connection[Any]
    project: Project
    operator: Role

    def register(self, document: dict[str, Any]) -> str:
        with self.admin.transaction():
            ledger.trace_context(self.admin)  # register_spec takes its trace from the transaction (024_traces)
            row = self.admin.execute("SELECT gcos.register_spec(%s)", (Jsonb(document),)).fetchone()
        assert row is not None
        return str(row[0])

    def plan_hash(self, step_id: str = "SB-12") -> str:
        plan = self.project.plan_of(step_id)
        assert plan is not None
        return registry.register_plan(self.admin, plan)

    def rehearse(self, spec_hash: str, plan_hash: str, who: Role | None = None) -> dict[str, Any]:
        with (who or self.operator).connect() as conn:
            call = (spec_hash, plan_hash, ledger.new_trace_id())
            row = conn.execute("SELECT gcos.rehearse(%s, %s, %s)", call).fetchone()
        assert row is not None
        result: dict[str, Any] = row[0]
        return result

    def document(self, step_id: str = "SB-12") -> dict[str, Any]:
        return copy.deepcopy(dict(self.project.step(step_id).document))

    def exists(self, table: str) -> bool:
        row = self.admin.execute("SELECT to_regclass(%s) IS NOT NULL", (f"public.{table}",)).fetchone()
        return bool(row and row[0])


@pytest.fixture
def kernel(world_dsn: str, gcos_adopted: None, world_role: MakeRole) -> Iterator[Kernel]:
    operator = world_role("op", kind="human", roles=("operator",), grant=("operator",))
    with psycopg.connect(world_dsn, autocommit=True) as admin:
        yield Kernel(world_dsn, admin, load_project(REPO), operator)


def test_a_kernel_rehearsal_opens_the_rehearsal_gate(kernel: Kernel) -> None:
    step = kernel.project.step("SB-12")
    kernel.rehearse(registry.register_spec(kernel.admin, step), kernel.plan_hash())
    (status,) = commands.status(Target(kernel.dsn, "--dsn"), REPO, "SB-12").steps
    assert status.state == "rehearsed"
    assert status.decision.gate("rehearsal").allow


def test_an_agent_may_rehearse_a_sovereign_may_not(kernel: Kernel, world_role: MakeRole) -> None:
    spec_hash = registry.register_spec(kernel.admin, kernel.project.step("SB-12"))
    agent = world_role("agent", kind="agent", roles=("operator",), grant=("operator",))
    assert kernel.rehearse(spec_hash, kernel.plan_hash(), agent)["outcome"] == "passed"
    sovereign = world_role("sov", kind="human", roles=("sovereign",), grant=("sovereign",))
    with pytest.raises(errors.InsufficientPrivilege):
        kernel.rehearse(spec_hash, kernel.plan_hash(), sovereign)
    stranger = world_role("stranger", grant=("operator",))  # holds the grant, is no principal
    with pytest.raises(errors.InsufficientPrivilege):
        kernel.rehearse(spec_hash, kernel.plan_hash(), stranger)


def test_only_registered_specs_are_rehearsed(kernel: Kernel) -> None:
    with pytest.raises(errors.InvalidParameterValue):
        kernel.rehearse("0" * 64, kernel.plan_hash())
    other = kernel.project.plan_of("SB-1-2")
    assert other is not None
    spec_hash = registry.register_spec(kernel.admin, kernel.project.step("SB-12"))
    with pytest.raises(errors.InvalidParameterValue):  # SB-12 is not a step of plan sb-1-2
        kernel.rehearse(spec_hash, registry.register_plan(kernel.admin, other))


def test_what_the_allow_list_does_not_name_stops_the_step(kernel: Kernel) -> None:
    doc = kernel.document()
    doc["mutation"]["sql"] += "\nUPDATE measurement_registry SET enabled = enabled WHERE true;"
    result = kernel.rehearse(kernel.register(doc), kernel.plan_hash())
    assert result["outcome"] == "stopped"
    assert {(v["category"], v["identity"], v["change"]) for v in result["allow_violations"]} == {
        ("rows", "public.measurement_registry", "updated")
    }
    assert not kernel.exists("governance_ruleset")


def test_a_session_with_temporary_objects_is_refused(kernel: Kernel) -> None:
    spec_hash = registry.register_spec(kernel.admin, kernel.project.step("SB-12"))
    with kernel.operator.connect() as conn:
        conn.execute("CREATE TEMP TABLE measurement_registry (enabled boolean)")
        with pytest.raises(errors.InvalidParameterValue, match="temporary objects"):
            conn.execute("SELECT gcos.rehearse(%s, %s)", (spec_hash, kernel.plan_hash()))


@pytest.mark.parametrize(
    "forgery",
    [
        "INSERT INTO gcos.os_proposal_approvals DEFAULT VALUES",
        "SELECT gcos.ledger_append('commit', 'SB-12', NULL, md5('t'), NULL, '{}')",
        "SELECT gcos.register_spec('{}')",
        "UPDATE gcos.ledger_head SET seq = seq",
    ],
)
def test_step_sql_cannot_reach_the_gcos_schema(kernel: Kernel, forgery: str) -> None:
    doc = kernel.document()
    doc["mutation"]["sql"] += "\n" + forgery + ";"
    spec_hash, plan_hash = kernel.register(doc), kernel.plan_hash()
    before = len(ledger.read_all(kernel.admin))
    result = kernel.rehearse(spec_hash, plan_hash)
    assert result["outcome"] == "mutation_failed" and "permission denied" in result["message"]
    assert len(ledger.read_all(kernel.admin)) == before + 1  # the rehearsal record only


def test_a_schema_that_is_not_adopted_is_out_of_the_kernels_reach(world_dsn: str, world_role: MakeRole) -> None:
    operator = world_role("op", kind="human", roles=("operator",), grant=("operator",))
    project = load_project(REPO)
    with psycopg.connect(world_dsn, autocommit=True) as admin:
        spec_hash = registry.register_spec(admin, project.step("SB-12"))
        plan = project.plan_of("SB-12")
        assert plan is not None
        plan_hash = registry.register_plan(admin, plan)
    with operator.connect() as conn, pytest.raises(errors.ObjectNotInPrerequisiteState, match="public is not adopted"):
        conn.execute("SELECT gcos.rehearse(%s, %s)", (spec_hash, plan_hash))


def test_a_batched_step_rehearses_its_first_two_batches(kernel: Kernel) -> None:
    doc: dict[str, Any] = {
        "id": "BATCH-T",
        "order": 99,
        "title": "two batches",
        "source": "test",
        "approvals": {"signers": 1, "roles": ["sovereign"]},
        "reverify": [],
        "success": [],
        "mode": "batched",
        "mutation": {
            "sql": "CREATE TABLE public.batch_t (id bigint PRIMARY KEY, run uuid NOT NULL)",
            "allow": [{"create_table": "batch_t"}, {"insert": "batch_t"}],
        },
        "batch": {
            "table": "birth_registry",
            "key": "id",
            "size": 500,
            "cursor": {"worker": "w", "source": "birth_registry"},
            "sql": "INSERT INTO batch_t SELECT id, %(run_id)s::uuid FROM birth_registry "
            "WHERE id > %(after)s AND id <= %(upto)s",
        },
        "rollback": {"sql": "DROP TABLE public.batch_t"},
    }
    plan = kernel.admin.execute(
        "SELECT gcos.register_plan(%s)" + TRACED,
        (Jsonb({"id": "t", "title": "t", "source": "t", "steps": ["BATCH-T"], "fold_ins": {}, "global_stop": []}),),
    ).fetchone()
    assert plan is not None
    result = kernel.rehearse(kernel.register(doc), plan[0])
    assert result["outcome"] == "passed", result["message"]
    assert result["footprint"]["row_deltas"] == {"public.batch_t": {"inserted": 1000, "updated": 0, "deleted": 0}}
    assert not kernel.exists("batch_t")


# --------------------------------------------------------------------------- through the CLI


SNEAK = """\
    CREATE FUNCTION public.sneak() RETURNS int LANGUAGE sql
        AS 'UPDATE measurement_registry SET enabled = enabled; SELECT 1';
    ALTER TABLE governance_ruleset ADD COLUMN sneaked int DEFAULT public.sneak();
  allow:
    - {create_function: sneak}
    - {alter_table: governance_ruleset}
"""


def test_the_kernel_stops_what_the_static_check_cannot_see(kernel: Kernel, project_dir: Path) -> None:
    """A function the step creates writes a table the allow list does not name: pglast passes the SQL, the
    kernel's footprint does not (issue 9 item 4)."""
    spec = project_dir / "steps" / "01-sb-12.yaml"
    text = spec.read_text()
    assert text.count("\n  allow:\n") == 1
    spec.write_text(text.replace("\n  allow:\n", "\n" + SNEAK, 1))
    done = CliRunner().invoke(app, ["rehearse", "SB-12", "--dsn", kernel.operator.dsn, "--project", str(project_dir)])
    assert done.exit_code == ExitCode.STOP_HELD, done.output
    assert "public.measurement_registry" in done.output


def test_a_rollback_that_leaves_an_object_is_named_by_the_digest_path(kernel: Kernel) -> None:
    """043: after_rollback is taken as digests; a differing hash takes the map again, so the object is named."""
    doc = kernel.document()
    doc["rollback"]["sql"] = "DELETE FROM evolution_snapshots WHERE scope LIKE 'governance.%';"  # keeps the table
    result = kernel.rehearse(kernel.register(doc), kernel.plan_hash())
    assert result["outcome"] == "rollback_unproven"
    assert "relation public.governance_ruleset added" in result["message"]
    prints = result["fingerprints"]
    assert prints["after_rollback"]["hash"] != prints["entry"]["hash"] == prints["exit"]["hash"]
    assert not kernel.exists("governance_ruleset")


def test_the_kernel_takes_the_object_map_only_to_name_a_difference(kernel: Kernel) -> None:
    """043: gcos._kernel_fingerprint_vs answers digests without the map when the hash agrees, the full fingerprint
    (the same hash, digests and sequences as the map's) when it does not."""
    full = kernel.admin.execute("SELECT gcos._kernel_fingerprint('{}')").fetchone()
    assert full is not None and "schema" in full[0]
    row = kernel.admin.execute("SELECT gcos._kernel_fingerprint_vs('{}', %s)", (Jsonb(full[0]),)).fetchone()
    assert row is not None and "schema" not in row[0]
    assert {k: row[0][k] for k in ("hash", "schema_hash", "digests", "sequences", "tables")} == {
        k: full[0][k] for k in ("hash", "schema_hash", "digests", "sequences", "tables")
    }
    other = kernel.admin.execute("SELECT gcos._kernel_fingerprint_vs('{}', '{\"hash\": \"0\"}')").fetchone()
    assert other is not None and other[0] == full[0]
