"""M-1 on every step and people, not roles (issue 10 items 1 and 9; gcos/sql/020_signers.sql).

Seed 002 §70.0: no step may COMMIT until "M-1 (os_proposal_approvals>0, named sovereign approval for THAT step)";
seed 004: ">=2 distinct human signers" where a step asks for cross-signing. Gate 5 requires at least one sovereign
among the persons whose approvals count, always (a floor no spec can lower), on top of the spec's `signers`; a
spec may say it (`approvals.require`), never below one sovereign. A principal names the person it belongs to, and
two principals of one person are one signer.

Every scenario runs on a copy of the reference world whose schema public the kernel governs (`gcos_adopted`), as
real LOGIN roles mapped to principals: rehearsals and commits are the kernel's (``gcos.commands``), approvals and
decisions go through the aperture as their principals.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import Role
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.types.json import Jsonb
from test_gates import Desk
from typer.testing import CliRunner

from gcos import gates, ledger
from gcos.cli import app
from gcos.errors import ExitCode, GateRefused, SpecError
from gcos.principals import add_principal
from gcos.spec import load_project

PEOPLE: dict[str, tuple[tuple[str, ...], str, str | None]] = {  # hint -> (gcos roles, display name, person)
    "carol": (("sovereign",), "Carol", None),
    "bob": (("council",), "Bob", None),
    "dan": (("council",), "Dan", None),
    "erin": (("council",), "Erin", None),
    "rita": (("operator",), "Rita", None),  # rehearses
    "opal": (("operator",), "Opal", None),  # commits
    "alice-laptop": (("sovereign",), "alice-laptop", "Alice"),  # two principals of one person
    "alice-db": (("council",), "alice-db", "Alice"),
    "rita-sov": (("sovereign",), "rita-sov", "Rita"),  # Rita's second principal, a sovereign one
}


class Signers(Desk):
    """A Desk whose principals name their person."""

    def role(self, who: str) -> Role:
        if who not in self.roles:
            gcos_roles, display, person = PEOPLE[who]
            name, password = f"gcos_t_{uuid.uuid4().hex[:8]}_{who.replace('-', '_')}", secrets.token_hex(12)
            ident = sql.Identifier(name)
            self.admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(ident, sql.Literal(password)))
            for group in gcos_roles:
                self.admin.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(f"gcos_{group}"), ident))
            add_principal(self.admin, name, name=display, kind="human", roles=gcos_roles, grant=False, person=person)
            row = self.admin.execute("SELECT oid::bigint FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
            assert row is not None
            self.roles[who] = Role(name, make_conninfo(self.dsn, user=name, password=password), int(row[0]))
        return self.roles[who]


@pytest.fixture
def desk(world_dsn: str, project_dir: Path, gcos_adopted: None) -> Iterator[Desk]:
    """A Signers desk on a copy of the adopted reference world; its roles are dropped afterwards."""
    d = Signers(world_dsn, psycopg.connect(world_dsn, autocommit=True), project_dir)
    try:
        yield d
    finally:
        if d.admin.closed:
            d.admin = psycopg.connect(world_dsn, autocommit=True)
        d.drop_roles()
        d.admin.close()


def refused(d: Desk, step: str) -> dict[str, Any]:
    """The kernel's decision of a refused commit: GateRefused, exit 3, recorded in the ledger."""
    with pytest.raises(GateRefused) as info:
        d.commit(step)
    assert info.value.exit_code == ExitCode.GATE_REFUSED
    decision: dict[str, Any] = dict(info.value.details["decision"])
    assert decision["allow"] is False
    return decision


def approvals_gate(decision: dict[str, Any]) -> dict[str, Any]:
    return dict(next(g for g in decision["gates"] if g["gate"] == "approvals"))


def allowing(d: Desk) -> dict[str, Any]:
    """The allowing decision the (only) commit names."""
    (commit,) = d.records("commit")
    decision = ledger.read_one(d.admin, commit.record["payload"]["policy_decision_seq"]).record["payload"]
    assert decision["allow"] is True
    return dict(decision)


