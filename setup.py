"""Ships seed 002's reference project (steps/, plans/, rollback/ at the repository root) inside the wheel as
gcos/reference/, so `pip install gcos && gcos demo` works in an empty directory. Everything else is in
pyproject.toml; a checkout (or an editable install) reads the root directories themselves."""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

REFERENCE = ("steps", "plans", "rollback")


class BuildWithReference(build_py):
    """build_py, plus a copy of the reference project into the built package (not in editable mode: there
    gcos.reference_project finds the checkout's own directories)."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        root = Path(__file__).resolve().parent
        target = Path(self.build_lib) / "gcos" / "reference"
        for name in REFERENCE:
            shutil.rmtree(target / name, ignore_errors=True)
            shutil.copytree(root / name, target / name)


setup(cmdclass={"build_py": BuildWithReference})
