-- gcos schema version 45: the window shield judges the session, not only current_user (s20 attack, hole 1).
--
-- 040's shield refused a write whose current_user has gcos_kernel's rights without being it. But the kernel's
-- executors (gcos._kernel_exec and its siblings) are SECURITY DEFINER functions owned by gcos_kernel, and an owner
-- holds EXECUTE on its functions: a role lent gcos_kernel's rights by an online window inherits that EXECUTE, so
-- any of its sessions could run `SELECT gcos._kernel_exec('UPDATE ...')` and write every adopted table as
-- gcos_kernel, past the current_user test, while the kernel recorded nothing. The same holds for any SECURITY
-- DEFINER function gcos_kernel owns (one a step put in an adopted schema, executable by its owner alone).
--
-- The shield now judges every role the statement acts for: current_user, the session's login role
-- (session_user) and the role the session SET (the GUC `role`, which a SECURITY DEFINER call leaves as it was),
-- as gcos._online_guard does (037). It refuses (42501) when one of them is not gcos_kernel, not a superuser, and
-- has gcos_kernel's privileges (pg_has_role(.., 'gcos_kernel', 'USAGE')). The kernel's own work passes: its
-- callers' login roles are no members, except
--   * the ticket session of an online window, whose login role is lent the rights only between online_next's
--     ticket and online_done (which revokes them first): that session may run only the ticketed statement
--     then (the online guard), and CREATE/DROP/REINDEX INDEX CONCURRENTLY fire no row or statement trigger;
--   * a window whose session died: its login role keeps the rights until the sweep, and meanwhile every gcos
--     commit or rehearsal of that role that runs DDL (the online guard) or writes an adopted table (the shield)
--     is refused with a sentence saying so and how to sweep (`SELECT gcos.online_sweep()`, any operator; the
--     next online commit sweeps too): both sentences now say it;
--   * gcos adopt/release by a non-superuser, made a member for the call: neither writes rows of adopted tables.
-- Why not (also) REVOKE EXECUTE on the executors FROM gcos_kernel: a non-superuser's gcos adopt/release reaches
-- gcos._kernel_exec (to put the shield on, take it off) through that call's temporary gcos_kernel membership, so
-- the revoke would mean granting the executors to gcos_admin or widening the shield helpers into SECURITY DEFINER
-- functions; and it would not cover the other SECURITY DEFINER functions gcos_kernel may own. The session test
-- covers them all, at one more pg_has_role per statement.
RESET ROLE;
CREATE OR REPLACE FUNCTION gcos._window_shield() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET standard_conforming_strings = on  -- as every executor (039)
AS $$
DECLARE
    v_set text := pg_catalog.current_setting('role');
    v_role text;
BEGIN
    FOREACH v_role IN ARRAY ARRAY[current_user::text, session_user::text]
                            || CASE WHEN v_set <> 'none' THEN ARRAY[v_set] ELSE '{}' END LOOP
        CONTINUE WHEN v_role = 'gcos_kernel' OR NOT pg_catalog.pg_has_role(v_role, 'gcos_kernel', 'USAGE')
                   OR (SELECT r.rolsuper FROM pg_catalog.pg_roles AS r WHERE r.rolname = v_role);
        IF current_user <> 'gcos_kernel' THEN
            RAISE EXCEPTION 'gcos: role % holds gcos_kernel''s rights (lent to an online window, or granted) and may not % %.% outside the kernel; only the kernel''s executors write adopted tables',
                v_role, TG_OP, pg_catalog.quote_ident(TG_TABLE_SCHEMA), pg_catalog.quote_ident(TG_TABLE_NAME)
                USING ERRCODE = '42501';
        END IF;
        RAISE EXCEPTION 'gcos: role % holds gcos_kernel''s rights lent to an online window (in this or another database of the server; or granted), so no % of %.% runs for it, not even through the kernel, until the window ends; if the window''s session has ended, SELECT gcos.online_sweep() (any operator) in that database takes the rights back',
            v_role, TG_OP, pg_catalog.quote_ident(TG_TABLE_SCHEMA), pg_catalog.quote_ident(TG_TABLE_NAME)
            USING ERRCODE = '42501';
    END LOOP;
    RETURN NULL;
END
$$;

-- As 037, and a refusal for a role holding lent rights says how to take them back when the window's session died
-- (the crashed window's holder meets this sentence first: its next step's DDL).
SET LOCAL ROLE gcos_owner;
CREATE OR REPLACE FUNCTION gcos._online_guard() RETURNS event_trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t record;
    v_roles text[];
BEGIN
    SELECT * INTO t FROM gcos.online_tickets AS k WHERE k.pid = pg_catalog.pg_backend_pid();
    IF FOUND AND gcos._online_alive(t.pid, t.run_id) THEN
        IF pg_catalog.btrim(pg_catalog.current_query(), E' \t\r\n;') = pg_catalog.btrim(t.statement, E' \t\r\n;') THEN
            UPDATE gcos.online_tickets AS k SET ran = true WHERE k.pid = t.pid;
            RETURN;
        END IF;
        RAISE EXCEPTION 'gcos: this session holds an online ticket for % of run %, and may run only that statement (% refused)',
            t.piece + 1, t.run_id, TG_TAG USING ERRCODE = '42501';
    END IF;
    -- the roles this session acts as outside kernel executors: its login role and the role it SET (a kernel
    -- executor is SECURITY DEFINER: current_user gcos_kernel there, but the GUC role stays what the session SET)
    v_roles := ARRAY[session_user::text] || CASE WHEN pg_catalog.current_setting('role') <> 'none'
                                                THEN ARRAY[pg_catalog.current_setting('role')] ELSE '{}' END;
    IF (SELECT r.rolsuper FROM pg_catalog.pg_roles AS r WHERE r.rolname = session_user) THEN
        RETURN;
    END IF;
    IF EXISTS (SELECT FROM gcos.online_tickets AS k, pg_catalog.unnest(v_roles) AS u(role_name)
                WHERE pg_catalog.pg_has_role(u.role_name, k.role_name, 'MEMBER')) THEN
        RAISE EXCEPTION 'gcos: role % can act as a role that holds gcos_kernel''s rights lent to an online ticket of another session; % refused; if that window''s session has ended, SELECT gcos.online_sweep() (any operator) in its database takes the rights back',
            session_user, TG_TAG USING ERRCODE = '42501';
    END IF;
    IF EXISTS (SELECT FROM pg_catalog.unnest(v_roles) AS u(role_name) WHERE pg_catalog.pg_has_role(u.role_name, 'gcos_kernel', 'MEMBER'))
       -- a role that can make itself gcos_kernel anyway (ADMIN OPTION; CREATEROLE before 16; the installer, a
       -- member of gcos_owner during its install) loses nothing by passing: gcos adopt and install make it a member
       AND NOT pg_catalog.pg_has_role(session_user, 'gcos_kernel', 'MEMBER WITH ADMIN OPTION')
       AND NOT pg_catalog.pg_has_role(session_user, 'gcos_owner', 'MEMBER')
       AND NOT (pg_catalog.current_setting('server_version_num')::integer < 160000
                AND (SELECT r.rolcreaterole FROM pg_catalog.pg_roles AS r WHERE r.rolname = session_user)) THEN
        RAISE EXCEPTION 'gcos: role % can act as gcos_kernel (an online ticket of another session or database, a grant, or a SET ROLE that outlived its window) and this session holds no ticket in this database; % refused; if that window''s session has ended, SELECT gcos.online_sweep() (any operator) in its database takes the rights back',
            session_user, TG_TAG USING ERRCODE = '42501';
    END IF;
END
$$;
RESET ROLE;
