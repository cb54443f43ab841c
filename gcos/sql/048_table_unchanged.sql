-- gcos schema version 48: a rehearsal proves its watched tables unchanged instead of re-reading them (issue 13 item 2).
--
-- 047 proves the catalogs unchanged between the mark (before the entry fingerprint) and after_rollback/exit, but
-- still re-hashes every watched table (gcos._fp_tables: count and sum(hashtextextended(row::text)) per table, ~0.9 s
-- a pass for a 1,043,000-row table). The same MVCC argument holds for a table's rows: at the mark, per watched table
-- (its inheritance children and partitions included, as the hash reads them), the row count and the visible row
-- versions younger than the mark snapshot's xmin ("tableoid/ctid/xmin"; the snapshot's xmin counts the marking
-- transaction's own xid, so its own rows are young too). Later, the same count and young rows all among the marked
-- ones => the same row versions (every older visible row was visible at the mark) => the same row texts, provided
-- the catalogs are proved unchanged too (a row's text depends on its types, enum labels, domains, output
-- functions): only then is a table's {rows, content} taken from the entry. A scan reads xmin and ctid without
-- forming the row's text: ~10x cheaper than the hash. Anything else falls back to measuring: a view, a foreign
-- table or partition, a table the kernel cannot read or scan, more than 5,000 young rows, a table missing at
-- either end, a count that differs from the entry's.
--
--   gcos._table_state(nsp, rel, young): [count, sorted young row versions] of one table, or NULL (unprovable).
--   gcos._kernel_tables_mark(watch): the mark for the watched tables, as the kernel (the tables' owner).
--   gcos._fp_tables_text(tables): the canonical text of {identity: {rows, content}} (as gcos._fp_tables writes it).
--   gcos._fp_take_proved(watch, exclude, search_path, known, tables_mark): 047's gcos._fp_take_over, the tables
--       whose proof holds taken from known ("tables_proved" names them), the others measured.
--   gcos._kernel_digests_proved(watch, known, tables_mark): that, as the kernel.
--   gcos._kernel_fingerprint_proved (047): uses it when the catalog mark carries "tables".
--   gcos._rehearse_measured (047): the tables' mark taken with the catalogs', before the entry fingerprint.
-- The rehearsal record keeps its shape: "established" still says how the schema part was established; a table's
-- {rows, content} is the entry's only when proved, so the hashes read the same either way.
SET LOCAL ROLE gcos_owner;

-- [count, sorted "tableoid/ctid/xmin" of the visible rows not older than p_young] of p_nsp.p_rel with its inheritance
-- children, or NULL where no proof is possible. STABLE: it reads its caller's snapshot.
CREATE FUNCTION gcos._table_state(p_nsp text, p_rel text, p_young xid) RETURNS jsonb
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp SET row_security = off
AS $$
DECLARE
    v_count bigint;
    v_young text[];
BEGIN
    -- heap tables all the way down only: a view or a foreign table (or partition) has no row versions to prove
    IF p_young IS NULL OR NOT EXISTS (
           SELECT FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
            WHERE n.nspname = p_nsp AND c.relname = p_rel AND c.relkind IN ('r', 'p'))
       OR EXISTS (
           WITH RECURSIVE tree(oid) AS (
               SELECT c.oid FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
                WHERE n.nspname = p_nsp AND c.relname = p_rel
               UNION
               SELECT i.inhrelid FROM pg_inherits AS i JOIN tree AS t ON i.inhparent = t.oid)
           SELECT FROM tree AS t JOIN pg_class AS c ON c.oid = t.oid WHERE c.relkind NOT IN ('r', 'p')) THEN
        RETURN NULL;
    END IF;
    EXECUTE format('SELECT count(*), array_agg(t.tableoid::text || ''/'' || t.ctid::text || ''/'' || t.xmin::text) '
                   'FILTER (WHERE age(t.xmin) <= age($1)) FROM %I.%I AS t', p_nsp, p_rel)
       INTO v_count, v_young USING p_young;
    IF cardinality(v_young) > 5000 THEN  -- (a long transaction elsewhere: the comparison would grow quadratic)
        RETURN NULL;
    END IF;
    RETURN jsonb_build_array(v_count, to_jsonb(ARRAY(SELECT y FROM unnest(v_young) AS y ORDER BY y)));
EXCEPTION
    WHEN OTHERS THEN  -- (not readable as the kernel, row security forced on it...): measured instead, fail safe
        RETURN NULL;
END
$$;

-- The watched tables' mark, taken as the kernel: {young, tables: {identity: state or null}}. Taken before the entry
-- fingerprint it vouches for (what commits in between shows as young rows the mark does not hold).
CREATE FUNCTION gcos._kernel_tables_mark(p_watch text[]) RETURNS jsonb
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_young xid := (pg_snapshot_xmin(pg_current_snapshot())::text::numeric % 4294967296)::text::xid;
    v_watched record;
    v jsonb := '{}';
    i integer;
BEGIN
    SELECT * INTO v_watched FROM gcos._fp_resolve(COALESCE(p_watch, '{}'), 'public, pg_temp');
    FOR i IN 1 .. COALESCE(cardinality(v_watched.identities), 0) LOOP
        v := v || jsonb_build_object(v_watched.identities[i],
                                     gcos._table_state(v_watched.nspnames[i], v_watched.relnames[i], v_young));
    END LOOP;
    RETURN jsonb_build_object('young', v_young::text, 'tables', v);
END
$$;

-- The canonical text of {identity: {rows, content}}: gcos._fp_tables's own expression, over a jsonb object.
CREATE FUNCTION gcos._fp_tables_text(p_tables jsonb) RETURNS text
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v text;
BEGIN
    EXECUTE 'SELECT ''{'' || coalesce(string_agg(' || gcos._fp_json_sql('q.identity')
         || $s$ || ':{"content":"' || q.content || '","rows":' || q.rows::text || '}', ',' ORDER BY $s$
         || gcos._fp_order_sql('q.identity') || $s$), '') || '}'
          FROM (SELECT e.key AS identity, e.value ->> 'content' AS content, (e.value ->> 'rows')::bigint AS rows
                  FROM jsonb_each($1) AS e) AS q$s$
       INTO v USING COALESCE(p_tables, '{}');
    RETURN v;