def ready(d: Desk, step: str = "SB-1-2") -> None:
    """Rehearsed by Rita and, for SB-1-2, decisions C-1 and C-2 (A-8) recorded by Carol (a sovereign)."""
    d.rehearse(step)
    if step == "SB-1-2":
        d.decide("carol", "C-1")
        d.decide("carol", "C-2")


# --------------------------------------------------------------------------- M-1


def test_two_council_members_cannot_commit_sb_1_2_and_a_sovereign_and_one_can(desk: Desk) -> None:
    step = desk.project.step("SB-1-2")
    assert step.signers == 2 and step.signer_require == (("sovereign", 1),)
    ready(desk)
    row = desk.admin.execute(
        "SELECT document #> '{approvals,require}' FROM gcos.specs WHERE spec_hash = %s", (step.hash,)
    )
    assert row.fetchone() == ({"sovereign": 1},)  # the registered document says it, for the database to read
    bob, dan = desk.approve("bob", "SB-1-2"), desk.approve("dan", "SB-1-2")
    decision = refused(desk, "SB-1-2")
    g = approvals_gate(decision)
    assert decision["failed"] == ["approvals"] and not g["allow"] and g["evidence"] == [bob, dan]
    assert "SB-1-2 has no sovereign among the 2 approvals (Bob (approval" in g["reason"]
    assert "at least 1 sovereign" in g["reason"] and "M-1" in g["reason"]
    assert g["remedy"].startswith("ask a sovereign other than Bob, Dan to run: gcos approve SB-1-2")
    (recorded,) = desk.records("commit_refused")  # the kernel's record of the refusal; nothing applied
    assert "no sovereign among the 2 approvals" in str(recorded.payload) and not desk.records("commit")
    desk.revoke("bob", dan)
    carol = desk.approve("carol", "SB-1-2")  # a sovereign and a council member
    result = desk.commit("SB-1-2")
    assert result.ok, result.message
    assert approvals_gate(allowing(desk))["evidence"] == [bob, carol]


def test_no_spec_lowers_the_sovereign_floor_in_the_database(desk: Desk) -> None:
    """A document registered without require, or with require {sovereign: 0} (past the loader), still needs a
    sovereign: the floor is the database's."""
    project = desk.project
    step, plan = project.step("SB-1-2"), project.plan_of("SB-1-2")
    assert plan is not None
    gates.register(desk.admin, step, plan)
    for require in (None, {"sovereign": 0}):
        doc = json.loads(json.dumps(step.document))
        doc["title"] = f"{doc['title']} ({require})"
        doc["approvals"].pop("require")
        if require is not None:
            doc["approvals"]["require"] = require
        with desk.admin.transaction():
            ledger.trace_context(desk.admin)  # register_spec takes its trace from the transaction (024_traces)
            row = desk.admin.execute("SELECT gcos.register_spec(%s)", (Jsonb(doc),)).fetchone()
        assert row is not None
        spec_hash = str(row[0])
        for who in ("bob", "dan"):
            with desk.connect(who) as conn:
                approve = "SELECT gcos.record_approval('SB-1-2', %s, %s, 'approve', now() + '1h', NULL, NULL, md5('t'))"
                conn.execute(approve, (spec_hash, plan.hash))
        with desk.connect("opal") as conn:
            row = conn.execute("SELECT gcos.evaluate_gates(%s, %s, 'commit', '{}')", (spec_hash, plan.hash)).fetchone()
        assert row is not None
        g = approvals_gate(row[0])
        assert not g["allow"] and "has no sovereign among the 2 approvals" in g["reason"], g["reason"]


def _edit_approvals(project_dir: Path, old: str, new: str) -> Path:
    path = project_dir / "steps" / "07-sb-1-2.yaml"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("approvals", "said"),
    [
        (
            "signers: 2\n  roles: [sovereign, council]\n  require: {sovereign: 0}",
            "approvals.require.sovereign: at least 1",
        ),
        ("signers: 2\n  roles: [council]", "sovereign is not among approvals.roles"),
        ("signers: 2\n  roles: [sovereign]\n  require: {sovereign: 1, council: 1}", "council is not among"),
        ("signers: 1\n  roles: [sovereign, council]\n  require: {sovereign: 1, council: 1}", "raise signers"),
    ],
    ids=["sovereign-0", "no-sovereign-role", "role-outside-roles", "more-than-signers"],
)
def test_a_require_below_m1_is_refused_at_load(project_dir: Path, approvals: str, said: str) -> None:
    _edit_approvals(
        project_dir,
        "signers: 2            # authority over ownership/exceptions: cross-signed (seed 004: >=2 distinct "
        "human signers)\n  roles: [sovereign, council]\n  require: {sovereign: 1}",
        approvals,
    )
    with pytest.raises(SpecError) as info:
        load_project(project_dir)
    assert info.value.exit_code == ExitCode.BAD_INPUT and said in str(info.value), str(info.value)
    assert "07-sb-1-2.yaml" in str(info.value)
    done = CliRunner().invoke(app, ["plan", "--project", str(project_dir)])
    assert done.exit_code == 2, done.output


