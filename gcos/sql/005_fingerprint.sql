-- gcos schema version 5: the database fingerprint computed inside PostgreSQL (issue 9), byte for byte
-- the one gcos.fingerprint.take computes in Python, so that the kernel can compute and compare
-- fingerprints itself while Python keeps diff and its details.
--
-- API (SECURITY INVOKER, read-only, EXECUTE for gcos_admin, gcos_operator, gcos_auditor):
--
--   gcos.fingerprint(p_watch text[] DEFAULT '{}', p_exclude text[] DEFAULT '{gcos}') RETURNS jsonb
--       What take(conn, watch=p_watch, exclude_schemas=p_exclude).to_json() returns for the same state:
--       {format_version, hash, schema_hash, schema: {category: {identity: sha256 of its definition}},
--        tables: {identity: {rows, content}}, sequences: {identity: "next value"}, missing: [name...]}.
--       Watched names are resolved with the CALLER's search_path (as take does). The Python
--       Fingerprint.from_json accepts the result and recomputes both hashes from it.
--   gcos.fingerprint_at(p_watch text[], p_exclude text[], p_search_path text) RETURNS jsonb
--       The same, resolving watched names with p_search_path: for kernel functions, whose own
--       search_path is pinned, on behalf of their caller.
--
-- Semantics (the docstring of gcos/fingerprint.py is the reference):
--   * one snapshot, the caller's: the functions are STABLE, so every query inside runs in the snapshot
--     of the calling statement (inside a transaction: seeing its own uncommitted changes). As in
--     Python, catalog deparse functions (pg_get_*def) read the latest catalog, not the snapshot.
--   * settings pinned as take's _SETTINGS (and jit = off, for speed only), by SET clauses of
--     gcos.fingerprint_at (restored on exit; the set_config(..., true) inside is scoped to the function by
--     those clauses). row_security = off: a watched table the caller cannot read in full is an error,
--     never a partial hash.
--   * the catalog queries are gcos/fingerprint_sql/*.sql, loaded by `gcos install` (adapted to the server
--     version, placeholders %(exclude)s -> $1 and %(no_extensions)s -> $2) into gcos.fingerprint_queries;
--     gcos.install.require_installed refuses a database whose loaded queries differ from the package's.
--   * canonical JSON is built as text: keys escaped as RFC 8785 (gcos._jcs_string) and ordered as RFC 8785
--     orders them, by UTF-16 code units (gcos._fp_order_sql: code point order except that characters
--     U+E000..U+FFFF sort after those outside the BMP), hashes with sha256 of the UTF-8 text.
--   * sequences are residue: reported, never hashed. Sequence values are strings (bigint + increment may
--     pass 2^63 - 1: computed in numeric).
SET LOCAL ROLE gcos_owner;

-- The catalog queries, one row per gcos/fingerprint_sql/<name>.sql. Written only by gcos install (as a
-- superuser, under its lock); readable by everyone: it is the package's own text.
CREATE TABLE gcos.fingerprint_queries (
    name text PRIMARY KEY CHECK (name ~ '^[a-z][a-z_]*$'),
    category boolean NOT NULL,          -- a schema category (else a sequence state query)
    query text NOT NULL,
    sha256 text NOT NULL,
    CHECK (sha256 = pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(query, 'UTF8')), 'hex'))
);

-- SQL expression (over the text expression p_column) of its RFC 8785 JSON string: inlined into the
-- aggregating queries, so that 15k identities cost no function call each.
CREATE FUNCTION gcos._fp_json_sql(p_column text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT pg_catalog.format($sql$(CASE WHEN %1$s !~ E'[\\x01-\\x1f"\\\\]' THEN '"' || %1$s || '"'
 WHEN %1$s !~ E'[\\x01-\\x1f]' THEN '"' || replace(replace(%1$s, E'\\', E'\\\\'), '"', E'\\"') || '"'
 ELSE gcos._jcs_string(%1$s) END)$sql$, p_column)
$fn$;

-- SQL expression of p_column's RFC 8785 sort key under COLLATE "C": U+10FFFF becomes U+10FFFF U+0001 and
-- each of U+E000..U+FFFF becomes U+10FFFF and itself, so code point order of the keys is UTF-16 order of
-- the strings (surrogate pairs, i.e. characters outside the BMP, sort before U+E000).
CREATE FUNCTION gcos._fp_order_sql(p_column text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT pg_catalog.format($sql$(CASE WHEN %1$s ~ E'[\\uE000-\\U0010FFFF]'
 THEN regexp_replace(replace(%1$s, chr(1114111), chr(1114111) || chr(1)), E'([\\uE000-\\uFFFF])', chr(1114111) || E'\\1', 'g')
 ELSE %1$s END) COLLATE "C"$sql$, p_column)
$fn$;

-- Watched names -> identities in watch order (each once), their schema and table names, and the names
-- that resolve to nothing, malformed ones included (a.b.c.d, another database's table). Resolved by
-- to_regclass under p_search_path; set_config is scoped to this function by its SET clause.
CREATE FUNCTION gcos._fp_resolve(p_watch text[], p_search_path text, OUT identities text[], OUT nspnames text[],
                                 OUT relnames text[], OUT missing text[])
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_name text;
    v_oid oid;
    v_oids oid[];
    v_row record;
BEGIN
    identities := '{}'; nspnames := '{}'; relnames := '{}'; missing := '{}'; v_oids := '{}';
    IF pg_catalog.cardinality(p_watch) = 0 THEN
        RETURN;
    END IF;
    -- Under the caller's search_path: nothing but schema-qualified calls until it is pinned again.
    PERFORM pg_catalog.set_config('search_path', p_search_path, true);
    FOREACH v_name IN ARRAY p_watch LOOP
        BEGIN
            v_oid := pg_catalog.to_regclass(v_name);
        EXCEPTION WHEN syntax_error OR feature_not_supported THEN
            v_oid := NULL;
        END;
        v_oids := pg_catalog.array_append(v_oids, v_oid);
    END LOOP;
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    FOR v_row IN
        SELECT w.name, n.nspname::text AS nspname, c.relname::text AS relname,
               quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS identity
          FROM unnest(p_watch, v_oids) WITH ORDINALITY AS w(name, oid, i)
          LEFT JOIN pg_class AS c ON c.oid = w.oid
          LEFT JOIN pg_namespace AS n ON n.oid = c.relnamespace
         ORDER BY w.i
    LOOP
        IF v_row.identity IS NULL THEN
            IF NOT v_row.name = ANY (missing) THEN
                missing := array_append(missing, v_row.name);
            END IF;
        ELSIF NOT v_row.identity = ANY (identities) THEN
            identities := array_append(identities, v_row.identity);
            nspnames := array_append(nspnames, v_row.nspname);
            relnames := array_append(relnames, v_row.relname);
        END IF;
    END LOOP;
END
$$;

-- A loaded catalog query by name; refuses (55000) a database where gcos install has not loaded it.
CREATE FUNCTION gcos._fp_query(p_name text) RETURNS text
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_query text;
BEGIN
    SELECT f.query INTO v_query FROM gcos.fingerprint_queries AS f WHERE f.name = p_name;
    IF v_query IS NULL THEN
        RAISE EXCEPTION 'gcos.fingerprint: the fingerprint query % is not loaded in this database', p_name
            USING ERRCODE = '55000', HINT = 'Run gcos install as a superuser to load the fingerprint queries.';
    END IF;
    RETURN v_query;
END
$$;

-- The schema part: the canonical JSON text of {category: {identity: sha256(definition)}}, one EXECUTE
-- of each loaded category query wrapped in a string_agg of "identity":"sha256" ordered by identity
-- (p_head, from gcos._fp_schema_head). Called by gcos.fingerprint_at, under its settings.
CREATE FUNCTION gcos._fp_schema_text(p_exclude text[], p_no_extensions boolean, p_head text) RETURNS text
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_query record;
    v_objects text;
    v_parts text[] := '{}';
BEGIN
    FOR v_query IN SELECT f.name, f.query FROM gcos.fingerprint_queries AS f
                    WHERE f.category ORDER BY f.name COLLATE "C" LOOP
        EXECUTE p_head || v_query.query || E'\n) AS q(identity, definition)'
           INTO v_objects USING p_exclude, p_no_extensions;
        v_parts := array_append(v_parts, '"' || v_query.name || '":{' || coalesce(v_objects, '') || '}');
    END LOOP;
    IF cardinality(v_parts) = 0 THEN
        PERFORM gcos._fp_query('schema');  -- raises: nothing is loaded
    END IF;
    RETURN '{' || array_to_string(v_parts, ',') || '}';
END
$$;

-- The head of each category's aggregating statement: "identity":"sha256 of the definition" pairs in
-- identity order, by code point (COLLATE "C") or, with p_utf16, by UTF-16 code units (gcos._fp_order_sql).
CREATE FUNCTION gcos._fp_schema_head(p_utf16 boolean) RETURNS text
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT 'SELECT string_agg(' || gcos._fp_json_sql('q.identity')
           || $s$ || ':"' || encode(sha256(convert_to(q.definition, 'UTF8')), 'hex') || '"', ',' ORDER BY $s$
           || CASE WHEN p_utf16 THEN gcos._fp_order_sql('q.identity') ELSE 'q.identity COLLATE "C"' END
           || ') FROM ('
$fn$;

-- The schema part. Keys go in code point order first; RFC 8785's UTF-16 order differs from it only
-- around characters outside the BMP, so only when there is one are the statements run again in UTF-16
-- order (as take does).
CREATE FUNCTION gcos._fp_schema(p_exclude text[], p_no_extensions boolean) RETURNS text
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_out text;
BEGIN
    v_out := gcos._fp_schema_text(p_exclude, p_no_extensions, gcos._fp_schema_head(false));
    IF octet_length(v_out) <> length(v_out) AND v_out ~ E'[\\U00010000-\\U0010FFFF]' THEN
        v_out := gcos._fp_schema_text(p_exclude, p_no_extensions, gcos._fp_schema_head(true));
    END IF;
    RETURN v_out;
END
$$;

-- The watched tables: their row counts and content hashes (take's _table_state: the sum of
-- hashtextextended of each row's text; content = sha256 of the RFC 8785 text of {recipe, sum}), as the
-- canonical JSON text of {identity: {content, rows}} and as jsonb. Called under gcos.fingerprint_at's
-- settings (the row text depends on them).
CREATE FUNCTION gcos._fp_tables(p_identities text[], p_nspnames text[], p_relnames text[], OUT canonical text,
                                OUT tables jsonb)
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_rows bigint[] := '{}';
    v_contents text[] := '{}';
    v_count bigint;
    v_sum numeric;
    i integer;
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_identities, 1), 0) LOOP
        EXECUTE format('SELECT count(*), sum(hashtextextended((t.*)::text, 0)) FROM %I.%I AS t',
                       p_nspnames[i], p_relnames[i])
           INTO v_count, v_sum;
        v_rows := array_append(v_rows, v_count);
        v_contents := array_append(v_contents, encode(sha256(convert_to(gcos.jcs(jsonb_build_object(
            'recipe', 'count, sum(hashtextextended(row::text, 0))', 'sum', coalesce(v_sum, 0)::text)), 'UTF8')), 'hex'));
    END LOOP;
    EXECUTE 'SELECT ''{'' || coalesce(string_agg(' || gcos._fp_json_sql('q.identity')
         || $s$ || ':{"content":"' || q.content || '","rows":' || q.rows::text || '}', ',' ORDER BY $s$
         || gcos._fp_order_sql('q.identity') || $s$), '') || '}',
               coalesce(jsonb_object_agg(q.identity, jsonb_build_object('rows', q.rows, 'content', q.content)), '{}')
          FROM unnest($1, $2, $3) AS q(identity, content, rows)$s$
       INTO canonical, tables USING p_identities, v_contents, v_rows;
END
$$;

-- Each readable sequence's state: the value its next nextval returns (take's _sequence_states), by
-- pg_get_sequence_data where it exists (PostgreSQL 18+), else by pg_sequence_last_value and, for a
-- sequence without one (not called since creation, RESTART or setval(..., false)), by reading the
-- sequence itself: one small statement each (a UNION ALL of hundreds of them takes longer to plan).
CREATE FUNCTION gcos._fp_sequences(p_exclude text[], p_no_extensions boolean) RETURNS jsonb
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_out jsonb;
    v_row record;
    v_last bigint;
    v_called boolean;
    v_keys text[] := '{}';
    v_values text[] := '{}';
BEGIN
    IF to_regprocedure('pg_catalog.pg_get_sequence_data(regclass)') IS NOT NULL THEN
        EXECUTE $s$SELECT coalesce(jsonb_object_agg(q.identity, (CASE WHEN q.is_called THEN q.last_value::numeric + q.increment
                                                                 ELSE q.last_value END)::text), '{}')
                     FROM ($s$ || gcos._fp_query('sequence_state') || E'\n) AS q(identity, increment, last_value, is_called)'
           INTO v_out USING p_exclude, p_no_extensions;
        RETURN v_out;
    END IF;
    FOR v_row IN EXECUTE 'SELECT * FROM (' || gcos._fp_query('sequence_state_legacy')
                         || E'\n) AS q(identity, nspname, relname, increment, last_value)'
                 USING p_exclude, p_no_extensions LOOP
        IF v_row.last_value IS NULL THEN
            EXECUTE format('SELECT s.last_value, s.is_called FROM %I.%I AS s', v_row.nspname, v_row.relname)
               INTO v_last, v_called;
        ELSE
            v_last := v_row.last_value;
            v_called := true;
        END IF;
        v_keys := array_append(v_keys, v_row.identity);
        v_values := array_append(v_values, (v_last::numeric + CASE WHEN v_called THEN v_row.increment ELSE 0 END)::text);
    END LOOP;
    RETURN jsonb_object(v_keys, v_values);
END
$$;

-- The fingerprint (see the header), watched names resolved with p_search_path.
CREATE FUNCTION gcos.fingerprint_at(p_watch text[], p_exclude text[], p_search_path text) RETURNS jsonb
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
    SET jit = off  -- beyond take's settings, for speed only: compiling the big statements costs more than it saves
AS $$
DECLARE
    v_watched record;
    v_no_extensions boolean;
    v_schema text;
    v_schema_hash text;
    v_tables record;
BEGIN
    IF p_watch IS NULL OR p_exclude IS NULL OR p_search_path IS NULL
       OR array_position(p_watch, NULL) IS NOT NULL OR array_position(p_exclude, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'gcos.fingerprint: watch and exclude are arrays of names without NULLs, and the search_path is text'
            USING ERRCODE = '22023';
    END IF;
    SELECT * INTO v_watched FROM gcos._fp_resolve(p_watch, p_search_path);
    v_no_extensions := NOT EXISTS (SELECT FROM pg_extension AS x WHERE x.extname <> 'plpgsql');
    v_schema := gcos._fp_schema(p_exclude, v_no_extensions);
    v_schema_hash := encode(sha256(convert_to(v_schema, 'UTF8')), 'hex');
    SELECT * INTO v_tables FROM gcos._fp_tables(v_watched.identities, v_watched.nspnames, v_watched.relnames);
    RETURN jsonb_build_object(
        'format_version', 1,
        'hash', encode(sha256(convert_to('{"format_version":1,"schema_hash":"' || v_schema_hash || '","tables":'
                                         || v_tables.canonical || '}', 'UTF8')), 'hex'),
        'schema_hash', v_schema_hash,
        'schema', v_schema::jsonb,
        'tables', v_tables.tables,
        'sequences', gcos._fp_sequences(p_exclude, v_no_extensions),
        'missing', to_jsonb(v_watched.missing));
END
$$;

-- The fingerprint with watched names resolved under the caller's search_path. The one gcos function
-- without a pinned search_path: pinning it would hide the caller's. Its body only calls schema-qualified
-- functions with arguments of their exact types, so the caller's path cannot redirect it.
CREATE FUNCTION gcos.fingerprint(p_watch text[] DEFAULT '{}', p_exclude text[] DEFAULT '{gcos}') RETURNS jsonb
    LANGUAGE sql STABLE SECURITY INVOKER
AS $$ SELECT gcos.fingerprint_at(p_watch, p_exclude, pg_catalog.current_setting('search_path')) $$;

REVOKE ALL ON gcos.fingerprint_queries FROM PUBLIC;
GRANT SELECT ON gcos.fingerprint_queries TO PUBLIC;
REVOKE ALL ON FUNCTION gcos._fp_json_sql(text), gcos._fp_order_sql(text), gcos._fp_query(text),
    gcos._fp_resolve(text[], text), gcos._fp_schema_head(boolean), gcos._fp_schema_text(text[], boolean, text),
    gcos._fp_schema(text[], boolean),
    gcos._fp_tables(text[], text[], text[]), gcos._fp_sequences(text[], boolean),
    gcos.fingerprint_at(text[], text[], text), gcos.fingerprint(text[], text[]) FROM PUBLIC;
-- The helpers run with the caller's rights too (SECURITY INVOKER), so callers need them; all read-only.
GRANT EXECUTE ON FUNCTION gcos._fp_json_sql(text), gcos._fp_order_sql(text), gcos._fp_query(text),
    gcos._fp_resolve(text[], text), gcos._fp_schema_head(boolean), gcos._fp_schema_text(text[], boolean, text),
    gcos._fp_schema(text[], boolean),
    gcos._fp_tables(text[], text[], text[]), gcos._fp_sequences(text[], boolean),
    gcos.fingerprint_at(text[], text[], text), gcos.fingerprint(text[], text[])
    TO gcos_admin, gcos_operator, gcos_auditor;