END
$$;

-- 047's gcos._fp_take_over, each watched table whose proof holds against p_tables_mark taken from p_known (the
-- catalogs must be proved unchanged by the caller: the row texts depend on them); the others measured now.
CREATE FUNCTION gcos._fp_take_proved(p_watch text[], p_exclude text[], p_search_path text, p_known jsonb,
                                     p_tables_mark jsonb) RETURNS jsonb
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
    v_measured record;
    v_young xid := (p_tables_mark ->> 'young')::xid;
    v_marked jsonb;
    v_now jsonb;
    v_known jsonb;
    v_proved text[] := '{}';
    v_ids text[] := '{}';
    v_nsps text[] := '{}';
    v_rels text[] := '{}';
    v_tables jsonb := '{}';
    i integer;
BEGIN
    IF p_known ->> 'schema_hash' IS NULL OR jsonb_typeof(p_known -> 'digests') IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'gcos._fp_take_proved: the known fingerprint has no schema_hash and digests' USING ERRCODE = '22023';
    END IF;
    SELECT * INTO v_watched FROM gcos._fp_resolve(p_watch, p_search_path);
    FOR i IN 1 .. COALESCE(cardinality(v_watched.identities), 0) LOOP
        v_marked := p_tables_mark -> 'tables' -> v_watched.identities[i];
        v_known := p_known -> 'tables' -> v_watched.identities[i];
        IF jsonb_typeof(v_marked) = 'array' AND jsonb_typeof(v_known) = 'object' AND v_known -> 'rows' = v_marked -> 0 THEN
            v_now := gcos._table_state(v_watched.nspnames[i], v_watched.relnames[i], v_young);
            -- the same count, and the young rows now all among the marked ones
            IF v_now -> 0 = v_marked -> 0 AND NOT EXISTS (SELECT jsonb_array_elements_text(v_now -> 1)
                                                          EXCEPT SELECT jsonb_array_elements_text(v_marked -> 1)) THEN
                v_proved := v_proved || v_watched.identities[i];
                v_tables := v_tables || jsonb_build_object(v_watched.identities[i], v_known);
                CONTINUE;
            END IF;
        END IF;
        v_ids := v_ids || v_watched.identities[i];
        v_nsps := v_nsps || v_watched.nspnames[i];
        v_rels := v_rels || v_watched.relnames[i];
    END LOOP;
    IF cardinality(v_ids) > 0 THEN
        SELECT * INTO v_measured FROM gcos._fp_tables(v_ids, v_nsps, v_rels);
        v_tables := v_tables || v_measured.tables;
    END IF;
    RETURN jsonb_build_object(
        'format_version', 1,
        'hash', encode(sha256(convert_to('{"format_version":1,"schema_hash":"' || (p_known ->> 'schema_hash')
                                         || '","tables":' || gcos._fp_tables_text(v_tables) || '}', 'UTF8')), 'hex'),
        'schema_hash', p_known ->> 'schema_hash',
        'digests', p_known -> 'digests',
        'tables', v_tables,
        'tables_proved', to_jsonb(v_proved),
        'sequences', gcos._fp_sequences(p_exclude, NOT EXISTS (SELECT FROM pg_extension AS x WHERE x.extname <> 'plpgsql')),
        'missing', to_jsonb(v_watched.missing));
