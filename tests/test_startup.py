"""CLI start-up (issue 13 item 2): `gcos --version` answers before the heavy modules load, and the lazy
package still hands out the registered typer app wherever it is asked for."""

from __future__ import annotations

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
