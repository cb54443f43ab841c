"""Where the database is (--dsn, GCOS_DSN, DATABASE_URL, libpq's PG* variables, else the embedded default)
and how to connect.

Every connection is ``autocommit=True`` (callers open transactions explicitly) and carries gcos's session
settings as libpq ``options``, so lock/statement/idle timeouts hold from the very first statement.
Passwords never reach a message: use ``Target.display`` / ``redact_dsn`` for anything shown.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from gcos.errors import SpecError, connection_failed

CONNECT_TIMEOUT = 10
_STARTED: set[Path] = set()  # embedded homes this process has started (or found running) via connect()
_SECRET_KEYS = frozenset({"password", "sslpassword"})
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(us|ms|s|min|h|d)?")
_UNIT_MS = {"us": 0.001, "ms": 1, None: 1, "s": 1000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}
_INT_MAX = 2**31 - 1  # PostgreSQL's limit for these settings, in milliseconds
_ENV = {
    "application_name": "GCOS_APPLICATION_NAME",
    "lock_timeout": "GCOS_LOCK_TIMEOUT",
    "statement_timeout": "GCOS_STATEMENT_TIMEOUT",
    "idle_in_transaction_session_timeout": "GCOS_IDLE_TIMEOUT",
}
_TIMEOUTS = ("lock_timeout", "statement_timeout", "idle_in_transaction_session_timeout")
_URI_PREFIXES = ("postgresql://", "postgres://")
# libpq's variables that choose a server, database or role (libpq reads them itself from an empty conninfo).
# PGPASSWORD, PGPASSFILE, PGSSLMODE, PGOPTIONS... only say how to reach whichever server is chosen.
LIBPQ_ENV = {
    "PGSERVICE": "service",
    "PGHOST": "host",
    "PGHOSTADDR": "hostaddr",
    "PGPORT": "port",
    "PGDATABASE": "dbname",
    "PGUSER": "user",
}


def _check_duration(value: str, name: str) -> None:
    match = _DURATION.fullmatch(value)
    if match is None or float(match[1]) * _UNIT_MS[match[2]] > _INT_MAX:
        raise SpecError(
            f"{name} must be a duration such as 5s, 500ms or 2min (0 disables it), not {value!r}; fix it and retry."
        )


def _check_application_name(value: str, name: str) -> None:
    if not value or len(value) > 63 or not all(" " <= ch <= "~" for ch in value):
        raise SpecError(f"{name} must be 1 to 63 printable ASCII characters, not {value!r}; fix it and retry.")


@dataclass(frozen=True)
class SessionSettings:
    """Session settings every gcos connection carries (timeouts use PostgreSQL units: us ms s min h d)."""

    application_name: str = "gcos"
    lock_timeout: str = "5s"
    statement_timeout: str = "60s"
    idle_in_transaction_session_timeout: str = "60s"

    def __post_init__(self) -> None:
        _check_application_name(self.application_name, "application_name")
        for name in _TIMEOUTS:
            _check_duration(getattr(self, name), name)

    @classmethod
    def from_env(cls) -> SessionSettings:
        """Defaults overridden by GCOS_LOCK_TIMEOUT, GCOS_STATEMENT_TIMEOUT, GCOS_IDLE_TIMEOUT and
        GCOS_APPLICATION_NAME (empty means unset); SpecError naming the variable on a bad value."""
        values: dict[str, str] = {}
        for field in fields(cls):
            var = _ENV[field.name]
            raw = os.environ.get(var, "").strip()
            if raw:
                check = _check_application_name if field.name == "application_name" else _check_duration
                check(raw, var)
                values[field.name] = raw
        return cls(**values)

    @property
    def options(self) -> str:
        """The libpq ``options`` value: ``-c name=value`` for each timeout (values never contain spaces)."""
        return " ".join(f"-c {name}={getattr(self, name)}" for name in _TIMEOUTS)


@dataclass(frozen=True, repr=False)
class Target:
    """A database to work on and where that choice came from: "--dsn", "GCOS_DSN", "DATABASE_URL",
    "libpq (PGHOST, PGUSER)" (an empty dsn: libpq reads the variables) or "embedded". Its repr is
    redacted, so a Target can be logged."""

    dsn: str
    source: str
    # The embedded server's home when this target is the embedded default not started yet: connect()
    # starts it on first use, so a command validates its project before any server starts.
    embedded_home: Path | None = dataclasses.field(default=None, compare=False)

    @property
    def display(self) -> str:
        """The redacted DSN; for a libpq target, the conninfo its PG* variables amount to."""
        if not self.dsn.strip():
            return make_conninfo("", **{key: value for _var, key, value in libpq_variables()})
        return redact_dsn(self.dsn)

    def __repr__(self) -> str:
        return f"Target(dsn={self.display!r}, source={self.source!r})"


def _parse(dsn: str, source: str) -> dict[str, Any]:
    try:
        return conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        raise SpecError(
            f"The DSN from {source} is not a valid libpq connection string or postgresql:// URI; fix it and retry."
        ) from None  # the DSN itself is never echoed: it may hold a password


def libpq_variables() -> list[tuple[str, str, str]]:
    """(variable, libpq keyword, value) for each of LIBPQ_ENV that is set and not empty."""
    return [(var, key, value) for var, key in LIBPQ_ENV.items() if (value := os.environ.get(var, "").strip())]


def resolve_target(dsn: str | None = None, *, home: Path | None = None, start_embedded: bool = True) -> Target:
    """--dsn, else GCOS_DSN, else DATABASE_URL (empty variables count as unset), else libpq's own way when
    any of LIBPQ_ENV is set, else the embedded default server under ``<home>/.gcos`` — started first
    (EmbeddedServer.up), or, when start_embedded is False, on the first connect() to it."""
    candidates: list[tuple[str, str | None]] = [("--dsn", dsn)] if dsn is not None else []
    candidates += [(var, os.environ.get(var, "").strip() or None) for var in ("GCOS_DSN", "DATABASE_URL")]
    for source, value in candidates:
        if value is None:
            continue
        if not value.strip():
            raise SpecError(f"{source} is empty; pass a libpq connection string or postgresql:// URI.")
        value = re.sub(r"^postgres(?:ql)?\+\w+://", "postgresql://", value.strip())  # SQLAlchemy-style URLs
        _parse(value, source)
        return Target(value, source)
    seen = [var for var, _key, _value in libpq_variables()]
    if seen:
        return Target("", f"libpq ({', '.join(seen)})")
    from gcos.embedded import EmbeddedServer  # here: psutil and the server code only for the embedded target

    server = EmbeddedServer(home)
    if start_embedded:
        server.up()
        return Target(server.url(), "embedded")
    return Target(server.url(), "embedded", embedded_home=server.home)


def connect(
    target: Target, settings: SessionSettings | None = None, *, dbname: str | None = None
) -> psycopg.Connection[Any]:
    """An autocommit connection with the session settings applied from the first statement.

    A failed connection becomes errors.connection_failed: DatabaseUnavailable (exit 8) when the server
    cannot be reached, LoginRefused (exit 2) when it refused the login; the redacted DSN and what to do."""
    settings = settings if settings is not None else SessionSettings.from_env()
    if target.embedded_home is not None and target.embedded_home not in _STARTED:
        from gcos.embedded import EmbeddedServer  # here: psutil and the server code only for the embedded target

        EmbeddedServer(target.embedded_home).up()
        _STARTED.add(target.embedded_home)
    params = _parse(target.dsn, target.source)
    given = params.get("options") or os.environ.get("PGOPTIONS")  # ours must not hide libpq's own
    extra: dict[str, Any] = {
        "options": " ".join(part for part in (given, settings.options) if part),
        "application_name": settings.application_name,
    }
    if "connect_timeout" not in params:
        extra["connect_timeout"] = CONNECT_TIMEOUT
    if dbname is not None:
        extra["dbname"] = dbname
    try:
        return psycopg.connect(target.dsn, autocommit=True, **extra)
    except psycopg.OperationalError as exc:
        where = redact_dsn(make_conninfo(target.dsn, dbname=dbname)) if dbname else target.display
        raise connection_failed(
            exc,
            where,
            embedded=target.source == "embedded",
            secrets=[str(params[key]) for key in _SECRET_KEYS if params.get(key)] + [os.environ.get("PGPASSWORD", "")],
            details={"source": target.source, "dsn": where},
        ) from None


def set_local_timeouts(conn: psycopg.Connection[Any], settings: SessionSettings) -> None:
    """The session's timeouts again for this transaction only (set_config(..., true) is SET LOCAL), and a
    synchronous COMMIT: a kernel call whose records must be durable before the client reports them. One
    statement, one round trip (set_config runs left to right; a bad value fails it as it failed alone)."""
    settings_in_order = (
        ("lock_timeout", settings.lock_timeout),
        ("statement_timeout", settings.statement_timeout),
        ("idle_in_transaction_session_timeout", settings.idle_in_transaction_session_timeout),
        ("synchronous_commit", "on"),
    )
    conn.execute(
        "SELECT pg_catalog.set_config(%s, %s, true), pg_catalog.set_config(%s, %s, true), "
        "pg_catalog.set_config(%s, %s, true), pg_catalog.set_config(%s, %s, true)",
        [part for pair in settings_in_order for part in pair],
    )


def redact_dsn(dsn: str) -> str:
    """The DSN with every password (and sslpassword) replaced by ***; URI and key=value forms keep their
    form. A DSN that cannot be parsed is not echoed at all."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<malformed DSN>"
    if not _SECRET_KEYS & params.keys():
        return dsn
    if not dsn.lstrip().startswith(_URI_PREFIXES):
        return make_conninfo("", **{k: "***" if k in _SECRET_KEYS else v for k, v in params.items()})
    parts = urlsplit(dsn.strip())
    netloc = parts.netloc
    userinfo, at, hosts = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:***@{hosts}"
    query = "&".join(
        f"{item.partition('=')[0]}=***" if unquote(item.partition("=")[0]) in _SECRET_KEYS else item
        for item in parts.query.split("&")
    )
    return urlunsplit(parts._replace(netloc=netloc, query=query))
