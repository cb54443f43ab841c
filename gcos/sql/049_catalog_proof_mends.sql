-- gcos schema version 49: 047's catalog proof mended where an attack broke it, and narrowed to this database.
--
--   gcos._catalog_state: (1) its row texts are rendered under pinned settings (timezone UTC, ISO dates): the roles
--       digest printed rolvaliduntil in the session's TimeZone and DateStyle, so under a zone whose summer and winter
--       time share an abbreviation a VALID UNTIL moved by an hour at the autumn change printed the same and the
--       proof held while the role category changed (tests/test_attacks_s21.py). (2) It carries a digest of the
--       fingerprint queries loaded in gcos.fingerprint_queries: they compute the schema part, and `gcos install`
--       may reload them between mark and check. (3) The shared catalogs are read as the fingerprint reads them, for
--       this database only: pg_database's own row, pg_shdepend's rows of this database, pg_db_role_setting's rows
--       for this database or all; pg_shdescription, pg_shseclabel, pg_replication_origin and pg_parameter_acl are
--       read by no category. A database created, altered or dropped elsewhere on the server no longer defeats the
--       proof (roles are the whole server's and still do).
--   gcos._catalog_unchanged: compares the queries digest too; a mark without one (taken before 049) proves nothing.
--   gcos._kernel_tables_mark (048) pins standard_conforming_strings as every function owned by gcos_kernel does (046).
SET LOCAL ROLE gcos_owner;

CREATE OR REPLACE FUNCTION gcos._catalog_state(p_young xid) RETURNS jsonb
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
    SET timezone = 'UTC'
    SET datestyle = 'ISO, YMD'
    SET intervalstyle = 'postgres'
    SET extra_float_digits = 1
AS $$
DECLARE
    v_db oid := (SELECT d.oid FROM pg_database AS d WHERE d.datname = current_database());
    v_skip text[] := '{pg_statistic,pg_statistic_ext_data,pg_largeobject,pg_largeobject_metadata,pg_subscription,'
                     'pg_authid,pg_user_mapping,pg_shdescription,pg_shseclabel,pg_replication_origin,pg_parameter_acl}';
    v_parts text;
    v jsonb;
BEGIN
    SELECT string_agg(format('SELECT %L AS c, count(*) AS n, COALESCE(array_agg(t.ctid::text || ''/'' || t.xmin::text '
                             'ORDER BY t.ctid) FILTER (WHERE age(t.xmin) <= age($1)), ''{}'') AS young FROM pg_catalog.%I AS t%s',
                             c.relname, c.relname,
                             CASE c.relname WHEN 'pg_database' THEN ' WHERE t.oid = $2'
                                            WHEN 'pg_shdepend' THEN ' WHERE t.dbid = $2'
                                            WHEN 'pg_db_role_setting' THEN ' WHERE t.setdatabase IN (0, $2)'
                                            ELSE '' END), ' UNION ALL ' ORDER BY c.relname)
      INTO v_parts
      FROM pg_class AS c
     WHERE c.relnamespace = 'pg_catalog'::regnamespace AND c.relkind = 'r'
       AND c.relname <> ALL (v_skip) AND has_table_privilege(c.oid, 'SELECT');
    EXECUTE 'SELECT jsonb_object_agg(s.c, jsonb_build_array(s.n, to_jsonb(s.young))) FROM (' || v_parts || ') AS s'
       INTO v USING p_young, v_db;
    RETURN jsonb_build_object(
        'catalogs', v,
        'unreadable', (SELECT COALESCE(jsonb_agg(c.relname ORDER BY c.relname), '[]') FROM pg_class AS c
                        WHERE c.relnamespace = 'pg_catalog'::regnamespace AND c.relkind = 'r'
                          AND c.relname <> ALL (v_skip) AND NOT has_table_privilege(c.oid, 'SELECT')),
        'roles', (SELECT md5(string_agg(r::text, ',' ORDER BY r.oid)) FROM pg_roles AS r),
        'user_mappings', (SELECT md5(COALESCE(string_agg(u::text, ',' ORDER BY u.umid), '')) FROM pg_user_mappings AS u),
        'index_flags', (SELECT COALESCE(string_agg(i.indexrelid::text || ':' || i.indisvalid || i.indisready || i.indislive,
                                                   ',' ORDER BY i.indexrelid), '')
                          FROM pg_index AS i WHERE NOT (i.indisvalid AND i.indisready AND i.indislive)),
        'queries', (SELECT md5(COALESCE(string_agg(f.name || ':' || f.sha256, ',' ORDER BY f.name COLLATE "C"), ''))
                      FROM gcos.fingerprint_queries AS f));
END
$$;

CREATE OR REPLACE FUNCTION gcos._catalog_unchanged(p_mark jsonb) RETURNS boolean
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_now jsonb;
BEGIN
    -- under REPEATABLE READ the check would read the mark's own snapshot again, blind to what others committed since
    IF p_mark IS NULL OR NOT p_mark ? 'young' OR NOT p_mark ? 'queries'
       OR current_setting('transaction_isolation') <> 'read committed'
       OR (p_mark ->> 'database')::oid IS DISTINCT FROM (SELECT d.oid FROM pg_database AS d WHERE d.datname = current_database())
       OR jsonb_array_length(p_mark -> 'unreadable') > 0 THEN
        RETURN false;
    END IF;
    v_now := gcos._catalog_state((p_mark ->> 'young')::xid);
    RETURN COALESCE(v_now -> 'unreadable' = p_mark -> 'unreadable'
       AND v_now -> 'roles' = p_mark -> 'roles'
       AND v_now -> 'user_mappings' = p_mark -> 'user_mappings'
       AND v_now -> 'index_flags' = p_mark -> 'index_flags'
       AND v_now -> 'queries' = p_mark -> 'queries'
       AND (SELECT count(*) FROM jsonb_object_keys(v_now -> 'catalogs'))
           = (SELECT count(*) FROM jsonb_object_keys(p_mark -> 'catalogs'))
       AND NOT EXISTS (SELECT FROM jsonb_each(v_now -> 'catalogs') AS n
                        WHERE CASE WHEN (p_mark -> 'catalogs' -> n.key -> 0) IS DISTINCT FROM (n.value -> 0) THEN true
                                   WHEN jsonb_array_length(n.value -> 1) = 0 THEN false
                                   WHEN jsonb_array_length(n.value -> 1) > jsonb_array_length(p_mark -> 'catalogs' -> n.key -> 1)
                                   THEN true  -- (the young rows now must be among the marked ones)
                                   ELSE NOT (p_mark -> 'catalogs' -> n.key -> 1) @> (n.value -> 1) END), false);
END
$$;

RESET ROLE;
ALTER FUNCTION gcos._kernel_tables_mark(text[]) SET standard_conforming_strings = on;
