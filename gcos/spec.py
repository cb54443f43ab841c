"""Step specs and plans: load YAML, validate fail-closed with JSON Schema, inline SQL files, hash.

A spec is trusted only after it has passed the schema, so every error names the file, the step and
the key path (and the line, where YAML can tell it). The spec hash is sha256 over the RFC 8785
canonical JSON of the parsed spec with every referenced SQL file inlined: editing the SQL changes the
hash, reformatting the YAML does not.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pglast
import yaml
from referencing import Registry, Resource

from gcos.canonical import content_hash
from gcos.errors import SpecError

SCHEMA_FILES = ("common.schema.json", "step.schema.json", "plan.schema.json")
STEP_REF = re.compile(r"^step-(\d+)$", re.IGNORECASE)


# --------------------------------------------------------------------------- YAML with line numbers


# libyaml's C parser when PyYAML was built with it (the PyPI wheels are): ten times faster than pure Python.
_SafeBase: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _UniqueKeyLoader(_SafeBase):  # type: ignore[valid-type,misc]
    """SafeLoader that refuses duplicate keys: YAML would silently keep the last one."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen[key] = key_node
    mapping: dict[Any, Any] = loader.construct_mapping(node, deep=deep)
    return mapping


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _read_yaml(path: Path) -> tuple[Any, yaml.Node | None]:
    """Parse a YAML file; return the data and its node tree (for line numbers of later errors)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"{path}: cannot read the file ({exc.strerror}).") from exc
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: the file is not UTF-8 text.") from exc
    try:
        node = yaml.compose(text, Loader=_UniqueKeyLoader)
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise SpecError(f"{path}:{where}: YAML syntax error: {problem}; fix the YAML and run again.") from exc
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: YAML syntax error: {exc}; fix the YAML and run again.") from exc
    return data, node


def _line_of(node: yaml.Node | None, path: Sequence[str | int]) -> int | None:
    """The 1-based line of the value at `path` in a composed YAML tree, or of its nearest parent."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in path:
        if isinstance(node, yaml.MappingNode):
            match = [v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == str(part)]
            if not match:
                break
            node = match[0]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            break
        line = node.start_mark.line + 1
    return line