# --------------------------------------------------------------------------- people, not roles


def test_two_principals_of_one_person_are_one_signer(desk: Desk) -> None:
    ready(desk)
    laptop = desk.approve("alice-laptop", "SB-1-2")
    db = desk.approve("alice-db", "SB-1-2")
    g = approvals_gate(refused(desk, "SB-1-2"))
    assert g["evidence"] == [laptop] and g["reason"].startswith("SB-1-2 needs 2 distinct approvers and has 1")
    assert (
        f"approval {db} by alice-db is by alice-db, the same person as alice-laptop (approval {laptop})" in g["reason"]
    )
    assert "one person counts once" in g["reason"] and "other than alice-laptop" in g["remedy"]
    erin = desk.approve("erin", "SB-1-2")  # a second person
    result = desk.commit("SB-1-2")
    assert result.ok, result.message
    assert approvals_gate(allowing(desk))["evidence"] == [laptop, erin]


def test_a_persons_latest_word_and_self_approval_span_their_principals(desk: Desk) -> None:
    ready(desk)
    laptop = desk.approve("alice-laptop", "SB-1-2")
    desk.approve("erin", "SB-1-2")
    desk.approve("alice-db", "SB-1-2", verdict="reject")  # Alice, through her other principal, says no
    g = desk.judge("SB-1-2").gate("approvals")
    assert not g.allow and f"approval {laptop} by alice-laptop is superseded by the later reject of Alice" in g.reason
    desk.rehearse("SB-12", by="rita")
    desk.approve("rita-sov")  # Rita's sovereign principal approves what Rita rehearsed
    g = desk.judge().gate("approvals")
    assert not g.allow and "is by rita-sov, who ran the rehearsal (no self-approval)" in g.reason


def test_principals_add_and_list_show_the_person(world_dsn: str, desk: Desk) -> None:
    laptop, bob = desk.role("alice-laptop"), desk.role("bob")
    run = CliRunner().invoke
    listed = run(app, ["principals", "list", "--dsn", world_dsn, "--json"])
    assert listed.exit_code == 0, listed.output
    people = {p["role"]: p["person"] for p in json.loads(listed.stdout)["result"]}
    assert people[laptop.name] == "Alice"
    assert people[bob.name] == "Bob"  # default: the principal's own name
    changed = run(app, ["principals", "add", bob.name, "--name", "Bob B", "--kind", "human", "--roles", "council",
                        "--dsn", world_dsn, "--json"])  # fmt: skip
    assert changed.exit_code == 0 and json.loads(changed.stdout)["result"]["person"] == "Bob"  # kept
    moved = run(app, ["principals", "add", bob.name, "--name", "Bob B", "--kind", "human", "--roles", "council",
                      "--person", "Robert", "--dsn", world_dsn])  # fmt: skip
    assert moved.exit_code == 0 and "person Robert" in moved.stdout
    table = run(app, ["principals", "list", "--dsn", world_dsn], terminal_width=200)
    assert table.exit_code == 0 and "person" in table.stdout and "Robert" in table.stdout
    record = [e for e in ledger.read_all(desk.admin) if e.kind == "principal"][-1]
    assert record.payload["person"] == "Robert" and record.payload["display_name"] == "Bob B"
    bad = run(app, ["principals", "add", bob.name, "--name", "Bob", "--kind", "human", "--roles", "council",
                    "--person", " ", "--dsn", world_dsn])  # fmt: skip
    assert bad.exit_code == 2, bad.output
