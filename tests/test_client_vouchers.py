"""gcos/spec/checked.py: a check that passed on exactly this content is not run again, and nothing else.

Every test compares with vouchers off (GCOS_NO_CACHE): the same project where the specs are valid, the same
refusal where they are not, whatever the cache holds (warm, forged, foreign, unwritable)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gcos import kernel
from gcos.errors import SpecError
from gcos.spec import checked, load_project

REPO = Path(__file__).resolve().parent.parent
STEP1 = "steps/01-sb-12.yaml"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    for name in ("steps", "plans", "rollback"):
        shutil.copytree(REPO / name, tmp_path / "project" / name)
    return tmp_path / "project"


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Vouchers on, in a directory of this test's own."""
    where = tmp_path / "cache"
    monkeypatch.setenv("GCOS_CACHE_DIR", str(where))
    monkeypatch.delenv("GCOS_NO_CACHE", raising=False)
    checked._key.cache_clear()
    return where


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def _outcome(root: Path, focus: str | None = "SB-12") -> str:
    """The loaded project's spec and plan hashes with the static check's verdict, or the refusal's message."""
    try:
        project = load_project(root, focus=focus)
        step = project.step("SB-12")
        plan = project.plan_of(step.id)
        assert plan is not None
        kernel.static_check(step, plan)
    except SpecError as exc:
        return f"refused: {exc.message}"
    return json.dumps({"steps": {k: s.hash for k, s in project.steps.items()}, "plans": list(project.plans)})


def _uncached(root: Path, monkeypatch: pytest.MonkeyPatch, focus: str | None = "SB-12") -> str:
    with monkeypatch.context() as m:
        m.setenv("GCOS_NO_CACHE", "1")
        return _outcome(root, focus)


def test_a_warm_load_is_the_same_project(project: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = _outcome(project), _outcome(project)
    assert first == second == _uncached(project, monkeypatch)
    assert not first.startswith("refused")
    assert len(list((cache / "checked").iterdir())) >= 4  # schema, step, plan, SQL file and static vouchers
    assert (cache / "key").stat().st_mode & 0o077 == 0


BREAKS = [
    (STEP1, "    expect: 140\n", "    expect: 140\n    bogus: 1\n"),  # the JSON Schema
    (STEP1, "CREATE TABLE governance_ruleset (", "CREATE TABLE governance_ruleset (,"),  # the mutation parses
    (STEP1, "SELECT count(*) FROM evolution_snapshots\n", "UPDATE evolution_snapshots SET id = 1\n"),  # one SELECT
    (STEP1, "CREATE TABLE governance_ruleset (", "DROP TABLE laws; CREATE TABLE governance_ruleset ("),  # static
    ("rollback/sb-12.sql", "DROP TABLE IF", "DROPP TABLE IF"),  # a SQL file parses
    ("plans/build.yaml", "steps:", "stepz:"),  # a plan's schema
]


@pytest.mark.parametrize("where,old,new", BREAKS, ids=[f"{w}:{n[:24]}" for w, _, n in BREAKS])
def test_changed_content_is_checked_again(
    project: Path, cache: Path, monkeypatch: pytest.MonkeyPatch, where: str, old: str, new: str
) -> None:
    assert not _outcome(project).startswith("refused")  # every voucher of the valid project is written
    _edit(project / where, old, new)
    refused = _outcome(project)
    assert refused.startswith("refused: ")
    assert refused == _uncached(project, monkeypatch)
    assert _outcome(project) == refused  # a refusal is never vouched for


def _asked(root: Path, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bytes]]:
    """Every (kind, content) a load and static check of `root` looks a voucher up for."""
    asked: list[tuple[str, bytes]] = []
    real = checked.vouched

    def spy(kind: str, content: bytes) -> bool:
        asked.append((kind, content))
        return real(kind, content)

    with monkeypatch.context() as m:
        m.setattr(checked, "vouched", spy)
        _outcome(root)
    return asked


def _named(key: bytes, kind: str, content: bytes) -> str:
    mac = hmac.new(key, kind.encode() + b"\0" + checked.code_tag(), hashlib.sha256)
    mac.update(content)
    return mac.hexdigest()


