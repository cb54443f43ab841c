"""The fingerprint's catalog queries, as the package ships them: the fingerprint itself is computed by the
database, never by this module.

``gcos.fingerprint(watch, exclude)`` and the kernel's ``gcos.fingerprint_at`` (gcos/sql/005_fingerprint.sql)
run one catalog query per schema category (``CATEGORIES``) and one for sequence states, in the caller's
snapshot, and hash what they return, each category also into a digest (042: ``gcos.fingerprint_digests``
returns the fingerprint without its object map, ``gcos.fingerprint_objects`` one category's objects, to name
a difference); the kernel compares the results (``gcos._fp_differences``,
``gcos.footprint``). Those queries are the files ``gcos/fingerprint_sql/<name>.sql``: ``gcos install`` loads
them, adapted to the server's version (``query``), into ``gcos.fingerprint_queries``, and a command refuses a
database whose loaded queries differ from this package's (``gcos.install.require_installed``).
"""

from __future__ import annotations

from functools import cache
from importlib import resources

CATEGORIES: tuple[str, ...] = (
    "schema",
    "relation",
    "column",
    "constraint",
    "index",
    "trigger",
    "rule",
    "function",
    "sequence",
    "type",
    "policy",
    "statistics",
    "extension",
    "event_trigger",
    "default_privileges",
    "role",
    "database",
    "collation",
    "cast",
    "operator",
    "text_search",
    "foreign_server",
    "publication",
)
"""The schema categories of the fingerprint, each ``fingerprint_sql/<name>.sql``."""

_NEWER_COLUMNS = (
    (150000, "i.indnullsnotdistinct", "NULL::boolean"),
    (160000, "m.inherit_option", "NULL::boolean"),
    (160000, "m.set_option", "NULL::boolean"),
    (
        150000,
        '(SELECT array_agg(pn.pnnspid::regnamespace::text ORDER BY pn.pnnspid::regnamespace::text COLLATE "C")'
        " FROM pg_publication_namespace AS pn WHERE pn.pnpubid = p.oid)",
        "NULL::text[]",
    ),
)
"""(server version since, catalog text, what it reads as before): columns and catalogs newer than PostgreSQL
14 (publication schemas 15, membership options 16)."""


@cache
def query(name: str, server_version: int) -> str:
    """The catalog query ``name`` (a category, ``sequence_state`` or ``sequence_state_legacy``) for a server of
    ``server_version``: columns newer than PostgreSQL 14 (the oldest the reference world supports) read as
    NULL on servers that lack them. Its parameters are still named (``%(exclude)s``, ``%(no_extensions)s``)."""
    text = resources.files("gcos").joinpath("fingerprint_sql", f"{name}.sql").read_text(encoding="utf-8")
    for since, column, replacement in _NEWER_COLUMNS:
        if server_version < since:
            text = text.replace(column, replacement)
    return text
