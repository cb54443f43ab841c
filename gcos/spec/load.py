"""Load one step spec or plan: read YAML, validate fail-closed with JSON Schema, inline SQL files, hash.

A spec is trusted only after it has passed the schema, so every error names the file, the step and
the key path (and the line, where YAML can tell it). The spec hash is sha256 over the RFC 8785
canonical JSON of the parsed spec with every referenced SQL file inlined: editing the SQL changes the
hash, reformatting the YAML does not.
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from gcos import limits, sql_lines
from gcos.canonical import content_hash
from gcos.errors import SpecError
from gcos.spec import checked as vouchers
from gcos.spec.model import Batch, Check, Expectation, Mutation, PlanSpec, StepSpec, StopCondition
from gcos.spec.yaml_doc import _line_of, key_path
from gcos.spec.yaml_doc import _read_yaml as _read_yaml  # gcos.spec.project_file reads gcos.yaml with it

if TYPE_CHECKING:  # imported where used: a process whose specs are vouched for (gcos.spec.checked) never loads them
    import jsonschema

SCHEMA_FILES = ("common.schema.json", "step.schema.json", "plan.schema.json", "project.schema.json")


# --------------------------------------------------------------------------- schema validation


def shipped_schemas() -> dict[str, Any]:
    """The JSON Schemas gcos ships, by file name."""
    return {
        name: json.loads(resources.files("gcos.schemas").joinpath(name).read_text(encoding="utf-8"))
        for name in SCHEMA_FILES
    }


def check_shipped_schemas() -> None:
    """Each shipped schema is valid under its metaschema: a property of the package, proven by the tests
    (tests/test_rehearsal.py), not re-proven by every process (0.1 s of each command's start)."""
    import jsonschema

    for schema in shipped_schemas().values():
        jsonschema.validators.validator_for(schema).check_schema(schema)


@cache
def _validators() -> dict[str, jsonschema.protocols.Validator]:
    import jsonschema
    from referencing import Registry, Resource

    schemas = shipped_schemas()
    registry: Registry[Any] = Registry().with_resources(
        (name, Resource.from_contents(body)) for name, body in schemas.items()
    )
    registry = registry.with_resources((body["$id"], Resource.from_contents(body)) for body in schemas.values())
    out: dict[str, jsonschema.protocols.Validator] = {}
    for kind in ("step", "plan", "project"):
        schema = schemas[f"{kind}.schema.json"]
        cls = jsonschema.validators.validator_for(schema)
        out[kind] = cls(schema, registry=registry)
    return out


def _best_error(errors: list[jsonschema.ValidationError]) -> jsonschema.ValidationError:
    import jsonschema

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


def _reason(err: jsonschema.ValidationError) -> str:
    """What is wrong at one key; M-1 is said as the rule it is, not as the schema's generic minimum."""
    if err.validator == "minimum" and list(err.absolute_path) == ["approvals", "require", "sovereign"]:
        return f"at least 1 sovereign signs, {M1}"
    return _describe(err)


def _validate(kind: str, data: Any, path: Path, node: yaml.Node | None, label: str) -> None:
    """Refuse a document with every schema problem of the file at once (one line each: key path, line).
    A document that passed before (the same parsed data, types included: its repr) has a voucher."""
    content = f"{kind}\0{data!r}".encode()
    if vouchers.vouched("schema", content):
        return
    problems: list[dict[str, Any]] = []
    for error in sorted(_validators()[kind].iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path]):
        err = _best_error([error])  # into a oneOf: the branch that came closest
        where = list(err.absolute_path)
        line_path: list[str | int] = list(where)
        if err.validator == "additionalProperties":
            line_path += _unknown_keys(err)[0][:1]  # point at the unknown key itself
        problem = {"key": key_path(where), "line": _line_of(node, line_path), "reason": _reason(err)}
        if problem not in problems:
            problems.append(problem)
    if not problems:
        vouchers.vouch("schema", content)
        return
    lines = [
        f"{path}" + (f":{p['line']}" if p["line"] else "") + f": {label} key {p['key']}: {p['reason']}."
        for p in problems
    ]
    if len(lines) == 1:
        raise SpecError(lines[0], details={"file": str(path), **problems[0]})
    raise SpecError(
        f"{path} has {len(lines)} errors:\n" + "\n".join(f"  {line}" for line in lines),
        details={"file": str(path), **problems[0], "errors": problems},
    )


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
    limits.check_size(target, "SQL file")
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
    if not vouchers.vouched("sql-file", text.encode()):  # it parsed before: the same text parses again
        said = sql_lines.sql_file_error(str(target.relative_to(root.resolve())), f"{label} ({loc})", text)
        if said is None:
            vouchers.vouch("sql-file", text.encode())
        elif TODO_MARK not in text:  # a gcos new TODO gets its own sentence (_refuse_todo)
            raise SpecError(said)
    holder["sql"] = text


