-- gcos schema version 27: a batched step checks its stop conditions in every batch, and its worker rows say
-- how the run ended (issue 10 item 4: "Step 9 checks its stop conditions inside every batch transaction (a
-- violating batch rolls back and the run stops, exit 4); when a run ends, completed or stopped, the worker rows
-- say so").
--
--   gcos._batch_apply   judges, inside the batch's subtransaction, the step's stops and the plan's global_stop
--                       too (as "stops", so gcos._commit_verdict decides as it does for a commit): a batch on which
--                       one holds is undone, a `stop` record names the stop, the run stops (exit 4); the batches
--                       before it stay, as every other stop of a batch leaves them.
--   gcos._batch_worker  the spec's batch.finish (the run completed) or batch.on_stop (the run stopped) as
--                       gcos_kernel in a subtransaction, its rows judged against the allow list; undone when they
--                       leave it or the SQL fails. The record of the close or the stop carries what it did ("worker").
--   gcos.batch_next     a batch that stopped: batch.on_stop in the stop's transaction.
--   gcos.batch_close    batch.finish before the whole run is judged (success may read the worker rows); when the
--                       run may not close, finish is undone and batch.on_stop runs in the stop's transaction.
--   gcos._batch_refused a run stopped by gates 5 or 6 (a revoked approval or decision): batch.on_stop too.
SET LOCAL ROLE gcos_owner;

-- The run's worker rows told how it ended: the spec's batch.finish or batch.on_stop (p_key) as gcos_kernel in a
-- subtransaction, its rows judged against the mutation's allow list, no catalog row written. NULL when the spec has
-- no such SQL; else {key, rows, violations}, with "error" when it was undone.
CREATE FUNCTION gcos._batch_worker(p_spec jsonb, p_key text) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_sql text := p_spec #>> ARRAY['batch', p_key];
    v jsonb := pg_catalog.jsonb_build_object('key', p_key);
    v_probe jsonb;
    v_catalog bigint;
    v_fp jsonb;
BEGIN
    IF v_sql IS NULL THEN
        RETURN NULL;
    END IF;
    v_probe := gcos.footprint_probe();
    v_catalog := gcos._catalog_writes();
    BEGIN
        PERFORM gcos._kernel_exec(v_sql);
        v_fp := gcos.footprint('{}', '{}', v_probe, gcos.footprint_probe());
        v_catalog := gcos._catalog_writes() - v_catalog;
        v := v || pg_catalog.jsonb_build_object('rows', COALESCE(v_fp -> 'rows', '{}'),
            'violations', gcos.allow_violations(p_spec #> '{mutation,allow}', v_fp)
                          || CASE WHEN v_catalog > 0 THEN pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
                                 'category', 'catalog', 'identity', 'pg_catalog', 'change',
                                 v_catalog || ' catalog row(s) written (batch.' || p_key || ' writes table rows only)', 'need', '[]'::jsonb))
                             ELSE '[]'::jsonb END);
        IF pg_catalog.jsonb_array_length(v -> 'violations') > 0 THEN
            v := v || pg_catalog.jsonb_build_object('error', pg_catalog.format('batch.%s wrote outside the allow list (%s); it was undone',
                     p_key, (SELECT pg_catalog.string_agg(e ->> 'identity', ', ') FROM pg_catalog.jsonb_array_elements(v -> 'violations') AS x(e))));
            RAISE EXCEPTION 'gcos: worker rows undone' USING ERRCODE = 'GC100';
        END IF;
    EXCEPTION
        WHEN SQLSTATE 'GC100' THEN
            NULL;
        WHEN OTHERS THEN
            v := v || pg_catalog.jsonb_build_object('error', pg_catalog.format('batch.%s failed in the database: %s; it was undone',
                                                                                p_key, SQLERRM));
    END;
    RETURN v;
END
$$;

