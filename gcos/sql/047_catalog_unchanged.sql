-- gcos schema version 47: a rehearsal proves the catalogs unchanged instead of re-reading them (issue 13 item 2).
--
-- Of a rehearsal's four fingerprints, after_rollback and exit are only compared with the entry's. MVCC proves
-- most of that cheaply: a mark taken just before the entry fingerprint holds each catalog's row count and the
-- row versions then visible that are younger than the mark snapshot's xmin (ctid/xmin; usually none). Later, a
-- catalog whose count is the same and whose young rows are all among the marked ones holds the same row versions
-- (every older visible row was visible at the mark: its transaction had finished before the snapshot), so the
-- same content, except for fields PostgreSQL updates in place (no new version): of those the fingerprint reads
-- only pg_index's indisvalid/indisready/indislive (index_set_state_flags), folded into the mark. Catalogs the
-- role cannot read stand for themselves through the views the fingerprint reads (pg_authid: pg_roles;
-- pg_user_mapping: pg_user_mappings); pg_statistic*, pg_largeobject* and pg_subscription are read by no category.
-- When in doubt the answer is "changed" and the fingerprint is taken in full, as 043 does.
--
--   gcos._catalog_state(young xid), gcos._catalog_mark(), gcos._catalog_unchanged(mark): the proof.
--   gcos._fp_take_over(watch, exclude, search_path, known): a fingerprint whose schema part is known's, the
--       rest (watched tables, sequence states, missing) measured; gcos._kernel_digests_over acts as the kernel.
--   gcos._kernel_fingerprint_proved(watch, against, mark): that, when the mark proves the catalogs unchanged and
--       the hash then equals against's; else 043's gcos._kernel_fingerprint_vs. Its "established" says which.
--   gcos._rehearse_inside and gcos._rehearse_measured (043): the mark taken before the entry fingerprint;
--       after_rollback and exit taken that way; the record's fingerprint summaries of both carry "established".
SET LOCAL ROLE gcos_owner;

