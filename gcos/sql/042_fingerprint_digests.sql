-- gcos schema version 42: per-category digests of the fingerprint, computed by PostgreSQL (issue 13 item 1),
-- and the categories the fingerprint was blind to (item 4: role, database, collation, cast, operator,
-- text_search, foreign_server, publication; their queries are gcos/fingerprint_sql/<name>.sql, loaded by
-- gcos install like the others).
--
--   gcos.fingerprint_at / gcos.fingerprint now also return "digests": {category: sha256 of the canonical JSON
--       text of that category's {identity: sha256} map}, so two fingerprints compare category by category
--       from 64 hex characters each; hash and schema_hash are unchanged (the same canonical text as before).
--   gcos.fingerprint_digests(watch, exclude) RETURNS jsonb: the fingerprint WITHOUT the object map (hash,
--       schema_hash, digests, tables, sequences, missing): what a client holds to compare (a few kilobytes
--       whatever the size of the schema).
--   gcos.fingerprint_objects(category, exclude) RETURNS TABLE (identity, sha256): one category's objects,
--       fetched only to name what differs in a category whose digest changed.
--   gcos.footprint compares only the categories whose digests differ (both fingerprints carrying digests);
--       a fingerprint recorded before 042 has none and is compared object by object as before, except in the
--       categories it lacks altogether (not measured then): an upgrade is not drift.
SET LOCAL ROLE gcos_owner;

-- Each schema category's objects as canonical JSON members ("identity":"sha256",...), by category name.
CREATE FUNCTION gcos._fp_schema_parts(p_exclude text[], p_no_extensions boolean, p_head text)
    RETURNS TABLE (category text, objects text)
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_query record;
BEGIN
    FOR v_query IN SELECT f.name, f.query FROM gcos.fingerprint_queries AS f
                    WHERE f.category ORDER BY f.name COLLATE "C" LOOP
        category := v_query.name;
        EXECUTE p_head || v_query.query || E'\n) AS q(identity, definition)'
           INTO objects USING p_exclude, p_no_extensions;
        objects := coalesce(objects, '');
        RETURN NEXT;
    END LOOP;
    IF NOT FOUND THEN
        PERFORM gcos._fp_query('schema');  -- raises: nothing is loaded
    END IF;
END
$$;

-- The schema part as canonical JSON text (as gcos._fp_schema writes it) and each category's digest.
CREATE FUNCTION gcos._fp_schema_digested(p_exclude text[], p_no_extensions boolean, OUT schema text, OUT digests jsonb)
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_utf16 boolean := false;
BEGIN
    LOOP
        SELECT '{' || string_agg('"' || p.category || '":{' || p.objects || '}', ',' ORDER BY p.category COLLATE "C") || '}',
               jsonb_object_agg(p.category, encode(sha256(convert_to('{' || p.objects || '}', 'UTF8')), 'hex'))
          INTO schema, digests
          FROM gcos._fp_schema_parts(p_exclude, p_no_extensions, gcos._fp_schema_head(v_utf16)) AS p;
        -- RFC 8785's UTF-16 key order differs from code point order only around characters outside the BMP
        EXIT WHEN v_utf16 OR octet_length(schema) = length(schema) OR schema !~ E'[\\U00010000-\\U0010FFFF]';
        v_utf16 := true;
    END LOOP;
END
$$;

-- The fingerprint (005's semantics), with the object map only when p_objects.
CREATE FUNCTION gcos._fp_take(p_watch text[], p_exclude text[], p_search_path text, p_objects boolean) RETURNS jsonb
    LANGUAGE plpgsql STABLE SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
    SET datestyle = 'ISO, YMD'
    SET intervalstyle = 'postgres'
    SET timezone = 'UTC'
    SET extra_float_digits = 1
    SET bytea_output = 'hex'
    SET lc_monetary = 'C'
    SET quote_all_identifiers = off
    SET standard_conforming_strings = on
    SET row_security = off
    SET join_collapse_limit = 1
    SET from_collapse_limit = 1
    SET jit = off
AS $$
DECLARE
    v_watched record;
    v_no_extensions boolean;
    v_schema record;
    v_schema_hash text;
    v_tables record;
    v_out jsonb;
BEGIN
    IF p_watch IS NULL OR p_exclude IS NULL OR p_search_path IS NULL OR p_objects IS NULL
       OR array_position(p_watch, NULL) IS NOT NULL OR array_position(p_exclude, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'gcos.fingerprint: watch and exclude are arrays of names without NULLs, and the search_path is text'
            USING ERRCODE = '22023';
    END IF;
    SELECT * INTO v_watched FROM gcos._fp_resolve(p_watch, p_search_path);
    v_no_extensions := NOT EXISTS (SELECT FROM pg_extension AS x WHERE x.extname <> 'plpgsql');
    SELECT * INTO v_schema FROM gcos._fp_schema_digested(p_exclude, v_no_extensions);
    v_schema_hash := encode(sha256(convert_to(v_schema.schema, 'UTF8')), 'hex');
    SELECT * INTO v_tables FROM gcos._fp_tables(v_watched.identities, v_watched.nspnames, v_watched.relnames);
    v_out := jsonb_build_object(
        'format_version', 1,
        'hash', encode(sha256(convert_to('{"format_version":1,"schema_hash":"' || v_schema_hash || '","tables":'
                                         || v_tables.canonical || '}', 'UTF8')), 'hex'),
        'schema_hash', v_schema_hash,
        'digests', v_schema.digests,
        'tables', v_tables.tables,
        'sequences', gcos._fp_sequences(p_exclude, v_no_extensions),
        'missing', to_jsonb(v_watched.missing));
    IF p_objects THEN
        v_out := v_out || jsonb_build_object('schema', v_schema.schema::jsonb);
    END IF;
    RETURN v_out;
END
$$;

-- 005's function, now with digests beside the object map.
CREATE OR REPLACE FUNCTION gcos.fingerprint_at(p_watch text[], p_exclude text[], p_search_path text) RETURNS jsonb
    LANGUAGE sql STABLE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$ SELECT gcos._fp_take(p_watch, p_exclude, p_search_path, true) $$;

-- The fingerprint without its object map, watched names resolved under the caller's search_path (see
-- gcos.fingerprint: no pinned search_path, schema-qualified calls with exact argument types only).
CREATE FUNCTION gcos.fingerprint_digests(p_watch text[] DEFAULT '{}', p_exclude text[] DEFAULT '{gcos}') RETURNS jsonb
    LANGUAGE sql STABLE SECURITY INVOKER
AS $$ SELECT gcos._fp_take(p_watch, p_exclude, pg_catalog.current_setting('search_path'), false) $$;

-- One category's objects and the sha256 of each definition, in identity order: to name what changed in a
-- category whose digest differs.
CREATE FUNCTION gcos.fingerprint_objects(p_category text, p_exclude text[] DEFAULT '{gcos}')
    RETURNS TABLE (identity text, sha256 text)
    LANGUAGE plpgsql STABLE SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
    SET datestyle = 'ISO, YMD'
    SET intervalstyle = 'postgres'
    SET timezone = 'UTC'
    SET extra_float_digits = 1
    SET bytea_output = 'hex'
    SET lc_monetary = 'C'
    SET quote_all_identifiers = off
    SET standard_conforming_strings = on
    SET row_security = off
    SET join_collapse_limit = 1
    SET from_collapse_limit = 1
    SET jit = off
AS $$
BEGIN
    IF p_category IS NULL OR p_exclude IS NULL OR array_position(p_exclude, NULL) IS NOT NULL
       OR NOT EXISTS (SELECT FROM gcos.fingerprint_queries AS f WHERE f.name = p_category AND f.category) THEN
        RAISE EXCEPTION 'gcos.fingerprint_objects: % is not a fingerprint category', coalesce(p_category, 'NULL')
            USING ERRCODE = '22023';
    END IF;
    RETURN QUERY EXECUTE 'SELECT q.identity, encode(sha256(convert_to(q.definition, ''UTF8'')), ''hex'') FROM ('
                         || gcos._fp_query(p_category) || E'\n) AS q(identity, definition) ORDER BY q.identity COLLATE "C"'
        USING p_exclude, NOT EXISTS (SELECT FROM pg_extension AS x WHERE x.extname <> 'plpgsql');
END
$$;

-- 009's footprint, comparing object by object only the categories whose digests differ (or that a fingerprint
-- lacks a digest of), and only those both maps measured.
CREATE OR REPLACE FUNCTION gcos.footprint(p_before jsonb, p_after jsonb, p_probe_before jsonb, p_probe_after jsonb)
    RETURNS jsonb
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    WITH cats AS (
        SELECT c FROM pg_catalog.jsonb_object_keys(COALESCE(p_before -> 'schema', '{}')) AS k(c)
        UNION SELECT c FROM pg_catalog.jsonb_object_keys(COALESCE(p_after -> 'schema', '{}')) AS k(c)
    ), changed AS (  -- a category one map lacks altogether was not measured then (recorded before it existed)
        SELECT cats.c FROM cats
         WHERE (pg_catalog.jsonb_typeof(p_before -> 'schema') IS DISTINCT FROM 'object' OR (p_before -> 'schema') ? cats.c)
           AND (pg_catalog.jsonb_typeof(p_after -> 'schema') IS DISTINCT FROM 'object' OR (p_after -> 'schema') ? cats.c)
           AND ((p_before -> 'digests' -> cats.c) IS NULL
                OR (p_before -> 'digests' -> cats.c) IS DISTINCT FROM (p_after -> 'digests' -> cats.c))
    ), objects AS (
        SELECT cats.c AS category, COALESCE(x.bkey, x.akey) AS identity,
               CASE WHEN x.bkey IS NULL THEN 'added' WHEN x.akey IS NULL THEN 'removed' ELSE 'changed' END AS change
          FROM changed AS cats
          CROSS JOIN LATERAL (
              SELECT b.key AS bkey, a.key AS akey, b.value AS bval, a.value AS aval
                FROM pg_catalog.jsonb_each(COALESCE(p_before -> 'schema' -> cats.c, '{}')) AS b
                FULL JOIN pg_catalog.jsonb_each(COALESCE(p_after -> 'schema' -> cats.c, '{}')) AS a ON a.key = b.key
          ) AS x
         WHERE x.bval IS DISTINCT FROM x.aval
    ), counters AS (
        SELECT COALESCE(a.key, b.key) AS identity,
               COALESCE((a.value ->> 0)::bigint, 0) - COALESCE((b.value ->> 0)::bigint, 0) AS inserted,
               COALESCE((a.value ->> 1)::bigint, 0) - COALESCE((b.value ->> 1)::bigint, 0) AS updated,
               COALESCE((a.value ->> 2)::bigint, 0) - COALESCE((b.value ->> 2)::bigint, 0) AS deleted
          FROM pg_catalog.jsonb_each(COALESCE(p_probe_after -> 'rows', '{}')) AS a
          FULL JOIN pg_catalog.jsonb_each(COALESCE(p_probe_before -> 'rows', '{}')) AS b ON b.key = a.key
    )
    SELECT pg_catalog.jsonb_build_object(
        'objects', (SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                                        'category', o.category, 'identity', o.identity, 'change', o.change)
                                    ORDER BY o.category, o.identity COLLATE "C"), '[]') FROM objects AS o),
        'new_tables', (SELECT COALESCE(pg_catalog.jsonb_agg(o.identity ORDER BY o.identity COLLATE "C"), '[]')
                         FROM objects AS o
                        WHERE o.category = 'relation' AND o.change = 'added'
                          AND p_probe_after -> 'kinds' ->> o.identity IN ('r', 'p')),
        'dropped_tables', (SELECT COALESCE(pg_catalog.jsonb_agg(o.identity ORDER BY o.identity COLLATE "C"), '[]')
                             FROM objects AS o
                            WHERE o.category = 'relation' AND o.change = 'removed'
                              AND p_probe_before -> 'kinds' ->> o.identity IN ('r', 'p', 'f')),
        'rows', (SELECT COALESCE(pg_catalog.jsonb_object_agg(c.identity, pg_catalog.jsonb_build_object(
                                     'inserted', c.inserted, 'updated', c.updated, 'deleted', c.deleted)), '{}')
                   FROM counters AS c WHERE c.inserted > 0 OR c.updated > 0 OR c.deleted > 0),
        'rewritten', (SELECT COALESCE(pg_catalog.jsonb_agg(b.key ORDER BY b.key COLLATE "C"), '[]')
                        FROM pg_catalog.jsonb_each(COALESCE(p_probe_before -> 'files', '{}')) AS b
                        JOIN pg_catalog.jsonb_each(COALESCE(p_probe_after -> 'files', '{}')) AS a ON a.key = b.key
                       WHERE a.value <> b.value),
        'comments_changed', (SELECT COALESCE(pg_catalog.jsonb_agg(k ORDER BY k COLLATE "C"), '[]') FROM (
                                 SELECT COALESCE(b.key, a.key) AS k
                                   FROM pg_catalog.jsonb_each(COALESCE(p_probe_before -> 'comments', '{}')) AS b
                                   FULL JOIN pg_catalog.jsonb_each(COALESCE(p_probe_after -> 'comments', '{}')) AS a
                                     ON a.key = b.key
                                  WHERE a.value IS DISTINCT FROM b.value) AS c),
        'owners', COALESCE(p_probe_before -> 'owners', '{}') || COALESCE(p_probe_after -> 'owners', '{}'),
        'kinds', COALESCE(p_probe_before -> 'kinds', '{}') || COALESCE(p_probe_after -> 'kinds', '{}'))
$$;

REVOKE ALL ON FUNCTION gcos._fp_schema_parts(text[], boolean, text), gcos._fp_schema_digested(text[], boolean),
    gcos._fp_take(text[], text[], text, boolean), gcos.fingerprint_digests(text[], text[]),
    gcos.fingerprint_objects(text, text[]) FROM PUBLIC;
-- Invoker helpers like 005's: whoever may call gcos.fingerprint_at may call them; all read-only.
GRANT EXECUTE ON FUNCTION gcos._fp_schema_parts(text[], boolean, text), gcos._fp_schema_digested(text[], boolean),
    gcos._fp_take(text[], text[], text, boolean) TO gcos_admin, gcos_operator, gcos_auditor, gcos_kernel;
GRANT EXECUTE ON FUNCTION gcos.fingerprint_digests(text[], text[]), gcos.fingerprint_objects(text, text[])
    TO gcos_admin, gcos_operator, gcos_auditor;