-- A run stopped by gates 5 or 6 at p_at: the commit_refused record; the batches before it stay, and the worker
-- rows say the run stopped (batch.on_stop).
CREATE OR REPLACE FUNCTION gcos._batch_refused(p_run gcos.batch_runs, p_base jsonb, p_auth jsonb) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v jsonb := p_base || pg_catalog.jsonb_build_object('at', p_auth ->> 'at', 'policy_decision', p_auth, 'refusal', pg_catalog.format(
        '%s (found at %s of run %s); its batches stay, up to key %s, and it resumes once authority is in force again',
        pg_catalog.rtrim(p_auth ->> 'refusal', '.'), p_auth ->> 'at', p_run.run_id, COALESCE(p_run.watermark::text, 'none')),
        'worker', gcos._batch_worker((SELECT s.document FROM gcos.specs AS s WHERE s.spec_hash = p_run.spec_hash), 'on_stop'));
    v_write record;
BEGIN
    SELECT * INTO v_write FROM gcos._ledger_write('commit_refused', p_run.step_id, p_run.spec_hash, p_run.trace_id, NULL, v);
    RETURN p_base || pg_catalog.jsonb_build_object('outcome', 'commit_refused', 'decision', p_auth, 'message', v ->> 'refusal',
                                                   'worker', v -> 'worker', 'ledger_seq', v_write.seq);
END
$$;

-- One batch (after, upto] as gcos_kernel in a subtransaction, judged there: its source table unwritten, its
-- rows within the allow list, no catalog row written, no session residue, no stop condition of the step or
-- the plan holding; then the cursor moved from the run's watermark. Returns {written, rows, stops, ms} or,
-- undone, {outcome, message, violations, stops}.
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
            -- the step's and the plan's stops, on the world this batch made (no table is new in a batch)
            'stops', (SELECT COALESCE(pg_catalog.jsonb_agg(gcos._kernel_stop(e, 0) ORDER BY o), '[]')
                        FROM pg_catalog.jsonb_array_elements(COALESCE(p_spec -> 'stop', '[]') || COALESCE(v_plan -> 'global_stop', '[]'))
                             WITH ORDINALITY AS x(e, o)));
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

CREATE OR REPLACE FUNCTION gcos.batch_next(p_run_id text, p_trace_id text, p_break_glass boolean DEFAULT false) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_glass boolean := gcos._kernel_committer(p_break_glass);
    r gcos.batch_runs := gcos._batch_run(p_run_id, p_trace_id);
    v_spec jsonb := (SELECT s.document FROM gcos.specs AS s WHERE s.spec_hash = r.spec_hash);
    v_base jsonb := pg_catalog.jsonb_build_object('run_id', r.run_id, 'action', 'commit', 'mode', 'batched', 'kernel', true,
                                                  'break_glass', v_glass, 'batch', r.batches + 1);
    v_auth jsonb;
    c record;
    b record;
    v_after bigint;
    v_upto bigint;
    v jsonb;
    v_write record;
