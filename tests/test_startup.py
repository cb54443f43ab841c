"""CLI start-up (issue 13 item 2): `gcos --version` answers before the heavy modules load, and the lazy
package still hands out the registered typer app wherever it is asked for."""

from __future__ import annotations

import os
import subprocess
import sys

HEAVY = ("typer", "click", "rich", "psycopg", "pglast", "jinja2", "jsonschema", "yaml", "pydantic")


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)


def test_version_loads_no_heavy_module() -> None:
    done = _python(
        "import sys; sys.argv = ['gcos', '--version']\n"
        "from gcos.cli import main; main()\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    assert done.returncode == 0, done.stderr
    version, loaded = done.stdout.splitlines()
    assert version.startswith("gcos 0.")
    assert loaded == "[]"


def test_app_is_the_registered_typer_app_even_after_its_submodule_loads() -> None:
    done = _python(
        "import gcos.cli.project, gcos.cli\n"  # binds the submodule gcos.cli.app on the package first
        "from gcos.cli import app\n"
        "print(type(app).__name__, sorted(c.name for c in app.registered_commands)[:3])"
    )
    assert done.returncode == 0, done.stderr
    kind, _, names = done.stdout.strip().partition(" ")
    assert kind == "Typer"
    assert names == "['adopt', 'apply', 'approvals']"


def test_version_still_goes_through_typer_with_other_arguments() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gcos", "--version", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "Usage: gcos" in done.stdout


def test_the_command_table_names_the_module_that_registers_each_command() -> None:
    """`gcos COMMAND` imports only COMMANDS[COMMAND]: the table must say, for every command and group the fully
    registered app has, the module whose import registers it (and every command of its group)."""
    import gcos.cli
    from gcos.cli import app

    def module_of(callback: object) -> str:
        return str(getattr(callback, "__module__", "")).removeprefix("gcos.cli.")

    found = {str(c.name): module_of(c.callback) for c in app.registered_commands}
    for group in app.registered_groups:
        assert group.typer_instance is not None
        owners = {module_of(c.callback) for c in group.typer_instance.registered_commands}
        assert len(owners) == 1, (group.name, owners)
        found[str(group.name)] = owners.pop()
    assert found == gcos.cli.COMMANDS
    assert sorted(gcos.cli.MODULES) == sorted(set(found.values()))


def test_a_command_imports_only_its_own_command_module_and_help_lists_them_all() -> None:
    listing = (
        "import sys; sys.argv = ['gcos', *sys.argv[1:]]\n"
        "from gcos.cli import main\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert exc.code == 0, exc.code\n"
        "import gcos.cli\n"
        "print(sorted(m for m in gcos.cli.MODULES if f'gcos.cli.{m}' in sys.modules))"
    )
    run = [sys.executable, "-c", listing]
    one = subprocess.run([*run, "rehearse", "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert one.returncode == 0, one.stderr
    assert "Usage: gcos rehearse" in one.stdout
    assert one.stdout.splitlines()[-1] == "['project']"
    group = subprocess.run([*run, "ledger", "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert group.returncode == 0, group.stderr
    assert "verify" in group.stdout and "anchor" in group.stdout
    assert group.stdout.splitlines()[-1] == "['evidence']"
    every = subprocess.run([*run, "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert every.returncode == 0, every.stderr
    import gcos.cli

    for command in gcos.cli.COMMANDS:
        assert f"│ {command} " in every.stdout, command
    assert every.stdout.splitlines()[-1] == str(sorted(gcos.cli.MODULES))


def test_completion_still_offers_every_command() -> None:
    env = {**os.environ, "_GCOS_COMPLETE": "complete_bash", "COMP_WORDS": "gcos re", "COMP_CWORD": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "gcos"], capture_output=True, text=True, timeout=60, check=False, env=env
    )
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.split()) == ["rehearse", "report", "revoke"]
