"""Online steps (`mode: online`, issue 11 item 5; gcos/sql/035_online_steps.sql, gcos/online.py): concurrent
statements run outside a transaction, each decided by the kernel; the rehearsal runs the transactional
equivalent and says so; a failed CREATE INDEX CONCURRENTLY leaves an INVALID index that the next attempt finds
and drops; the success checks prove pg_index.indisvalid; and the window in which a session holds gcos_kernel's
rights for its one ticketed statement is attacked from inside and outside.

Real roles on an adopted copy of the reference world (World from test_commit.py); outcomes are read from the
ledger and the catalog, never from sentences."""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.types.json import Jsonb
from test_commit import World, adopted_world

from gcos import kernel, ledger, online, registry, sqlcheck
from gcos.adopt import adopt
from gcos.errors import DatabaseUnavailable, GateRefused, GcosError, SpecError
from gcos.spec import StepSpec, load_project
from gcos.target import SessionSettings

INDEX = "evolution_snapshots_scope_idx"


VALID = f"SELECT bool_and(indisvalid) IS TRUE FROM pg_index WHERE indexrelid = to_regclass('public.{INDEX}')"


def step_yaml(
    sql: str,
    *,
    allow: str = f"{{create_index: {INDEX}}}",
    mode: str = "online",
    step: str = "IDX-1",
    success: str = VALID,
) -> str:
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
            sql: {success}
            expect: true
        rollback:
          sql: DROP INDEX IF EXISTS {index};
        """
    ).format(step=step, mode=mode, sql=textwrap.indent(sql.strip(), "    "), allow=allow, index=INDEX, success=success)


def add_step(project: Path, text: str, step: str = "IDX-1") -> None:
    (project / "steps" / f"90-{step.lower()}.yaml").write_text(text)
    (project / "plans" / f"{step.lower()}.yaml").write_text(f"id: {step.lower()}\ntitle: online\nsteps: [{step}]\n")


CIC = f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {INDEX} ON evolution_snapshots (scope);"


@pytest.fixture(scope="session")
def server_version(pg_admin_dsn: str) -> int:
    with psycopg.connect(pg_admin_dsn) as conn:
        return int(conn.info.server_version)


@pytest.fixture(autouse=True)
def online_needs_16(request: pytest.FixtureRequest) -> None:
    """Before PostgreSQL 16 the kernel refuses online steps (038): a test that runs one on a world is for 16+, and
    test_online_steps_are_refused_before_postgresql_16 is the one that runs there instead."""
    if "world_dsn" not in request.fixturenames or request.node.get_closest_marker("before_16"):
        return
    if request.getfixturevalue("server_version") < 160000:
        pytest.skip("online steps need PostgreSQL 16+ (migration 038 refuses them before 16)")


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


@pytest.mark.before_16
def test_online_steps_are_refused_before_postgresql_16(
    world_dsn: str, gcos_adopted: None, project_dir: Path, server_version: int
) -> None:
    if server_version >= 160000:
        pytest.skip("PostgreSQL 16+ lends INHERIT without SET: online steps run there (the tests above)")
    add_step(project_dir, step_yaml(CIC))
    for w in adopted_world(world_dsn, project_dir):
        with pytest.raises(SpecError, match=r"(?i)online steps need PostgreSQL 16 or newer"):
            w.rehearse("IDX-1")
        assert w.records("rehearsal", "IDX-1") == [] and index_state(w) is None and members(w) == []


# --------------------------------------------------------------------------- the static check


def spec_of(tmp_path: Path, sql: str, **kw: Any) -> StepSpec:
    add_step(tmp_path, step_yaml(sql, **kw))
    return load_project(tmp_path).step("IDX-1")


@pytest.fixture
def bare(tmp_path: Path) -> Path:
    for name in ("steps", "plans", "rollback"):
        (tmp_path / name).mkdir()
    return tmp_path


def refusal(step: StepSpec) -> str:
    with pytest.raises(SpecError) as caught:
        sqlcheck.check_mutation(step)
    return str(caught.value.details["reason"])  # type: ignore[index]


def test_concurrently_is_refused_in_a_transactional_step_with_the_way_out(bare: Path) -> None:
    assert "mode: online" in refusal(spec_of(bare, CIC, mode="transactional"))
    assert [st.kind for st in sqlcheck.check_mutation(spec_of(bare, CIC))] == ["create_index_concurrently"]


@pytest.mark.parametrize(
    ("sql", "allow", "word"),
    [
        (f"CREATE INDEX CONCURRENTLY {INDEX} ON evolution_snapshots (scope);", None, "IF NOT EXISTS"),
        ("CREATE INDEX CONCURRENTLY IF NOT EXISTS other_idx ON evolution_snapshots (scope);", None, "allow list"),
        (f"DROP INDEX CONCURRENTLY {INDEX};", None, "IF EXISTS"),
        ("DROP INDEX CONCURRENTLY IF EXISTS laws_pkey;", None, "create_index"),
        (f"REINDEX (CONCURRENTLY) INDEX {INDEX};", None, "one index at a time"),
        ("REINDEX INDEX CONCURRENTLY laws_pkey;", None, "create_index"),
        (f"{CIC} DROP TABLE laws;", None, "allow list"),
        (CIC.replace(" (", " /* c */ ("), None, "no comment"),  # 037: the kernel refuses it too
    ],
)
def test_online_statements_must_be_idempotent_and_allowed(bare: Path, sql: str, allow: str | None, word: str) -> None:
    step = spec_of(bare, sql, **({"allow": allow} if allow else {}))
    assert word in refusal(step)


def test_an_enum_value_used_in_the_transaction_that_added_it_is_refused(bare: Path) -> None:
    sql = "ALTER TYPE mood ADD VALUE 'calm';\nUPDATE laws SET title = 'calm' WHERE false;"
    reason = refusal(spec_of(bare, sql, mode="transactional", allow="{create_type: mood}"))
    assert "55P04" in reason and "two steps" in reason
    # online too: its statements commit one by one, but its rehearsal is one transaction
    assert "55P04" in refusal(spec_of(bare, sql, allow="{create_type: mood}"))
    # alone it is fine, and so is a value named before it is added (a rename, a literal of another type)
    for alone in ("ALTER TYPE mood ADD VALUE 'calm';", "ALTER TYPE mood RENAME VALUE 'calm' TO 'still';"):
        assert sqlcheck.check_mutation(spec_of(bare, alone, mode="transactional", allow="{create_type: mood}"))


# --------------------------------------------------------------------------- the kernel decides


def approved(w: World) -> None:
    w.rehearse("IDX-1")
    w.approve("IDX-1")


class Window:
    """A session of `who` that opened an online run of IDX-1 through the kernel, as gcos commit does."""

    def __init__(self, w: World, who: str = "operator", pieces: list[str] | None = None) -> None:
        self.conn = psycopg.connect(w.person(who).dsn, autocommit=True)
        project = load_project(w.project)
        step = project.step("IDX-1")
        plan = project.plan_of("IDX-1")
        assert plan is not None
        trace = ledger.new_trace_id()
        self.spec_hash = registry.register_spec(self.conn, step, trace_id=trace)
        self.plan_hash = registry.register_plan(self.conn, plan, trace_id=trace)
        self.run_id = kernel.derive_run_id(self.conn, self.spec_hash, self.plan_hash, "commit")
        self.pieces = pieces if pieces is not None else online.pieces(step)
        self.args = (self.spec_hash, self.plan_hash, self.run_id, trace, Jsonb(self.pieces), False)

    def call(self, query: str, *args: Any) -> Any:
        row = self.conn.execute(query, args).fetchone()
        assert row is not None
        return row[0]

    def begin(self) -> dict[str, Any]:
        return dict(self.call("SELECT gcos.online_begin(%s, %s, %s, %s, %s, %s)", *self.args))

    def ticket(self) -> dict[str, Any]:
        assert self.begin()["outcome"] == "open"
        body = dict(self.call("SELECT gcos.online_next(%s)", self.run_id))
        assert body["kind"] == "ticket"
        return body


def refused_42501(conn: psycopg.Connection[Any], statement: str) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(statement.encode())


def test_pieces_that_are_not_the_registered_text_are_refused(ow: World) -> None:
    approved(ow)
    for pieces in ([CIC.replace("scope", "subject")], [CIC, "DROP TABLE laws;"], []):
        win = Window(ow, pieces=pieces)
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            win.begin()
        win.conn.close()
    assert index_state(ow) is None and members(ow) == []


def test_without_approval_the_kernel_refuses_and_lends_nothing(ow: World) -> None:
    ow.rehearse("IDX-1")
    with pytest.raises(GateRefused):
        ow.commit("IDX-1")
    assert [e.kind for e in ow.records("commit_refused", "IDX-1")] == ["commit_refused"]
    assert index_state(ow) is None and members(ow) == []


def test_inside_the_window_only_the_ticketed_statement_runs(ow: World) -> None:
    approved(ow)
    win = Window(ow)
    body = win.ticket()
    assert members(ow) == [ow.person("operator").name]
    other = psycopg.connect(ow.person("operator").dsn, autocommit=True)  # another session of the same role
    for attack in (
        "DROP TABLE laws",
        f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {INDEX} ON evolution_snapshots (subject)",  # not the ticket's text
        f"{body['sql']} -- same, plus a comment",
        "ALTER TABLE laws ADD COLUMN x int",
        "GRANT SELECT ON laws TO PUBLIC",
        "ALTER FUNCTION gcos._kernel_exec(text) SECURITY INVOKER",
    ):
        refused_42501(win.conn, attack)
        refused_42501(other, attack)
    refused_42501(other, body["sql"])  # the ticket is this backend's
    refused_42501(win.conn, "SELECT gcos._kernel_exec('DROP TABLE laws')")  # the lent owner's executor: DDL refused
    with pytest.raises(psycopg.errors.InsufficientPrivilege):  # online steps run on 16+ only, lent without SET
        win.conn.execute("SET ROLE gcos_kernel")
    win.conn.execute(body["sql"].encode())
    done = dict(win.call("SELECT gcos.online_done(%s, NULL)", win.run_id))
    assert done["kind"] == "applied" and members(ow) == []
    with pytest.raises(psycopg.errors.InsufficientPrivilege):  # the rights are gone
        win.conn.execute("DROP INDEX CONCURRENTLY IF EXISTS evolution_snapshots_scope_idx")
    finish = dict(win.call("SELECT gcos.online_finish(%s)", win.run_id))
    assert finish["outcome"] == "applied" and index_state(ow) is True
    other.close()
    win.conn.close()


def test_another_role_cannot_use_or_end_the_run(ow: World) -> None:
    approved(ow)
    win = Window(ow)
    win.ticket()
    thief = Window(ow, "agent")
    for query in ("SELECT gcos.online_next(%s)", "SELECT gcos.online_finish(%s)"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            thief.call(query, win.run_id)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        thief.call("SELECT gcos.online_done(%s, NULL)", win.run_id)
    assert thief.call("SELECT gcos.online_sweep()") == 0  # a live window is not another's to end
    assert members(ow) == [ow.person("operator").name]
    win.call("SELECT gcos.online_done(%s, %s)", win.run_id, "given up")
    assert members(ow) == [] and ow.records("stop", "IDX-1")[-1].payload["online"] is True
    thief.conn.close()
    win.conn.close()


def test_a_crashed_window_keeps_no_ddl_and_is_swept(ow: World) -> None:
    approved(ow)
    win = Window(ow)
    win.ticket()
    pid = win.conn.info.backend_pid
    ow.admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))
    win.conn.close()
    assert members(ow) == [ow.person("operator").name]  # until swept ...
    again = psycopg.connect(ow.person("operator").dsn, autocommit=True)
    refused_42501(again, "DROP TABLE laws")  # ... but the role runs no DDL meanwhile
    assert again.execute("SELECT gcos.online_sweep()").fetchone() == (1,)
    assert members(ow) == []
    (stop,) = ow.records("stop", "IDX-1")
    assert stop.payload["online"] is True and stop.payload["statements_applied"] == 0
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        again.execute("DROP TABLE laws")
    again.close()
    assert ow.commit("IDX-1").outcome == "applied"  # a new attempt goes through
    assert index_state(ow) is True


def leave_invalid(w: World) -> None:
    """What a failed CREATE INDEX CONCURRENTLY leaves: an INVALID index of that name."""
    with pytest.raises(psycopg.errors.DivisionByZero):
        w.admin.execute(f"CREATE INDEX CONCURRENTLY {INDEX} ON evolution_snapshots ((1 / (length(scope) * 0)))")
    assert index_state(w) is False


def test_an_invalid_leftover_is_dropped_before_the_retry(ow: World) -> None:
    leave_invalid(ow)
    ow.rehearse("IDX-1")  # rehearses on the world without it, inside its rollback only, and says so
    (rehearsal,) = ow.records("rehearsal", "IDX-1")
    dropped = rehearsal.payload["online"]["dropped_invalid"]
    assert dropped["indexes"] == [INDEX] and dropped["durable"] is False and "BEGIN..ROLLBACK" not in dropped["note"]
    assert rehearsal.payload["outcome"] == "passed"
    assert index_state(ow) is False  # no approval yet: the leftover is still there
    ow.approve("IDX-1")
    win = Window(ow)
    assert win.begin()["outcome"] == "open"
    # the leftover is still there after the gates: IF NOT EXISTS would skip the build, so the ticket drops it first
    body = dict(win.call("SELECT gcos.online_next(%s)", win.run_id))
    assert body["kind"] == "ticket" and body["dropped_invalid"] == [INDEX] and index_state(ow) is None
    win.conn.execute(body["sql"].encode())
    assert win.call("SELECT gcos.online_done(%s, NULL)", win.run_id)["kind"] == "applied"
    assert win.call("SELECT gcos.online_finish(%s)", win.run_id)["outcome"] == "applied"
    assert index_state(ow) is True
    win.conn.close()


@pytest.fixture
def trusting(world_dsn: str, gcos_adopted: None, project_dir: Path) -> Iterator[World]:
    """IDX-1 whose own success check proves nothing (`SELECT true`): only the kernel can refuse a false commit."""
    add_step(project_dir, step_yaml(CIC, success="SELECT true"))
    yield from adopted_world(world_dsn, project_dir)


def test_an_index_left_invalid_is_not_committed(trusting: World) -> None:
    approved(trusting)
    win = Window(trusting)
    win.ticket()
    done = win.call("SELECT gcos.online_done(%s, NULL)", win.run_id)  # the client lies: it never ran the statement
    assert done["kind"] == "stopped" and "never started" in done["message"]
    assert trusting.records("commit", "IDX-1") == [] and members(trusting) == [] and index_state(trusting) is None
    win.conn.close()


def test_a_ticketed_index_gone_before_done_is_not_committed(trusting: World) -> None:
    approved(trusting)
    win = Window(trusting)
    body = win.ticket()
    win.conn.execute(body["sql"].encode())  # it ran (the kernel saw it) ...
    trusting.admin.execute(f"DROP INDEX {INDEX}")  # ... but its index is not there when the client reports back
    done = win.call("SELECT gcos.online_done(%s, NULL)", win.run_id)
    assert done["kind"] == "stopped" and "does not exist" in done["message"]
    assert trusting.records("commit", "IDX-1") == []
    win.conn.close()


def test_finish_proves_every_index_the_allow_list_creates(
    world_dsn: str, gcos_adopted: None, project_dir: Path
) -> None:
    allow = f"{{create_index: [{INDEX}, evolution_snapshots_never_idx]}}"
    add_step(project_dir, step_yaml(CIC, allow=allow, success="SELECT true"))
    for w in adopted_world(world_dsn, project_dir):
        approved(w)
        with pytest.raises(GcosError):
            w.commit("IDX-1")
        (stop,) = w.records("stop", "IDX-1")
        assert "evolution_snapshots_never_idx does not exist" in stop.payload["reason"]
        assert w.records("commit", "IDX-1") == []


def test_online_needs_the_guard(ow: World) -> None:
    approved(ow)
    ow.admin.execute("ALTER EVENT TRIGGER gcos_online_guard DISABLE")
    with pytest.raises(GateRefused, match="schema guard"):
        ow.commit("IDX-1")
    assert index_state(ow) is None and members(ow) == []


def test_an_online_step_rolls_back_through_the_kernel(ow: World) -> None:
    approved(ow)
    assert ow.commit("IDX-1").outcome == "applied" and index_state(ow) is True
    ow.approve("IDX-1", rollback=True)
    result = ow.cli("rollback", "IDX-1")
    assert result[0] == 0, result
    assert index_state(ow) is None and [e.kind for e in ow.records("rollback", "IDX-1")] == ["rollback"]
    assert ow.state("IDX-1") != "committed"


def test_a_session_that_became_gcos_kernel_in_its_window_does_not_outlive_it(ow: World) -> None:
    approved(ow)
    win = Window(ow)
    assert win.begin()["outcome"] == "open"
    win.conn.execute(  # a helper made before the ticket, to end the window while acting as gcos_kernel
        "CREATE FUNCTION pg_temp.done(run text) RETURNS jsonb LANGUAGE sql SECURITY DEFINER "
        "AS 'SELECT gcos.online_done(run, NULL)'"
    )
    with pytest.raises(psycopg.errors.InvalidParameterValue):  # no ticket while the session has temporary objects
        win.call("SELECT gcos.online_next(%s)", win.run_id)
    win.conn.execute("DISCARD TEMP")
    body = dict(win.call("SELECT gcos.online_next(%s)", win.run_id))
    try:
        win.conn.execute("SET ROLE gcos_kernel")
    except psycopg.errors.InsufficientPrivilege:  # PostgreSQL 16+: lent without SET, so nothing to outlive
        assert ow.admin.info.server_version >= 160000
    else:  # 15: acting as gcos_kernel, the session cannot end its window (and so keep the role past the revoke)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            win.call("SELECT gcos.online_done(%s, NULL)", win.run_id)
        win.conn.execute("RESET ROLE")
    win.conn.execute(body["sql"].encode())
    assert win.call("SELECT gcos.online_done(%s, NULL)", win.run_id)["kind"] == "applied"
    assert members(ow) == []
    win.conn.close()


def test_a_failed_concurrent_statement_stops_the_run_and_ends_the_window(ow: World) -> None:
    approved(ow)
    holder = psycopg.connect(ow.dsn)  # a long transaction holding a lock the concurrent build waits for
    holder.execute("LOCK TABLE evolution_snapshots IN SHARE ROW EXCLUSIVE MODE")
    head = ow.head()
    with pytest.raises(GcosError) as caught:
        ow.commit("IDX-1", settings=SessionSettings(lock_timeout="200ms"))
    holder.rollback()
    holder.close()
    assert isinstance(caught.value, DatabaseUnavailable) and "lock timeout" in str(caught.value)  # exit 8
    kinds = [e.kind for e in ow.entries(after=head) if e.record.get("step_id") == "IDX-1"]
    assert kinds[-2:] == ["policy_decision", "stop"] and "commit" not in kinds
    assert members(ow) == [] and index_state(ow) is None
    assert ow.commit("IDX-1").outcome == "applied" and index_state(ow) is True  # the same command retries


@pytest.fixture
def other_db(pg_admin_dsn: str, adopted_world_template: str) -> Iterator[str]:
    """A second adopted copy of the reference world on the same server (roles are the server's, not a database's)."""
    name = f"gcos_test_other_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(adopted_world_template)
            )
        )
    try:
        yield name
    finally:
        with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_a_ticket_lends_no_ddl_in_another_database(ow: World, other_db: str) -> None:
    approved(ow)
    win = Window(ow)
    win.ticket()
    elsewhere = psycopg.connect(make_conninfo(ow.person("operator").dsn, dbname=other_db), autocommit=True)
    for attack in (
        "ALTER TABLE laws ADD COLUMN x int",
        "DROP TABLE evolution_snapshots CASCADE",
        "CREATE INDEX i ON laws (id)",
    ):
        refused_42501(elsewhere, attack)
    ow.admin.execute("SELECT pg_terminate_backend(%s, 5000)", (win.conn.info.backend_pid,))  # a crash, not yet swept
    win.conn.close()
    assert members(ow) == [ow.person("operator").name]
    refused_42501(elsewhere, "ALTER TABLE laws ADD COLUMN x int")
    with psycopg.connect(make_conninfo(ow.dsn, dbname=other_db)) as su:
        row = su.execute(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'public.laws'::regclass AND attname = 'x'"
        ).fetchone()
        assert row == (0,) and su.execute(
            "SELECT to_regclass('public.evolution_snapshots') IS NOT NULL"
        ).fetchone() == (True,)
    elsewhere.close()


CORPUS = [
    CIC,
    f"create unique index concurrently if not exists {INDEX} on evolution_snapshots (scope)",
    f"/* built online */ CREATE INDEX CONCURRENTLY IF NOT EXISTS {INDEX} ON evolution_snapshots (scope)"
    " WHERE scope <> 'CONCURRENTLY';",
    'CREATE INDEX CONCURRENTLY IF NOT EXISTS "Odd Name" ON evolution_snapshots (scope)',
    f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {INDEX} /* here */ ON evolution_snapshots (scope)",
    f"CREATE INDEX CONCURRENTLY {INDEX} ON evolution_snapshots (scope)",
    f"CREATE INDEX IF NOT EXISTS {INDEX} ON evolution_snapshots (scope)",
    f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX};",
    f"DROP INDEX CONCURRENTLY {INDEX}",
    f"REINDEX INDEX CONCURRENTLY {INDEX}",
    f"REINDEX (CONCURRENTLY) INDEX {INDEX}",
    "REINDEX TABLE CONCURRENTLY evolution_snapshots",
    "ALTER TABLE ONLY cases DETACH PARTITION cases_2024 CONCURRENTLY",
    'ALTER TABLE "CONCURRENTLY" DETACH PARTITION public.cases_2024 CONCURRENTLY;',
    "ALTER TABLE cases DETACH PARTITION cases_2024 FINALIZE",
    "ALTER TABLE laws ADD CONSTRAINT c CHECK (title <> 'DETACH PARTITION x CONCURRENTLY')",
    "SELECT 'CREATE INDEX CONCURRENTLY IF NOT EXISTS a ON b (c)'",
    "COMMENT ON TABLE laws IS 'DROP INDEX CONCURRENTLY IF EXISTS laws_pkey'",
]


def test_the_kernel_and_the_client_classify_concurrent_statements_alike(ow: World) -> None:
    """One corpus through both classifiers: the same verdict and the same transactional equivalent, CONCURRENTLY
    taken out at the keyword only (never from a literal or a name)."""
    for text in CORPUS:
        ((st, info, node),) = sqlcheck.classify.parse(text, "corpus")
        client = sqlcheck.online.is_concurrent(info, node) and sqlcheck.online.shape(st.text) is not None
        row = ow.admin.execute("SELECT s.kind IS NOT NULL, s.equivalent FROM gcos._online_shape(%s) AS s", (st.text,))
        kernel_says, kernel_equivalent = row.fetchone() or (None, None)
        assert kernel_says is client, text
        assert (kernel_equivalent if kernel_says else st.text) == sqlcheck.online.equivalent(st.text), text
        assert (sqlcheck.online.equivalent(st.text) != st.text) is client, text
    tricky = CORPUS[-3]
    (pieces, equivalent) = ow.admin.execute(
        "SELECT * FROM gcos._online_pieces(%s, %s)", (tricky, Jsonb([tricky]))
    ).fetchone()  # type: ignore[misc]
    assert pieces == [{"sql": tricky, "concurrent": False}] and equivalent == tricky  # the literal is left alone


def test_allow_names_resolve_in_any_adopted_schema_and_never_by_table(ow: World) -> None:
    ow.admin.execute("CREATE SCHEMA annex")
    ow.admin.execute("CREATE TABLE annex.notes (id int PRIMARY KEY, body text)")
    ow.admin.execute("CREATE INDEX notes_body_idx ON annex.notes (body)")
    adopt(ow.admin, ["annex"])

    def indexes(*names: str) -> list[tuple[str, bool]]:
        spec = Jsonb({"mutation": {"allow": [{"create_index": list(names)}]}})
        rows = ow.admin.execute("SELECT name, valid FROM gcos._online_indexes(%s) ORDER BY name", (spec,)).fetchall()
        return [(r[0], r[1]) for r in rows]

    assert indexes("notes_body_idx") == [("notes_body_idx", True)]  # adopted schema annex, not public only
    assert indexes("annex.notes_body_idx") == [("annex.notes_body_idx", True)]
    assert indexes("evolution_snapshots", "notes") == []  # a table's name names none of its indexes


def test_a_reindex_ticket_is_proven_by_its_new_relfilenode(
    world_dsn: str, gcos_adopted: None, project_dir: Path
) -> None:
    """PostgreSQL < 17 fires no event trigger for REINDEX: the kernel proves it ran by the index's relfilenode."""
    add_step(project_dir, step_yaml(f"{CIC}\nREINDEX INDEX CONCURRENTLY {INDEX};"))
    for w in adopted_world(world_dsn, project_dir):
        approved(w)
        win = Window(w)
        win.conn.execute(win.ticket()["sql"].encode())
        assert win.call("SELECT gcos.online_done(%s, NULL)", win.run_id)["kind"] == "applied"
        body = dict(win.call("SELECT gcos.online_next(%s)", win.run_id))
        assert body["kind"] == "ticket" and body["sql"].startswith("REINDEX")
        done = win.call("SELECT gcos.online_done(%s, NULL)", win.run_id)  # the client lies: no REINDEX ran
        assert done["kind"] == "stopped" and "never started" in done["message"]
        win.conn.close()
        w.admin.execute(f"DROP INDEX {INDEX}")  # the world as rehearsed again
        assert w.commit("IDX-1").outcome == "applied"  # honest this time: built, reindexed: built (skipped), reindexed
        assert index_state(w) is True and members(w) == []


