"""A new user's path end to end, with only the README as guide (issue 11 "Must show").

The database is the user's own, made with plain SQL (gcos did not create it): a `customers` and a `countries`
table with rows. Everything after that goes through the CLI as the README shows it: gcos install and gcos
adopt public as a superuser, `CREATE ROLE … LOGIN` for an operator and a sovereign (README "Principals") and
gcos principals add, then gcos init, gcos new from a SQL file, rehearse as the operator, approve as the
sovereign's own connection, commit, status, approve --rollback, rollback, log. What is asserted is what the user
sees (exit codes, JSON) and the database itself (the table, the column and the rows exist after the commit
and are gone after the rollback).
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from typer.testing import CliRunner

from gcos.cli import app

USERS_SCHEMA = """
CREATE TABLE customers (id integer PRIMARY KEY, name text NOT NULL);
CREATE TABLE countries (code text PRIMARY KEY, name text NOT NULL);
INSERT INTO customers VALUES (1, 'Ann'), (2, 'Bo');
INSERT INTO countries VALUES ('SE', 'Sweden');
"""
CHANGE = """CREATE TABLE orders (id integer PRIMARY KEY, customer_id integer NOT NULL REFERENCES customers (id));
ALTER TABLE customers ADD COLUMN email text;
INSERT INTO countries (code, name) VALUES ('FR', 'France'), ('DE', 'Germany');
"""


@dataclass(frozen=True)
class Newcomer:
    """The user's database (superuser DSN), project directory and the two people's DSNs."""

    dsn: str
    root: Path
    operator: str
    sovereign: str

    def gcos(self, *args: str, dsn: str | None = None, code: int = 0) -> Any:
        """Run one gcos command with --json; assert its exit code; its JSON result (or error)."""
        argv = [*args, "--json"]
        if args[0] not in ("install", "principals", "adopt"):  # commands that read no project
            argv += ["--project", str(self.root)]
        if dsn is not None:
            argv += ["--dsn", dsn]
        done = CliRunner().invoke(app, argv)
        assert done.exit_code == code, (argv, done.output)
        return json.loads(done.stdout) if done.stdout.strip() else None


@pytest.fixture
def newcomer(dsn: str, tmp_path: Path) -> Iterator[Newcomer]:
    """The user's own database with plain SQL, gcos installed and public adopted by the CLI, two people."""
    made: list[str] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(USERS_SCHEMA)
        people: dict[str, str] = {}
        for who in ("olga", "ann"):
            role, password = f"nc_{uuid.uuid4().hex[:8]}_{who}", secrets.token_hex(8)
            # README "Principals": one LOGIN role per person, then gcos principals add.
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password))
            )
            made.append(role)
            people[who] = make_conninfo(dsn, user=role, password=password)
        try:
            root = tmp_path / "shop"
            root.mkdir()
            user = Newcomer(dsn, root, people["olga"], people["ann"])
            user.gcos("install", dsn=dsn)
            for who, name, roles in (("olga", "Olga Operator", "operator"), ("ann", "Ann Sovereign", "sovereign")):
                role = made[0] if who == "olga" else made[1]
                user.gcos("principals", "add", role, "--name", name, "--kind", "human", "--roles", roles, dsn=dsn)
            user.gcos("adopt", "public", dsn=dsn)
            yield user
        finally:
            for role in made:
                conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
                conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def _world(dsn: str) -> tuple[bool, bool, int]:
    """(orders exists, customers.email exists, countries rows) as the superuser sees them."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT to_regclass('public.orders') IS NOT NULL, "
            "EXISTS (SELECT FROM information_schema.columns WHERE table_name = 'customers' AND column_name = 'email'), "
            "(SELECT count(*) FROM countries)"
        ).fetchone()
    assert row is not None
    return bool(row[0]), bool(row[1]), int(row[2])


def test_a_newcomer_inits_writes_a_step_from_sql_rehearses_approves_commits_and_rolls_back(newcomer: Newcomer) -> None:
    user = newcomer
    found = user.gcos("init", "--name", "shop", dsn=user.dsn)["result"]
    assert {(t["schema"], t["name"]) for t in found["tables"]} == {("public", "customers"), ("public", "countries")}
    assert set(found["watch"]) == {"customers", "countries"}
    assert (user.root / "gcos.yaml").is_file() and (user.root / "rollback").is_dir()
    user.gcos("init", dsn=user.dsn, code=2)  # never overwrites a project

    (user.root / "change.sql").write_text(CHANGE, encoding="utf-8")
    new = user.gcos("new", "ADD-ORDERS", "--sql", str(user.root / "change.sql"))["result"]
    assert new["todos"] == 0 and new["plan"] == "main"
    assert new["allow"] == [{"create_table": "orders"}, {"alter_table": "customers"}, {"insert": "countries"}]
    assert user.gcos("plan")["ok"]

    before = _world(user.dsn)
    assert before == (False, False, 1)
    user.gcos("rehearse", "ADD-ORDERS", dsn=user.operator)
    assert _world(user.dsn) == before  # BEGIN..ROLLBACK
    user.gcos("commit", "ADD-ORDERS", dsn=user.operator, code=3)  # not approved yet
    user.gcos("approve", "ADD-ORDERS", "--verdict", "approve", "--expires-in", "1h", dsn=user.sovereign)
    user.gcos("commit", "ADD-ORDERS", dsn=user.operator)
    assert _world(user.dsn) == (True, True, 3)

    status = json.dumps(user.gcos("status", "ADD-ORDERS", dsn=user.operator)["result"])
    assert '"state": "committed"' in status, status

    user.gcos("approve", "ADD-ORDERS", "--rollback", "--verdict", "approve", "--expires-in", "1h", dsn=user.sovereign)
    user.gcos("rollback", "ADD-ORDERS", dsn=user.operator)
    assert _world(user.dsn) == before

    history = user.gcos("log", "ADD-ORDERS", dsn=user.operator)["result"]
    kinds = [row["kind"] for row in history["rows"]]
    assert kinds.index("rehearsal") < kinds.index("commit") < kinds.index("rollback"), kinds
