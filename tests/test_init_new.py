"""gcos init, gcos new and gcos.yaml (issue 11 items 1 and 2), through the CLI and the kernel.

init refuses an existing project before it reaches any server; new derives the allow list and the mechanical
inverses, and writes a TODO that the loader refuses by name where the inverse is not mechanical; a step is
added to the only plan or to the one --plan names; gcos.yaml's approver role vocabulary refuses steps that
name a role outside it; a company_admin principal signs where a spec's approvals.roles names the role, and
M-1 still needs a sovereign (decided by the kernel at commit).
"""

from __future__ import annotations

import secrets
import uuid
from pathlib import Path
from typing import Any

import psycopg
import yaml
from conftest import MakeRole
from psycopg import sql
from psycopg.conninfo import make_conninfo
from test_newcomer import CHANGE, Newcomer, newcomer  # noqa: F401 - the fixture, shared
from typer.testing import CliRunner

from gcos import commands
from gcos.cli import app
from gcos.target import Target

UNREACHABLE = "postgresql://nobody@/nowhere?host=/nonexistent-gcos-socket-dir"


def _cli(*argv: str) -> tuple[int, str]:
    done = CliRunner().invoke(app, list(argv))
    return done.exit_code, done.output


def _project(root: Path, plans: tuple[str, ...] = ("main",), vocabulary: list[str] | None = None) -> Path:
    """A project as gcos init writes one, without a database (init's tables: none)."""
    from gcos.scaffold import init_project

    init_project(root, [], "t")
    if vocabulary is not None:
        doc = yaml.safe_load((root / "gcos.yaml").read_text())
        doc["approver_roles"] = vocabulary
        (root / "gcos.yaml").write_text(yaml.safe_dump(doc))
    for extra in plans[1:]:
        (root / "steps" / f"{extra}.yaml").write_text(
            yaml.safe_dump(
                {
                    "id": f"{extra.upper()}-0",
                    "title": "x",
                    "approvals": {"signers": 1, "roles": ["sovereign"]},
                    "rollback": {"sql": "SELECT 1"},
                }
            )
        )
        (root / "plans" / f"{extra}.yaml").write_text(
            yaml.safe_dump({"id": extra, "title": extra, "steps": [f"{extra.upper()}-0"]})
        )
    return root


def test_init_refuses_an_existing_project_before_reaching_any_server(tmp_path: Path) -> None:
    (tmp_path / "steps").mkdir()
    (tmp_path / "steps" / "x.yaml").write_text("id: X\n")
    code, out = _cli("init", "--project", str(tmp_path), "--dsn", UNREACHABLE)
    assert code == 2 and "already a gcos project" in out and "never overwrites" in out
    assert not (tmp_path / "gcos.yaml").exists()


def test_new_derives_allow_list_and_mechanical_rollback_and_adds_the_step_to_the_plan(tmp_path: Path) -> None:
    root = _project(tmp_path / "p")
    (root / "c.sql").write_text(CHANGE)
    code, out = _cli("new", "ADD-ORDERS", "--sql", str(root / "c.sql"), "--project", str(root))
    assert code == 0, out
    spec = yaml.safe_load((root / "steps" / "add-orders.yaml").read_text())
    assert spec["mutation"]["allow"] == [
        {"create_table": "orders"},
        {"alter_table": "customers"},
        {"insert": "countries"},
    ]
    assert spec["reverify"][0]["sql"] == "SELECT to_regclass('orders') IS NULL"
    rollback = (root / "rollback" / "add-orders.sql").read_text()
    assert (
        rollback.index("DELETE FROM countries")
        < rollback.index("DROP COLUMN email")
        < rollback.index("DROP TABLE orders")
    )
    assert yaml.safe_load((root / "plans" / "main.yaml").read_text())["steps"] == ["BASELINE", "ADD-ORDERS"]
    assert _cli("plan", "--project", str(root))[0] == 0
    code, out = _cli("new", "ADD-ORDERS", "--sql", str(root / "c.sql"), "--project", str(root))
    assert code == 2 and "exists already" in out


