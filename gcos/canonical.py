"""Canonical JSON (RFC 8785, via the rfc8785 package) and the sha256 content hash built on it.

One definition for spec hashes, plan hashes and ledger record hashes, so they can never disagree.
"""

from __future__ import annotations

import hashlib
from typing import Any

import rfc8785


def canonical_bytes(value: Any) -> bytes:
    """RFC 8785 (JCS) canonical UTF-8 bytes of a JSON value (the Python reference for ``gcos.jcs``)."""
    return bytes(rfc8785.dumps(value))


def content_hash(value: Any) -> str:
    """sha256 hex of the canonical JSON: the identity of a spec, a plan or a ledger record."""
    return hashlib.sha256(canonical_bytes(value)).hexdigest()
