-- gcos schema version 19: gcos.commit, as 012 defined it, with two corrections now that the kernel is the only
-- way a step runs:
--   * a direct call for a batched step says how the kernel commits one (batch_start, batch_next, batch_close)
--     instead of "committed in batches by the client", which no longer exists (0A000, exit 2);
--   * a step stopped after its gates allowed it (stop condition, success evidence, footprint, residue) records
--     the allowing decision in its `stop` record (payload policy_decision), as a refusal does: every gate
--     evaluation of a commit is in the ledger (CONTRACT.md, "Each gate evaluation is written as a
--     PolicyDecisionRecord"), and the evidence shows what was allowed and then stopped.
SET LOCAL ROLE gcos_owner;

CREATE OR REPLACE FUNCTION gcos.commit(p_spec_hash text, p_plan_hash text, p_action text, p_run_id text,
                            p_trace_id text, p_break_glass boolean DEFAULT false) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_spec jsonb := (SELECT s.document FROM gcos.specs AS s WHERE s.spec_hash = p_spec_hash);
    v_plan jsonb := (SELECT p.document FROM gcos.plans AS p WHERE p.plan_hash = p_plan_hash);
    v_step text;
    v_glass boolean;
    v_base jsonb;
    w jsonb;
    v_decision jsonb;
    v_force record;
    v jsonb;
    v_write record;
    v_record jsonb;
BEGIN
    v_glass := gcos._kernel_committer(p_break_glass);
    IF v_spec IS NULL OR v_plan IS NULL THEN
        PERFORM gcos._invalid('gcos: the kernel commits registered specs and plans only; register them first (gcos commit does)');
    END IF;
    v_step := v_spec ->> 'id';
    IF p_action IS NULL OR p_action NOT IN ('commit', 'rollback') OR NOT v_plan -> 'steps' ? v_step
       OR p_run_id IS NULL OR p_run_id !~ '^[0-9a-f]{32}$' OR p_trace_id IS NULL THEN
        PERFORM gcos._invalid('gcos: commit needs action commit or rollback, a step of the plan, a 32-hex run id and a trace id');
    END IF;
    IF v_spec ->> 'mode' = 'batched' AND p_action = 'commit' THEN
        RAISE EXCEPTION 'gcos: a batched step is committed batch by batch: gcos.batch_start, then gcos.batch_next until it says done, then gcos.batch_close'
            USING ERRCODE = '0A000', HINT = 'gcos commit STEP does exactly that.';
    END IF;
    PERFORM gcos._kernel_preflight();
    PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended('gcos:commit', 0));
    PERFORM gcos.lock_approvals(v_step, ARRAY(SELECT pg_catalog.jsonb_array_elements_text(COALESCE(v_spec -> 'decisions', '[]'))));
    v_base := pg_catalog.jsonb_build_object('run_id', p_run_id, 'action', p_action, 'kernel', true, 'break_glass', v_glass);
    w := gcos._kernel_world(v_spec, v_plan);
    v_decision := gcos.evaluate_gates(p_spec_hash, p_plan_hash, p_action, w -> 'world')
                  || pg_catalog.jsonb_build_object('trace_id', p_trace_id);
    IF NOT (v_decision ->> 'allow')::boolean THEN
        SELECT * INTO v_write FROM gcos._ledger_write(p_action || '_refused', v_step, p_spec_hash, p_trace_id, NULL,
                                                      v_base || pg_catalog.jsonb_build_object('policy_decision', v_decision));
        RETURN v_base || pg_catalog.jsonb_build_object('outcome', p_action || '_refused', 'decision', v_decision,
                                                       'message', v_decision ->> 'refusal', 'ledger_seq', v_write.seq);
    END IF;
    SELECT * INTO v_force FROM gcos._commit_in_force(v_step);
    v := gcos._commit_apply(v_spec, v_plan, p_action, w -> 'fingerprint',
                            CASE WHEN p_action = 'rollback' THEN COALESCE(v_force.before_hash, '') END);
    IF v ? 'outcome' THEN
        SELECT * INTO v_write FROM gcos._ledger_write('stop', v_step, p_spec_hash, p_trace_id, NULL,
            v_base || pg_catalog.jsonb_build_object('outcome', v -> 'outcome', 'reason', v -> 'message',
                                                    'allow_violations', COALESCE(v -> 'violations', '[]'),
                                                    'policy_decision', v_decision));
        RETURN v_base || pg_catalog.jsonb_build_object('outcome', v -> 'outcome', 'message', v -> 'message',
                                                       'decision', v_decision, 'ledger_seq', v_write.seq);
    END IF;
    SELECT * INTO v_write FROM gcos._ledger_write('policy_decision', v_step, p_spec_hash, p_trace_id, NULL, v_decision);
    v_record := v_base || pg_catalog.jsonb_build_object(
        'format_version', 1, 'outcome', 'applied', 'plan_id', v_plan ->> 'id', 'plan_hash', p_plan_hash,
        'fingerprint_before', gcos._fp_summary(w -> 'fingerprint'), 'fingerprint_after', gcos._fp_summary(v -> 'after'),
        'fingerprint_after_full', v -> 'after', 'policy_decision_seq', v_write.seq);
    IF p_action = 'commit' THEN
        v_record := v_record || pg_catalog.jsonb_build_object('footprint', pg_catalog.jsonb_build_object(
            'new_tables', v -> 'footprint' -> 'new_tables', 'row_deltas', v -> 'footprint' -> 'rows'));
    ELSE
        v_record := v_record || pg_catalog.jsonb_build_object('of_commit_seq', v_force.seq);
    END IF;
    SELECT * INTO v_write FROM gcos._ledger_write(p_action, v_step, p_spec_hash, p_trace_id, NULL, v_record);
    RETURN v_record || pg_catalog.jsonb_build_object(
        'decision', v_decision, 'ledger_seq', v_write.seq, 'reverify', w -> 'world' -> 'reverify',
        'stops', COALESCE(v -> 'stops', '[]'), 'success', COALESCE(v -> 'success', '[]'),
        'message', pg_catalog.format('%s %s in the kernel: ledger seq %s, run %s', v_step,
                                     CASE p_action WHEN 'commit' THEN 'committed' ELSE 'rolled back' END, v_write.seq, p_run_id));
END
$$;
