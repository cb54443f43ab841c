-- gcos schema version 51: a batch pays less around its statement (issue 13, the gated backfill).
--
-- Every batch still re-checks authority (gates 5 and 6), runs the step's and the plan's stops, the kernel's checks
-- (source table, allow list, catalog writes, session residue) and moves the cursor in its own transaction; what
-- changes is only work whose result could not matter:
-- * gcos._batch_limit reads statement_timeout with current_setting() instead of the pg_settings view, which
--   formats every setting of the server (~1 ms a batch) to read one.
-- * gcos._batch_apply looks up the exceptions in force (gcos._spec_exceptions, ~2 ms) only when one of the step's
--   own stops holds: gcos._waive marks held stops of the step only, so with none held its result is the same
--   with or without them (the plan's global stops are never waived).
SET LOCAL ROLE gcos_owner;

-- FROM 013_kernel_batched.sql: the same bounds (1 ms .. 5 s), read without pg_settings. statement_timeout is
-- shown in its largest exact unit ('5s', '1500ms', '1min', '0'), which an interval reads back exactly.
CREATE OR REPLACE FUNCTION gcos._batch_limit() RETURNS void
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF EXTRACT(epoch FROM pg_catalog.current_setting('statement_timeout')::interval) * 1000 NOT BETWEEN 1 AND 5000 THEN
        PERFORM gcos._invalid('gcos: a batch runs under the 5 s statement limit; SET LOCAL statement_timeout = ''5s'' in the transaction that calls gcos.batch_next');
    END IF;
END
$$;

-- The step's and the plan's stops on the world a batch made (no table is new in a batch); a held stop of the
-- step that an exception in force names is waived, as at the close (025/029). The exceptions are looked up only
-- when a stop of the step's own holds: gcos._waive changes nothing else.
CREATE FUNCTION gcos._batch_stops(p_spec jsonb, p_plan jsonb) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_own integer := pg_catalog.jsonb_array_length(COALESCE(p_spec -> 'stop', '[]'));
    v jsonb := (SELECT COALESCE(pg_catalog.jsonb_agg(gcos._kernel_stop(e, 0) ORDER BY o), '[]')
                  FROM pg_catalog.jsonb_array_elements(COALESCE(p_spec -> 'stop', '[]') || COALESCE(p_plan -> 'global_stop', '[]'))
                       WITH ORDINALITY AS x(e, o));
BEGIN
    RETURN gcos._waive(v, 'stop',
                       CASE WHEN EXISTS (SELECT FROM pg_catalog.jsonb_array_elements(v) WITH ORDINALITY AS x(e, o)
                                          WHERE o <= v_own AND (e ->> 'held')::boolean IS TRUE)
                            THEN gcos._spec_exceptions(p_spec) ELSE '[]'::jsonb END,
                       v_own);
END
$$;

-- FROM 029_seams.sql: the stops through gcos._batch_stops (above); nothing else changes.
CREATE OR REPLACE FUNCTION gcos._batch_apply(p_spec jsonb, p_run gcos.batch_runs, p_mark text, p_after bigint, p_upto bigint,
                                  p_source text) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_t0 timestamptz := pg_catalog.clock_timestamp();
    v_what text := pg_catalog.format('batch %s of %s (keys %s < %s <= %s)', p_run.batches + 1, p_spec ->> 'id', p_after,
                                     p_spec #>> '{batch,key}', p_upto);
    v_state jsonb := gcos._session_state();
    v_probe jsonb := gcos.footprint_probe();
    v_catalog bigint := gcos._catalog_writes();
    v_plan jsonb := (SELECT p.document FROM gcos.plans AS p WHERE p.plan_hash = p_run.plan_hash);
    v jsonb := '{}';
    v_fp jsonb;
    r record;
BEGIN
    BEGIN
        v := pg_catalog.jsonb_build_object('written', gcos._kernel_batch_rows(p_spec #>> '{batch,sql}', p_after, p_upto, p_run.run_id));
        v_fp := gcos.footprint('{}', '{}', v_probe, gcos.footprint_probe());
        v_catalog := gcos._catalog_writes() - v_catalog;
        v := v || pg_catalog.jsonb_build_object('rows', v_fp -> 'rows',
            'violations', gcos.allow_violations(p_spec #> '{mutation,allow}', v_fp)
                          || CASE WHEN v_catalog > 0 THEN pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
                                 'category', 'catalog', 'identity', 'pg_catalog', 'change',
                                 v_catalog || ' catalog row(s) written (a batch writes table rows only)', 'need', '[]'::jsonb))
                             ELSE '[]'::jsonb END,
            'session_residue', gcos._session_residue(v_state, gcos._session_state()),
            'stops', gcos._batch_stops(p_spec, v_plan));
        IF (v_fp -> 'rows') ? p_source THEN
            v := v || pg_catalog.jsonb_build_object('outcome', 'stopped', 'message', pg_catalog.format(
                '%s wrote its source table %s (%s); it was rolled back and the run stopped (a backfill never modifies its source)',
                v_what, p_source, v_fp -> 'rows' -> p_source));
        ELSE
            SELECT * INTO r FROM gcos._commit_verdict(p_spec ->> 'id', v);
            IF r.outcome IS NOT NULL THEN
                v := v || pg_catalog.jsonb_build_object('outcome', r.outcome, 'message',
                    v_what || ': ' || pg_catalog.replace(r.message, 'nothing was committed', 'the batch was rolled back'));
            ELSIF gcos._kernel_cursor_move(p_spec #>> '{batch,cursor,worker}', p_spec #>> '{batch,cursor,source}',
                                           p_mark, p_upto::text) <> 1 THEN
                v := v || pg_catalog.jsonb_build_object('outcome', 'cursor_moved', 'message', pg_catalog.format(
                    '%s: the cursor is no longer at %s, something else moved it; the batch was rolled back', v_what,
                    COALESCE(p_run.watermark::text, 'NULL')));
            END IF;
        END IF;
        IF v ? 'outcome' THEN
            RAISE EXCEPTION 'gcos: batch undone' USING ERRCODE = 'GC100';
        END IF;
    EXCEPTION
        WHEN SQLSTATE 'GC100' THEN
            NULL;
        WHEN lock_not_available THEN
            v := v || pg_catalog.jsonb_build_object('outcome', 'lock_timeout', 'message', v_what
                     || ' could not get a lock within lock_timeout: ' || SQLERRM || '; the batch was rolled back, retry when the other session is done');
        WHEN query_canceled THEN
            v := v || pg_catalog.jsonb_build_object('outcome', 'timeout', 'message', v_what
                     || ' hit statement_timeout (' || SQLERRM || '); the batch was rolled back: lower the batch size or fix the cause');
        WHEN OTHERS THEN
            v := v || pg_catalog.jsonb_build_object('outcome', 'batch_failed', 'message', v_what || ' failed in the database: '
                     || SQLERRM || '; the batch was rolled back');
    END;
    IF pg_catalog.jsonb_array_length(COALESCE(v -> 'session_residue', '[]')) > 0 THEN
        PERFORM pg_catalog.pg_advisory_unlock_all();  -- the kernel holds none of its own (its locks are xact-level)
    END IF;
    RETURN v || pg_catalog.jsonb_build_object('ms', (EXTRACT(epoch FROM pg_catalog.clock_timestamp() - v_t0) * 1000)::integer);
END
$$;

RESET ROLE;
REVOKE ALL ON FUNCTION gcos._batch_stops(jsonb, jsonb) FROM PUBLIC;
