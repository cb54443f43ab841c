"""Every record is written with synchronous_commit = on, whatever the client set (issue 10 item 11; 022).

Each aperture that appends a record is called by the principal who may call it, on a connection that logged in
with synchronous_commit = off (`options=-c synchronous_commit=off`), inside one transaction: after the call, in
that transaction, the setting reads on, and the record is in the ledger once it commits. The setting is raised
again at COMMIT (a deferred constraint trigger), so a client that lowers it after the call is overruled, and it
is only ever raised: remote_apply, stronger than on, stays.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import MakeRole, Role
from test_commit import World, adopted_world

from gcos import approvals, kernel, registry
from gcos.domain import Kind
from gcos.spec import PlanSpec, StepSpec, load_project

HOUR = timedelta(hours=1)
EDIT_ARTICLE = (
    "UPDATE law_articles SET heading = heading || ' (edited)' WHERE ctid = (SELECT min(ctid) FROM law_articles)"
)
Act = Callable[[psycopg.Connection[Any]], Any]


@pytest.fixture
def world(world_dsn: str, gcos_adopted: None, project_dir: Path) -> Iterator[World]:
    yield from adopted_world(world_dsn, project_dir)


def show(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute("SHOW synchronous_commit").fetchone()
    assert row is not None
    return str(row[0])


def lowered(role: Role, setting: str = "off") -> psycopg.Connection[Any]:
    """`role`'s connection with synchronous_commit set by the client at login."""
    return psycopg.connect(role.dsn, autocommit=True, options=f"-c synchronous_commit={setting}")


def step_and_plan(w: World, step_id: str) -> tuple[StepSpec, PlanSpec]:
    project = load_project(w.project)
    plan = project.plan_of(step_id)
    assert plan is not None
    return project.step(step_id), plan


def registered(w: World, step_id: str) -> tuple[str, str]:
    step, plan = step_and_plan(w, step_id)
    with w.person("operator").connect() as conn:
        return registry.register_spec(conn, step), registry.register_plan(conn, plan)


def approved(w: World) -> int:
    w.rehearse()
    return int(w.approve().approval_id)


def kernel_call(w: World, step_id: str, query: str) -> Act:
    """A kernel call of `step_id` as the operator: registered first; `query` takes spec, plan, run id, trace."""
    spec_hash, plan_hash = registered(w, step_id)

    def act(conn: psycopg.Connection[Any]) -> Any:
        run = kernel.derive_run_id(conn, spec_hash, plan_hash, "commit")
        return conn.execute(query, (spec_hash, plan_hash, run, "7" * 32)).fetchone()

    return act


def case_add_principal(w: World, make: MakeRole) -> tuple[Role, Act]:
    newcomer = make("newcomer")
    admin = make("adm", kind="human", roles=("admin",), grant=("admin",))
    query = "SELECT * FROM gcos.add_principal(%s, 'Newcomer', 'human', ARRAY['auditor'], p_trace_id => md5('t'))"
    return admin, lambda c: c.execute(query, (newcomer.name,))


def case_register_spec(w: World, make: MakeRole) -> tuple[Role, Act]:
    step, _ = step_and_plan(w, "SB-12")
    return w.person("operator"), lambda c: registry.register_spec(c, step)


def case_register_plan(w: World, make: MakeRole) -> tuple[Role, Act]:
    _, plan = step_and_plan(w, "SB-12")
    return w.person("operator"), lambda c: registry.register_plan(c, plan)


def case_rehearse(w: World, make: MakeRole) -> tuple[Role, Act]:
    spec_hash, plan_hash = registered(w, "SB-12")
    return w.person("operator"), lambda c: c.execute(
        "SELECT gcos.rehearse(%s, %s, %s)", (spec_hash, plan_hash, "5" * 32)
    )


def case_record_approval(w: World, make: MakeRole) -> tuple[Role, Act]:
    w.rehearse()
    step, _ = step_and_plan(w, "SB-12")
    project = load_project(w.project)
    return w.person("sovereign"), lambda c: approvals.approve(c, project, step, verdict="approve", expires_in=HOUR)


def case_record_decision(w: World, make: MakeRole) -> tuple[Role, Act]:
    return w.person("sovereign"), lambda c: approvals.decide(
        c, load_project(w.project), "A-4", verdict="approve", expires_in=HOUR
    )


def case_revoke_approval(w: World, make: MakeRole) -> tuple[Role, Act]:
    approval = approved(w)
    return w.person("sovereign"), lambda c: approvals.revoke(c, approval, "not yet")