def test_new_from_concurrent_sql_writes_an_online_step_that_proves_its_index_valid(tmp_path: Path) -> None:
    root = _project(tmp_path / "p")
    (root / "i.sql").write_text(
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS customers_name_idx ON customers (name);\n"
        "REINDEX INDEX CONCURRENTLY customers_name_idx;\n"
    )
    code, out = _cli("new", "NAME-IDX", "--sql", str(root / "i.sql"), "--project", str(root))
    assert code == 0, out
    spec = yaml.safe_load((root / "steps" / "name-idx.yaml").read_text())
    assert spec["mode"] == "online" and spec["mutation"]["allow"] == [{"create_index": "customers_name_idx"}]
    assert spec["reverify"][0]["sql"] == "SELECT to_regclass('customers_name_idx') IS NULL"
    assert any("indisvalid" in check["sql"] for check in spec["success"])
    rollback = (root / "rollback" / "name-idx.sql").read_text()
    assert "DROP INDEX IF EXISTS customers_name_idx;" in rollback and "TODO(gcos new)" not in rollback
    assert _cli("plan", "--project", str(root))[0] == 0  # the static check accepts it as an online step


def test_a_rollback_that_is_not_mechanical_is_a_todo_the_loader_refuses(tmp_path: Path) -> None:
    root = _project(tmp_path / "p")
    (root / "u.sql").write_text("UPDATE customers SET name = upper(name);\n")
    code, out = _cli("new", "UPPER", "--sql", str(root / "u.sql"), "--project", str(root))
    assert code == 0 and "TODO" in out
    code, out = _cli("plan", "--project", str(root))
    assert code == 2, out
    assert "upper.yaml" in out and "TODO from gcos new" in out and "key rollback" in out
    (root / "rollback" / "upper.sql").write_text("UPDATE customers SET name = lower(name);\n")  # the human's inverse
    assert _cli("plan", "--project", str(root))[0] == 0


def test_new_asks_which_plan_when_there_are_several(tmp_path: Path) -> None:
    root = _project(tmp_path / "p", plans=("main", "later"))
    (root / "c.sql").write_text("CREATE TABLE t1 (id int);\n")
    code, out = _cli("new", "T1", "--sql", str(root / "c.sql"), "--project", str(root))
    assert code == 2 and "--plan" in out and not (root / "steps" / "t1.yaml").exists()
    assert _cli("new", "T1", "--sql", str(root / "c.sql"), "--plan", "later", "--project", str(root))[0] == 0
    assert yaml.safe_load((root / "plans" / "later.yaml").read_text())["steps"][-1] == "T1"


def test_a_step_naming_a_role_outside_the_vocabulary_is_refused_with_its_file(tmp_path: Path) -> None:
    root = _project(tmp_path / "p", vocabulary=["sovereign", "council"])
    spec = yaml.safe_load((root / "steps" / "baseline.yaml").read_text())
    spec["approvals"]["roles"] = ["sovereign", "company_admin"]
    (root / "steps" / "baseline.yaml").write_text(yaml.safe_dump(spec))
    code, out = _cli("plan", "--project", str(root))
    assert code == 2 and "baseline.yaml" in out and "company_admin is not an approver role" in out
    (root / "gcos.yaml").write_text("name: t\napprover_roles: [council]\ncolour: red\n")
    code, out = _cli("plan", "--project", str(root))
    assert code == 2 and "gcos.yaml" in out and "colour" in out


