-- gcos schema version 26: one trace per step run (issue 10 item 7; seed 001: "Every evidence record includes
-- trace_id. Orphan records are invalid.").
--
-- * gcos._ledger_write, the one writer of every record, no longer mints a trace id: a record carries the trace
--   its caller names, as the argument (every aperture takes p_trace_id) or, for the writers whose signature has
--   none (register_spec/register_plan, adopt/release, install), as the transaction's trace context
--   `SELECT set_config('gcos.trace_id', <32 hex>, true)`; with neither it refuses (22023). The argument wins.
-- * A step run is rehearse -> approve -> commit of one spec, under ONE trace, the rehearsal's:
--   - gcos.record_approval given a rehearsal seq (gcos approve passes the step's latest rehearsal of the spec)
--     records the approval under that rehearsal's trace, refuses a different trace id (22023) and a seq that is
--     not a rehearsal record; the payload names it: causation {rehearsal_seq}.
--   - gcos._commit_kernel (a commit) writes its refusal, stop, policy_decision and commit records under the
--     trace of the rehearsal gate 4 relied on (its evidence), else the attempt's own; a rollback keeps the
--     attempt's own trace (it is another run). Every record of the attempt carries attempt_trace_id (the
--     client's) and causation {rehearsal_seq (gate 4 evidence), approval_ids (gate 5 evidence), approval_seqs
--     (their ledger records)}; the commit or rollback record adds policy_decision_seq. A commit and its
--     policy_decision share the trace, as history.py and gcos._step_history pair them.
--   - gcos._batch_commit_payload: the commit record of a batched run names the same causation, read from the
--     run's policy decision, plus policy_decision_seq and batch_started_seq. (A batched run keeps the trace its
--     batch_start was called with: that function is not changed here.)
SET LOCAL ROLE gcos_owner;

-- As 008, but a record without a trace id (argument or gcos.trace_id of the transaction) is refused.
CREATE OR REPLACE FUNCTION gcos._ledger_write(p_kind text, p_step_id text, p_spec_hash text, p_trace_id text,
                                              p_span_id text, p_payload jsonb, OUT seq bigint, OUT hash text)
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_actor record;
    v_who record;
    v_head record;
    v_trace text := COALESCE(p_trace_id, NULLIF(pg_catalog.current_setting('gcos.trace_id', true), ''));
    v_span text := COALESCE(p_span_id, pg_catalog.left(pg_catalog.replace(pg_catalog.gen_random_uuid()::text, '-', ''), 16));
    v_seq bigint;
    v_record jsonb;
    v_canonical text;
    v_hash text;
BEGIN
    IF p_kind IS NULL OR p_kind !~ E'^[a-z][a-z0-9_]*(\\.[a-z0-9_]+)*$' OR pg_catalog.length(p_kind) > 63 THEN
        PERFORM gcos._invalid(pg_catalog.format('gcos: ledger kind %L is invalid; use lowercase words such as rehearsal or commit', p_kind));
    END IF;
    IF p_step_id IS NOT NULL AND (p_step_id !~ '^[A-Za-z][A-Za-z0-9]*(-[A-Za-z0-9]+)*$' OR pg_catalog.length(p_step_id) > 63) THEN
        PERFORM gcos._invalid(pg_catalog.format('gcos: step id %L is invalid', p_step_id));
    END IF;
    IF p_spec_hash IS NOT NULL AND p_spec_hash !~ '^[0-9a-f]{64}$' THEN
        PERFORM gcos._invalid('gcos: a spec hash is 64 lowercase hex digits');
    END IF;
    IF v_trace IS NULL THEN
        PERFORM gcos._invalid('gcos: every ledger record belongs to a trace; pass a trace id (32 lowercase hex digits) or set gcos.trace_id for the transaction');
    END IF;
    IF v_trace !~ '^[0-9a-f]{32}$' OR v_trace = pg_catalog.repeat('0', 32) THEN
        PERFORM gcos._invalid('gcos: trace_id must be 32 lowercase hex digits, not all zero');
    END IF;
    IF v_span !~ '^[0-9a-f]{16}$' OR v_span = pg_catalog.repeat('0', 16) THEN
        PERFORM gcos._invalid('gcos: span_id must be 16 lowercase hex digits, not all zero');
    END IF;
    IF p_payload IS NULL OR pg_catalog.jsonb_typeof(p_payload) <> 'object' THEN
        PERFORM gcos._invalid('gcos: a ledger payload is a JSON object');
    END IF;

    SELECT * INTO v_actor FROM gcos._session_actor();
    IF v_actor.principal IS NULL AND NOT v_actor.is_superuser THEN
        PERFORM gcos._refuse(pg_catalog.format(
            'gcos: session role %I is not a registered principal; ask a gcos admin to run gcos principals add %s',
            v_actor.role_name, v_actor.role_name));
    END IF;
    SELECT * INTO v_who FROM gcos._session_identity();

    SELECT h.seq, h.hash INTO v_head FROM gcos.ledger_head AS h WHERE h.singleton FOR UPDATE;
    v_seq := v_head.seq + 1;
    v_record := pg_catalog.jsonb_build_object(
        'format_version', 1,
        'seq', v_seq,
        'prev_hash', v_head.hash,
        'recorded_at', gcos._utc(pg_catalog.clock_timestamp()),
        'trace_id', v_trace,
        'span_id', v_span,
        'actor', pg_catalog.jsonb_build_object('principal', v_actor.principal, 'role', v_actor.role_name,
                                               'role_oid', v_actor.role_oid::bigint, 'kind', v_actor.kind,
                                               'login_role', v_who.login_role, 'system_user', v_who.authn_id),
        'kind', p_kind,
        'step_id', p_step_id,
        'spec_hash', p_spec_hash,
        'payload', p_payload);
    v_canonical := gcos.jcs(v_record);
    v_hash := pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(v_canonical, 'UTF8')), 'hex');
    INSERT INTO gcos.ledger (seq, prev_hash, hash, canonical) VALUES (v_seq, v_head.hash, v_hash, v_canonical);
    UPDATE gcos.ledger_head AS h SET seq = v_seq, hash = v_hash WHERE h.singleton;
    seq := v_seq;
    hash := v_hash;
