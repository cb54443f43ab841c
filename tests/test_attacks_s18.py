"""Attacks on issue 10's governance (migrations 024-028), session 18 helper G: each test either proves a
defence worth keeping or is a hole, marked xfail(strict=True) with the reason, that a fix turns into a pass."""

from __future__ import annotations

import contextlib
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from conftest import Role
from psycopg import sql
from psycopg.conninfo import make_conninfo
from test_batched import Kit, make_kit
from test_commit import World, failed_gates, refused, world  # noqa: F401
from test_gates import Desk, open_desk
from test_rollback_order import side_step

from gcos import commands, kernel
from gcos.domain import Kind, StepState
from gcos.errors import ExitCode, GcosError
from gcos.principals import add_principal
from gcos.spec import load_project


def commit_steps(w: World, steps: dict[str, str]) -> None:
    """Each step in a plan of its own, rehearsed, approved by the sovereign and committed by the operator."""
    for sid, text in steps.items():
        (w.project / "steps" / f"{sid.lower()}.yaml").write_text(text)
        (w.project / "plans" / f"{sid.lower()}.yaml").write_text(
            f"id: {sid.lower()}\ntitle: one step\nsource: issue 10\nsteps: [{sid}]\nfold_ins: {{}}\nglobal_stop: []\n"
        )
    for sid in steps:
        w.rehearse(sid)
        w.approve(sid)
        assert w.commit(sid).ok


# --------------------------------------------------------------------------- 028: out-of-order rollback

ZERO = side_step(  # the first governed change: its after map is the next one's before
    "ATK-0", 29, "CREATE TABLE atk_0 (id integer);", "{create_table: atk_0}", "DROP TABLE atk_0;", "",
)  # fmt: skip
BASE = side_step(
    "ATK-T", 30, "CREATE TABLE atk_t (id integer PRIMARY KEY); INSERT INTO atk_t VALUES (1);",
    "{create_table: atk_t}, {insert: [atk_t]}", "DROP TABLE atk_t;", "",
)  # fmt: skip
READER = side_step(  # a later step whose plpgsql function reads ATK-T's table: pg_depend records nothing
    "ATK-F", 31,
    "\"CREATE FUNCTION atk_f() RETURNS bigint LANGUAGE plpgsql AS 'BEGIN RETURN (SELECT count(*) FROM atk_t); END'\"",
    "{create_function: atk_f}", "DROP FUNCTION atk_f();", "",
)  # fmt: skip


def test_a_later_function_over_the_steps_table_is_an_overlap(world: World) -> None:  # noqa: F811
    commit_steps(world, {"ATK-0": ZERO, "ATK-T": BASE, "ATK-F": READER})
    assert world.admin.execute("SELECT atk_f()").fetchone() == (1,)
    world.approve("ATK-T", rollback=True)
    code, out = world.cli("rollback", "ATK-T")
    if code == 0:  # it went out of order: ATK-F, committed and in force, no longer works
        with pytest.raises(psycopg.errors.UndefinedTable):
            world.admin.execute("SELECT atk_f()")
        assert world.state("ATK-F") == StepState.COMMITTED
    assert code == ExitCode.GATE_REFUSED, out
    assert "ATK-F (commit seq" in str(out) and "changed function public.atk_f()" in str(out), out
    assert world.admin.execute("SELECT atk_f()").fetchone() == (1,)


WIDE = side_step(  # its rollback also deletes rows of ATK-0's table, which it does not watch
    "ATK-R", 34, "CREATE TABLE atk_r (id integer);", "{create_table: atk_r}",
    "DROP TABLE atk_r; DELETE FROM atk_0 WHERE id > 100;", "",
)  # fmt: skip
LATER = side_step(  # a later, disjoint commit: ATK-R goes out of order
    "ATK-L", 35, "CREATE TABLE atk_l (id integer);", "{create_table: atk_l}", "DROP TABLE atk_l;", "",
)  # fmt: skip


