"""The README and --help stay true: every command is documented, teaches by example, and CI runs the
README's own test command."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from gcos.cli import app

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _commands() -> list[list[str]]:
    group = typer.main.get_command(app)
    found: list[list[str]] = []

    def walk(cmd: Any, prefix: list[str]) -> None:
        for name, sub in cmd.commands.items():
            if hasattr(sub, "commands"):  # a group (typer vendors its own click)
                walk(sub, [*prefix, name])
            else:
                found.append([*prefix, name])

    walk(group, [])
    return found


COMMANDS = _commands()


def test_there_are_commands() -> None:
    assert ["plan"] in COMMANDS and ["db", "up"] in COMMANDS


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help_with_an_example_and_json(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert "Example: gcos" in result.stdout or "Example: psql" in result.stdout
    assert "--json" in result.stdout


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_is_in_the_readme(command: list[str]) -> None:
    assert f"gcos {' '.join(command)}" in README


def _quick_start_commands() -> list[str]:
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(?:sh|bash|console)?\n(.*?)```", section, flags=re.S)
    return [
        line.strip()
        for block in blocks
        for line in block.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def test_quick_start_has_exactly_two_commands_demo_and_tests() -> None:
    commands = _quick_start_commands()
    assert len(commands) == 2, commands
    assert commands[0].endswith("gcos demo")
    assert "pytest" in commands[1]


def test_ci_runs_the_readmes_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert _quick_start_commands()[1] in ci
