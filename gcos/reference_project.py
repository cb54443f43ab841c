"""Seed 002's reference project (steps/, plans/, rollback/) wherever gcos is installed.

A wheel carries it as package data under gcos/reference/ (setup.py copies it at build time); a checkout or an
editable install reads the repository's own directories. `gcos demo` in a directory that holds no project
copies it there first, so `pip install gcos && gcos demo` works in an empty directory and the user can go on
with `gcos status`, `gcos plan`, ... on the files the demo used.
"""

from __future__ import annotations

import shutil
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

from gcos.errors import SpecError

PARTS = ("steps", "plans", "rollback")
PROJECT_MARKERS = (*PARTS, "gcos.yaml")  # any of these means: a project lives here, never write over it


def source() -> Traversable:
    """Where the reference project is: the wheel's package data, else the checkout this package runs from."""
    packaged = resources.files("gcos").joinpath("reference")
    if packaged.joinpath("steps").is_dir():
        return packaged
    checkout = Path(__file__).resolve().parent.parent
    if all((checkout / part).is_dir() for part in PARTS):
        return checkout
    raise SpecError(
        "this gcos installation carries no reference project (gcos/reference/ is missing from the package); "
        "reinstall gcos from its wheel, or run `gcos demo -C DIR` on a checkout of the gcos repository."
    )


def holds_a_project(directory: Path) -> bool:
    return any((directory / marker).exists() for marker in PROJECT_MARKERS)


def _copy(entry: Traversable, target: Path) -> int:
    """Copy one packaged directory tree (a Traversable, so it works from a zip too); the number of files."""
    target.mkdir(parents=True, exist_ok=True)
    copied = 0
    for child in entry.iterdir():
        if child.name.startswith((".", "__")):
            continue
        if child.is_dir():
            copied += _copy(child, target / child.name)
        else:
            (target / child.name).write_bytes(child.read_bytes())
            copied += 1
    return copied


def ensure(directory: Path) -> list[str]:
    """Copy the reference project into `directory` unless a project lives there already; the parts copied
    (empty when the directory had a project of its own: the demo then runs on that one, as before)."""
    directory = directory.resolve()
    if holds_a_project(directory):
        return []
    origin = source()
    if isinstance(origin, Path) and origin.resolve() == directory:
        return []
    directory.mkdir(parents=True, exist_ok=True)
    done: list[str] = []
    try:
        for part in PARTS:
            _copy(origin.joinpath(part), directory / part)
            done.append(part)
    except OSError as exc:
        for part in done:
            shutil.rmtree(directory / part, ignore_errors=True)
        raise SpecError(
            f"cannot write the reference project into {directory} ({exc.strerror or exc}); run `gcos demo` in a "
            "directory you may write to, or pass -C DIR."
        ) from None
    return done
