"""Static check of a step's SQL with PostgreSQL's own parser (pglast), before anything runs.

Every statement is classified by walking its parse tree (never by matching text, so a string, a
comment or a dollar-quoted body that merely mentions COMMIT is not refused) and is refused with
exit 2 when it is outside the spec's allow list, creates a forbidden column or object, controls the
transaction, changes the session or its identity, cannot run inside a transaction block, or does
something a gated step must never do. Nothing is executed here.

classify: one classifier per parse-node type (a dispatch table); rules: what is refused and why, what
undoes what; policy: the allow/refuse decisions. Import from here: the split is an inside matter.
"""

from gcos.sqlcheck.classify import Statement, split
from gcos.sqlcheck.policy import PLACEHOLDER, check_batch, check_mutation, check_query, check_rollback
from gcos.sqlcheck.rules import (
    ALIASES,
    CHECK_WRITE_CALLS,
    FREE_KINDS,
    GUARDED,
    NON_TRANSACTIONAL_CALLS,
    READ_KINDS,
    REFUSED,
    UNDO,
    UNSAFE_CALLS,
)

__all__ = [
    "ALIASES",
    "CHECK_WRITE_CALLS",
    "FREE_KINDS",
    "GUARDED",
    "NON_TRANSACTIONAL_CALLS",
    "PLACEHOLDER",
    "READ_KINDS",
    "REFUSED",
    "UNDO",
    "UNSAFE_CALLS",
    "Statement",
    "check_batch",
    "check_mutation",
    "check_query",
    "check_rollback",
    "split",
]
