"""Round 2 attacks of session 22 on the client's check vouchers (gcos/spec/checked.py): content-keyed names survive
size and mtime tricks, a changed SQL file, a vouched SQL text moved out of the project behind a symlink; a key planted
in a cache directory someone else can write (or owns) must vouch for nothing (mended); the code tag must cover every
gcos module a check imports (errors.py was outside: mended). The stored catalog proof's attacks: test_attacks_s22.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_client_vouchers import REPO, STEP1, _asked, _edit, _named, _outcome, _uncached

from gcos.spec import checked as vouchers

# --------------------------------------------------------------------------- vouchers


@pytest.fixture
def voucher_project(tmp_path: Path) -> Path:
    for name in ("steps", "plans", "rollback"):
        shutil.copytree(REPO / name, tmp_path / "project" / name)
    return tmp_path / "project"


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    where = tmp_path / "cache"
    monkeypatch.setenv("GCOS_CACHE_DIR", str(where))
    monkeypatch.delenv("GCOS_NO_CACHE", raising=False)
    vouchers._key.cache_clear()
    return where


BAD = ("CREATE TABLE governance_ruleset (", "DROP TABLE laws; CREATE TABLE governance_ruleset (")


def test_same_size_and_mtime_with_other_content_is_checked(
    voucher_project: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Names come from content, not from size or time: an edit of the same length, its mtime put back, is judged."""
    spec = voucher_project / STEP1
    assert not _outcome(voucher_project).startswith("refused")
    st = spec.stat()
    text = spec.read_text(encoding="utf-8")
    old, new = "CREATE TABLE governance_ruleset (", "DROP   TABLE governance_ruleset;("
    assert len(old) == len(new) and old in text
    spec.write_text(text.replace(old, new, 1), encoding="utf-8")
    os.utime(spec, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert spec.stat().st_size == st.st_size
    refused = _uncached(voucher_project, monkeypatch)
    assert refused.startswith("refused")
    assert _outcome(voucher_project) == refused


def test_a_changed_sql_file_of_a_vouched_spec_is_checked(
    voucher_project: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The step's voucher covers the SQL files it includes: the rollback file edited, the YAML untouched."""
    assert not _outcome(voucher_project).startswith("refused")
    rollback = sorted((voucher_project / "rollback").glob("*"))
    assert rollback
    target = next(p for p in rollback if p.read_text(encoding="utf-8").strip())
    target.write_text("SELEC broken (;\n", encoding="utf-8")
    refused = _uncached(voucher_project, monkeypatch)
    assert _outcome(voucher_project) == refused


def test_a_vouched_sql_text_behind_a_symlink_out_of_the_project_is_refused(
    voucher_project: Path, tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same bytes that passed inside the project, now reached through a symlink to a file outside it."""
    assert not _outcome(voucher_project).startswith("refused")
    spec_text = (voucher_project / STEP1).read_text(encoding="utf-8")
    sql_files = [p for p in (voucher_project / "rollback").rglob("*") if p.is_file() and p.name in spec_text]
    assert sql_files, "the step includes a rollback file"
    inside = sql_files[0]
    outside = tmp_path / "elsewhere.sql"
    outside.write_bytes(inside.read_bytes())
    inside.unlink()
    inside.symlink_to(outside)
    refused = _uncached(voucher_project, monkeypatch)
    assert "outside the project" in refused
    assert _outcome(voucher_project) == refused


def _plant(cache: Path, project: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Vouchers for a refused spec named under a key someone else put in the cache directory; the refusal."""
    assert not _outcome(project).startswith("refused")  # makes the directory and this process's key
    _edit(project / STEP1, *BAD)
    refused = _uncached(project, monkeypatch)
    asked = _asked(project, monkeypatch)
    planted = b"\7" * vouchers.KEY_BYTES
    (cache / "key").unlink()
    (cache / "key").write_bytes(planted)
    (cache / "key").chmod(0o600)
    for kind, content in asked:
        (cache / "checked" / _named(planted, kind, content)).touch()
    vouchers._key.cache_clear()
    return refused


def test_a_key_planted_in_a_directory_others_can_write_vouches_for_nothing(
    voucher_project: Path, cache: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """GCOS_CACHE_DIR on a shared directory (e.g. under /tmp, mode 0777): whoever wrote its key can name vouchers
    for content that never passed. A key is trusted only in a directory no one else can write, and only when no one
    else can write the key itself (mended in gcos/spec/checked.py)."""
    refused = _plant(cache, voucher_project, monkeypatch)
    cache.chmod(0o777)
    assert _outcome(voucher_project) == refused
    assert f"gcos: the check cache is off: {cache}/key is unreadable" in capsys.readouterr().err  # said, not silent
    cache.chmod(0o700)
    (cache / "key").chmod(0o666)
    vouchers._key.cache_clear()
    assert _outcome(voucher_project) == refused
    (cache / "key").chmod(0o600)  # the same key, private: the planted vouchers are found (the test has teeth)
    vouchers._key.cache_clear()
    assert not _outcome(voucher_project).startswith("refused")


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_key_another_user_owns_vouches_for_nothing(
    voucher_project: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused = _plant(cache, voucher_project, monkeypatch)
    os.chown(cache / "key", 65534, 65534)
    assert _outcome(voucher_project) == refused
    os.chown(cache / "key", 0, 0)
    os.chown(cache, 65534, 65534)  # nor in a directory another user owns (they may swap the key)
    vouchers._key.cache_clear()
    assert _outcome(voucher_project) == refused


JUDGES = """
import json, sys
from pathlib import Path
import gcos
from gcos.spec import load_project
from gcos import sqlcheck
p = load_project(Path(sys.argv[1]), focus="SB-12")
s = p.step("SB-12")
plan = p.plan_of(s.id)
stops = (*s.stop, *plan.global_stop)
sqlcheck.check_mutation(s, extra_forbid_columns=[n for x in stops if x.kind == "forbid_columns" for n in x.names],
                        extra_forbid_objects=[n for x in stops if x.kind == "forbid_objects" for n in x.names])
sqlcheck.check_rollback(s)
print(json.dumps(sorted(m.__file__ for n, m in sys.modules.items() if n.split(".")[0] == "gcos" and m.__file__)))
"""


def test_the_code_tag_covers_every_gcos_module_a_check_imports(voucher_project: Path) -> None:
    """A voucher names the checking code by the files code_tag hashes: a gcos module the loader or the SQL checks
    import outside that list could change a verdict and keep every voucher (errors.py was outside: mended)."""
    env = {**os.environ, "GCOS_NO_CACHE": "1"}
    ran = subprocess.run(
        [sys.executable, "-c", JUDGES, str(voucher_project)], env=env, capture_output=True, text=True, timeout=60
    )
    assert ran.returncode == 0, ran.stderr
    root = Path(vouchers.__file__).resolve().parent.parent
    loaded = {Path(f).resolve() for f in json.loads(ran.stdout)}
    tagged = {p.resolve() for p in vouchers.code_files(root)}
    assert loaded and all(f.is_relative_to(root) for f in loaded)
    assert loaded <= tagged, sorted(map(str, loaded - tagged))
    assert root / "kernel.py" in tagged  # static_check itself lives there