def key_path(path: Iterable[str | int]) -> str:
    """Render a JSON path the way a spec author reads it: reverify[1].expect."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


# --------------------------------------------------------------------------- schema validation


@cache
def _validators() -> dict[str, jsonschema.protocols.Validator]:
    schemas = {
        name: json.loads(resources.files("gcos.schemas").joinpath(name).read_text(encoding="utf-8"))
        for name in SCHEMA_FILES
    }
    registry: Registry[Any] = Registry().with_resources(
        (name, Resource.from_contents(body)) for name, body in schemas.items()
    )
    registry = registry.with_resources((body["$id"], Resource.from_contents(body)) for body in schemas.values())
    out: dict[str, jsonschema.protocols.Validator] = {}
    for kind in ("step", "plan"):
        schema = schemas[f"{kind}.schema.json"]
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
        out[kind] = cls(schema, registry=registry)
    return out


def _best_error(errors: list[jsonschema.ValidationError]) -> jsonschema.ValidationError:
    best: jsonschema.ValidationError = jsonschema.exceptions.best_match(errors)
    return best


def _unknown_keys(error: jsonschema.ValidationError) -> tuple[list[str], list[str]]:
    """For an additionalProperties error: the keys the schema does not know, and the ones it allows."""
    schema: dict[str, Any] = error.schema if isinstance(error.schema, dict) else {}
    known = list(schema.get("properties", {}))
    patterns = list(schema.get("patternProperties", {}))
    instance = error.instance if isinstance(error.instance, dict) else {}
    extra = [k for k in instance if k not in known and not any(re.match(p, k) for p in patterns)]
    allowed = sorted(known) or sorted(p.strip("^$()").replace("|", ", ") for p in patterns)
    return extra, allowed


def _describe(error: jsonschema.ValidationError) -> str:
    """A one-line reason for a schema error, phrased for spec authors."""
    if error.validator == "additionalProperties":
        extra, allowed = _unknown_keys(error)
        return f"unknown key {', '.join(map(repr, extra))} (allowed: {', '.join(allowed)})"
    if error.validator == "required":
        return error.message.replace("is a required property", "is required")
    if error.validator in ("oneOf", "anyOf") and isinstance(error.instance, dict):
        return f"{json.dumps(error.instance, default=str)[:120]} matches none of the allowed forms"
    return error.message


def _validate(kind: str, data: Any, path: Path, node: yaml.Node | None, label: str) -> None:
    errors = sorted(_validators()[kind].iter_errors(data), key=lambda e: list(e.absolute_path))
    if not errors:
        return
    err = _best_error(errors)
    where = list(err.absolute_path)
    line_path: list[str | int] = list(where)
    if err.validator == "additionalProperties":
        line_path += _unknown_keys(err)[0][:1]  # point at the unknown key itself
    line = _line_of(node, line_path)
    loc = f"{path}" + (f":{line}" if line else "")
    raise SpecError(
        f"{loc}: {label} key {key_path(where)}: {_describe(err)}.",
        details={"file": str(path), "key": key_path(where), "line": line, "reason": _describe(err)},
    )


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class Expectation:
    """What a check's single value must be: `expect: 140` or `expect: {gte: 1000000}`."""

    op: str
    value: Any

    @classmethod
    def parse(cls, raw: Any) -> Expectation:
        if isinstance(raw, dict):
            ((op, value),) = raw.items()
            return cls(op, value)
        return cls("eq", raw)

    def describe(self) -> str:
        shown = self.value if isinstance(self.value, str) else json.dumps(self.value)
        return shown if self.op == "eq" else f"{self.op} {shown}"

    def holds(self, actual: Any) -> bool:
        if isinstance(actual, Decimal):
            actual = int(actual) if actual == actual.to_integral_value() else float(actual)
        if self.op in ("eq", "ne"):
            same = _same(actual, self.value)
            return same if self.op == "eq" else not same
        if self.op == "in":
            return any(_same(actual, v) for v in self.value)
        if not _is_number(actual):
            return False
        if self.op == "between":
            low, high = self.value
            return bool(low <= actual <= high)
        return bool(
            {
                "gt": actual > self.value,
                "gte": actual >= self.value,
                "lt": actual < self.value,
                "lte": actual <= self.value,
            }[self.op]
        )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _same(actual: Any, expected: Any) -> bool:
    """Equality without Python's bool/int confusion: `expect: 1` never matches a boolean true."""
    if isinstance(expected, bool) or isinstance(actual, bool):
        return isinstance(expected, bool) and isinstance(actual, bool) and actual == expected
    if _is_number(expected) and _is_number(actual):
        return bool(actual == expected)
    if expected is None or actual is None:
        return actual is expected
    return type(actual) is type(expected) and bool(actual == expected)


@dataclass(frozen=True)
class Check:
    """A named read-only query returning one row of one column, and what that value must be."""

    name: str
    sql: str
    expect: Expectation


@dataclass(frozen=True)
class StopCondition:
    """One stop item: an SQL predicate, forbidden columns or objects, or a new-table limit."""

    name: str
    kind: str  # sql | forbid_columns | forbid_objects | max_new_tables
    sql: str | None = None
    names: tuple[str, ...] = ()
    limit: int | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> StopCondition:
        if "sql" in raw:
            return cls(raw["name"], "sql", sql=raw["sql"])
        if "forbid_columns" in raw:
            names = tuple(raw["forbid_columns"])
            return cls(raw.get("name", f"no column named {', '.join(names)}"), "forbid_columns", names=names)
        if "forbid_objects" in raw:
            names = tuple(raw["forbid_objects"])
            return cls(raw.get("name", f"no object named {', '.join(names)}"), "forbid_objects", names=names)
        limit = int(raw["max_new_tables"])
        return cls(raw.get("name", f"at most {limit} new tables"), "max_new_tables", limit=limit)


@dataclass(frozen=True)
class Mutation:
    sql: str
    allow: tuple[tuple[str, tuple[str, ...]], ...]