HONEST = [  # text whose quotes, identifiers and comments hold ';', '--' and '/*': PostgreSQL's statements, no others
    "SELECT 'a;--b' AS x; /* one /* nested; */ -- still\n */ SELECT $q$ ; -- $q$;\n" + CIC,
    "SELECT E'\\'; -- ' AS \"we;ird--\", 1 AS ab$x$, $x$;--$x$;\r-- CR ends a comment\rSELECT U&'d' /* c */;\n" + CIC,
    "-- note\n" + CIC + "\n/* trailing */",
]
SMUGGLED = [  # registered text and the pieces an operator names for it: each hides code in a comment or a quote
    (f"-- a\nSELECT 1 /* {CIC} */;", ["SELECT 1 /* ", CIC, "*/"]),
    ("SELECT 'x; DROP TABLE laws; --';", ["SELECT 'x", "DROP TABLE laws", "--';"]),
    ("SELECT $$ ; DROP TABLE laws; $$;", ["SELECT $$", "DROP TABLE laws", "$$"]),
    (f"/* /* */ {CIC} -- */\n", [CIC]),
    (CIC.replace(" (", " /* c */ ("), [CIC.replace(" (", " /* c */ (")]),  # a concurrent piece, commented
    (f"{CIC[:-1]} WHERE true; SELECT 1;", [f"{CIC[:-1]} WHERE true; SELECT 1"]),  # two statements, one ticket
]


