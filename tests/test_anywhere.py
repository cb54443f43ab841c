"""Installable anywhere (issue 11, item 6): the built wheel carries seed 002's reference project, so `gcos demo`
works from an empty directory; `python -m gcos` runs the CLI; `gcos --install-completion` installs a working
completion for `gcos`; the CLI starts where fcntl does not exist; `gcos status | head -1` is not an error; a spec
file over the documented size is refused at once.

The wheel is built once per run (the xdist workers share it) from a copy of the sources (never in the checkout: no
build/ left behind) and installed with `pip install --target` so its `gcos` runs first on PYTHONPATH, its
dependencies from this venv.
Not run here: Windows and macOS themselves (only the absence of fcntl is simulated, and mypy checks the win32
branch with --platform win32); .ci/run's fresh-venv stage, which installs the dependencies from the index."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from conftest import PROJECT_DIRS, REPO, _run_lock
from typer.testing import CliRunner

from gcos.cli import app
from gcos.errors import ExitCode
from gcos.limits import MAX_SPEC_BYTES

SOURCES = ("gcos", *PROJECT_DIRS, "pyproject.toml", "setup.py", "MANIFEST.in", "README.md")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory, run_dir: Path | None) -> Path:
    """The wheel built from a copy of this checkout's sources (once per run: xdist workers share it)."""
    with _once(tmp_path_factory, run_dir, "wheel") as out:
        if not list(out.glob("gcos-*.whl")):
            src = tmp_path_factory.mktemp("src")
            for name in SOURCES:
                origin = REPO / name
                if origin.is_dir():
                    shutil.copytree(origin, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
                else:
                    shutil.copy2(origin, src / name)
            pip = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(src)]
            done = subprocess.run(pip, capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, done.stderr
        (built,) = out.glob("gcos-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory, run_dir: Path | None) -> Path:
    """The wheel installed into a directory of its own (its dependencies come from this venv; once per run)."""
    with _once(tmp_path_factory, run_dir, "site") as target:
        if not (target / "gcos").is_dir():
            pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(wheel)]
            done = subprocess.run(pip, capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, done.stderr
    return target


@contextmanager
def _once(factory: pytest.TempPathFactory, run_dir: Path | None, name: str) -> Iterator[Path]:
    """A directory `name` for this run: under xdist the workers' shared one, held under a lock while it is
    filled (the first worker fills it, the others find it filled); else a fresh one of this process."""
    if run_dir is None:
        yield factory.mktemp(name)
        return
    with _run_lock(run_dir, f"anywhere-{name}"):
        folder = run_dir / f"anywhere-{name}"
        folder.mkdir(exist_ok=True)
        yield folder


def _gcos(site: Path, cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m gcos ARGS` with the installed wheel first on the path, in `cwd`."""
    environ = {**os.environ, "PYTHONPATH": str(site), **env}
    return subprocess.run(
        [sys.executable, "-m", "gcos", *args], cwd=cwd, env=environ, capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow  # builds the wheel and a venv
def test_the_wheel_carries_the_reference_project_byte_for_byte(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        packaged = {
            n.removeprefix("gcos/reference/"): archive.read(n) for n in archive.namelist() if "/reference/" in n
        }
    expected = {
        str(p.relative_to(REPO)): p.read_bytes()
        for d in PROJECT_DIRS
        for p in sorted((REPO / d).rglob("*"))
        if p.is_file()
    }
    assert packaged == expected and any(name.startswith("steps/") for name in packaged)


@pytest.mark.slow  # builds the wheel and a venv
def test_demo_from_the_wheel_works_in_an_empty_directory_on_a_small_world_it_builds(
    installed: Path, dsn: str, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    which = subprocess.run(
        [sys.executable, "-c", "import gcos; print(gcos.__file__)"],
        cwd=empty,
        env={**os.environ, "PYTHONPATH": str(installed)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(which.stdout.strip()).is_relative_to(installed)  # the wheel's gcos runs, not the checkout's
    done = _gcos(installed, empty, "demo", "--rows", "3000", "--dsn", dsn, "--json")
    # A 3,000-row world stops where seed 002's step 3 needs a million Birth rows (exit 6), after the story
    # committed steps 1 and 2 from the project the demo copied into the empty directory.
    assert done.returncode == ExitCode.REVERIFY_MISMATCH, done.stderr + done.stdout
    error = " ".join(json.loads(done.stdout)["error"].split())
    assert "SB-10" in error and "birth_registry" in error, error  # the sentence names the check that needs 1M rows
    for part in PROJECT_DIRS:
        copied = sorted(p.relative_to(empty) for p in (empty / part).rglob("*"))
        assert copied == sorted(p.relative_to(REPO) for p in (REPO / part).rglob("*")), part
    with psycopg.connect(dsn) as conn:
        committed = conn.execute(
            "SELECT record->>'step_id' FROM gcos.ledger WHERE kind = 'commit' ORDER BY seq"
        ).fetchall()
        built = conn.execute("SELECT count(*) FROM birth_registry").fetchone()
    assert committed == [("SB-12",), ("SB-13",)]
    assert built == (3000,)  # the demo built the world at the size asked for


@pytest.mark.slow  # builds the wheel and a venv
def test_demo_runs_on_a_project_of_ones_own_and_never_writes_over_it(installed: Path, tmp_path: Path) -> None:
    own = tmp_path / "own"
    (own / "steps").mkdir(parents=True)
    nowhere = f"host={tmp_path}/no-server dbname=app user=alice"  # so the demo stops right after the copy would be
    done = _gcos(installed, own, "demo", "--dsn", nowhere)
    assert done.returncode == ExitCode.DATABASE_UNAVAILABLE, done.stderr
    assert sorted(str(p.relative_to(own)) for p in own.rglob("*")) == ["steps"]  # nothing copied over it


@pytest.mark.slow  # builds the wheel and a venv
def test_python_dash_m_gcos_is_the_cli(installed: Path, tmp_path: Path) -> None:
    done = _gcos(installed, tmp_path, "--version")
    assert done.returncode == 0 and done.stdout.strip().startswith("gcos "), done.stderr
    done = _gcos(installed, tmp_path, "plan", "-C", str(REPO), "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["ok"] is True, done.stderr


@pytest.mark.slow  # builds the wheel and a venv
def test_install_completion_writes_a_completion_for_gcos_that_completes(installed: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    # typer detects the shell from the process tree (it takes no shell argument): run it from bash, as a user
    # does, whatever started pytest (a detached run has no shell above it and typer says "Shell None")
    environ = {**os.environ, "PYTHONPATH": str(installed), "HOME": str(home)}
    done = subprocess.run(
        ["bash", "-c", '"$0" -m gcos --install-completion; exit $?', sys.executable],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    script = home / ".bash_completions" / "gcos.sh"
    assert script.is_file() and "complete -o default -F _gcos_completion gcos" in script.read_text()
    assert str(script) in (home / ".bashrc").read_text()
    # what bash then runs on `gcos de<TAB>`:
    done = _gcos(installed, tmp_path, _GCOS_COMPLETE="complete_bash", COMP_WORDS="gcos de", COMP_CWORD="1")
    assert set(done.stdout.split()) == {"decide", "demo"}, done.stdout + done.stderr


NO_FCNTL = (
    "import sys; sys.modules['fcntl'] = None; "  # `import fcntl` now raises ImportError, as on Windows
    "sys.argv = ['gcos', *sys.argv[1:]]; from gcos.cli import main; main()"
)


def test_the_cli_starts_and_plans_without_fcntl(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for args in (["--help"], ["plan", "-C", str(REPO), "--json"], ["db", "status", "--json"]):
        done = subprocess.run(
            [sys.executable, "-c", NO_FCNTL, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, (args, done.stderr)
        assert "fcntl" not in done.stderr


def test_a_reader_that_closes_the_pipe_is_not_an_error(world_dsn: str, gcos_adopted: None, project_dir: Path) -> None:
    read, write = os.pipe()
    os.close(read)  # `| head -1` that has already gone: every write to stdout gets EPIPE
    try:
        done = subprocess.run(
            [sys.executable, "-m", "gcos", "status", "--dsn", world_dsn, "-C", str(project_dir)],
            stdout=write,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            text=True,
            timeout=120,
        )
    finally:
        os.close(write)
    assert done.returncode == 0 and done.stderr == "", done.stderr


def test_a_spec_file_over_the_limit_is_refused_at_once(project_dir: Path) -> None:
    spec = project_dir / "steps" / "01-sb-12.yaml"
    spec.write_text(spec.read_text() + "#" * MAX_SPEC_BYTES + "\n")
    result = CliRunner().invoke(app, ["plan", "-C", str(project_dir), "--json"])
    assert result.exit_code == ExitCode.BAD_INPUT, result.output
    error = json.loads(result.stdout)["error"]
    assert "01-sb-12.yaml" in error and "1 MiB" in error
