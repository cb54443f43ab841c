-- gcos schema version 32: the schema guard (030) follows the kernel's executors wherever they are, and a check
-- whose verdict is unknown fails.
--
-- 030 judged a command by the schema its object is in *after* the command, so `ALTER FUNCTION
-- gcos._kernel_exec(text) SET SCHEMA public`, run as gcos_kernel (which owns the executors and, once a schema is
-- adopted, owns that schema too), passed: the function left gcos, still SECURITY DEFINER, and its owner could
-- then change or grant it unseen. Every function of schema gcos that gcos_kernel owns is now marked by a comment
-- a superuser writes here ('gcos kernel executor: …'; COMMENT ON a gcos object is refused to everyone else by
-- 030), and the guard refuses any command on a marked function, in any schema, and any GRANT or REVOKE after
-- which a marked SECURITY DEFINER function is executable by another role than gcos_kernel and gcos_owner.
--
-- gcos._kernel_checks: a check whose expectation evaluates to NULL (an `ok` of NULL) counted as passing in
-- gcos._commit_verdict (COALESCE(ok, true)) and was skipped by gcos._rehearsal_outcome; it is now a failure.

-- The mark, written as the superuser install runs as (the guard lets superusers and gcos_owner through).
DO $$
DECLARE
    f record;
BEGIN
    FOR f IN SELECT p.oid::regprocedure AS fn FROM pg_catalog.pg_proc AS p
              WHERE p.pronamespace = 'gcos'::regnamespace AND p.proowner = 'gcos_kernel'::regrole LOOP
        EXECUTE pg_catalog.format('COMMENT ON FUNCTION %s IS %L', f.fn,
            'gcos kernel executor: owned by gcos_kernel so that it acts as it; only gcos install changes it');
    END LOOP;
END
$$;

SET LOCAL ROLE gcos_owner;

CREATE OR REPLACE FUNCTION gcos._schema_guard() RETURNS event_trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_bad text;
    v_mark constant text := 'gcos kernel executor:%';
BEGIN
    IF current_user = 'gcos_owner' OR (SELECT r.rolsuper FROM pg_catalog.pg_roles AS r WHERE r.rolname = current_user) THEN
        RETURN;
    END IF;
    IF TG_EVENT = 'sql_drop' THEN
        SELECT pg_catalog.string_agg(o.object_type || ' ' || o.object_identity, ', ') INTO v_bad
          FROM pg_catalog.pg_event_trigger_dropped_objects() AS o
         WHERE o.schema_name = 'gcos' OR (o.object_type = 'schema' AND o.object_identity = 'gcos');
    ELSIF TG_TAG IN ('GRANT', 'REVOKE') THEN
        -- Marked SECURITY DEFINER functions (they act as gcos_kernel), wherever they are, executable by another
        -- role than gcos_kernel and gcos_owner, with a grant option for anyone else, or no longer executable by
        -- gcos_owner (only pg_catalog here: the role granting in its own schema may have no USAGE on gcos).
        SELECT 'the privileges of ' || pg_catalog.string_agg(DISTINCT p.oid::regprocedure::text, ', ') INTO v_bad
          FROM pg_catalog.pg_proc AS p,
               LATERAL (SELECT COALESCE(p.proacl, pg_catalog.acldefault('f', p.proowner)) AS acl) AS a,
               LATERAL pg_catalog.aclexplode(a.acl) AS x
         WHERE p.prosecdef AND p.proowner = 'gcos_kernel'::regrole
           AND (p.pronamespace = 'gcos'::regnamespace OR pg_catalog.obj_description(p.oid, 'pg_proc') LIKE v_mark)
           AND (x.grantee NOT IN ('gcos_kernel'::regrole, 'gcos_owner'::regrole)
                OR (x.is_grantable AND x.grantee <> 'gcos_kernel'::regrole)
                OR NOT pg_catalog.aclcontains(a.acl, pg_catalog.makeaclitem('gcos_owner'::regrole, p.proowner, 'EXECUTE', false)));
    ELSE
        SELECT pg_catalog.string_agg(c.object_type || ' ' || COALESCE(c.object_identity, '?'), ', ') INTO v_bad
          FROM pg_catalog.pg_event_trigger_ddl_commands() AS c
         WHERE c.schema_name = 'gcos' OR (c.object_type = 'schema' AND c.object_identity = 'gcos')
            OR (c.classid = 'pg_catalog.pg_proc'::regclass
                AND pg_catalog.obj_description(c.objid, 'pg_proc') LIKE v_mark);
    END IF;
    IF v_bad IS NOT NULL THEN
        RAISE EXCEPTION 'gcos: % may not change schema gcos (% refused for %): only gcos install, as a superuser, changes gcos',
            current_user, TG_TAG, v_bad USING ERRCODE = '42501';
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION gcos._kernel_checks(p_checks jsonb) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_out jsonb := '[]';
    v_check jsonb;
    v_result jsonb;
BEGIN
    FOR v_check IN SELECT e.value FROM pg_catalog.jsonb_array_elements(COALESCE(p_checks, '[]')) AS e LOOP
        v_result := gcos._kernel_check(v_check);
        v_out := v_out || pg_catalog.jsonb_build_array(v_result || pg_catalog.jsonb_build_object(
            'actual', gcos._ledger_number(v_result -> 'actual'), 'expected', gcos._ledger_number(v_result -> 'expected'),
            'ok', COALESCE((v_result ->> 'ok')::boolean, false)));  -- an unknown verdict is no pass
    END LOOP;
    RETURN v_out;
END
$$;
