"""Where in a spec FILE a piece of SQL fails to parse: the file's line, not the parser's character offset.

pglast (PostgreSQL's parser) reports a 0-based offset into the SQL text. A spec author reads lines of the YAML
file, so the offset becomes the line of the file: for a literal block (`sql: |`) the SQL starts on the line
after the indicator and keeps its line breaks, so the line is exact; a one-line scalar is on its key's line.
Folded or multi-line plain scalars lose their line breaks in YAML, so there the key's line is all we can say.
SQL a spec takes from a file (`file: ../rollback/x.sql`) is named by that file's own line.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

if TYPE_CHECKING:  # imported where a text is parsed: loading vouched-for specs never needs the parser
    import pglast


def _value_at(node: yaml.Node | None, path: Sequence[str | int]) -> yaml.Node | None:
    for part in path:
        if isinstance(node, yaml.MappingNode):
            match = [v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == str(part)]
            node = match[0] if match else None
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            return None
    return node


def offset_of(exc: pglast.parser.ParseError) -> int | None:
    return exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], int) else None


def file_line(node: yaml.Node | None, path: Sequence[str | int], sql: str, exc: pglast.parser.ParseError) -> int | None:
    """The 1-based line of the spec file where `exc` points, or None when YAML folded the SQL's lines."""
    value = _value_at(node, path)
    offset = offset_of(exc)
    if not isinstance(value, yaml.ScalarNode) or offset is None:
        return None
    within = sql.count("\n", 0, min(offset, len(sql)))
    if value.style == "|":
        indicator = value.start_mark.line + 1  # 1-based line of `sql: |`
        return indicator + 1 + within
    if "\n" not in sql.rstrip("\n"):
        return int(value.start_mark.line) + 1
    return None


def parse_error(
    spec_path: Path,
    key: str,
    node: yaml.Node | None,
    path: Sequence[str | int],
    sql: str,
    exc: pglast.parser.ParseError,
) -> str | None:
    """`steps/x.yaml:37: step X key mutation.sql: SQL does not parse: syntax error at or near ","; fix line 37.`,
    or None when the line cannot be known (the caller keeps its own sentence)."""
    line = file_line(node, path, sql, exc)
    if line is None:
        return None
    return f"{spec_path}:{line}: {key}: SQL does not parse: {exc.args[0]}; fix line {line} of {spec_path.name}."


def sql_file_error(shown: str, label: str, text: str) -> str | None:
    """`rollback/x.sql:3: step X: SQL does not parse: ...; fix line 3 of x.sql.` when the text of a SQL file a
    spec references does not parse (None when it does)."""
    import pglast

    try:
        pglast.parse_sql(text)
    except pglast.parser.ParseError as exc:
        offset = offset_of(exc)
        if offset is None:
            return f"{shown}: {label}: SQL does not parse: {exc.args[0]}."
        line = text.count("\n", 0, min(offset, len(text))) + 1
        return f"{shown}:{line}: {label}: SQL does not parse: {exc.args[0]}; fix line {line} of {Path(shown).name}."
    return None
