-- gcos schema version 43: a rehearsal takes the object map only where a difference must be named (issue 13 item 2).
--
-- A rehearsal fingerprints the world four times (entry, inside, after the rollback evidence, exit). The entry and
-- inside fingerprints feed gcos.footprint, which names the objects the step changed: they keep the object map. The
-- after-rollback and exit fingerprints are only compared with the entry's hash (rollback_unproven, residue) and
-- its sequences; they are now taken as digests (042's gcos._fp_take without the map: hashes, per-category digests,
-- watched tables, sequence states), and taken again WITH the map, in the same transaction, only when the hash
-- differs, so a difference is still named object by object.
--
--   gcos._kernel_digests(watch): gcos._kernel_fingerprint without the object map (owned by gcos_kernel, like it).
--   gcos._kernel_fingerprint_vs(watch, against): digests when their hash equals against's, else the full fingerprint.
--   gcos._rehearse_inside (029) and gcos._rehearse_measured (025): after_rollback and exit taken that way.
SET LOCAL ROLE gcos_owner;

CREATE FUNCTION gcos._kernel_digests(p_watch text[]) RETURNS jsonb
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT gcos._fp_take(COALESCE(p_watch, '{}'), '{gcos}', 'public, pg_temp', false) $$;

-- The fingerprint compared with p_against: digests (no object map) when the hashes agree; when they do not, the
-- full fingerprint taken again, so the difference can be named (gcos._fp_differences reads the maps).
CREATE FUNCTION gcos._kernel_fingerprint_vs(p_watch text[], p_against jsonb) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v jsonb := gcos._kernel_digests(p_watch);
BEGIN
    IF (v ->> 'hash') IS DISTINCT FROM (p_against ->> 'hash') THEN
        RETURN gcos._kernel_fingerprint(p_watch);
    END IF;
    RETURN v;
END
$$;

-- 029's gcos._rehearse_inside; only the after_rollback fingerprint changed (gcos._kernel_fingerprint_vs).
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
        v := v || pg_catalog.jsonb_build_object('after_rollback', gcos._kernel_fingerprint_vs(v_watch, p_entry));
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

-- 025's gcos._rehearse_measured; only the exit fingerprint changed (gcos._kernel_fingerprint_vs).
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
        v := v || pg_catalog.jsonb_build_object('entry', gcos._kernel_fingerprint(v_watch));
        v := v || gcos._rehearse_inside(v_spec, v_plan, v -> 'entry', v_run);
        IF v ? 'success' THEN  -- the checks ran (a failed mutation has none)
            v := v || pg_catalog.jsonb_build_object(
                'stops', gcos._waive(v -> 'stops', 'stop', v_exc, pg_catalog.jsonb_array_length(COALESCE(v_spec -> 'stop', '[]'))),
                'success', gcos._waive(v -> 'success', 'success', v_exc, pg_catalog.jsonb_array_length(COALESCE(v_spec -> 'success', '[]'))));
        END IF;
        SELECT * INTO r FROM gcos._rehearsal_outcome(v_step, v);
        v_exit := gcos._kernel_fingerprint_vs(v_watch, v -> 'entry');
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
            'after_rollback', gcos._fp_summary(v -> 'after_rollback'), 'exit', gcos._fp_summary(v_exit)),
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
ALTER FUNCTION gcos._kernel_digests(text[]) OWNER TO gcos_kernel;  -- acts as the kernel, like _kernel_fingerprint
REVOKE ALL ON FUNCTION gcos._kernel_digests(text[]), gcos._kernel_fingerprint_vs(text[], jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gcos._kernel_digests(text[]) TO gcos_owner;