@dataclass(frozen=True)
class Batch:
    table: str
    key: str
    size: int
    cursor_worker: str
    cursor_source: str
    sql: str


@dataclass(frozen=True)
class StepSpec:
    """A validated step spec; `document` is the spec with SQL files inlined, `hash` its content hash."""

    id: str
    order: int
    title: str
    source: str
    depends_on: tuple[str, ...]
    signers: int
    signer_roles: tuple[str, ...]
    decisions: tuple[str, ...]
    fold_ins: tuple[str, ...]
    watch: tuple[str, ...]
    reverify: tuple[Check, ...]
    mutation: Mutation | None
    stop: tuple[StopCondition, ...]
    success: tuple[Check, ...]
    rollback_sql: str
    mode: str
    batch: Batch | None
    path: Path
    document: dict[str, Any] = field(repr=False)
    hash: str = ""

    @property
    def ref(self) -> str:
        return f"step-{self.order}"


@dataclass(frozen=True)
class PlanSpec:
    id: str
    title: str
    source: str
    steps: tuple[str, ...]
    fold_ins: dict[str, tuple[str, ...]]
    global_stop: tuple[StopCondition, ...]
    path: Path
    document: dict[str, Any] = field(repr=False)
    hash: str = ""


# --------------------------------------------------------------------------- loading


