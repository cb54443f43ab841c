"""What a gated step's SQL may never do, and why: the tables the policy reads (no logic here).

Each reason is the sentence the operator reads when a statement is refused, so it says what the
statement would do that no rehearsal can prove or no gate allows.
"""

from __future__ import annotations


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# Settings gcos guards for the whole rehearsal and commit: no step may change them.
GUARDED = frozenset(
    _words(
        "lock_timeout statement_timeout idle_in_transaction_session_timeout idle_session_timeout transaction_timeout "
        "search_path role session_authorization transaction_read_only default_transaction_read_only "
        "session_replication_role transaction_isolation transaction_deferrable"
    )
)
NO_TX = "cannot run inside a transaction block"
ONLINE = " (write it in a step with mode: online, which runs it outside one)"
BUS = "would open a new bus, and seed 002 §70.2 #7 forbids a new notifier"
PRIVILEGES = "privileges are not in the allow list: a gated step never grants or revokes"
IDENTITY = "roles, ownership and identities are never changed by a gated step"
EXTENSIONS = "extensions are installed by the operator, never by a gated step"
PREPARED = "prepared statements are session state that outlives the step"
# Kinds refused whatever the allow list says, with the reason given to the operator.
REFUSED: dict[str, str] = {
    "transaction": "transaction control belongs to gcos, which runs the step inside its own transaction",
    "call": "CALL runs a procedure that can COMMIT or change the session, which gcos cannot check",
    "do": "a DO block is opaque code that gcos cannot check; write the DDL/DML itself",
    "discard": "DISCARD resets gcos's session",
    **dict.fromkeys(("listen", "unlisten", "notify"), f"LISTEN/NOTIFY {BUS}"),
    "vacuum": f"VACUUM {NO_TX}",
    "analyze": "ANALYZE is maintenance, not a build step",
    "cluster": "CLUSTER is maintenance that rewrites a table (and without a table name it " + NO_TX + ")",
    "reindex": "REINDEX is maintenance, not a build step",
    "reindex_concurrently": f"REINDEX CONCURRENTLY {NO_TX}{ONLINE}",
    "create_index_concurrently": f"CREATE INDEX CONCURRENTLY {NO_TX}{ONLINE}",
    "drop_index_concurrently": f"DROP INDEX CONCURRENTLY {NO_TX}{ONLINE}",
    "alter_system": f"ALTER SYSTEM {NO_TX} and changes the server's configuration",
    **{k: f"{k.replace('_', ' ').upper()} {NO_TX}" for k in ("create_database", "drop_database")},
    **{k: f"{k.replace('_', ' ').upper()} {NO_TX}" for k in ("create_tablespace", "drop_tablespace")},
    **{f"{v}_subscription": f"{v.upper()} SUBSCRIPTION {NO_TX}" for v in ("create", "alter", "drop")},
    "alter_database": "databases are never changed by a gated step",
    **dict.fromkeys(("grant", "revoke", "grant_role", "alter_default_privileges"), PRIVILEGES),
    **dict.fromkeys(("create_role", "alter_role", "drop_role", "alter_role_set", "reassign_owned"), IDENTITY),
    **dict.fromkeys(("drop_owned", "alter_owner"), IDENTITY),
    "copy": "COPY reads or writes server files, programs or a client stream, none of which a gated step may use",
    **dict.fromkeys(("create_extension", "alter_extension", "alter_extension_contents"), EXTENSIONS),
    **dict.fromkeys(("prepare", "execute", "deallocate"), PREPARED),
    **dict.fromkeys(("declare_cursor", "fetch", "close_portal"), "cursors are session state, not a build step"),
    "check_point": "CHECKPOINT is server maintenance, not a build step",
    "load": "LOAD loads a shared library into the session",
    "select_into": "SELECT ... INTO creates a table hidden in a query; write CREATE TABLE and INSERT",
}
# Functions that write outside the transaction: no ROLLBACK undoes them, so no rehearsal can prove them.
# Refused in every statement of a step and in every check (CHECK_WRITE_CALLS below includes them).
NON_TRANSACTIONAL_CALLS: dict[str, str] = {
    "setval": "setval() sets a sequence outside the transaction, so no ROLLBACK undoes it and no rehearsal can "
    "prove it; a step may only advance sequences with nextval()",
}
# Functions refused anywhere in any statement (set_config is checked by its setting name and scope).
UNSAFE_CALLS: dict[str, str] = {
    **NON_TRANSACTIONAL_CALLS,
    "pg_notify": f"pg_notify() {BUS}",
    **{
        f: f"{f}() takes a session-level lock that outlives the transaction"
        for f in _words("pg_advisory_lock pg_advisory_lock_shared pg_try_advisory_lock pg_try_advisory_lock_shared")
    },
    **{
        f: f"{f}() changes the session or the server outside the transaction"
        for f in _words(
            "pg_advisory_unlock pg_advisory_unlock_all pg_advisory_unlock_shared pg_terminate_backend "
            "pg_cancel_backend pg_reload_conf pg_promote pg_switch_wal pg_create_restore_point "
            "pg_create_logical_replication_slot pg_create_physical_replication_slot pg_drop_replication_slot "
            "lo_import lo_export"
        )
    },
}
READ_KINDS = frozenset({"select", "show", "explain"})
FREE_KINDS = frozenset({"set_local", "set_constraints"})  # transaction-scoped, write nothing
# Kinds the schema has no name for, allowed through their nearest allow kind.
ALIASES = {"alter_type": "create_type", "create_trigger": "alter_table", "alter_view": "create_view"}
# What a rollback may do to undo each allowed mutation kind (on the same names).
UNDO: dict[str, tuple[str, ...]] = {
    "create_table": ("drop_table", "delete"),
    "create_view": ("drop_view", "create_view"),
    "create_index": ("drop_index",),
    "create_function": ("drop_function", "create_function"),
    "create_type": ("drop_type",),
    "insert": ("delete",),
    "update": ("update",),
    "delete": ("insert",),
    "alter_table": ("alter_table",),
    "comment": ("comment",),
    "drop_table": ("create_table", "insert", "comment", "create_index"),
    "drop_view": ("create_view", "comment"),
}
# Functions a read-only check must not call: they write, and some (setval, nextval) even outside the
# transaction. Checks also run inside the commit's read-write transaction.
CHECK_WRITE_CALLS = frozenset(NON_TRANSACTIONAL_CALLS) | frozenset(
    _words(
        "nextval lo_create lo_creat lo_unlink lo_put lo_from_bytea lo_truncate lo_truncate64 lowrite "
        "pg_file_write pg_file_rename pg_file_unlink pg_file_sync pg_logical_emit_message"
    )
)