def test_the_kernel_splits_statements_only_where_postgresql_does(
    conn: psycopg.Connection[Any], gcos_installed: None
) -> None:
    """The client's statements (PostgreSQL's parser, via pglast) pass the kernel's lexer as named, kept without the
    comments at their ends; pieces that begin or end in a comment or a quote, or a concurrent piece carrying a
    comment or a second statement, are refused before anything runs."""
    if conn.info.server_version < 160000:
        pytest.skip("before PostgreSQL 16 _online_pieces refuses every online step first (038)")
    for text in HONEST:
        named = [st.text for st in sqlcheck.split(text)]
        row = conn.execute("SELECT * FROM gcos._online_pieces(%s, %s)", (text, Jsonb(named))).fetchone()
        assert row is not None
        assert [p["sql"] for p in row[0]][-1] == CIC.rstrip(";") and [p["concurrent"] for p in row[0]][-1] is True, text
        assert row[1] == text.replace("CONCURRENTLY", ""), text  # the equivalent: the text as registered
        assert len(row[0]) == len(named) and not any(p["sql"].startswith(("--", "/*")) for p in row[0]), text
    for text, pieces in SMUGGLED:
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            conn.execute("SELECT * FROM gcos._online_pieces(%s, %s)", (text, Jsonb(pieces)))
    conn.execute("SET standard_conforming_strings = off")  # the lexer reads quotes as PostgreSQL does with it on
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        conn.execute("SELECT * FROM gcos._online_pieces(%s, %s)", (CIC, Jsonb([CIC])))