END
$$;

-- As gcos._kernel_digests_over (047), the proved tables taken from p_known.
CREATE FUNCTION gcos._kernel_digests_proved(p_watch text[], p_known jsonb, p_tables_mark jsonb) RETURNS jsonb
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET standard_conforming_strings = on
AS $$ SELECT gcos._fp_take_proved(COALESCE(p_watch, '{}'), '{gcos}', 'public, pg_temp', p_known, p_tables_mark) $$;

-- 047's gcos._kernel_fingerprint_proved; where the mark carries the tables' mark (048), the tables proved too.
CREATE OR REPLACE FUNCTION gcos._kernel_fingerprint_proved(p_watch text[], p_against jsonb, p_mark jsonb) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v jsonb;
BEGIN
    IF p_mark IS NOT NULL AND gcos._catalog_unchanged(p_mark) THEN
        v := CASE WHEN jsonb_typeof(p_mark -> 'tables') = 'object'
                  THEN gcos._kernel_digests_proved(p_watch, p_against, p_mark -> 'tables')
                  ELSE gcos._kernel_digests_over(p_watch, p_against) END;
        IF (v ->> 'hash') IS NOT DISTINCT FROM (p_against ->> 'hash') THEN
            RETURN v || jsonb_build_object('established', 'proved unchanged');
        END IF;
    END IF;
    RETURN gcos._kernel_fingerprint_vs(p_watch, p_against) || jsonb_build_object('established', 'measured');
END
$$;

-- 047's gcos._rehearse_measured; the watched tables' mark taken with the catalogs' (048).
CREATE OR REPLACE FUNCTION gcos._rehearse_measured(p_spec_hash text, p_plan_hash text, p_trace_id text DEFAULT NULL) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_started timestamptz := pg_catalog.clock_timestamp();
    v_spec jsonb := (SELECT s.document FROM gcos.specs AS s WHERE s.spec_hash = p_spec_hash);
    v_plan jsonb := (SELECT p.document FROM gcos.plans AS p WHERE p.plan_hash = p_plan_hash);
    v_step text;
    v_watch text[];
    v_run text;
    v jsonb := '{}';
    v_exit jsonb;
    v_mark jsonb;
    r record;
    v_outcome text;
    v_message text;
    v_residue record;
    v_sequences jsonb := '[]';
    v_first jsonb;
    v_session jsonb := '[]';
    v_write record;
    v_payload jsonb;
    v_exc jsonb := gcos._exceptions_in_force(p_spec_hash, NULL, NULL);
