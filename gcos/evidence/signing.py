"""SSH signatures of anchors and packs (issue 12 item 2): made with ``ssh-keygen -Y sign`` and a key the
organisation holds, so anyone verifies them WITHOUT gcos::

    ssh-keygen -Y verify -f allowed_signers -I ID -n gcos-pack -s manifest.json.sig < manifest.json

The namespace says what was signed (an anchor is never accepted as a pack). The signature of a file is
``FILE.sig`` beside it. gcos runs the same ``ssh-keygen`` to verify, after ``-Y find-principals`` has named
the signer from the allowed_signers file."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from gcos import ledger
from gcos.errors import LedgerBroken, SpecError

ANCHOR_NAMESPACE = "gcos-anchor"
PACK_NAMESPACE = "gcos-pack"


def _ssh_keygen() -> str:
    found = shutil.which("ssh-keygen")
    if found is None:
        raise SpecError("ssh-keygen is not installed; install OpenSSH (8.2 or later) to sign or verify signatures.")
    return found


def signature_path(path: Path) -> Path:
    """Where the signature of `path` lives: beside it, with ``.sig`` appended."""
    return path.with_name(path.name + ".sig")


def sign_file(path: Path, key: Path, namespace: str) -> Path:
    """Sign `path` with the SSH private key `key` in `namespace`; return the signature file (replaced if any)."""
    if not Path(key).is_file():
        raise SpecError(f"{key}: no such key file; pass the SSH private key to sign with.")
    sig = signature_path(path)
    sig.unlink(missing_ok=True)
    done = subprocess.run(
        [_ssh_keygen(), "-q", "-Y", "sign", "-f", str(key), "-n", namespace, str(path)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if done.returncode != 0 or not sig.is_file():
        reason = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"
        raise SpecError(f"Cannot sign {path} with {key} ({reason}); pass an unencrypted SSH private key.")
    return sig


def verify_file(path: Path, sig: Path, allowed_signers: Path, namespace: str) -> str:
    """Check the SSH signature `sig` of `path` against `allowed_signers` in `namespace`; return the signer's
    identity. LedgerBroken (exit 7) if it is missing or does not verify; SpecError if the file is unreadable."""
    if not Path(allowed_signers).is_file():
        raise SpecError(f"{allowed_signers}: no such allowed_signers file; pass the one your organisation keeps.")
    if not sig.is_file():
        raise LedgerBroken(f"{path.name} carries no signature ({sig.name} is missing); it was not signed.")
    tool = _ssh_keygen()
    found = subprocess.run(
        [tool, "-Y", "find-principals", "-f", str(allowed_signers), "-s", str(sig)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    identities = found.stdout.split()
    if found.returncode != 0 or not identities:
        raise LedgerBroken(f"{sig.name} was not made by a key of {allowed_signers}: the signature does not verify.")
    with path.open("rb") as data:
        checked = subprocess.run(
            [tool, "-Y", "verify", "-f", str(allowed_signers), "-I", identities[0], "-n", namespace, "-s", str(sig)],
            stdin=data,
            capture_output=True,
            text=True,
            check=False,
        )
    if checked.returncode != 0:
        raise LedgerBroken(
            f"{sig.name} does not verify {path.name} for {identities[0]} in namespace {namespace}: "
            "the file was changed after it was signed, or the signature is of something else."
        )
    return identities[0]


def load_anchor(path: Path, allowed_signers: Path | None) -> ledger.Anchor:
    """An anchor kept elsewhere; with `allowed_signers`, its signature ``PATH.sig`` must verify first."""
    if allowed_signers is not None:
        verify_file(Path(path), signature_path(Path(path)), allowed_signers, ANCHOR_NAMESPACE)
    return ledger.Anchor.load(path)
