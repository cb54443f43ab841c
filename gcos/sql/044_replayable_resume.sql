-- gcos schema version 44: a resumed batched run records what its gates were adapted on, so it replays
-- (issue 12 item 3, follow-up).
--
-- 041 put each decision's facts in its record, and gcos audit replay re-judges them with gcos.judge_gates.
-- Resuming an open batched run, gcos._batch_start_kernel (029) adapts evaluate_gates' seven gates with
-- gcos._batch_resume_gates (013) to the open run, the schema hash measured now and the step's stop conditions
-- measured now; none of those was recorded, so the decision could not be re-derived. Now the kernel keeps them
-- in the decision's facts as {"resume": {"open", "schema_now", "stops"}}, and replay composes
-- gcos._batch_resume_gates(gcos.judge_gates(facts), ...) over them, the same SQL the kernel ran.
-- Replaced (newest definition 029): gcos._batch_start_kernel (only the resume branch changes).
SET LOCAL ROLE gcos_owner;

-- FROM 029_seams.sql: as 029's, with the resume's inputs kept in the decision's facts.
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
    v_resume jsonb;
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
        v_resume := pg_catalog.jsonb_build_object('open', v_open, 'schema_now', w #>> '{world,schema_hash}', 'stops',
            (SELECT COALESCE(pg_catalog.jsonb_agg(gcos._kernel_stop(e, 0) ORDER BY o), '[]')
               FROM pg_catalog.jsonb_array_elements(COALESCE(v_spec -> 'stop', '[]')) WITH ORDINALITY AS x(e, o)
              WHERE NOT e ? 'max_new_tables'));
        v_decision := gcos._batch_resume_gates(v_decision, v_open, p_spec_hash, p_plan_hash, v_resume ->> 'schema_now',
                                               v_resume -> 'stops')
            || pg_catalog.jsonb_build_object('resume_of_seq', (v_open ->> 'seq')::bigint);
        v_decision := pg_catalog.jsonb_set(v_decision, '{facts,resume}', v_resume);  -- 044: what the resume was judged on
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

RESET ROLE;