def test_forged_vouchers_cost_time_only(project: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Vouchers for refused content, named without the cache's key (another key, a bare sha256), name nothing a
    process looks for; named WITH the key they would skip the checks (the key is what a voucher rests on)."""
    assert not _outcome(project).startswith("refused")
    _edit(project / STEP1, "CREATE TABLE governance_ruleset (", "DROP TABLE laws; CREATE TABLE governance_ruleset (")
    refused = _uncached(project, monkeypatch)
    asked = _asked(project, monkeypatch)
    assert {kind for kind, _ in asked} >= {"step", "static"}
    for kind, content in asked:
        (cache / "checked" / _named(b"\1" * checked.KEY_BYTES, kind, content)).touch()
        (cache / "checked" / hashlib.sha256(kind.encode() + b"\0" + content).hexdigest()).touch()
    assert _outcome(project) == refused
    key = (cache / "key").read_bytes()
    for kind, content in asked:
        (cache / "checked" / _named(key, kind, content)).touch()
    assert not _outcome(project).startswith("refused")  # the same files under the real key: the test has teeth
    (cache / "key").write_bytes(os.urandom(checked.KEY_BYTES))  # a new key: every old voucher names nothing
    checked._key.cache_clear()
    assert _outcome(project) == refused


def test_an_unusable_cache_directory_only_means_checking(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Checking as without vouchers, and the user told why once on stderr (never silently)."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    monkeypatch.setenv("GCOS_CACHE_DIR", str(blocker / "cache"))
    checked._key.cache_clear()
    assert _outcome(project) == _uncached(project, monkeypatch)
    said = capsys.readouterr()
    off = "gcos: the check cache is off: "
    assert said.out == "" and said.err.count(f"{off}its key cannot be made under {blocker}") == 1
    (tmp_path / "short").mkdir()
    (tmp_path / "short" / "key").write_bytes(b"short")  # a key of the wrong size is no key
    monkeypatch.setenv("GCOS_CACHE_DIR", str(tmp_path / "short"))
    checked._key.cache_clear()
    assert _outcome(project) == _uncached(project, monkeypatch)
    assert not (tmp_path / "short" / "checked").exists() or not any((tmp_path / "short" / "checked").iterdir())
    assert f"{off}{tmp_path / 'short'}/key is unreadable, not 32 bytes" in capsys.readouterr().err


def test_a_voucher_that_cannot_be_written_only_means_checking_again(
    project: Path, cache: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _outcome(project) == _uncached(project, monkeypatch)  # makes the key and the vouchers
    assert capsys.readouterr().err == ""
    shutil.rmtree(cache / "checked")
    (cache / "checked").write_text("not a directory")
    assert _outcome(project) == _uncached(project, monkeypatch)
    said = capsys.readouterr().err
    assert f"gcos: the check cache is off: a voucher cannot be written under {cache / 'checked'}" in said


def test_a_warm_process_loads_no_checker(project: Path, tmp_path: Path) -> None:
    """What `gcos rehearse` saves: a process whose step, plans and SQL were vouched for loads neither jsonschema
    nor pglast nor the SQL checks, and gets the same spec hashes as one with vouchers off."""
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from gcos import kernel\n"
        "from gcos.spec import load_project\n"
        f"p = load_project(Path({str(project)!r}), focus='SB-12')\n"
        "s = p.step('SB-12'); kernel.static_check(s, p.plan_of(s.id))\n"
        "print(json.dumps([{k: v.hash for k, v in p.steps.items()},"
        " sorted(m for m in ('jsonschema', 'pglast', 'gcos.sqlcheck') if m in sys.modules)]))"
    )
    env = {**os.environ, "GCOS_CACHE_DIR": str(tmp_path / "proc-cache")}
    env.pop("GCOS_NO_CACHE", None)
    runs = [
        subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=True)
        for _ in range(2)
    ]
    off = subprocess.run(
        [sys.executable, "-c", code], env={**env, "GCOS_NO_CACHE": "1"}, capture_output=True, text=True, timeout=60
    )
    (cold_hashes, cold_loaded), (warm_hashes, warm_loaded), (off_hashes, off_loaded) = (
        json.loads(r.stdout) for r in (*runs, off)
    )
    assert cold_hashes == warm_hashes == off_hashes
    assert cold_loaded == off_loaded == ["gcos.sqlcheck", "jsonschema", "pglast"]
    assert warm_loaded == []


def test_under_pytest_vouchers_are_off_unless_a_cache_dir_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GCOS_CACHE_DIR", raising=False)
    monkeypatch.delenv("GCOS_NO_CACHE", raising=False)
    assert os.environ.get("PYTEST_CURRENT_TEST")
    assert checked.cache_dir() is None


def test_other_checking_code_finds_no_voucher(project: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A voucher names the checking code too: after an upgrade (another code tag) every check runs again."""
    _outcome(project)
    before = set((cache / "checked").iterdir())
    asked = _asked(project, monkeypatch)
    monkeypatch.setattr(checked, "code_tag", lambda: b"another gcos")
    assert not any(checked.vouched(kind, content) for kind, content in asked)
    assert _outcome(project) == _uncached(project, monkeypatch)
    after = set((cache / "checked").iterdir())
    assert len(after - before) == len(before)  # every check ran and passed again, under the new tag
