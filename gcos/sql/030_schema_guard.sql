-- gcos schema version 30: nobody but gcos itself (gcos_owner, during install) or a superuser changes an object of
-- schema gcos, whatever role owns it.
--
-- gcos_kernel owns the kernel's executors (gcos._kernel_exec and its siblings, 011/013, and
-- gcos.proposal_approvals, 021): a SECURITY DEFINER function acts as its owner, so they must be its. An owner may
-- ALTER, COMMENT ON, DROP or GRANT its functions, and a step's SQL runs as gcos_kernel: hidden in a helper's body
-- (past the client's static check, and only when committing), `ALTER FUNCTION gcos._kernel_exec(text) SECURITY
-- INVOKER` made every later step's SQL run as gcos_owner, which writes the ledger; `GRANT EXECUTE ON FUNCTION
-- gcos._kernel_exec(text) TO someone` would let that role run any SQL as gcos_kernel outside the kernel. The
-- fingerprint leaves schema gcos out, so a rehearsal or commit saw nothing (tests/test_attacks_s18.py).
--
-- Two event triggers (ENABLE ALWAYS: session_replication_role does not switch them off; creating or dropping an
-- event trigger is a superuser's) refuse, with 42501, when the role running the command is neither gcos_owner
-- nor a superuser:
--   * any command that creates, alters, comments on or drops an object of schema gcos (or the schema itself);
--   * a GRANT or REVOKE (PostgreSQL does not tell an event trigger its objects) after which a SECURITY DEFINER
--     function of schema gcos owned by gcos_kernel may be executed by a role other than gcos_kernel and
--     gcos_owner, or grants an option to anyone else, or no longer lets gcos_owner execute it.
-- They fire wherever the command comes from: a step's mutation, its rollback, a batch, a check, a deferred trigger
-- at COMMIT.
SET LOCAL ROLE gcos_owner;

CREATE FUNCTION gcos._schema_guard() RETURNS event_trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_bad text;
BEGIN
    IF current_user = 'gcos_owner' OR (SELECT r.rolsuper FROM pg_catalog.pg_roles AS r WHERE r.rolname = current_user) THEN
        RETURN;
    END IF;
    IF TG_EVENT = 'sql_drop' THEN
        SELECT pg_catalog.string_agg(o.object_type || ' ' || o.object_identity, ', ') INTO v_bad
          FROM pg_catalog.pg_event_trigger_dropped_objects() AS o
         WHERE o.schema_name = 'gcos' OR (o.object_type = 'schema' AND o.object_identity = 'gcos');
    ELSIF TG_TAG IN ('GRANT', 'REVOKE') THEN
        -- Kernel-owned SECURITY DEFINER functions of schema gcos (they act as gcos_kernel) executable by another
        -- role than gcos_kernel and gcos_owner,
        -- with a grant option for anyone else, or no longer executable by gcos_owner (only pg_catalog here:
        -- the role granting in its own schema may have no USAGE on schema gcos).
        SELECT 'the privileges of ' || pg_catalog.string_agg(DISTINCT p.oid::regprocedure::text, ', ') INTO v_bad
          FROM pg_catalog.pg_proc AS p,
               LATERAL (SELECT COALESCE(p.proacl, pg_catalog.acldefault('f', p.proowner)) AS acl) AS a,
               LATERAL pg_catalog.aclexplode(a.acl) AS x
         WHERE p.pronamespace = 'gcos'::regnamespace AND p.proowner = 'gcos_kernel'::regrole AND p.prosecdef
           AND (x.grantee NOT IN ('gcos_kernel'::regrole, 'gcos_owner'::regrole)
                OR (x.is_grantable AND x.grantee <> 'gcos_kernel'::regrole)
                OR NOT pg_catalog.aclcontains(a.acl, pg_catalog.makeaclitem('gcos_owner'::regrole, p.proowner, 'EXECUTE', false)));
    ELSE
        SELECT pg_catalog.string_agg(c.object_type || ' ' || COALESCE(c.object_identity, '?'), ', ') INTO v_bad
          FROM pg_catalog.pg_event_trigger_ddl_commands() AS c
         WHERE c.schema_name = 'gcos' OR (c.object_type = 'schema' AND c.object_identity = 'gcos');
    END IF;
    IF v_bad IS NOT NULL THEN
        RAISE EXCEPTION 'gcos: % may not change schema gcos (% refused for %): only gcos install, as a superuser, changes gcos',
            current_user, TG_TAG, v_bad USING ERRCODE = '42501';
    END IF;
END
$$;

REVOKE ALL ON FUNCTION gcos._schema_guard() FROM PUBLIC;  -- fired by the server, never called by a role

RESET ROLE;
CREATE EVENT TRIGGER gcos_schema_guard ON ddl_command_end EXECUTE FUNCTION gcos._schema_guard();
ALTER EVENT TRIGGER gcos_schema_guard ENABLE ALWAYS;
CREATE EVENT TRIGGER gcos_schema_guard_drop ON sql_drop EXECUTE FUNCTION gcos._schema_guard();
ALTER EVENT TRIGGER gcos_schema_guard_drop ENABLE ALWAYS;
