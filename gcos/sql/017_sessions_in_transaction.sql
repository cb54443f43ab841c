-- gcos schema version 17: seed 002 §70.2 #6 ("a session left idle in transaction, or an errored transaction not
-- rolled back") holds where the kernel judges the stops.
--
--   gcos.sessions_in_transaction() -> (pid, role_name, state, state_seconds)    gcos_kernel and every gcos role
--
-- The kernel evaluates a plan's global stops as gcos_kernel, which (like any role that is not a member of
-- pg_read_all_stats) sees only its own sessions' states in pg_stat_activity: a stop that asks it about everyone
-- else's never holds. This function, owned by gcos_owner (made a member of pg_read_all_stats here), lists the
-- other sessions of this database that sit in a transaction, idle or aborted, with how long they have been in
-- that state: pids, role names and states, never query texts (which can carry secrets).
GRANT pg_read_all_stats TO gcos_owner;

SET LOCAL ROLE gcos_owner;

CREATE FUNCTION gcos.sessions_in_transaction()
    RETURNS TABLE (pid integer, role_name text, state text, state_seconds numeric)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT a.pid, a.usename::text, a.state,
           EXTRACT(epoch FROM pg_catalog.clock_timestamp() - a.state_change)::numeric
      FROM pg_catalog.pg_stat_activity AS a
     WHERE a.datname = pg_catalog.current_database() AND a.pid <> pg_catalog.pg_backend_pid()
       AND a.state IN ('idle in transaction', 'idle in transaction (aborted)')
$$;

RESET ROLE;
REVOKE ALL ON FUNCTION gcos.sessions_in_transaction() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gcos.sessions_in_transaction()
    TO gcos_kernel, gcos_admin, gcos_operator, gcos_sovereign, gcos_council, gcos_auditor;
