"""The gcos API: one typed function per command. They return result objects; they never print or exit.

Tests call these directly; gcos/cli/ is a thin layer that renders their results and maps errors to exits.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from gcos.errors import ReverifyMismatch, SpecError
from gcos.results import BatchedResult, BatchProgress, CommitResult, RehearsalResult
from gcos.spec import Project, StepSpec, load_project
from gcos.target import SessionSettings, Target, connect


def _lazy(name: str) -> types.ModuleType:
    """Module `name`, executed on first attribute use: a command imports only what it touches (`gcos rehearse`
    never loads jinja2, the demo or the evidence builder; issue 13 item 2)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.loader is not None, name
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    parent, _, child = name.rpartition(".")
    setattr(sys.modules[parent], child, module)
    return module


if TYPE_CHECKING:
    from gcos import adopt as adopt_mod
    from gcos import (
        apply_plan,
        approval_list,
        approvals,
        checks,
        evidence,
        gates,
        kernel,
        kernel_batched,
        ledger,
        ledger_log,
        online,
        planning,
        record_evidence,
        reference_project,
        reference_world,
        state,
        step_rows,
    )
    from gcos import demo as demo_mod
    from gcos import drift as drift_mod
    from gcos import embedded as embedded_mod
    from gcos import install as install_mod
    from gcos import principals as principals_mod
    from gcos.checks import CheckResult
    from gcos.embedded import ServerStatus
else:
    adopt_mod, apply_plan, approval_list, approvals, checks, evidence, gates = map(
        _lazy, ("gcos.adopt", "gcos.apply_plan", "gcos.approval_list", "gcos.approvals", "gcos.checks", "gcos.evidence",
                "gcos.gates"))  # fmt: skip
    kernel, kernel_batched, ledger, ledger_log, online, planning, record_evidence = map(
        _lazy, ("gcos.kernel", "gcos.kernel_batched", "gcos.ledger", "gcos.ledger_log", "gcos.online", "gcos.planning",
                "gcos.record_evidence"))  # fmt: skip
    reference_project, reference_world, state, step_rows, demo_mod, drift_mod, embedded_mod = map(
        _lazy, ("gcos.reference_project", "gcos.reference_world", "gcos.state", "gcos.step_rows", "gcos.demo",
                "gcos.drift", "gcos.embedded"))  # fmt: skip
    install_mod, principals_mod = _lazy("gcos.install"), _lazy("gcos.principals")

Progress = Callable[[str, int, int], None]


# --------------------------------------------------------------------------- embedded server


def db_up(home: Path | None = None) -> ServerStatus:
    return embedded_mod.EmbeddedServer(home).up()


def db_down(home: Path | None = None) -> ServerStatus:
    return embedded_mod.EmbeddedServer(home).down()


def db_status(home: Path | None = None) -> ServerStatus:
    return embedded_mod.EmbeddedServer(home).status()


# --------------------------------------------------------------------------- plan (gcos/planning.py)


def plan(project_dir: Path) -> planning.PlanReport:
    """Validate every spec and the DAG; the build order with each step's gates as far as the specs tell."""
    return planning.plan(project_dir)


# --------------------------------------------------------------------------- verify


@dataclass(frozen=True)
class VerifyResult:
    step: str
    ref: str
    spec_hash: str
    target: str
    checks: tuple[CheckResult, ...]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


def reverify(conn: psycopg.Connection[Any], step: StepSpec) -> list[CheckResult]:
    """Run a step's re-verify checks in one READ ONLY, REPEATABLE READ transaction (one snapshot)."""
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        return checks.evaluate_all(conn, step.reverify, section="re-verify check")


def verify(target: Target, project_dir: Path, step_ref: str, settings: SessionSettings | None = None) -> VerifyResult:
    """Live re-verify of one step, read-only; raises ReverifyMismatch (exit 6) carrying the result."""
    step = load_project(project_dir).step(step_ref)
    with connect(target, settings) as conn:
        results = reverify(conn, step)
    result = VerifyResult(step.id, step.ref, step.hash, target.display, tuple(results))
    if not result.ok:
        raise ReverifyMismatch(checks.mismatch_sentence(step, results), details=result)
    return result


# --------------------------------------------------------------------------- the reference world and demo


@dataclass(frozen=True)
class WorldResult:
    target: str
    built: bool  # False when it was already there
    counts: dict[str, int] = field(default_factory=dict)