BEGIN
    PERFORM gcos._kernel_preflight();
    PERFORM gcos._batch_limit();
    PERFORM gcos.lock_approvals(r.step_id, ARRAY(SELECT pg_catalog.jsonb_array_elements_text(COALESCE(v_spec -> 'decisions', '[]'))));
    v_auth := gcos._batch_authority(r, v_glass, 'batch ' || (r.batches + 1));
    IF NOT (v_auth ->> 'allow')::boolean THEN
        RETURN gcos._batch_refused(r, v_base, v_auth);
    END IF;
    SELECT * INTO c FROM gcos._kernel_cursor(v_spec #>> '{batch,cursor,worker}', v_spec #>> '{batch,cursor,source}');
    IF NOT c.found OR c.watermark !~ '^-?[0-9]{1,18}$' THEN
        c.found := false;  -- gone, or not an integer key any more
    ELSIF c.watermark::bigint IS DISTINCT FROM r.watermark THEN
        c.found := false;
    END IF;
    IF NOT c.found THEN
        v := pg_catalog.jsonb_build_object('outcome', 'cursor_moved', 'message', pg_catalog.format(
                 'the cursor gov_worker_cursor (%s, %s) is at %s, not at %s where batch %s of run %s left it: something else moved it',
                 v_spec #>> '{batch,cursor,worker}', v_spec #>> '{batch,cursor,source}', COALESCE(c.watermark, 'NULL'),
                 COALESCE(r.watermark::text, 'NULL'), r.batches, r.run_id));
    ELSE
        SELECT * INTO b FROM gcos._kernel_range(v_spec #>> '{batch,table}', v_spec #>> '{batch,key}', r.watermark, r.size);
        IF b.keys = 0 THEN
            RETURN v_base || pg_catalog.jsonb_build_object('outcome', 'done', 'done', true, 'watermark', r.watermark, 'batches', r.batches);
        END IF;
        v_after := COALESCE(r.watermark, b.lo - 1);
        v_upto := b.hi;
        v := gcos._batch_apply(v_spec, r, c.watermark, v_after, v_upto, b.source);
    END IF;
    IF v ? 'outcome' THEN
        v := v || pg_catalog.jsonb_build_object('stops', COALESCE((SELECT pg_catalog.jsonb_agg(e) FROM pg_catalog.jsonb_array_elements(
                                                     COALESCE(v -> 'stops', '[]')) AS x(e) WHERE (e ->> 'held')::boolean), '[]'),
                                                 'worker', gcos._batch_worker(v_spec, 'on_stop'));
        SELECT * INTO v_write FROM gcos._ledger_write('stop', r.step_id, r.spec_hash, r.trace_id, NULL,
            v_base || pg_catalog.jsonb_build_object('outcome', v -> 'outcome', 'reason', v -> 'message', 'after', v_after,
                                                    'upto', v_upto, 'allow_violations', COALESCE(v -> 'violations', '[]'),
                                                    'stops', v -> 'stops', 'worker', v -> 'worker'));
        RETURN v_base || pg_catalog.jsonb_build_object('outcome', v -> 'outcome', 'message', v -> 'message', 'stops', v -> 'stops',
                                                       'worker', v -> 'worker', 'watermark', r.watermark, 'ledger_seq', v_write.seq);
    END IF;
    UPDATE gcos.batch_runs AS x
       SET watermark = b.hi, batches = x.batches + 1, rows_seen = x.rows_seen + b.keys,
           rows_written = x.rows_written + GREATEST((v ->> 'written')::bigint, 0),
           max_batch_ms = GREATEST(x.max_batch_ms, (v ->> 'ms')::integer),
           row_deltas = gcos._deltas_add(x.row_deltas, v -> 'rows'), updated_at = pg_catalog.clock_timestamp()
     WHERE x.run_id = r.run_id;
    RETURN v_base || pg_catalog.jsonb_build_object('outcome', 'batch', 'done', false, 'after', COALESCE(r.watermark, b.lo - 1),
        'upto', b.hi, 'watermark', b.hi, 'rows', b.keys, 'written', v -> 'written', 'batch_ms', v -> 'ms');
END
$$;

-- Close, as 013, with the worker rows: batch.finish before the run is judged, batch.on_stop when it may not close.
CREATE OR REPLACE FUNCTION gcos.batch_close(p_run_id text, p_trace_id text, p_break_glass boolean DEFAULT false) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_glass boolean := gcos._kernel_committer(p_break_glass);
    r gcos.batch_runs;
    v_spec jsonb;
    v_plan jsonb;
    v_base jsonb;
    v_auth jsonb;
    v jsonb;
    v_verdict record;
    v_record jsonb;
    v_write record;
    v_worker jsonb;
BEGIN
    PERFORM gcos._kernel_preflight();
    PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended('gcos:commit', 0));
    r := gcos._batch_run(p_run_id, p_trace_id);
    v_spec := (SELECT s.document FROM gcos.specs AS s WHERE s.spec_hash = r.spec_hash);
    v_plan := (SELECT p.document FROM gcos.plans AS p WHERE p.plan_hash = r.plan_hash);
    v_base := pg_catalog.jsonb_build_object('run_id', r.run_id, 'action', 'commit', 'mode', 'batched', 'kernel', true, 'break_glass', v_glass);
    IF (SELECT b.keys FROM gcos._kernel_range(v_spec #>> '{batch,table}', v_spec #>> '{batch,key}', r.watermark, 1) AS b) > 0 THEN
        RETURN v_base || pg_catalog.jsonb_build_object('outcome', 'more', 'watermark', r.watermark, 'message', pg_catalog.format(
            'run %s of %s has keys left after %s: call gcos.batch_next until it says done', r.run_id, r.step_id,
            COALESCE(r.watermark::text, 'the start')));  -- nothing recorded: the run goes on
    END IF;
    PERFORM gcos.lock_approvals(r.step_id, ARRAY(SELECT pg_catalog.jsonb_array_elements_text(COALESCE(v_spec -> 'decisions', '[]'))));
    v_auth := gcos._batch_authority(r, v_glass, 'close');
    IF NOT (v_auth ->> 'allow')::boolean THEN
        RETURN gcos._batch_refused(r, v_base, v_auth);
    END IF;
    BEGIN  -- the worker rows say the run completed (batch.finish), then the whole run is judged; undone if it may not close
        v_worker := gcos._batch_worker(v_spec, 'finish');
        v := gcos._batch_judged(v_spec, v_plan, r.fingerprint_before);
        IF v_worker ? 'error' THEN
            SELECT 'batch_failed' AS outcome, pg_catalog.format('%s: %s', r.step_id, v_worker ->> 'error') AS message INTO v_verdict;
            v := pg_catalog.jsonb_set(v, '{violations}', COALESCE(v -> 'violations', '[]') || COALESCE(v_worker -> 'violations', '[]'));
        ELSE
            SELECT * INTO v_verdict FROM gcos._commit_verdict(r.step_id, v);
        END IF;
        IF v_verdict.outcome IS NOT NULL THEN
            RAISE EXCEPTION 'gcos: not closed' USING ERRCODE = 'GC100';
        END IF;
    EXCEPTION
        WHEN SQLSTATE 'GC100' THEN
            NULL;
    END;
    IF v_verdict.outcome IS NOT NULL THEN
        v := v || pg_catalog.jsonb_build_object('outcome', v_verdict.outcome, 'worker', gcos._batch_worker(v_spec, 'on_stop'),
                 'message', pg_catalog.format(
                 '%s. The rows run %s wrote stay (idempotent, marked with the run id; the cursor is at %s): the step''s rollback '
                 'evidence removes them by run, or fix the cause and commit again to close the run', v_verdict.message, r.run_id,
                 COALESCE(r.watermark::text, 'the start')));
        SELECT * INTO v_write FROM gcos._ledger_write('stop', r.step_id, r.spec_hash, r.trace_id, NULL, v_base || pg_catalog.jsonb_build_object(
            'outcome', v -> 'outcome', 'reason', v -> 'message', 'stops', v -> 'stops', 'success', v -> 'success',
            'allow_violations', v -> 'violations', 'worker', v -> 'worker'));
        RETURN v_base || pg_catalog.jsonb_build_object('outcome', v -> 'outcome', 'message', v -> 'message', 'stops', v -> 'stops',
                                                       'success', v -> 'success', 'worker', v -> 'worker', 'ledger_seq', v_write.seq);
    END IF;
    v := v || pg_catalog.jsonb_build_object('worker', v_worker);
    v_record := v_base || gcos._batch_commit_payload(r, v_spec, v_plan, v);
    SELECT * INTO v_write FROM gcos._ledger_write('commit', r.step_id, r.spec_hash, r.trace_id, NULL, v_record);
    UPDATE gcos.batch_runs AS b SET closed_seq = v_write.seq, updated_at = pg_catalog.clock_timestamp() WHERE b.run_id = r.run_id;
    RETURN (v_record - 'fingerprint_after_full') || pg_catalog.jsonb_build_object(
        'ledger_seq', v_write.seq, 'stops', v -> 'stops', 'success', v -> 'success', 'worker', v_worker,
        'message', pg_catalog.format('%s committed in the kernel in batches: %s batch(es) of up to %s keys, %s row(s) written, the slowest '
                                     '%s ms (limit 5s); ledger seq %s, run %s', r.step_id, r.batches, r.size, r.rows_written,
                                     r.max_batch_ms, v_write.seq, r.run_id));
END
$$;

REVOKE ALL ON FUNCTION gcos._batch_worker(jsonb, text) FROM PUBLIC;
