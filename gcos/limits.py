"""Size limits on what gcos reads from a project, so a runaway file is refused at once (exit 2) instead of
keeping `gcos plan` busy for minutes (issue 11: a 4.9 MB spec took over two minutes). README, "Limits"."""

from __future__ import annotations

from pathlib import Path

from gcos.errors import SpecError

MAX_SPEC_BYTES = 1024 * 1024  # a step or plan YAML file, or a SQL file it names: 1 MiB


def check_size(path: Path, what: str = "spec file") -> None:
    """SpecError (exit 2) when `path` is over MAX_SPEC_BYTES; a file that cannot be stat'ed is left to the reader."""
    try:
        size = path.stat().st_size
    except OSError:
        return
    if size > MAX_SPEC_BYTES:
        raise SpecError(
            f"{path}: the {what} is {size:,} bytes, over gcos's limit of {MAX_SPEC_BYTES:,} bytes (1 MiB); split it "
            "or move bulk data out of the spec (load it with a step's SQL from a table, not inline)."
        )