BEGIN
    PERFORM gcos._kernel_caller();
    IF v_spec IS NULL OR v_plan IS NULL THEN
        PERFORM gcos._invalid('gcos: the kernel rehearses registered specs and plans only; register them first (gcos rehearse does)');
    END IF;
    v_run := gcos.run_id(p_spec_hash, p_plan_hash, 'rehearse', (SELECT h.seq FROM gcos.ledger_head AS h WHERE h.singleton));
    v_step := v_spec ->> 'id';
    IF NOT v_plan -> 'steps' ? v_step THEN
        PERFORM gcos._invalid(pg_catalog.format('gcos: step %s is not in plan %s', v_step, v_plan ->> 'id'));
    END IF;
    PERFORM gcos._kernel_preflight();
    v_watch := ARRAY(SELECT pg_catalog.jsonb_array_elements_text(COALESCE(v_spec -> 'watch', '[]')));
    v := pg_catalog.jsonb_build_object('reverify', gcos._waive(gcos._kernel_checks(v_spec -> 'reverify'), 'reverify', v_exc,
                                                               pg_catalog.jsonb_array_length(COALESCE(v_spec -> 'reverify', '[]'))));
    v_first := (SELECT e.value FROM pg_catalog.jsonb_array_elements(v -> 'reverify') AS e
                 WHERE NOT (e.value ->> 'ok')::boolean AND NOT e.value ? 'waived' LIMIT 1);
    IF v_first IS NOT NULL THEN
        v_outcome := 'reverify_mismatch';
        v_message := pg_catalog.format('re-verify of %s failed: %L expected %s, got %s; the live world is not what the spec expects',
                                       v_step, v_first ->> 'name', v_first -> 'expected',
                                       COALESCE('error: ' || (v_first ->> 'error'), (v_first -> 'actual')::text));
    ELSE
        -- before the entry: what commits in between is seen as a change (the catalogs', then the watched tables')
        v_mark := gcos._catalog_mark();
        v_mark := v_mark || pg_catalog.jsonb_build_object('tables', gcos._kernel_tables_mark(v_watch));
        v := v || pg_catalog.jsonb_build_object('entry', gcos._kernel_fingerprint(v_watch));
        v := v || gcos._rehearse_inside(v_spec, v_plan, (v -> 'entry') || pg_catalog.jsonb_build_object('catalog_mark', v_mark), v_run);
        IF v ? 'success' THEN  -- the checks ran (a failed mutation has none)
            v := v || pg_catalog.jsonb_build_object(
                'stops', gcos._waive(v -> 'stops', 'stop', v_exc, pg_catalog.jsonb_array_length(COALESCE(v_spec -> 'stop', '[]'))),
                'success', gcos._waive(v -> 'success', 'success', v_exc, pg_catalog.jsonb_array_length(COALESCE(v_spec -> 'success', '[]'))));
        END IF;
        SELECT * INTO r FROM gcos._rehearsal_outcome(v_step, v);
        v_exit := gcos._kernel_fingerprint_proved(v_watch, v -> 'entry', v_mark);
        SELECT * INTO v_residue FROM gcos._rehearsal_residue(v_step, v, v_exit, r.outcome, r.message);
        v_outcome := v_residue.outcome;
        v_message := v_residue.message;
        v_sequences := v_residue.sequences;
        v_session := v_residue.session;
    END IF;
    v_payload := pg_catalog.jsonb_build_object(
        'format_version', 1, 'kernel', true, 'run_id', v_run, 'step', v_step, 'ref', 'step-' || (v_spec ->> 'order'),
        'plan_id', v_plan ->> 'id', 'plan_hash', p_plan_hash, 'outcome', v_outcome, 'message', v_message,
        'fingerprints', pg_catalog.jsonb_build_object(
            'entry', gcos._fp_summary(v -> 'entry'), 'inside', gcos._fp_summary(v -> 'inside'),
            'after_rollback', gcos._fp_summary_established(v -> 'after_rollback'),
            'exit', gcos._fp_summary_established(v_exit)),
        'footprint', CASE WHEN v ? 'footprint' THEN pg_catalog.jsonb_build_object(
            'new_tables', v -> 'footprint' -> 'new_tables', 'dropped_tables', v -> 'footprint' -> 'dropped_tables',
            'row_deltas', v -> 'footprint' -> 'rows') END,
        'allow_violations', COALESCE(v -> 'violations', '[]'),
        'checks', pg_catalog.jsonb_build_object('reverify', v -> 'reverify', 'stop', COALESCE(v -> 'stops', '[]'),
                                                'success', COALESCE(v -> 'success', '[]')),
        'differences', CASE WHEN v_exit IS NULL THEN '[]'::jsonb ELSE gcos._fp_differences(v -> 'entry', v_exit) END,
        'residue', pg_catalog.jsonb_build_object('sequences', v_sequences, 'session', v_session),
        'exceptions', gcos._waivers(v -> 'reverify', 'reverify') || gcos._waivers(v -> 'stops', 'stop')
                      || gcos._waivers(v -> 'success', 'success'),
        'duration_us', (EXTRACT(epoch FROM pg_catalog.clock_timestamp() - v_started) * 1000000)::bigint);
    SELECT * INTO v_write FROM gcos._ledger_write('rehearsal', v_step, p_spec_hash, p_trace_id, NULL, v_payload);
    RETURN v_payload || pg_catalog.jsonb_build_object('ledger_seq', v_write.seq, 'ledger_hash', v_write.hash);
END
$$;

-- ----------------------------------------------------------------------------------- ownership and grants

RESET ROLE;
ALTER FUNCTION gcos._kernel_tables_mark(text[]) OWNER TO gcos_kernel;  -- reads the tables as the kernel, like
ALTER FUNCTION gcos._kernel_digests_proved(text[], jsonb, jsonb) OWNER TO gcos_kernel;  -- _kernel_digests_over
REVOKE ALL ON FUNCTION gcos._table_state(text, text, xid), gcos._kernel_tables_mark(text[]), gcos._fp_tables_text(jsonb),
    gcos._fp_take_proved(text[], text[], text, jsonb, jsonb), gcos._kernel_digests_proved(text[], jsonb, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gcos._table_state(text, text, xid), gcos._fp_tables_text(jsonb),
    gcos._fp_take_proved(text[], text[], text, jsonb, jsonb) TO gcos_kernel;
GRANT EXECUTE ON FUNCTION gcos._kernel_tables_mark(text[]), gcos._kernel_digests_proved(text[], jsonb, jsonb) TO gcos_owner;