def test_a_company_admin_signs_where_the_spec_names_the_role_and_m1_still_needs_a_sovereign(
    newcomer: Newcomer,  # noqa: F811
) -> None:
    user = newcomer
    role, password = f"nc_{uuid.uuid4().hex[:8]}_dora", secrets.token_hex(8)
    with psycopg.connect(user.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password)))
        try:
            dora = make_conninfo(user.dsn, user=role, password=password)
            added = user.gcos(
                "principals", "add", role, "--name", "Dora", "--kind", "human", "--roles", "company_admin", dsn=user.dsn
            )["result"]
            assert added["roles"] == ["company_admin"]
            user.gcos("init", dsn=user.dsn)
            (user.root / "c.sql").write_text(CHANGE)
            user.gcos("new", "ADD-ORDERS", "--sql", str(user.root / "c.sql"))
            user.gcos("rehearse", "ADD-ORDERS", dsn=user.operator)  # as written: approvals.roles [sovereign]
            user.gcos("approve", "ADD-ORDERS", "--verdict", "approve", "--expires-in", "1h", dsn=dora)
            refused = user.gcos("commit", "ADD-ORDERS", dsn=user.operator, code=3)
            assert "who holds company_admin, not sovereign" in refused["error"]  # not named there: not counted
            path = user.root / "steps" / "add-orders.yaml"
            spec = yaml.safe_load(path.read_text())
            spec["approvals"] = {
                "signers": 2,
                "roles": ["sovereign", "company_admin"],
                "require": {"sovereign": 1, "company_admin": 1},
            }
            path.write_text(yaml.safe_dump(spec, sort_keys=False))
            user.gcos("rehearse", "ADD-ORDERS", dsn=user.operator)
            user.gcos("approve", "ADD-ORDERS", "--verdict", "approve", "--expires-in", "1h", dsn=dora)
            refused = user.gcos("commit", "ADD-ORDERS", dsn=user.operator, code=3)
            assert "no sovereign among the 1 approval" in refused["error"]  # M-1: a company_admin alone is not enough
            user.gcos("approve", "ADD-ORDERS", "--verdict", "approve", "--expires-in", "1h", dsn=user.sovereign)
            user.gcos("commit", "ADD-ORDERS", dsn=user.operator)
        finally:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_init_counts_only_what_it_may_read_without_running_policies_or_waiting_on_locks(
    conn: psycopg.Connection[Any], dsn: str, make_role: MakeRole, tmp_path: Path
) -> None:
    """init reads the user's tables with row security off, read only, with short timeouts: a table a policy
    would filter, and one another session holds locked, are listed as unreadable (not suggested to watch)."""
    reader = make_role("reader")
    for name in ("plain", "guarded", "locked"):
        conn.execute(sql.SQL("CREATE TABLE public.{} (id integer)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("INSERT INTO public.{} VALUES (1), (2), (3)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("GRANT SELECT ON public.{} TO PUBLIC").format(sql.Identifier(name)))
    conn.execute("ALTER TABLE public.guarded ENABLE ROW LEVEL SECURITY")
    conn.execute("CREATE POLICY everyone ON public.guarded FOR SELECT USING (true)")
    with psycopg.connect(dsn) as holder:
        holder.execute("LOCK TABLE public.locked IN ACCESS EXCLUSIVE MODE")
        result = commands.init(Target(reader.dsn, "--dsn"), tmp_path / "p")
    counted = {t.qualified: t.rows for t in result.tables}
    assert counted == {"guarded": None, "locked": None, "plain": 3}
    assert result.watch == ["plain"]


def test_new_writes_nothing_through_a_symlink_out_of_the_project(tmp_path: Path) -> None:
    """A plan file or the rollback/ folder that is a link out of the project is refused, before anything is
    written: gcos new writes only inside the project, and never through a link."""
    root = _project(tmp_path / "p")
    (root / "c.sql").write_text("CREATE TABLE t1 (id int);\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    plan = root / "plans" / "main.yaml"
    (elsewhere / "main.yaml").write_text(plan.read_text())
    plan.unlink()
    plan.symlink_to(elsewhere / "main.yaml")
    before = (elsewhere / "main.yaml").read_text()
    code, out = _cli("new", "T1", "--sql", str(root / "c.sql"), "--project", str(root))
    assert code == 2 and "leads out of the project" in " ".join(out.split()), out
    assert (elsewhere / "main.yaml").read_text() == before and not (root / "steps" / "t1.yaml").exists()
    plan.unlink()
    plan.write_text(before)
    (root / "rollback").rmdir()
    (root / "rollback").symlink_to(elsewhere, target_is_directory=True)
    code, out = _cli("new", "T1", "--sql", str(root / "c.sql"), "--project", str(root))
    assert code == 2 and "leads out of the project" in " ".join(out.split()), out
    assert sorted(p.name for p in elsewhere.iterdir()) == ["main.yaml"] and not (root / "steps" / "t1.yaml").exists()
    (root / "rollback").unlink()
    (root / "rollback").mkdir()
    assert _cli("new", "T1", "--sql", str(root / "c.sql"), "--project", str(root))[0] == 0
    assert yaml.safe_load(plan.read_text())["steps"] == ["BASELINE", "T1"] and not plan.is_symlink()
    assert sorted(p.name for p in (root / "plans").iterdir()) == ["main.yaml"]  # no temporary file left
