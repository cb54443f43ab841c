-- gcos schema version 46: the executor 043 added (gcos._kernel_digests, owned by gcos_kernel) reads with
-- standard_conforming_strings on, as 039 made every executor do (tests/test_schema_guard.py checks all of them).
DO $$
DECLARE
    f record;
BEGIN
    FOR f IN SELECT p.oid::regprocedure AS fn FROM pg_catalog.pg_proc AS p
              WHERE p.pronamespace = 'gcos'::regnamespace AND p.proowner = 'gcos_kernel'::regrole
                AND NOT ('standard_conforming_strings=on' = ANY (COALESCE(p.proconfig, '{}'))) LOOP
        EXECUTE pg_catalog.format('ALTER FUNCTION %s SET standard_conforming_strings = on', f.fn);
    END LOOP;
END
$$;