def case_revoke_decision(w: World, make: MakeRole) -> tuple[Role, Act]:
    with w.person("sovereign").connect() as conn:
        decision = approvals.decide(
            conn, load_project(w.project), "A-4", verdict="approve", expires_in=HOUR
        ).decision_id
    return w.person("sovereign"), lambda c: approvals.revoke_decision(c, decision, "not yet")


def case_commit(w: World, make: MakeRole) -> tuple[Role, Act]:
    approved(w)
    return w.person("operator"), kernel_call(w, "SB-12", "SELECT gcos.commit(%s, %s, 'commit', %s, %s)")


def case_batch_start(w: World, make: MakeRole) -> tuple[Role, Act]:
    """Step 9, unapproved: batch_start records its refusal (commit_refused)."""
    return w.person("operator"), kernel_call(w, "BACKFILL-SEED", "SELECT gcos.batch_start(%s, %s, %s, %s)")


def case_record_drift(w: World, make: MakeRole) -> tuple[Role, Act]:
    approved(w)
    assert w.commit().ok
    w.admin.execute(EDIT_ARTICLE)  # a superuser edits the committed world: drift to record
    auditor = make("aud", kind="human", roles=("auditor",), grant=("auditor",))
    return auditor, lambda c: c.execute("SELECT gcos.record_drift(%s)", ("6" * 32,))


APERTURES: dict[str, tuple[str, Callable[[World, MakeRole], tuple[Role, Act]]]] = {
    "add_principal": (Kind.PRINCIPAL, case_add_principal),
    "register_spec": (Kind.SPEC_REGISTERED, case_register_spec),
    "register_plan": (Kind.PLAN_REGISTERED, case_register_plan),
    "rehearse": (Kind.REHEARSAL, case_rehearse),
    "record_approval": (Kind.APPROVAL, case_record_approval),
    "record_decision": (Kind.DECISION, case_record_decision),
    "revoke_approval": (Kind.APPROVAL_REVOCATION, case_revoke_approval),
    "revoke_decision": (Kind.DECISION_REVOCATION, case_revoke_decision),
    "commit": (Kind.COMMIT, case_commit),
    "batch_start": (Kind.COMMIT_REFUSED, case_batch_start),
    "record_drift": (Kind.DRIFT, case_record_drift),
}


@pytest.mark.parametrize("aperture", sorted(APERTURES))
def test_every_aperture_writes_its_record_with_synchronous_commit_on(
    world: World, world_role: MakeRole, aperture: str
) -> None:
    kind, case = APERTURES[aperture]
    who, act = case(world, world_role)
    head = world.head()
    with lowered(who) as conn:
        assert show(conn) == "off"
        with conn.transaction():
            act(conn)
            inside = show(conn)
        after = show(conn)
    assert inside == "on"  # raised for the rest of the writing transaction, by the database
    assert after == "off"  # and only for it: the session's own setting returns
    assert kind in [e.kind for e in world.entries(after=head)]


def test_a_client_that_lowers_it_after_the_call_is_overruled_at_commit(world: World) -> None:
    """Set off again after the call: the deferred trigger raises it when the transaction commits (SET CONSTRAINTS
    ALL IMMEDIATE runs that trigger now, which makes it observable inside the transaction)."""
    with lowered(world.person("sovereign")) as conn, conn.transaction():
        approvals.decide(conn, load_project(world.project), "A-4", verdict="approve", expires_in=HOUR)
        conn.execute("SET LOCAL synchronous_commit = off")
        assert show(conn) == "off"
        conn.execute("SET CONSTRAINTS ALL IMMEDIATE")
        assert show(conn) == "on"


def test_a_stronger_setting_is_kept(world: World) -> None:
    with lowered(world.person("sovereign"), "remote_apply") as conn, conn.transaction():
        approvals.decide(conn, load_project(world.project), "A-4", verdict="approve", expires_in=HOUR)
        conn.execute("SET CONSTRAINTS ALL IMMEDIATE")
        assert show(conn) == "remote_apply"


def test_a_transaction_that_writes_no_record_keeps_the_clients_setting(world: World) -> None:
    """Reading, or a refused call, raises nothing: the setting follows the records, not the functions."""
    with lowered(world.person("operator")) as conn, conn.transaction():
        conn.execute("SELECT count(*) FROM gcos.ledger")
        with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
            conn.execute(
                "SELECT * FROM gcos.record_decision('A-4', repeat('ab', 32), 'approve', now() + interval '1 hour', "
                "NULL)"
            )
        assert show(conn) == "off"
