"""Rendering: the Jinja2 environment over the templates in ``gcos/evidence/templates/`` (package resources),
and the filters that make ledger values safe to show in Markdown (free text inert, code spans exact)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import jinja2
import yaml

from gcos.evidence.common import as_dict, shown

_MD_SPECIAL = str.maketrans({ch: f"\\{ch}" for ch in "\\`*[]<>|"})


def md_cell(value: Any) -> str:
    """Free text made inert in Markdown, table cells included: no HTML, links, code spans or emphasis can be
    injected (a backslash escapes each character that could start one), and it stays on one line."""
    return shown(value).translate(_MD_SPECIAL).replace("\r", " ").replace("\n", "<br>")


def watched(fps: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, list[Any]]]:
    """Rows of the watched tables: (table, [row count in each fingerprint, "-" where it is absent])."""
    names = sorted({t for fp in fps.values() for t in as_dict(fp.get("tables"))})
    return [(t, [as_dict(as_dict(fp.get("tables")).get(t)).get("rows", "-") for fp in fps.values()]) for t in names]


def md_code(value: Any, table: bool = True) -> str:
    """An inline code span holding the value exactly (a longer fence when the value holds backticks); in a
    table cell a pipe is escaped, as GitHub Flavored Markdown requires even inside code."""
    text = shown(value).replace("\r", " ").replace("\n", " ")
    if table:
        text = text.replace("|", "\\|")
    ticks = "`" * (max((len(s) for s in _backtick_runs(text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def _backtick_runs(text: str) -> list[str]:
    runs, current = [], ""
    for ch in text:
        if ch == "`":
            current += ch
        elif current:
            runs.append(current)
            current = ""
    if current:
        runs.append(current)
    return runs


def md_fence(text: str) -> str:
    """A code fence longer than any run of backticks in `text` (at least three)."""
    longest = max((len(s) for s in _backtick_runs(text)), default=0)
    return "`" * max(3, longest + 1)


def spec_yaml(document: Mapping[str, Any]) -> str:
    """A spec document as YAML, keys in their order, multi-line text (SQL) as literal blocks."""

    class _Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    _Dumper.add_representer(str, text)
    return yaml.dump(dict(document), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=110)


def environment(fmt: str) -> jinja2.Environment:
    """The templates' environment: html autoescaped, md not (its filters escape), undefined names an error."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("gcos.evidence", "templates"),
        autoescape=fmt == "html",
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["shown"] = shown
    env.filters["cell"] = md_cell
    env.filters["code"] = md_code
    env.filters["fence"] = md_fence
    env.filters["spec_yaml"] = spec_yaml
    env.filters["watched"] = watched
    env.filters["pretty"] = lambda value: json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)
    return env


def render(fmt: str, name: str, **context: Any) -> bytes:
    """Render template `name` (of format `fmt`: md or html) to UTF-8 bytes."""
    return environment(fmt).get_template(name).render(**context).encode("utf-8")
