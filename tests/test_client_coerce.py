"""gcos/cli/_coerce.py: str, Path, int and bool parameters are coerced without pydantic, and every value gives
what typer's own coercion gives (the same value, the same refusal, the same exit code)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Annotated

import pytest
import typer
import typer.core
from typer import _coercion
from typer.testing import CliRunner

import gcos.cli.app  # noqa: F401 - installs the fast path, as every gcos command does
from gcos.cli import _coerce


def _probe() -> typer.Typer:
    """A fresh app with the parameter kinds gcos declares (a new click command, so no coercion is cached)."""
    app = typer.Typer()

    @app.command()
    def probe(
        step: str,
        number: Annotated[int, typer.Option("--number")] = 3,
        dsn: Annotated[str | None, typer.Option("--dsn")] = None,
        project: Annotated[Path, typer.Option("-C", file_okay=False)] = Path("."),
        must: Annotated[Path | None, typer.Option("--must", exists=True, dir_okay=False)] = None,
        flag: Annotated[bool, typer.Option("--flag")] = False,
    ) -> None:
        print(repr((step, number, dsn, project, must, flag)))

    return app


CASES = [
    ["SB-12"],
    ["SB-12", "--dsn", "postgresql://x@/y", "--flag"],
    ["SB-12", "--number", "17"],
    ["SB-12", "--number", " 17 "],
    ["SB-12", "--number", "abc"],
    ["SB-12", "--number", "1.5"],
    ["SB-12", "-C", "{dir}"],
    ["SB-12", "-C", "{file}"],
    ["SB-12", "-C", "{dir}/nowhere"],
    ["SB-12", "-C", ""],
    ["SB-12", "--must", "{file}"],
    ["SB-12", "--must", "{dir}"],
    ["SB-12", "--must", "{dir}/nowhere"],
    [],
]


@pytest.mark.parametrize("args", CASES, ids=[" ".join(a) or "none" for a in CASES])
def test_same_value_and_refusal_as_typers_own(args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "f.txt").write_text("x")
    argv = [a.format(dir=tmp_path, file=tmp_path / "f.txt") for a in args]
    assert typer.core.build_runtime_param is not _coercion.build_runtime_param  # the fast path is in place
    ours = CliRunner().invoke(_probe(), argv)
    monkeypatch.setattr(typer.core, "build_runtime_param", _coercion.build_runtime_param)
    theirs = CliRunner().invoke(_probe(), argv)
    assert (ours.exit_code, ours.output) == (theirs.exit_code, theirs.output)


def test_a_gcos_command_parses_without_pydantic(tmp_path: Path) -> None:
    """`gcos verify STEP --dsn ... -C DIR` (the parameters every step command takes) parses its arguments without
    importing pydantic: the command runs and fails on the empty --dsn with its own sentence and exit code."""
    code = (
        "import sys\n"
        f"sys.argv = ['gcos', 'verify', 'SB-12', '--dsn', '', '-C', {str(tmp_path)!r}]\n"
        "from gcos.cli import main\n"
        "try:\n    main()\n"
        "except SystemExit as exc:\n    print(exc.code, 'pydantic' in sys.modules, 'typer._adapters' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert "--dsn is empty" in done.stderr
    assert done.stdout.split() == ["2", "False", "False"]


def test_install_is_idempotent() -> None:
    wrapped = typer.core.build_runtime_param
    assert _coerce.install() is True
    assert typer.core.build_runtime_param is wrapped
