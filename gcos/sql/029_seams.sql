-- gcos schema version 29: the seams the merge of 024-028 left (issue 10).
--
-- * Expiring exceptions in every batch (025 x 027): gcos._batch_apply waives a held stop of the step that an
--   exception in force names, exactly as a batch close (gcos._batch_judged) and a commit (gcos._commit_apply) do:
--   gcos._spec_exceptions (judged for session_user, so never the committer's own exception), and only the step's
--   own stops (the plan's global_stop is never waived). A waived stop stays in the results, marked "waived";
--   gcos.batch_next reports the batch's waivers ("waived") and a stop record lists every held stop, marked.
-- * One trace per batched run (026 x 013/022): gcos._batch_start_kernel writes the run's records under the trace
--   of the rehearsal gate 4 relied on (gcos._run_trace, as gcos._commit_kernel), names its causation and keeps
--   the client's trace as attempt_trace_id. gcos.batch_runs.trace_id is that run trace (every batch's stop
--   record, a refusal, the close's commit record and its policy decision carry it, so history.py and
--   gcos._step_history still pair a commit with its decision by trace); the new column attempt_trace_id is the
--   trace of the client running the current segment, which gcos._batch_run checks (a takeover still stops the
--   earlier client: two attempts on one rehearsal share the run trace, not the attempt trace).
-- * gcos.revoke_decision: only a sovereign revokes a decision (a council member revoking a sovereign's `reject`
--   would reopen gate 6; 024 made deciding a sovereign's act, revoking is the same act undone). 42501.
-- * gcos._rehearse_inside: when the rehearsed batches reach the end of the batch table, the rehearsal moves the
--   cursor there and runs batch.finish (027) before the checks, so step 9's "worker rows say completed" success
--   check is judged in a rehearsal; over a larger table it is not (see the function).
SET LOCAL ROLE gcos_owner;

-- The trace of the client running the run's current segment (start or latest resume); NULL on runs started
-- before 029, whose trace_id was the client's.
ALTER TABLE gcos.batch_runs ADD COLUMN attempt_trace_id text CHECK (attempt_trace_id ~ '^[0-9a-f]{32}$');

-- FROM 013_kernel_batched.sql: the client's trace is checked against the segment's attempt trace.
CREATE OR REPLACE FUNCTION gcos._batch_run(p_run_id text, p_trace_id text) RETURNS gcos.batch_runs
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r gcos.batch_runs;
BEGIN
    SELECT * INTO r FROM gcos.batch_runs AS b WHERE b.run_id = p_run_id FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM gcos._invalid(pg_catalog.format('gcos: the kernel started no batched run %L; start one with gcos commit STEP', p_run_id));
    ELSIF r.closed_seq IS NOT NULL THEN
        PERFORM gcos._invalid(pg_catalog.format('gcos: run %s of %s is committed (ledger seq %s); there is nothing left to run',
                                                r.run_id, r.step_id, r.closed_seq));
    ELSIF r.actor_oid <> (SELECT a.role_oid FROM gcos._session_actor() AS a) THEN
        PERFORM gcos._refuse(pg_catalog.format('gcos: run %s of %s is run by role %s; resume it as yourself with gcos commit %s',
                                               r.run_id, r.step_id, pg_catalog.pg_get_userbyid(r.actor_oid), r.step_id));
    ELSIF COALESCE(r.attempt_trace_id, r.trace_id) IS DISTINCT FROM p_trace_id THEN
        RAISE EXCEPTION 'gcos: run % of % was resumed by another gcos commit (ledger seq %); this one stops here', r.run_id,
            r.step_id, r.segment_seq USING ERRCODE = '55000', HINT = 'Run gcos status ' || r.step_id || ' to see where it stands.';
    END IF;
    RETURN r;
END
$$;

-- FROM 013_kernel_batched.sql: p_trace_id is the run's trace (the rehearsal's); v ->> 'attempt_trace_id' the
-- client's, kept in the records and the run row; the batch_started/resumed record names the causation.
CREATE OR REPLACE FUNCTION gcos._batch_begun(p_spec jsonb, p_plan jsonb, p_plan_hash text, p_run_id text, p_trace_id text,
                                  p_glass boolean, p_open jsonb, p_decision jsonb, p_before jsonb, v jsonb) RETURNS gcos.batch_runs
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_step text := p_spec ->> 'id';
    v_hash text := p_decision ->> 'spec_hash';
    v_attempt text := COALESCE(v ->> 'attempt_trace_id', p_trace_id);
    v_base jsonb := pg_catalog.jsonb_build_object('format_version', 1, 'run_id', p_run_id, 'kernel', true, 'break_glass', p_glass,
        'batch', pg_catalog.jsonb_build_object('table', p_spec #> '{batch,table}', 'key', p_spec #> '{batch,key}',
                                               'size', p_spec #> '{batch,size}'),
        'attempt_trace_id', v_attempt, 'causation', gcos._causation(p_decision));
    v_cursor jsonb := pg_catalog.jsonb_build_object('worker', p_spec #> '{batch,cursor,worker}', 'source', p_spec #> '{batch,cursor,source}');
    v_decision record;
    v_marker record;
    r gcos.batch_runs;
BEGIN
    SELECT * INTO v_decision FROM gcos._ledger_write('policy_decision', v_step, v_hash, p_trace_id, NULL, p_decision);
    IF p_open IS NULL THEN
        SELECT * INTO v_marker FROM gcos._ledger_write('batch_started', v_step, v_hash, p_trace_id, NULL, v_base || pg_catalog.jsonb_build_object(
            'plan_id', p_plan ->> 'id', 'plan_hash', p_plan_hash, 'policy_decision_seq', v_decision.seq,
            'rehearsal_seq', (SELECT e -> 'evidence' -> 0 FROM pg_catalog.jsonb_array_elements(p_decision -> 'gates') AS x(e)
                               WHERE e ->> 'gate' = 'rehearsal'),
            'cursor', v_cursor || pg_catalog.jsonb_build_object('start', v ->> 'watermark'),
            'fingerprint_before', gcos._fp_summary(p_before)));
        INSERT INTO gcos.batch_runs (run_id, step_id, spec_hash, plan_hash, size, fingerprint_before, started_seq, segment_seq,
                                     decision_seq, trace_id, attempt_trace_id, actor_oid, break_glass, segment_from, watermark,
                                     row_deltas, updated_at)
        VALUES (p_run_id, v_step, v_hash, p_plan_hash, (p_spec #>> '{batch,size}')::integer, p_before, v_marker.seq, v_marker.seq,
                v_decision.seq, p_trace_id, v_attempt, (SELECT a.role_oid FROM gcos._session_actor() AS a), p_glass,
                (v ->> 'watermark')::bigint, (v ->> 'watermark')::bigint, COALESCE(v #> '{footprint,rows}', '{}'),
                pg_catalog.clock_timestamp())
        RETURNING * INTO r;
    ELSE
        SELECT * INTO v_marker FROM gcos._ledger_write('batch_resumed', v_step, v_hash, p_trace_id, NULL, v_base || pg_catalog.jsonb_build_object(
            'of_seq', (p_open ->> 'seq')::bigint, 'policy_decision_seq', v_decision.seq,
            'cursor', v_cursor || pg_catalog.jsonb_build_object('resumed_from', v ->> 'watermark')));
        UPDATE gcos.batch_runs AS b
           SET segment_seq = v_marker.seq, decision_seq = v_decision.seq, trace_id = p_trace_id, attempt_trace_id = v_attempt,
               break_glass = p_glass,
               actor_oid = (SELECT a.role_oid FROM gcos._session_actor() AS a), segment_from = (v ->> 'watermark')::bigint,
               row_deltas = gcos._deltas_add(b.row_deltas, v #> '{footprint,rows}'), updated_at = pg_catalog.clock_timestamp()
         WHERE b.run_id = p_run_id
        RETURNING * INTO r;
    END IF;
    RETURN r;
END
$$;

-- FROM 013_kernel_batched.sql (022 renamed it): as gcos._commit_kernel (026), the run's records go under the trace
-- of the rehearsal gate 4 relied on, name the causation and keep the client's trace as attempt_trace_id.
CREATE OR REPLACE FUNCTION gcos._batch_start_kernel(p_spec_hash text, p_plan_hash text, p_run_id text, p_trace_id text,
                                 p_break_glass boolean DEFAULT false) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_spec jsonb := (SELECT s.document FROM gcos.specs AS s WHERE s.spec_hash = p_spec_hash);
    v_plan jsonb := (SELECT p.document FROM gcos.plans AS p WHERE p.plan_hash = p_plan_hash);
    v_step text := v_spec ->> 'id';
    v_glass boolean;
    v_open jsonb;
    v_run text;
    v_base jsonb;
    w jsonb;
    v_decision jsonb;
    v jsonb;
    v_write record;
    r gcos.batch_runs;
    k record;
    v_cause jsonb;
    v_trace text;
BEGIN
    v_glass := gcos._kernel_committer(p_break_glass);
    IF v_spec IS NULL OR v_plan IS NULL OR v_spec ->> 'mode' IS DISTINCT FROM 'batched' OR NOT v_plan -> 'steps' ? v_step
       OR p_run_id IS NULL OR p_run_id !~ '^[0-9a-f]{32}$' OR p_trace_id IS NULL OR p_trace_id !~ '^[0-9a-f]{32}$' THEN
        PERFORM gcos._invalid('gcos: batch_start needs a registered batched spec, a registered plan holding its step, a 32-hex run id and a 32-hex trace id');
    END IF;
    PERFORM gcos._kernel_preflight();
    PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended('gcos:commit', 0));
    PERFORM gcos.lock_approvals(v_step, ARRAY(SELECT pg_catalog.jsonb_array_elements_text(COALESCE(v_spec -> 'decisions', '[]'))));
    v_open := gcos._batch_open(v_step);
    v_run := COALESCE(v_open ->> 'run_id', p_run_id);
    w := gcos._kernel_world(v_spec, v_plan);
    v_decision := gcos.evaluate_gates(p_spec_hash, p_plan_hash, 'commit', w -> 'world');
    IF v_open IS NOT NULL THEN
        v_decision := gcos._batch_resume_gates(v_decision, v_open, p_spec_hash, p_plan_hash, w #>> '{world,schema_hash}',
            (SELECT COALESCE(pg_catalog.jsonb_agg(gcos._kernel_stop(e, 0) ORDER BY o), '[]')
               FROM pg_catalog.jsonb_array_elements(COALESCE(v_spec -> 'stop', '[]')) WITH ORDINALITY AS x(e, o)
              WHERE NOT e ? 'max_new_tables'))
            || pg_catalog.jsonb_build_object('resume_of_seq', (v_open ->> 'seq')::bigint);
    END IF;
    v_cause := gcos._causation(v_decision);
    v_trace := gcos._run_trace('commit', v_cause, p_trace_id);
    v_decision := v_decision || pg_catalog.jsonb_build_object('trace_id', v_trace, 'mode', 'batched', 'run_id', v_run,
                                                              'kernel', true, 'break_glass', v_glass);
    v_base := pg_catalog.jsonb_build_object('run_id', v_run, 'action', 'commit', 'mode', 'batched', 'kernel', true,
                                            'break_glass', v_glass, 'resumed', v_open IS NOT NULL,
                                            'attempt_trace_id', p_trace_id, 'causation', v_cause);
    IF NOT (v_decision ->> 'allow')::boolean THEN
        SELECT * INTO v_write FROM gcos._ledger_write('commit_refused', v_step, p_spec_hash, v_trace, NULL,
                                                      v_base || pg_catalog.jsonb_build_object('policy_decision', v_decision));
        RETURN v_base || pg_catalog.jsonb_build_object('outcome', 'commit_refused', 'decision', v_decision,
                                                       'message', v_decision ->> 'refusal', 'ledger_seq', v_write.seq);
    END IF;
    v := gcos._batch_begin(v_spec, v_plan, w -> 'fingerprint', v_open IS NOT NULL,
                           (SELECT b.watermark FROM gcos.batch_runs AS b WHERE b.run_id = v_run));
    IF v ? 'outcome' THEN
        SELECT * INTO v_write FROM gcos._ledger_write('stop', v_step, p_spec_hash, v_trace, NULL,
            v_base || pg_catalog.jsonb_build_object('outcome', v -> 'outcome', 'reason', v -> 'message',
                                                    'allow_violations', COALESCE(v -> 'violations', '[]')));
        RETURN v_base || pg_catalog.jsonb_build_object('outcome', v -> 'outcome', 'message', v -> 'message', 'decision', v_decision,
                                                       'stops', COALESCE(v -> 'stops', '[]'), 'ledger_seq', v_write.seq);
    END IF;
    r := gcos._batch_begun(v_spec, v_plan, p_plan_hash, v_run, v_trace, v_glass, v_open, v_decision, w -> 'fingerprint',
                           v || pg_catalog.jsonb_build_object('attempt_trace_id', p_trace_id));
    SELECT * INTO k FROM gcos._kernel_keys(v_spec #>> '{batch,table}', v_spec #>> '{batch,key}', r.watermark);
    RETURN v_base || pg_catalog.jsonb_build_object(
        'outcome', CASE WHEN v_open IS NULL THEN 'started' ELSE 'resumed' END, 'decision', v_decision,
        'ledger_seq', r.segment_seq, 'policy_decision_seq', r.decision_seq, 'batch_started_seq', r.started_seq,
        'watermark', r.watermark, 'size', r.size, 'total_rows', k.total, 'done_rows', k.done,
        'message', pg_catalog.format('%s %s in the kernel: run %s from key %s (ledger seq %s)', v_step,
                                     CASE WHEN v_open IS NULL THEN 'started' ELSE 'resumed' END, v_run,
                                     COALESCE(r.watermark::text, 'the start'), r.segment_seq));
END
$$;

-- FROM 027_batch_stops.sql: the step's held stops an exception in force names are waived (see the head).
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
            -- a held stop of the step that an exception in force names is waived, as at the close (025)
            'stops', gcos._waive((SELECT COALESCE(pg_catalog.jsonb_agg(gcos._kernel_stop(e, 0) ORDER BY o), '[]')
                        FROM pg_catalog.jsonb_array_elements(COALESCE(p_spec -> 'stop', '[]') || COALESCE(v_plan -> 'global_stop', '[]'))
                             WITH ORDINALITY AS x(e, o)), 'stop', gcos._spec_exceptions(p_spec),
                                 pg_catalog.jsonb_array_length(COALESCE(p_spec -> 'stop', '[]'))));
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

-- FROM 027_batch_stops.sql: records keep the client's trace as attempt_trace_id (they go under the run's, r.trace_id);
-- a committed batch reports the stops it waived ("waived", as gcos._waivers lists them).
CREATE OR REPLACE FUNCTION gcos.batch_next(p_run_id text, p_trace_id text, p_break_glass boolean DEFAULT false) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_glass boolean := gcos._kernel_committer(p_break_glass);
    r gcos.batch_runs := gcos._batch_run(p_run_id, p_trace_id);
    v_spec jsonb := (SELECT s.document FROM gcos.specs AS s WHERE s.spec_hash = r.spec_hash);
    v_base jsonb := pg_catalog.jsonb_build_object('run_id', r.run_id, 'action', 'commit', 'mode', 'batched', 'kernel', true,
                                                  'break_glass', v_glass, 'batch', r.batches + 1, 'attempt_trace_id', p_trace_id);
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
        'upto', b.hi, 'watermark', b.hi, 'rows', b.keys, 'written', v -> 'written', 'batch_ms', v -> 'ms',
        'waived', gcos._waivers(v -> 'stops', 'stop'));
END
$$;

-- FROM 027_batch_stops.sql: records keep the client's trace as attempt_trace_id (they go under the run's).
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
    v_base := pg_catalog.jsonb_build_object('run_id', r.run_id, 'action', 'commit', 'mode', 'batched', 'kernel', true, 'break_glass', v_glass,
                                            'attempt_trace_id', p_trace_id);
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


-- FROM 002_approvals.sql: only a sovereign revokes a decision (see the head).
CREATE OR REPLACE FUNCTION gcos.revoke_decision(p_decision_id bigint, p_reason text,
                                     p_trace_id text DEFAULT NULL, p_span_id text DEFAULT NULL)
    RETURNS TABLE (revocation_id bigint, ledger_seq bigint, ledger_hash text)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a record;
    v_decision record;
    v_id bigint;
    v_write record;
BEGIN
    SELECT * INTO a FROM gcos._require_authority('revoke decisions');
    IF NOT ('sovereign' = ANY (a.roles)) THEN
        PERFORM gcos._refuse(pg_catalog.format(
            'gcos: principal %s is not a sovereign and cannot revoke a decision: only a sovereign revokes a decision, as only a sovereign records one (seed 002 §70.2 #8, D10)',
            a.principal));
    END IF;
    SELECT x.id, x.decision INTO v_decision FROM gcos.decisions AS x WHERE x.id = p_decision_id FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM gcos._invalid(pg_catalog.format('gcos: decision record %s does not exist', p_decision_id));
    END IF;
    IF EXISTS (SELECT 1 FROM gcos.decision_revocations AS r WHERE r.decision_id = p_decision_id) THEN
        PERFORM gcos._invalid(pg_catalog.format('gcos: decision record %s is already revoked', p_decision_id));
    END IF;
    v_id := pg_catalog.nextval('gcos.decision_revocations_id_seq');
    SELECT * INTO v_write FROM gcos._ledger_write('decision_revocation', NULL, NULL, p_trace_id, p_span_id,
        pg_catalog.jsonb_build_object('revocation_id', v_id, 'decision_id', p_decision_id,
                                      'decision', v_decision.decision, 'reason', p_reason));
    INSERT INTO gcos.decision_revocations (id, decision_id, revoked_by_oid, revoked_by, revoked_by_role, reason,
                                           revoked_at, ledger_seq)
    VALUES (v_id, p_decision_id, a.role_oid, a.principal, a.role_name, p_reason, pg_catalog.clock_timestamp(),
            v_write.seq);
    RETURN QUERY SELECT v_id, v_write.seq, v_write.hash;
END
$$;

-- FROM 011_kernel_rehearse.sql: a rehearsal whose batches reach the end of the batch table (it rehearses at most
-- two) ends the run as a completed one does: the cursor at the last key rehearsed, then the spec's batch.finish,
-- before the checks, so a success check on the worker rows (step 9) is judged. Over a larger table the run does
-- not complete inside the rehearsal and finish is not run: such a check is judged at the close (027).
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
        v := v || pg_catalog.jsonb_build_object('after_rollback', gcos._kernel_fingerprint(v_watch));
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

RESET ROLE;