def build_world(
    target: Target, rows: int, progress: Progress | None = None, settings: SessionSettings | None = None
) -> WorldResult:
    """Build seed 002's reference world in the target database unless it is already there."""
    if rows < 1:
        raise SpecError("--rows must be a positive number of birth_registry rows.")
    # Building 1M rows is a bulk load, not a live change: allow it more than the interactive default.
    build_settings = settings or SessionSettings.from_env()
    build_settings = SessionSettings(
        application_name=build_settings.application_name,
        lock_timeout=build_settings.lock_timeout,
        statement_timeout="0",
        idle_in_transaction_session_timeout=build_settings.idle_in_transaction_session_timeout,
    )
    with connect(target, build_settings) as conn:
        if reference_world.world_exists(conn):
            return WorldResult(target.display, False, _world_counts(conn))
        summary = reference_world.build_world(conn, rows=rows, progress=progress)
    return WorldResult(target.display, True, dict(summary.counts))


def _world_counts(conn: psycopg.Connection[Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for table in ("birth_registry", "measurement_registry", "event_type_registry", "dot_tools", "dot_domains"):
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
        counts[table] = int(row[0]) if row else 0
    return counts


@dataclass(frozen=True)
class DemoResult:
    world: WorldResult
    verify: VerifyResult | None  # step 1's live re-verify on a freshly built world
    story: demo_mod.StoryResult
    plan: planning.PlanReport


def demo(
    target: Target,
    project_dir: Path,
    rows: int,
    progress: Progress | None = None,
    report_dir: Path | None = None,
    settings: SessionSettings | None = None,
) -> DemoResult:
    """Build the reference world, then tell seed 002's whole gated story on it (see gcos/demo.py); a directory
    without a project gets the reference project copied in first (gcos/reference_project.py)."""
    reference_project.ensure(project_dir)
    settings = settings or SessionSettings.from_env()
    world = build_world(target, rows, progress, settings)
    checked = verify(target, project_dir, "step-1", settings) if world.built else None
    project = load_project(project_dir)
    story = demo_mod.tell(
        target, project, settings=settings, report_dir=report_dir or project.root / "gcos-report", progress=progress
    )
    return DemoResult(world, checked, story, plan(project_dir))


def load(project_dir: Path) -> Project:
    return load_project(project_dir)


def init(target: Target, project_dir: Path, name: str | None = None, settings: SessionSettings | None = None) -> Any:
    """gcos init: refuse an existing project before touching the server, then list its tables and write."""
    from gcos import scaffold

    scaffold.refuse_existing(project_dir.resolve())
    with connect(target, settings) as conn:
        tables = scaffold.found_tables(conn)
    return scaffold.init_project(project_dir, tables, name)


def new(project_dir: Path, step: str, sql_file: Path, plan_id: str | None = None, title: str | None = None) -> Any:
    """gcos new: a step spec from a SQL file (offline)."""
    from gcos import scaffold

    return scaffold.new_step(project_dir, step, sql_file, plan_id=plan_id, title=title)


# --------------------------------------------------------------------------- install, principals, ledger


def install(target: Target, settings: SessionSettings | None = None) -> install_mod.InstallResult:
    """Create or upgrade the gcos schema in the target (idempotent; needs a superuser)."""
    with connect(target, settings) as conn:
        return install_mod.install(conn)


def adopt(target: Target, schemas: list[str], settings: SessionSettings | None = None) -> adopt_mod.AdoptResult:
    """Put schemas under gcos: owned by gcos_kernel, others' write privileges revoked, recorded (superuser or admin)."""
    with connect(target, settings) as conn:
        return adopt_mod.adopt(conn, schemas)


def release(target: Target, schemas: list[str], settings: SessionSettings | None = None) -> adopt_mod.AdoptResult:
    """Hand adopted schemas back: previous owners, the revoked privileges re-granted, recorded."""
    with connect(target, settings) as conn:
        return adopt_mod.release(conn, schemas)


def principals_add(
    target: Target,
    role: str,
    *,
    name: str,
    kind: str,
    roles: list[str],
    person: str | None = None,
    settings: SessionSettings | None = None,
) -> principals_mod.Principal:
    """Map a database role to a named principal of `person` (admin only) and grant it the matching gcos roles."""
    with connect(target, settings) as conn:
        return principals_mod.add_principal(conn, role, name=name, kind=kind, roles=roles, person=person)


def principals_list(target: Target, settings: SessionSettings | None = None) -> list[principals_mod.Principal]:
    with connect(target, settings) as conn:
        return principals_mod.list_principals(conn)


def whoami(target: Target, settings: SessionSettings | None = None) -> principals_mod.Principal | None:
    """The principal the database authenticates this connection as (session_user): never a flag."""
    with connect(target, settings) as conn:
        return principals_mod.whoami(conn)


def ledger_verify(
    target: Target,
    anchor_file: Path | None = None,
    settings: SessionSettings | None = None,
    allowed_signers: Path | None = None,
) -> ledger.VerifyReport:
    """Recompute the hash chain from genesis (and against an exported anchor, its signature checked against
    `allowed_signers` if given); LedgerBroken is exit 7."""
    from gcos.evidence import signing

    anchor = signing.load_anchor(anchor_file, allowed_signers) if anchor_file else None
    with connect(target, settings) as conn:
        return ledger.verify(conn, anchor)


def ledger_anchor(
    target: Target, out: Path, settings: SessionSettings | None = None, sign: Path | None = None
) -> ledger.Anchor:
    """Export the verified head of the ledger to `out`, to keep outside the database; with `sign` (an SSH
    private key), sign it to ``OUT.sig`` (namespace gcos-anchor)."""
    from gcos.evidence import signing

    with connect(target, settings) as conn:
        anchor = ledger.export_anchor(conn)
    try:
        anchor.dump(out)
    except OSError as exc:
        raise SpecError(f"cannot write the anchor to {out} ({exc.strerror}); choose a writable path.") from exc
    if sign is not None:
        signing.sign_file(out, sign, signing.ANCHOR_NAMESPACE)
    return anchor


# --------------------------------------------------------------------------- rehearse


def rehearse(
    target: Target, project_dir: Path, step_ref: str, settings: SessionSettings | None = None
) -> RehearsalResult:
    """BEGIN..ROLLBACK rehearsal of one step with entry==exit proof; evidence under <project>/rehearsals/.

    The kernel rehearses the registered spec inside the database as gcos_kernel and writes the record itself
    (gcos/kernel.py); where schema public is not adopted it refuses (exit 3). Only this step's spec is checked
    in full, besides the project's structure and plans: it is the one registered and run (load_project's focus)."""
    project = load_project(project_dir, focus=step_ref)
    step = project.step(step_ref)
    settings = settings or SessionSettings.from_env()
    with connect(target, settings) as conn:
        install_mod.require_installed(conn)
        rehearse_in = online.rehearse if step.mode == "online" else kernel.rehearse
        return rehearse_in(conn, project, step, settings=settings, evidence_dir=project.root / "rehearsals")


# --------------------------------------------------------------------------- approvals and decisions


def approve(
    target: Target,
    project_dir: Path,
    step_ref: str,
    *,
    verdict: str,
    expires_in: str,
    note: str | None = None,
    rollback: bool = False,
    settings: SessionSettings | None = None,
) -> approvals.ApprovalReceipt:
    """Record the connection's principal's verdict on a step, bound to its current spec hash and plan hash."""
    project = load_project(project_dir)
    step = project.step(step_ref)
    delta = approvals.parse_duration(expires_in)
    with connect(target, settings) as conn:
        return approvals.approve(conn, project, step, verdict=verdict, expires_in=delta, note=note, rollback=rollback)


def decide(
    target: Target,
    project_dir: Path,
    decision: str,
    *,
    verdict: str,
    expires_in: str,
    note: str | None = None,
    settings: SessionSettings | None = None,
) -> approvals.DecisionReceipt:
    """Record the connection's principal's (a sovereign's) verdict on a named decision (A-4, C-1 ...), bound
    to its text in the project's plans."""
    project = load_project(project_dir)
    delta = approvals.parse_duration(expires_in)
    with connect(target, settings) as conn:
        return approvals.decide(conn, project, decision, verdict=verdict, expires_in=delta, note=note)


def revoke(
    target: Target,
    record_id: int,
    *,
    reason: str | None = None,
    decision: bool = False,
    settings: SessionSettings | None = None,
) -> approvals.RevocationReceipt:
    """Withdraw an approval (or, with decision=True, a decision record): an append, never an update."""
    with connect(target, settings) as conn:
        if decision:
            return approvals.revoke_decision(conn, record_id, reason)
        return approvals.revoke(conn, record_id, reason)


# --------------------------------------------------------------------------- status, commit, rollback


@dataclass(frozen=True)
class StepStatus:
    id: str
    ref: str
    title: str
    state: str
    detail: str
    spec_hash: str
    decision: gates.PolicyDecisionRecord
    row: step_rows.StepRow | None = None  # the `flyway info` row: shown state, when, by whom, what is next


@dataclass(frozen=True)
class StatusReport:
    target: str
    steps: tuple[StepStatus, ...]
    adopted: bool = True  # schema public is under the kernel; else nothing is measured, rehearsed or committed
    detail: bool = False  # one step asked for by name: its per-gate detail is shown


def _judge(
    conn: psycopg.Connection[Any], project: Project, step: StepSpec, *, kernel_measures: bool
) -> gates.PolicyDecisionRecord:
    """The seven gates of committing `step`, as the database decides them for a session that only looks
    (``as_actor`` false): on re-verify, the schema hash and the global stops the kernel reads in one READ ONLY
    snapshot where schema public is adopted; elsewhere nothing is measured (the kernel runs nothing there), so
    the gates that need the world say they cannot be judged."""
    plan = project.plan_of(step.id)
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        if kernel_measures:
            return gates.explain(conn, step, plan, trace_id=ledger.new_trace_id())
        unmeasured = gates.world(as_actor=False)
        return gates.evaluate(conn, step, plan, action="commit", measured=unmeasured, trace_id=ledger.new_trace_id())


def status(
    target: Target, project_dir: Path, step_ref: str | None = None, settings: SessionSettings | None = None
) -> StatusReport:
    """Each gate of each step and why it holds or not, without acting: the database's own evaluation
    (``gcos.evaluate_gates``; ``gcos.explain_gates`` where the kernel runs), and the states it implies with the
    ledger.

    The database judges registered specs only, so the specs and plans on disk are registered first when the
    connected role may (an operator, admin or superuser; idempotent). For a sovereign, council member or
    auditor, gate 1 of a spec nobody registered says so and names the command that registers it."""
    project = load_project(project_dir)
    chosen = [project.step(step_ref)] if step_ref else list(project.steps.values())
    with connect(target, settings) as conn:
        install_mod.require_installed(conn)
        for step in chosen:
            if not gates.register(conn, step, project.plan_of(step.id)):
                break  # the role may not register: the gates say what is not registered
        kernel_measures = kernel.adopted(conn)
        decisions = {step.id: _judge(conn, project, step, kernel_measures=kernel_measures) for step in chosen}
        entries = ledger.read_all(conn)
        approved = {k: d.gate("approvals").evidence for k, d in decisions.items() if d.gate("approvals").allow}
        states = state.project_states(entries, project, approved=approved)
        rows = step_rows.rows(conn, states, entries, decisions)
    out = [
        StepStatus(s.id, s.ref, s.title, states[s.id].state, states[s.id].detail, s.hash, decisions[s.id], rows[s.id])
        for s in chosen
    ]
    return StatusReport(target.display, tuple(out), adopted=kernel_measures, detail=step_ref is not None)


def commit(
    target: Target,
    project_dir: Path,
    step_ref: str,
    settings: SessionSettings | None = None,
    progress: Callable[[BatchProgress], None] | None = None,
    break_glass: bool = False,
) -> CommitResult | BatchedResult:
    """Apply a step atomically with its ledger record, refusing unless every gate holds inside the transaction.

    The kernel commits the step (gcos/kernel.py; a batched one batch by batch, gcos/kernel_batched.py), as a
    named human operator, or as a superuser with `break_glass`; where schema public is not adopted it refuses."""
    project = load_project(project_dir)
    step = project.step(step_ref)
    settings = settings or SessionSettings.from_env()
    result: CommitResult | BatchedResult
    with _record_files(target, settings, project.root, step.id) as files:  # beside the rehearsals'
        if step.mode == "batched":
            result = kernel_batched.commit_batched(
                target, project, step, settings=settings, progress=progress, break_glass=break_glass
            )
        elif step.mode == "online":
            result = online.commit(target, project, step, settings=settings, break_glass=break_glass)
        else:
            result = kernel.commit(target, project, step, action="commit", settings=settings, break_glass=break_glass)
    return files.attach(result)


def rollback(
    target: Target,
    project_dir: Path,
    step_ref: str,
    settings: SessionSettings | None = None,
    break_glass: bool = False,
) -> CommitResult:
    """Apply a committed step's rollback evidence (needs its own approval); prove the pre-commit fingerprint."""
    project = load_project(project_dir)
    step = project.step(step_ref)
    settings = settings or SessionSettings.from_env()
    with _record_files(target, settings, project.root, step.id) as files:
        result = kernel.commit(target, project, step, action="rollback", settings=settings, break_glass=break_glass)
    return files.attach(result)


def _record_files(
    target: Target, settings: SessionSettings | None, root: Path, step_id: str | None
) -> AbstractContextManager[record_evidence.Recorded]:
    """Evidence files of the commit, rollback, refusal, stop or drift records an action appends."""
    named = record_evidence.evidence_settings(settings)
    return record_evidence.recorded(lambda: connect(target, named), root / "rehearsals", step_id)


def apply(
    target: Target,
    project_dir: Path,
    plan_id: str,
    settings: SessionSettings | None = None,
    progress: Callable[[BatchProgress], None] | None = None,
) -> apply_plan.ApplyResult:
    """Commit every step of a plan in plan order (gcos/apply_plan.py); the first refusal stops it."""
    project = load_project(project_dir)
    apply_plan.plan_steps(project, plan_id)  # an unknown plan is refused before any server is touched

    def entries() -> list[ledger.LedgerEntry]:
        with connect(target, settings) as conn:
            install_mod.require_installed(conn)
            return ledger.read_all(conn)

    def one(step_id: str) -> CommitResult | BatchedResult:
        return commit(target, project_dir, step_id, settings, progress)

    return apply_plan.apply(project, plan_id, entries, one)


def log(
    target: Target, project_dir: Path, step_ref: str | None = None, settings: SessionSettings | None = None
) -> ledger_log.LogReport:
    """The ledger's history (of one step), oldest first (gcos/ledger_log.py)."""
    step_id = load_project(project_dir).step(step_ref).id if step_ref else None
    with connect(target, settings) as conn:
        install_mod.require_installed(conn)
        return ledger_log.rows(ledger.read_all(conn), step_id)


def approvals_list(
    target: Target, project_dir: Path, step_ref: str | None = None, settings: SessionSettings | None = None
) -> approval_list.ApprovalList:
    """Every approval (of one step) with its id for gcos revoke and whether gate 5 counts it now."""
    project = load_project(project_dir)
    step_id = project.step(step_ref).id if step_ref else None
    with connect(target, settings) as conn:
        install_mod.require_installed(conn)
        return approval_list.read(conn, project, step_id, approval_list.counting(conn, project, step_id))


# --------------------------------------------------------------------------- drift


def drift(
    target: Target, settings: SessionSettings | None = None, project_dir: Path | None = None
) -> drift_mod.DriftResult:
    """Live world vs the fingerprint after the last commit; drift becomes a ledger record (exit 6), and its
    evidence files go beside the rehearsals' when `project_dir` is a project (it has a steps/ directory)."""
    if project_dir is None or not (project_dir / "steps").is_dir():
        with connect(target, settings) as conn:
            install_mod.require_installed(conn)
            return drift_mod.detect(conn)
    with _record_files(target, settings, project_dir, None) as files:  # one connection: head, drift, files
        assert files.conn is not None
        install_mod.require_installed(files.conn)
        return drift_mod.detect(files.conn)


# --------------------------------------------------------------------------- reports


def report(
    target: Target,
    project_dir: Path,
    step_ref: str | None,
    fmt: str,
    out_dir: Path,
    settings: SessionSettings | None = None,
    sign: Path | None = None,
) -> evidence.ReportResult:
    """Evidence reports (md, one self-contained html, or a json evidence pack with a manifest) from the ledger;
    with `sign` (json only), the manifest is signed to manifest.json.sig."""
    from gcos.evidence import signing

    if sign is not None and fmt != "json":
        raise SpecError("--sign signs an evidence pack; use it with --format json.")
    project = load_project(project_dir)
    from dataclasses import replace

    with connect(target, settings) as conn:
        result = evidence.build_report(conn, project, step_id=step_ref, fmt=fmt, out_dir=out_dir)
    if sign is not None:
        signed = signing.sign_file(result.files[-1], sign, signing.PACK_NAMESPACE)
        result = replace(result, files=(*result.files, signed))
    return result


def verify_pack(
    pack_dir: Path, anchor_file: Path | None = None, allowed_signers: Path | None = None
) -> ledger.VerifyReport:
    """Check an evidence pack offline: every file rebuilt from its hash chain, the anchor (a kept one's
    signature and the pack's with `allowed_signers`)."""
    from gcos.evidence import signing

    anchor = signing.load_anchor(anchor_file, allowed_signers) if anchor_file else None
    report = evidence.verify_pack(pack_dir, anchor=anchor, allowed_signers=allowed_signers)
    return replace(report, anchor_signed=anchor is not None and allowed_signers is not None)