def _inline_file(
    holder: dict[str, Any], spec_path: Path, root: Path, node: yaml.Node | None, where: list[str | int], label: str
) -> None:
    """Replace `file:` by `sql:` holding the file's text, refusing paths outside the project."""
    if "file" not in holder:
        return
    rel = holder.pop("file")
    target = (spec_path.parent / rel).resolve()
    line = _line_of(node, [*where, "file"])
    loc = f"{spec_path}" + (f":{line}" if line else "")
    if not target.is_relative_to(root.resolve()):
        raise SpecError(f"{loc}: {label} key {key_path([*where, 'file'])}: {rel} is outside the project directory.")
    try:
        text = target.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise SpecError(
            f"{loc}: {label} key {key_path([*where, 'file'])}: SQL file {rel} not found (looked at {target})."
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{loc}: {label} key {key_path([*where, 'file'])}: cannot read SQL file {rel}.") from exc
    if not text.strip():
        raise SpecError(f"{loc}: {label} key {key_path([*where, 'file'])}: SQL file {rel} is empty.")
    holder["sql"] = text


def _check_single_select(sql: str, spec_path: Path, label: str, where: list[str | int], node: yaml.Node | None) -> None:
    """Checks must be one read-only query; parse with PostgreSQL's own grammar (pglast)."""
    line = _line_of(node, where)
    loc = f"{spec_path}" + (f":{line}" if line else "")
    try:
        stmts = pglast.parse_sql(sql)
    except pglast.parser.ParseError as exc:
        raise SpecError(f"{loc}: {label} key {key_path(where)}: SQL does not parse: {exc}.") from exc
    if len(stmts) != 1:
        raise SpecError(
            f"{loc}: {label} key {key_path(where)}: a check must be exactly one SQL statement, found {len(stmts)}."
        )
    stmt = stmts[0].stmt
    if type(stmt).__name__ != "SelectStmt" or getattr(stmt, "intoClause", None) is not None:
        raise SpecError(
            f"{loc}: {label} key {key_path(where)}: a check must be a SELECT (read-only), found {type(stmt).__name__}."
        )


def _check_parses(sql: str, spec_path: Path, label: str, where: list[str | int], node: yaml.Node | None) -> None:
    line = _line_of(node, where)
    loc = f"{spec_path}" + (f":{line}" if line else "")
    try:
        pglast.parse_sql(sql)
    except pglast.parser.ParseError as exc:
        raise SpecError(f"{loc}: {label} key {key_path(where)}: SQL does not parse: {exc}.") from exc


def load_step(path: Path, root: Path) -> StepSpec:
    """Load, validate and hash one step spec; raise SpecError naming file, step, key and line."""
    data, node = _read_yaml(path)
    label = "step"
    if isinstance(data, dict) and isinstance(data.get("id"), str):
        label = f"step {data['id']}"
    _validate("step", data, path, node, label)
    doc: dict[str, Any] = json.loads(json.dumps(data))  # a private, JSON-only copy
    if doc.get("mutation"):
        _inline_file(doc["mutation"], path, root, node, ["mutation"], label)
        _check_parses(doc["mutation"]["sql"], path, label, ["mutation", "sql"], node)
    _inline_file(doc["rollback"], path, root, node, ["rollback"], label)
    _check_parses(doc["rollback"]["sql"], path, label, ["rollback", "sql"], node)
    for section in ("reverify", "success"):
        for i, item in enumerate(doc.get(section, [])):
            _check_single_select(item["sql"], path, label, [section, i, "sql"], node)
    for i, item in enumerate(doc.get("stop", [])):
        if "sql" in item:
            _check_single_select(item["sql"], path, label, ["stop", i, "sql"], node)
    if doc.get("batch"):
        # psycopg's %(name)s placeholders are not SQL: parse with $n in their place.
        placeholders = iter(range(1, 1000))
        as_params = re.sub(r"%\(\w+\)s", lambda _: f"${next(placeholders)}", doc["batch"]["sql"])
        _check_parses(as_params, path, label, ["batch", "sql"], node)
    for section in ("reverify", "success", "stop"):
        names = [item["name"] for item in doc.get(section, []) if "name" in item]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise SpecError(f"{path}: {label} key {section}: duplicate check name {dupes[0]!r}; names must be unique.")

    mutation = None
    if doc.get("mutation"):
        allow = tuple(
            (kind, (names,) if isinstance(names, str) else tuple(names))
            for entry in doc["mutation"]["allow"]
            for kind, names in entry.items()
        )
        mutation = Mutation(sql=doc["mutation"]["sql"], allow=allow)
    batch = None
    if doc.get("batch"):
        b = doc["batch"]
        batch = Batch(b["table"], b["key"], b["size"], b["cursor"]["worker"], b["cursor"]["source"], b["sql"])
    return StepSpec(
        id=doc["id"],
        order=doc["order"],
        title=doc["title"],
        source=doc["source"],
        depends_on=tuple(doc.get("depends_on", [])),
        signers=doc["approvals"]["signers"],
        signer_roles=tuple(doc["approvals"]["roles"]),
        decisions=tuple(doc.get("decisions", [])),
        fold_ins=tuple(doc.get("fold_ins", [])),
        watch=tuple(doc.get("watch", [])),
        reverify=tuple(Check(c["name"], c["sql"], Expectation.parse(c["expect"])) for c in doc["reverify"]),
        mutation=mutation,
        stop=tuple(StopCondition.parse(s) for s in doc.get("stop", [])),
        success=tuple(Check(c["name"], c["sql"], Expectation.parse(c["expect"])) for c in doc["success"]),
        rollback_sql=doc["rollback"]["sql"],
        mode=doc["mode"],
        batch=batch,
        path=path,
        document=doc,
        hash=content_hash(doc),
    )


def load_plan(path: Path) -> PlanSpec:
    data, node = _read_yaml(path)
    label = f"plan {data['id']}" if isinstance(data, dict) and isinstance(data.get("id"), str) else "plan"
    _validate("plan", data, path, node, label)
    doc: dict[str, Any] = json.loads(json.dumps(data))
    for i, item in enumerate(doc.get("global_stop", [])):
        if "sql" in item:
            _check_single_select(item["sql"], path, label, ["global_stop", i, "sql"], node)
    return PlanSpec(
        id=doc["id"],
        title=doc["title"],
        source=doc["source"],
        steps=tuple(doc["steps"]),
        fold_ins={k: tuple(v) for k, v in doc.get("fold_ins", {}).items()},
        global_stop=tuple(StopCondition.parse(s) for s in doc.get("global_stop", [])),
        path=path,
        document=doc,
        hash=content_hash(doc),
    )


# --------------------------------------------------------------------------- the project


@dataclass(frozen=True)
class Project:
    """Every step and plan of a gcos project, validated together (ids, orders, the DAG)."""

    root: Path
    steps: dict[str, StepSpec]  # by canonical id, in order
    plans: dict[str, PlanSpec]

    def step(self, ref: str) -> StepSpec:
        """Address a step case-insensitively by id (SB-10, sb-10) or by order (step-3)."""
        wanted = ref.strip()
        by_order = STEP_REF.match(wanted)
        for spec in self.steps.values():
            if spec.id.upper() == wanted.upper() or (by_order and spec.order == int(by_order.group(1))):
                return spec
        known = ", ".join(f"{s.id} (step-{s.order})" for s in self.steps.values()) or "none"
        raise SpecError(f"unknown step {ref!r}; known steps: {known}.")

    def plan_of(self, step_id: str) -> PlanSpec | None:
        for plan in self.plans.values():
            if step_id in plan.steps:
                return plan
        return None


def _find_cycle(graph: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A dependency cycle as a list of ids (first repeated at the end), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in graph.get(node, ()):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep) :], dep]
            if dep not in state and (found := visit(dep)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def load_project(root: Path) -> Project:
    """Load steps/*.yaml and plans/*.yaml under `root` and validate them as one build order."""
    root = root.resolve()
    steps_dir = root / "steps"
    if not steps_dir.is_dir():
        raise SpecError(f"{root} has no steps/ directory; run gcos from a gcos project (see README).")
    steps: dict[str, StepSpec] = {}
    by_key: dict[str, StepSpec] = {}
    by_order: dict[int, StepSpec] = {}
    for path in sorted(steps_dir.glob("*.y*ml")):
        spec = load_step(path, root)
        if spec.id.upper() in by_key:
            raise SpecError(f"{path}: step {spec.id}: duplicate step id, also in {by_key[spec.id.upper()].path}.")
        if spec.order in by_order:
            raise SpecError(
                f"{path}: step {spec.id} key order: order {spec.order} is also used by {by_order[spec.order].id} "
                f"({by_order[spec.order].path})."
            )
        by_key[spec.id.upper()] = by_order[spec.order] = steps[spec.id] = spec
    if not steps:
        raise SpecError(f"{steps_dir} holds no step specs (*.yaml).")
    for spec in steps.values():
        for dep in spec.depends_on:
            if dep.upper() not in by_key:
                raise SpecError(f"{spec.path}: step {spec.id} key depends_on: unknown step {dep!r}.")
            if by_key[dep.upper()].id != dep:
                raise SpecError(
                    f"{spec.path}: step {spec.id} key depends_on: write {by_key[dep.upper()].id!r}, not {dep!r}."
                )
    cycle = _find_cycle({s.id: s.depends_on for s in steps.values()})
    if cycle:
        raise SpecError(f"dependency cycle: {' -> '.join(cycle)}; remove one depends_on edge.")

    plans: dict[str, PlanSpec] = {}
    plans_dir = root / "plans"
    for path in sorted(plans_dir.glob("*.y*ml")) if plans_dir.is_dir() else []:
        plan = load_plan(path)
        if plan.id in plans:
            raise SpecError(f"{path}: plan {plan.id}: duplicate plan id, also in {plans[plan.id].path}.")
        for i, step_id in enumerate(plan.steps):
            if step_id not in steps:
                raise SpecError(f"{path}: plan {plan.id} key steps[{i}]: unknown step {step_id!r}.")
            other = next((p for p in plans.values() if step_id in p.steps), None)
            if other:
                raise SpecError(f"{path}: plan {plan.id}: step {step_id} is already in plan {other.id}.")
            for dep in steps[step_id].depends_on:
                if dep in plan.steps and plan.steps.index(dep) > i:
                    raise SpecError(
                        f"{path}: plan {plan.id} key steps: {step_id} is listed before {dep}, which it depends on."
                    )
        for step_id in plan.fold_ins:
            if step_id not in plan.steps:
                raise SpecError(f"{path}: plan {plan.id} key fold_ins.{step_id}: step is not in this plan.")
        plans[plan.id] = plan
    ordered = dict(sorted(steps.items(), key=lambda item: item[1].order))
    return Project(root=root, steps=ordered, plans=plans)