def test_an_out_of_order_rollback_changes_nothing_outside_its_footprint(
    world: World,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Defence: the rollback's rows are judged against the allow list when it runs, not only when rehearsed (its
    rehearsal deleted nothing), so an out-of-order rollback cannot delete rows outside its footprint."""
    monkeypatch.setattr(kernel, "static_check", lambda *_: None)  # the client refuses it; a SQL caller has none
    commit_steps(world, {"ATK-0": ZERO})
    commit_steps(world, {"ATK-R": WIDE, "ATK-L": LATER})  # its rehearsal deleted nothing: no row was over 100
    world.admin.execute("INSERT INTO atk_0 VALUES (101), (102)")  # rows that are no step's (the superuser's)
    world.approve("ATK-R", rollback=True)
    code, out = world.cli("rollback", "ATK-R")
    assert code == ExitCode.STOP_HELD and "rollback_rows public.atk_0 written by the rollback" in out["error"], out
    assert world.admin.execute("SELECT count(*) FROM atk_0").fetchone() == (2,)
    assert world.state("ATK-R") == StepState.COMMITTED


# --------------------------------------------------------------------------- gcos_kernel, from a step's SQL

KERNEL_ALTER = side_step(  # gcos_kernel owns gcos._kernel_exec, so it may ALTER it: SECURITY INVOKER from now on;
    # the statement is in the body of a helper the step makes and calls (a column default), only when committing:
    # the client's static check sees none of it, and the rehearsal passes as an honest one would
    "ATK-K", 32, "\"CREATE FUNCTION atk_x() RETURNS integer LANGUAGE plpgsql AS 'BEGIN "
    "IF current_query() ~ ''gcos.commit'' THEN EXECUTE ''ALTER FUNCTION gcos._kernel_exec(text) SECURITY INVOKER''; "
    "END IF; RETURN 1; END'; "
    "CREATE TABLE atk_k (id integer DEFAULT atk_x()); INSERT INTO atk_k DEFAULT VALUES;\"",
    "{create_function: atk_x}, {create_table: atk_k}, {insert: [atk_k]}",
    "DROP TABLE atk_k; DROP FUNCTION atk_x();", "",
)  # fmt: skip
FORGER = side_step(  # a later step's SQL, now run as gcos_owner, writes the ledger itself
    "ATK-W", 33, "SELECT gcos._ledger_write('atk_forged', NULL, NULL, '0123456789abcdef0123456789abcdef', NULL, "
    "jsonb_build_object('by', 'a step'));", "{comment: atk}", "SELECT 1;", "",
)  # fmt: skip


def test_a_steps_sql_cannot_alter_the_kernels_functions(world: World, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """ATK-K passes the client's static check (the ALTER is a string in a helper's body) and the kernel; then ATK-W,
    whose statement the client would refuse (an operator calling gcos.rehearse/gcos.commit in SQL has no client
    check: simulated by turning it off), shows a later step's SQL running as gcos_owner."""
    (world.project / "steps" / "atk-k.yaml").write_text(KERNEL_ALTER)
    (world.project / "plans" / "atk-k.yaml").write_text(
        "id: atk-k\ntitle: one step\nsource: issue 10\nsteps: [ATK-K]\nfold_ins: {}\nglobal_stop: []\n"
    )
    try:
        world.rehearse("ATK-K")
        world.approve("ATK-K")
        applied = world.commit("ATK-K").ok
    except GcosError:  # any refusal is the defence
        applied = False
    definer = world.admin.execute("SELECT prosecdef FROM pg_proc WHERE oid = 'gcos._kernel_exec(text)'::regprocedure")
    if applied:  # then a later step's SQL runs as the owner of gcos: it writes a ledger record of its own
        monkeypatch.setattr(kernel, "static_check", lambda *_: None)
        commit_steps(world, {"ATK-W": FORGER})
        assert [e.payload for e in world.records("atk_forged")] == [{"by": "a step"}]
    assert not applied and definer.fetchone() == (True,)


# --------------------------------------------------------------------------- 026: traces and causation