def _check_single_select(sql: str, spec_path: Path, label: str, where: list[str | int], node: yaml.Node | None) -> None:
    """Checks must be one read-only query; parse with PostgreSQL's own grammar (pglast)."""
    from pglast import parser

    line = _line_of(node, where)
    loc = f"{spec_path}" + (f":{line}" if line else "")
    try:
        stmts = _parsed(sql)
    except parser.ParseError as exc:
        said = sql_lines.parse_error(spec_path, f"{label} key {key_path(where)}", node, where, sql, exc)
        raise SpecError(said or f"{loc}: {label} key {key_path(where)}: SQL does not parse: {exc}.") from exc
    if len(stmts) != 1:
        raise SpecError(
            f"{loc}: {label} key {key_path(where)}: a check must be exactly one SQL statement, found {len(stmts)}."
        )
    kind, body = next(iter(stmts[0].get("stmt", {"RawStmt": {}}).items()))
    if kind != "SelectStmt" or body.get("intoClause") is not None:
        raise SpecError(f"{loc}: {label} key {key_path(where)}: a check must be a SELECT (read-only), found {kind}.")


def _parsed(sql: str) -> list[dict[str, Any]]:
    """The statements as PostgreSQL's parser gives them, as JSON: a tenth of the cost of pglast's Python nodes,
    which only a node-walking check needs (every spec of the project is parsed on each load)."""
    from pglast import parser

    stmts: list[dict[str, Any]] = json.loads(parser.parse_sql_json(sql)).get("stmts", [])
    return stmts


def _check_parses(sql: str, spec_path: Path, label: str, where: list[str | int], node: yaml.Node | None) -> None:
    from pglast import parser

    line = _line_of(node, where)
    loc = f"{spec_path}" + (f":{line}" if line else "")
    try:
        _parsed(sql)
    except parser.ParseError as exc:
        said = sql_lines.parse_error(spec_path, f"{label} key {key_path(where)}", node, where, sql, exc)
        raise SpecError(said or f"{loc}: {label} key {key_path(where)}: SQL does not parse: {exc}.") from exc


TODO_MARK = "TODO(gcos new)"  # what gcos new writes where it cannot derive SQL; refused until replaced


def _refuse_todo(doc: dict[str, Any], path: Path, label: str) -> None:
    """A spec whose SQL still holds a gcos new TODO is refused, naming the key and the TODO (fail closed)."""
    for key in ("mutation", "rollback"):
        text = (doc.get(key) or {}).get("sql", "")
        for line in text.splitlines():
            if TODO_MARK in line:
                raise SpecError(
                    f"{path}: {label} key {key}: still holds a TODO from gcos new ({line.strip()[:160]}); "
                    "write that SQL by hand and delete the TODO line."
                )


M1 = "every step needs a named sovereign approval (seed 002 §70.0 M-1)"
DEFAULT_REQUIRE = {"sovereign": 1}
# Optional step keys with a default the loader writes into the document (order comes from the plan: _with_order).
STEP_DEFAULTS: dict[str, Any] = {"mode": "transactional", "reverify": [], "success": []}


def _signers(doc: dict[str, Any], path: Path, node: yaml.Node | None, label: str) -> None:
    """Fill approvals.require (default {sovereign: 1}) into the document, so the registered spec says it, and
    refuse a require naming a role outside `roles` or asking for more persons than `signers`."""
    approvals = doc["approvals"]
    require: dict[str, int] = approvals.setdefault("require", dict(DEFAULT_REQUIRE))
    where = ["approvals", "require" if "require" in approvals else "roles"]
    loc = f"{path}" + (f":{line}" if (line := _line_of(node, where)) else "")
    outside = [role for role in require if role not in approvals["roles"]]
    if outside:
        hint = f"; {M1}" if "sovereign" in outside else ""
        raise SpecError(
            f"{loc}: {label} key approvals.require: {', '.join(outside)} is not among approvals.roles "
            f"({', '.join(approvals['roles'])}){hint}; add it to roles."
        )
    if sum(require.values()) > approvals["signers"]:
        raise SpecError(
            f"{loc}: {label} key approvals.require asks for {sum(require.values())} distinct signers but "
            f"approvals.signers is {approvals['signers']}; raise signers."
        )


def step_document(path: Path, root: Path, *, checked: bool = True) -> dict[str, Any]:
    """The step's document after the schema, with SQL files inlined, every SQL text parsed and the defaults
    written, except `order` (which needs the plan: with_order).

    `checked=False` skips the schema and the SQL parses (two thirds of a load): the same document when the
    spec is valid, possibly an invalid one (or any exception) when not; only for steps a command neither
    registers nor runs (load_project's `focus`)."""
    data, node = _read_yaml(path)
    label = "step"
    if isinstance(data, dict) and isinstance(data.get("id"), str):
        label = f"step {data['id']}"
    if checked:
        done = _vouched_step(data, path, root, node, label)
        if done is not None:
            return done
        _validate("step", data, path, node, label)
    doc = _completed(data, path, root, node, label, checked)
    if checked:
        _check_sql(doc, path, label, node)
        vouchers.vouch("step", _step_content(data, doc))
    return doc


