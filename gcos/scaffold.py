"""`gcos init` and `gcos new`: start a gcos project for a database one already has, and specs from SQL.

init writes gcos.yaml, steps/, plans/, rollback/ and a first plan whose one step re-verifies that the
tables it found are there (a plan needs a step), lists the schemas and tables of the target database and
suggests the small ones to `watch`. It refuses to overwrite a project. new writes a step spec from a SQL
file (gcos.scaffold_sql derives the allow list and skeletons) and appends the step to a plan.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import yaml
from psycopg import sql

from gcos.errors import SpecError, translated
from gcos.scaffold_sql import derive
from gcos.spec.load import _validate
from gcos.spec.project_file import DEFAULT_APPROVER_ROLES, PROJECT_FILE, load_project_file

WATCH_MAX_ROWS = 10_000  # a table this small is cheap to fingerprint by content
FIRST_PLAN = "main"
BASELINE = "BASELINE"

_TABLES = """
SELECT n.nspname::text, c.relname::text
  FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
   AND n.nspname NOT IN ('gcos', 'information_schema') AND n.nspname !~ '^pg_'
 ORDER BY 1, 2 LIMIT 200"""


@dataclass(frozen=True)
class FoundTable:
    schema: str
    name: str
    rows: int | None  # exact up to WATCH_MAX_ROWS + 1; None if unreadable

    @property
    def qualified(self) -> str:
        return self.name if self.schema == "public" else f"{self.schema}.{self.name}"


@dataclass(frozen=True)
class InitResult:
    root: Path
    name: str
    files: list[str]
    tables: list[FoundTable]
    watch: list[str]  # suggested
    next_steps: list[str] = field(default_factory=list)


# Reading the user's tables runs no code of theirs: row security off (a table a policy would filter refuses
# with 42501 instead of running the policy's functions as whoever runs init), read only, operators and
# functions resolved in pg_catalog only, and short timeouts so a locked or slow table is "unreadable", not a hang.
_SAFE_READ = (
    "SET LOCAL transaction_read_only = on",
    "SET LOCAL row_security = off",
    "SET LOCAL search_path = pg_catalog, pg_temp",
    "SET LOCAL statement_timeout = '2s'",
    "SET LOCAL lock_timeout = '1s'",
)
_UNREADABLE = (psycopg.errors.InsufficientPrivilege, psycopg.errors.QueryCanceled, psycopg.errors.LockNotAvailable)


def _count(conn: psycopg.Connection[Any], t: FoundTable) -> int | None:
    """Rows, counted only up to WATCH_MAX_ROWS + 1 (a big table is not read through); None if not readable
    (no privilege, a row-security policy would apply, or it is locked or slow). Runs inside found_tables's
    transaction, whose settings hold."""
    query = sql.SQL("SELECT pg_catalog.count(*) FROM (SELECT 1 FROM {}.{} LIMIT {}) AS s").format(
        sql.Identifier(t.schema), sql.Identifier(t.name), sql.Literal(WATCH_MAX_ROWS + 1)
    )
    try:
        with conn.transaction():
            row = conn.execute(query).fetchone()
    except _UNREADABLE:
        return None
    return int(row[0]) if row else None


def found_tables(conn: psycopg.Connection[Any]) -> list[FoundTable]:
    """The user tables of the database (gcos's own and the system's left out), with small row counts, read
    in one transaction that runs none of their owners' code (_SAFE_READ)."""
    with translated(), conn.transaction():
        for setting in _SAFE_READ:
            conn.execute(setting)
        rows = conn.execute(_TABLES).fetchall()
        tables = [FoundTable(s, n, None) for s, n in rows]
        return [FoundTable(t.schema, t.name, _count(conn, t)) for t in tables]


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (SQL) as literal blocks, so the spec reads as the SQL file did."""


def _str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _str)


def _dump(doc: dict[str, Any]) -> str:
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=110)


def refuse_existing(root: Path) -> None:
    taken = [p for p in (PROJECT_FILE, "steps", "plans") if (root / p).exists() and any(_entries(root / p))]
    if taken:
        raise SpecError(
            f"{root} is already a gcos project ({', '.join(taken)} exist{'s' if len(taken) == 1 else ''}); "
            "gcos init never overwrites one: add steps with gcos new STEP --sql FILE."
        )


def _entries(path: Path) -> list[Path]:
    return [path] if path.is_file() else list(path.iterdir())


def init_project(root: Path, tables: list[FoundTable], name: str | None = None) -> InitResult:
    """Write a new project under `root` for a database holding `tables`; SpecError if one is there."""
    root = root.resolve()
    refuse_existing(root)
    name = name or root.name or "gcos"
    watch = [t.qualified for t in tables if t.rows is not None and t.rows <= WATCH_MAX_ROWS][:10]
    project = {
        "name": name,
        "approver_roles": list(DEFAULT_APPROVER_ROLES),
        "defaults": {"approvals": {"signers": 1, "roles": ["sovereign"]}, "watch": watch, "plan": FIRST_PLAN},
    }
    checks = [
        {
            "name": f"{t.qualified} exists",
            "sql": f"SELECT to_regclass({_lit(_qualified(t))}) IS NOT NULL",
            "expect": True,
        }
        for t in tables[:20]
    ]
    baseline = {
        "id": BASELINE,
        "title": f"The database is as gcos init found it ({len(tables)} tables)",
        "approvals": {"signers": 1, "roles": ["sovereign"]},
        "reverify": checks,
        "rollback": {"sql": "SELECT 1"},
    }
    plan = {"id": FIRST_PLAN, "title": f"{name}: build order", "steps": [BASELINE]}
    for sub in ("steps", "plans", "rollback"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    files = {
        PROJECT_FILE: _dump(project),
        f"steps/{BASELINE.lower()}.yaml": _dump(baseline),
        f"plans/{FIRST_PLAN}.yaml": _dump(plan),
    }
    for rel in (*files, "rollback"):
        _inside(root, root / rel)
    _create_new({root / rel: text for rel, text in files.items()})
    return InitResult(root, name, sorted(files), tables, watch, _next_steps())


def _qualified(t: FoundTable) -> str:
    from gcos.scaffold_sql import quote_ident

    return f"{quote_ident(t.schema)}.{quote_ident(t.name)}"


def _next_steps() -> list[str]:
    return [
        "gcos install                      # as a superuser (or the database owner on a managed service)",
        "gcos principals add ROLE --name N --kind human --roles sovereign   # see README: Principals",
        "gcos adopt public                 # from then on only gcos commit changes the schema",
        "gcos new STEP --sql change.sql    # a spec from the SQL you have",
    ]


@dataclass(frozen=True)
class NewResult:
    step: str
    spec: str
    rollback: str
    plan: str
    allow: list[dict[str, Any]]
    todos: int


def _step_doc(step: str, title: str, sql_text: str, rollback_rel: str, root: Path) -> tuple[dict[str, Any], Any]:
    config = load_project_file(root)
    d = derive(sql_text)
    reverify = [
        {"name": f"{name} absent", "sql": f"SELECT to_{kind}({_lit(name)}) IS NULL", "expect": True}
        for kind, name in d.created
    ] + [{"name": f"{t}.{c} absent", "sql": _column_count(t, c), "expect": 0} for t, c in d.columns]
    success = [
        {"name": f"{name} created", "sql": f"SELECT to_{kind}({_lit(name)}) IS NOT NULL", "expect": True}
        for kind, name in d.created
    ] + [{"name": f"{t}.{c} added", "sql": _column_count(t, c), "expect": 1} for t, c in d.columns]
    success += [{"name": f"{name} valid", "sql": _index_valid(name), "expect": True} for name in d.indexes]
    watch = list(dict.fromkeys([*config.watch, *d.written]))
    doc: dict[str, Any] = {
        "id": step,
        "title": title,
        "approvals": {"signers": config.signers, "roles": list(config.roles)},
    }
    if d.online:
        doc["mode"] = "online"
    if watch:
        doc["watch"] = watch
    if reverify:
        doc["reverify"] = reverify
    doc["mutation"] = {"sql": sql_text if sql_text.endswith("\n") else sql_text + "\n", "allow": d.allow}
    if success:
        doc["success"] = success
    doc["rollback"] = {"file": rollback_rel}
    return doc, d


def _index_valid(name: str) -> str:
    """An index built concurrently is usable only once PostgreSQL marks it valid (a failed build leaves it not)."""
    return (
        "SELECT bool_and(indisvalid AND indisready) IS TRUE FROM pg_catalog.pg_index"
        f" WHERE indexrelid = to_regclass({_lit(name)})"
    )


def _lit(text: str) -> str:
    """A SQL string literal (the spec is SQL text a human reviews; quotes are doubled, never trusted)."""
    return "'" + text.replace("'", "''") + "'"


def _column_count(table: str, column: str) -> str:
    schema, _, name = table.rpartition(".")
    return (
        "SELECT count(*) FROM information_schema.columns WHERE "
        f"table_schema = {_lit(schema.strip(chr(34)) or 'public')} AND table_name = {_lit(name.strip(chr(34)))} "
        f"AND column_name = {_lit(column)}"
    )


def _plan_path(root: Path, plan_id: str | None) -> Path:
    plans = sorted((root / "plans").glob("*.y*ml")) if (root / "plans").is_dir() else []
    ids = {str((yaml.safe_load(p.read_text(encoding="utf-8")) or {}).get("id")): p for p in plans}
    if plan_id is None and len(ids) == 1:
        return next(iter(ids.values()))
    if plan_id is None:
        known = ", ".join(sorted(ids)) or "none (run gcos init)"
        raise SpecError(f"this project has {len(ids)} plans; name one with --plan ID (plans: {known}).")
    if plan_id not in ids:
        raise SpecError(f"no plan {plan_id!r} under {root / 'plans'}; plans: {', '.join(sorted(ids)) or 'none'}.")
    return ids[plan_id]


def new_step(
    root: Path, step: str, sql_file: Path, *, plan_id: str | None = None, title: str | None = None
) -> NewResult:
    """Write steps/<step>.yaml and rollback/<step>.sql from `sql_file` and append the step to a plan."""
    root = root.resolve()
    if not (root / "steps").is_dir():
        raise SpecError(f"{root} is not a gcos project (no steps/); run gcos init first.")
    spec_path = root / "steps" / f"{step.lower()}.yaml"
    rollback_path = root / "rollback" / f"{step.lower()}.sql"
    for existing in (spec_path, rollback_path):
        if os.path.lexists(existing):  # a dangling symlink is a name that exists, too
            raise SpecError(f"{existing} exists already; gcos new never overwrites a file: choose another STEP id.")
    for other in (root / "steps").glob("*.y*ml"):
        if str((yaml.safe_load(other.read_text(encoding="utf-8")) or {}).get("id", "")).upper() == step.upper():
            raise SpecError(f"step {step} exists already in {other}; choose another STEP id.")
    try:
        sql_text = sql_file.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"cannot read {sql_file}: {exc.strerror}.") from exc
    plan_path = _plan_path(root, plan_id)
    doc, derived = _step_doc(
        step, title or f"{step}: {sql_file.name}", sql_text, f"../rollback/{step.lower()}.sql", root
    )
    _validate("step", doc, spec_path, None, f"step {step}")
    plan = yaml.safe_load(plan_path.read_text(encoding="utf-8"))
    plan["steps"] = [*plan.get("steps", []), step]
    (root / "rollback").mkdir(exist_ok=True)
    for path in (spec_path, rollback_path, plan_path):
        _inside(root, path)
    header = (
        f"-- rollback of {step}, derived by gcos new from {sql_file.name}: check it; a TODO line must be replaced\n"
    )
    _create_new({rollback_path: header + "\n".join(derived.rollback) + "\n", spec_path: _dump(doc)})
    _rewrite(plan_path, _dump(plan))
    return NewResult(step, str(spec_path), str(rollback_path), str(plan["id"]), derived.allow, derived.todos)


def _taken(path: Path) -> str:
    return f"{path} exists already; gcos init and gcos new never overwrite a file (nor write through a link)."


def _inside(root: Path, path: Path) -> None:
    """init and new write only inside the project: a steps/, rollback/ or plan file that resolves elsewhere (a symlink
    out of it) is refused before anything is written."""
    if not path.resolve().is_relative_to(root):
        raise SpecError(f"{path} leads out of the project {root} (a symbolic link); gcos writes only inside it.")


def _create_new(files: dict[Path, str]) -> None:
    """Create each file exclusively (O_CREAT|O_EXCL: any existing name refused, a dangling symlink included, so
    nothing is written through one); if one is taken, the ones this call created are removed again."""
    created: list[Path] = []
    try:
        for path, text in files.items():
            with open(path, "x", encoding="utf-8") as f:
                created.append(path)
                f.write(text)
    except FileExistsError as exc:
        for path in created:
            path.unlink(missing_ok=True)
        raise SpecError(_taken(Path(str(exc.filename)))) from exc


def _rewrite(path: Path, text: str) -> None:
    """Replace the plan file by a new one beside it (os.replace renames over the name; it never writes through
    a link), so a half-written plan is never left behind either."""
    real = path.resolve()
    temp = real.with_name(f".{real.name}.gcos-new")
    temp.unlink(missing_ok=True)  # left by an interrupted run (or planted): a name, never followed
    with open(temp, "x", encoding="utf-8") as f:
        f.write(text)
    os.replace(temp, real)
