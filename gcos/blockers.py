"""Who blocks a waiting kernel call, read WHILE it waits.

A lock timeout (55P03) says only that a lock was not granted; by the time the client hears it, the session that
held the lock may have ended, so asking afterwards can say "nobody" while pg_locks showed a holder a moment ago.
`watching(conn)` starts a thread that, once the call has waited `DELAY` seconds, opens a second connection with the
same credentials and polls pg_blocking_pids() for the waiting backend until the call returns. The error then names
every session seen blocking it. A call that ends within `DELAY` costs a thread start and nothing else. When the
watch itself cannot run (its connection refused, say), it keeps why (`failed`), so the error says who blocked the
call is unknown instead of implying nobody did.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

DELAY = 0.2  # seconds a call runs before anyone looks (most calls are over by then)
INTERVAL = 0.1  # seconds between two looks while it waits

_BLOCKERS = (
    "SELECT b.pid, a.usename::text, a.state, a.application_name "
    "FROM pg_catalog.unnest(pg_catalog.pg_blocking_pids(%s)) AS b(pid) "
    "LEFT JOIN pg_catalog.pg_stat_activity AS a ON a.pid = b.pid ORDER BY 1"
)


class Watch:
    """The sessions seen blocking one backend, by pid (first sighting's role and state)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.pid = conn.info.backend_pid
        params = conn.info.get_parameters()
        password = conn.info.password
        self._conninfo = make_conninfo("", **params, **({"password": password} if password else {}))
        self.seen: dict[int, str] = {}
        self.failed: str | None = None  # why the watch could not look, when it could not
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name=f"gcos-blockers-{self.pid}", daemon=True)

    def _poll(self) -> None:
        if self._stop.wait(DELAY):
            return
        try:
            with psycopg.connect(
                self._conninfo, autocommit=True, connect_timeout=5, application_name="gcos blocker watch"
            ) as side:
                while not self._stop.is_set():
                    for pid, user, state, app in side.execute(_BLOCKERS, (self.pid,)).fetchall():
                        if pid not in self.seen:
                            self.seen[pid] = _describe(pid, user, state, app)
                    self._stop.wait(INTERVAL)
        except psycopg.Error as exc:  # the call it watches goes on; its error will say this watch went blind
            self.failed = (str(exc).strip().splitlines() or [type(exc).__name__])[0]

    def unknown(self) -> str:
        """`; who blocked it is unknown: ...` when nobody was seen because the watch could not look, else ""."""
        if self.seen or self.failed is None:
            return ""
        return f"; who blocked it is unknown: watching pg_blocking_pids failed ({self.failed})"

    def describe(self) -> str:
        """`pid 123 of role alice (idle in transaction); ...`, or "" when nobody was seen blocking."""
        return "; ".join(text for _, text in sorted(list(self.seen.items())))


def _describe(pid: int, user: str | None, state: str | None, app: str | None) -> str:
    """One blocker in words; role and state are hidden (NULL) for another role's session without pg_read_all_stats."""
    parts = [f"role {user}" if user else "", state or "", f"application {app!r}" if app else ""]
    shown = ", ".join(p for p in parts if p)
    return f"pid {pid}" + (f" ({shown})" if shown else "")


@contextmanager
def watching(conn: psycopg.Connection[Any]) -> Iterator[Watch]:
    """Watch `conn`'s backend for blockers while the block runs (see the module doc)."""
    watch = Watch(conn)
    watch._thread.start()
    try:
        yield watch
    finally:
        watch._stop.set()
        watch._thread.join(timeout=1)