END
$$;


-- The causes a policy decision names: the rehearsal gate 4 relied on and the approvals gate 5 counted (ids and
-- their ledger records). Keys are present, null or empty when the gate names none.
CREATE FUNCTION gcos._causation(p_decision jsonb) RETURNS jsonb
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    WITH g AS (
        SELECT e ->> 'gate' AS gate, COALESCE(e -> 'evidence', '[]') AS evidence
          FROM pg_catalog.jsonb_array_elements(COALESCE(p_decision -> 'gates', '[]')) AS x(e)
    ), ids AS (
        SELECT (i.value #>> '{}')::bigint AS id, i.o
          FROM g, pg_catalog.jsonb_array_elements(g.evidence) WITH ORDINALITY AS i(value, o)
         WHERE g.gate = 'approvals'
    )
    SELECT pg_catalog.jsonb_build_object(
        'rehearsal_seq', (SELECT g.evidence -> 0 FROM g WHERE g.gate = 'rehearsal'),
        'approval_ids', COALESCE((SELECT pg_catalog.jsonb_agg(ids.id ORDER BY ids.o) FROM ids), '[]'),
        'approval_seqs', COALESCE((SELECT pg_catalog.jsonb_agg(a.ledger_seq ORDER BY ids.o)
                                     FROM ids JOIN gcos.os_proposal_approvals AS a ON a.id = ids.id), '[]'))
$$;

-- The trace a commit attempt's records go under: a commit joins the run of the rehearsal it rests on (the
-- rehearsal record's trace); a rollback, or a commit resting on no rehearsal, keeps the attempt's own.
CREATE FUNCTION gcos._run_trace(p_action text, p_cause jsonb, p_trace_id text) RETURNS text
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT COALESCE((SELECT l.record ->> 'trace_id' FROM gcos.ledger AS l
                      WHERE p_action = 'commit' AND pg_catalog.jsonb_typeof(p_cause -> 'rehearsal_seq') = 'number'
                        AND l.seq = (p_cause ->> 'rehearsal_seq')::bigint AND l.kind = 'rehearsal'), p_trace_id)
$$;

-- As 008, plus the rehearsal's trace (see the head of this file).
CREATE OR REPLACE FUNCTION gcos.record_approval(p_step_id text, p_spec_hash text, p_plan_hash text, p_verdict text,
                                                p_expires_at timestamptz, p_note text, p_rehearsal_seq bigint,
                                                p_trace_id text DEFAULT NULL, p_span_id text DEFAULT NULL)
    RETURNS TABLE (approval_id bigint, ledger_seq bigint, ledger_hash text)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a record;
    v_now timestamptz;
    v_id bigint;
    v_db record;
    v_rehearsal record;
    v_write record;
    v_trace text := p_trace_id;
BEGIN
    SELECT * INTO a FROM gcos._require_authority('approve');
    IF p_step_id IS NULL OR p_step_id !~ '^[A-Za-z][A-Za-z0-9]*(-[A-Za-z0-9]+)*$' OR pg_catalog.length(p_step_id) > 63 THEN
        PERFORM gcos._invalid(pg_catalog.format('gcos: step id %L is invalid', p_step_id));
    END IF;
    IF p_spec_hash IS NULL OR p_spec_hash !~ '^[0-9a-f]{64}$' OR p_plan_hash IS NULL OR p_plan_hash !~ '^[0-9a-f]{64}$' THEN
        PERFORM gcos._invalid('gcos: an approval binds a spec hash and a plan hash, each 64 lowercase hex digits');
    END IF;
    PERFORM gcos._check_verdict(p_verdict);
    v_now := pg_catalog.clock_timestamp();
    PERFORM gcos._check_expiry(p_expires_at, v_now);
    IF p_rehearsal_seq IS NOT NULL THEN
        SELECT l.seq, l.spec_hash, l.kind, l.record ->> 'trace_id' AS trace_id INTO v_rehearsal
          FROM gcos.ledger AS l WHERE l.seq = p_rehearsal_seq;
        IF NOT FOUND THEN
            PERFORM gcos._invalid(pg_catalog.format('gcos: ledger record %s does not exist', p_rehearsal_seq));
        ELSIF v_rehearsal.kind IS DISTINCT FROM 'rehearsal' THEN
            PERFORM gcos._invalid(pg_catalog.format('gcos: ledger record %s is a %s record, not a rehearsal',
                                                    p_rehearsal_seq, v_rehearsal.kind));
        ELSIF v_rehearsal.spec_hash IS DISTINCT FROM p_spec_hash THEN
            PERFORM gcos._invalid(pg_catalog.format(
                'gcos: ledger record %s is not about spec hash %s', p_rehearsal_seq, p_spec_hash));
        ELSIF p_trace_id IS NOT NULL AND p_trace_id IS DISTINCT FROM v_rehearsal.trace_id THEN
            PERFORM gcos._invalid(pg_catalog.format(
                'gcos: an approval of rehearsal %s belongs to its trace %s, not %s; pass that trace id or none',
                p_rehearsal_seq, v_rehearsal.trace_id, p_trace_id));
        END IF;
        v_trace := v_rehearsal.trace_id;
    END IF;
    SELECT * INTO v_db FROM gcos.database_incarnation();
    v_id := pg_catalog.nextval('gcos.os_proposal_approvals_id_seq');
    SELECT * INTO v_write FROM gcos._ledger_write('approval', p_step_id, p_spec_hash, v_trace, p_span_id,
        pg_catalog.jsonb_build_object(
            'approval_id', v_id, 'plan_hash', p_plan_hash, 'verdict', p_verdict,
            'expires_at', gcos._utc(p_expires_at), 'note', p_note, 'rehearsal_seq', p_rehearsal_seq,
            'causation', pg_catalog.jsonb_build_object('rehearsal_seq', p_rehearsal_seq),
            'approver_roles', pg_catalog.to_jsonb(a.roles),
            'target', pg_catalog.jsonb_build_object('system_identifier', v_db.system_identifier,
                                                    'database', v_db.database_name,
                                                    'database_oid', v_db.database_oid::bigint)));
    INSERT INTO gcos.os_proposal_approvals (id, step_id, spec_hash, plan_hash, verdict, approver_oid, approver,
                                            approver_role, approver_roles, system_identifier, database_name,
                                            database_oid, rehearsal_seq, note, expires_at, created_at, ledger_seq)
    VALUES (v_id, p_step_id, p_spec_hash, p_plan_hash, p_verdict, a.role_oid, a.principal, a.role_name, a.roles,
            v_db.system_identifier, v_db.database_name, v_db.database_oid, p_rehearsal_seq, p_note, p_expires_at,
            v_now, v_write.seq);
    RETURN QUERY SELECT v_id, v_write.seq, v_write.hash;
END
$$;

CREATE OR REPLACE FUNCTION gcos._commit_kernel(p_spec_hash text, p_plan_hash text, p_action text, p_run_id text,
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
    v_cause jsonb;
    v_trace text;
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
    v_decision := gcos.evaluate_gates(p_spec_hash, p_plan_hash, p_action, w -> 'world');
    v_cause := gcos._causation(v_decision);
    v_trace := gcos._run_trace(p_action, v_cause, p_trace_id);
    v_decision := v_decision || pg_catalog.jsonb_build_object('trace_id', v_trace);
    v_base := v_base || pg_catalog.jsonb_build_object('attempt_trace_id', p_trace_id, 'causation', v_cause);
    IF NOT (v_decision ->> 'allow')::boolean THEN
        SELECT * INTO v_write FROM gcos._ledger_write(p_action || '_refused', v_step, p_spec_hash, v_trace, NULL,
                                                      v_base || pg_catalog.jsonb_build_object('policy_decision', v_decision));
        RETURN v_base || pg_catalog.jsonb_build_object('outcome', p_action || '_refused', 'decision', v_decision,
                                                       'message', v_decision ->> 'refusal', 'ledger_seq', v_write.seq);
    END IF;
    SELECT * INTO v_force FROM gcos._commit_in_force(v_step);
    v := gcos._commit_apply(v_spec, v_plan, p_action, w -> 'fingerprint',
                            CASE WHEN p_action = 'rollback' THEN COALESCE(v_force.before_hash, '') END);
    IF v ? 'outcome' THEN
        SELECT * INTO v_write FROM gcos._ledger_write('stop', v_step, p_spec_hash, v_trace, NULL,
            v_base || pg_catalog.jsonb_build_object('outcome', v -> 'outcome', 'reason', v -> 'message',
                                                    'allow_violations', COALESCE(v -> 'violations', '[]'),
                                                    'policy_decision', v_decision));
        RETURN v_base || pg_catalog.jsonb_build_object('outcome', v -> 'outcome', 'message', v -> 'message',
                                                       'decision', v_decision, 'ledger_seq', v_write.seq);
    END IF;
    SELECT * INTO v_write FROM gcos._ledger_write('policy_decision', v_step, p_spec_hash, v_trace, NULL, v_decision);
    v_record := v_base || pg_catalog.jsonb_build_object(
        'format_version', 1, 'outcome', 'applied', 'plan_id', v_plan ->> 'id', 'plan_hash', p_plan_hash,
        'fingerprint_before', gcos._fp_summary(w -> 'fingerprint'), 'fingerprint_after', gcos._fp_summary(v -> 'after'),
        'fingerprint_after_full', v -> 'after', 'policy_decision_seq', v_write.seq,
        'causation', v_cause || pg_catalog.jsonb_build_object('policy_decision_seq', v_write.seq));
    IF p_action = 'commit' THEN
        v_record := v_record || pg_catalog.jsonb_build_object('footprint', pg_catalog.jsonb_build_object(
            'new_tables', v -> 'footprint' -> 'new_tables', 'row_deltas', v -> 'footprint' -> 'rows'));
    ELSE
        v_record := v_record || pg_catalog.jsonb_build_object('of_commit_seq', v_force.seq);
    END IF;
    SELECT * INTO v_write FROM gcos._ledger_write(p_action, v_step, p_spec_hash, v_trace, NULL, v_record);
    RETURN v_record || pg_catalog.jsonb_build_object(
        'decision', v_decision, 'ledger_seq', v_write.seq, 'reverify', w -> 'world' -> 'reverify',
        'stops', COALESCE(v -> 'stops', '[]'), 'success', COALESCE(v -> 'success', '[]'),
        'message', pg_catalog.format('%s %s in the kernel: ledger seq %s, run %s', v_step,
                                     CASE p_action WHEN 'commit' THEN 'committed' ELSE 'rolled back' END, v_write.seq, p_run_id));
END
$$;

CREATE OR REPLACE FUNCTION gcos._batch_commit_payload(r gcos.batch_runs, p_spec jsonb, p_plan jsonb, v jsonb) RETURNS jsonb
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.jsonb_build_object(
        'format_version', 1, 'outcome', 'applied', 'plan_id', p_plan ->> 'id', 'plan_hash', r.plan_hash,
        'fingerprint_before', gcos._fp_summary(r.fingerprint_before), 'fingerprint_after', gcos._fp_summary(v -> 'after'),
        'fingerprint_after_full', v -> 'after', 'policy_decision_seq', r.decision_seq,
        'footprint', pg_catalog.jsonb_build_object('new_tables', v -> 'footprint' -> 'new_tables', 'row_deltas', r.row_deltas,
                                                   'rows_net', gcos._rows_net(r.fingerprint_before, v -> 'after')),
        'batch', pg_catalog.jsonb_build_object('table', p_spec #> '{batch,table}', 'key', p_spec #> '{batch,key}', 'size', r.size,
                                               'batches', r.batches, 'rows_seen', r.rows_seen, 'rows_written', r.rows_written,
                                               'max_batch_ms', r.max_batch_ms, 'statement_limit_ms', 5000),
        'cursor', pg_catalog.jsonb_build_object('worker', p_spec #> '{batch,cursor,worker}', 'source', p_spec #> '{batch,cursor,source}',
                                                'end', r.watermark::text,
                                                'resumed_from', CASE WHEN r.segment_seq <> r.started_seq THEN r.segment_from::text END),
        'batch_started_seq', r.started_seq, 'resumed', r.segment_seq <> r.started_seq,
        'causation', gcos._causation((SELECT l.record -> 'payload' FROM gcos.ledger AS l WHERE l.seq = r.decision_seq))
                     || pg_catalog.jsonb_build_object('policy_decision_seq', r.decision_seq, 'batch_started_seq', r.started_seq))
$$;

RESET ROLE;
REVOKE ALL ON FUNCTION gcos._causation(jsonb), gcos._run_trace(text, jsonb, text) FROM PUBLIC;