def sql_rehearse(w: World, step: str, trace: str) -> int:
    """gcos.rehearse called in SQL by the operator on `step`'s registered spec and plan, under `trace`."""
    spec = w.records(Kind.REHEARSAL, step)[-1]
    with psycopg.connect(w.person("operator").dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT (gcos.rehearse(%s, %s, %s) ->> 'ledger_seq')::bigint",
            (spec.record["spec_hash"], spec.payload["plan_hash"], trace),
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_a_new_run_cannot_join_another_runs_trace(world: World) -> None:  # noqa: F811
    commit_steps(world, {"ATK-0": ZERO})
    theirs = world.records(Kind.COMMIT, "ATK-0")[0].record["trace_id"]
    (world.project / "steps" / "atk-t.yaml").write_text(BASE)
    (world.project / "plans" / "atk-t.yaml").write_text(
        "id: atk-t\ntitle: one step\nsource: issue 10\nsteps: [ATK-T]\nfold_ins: {}\nglobal_stop: []\n"
    )
    world.rehearse("ATK-T")  # registers the spec and plan under a trace of its own
    try:
        sql_rehearse(world, "ATK-T", theirs)
    except psycopg.errors.InvalidParameterValue:
        return  # the defence: a trace that already belongs to another step's run is refused
    world.approve("ATK-T")
    assert world.commit("ATK-T").ok
    assert world.records(Kind.COMMIT, "ATK-T")[0].record["trace_id"] != theirs


def test_an_approval_rests_only_on_a_passing_rehearsal_of_its_plan(world: World) -> None:  # noqa: F811
    world.admin.execute("ALTER TABLE evolution_snapshots ADD COLUMN atk_note text")  # SB-12's stop holds
    with contextlib.suppress(GcosError):  # it stops: recorded all the same
        commands.rehearse(world.target("operator"), world.project, "SB-12")
    (stopped,) = world.records(Kind.REHEARSAL, "SB-12")
    assert stopped.payload["outcome"] != "passed"
    step = load_project(world.project).step("SB-12")
    with psycopg.connect(world.person("sovereign").dsn, autocommit=True) as conn:
        try:
            conn.execute(
                "SELECT * FROM gcos.record_approval('SB-12', %s, %s, 'approve', clock_timestamp() + interval '1h', "
                "NULL, %s)",
                (step.hash, stopped.payload["plan_hash"], stopped.seq),
            )
        except psycopg.errors.InvalidParameterValue:
            return  # the defence
    (approval,) = world.records(Kind.APPROVAL, "SB-12")
    assert approval.payload["causation"] != {"rehearsal_seq": stopped.seq}


# --------------------------------------------------------------------------- 024: decisions


@pytest.fixture
def desk(world_dsn: str, project_dir: Path, gcos_adopted: None) -> Iterator[Desk]:
    yield from open_desk(world_dsn, project_dir)


def desk_person(d: Desk, key: str, roles: tuple[str, ...], display: str, person: str | None) -> Role:
    """A human principal of `roles` named `display`, belonging to `person`, as d.role(key) from now on."""
    name, password = f"gcos_t_{uuid.uuid4().hex[:8]}_{key}", secrets.token_hex(12)
    d.admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(name), sql.Literal(password)))
    for role in roles:
        d.admin.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(f"gcos_{role}"), sql.Identifier(name)))
    add_principal(d.admin, name, name=display, kind="human", roles=roles, grant=False, person=person)
    row = d.admin.execute("SELECT oid::bigint FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
    assert row is not None
    d.roles[key] = Role(name, make_conninfo(d.dsn, user=name, password=password), int(row[0]))
    return d.roles[key]


def test_the_deciders_other_principal_never_commits_on_the_decision(desk: Desk) -> None:
    """Defence: Dora decides C-1 and C-2 as a sovereign; her operator principal, another role and another display
    name but the same person (spelled differently), may not commit on them, nor may a principal linked to her
    person only after she decided."""
    desk_person(desk, "dora", ("sovereign",), "Dora", "Dora  Decider")
    desk_person(desk, "dora-op", ("operator",), "D. Ops", " dora decider ")
    late = desk_person(desk, "late-op", ("operator",), "Lately", None)
    for name in ("C-1", "C-2"):
        desk.decide("dora", name)
    assert desk.judge("SB-1-2", who="opal").gate("decisions").allow
    for who in ("dora-op", "late-op"):
        if who == "late-op":  # linked to Dora's person after the decision: counts as her at the commit
            add_principal(desk.admin, late.name, name="Lately", kind="human", roles=("operator",), grant=False,
                          person="DORA DECIDER")  # fmt: skip
        g = desk.judge("SB-1-2", who=who).gate("decisions")
        assert not g.allow and "is by Dora, who is committing" in g.reason, (who, g.reason)


def test_a_later_reject_of_the_decision_is_the_word_in_force(desk: Desk) -> None:
    for name in ("C-1", "C-2"):
        desk.decide("carol", name)
    assert desk.judge("SB-1-2").gate("decisions").allow  # under the plan as it is (registered by judge)
    plan = desk.project_dir / "plans" / "sb-1-2.yaml"
    old = plan.read_text()
    plan.write_text(old.replace("one accountable owner per scope", "two accountable owners per scope"))
    desk.decide("carol", "C-1", verdict="reject")  # her latest word on C-1, on the text as edited
    assert not desk.judge("SB-1-2").gate("decisions").allow
    plan.write_text(old)  # the committer keeps the old plan file: its hash is still registered
    g = desk.judge("SB-1-2").gate("decisions")
    assert not g.allow and "decision C-1 stands at reject (record" in g.reason, g.reason
    assert "the latest word in force stands, whatever text it bound" in g.reason, g.reason


# --------------------------------------------------------------------------- 027: batch.finish / on_stop


@pytest.fixture
def kit(pg_admin_dsn: str, small_world: str, tmp_path: Path) -> Iterator[Kit]:
    yield from make_kit(pg_admin_dsn, small_world, tmp_path / "project")


def test_a_refused_batch_finish_leaves_no_sequence_set_back(kit: Kit, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kernel, "static_check", lambda *_: None)  # the database alone judges (a SQL caller)
    seq = "public.birth_registry_id_seq"
    state = "SELECT last_value, is_called FROM public.birth_registry_id_seq"
    before = kit.admin.execute(state).fetchone()
    spec = kit.project_dir / "steps" / "09-backfill-seed.yaml"
    text = spec.read_text()
    spec.write_text(text.replace("  finish: |\n", f"  finish: |\n    SELECT setval('{seq}', 1, false);\n", 1))
    kit.rehearse()  # passes: finish is not run by a rehearsal
    assert kit.admin.execute(state).fetchone() == before
    kit.approve()
    with pytest.raises(GcosError, match=r"sequence_state public\.birth_registry_id_seq set back"):
        kit.commit()
    assert kit.admin.execute(state).fetchone() == before  # (1, False): the refused finish's reset stays