def _step_content(data: Any, doc: dict[str, Any]) -> bytes:
    """What a step's checks judge: the parsed YAML (repr: types included) and the document with its SQL inlined."""
    return f"{data!r}\0{json.dumps(doc, sort_keys=True)}".encode()


def _vouched_step(data: Any, path: Path, root: Path, node: yaml.Node | None, label: str) -> dict[str, Any] | None:
    """The step's document when these exact contents (YAML and SQL files) passed every check before, else None:
    any doubt (an error of the unchecked path) goes to the checked path, which says what it is."""
    if vouchers.cache_dir() is None:
        return None
    try:
        doc = _completed(data, path, root, node, label, checked=False)
    except Exception:
        return None
    return doc if vouchers.vouched("step", _step_content(data, doc)) else None


def _completed(data: Any, path: Path, root: Path, node: yaml.Node | None, label: str, checked: bool) -> dict[str, Any]:
    """A private JSON copy of the step with the defaults written and the SQL files inlined (the mutation parsed
    before the rollback file is read, where `checked`: the first error is the one it always was)."""
    doc: dict[str, Any] = json.loads(json.dumps(data))  # a private, JSON-only copy
    for key, default in STEP_DEFAULTS.items():  # written, so the registered spec says them (hash as if stated)
        doc.setdefault(key, json.loads(json.dumps(default)))
    _signers(doc, path, node, label)
    if doc.get("mutation"):
        _inline_file(doc["mutation"], path, root, node, ["mutation"], label)
        if checked:
            _check_parses(doc["mutation"]["sql"], path, label, ["mutation", "sql"], node)
    _inline_file(doc["rollback"], path, root, node, ["rollback"], label)
    _refuse_todo(doc, path, label)
    return doc


def _check_sql(doc: dict[str, Any], path: Path, label: str, node: yaml.Node | None) -> None:
    """The rollback and batch SQL parse; checks and stops are one SELECT each; check names are unique."""
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


def _step_from(doc: dict[str, Any], path: Path) -> StepSpec:
    """The StepSpec of a checked document; its hash is the content hash of exactly that document."""
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
        cursor = (b["cursor"]["worker"], b["cursor"]["source"])
        batch = Batch(b["table"], b["key"], b["size"], *cursor, b["sql"], b.get("finish"), b.get("on_stop"))
    return StepSpec(
        id=doc["id"],
        order=doc["order"],
        title=doc["title"],
        source=doc.get("source"),
        depends_on=tuple(doc.get("depends_on", [])),
        signers=doc["approvals"]["signers"],
        signer_roles=tuple(doc["approvals"]["roles"]),
        signer_require=tuple(sorted(doc["approvals"]["require"].items())),
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


def with_order(doc: dict[str, Any], path: Path, position: int | None) -> dict[str, Any]:
    """Write the default order (the step's position in its plan) into a document that states none."""
    if "order" not in doc:
        if position is None:
            raise SpecError(
                f"{path}: step {doc['id']} key order: the step states no order and is in no plan, so it has no "
                "position to default to; add order: N or list the step in a plan.",
                details={"file": str(path), "key": "order", "line": None, "reason": "no order and no plan"},
            )
        doc["order"] = position
    return doc


def step_from(doc: dict[str, Any], path: Path, position: int | None = None) -> StepSpec:
    """The StepSpec of a checked document, `order` defaulting to `position` (the step's place in its plan)."""
    return _step_from(with_order(doc, path, position), path)


def load_step(path: Path, root: Path, position: int | None = None) -> StepSpec:
    """Load, validate and hash one step spec; raise SpecError naming file, step, key and line.
    `position` is the step's 1-based place in its plan: its order when the spec states none."""
    return step_from(step_document(path, root), path, position)


def load_plan(path: Path) -> PlanSpec:
    data, node = _read_yaml(path)
    label = f"plan {data['id']}" if isinstance(data, dict) and isinstance(data.get("id"), str) else "plan"
    content = repr(data).encode()
    vouched = vouchers.vouched("plan", content)
    if not vouched:
        _validate("plan", data, path, node, label)
    doc: dict[str, Any] = json.loads(json.dumps(data))
    if not vouched:
        for i, item in enumerate(doc.get("global_stop", [])):
            if "sql" in item:
                _check_single_select(item["sql"], path, label, ["global_stop", i, "sql"], node)
        vouchers.vouch("plan", content)
    return PlanSpec(
        id=doc["id"],
        title=doc["title"],
        source=doc.get("source"),
        steps=tuple(doc["steps"]),
        fold_ins={k: tuple(v) for k, v in doc.get("fold_ins", {}).items()},
        global_stop=tuple(StopCondition.parse(s) for s in doc.get("global_stop", [])),
        decisions={k: v["text"] for k, v in doc.get("decisions", {}).items()},
        path=path,
        document=doc,
        hash=content_hash(doc),
    )
