"""The project file gcos.yaml: the project's name, its approver role vocabulary and what new steps get.

Written by `gcos init`, read by every command that loads the project. A project without one (an older
clone) has seed 004's vocabulary, sovereign, council, company_admin and domain_admin. The vocabulary is a
subset of those four: the kernel's principals can hold no other approver role (gcos.principals, 033), and
sovereign is always in it because every step needs a sovereign (M-1). A step whose approvals.roles or
approvals.require names a role outside the vocabulary is refused at load, naming the step's file.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gcos.errors import SpecError
from gcos.spec.load import _read_yaml, _validate
from gcos.spec.model import StepSpec

PROJECT_FILE = "gcos.yaml"
DEFAULT_APPROVER_ROLES = ("sovereign", "council", "company_admin", "domain_admin")


@dataclass(frozen=True)
class ProjectFile:
    """gcos.yaml as loaded (or the defaults, `path` None, when the project has none)."""

    name: str
    approver_roles: tuple[str, ...] = DEFAULT_APPROVER_ROLES
    signers: int = 1
    roles: tuple[str, ...] = ("sovereign",)
    watch: tuple[str, ...] = ()
    plan: str | None = None
    path: Path | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)


def load_project_file(root: Path) -> ProjectFile:
    """gcos.yaml under `root`, validated (every schema problem at once), or the defaults if there is none."""
    path = root / PROJECT_FILE
    if not path.is_file():
        return ProjectFile(name=root.resolve().name or "gcos")
    data, node = _read_yaml(path)
    _validate("project", data, path, node, "project")
    defaults = data.get("defaults", {})
    approvals = defaults.get("approvals", {})
    vocabulary = tuple(data.get("approver_roles", DEFAULT_APPROVER_ROLES))
    roles = tuple(approvals.get("roles", ["sovereign"]))
    outside = [r for r in roles if r not in vocabulary]
    if outside:
        raise SpecError(
            f"{path}: project key defaults.approvals.roles: {', '.join(outside)} is not in approver_roles "
            f"({', '.join(vocabulary)}); add it there or drop it here."
        )
    return ProjectFile(
        name=data["name"],
        approver_roles=vocabulary,
        signers=int(approvals.get("signers", 1)),
        roles=roles,
        watch=tuple(defaults.get("watch", [])),
        plan=defaults.get("plan"),
        path=path,
        raw=data,
    )


def check_vocabulary(project_file: ProjectFile, steps: Iterable[StepSpec]) -> None:
    """Refuse the first step whose approvals name a role outside the project's vocabulary (file named)."""
    where = project_file.path or f"the default vocabulary (no {PROJECT_FILE})"
    for spec in steps:
        named = list(spec.signer_roles) + [role for role, _ in spec.signer_require]
        outside = sorted({r for r in named if r not in project_file.approver_roles})
        if outside:
            raise SpecError(
                f"{spec.path}: step {spec.id} key approvals.roles: {', '.join(outside)} is not an approver role of "
                f"this project ({', '.join(project_file.approver_roles)}, from {where}); add it to approver_roles "
                f"in {PROJECT_FILE} or name another role."
            )
