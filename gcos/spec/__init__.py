"""Step specs and plans: load YAML, validate fail-closed with JSON Schema, inline SQL files, hash.

A spec is trusted only after it has passed the schema, so every error names the file, the step and
the key path (and the line, where YAML can tell it). The spec hash is sha256 over the RFC 8785
canonical JSON of the parsed spec with every referenced SQL file inlined: editing the SQL changes the
hash, reformatting the YAML does not.

model: the frozen dataclasses; load: one file (YAML, JSON Schema, SQL files, hash); project: the whole
project (ids, orders, plans, the dependency DAG). Import from here: the split is an inside matter.
"""

from gcos.spec.load import SCHEMA_FILES, load_plan, load_step
from gcos.spec.model import Batch, Check, Expectation, Mutation, PlanSpec, StepSpec, StopCondition
from gcos.spec.project import STEP_REF, Project, load_project
from gcos.spec.project_file import DEFAULT_APPROVER_ROLES, PROJECT_FILE, ProjectFile, load_project_file
from gcos.spec.yaml_doc import key_path

__all__ = [
    "DEFAULT_APPROVER_ROLES",
    "PROJECT_FILE",
    "SCHEMA_FILES",
    "STEP_REF",
    "Batch",
    "Check",
    "Expectation",
    "Mutation",
    "PlanSpec",
    "Project",
    "ProjectFile",
    "StepSpec",
    "StopCondition",
    "key_path",
    "load_plan",
    "load_project",
    "load_project_file",
    "load_step",
]