-- Per catalog: [row count, sorted "ctid/xmin" of visible rows not older than p_young], and the digests standing
-- for in-place fields and unreadable catalogs. One statement, so one snapshot (a STABLE function's queries run
-- on their caller's snapshot).
CREATE FUNCTION gcos._catalog_state(p_young xid) RETURNS jsonb
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_parts text;
    v jsonb;
BEGIN
    SELECT string_agg(format('SELECT %L AS c, count(*) AS n, COALESCE(array_agg(t.ctid::text || ''/'' || t.xmin::text '
                             'ORDER BY t.ctid) FILTER (WHERE age(t.xmin) <= age($1)), ''{}'') AS young FROM pg_catalog.%I AS t',
                             c.relname, c.relname), ' UNION ALL ' ORDER BY c.relname)
      INTO v_parts
      FROM pg_class AS c
     WHERE c.relnamespace = 'pg_catalog'::regnamespace AND c.relkind = 'r'
       AND c.relname NOT IN ('pg_statistic', 'pg_statistic_ext_data', 'pg_largeobject', 'pg_largeobject_metadata',
                             'pg_subscription', 'pg_authid', 'pg_user_mapping')
       AND has_table_privilege(c.oid, 'SELECT');
    EXECUTE 'SELECT jsonb_object_agg(s.c, jsonb_build_array(s.n, to_jsonb(s.young))) FROM (' || v_parts || ') AS s'
       INTO v USING p_young;
    RETURN jsonb_build_object(
        'catalogs', v,
        'unreadable', (SELECT COALESCE(jsonb_agg(c.relname ORDER BY c.relname), '[]') FROM pg_class AS c
                        WHERE c.relnamespace = 'pg_catalog'::regnamespace AND c.relkind = 'r'
                          AND c.relname NOT IN ('pg_statistic', 'pg_statistic_ext_data', 'pg_largeobject',
                                                'pg_largeobject_metadata', 'pg_subscription', 'pg_authid', 'pg_user_mapping')
                          AND NOT has_table_privilege(c.oid, 'SELECT')),
        'roles', (SELECT md5(string_agg(r::text, ',' ORDER BY r.oid)) FROM pg_roles AS r),
        'user_mappings', (SELECT md5(COALESCE(string_agg(u::text, ',' ORDER BY u.umid), '')) FROM pg_user_mappings AS u),
        'index_flags', (SELECT COALESCE(string_agg(i.indexrelid::text || ':' || i.indisvalid || i.indisready || i.indislive,
                                                   ',' ORDER BY i.indexrelid), '')
                          FROM pg_index AS i WHERE NOT (i.indisvalid AND i.indisready AND i.indislive)));
END
$$;

-- The mark: the snapshot's xmin and the catalogs' state seen from it (call it before the fingerprint it vouches for).
CREATE FUNCTION gcos._catalog_mark() RETURNS jsonb
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_young xid := (pg_snapshot_xmin(pg_current_snapshot())::text::numeric % 4294967296)::text::xid;
    v jsonb := gcos._catalog_state(v_young);
BEGIN
    -- a transaction open for long (an old xmin) leaves many young rows: then no proof (their check is quadratic)
    IF (SELECT sum(jsonb_array_length(c.value -> 1)) FROM jsonb_each(v -> 'catalogs') AS c) > 5000 THEN
        RETURN jsonb_build_object('unprovable', 'more than 5,000 catalog rows are younger than the oldest transaction');
    END IF;
    RETURN jsonb_build_object('database', (SELECT d.oid FROM pg_database AS d WHERE d.datname = current_database()),
                              'young', v_young::text) || v;
END
$$;

-- True only when every catalog the fingerprint can read is as the mark saw it; false when in doubt.
CREATE FUNCTION gcos._catalog_unchanged(p_mark jsonb) RETURNS boolean
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_now jsonb;
BEGIN
    -- under REPEATABLE READ the check would read the mark's own snapshot again, blind to what others committed since
    IF p_mark IS NULL OR NOT p_mark ? 'young' OR current_setting('transaction_isolation') <> 'read committed'
       OR (p_mark ->> 'database')::oid IS DISTINCT FROM (SELECT d.oid FROM pg_database AS d WHERE d.datname = current_database())
       OR jsonb_array_length(p_mark -> 'unreadable') > 0 THEN
        RETURN false;
    END IF;
    v_now := gcos._catalog_state((p_mark ->> 'young')::xid);
    RETURN v_now -> 'unreadable' = p_mark -> 'unreadable'
       AND v_now -> 'roles' = p_mark -> 'roles'
       AND v_now -> 'user_mappings' = p_mark -> 'user_mappings'
       AND v_now -> 'index_flags' = p_mark -> 'index_flags'
       AND (SELECT count(*) FROM jsonb_object_keys(v_now -> 'catalogs'))
           = (SELECT count(*) FROM jsonb_object_keys(p_mark -> 'catalogs'))
       AND NOT EXISTS (SELECT FROM jsonb_each(v_now -> 'catalogs') AS n
                        WHERE CASE WHEN (p_mark -> 'catalogs' -> n.key -> 0) IS DISTINCT FROM (n.value -> 0) THEN true
                                   WHEN jsonb_array_length(n.value -> 1) = 0 THEN false
                                   WHEN jsonb_array_length(n.value -> 1) > jsonb_array_length(p_mark -> 'catalogs' -> n.key -> 1)
                                   THEN true  -- (the young rows now must be among the marked ones)
                                   ELSE NOT (p_mark -> 'catalogs' -> n.key -> 1) @> (n.value -> 1) END);
END
$$;

-- A fingerprint (042's gcos._fp_take without the map) whose schema part is p_known's: the rest measured now.
CREATE FUNCTION gcos._fp_take_over(p_watch text[], p_exclude text[], p_search_path text, p_known jsonb) RETURNS jsonb
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
    v_tables record;
BEGIN
    IF p_known ->> 'schema_hash' IS NULL OR jsonb_typeof(p_known -> 'digests') IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'gcos._fp_take_over: the known fingerprint has no schema_hash and digests' USING ERRCODE = '22023';
    END IF;
    SELECT * INTO v_watched FROM gcos._fp_resolve(p_watch, p_search_path);
    SELECT * INTO v_tables FROM gcos._fp_tables(v_watched.identities, v_watched.nspnames, v_watched.relnames);
    RETURN jsonb_build_object(
        'format_version', 1,
        'hash', encode(sha256(convert_to('{"format_version":1,"schema_hash":"' || (p_known ->> 'schema_hash')
                                         || '","tables":' || v_tables.canonical || '}', 'UTF8')), 'hex'),
        'schema_hash', p_known ->> 'schema_hash',
        'digests', p_known -> 'digests',
        'tables', v_tables.tables,
        'sequences', gcos._fp_sequences(p_exclude, NOT EXISTS (SELECT FROM pg_extension AS x WHERE x.extname <> 'plpgsql')),
        'missing', to_jsonb(v_watched.missing));
END
$$;

-- As gcos._kernel_digests (043), the schema part taken from p_known.
CREATE FUNCTION gcos._kernel_digests_over(p_watch text[], p_known jsonb) RETURNS jsonb
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET standard_conforming_strings = on
AS $$ SELECT gcos._fp_take_over(COALESCE(p_watch, '{}'), '{gcos}', 'public, pg_temp', p_known) $$;

-- The fingerprint compared with p_against: the schema part proved unchanged since p_mark (taken before p_against)
-- and the hash then equal, or else measured as gcos._kernel_fingerprint_vs does. "established" says which.
CREATE FUNCTION gcos._kernel_fingerprint_proved(p_watch text[], p_against jsonb, p_mark jsonb) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v jsonb;
BEGIN
    IF p_mark IS NOT NULL AND gcos._catalog_unchanged(p_mark) THEN
        v := gcos._kernel_digests_over(p_watch, p_against);
        IF (v ->> 'hash') IS NOT DISTINCT FROM (p_against ->> 'hash') THEN
            RETURN v || jsonb_build_object('established', 'proved unchanged');
        END IF;
    END IF;
    RETURN gcos._kernel_fingerprint_vs(p_watch, p_against) || jsonb_build_object('established', 'measured');
END
$$;

-- A record's fingerprint summary (011's gcos._fp_summary) with how it was established, when it says.
CREATE FUNCTION gcos._fp_summary_established(p_fp jsonb) RETURNS jsonb
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT gcos._fp_summary(p_fp)
           || CASE WHEN p_fp ? 'established' THEN jsonb_build_object('established', p_fp -> 'established') ELSE '{}' END
$$;

-- 043's gcos._rehearse_inside; the after_rollback fingerprint proved when p_entry carries the catalog mark.
CREATE OR REPLACE FUNCTION gcos._rehearse_inside(p_spec jsonb, p_plan jsonb, p_entry jsonb, p_run_id text) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_watch text[] := ARRAY(SELECT pg_catalog.jsonb_array_elements_text(COALESCE(p_spec -> 'watch', '[]')));
    v jsonb := '{}';
    v_phase text := 'mutation';
    v_probe jsonb := gcos.footprint_probe();
    v_state jsonb := gcos._session_state();
    v_owned jsonb := gcos._kernel_owned();
    v_inside jsonb;
    v_fp jsonb;
    v_stop jsonb;
    v_stops jsonb := '[]';
    v_bounds record;
    v_after bigint;
    v_cursor record;
    i integer;
BEGIN
    BEGIN
        IF p_spec ? 'mutation' THEN
            PERFORM gcos._kernel_exec(p_spec -> 'mutation' ->> 'sql');
        END IF;
        v_phase := 'batch';
        FOR i IN 1 .. CASE WHEN p_spec ? 'batch' THEN 2 ELSE 0 END LOOP
            SELECT * INTO v_bounds FROM gcos._kernel_bounds(p_spec -> 'batch' ->> 'table', p_spec -> 'batch' ->> 'key',
                                                             v_after, (p_spec -> 'batch' ->> 'size')::integer);
            EXIT WHEN v_bounds.lo IS NULL;
            PERFORM gcos._kernel_batch(p_spec -> 'batch' ->> 'sql', COALESCE(v_after, v_bounds.lo - 1), v_bounds.hi, p_run_id);
            v_after := v_bounds.hi;
        END LOOP;
        -- The rehearsed batches reached the end of the table: the run would complete here, so it ends as a completed
        -- run does (027): the cursor at the last key, then batch.finish, and the checks below judge the worker rows.
        IF p_spec #> '{batch,finish}' IS NOT NULL AND v_after IS NOT NULL
           AND (SELECT b.lo FROM gcos._kernel_bounds(p_spec #>> '{batch,table}', p_spec #>> '{batch,key}', v_after, 1) AS b) IS NULL THEN
            SELECT * INTO v_cursor FROM gcos._kernel_cursor(p_spec #>> '{batch,cursor,worker}', p_spec #>> '{batch,cursor,source}');
            -- (its "found" reads NULL: plpgsql's FOUND shadows that OUT parameter; without a row the move moves nothing)
            PERFORM gcos._kernel_cursor_move(p_spec #>> '{batch,cursor,worker}', p_spec #>> '{batch,cursor,source}',
                                             v_cursor.watermark, v_after::text);
            PERFORM gcos._kernel_exec(p_spec #>> '{batch,finish}');
            v := v || pg_catalog.jsonb_build_object('finished', true);
        END IF;
        v_phase := 'check';
        v := v || pg_catalog.jsonb_build_object('settings_inside', gcos._session_state() -> 'settings');
        v_inside := gcos._kernel_fingerprint(v_watch);
        v_fp := gcos.footprint(p_entry, v_inside, v_probe, gcos.footprint_probe());
        FOR v_stop IN SELECT e.value FROM pg_catalog.jsonb_array_elements(
                          COALESCE(p_spec -> 'stop', '[]') || COALESCE(p_plan -> 'global_stop', '[]')) AS e LOOP
            v_stops := v_stops || pg_catalog.jsonb_build_array(
                gcos._kernel_stop(v_stop, pg_catalog.jsonb_array_length(v_fp -> 'new_tables')));
        END LOOP;
        v := v || pg_catalog.jsonb_build_object(
            'inside', v_inside, 'footprint', v_fp, 'stops', v_stops,
            'violations', gcos.allow_violations(p_spec -> 'mutation' -> 'allow', v_fp) || gcos._kernel_invariants(v_owned)
                          || gcos._sequences_back(p_entry, v_inside),
            'success', gcos._kernel_checks(p_spec -> 'success'));
        v_phase := 'rollback';
        v_probe := gcos.footprint_probe();
        PERFORM gcos._kernel_exec(p_spec -> 'rollback' ->> 'sql');
        v := pg_catalog.jsonb_set(v, '{violations}', (v -> 'violations')
             || gcos._rollback_violations(p_spec -> 'mutation' -> 'allow', v_probe, gcos.footprint_probe()));
        v := v || pg_catalog.jsonb_build_object('after_rollback', CASE WHEN p_entry ? 'catalog_mark'
            THEN gcos._kernel_fingerprint_proved(v_watch, p_entry - 'catalog_mark', p_entry -> 'catalog_mark')
            ELSE gcos._kernel_fingerprint_vs(v_watch, p_entry) END);
        RAISE EXCEPTION 'gcos: rehearsal undone' USING ERRCODE = 'GC100';
    EXCEPTION
        WHEN SQLSTATE 'GC100' THEN
            NULL;
        WHEN lock_not_available THEN
            v := v || pg_catalog.jsonb_build_object('failed', 'lock_timeout', 'error', SQLERRM, 'sqlstate', SQLSTATE);
        WHEN query_canceled THEN
            v := v || pg_catalog.jsonb_build_object('failed', 'timeout', 'error', SQLERRM, 'sqlstate', SQLSTATE);
        WHEN OTHERS THEN
            v := v || pg_catalog.jsonb_build_object('failed', v_phase || '_failed', 'error', SQLERRM, 'sqlstate', SQLSTATE);
    END;
    RETURN v || pg_catalog.jsonb_build_object('state_before', v_state);
END
$$;

-- 043's gcos._rehearse_measured; the catalog mark taken before the entry fingerprint, after_rollback and exit proved
-- unchanged where it holds, and the record says how each was established.
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
        v_mark := gcos._catalog_mark();  -- before the entry: what commits in between is seen as a change
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
ALTER FUNCTION gcos._kernel_digests_over(text[], jsonb) OWNER TO gcos_kernel;  -- acts as the kernel, like _kernel_digests
REVOKE ALL ON FUNCTION gcos._catalog_state(xid), gcos._catalog_mark(), gcos._catalog_unchanged(jsonb),
    gcos._fp_take_over(text[], text[], text, jsonb), gcos._kernel_digests_over(text[], jsonb),
    gcos._kernel_fingerprint_proved(text[], jsonb, jsonb), gcos._fp_summary_established(jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gcos._fp_take_over(text[], text[], text, jsonb) TO gcos_kernel;
GRANT EXECUTE ON FUNCTION gcos._kernel_digests_over(text[], jsonb) TO gcos_owner;
