-- gcos schema version 12: the kernel commits and rolls back (issue 9 items 2, 3 and 8).
--
--   gcos.commit(spec_hash, plan_hash, action, run_id, trace_id, break_glass) -> jsonb     gcos_operator, gcos_admin
--
-- commits (action 'commit') or rolls back (action 'rollback', the spec's rollback evidence) a REGISTERED
-- transactional spec under a registered plan, in the caller's transaction, which the caller then commits
-- (the client does, with synchronous_commit on). In order:
--   1. the caller is a named HUMAN principal with the operator (or admin) role, logged in as itself; a
--      superuser only with p_break_glass, which every record of the run says (item 8);
--   2. the database's one commit lock (pg_advisory_xact_lock of hashtextextended('gcos:commit', 0), the same
--      lock the client's commit takes), then the step's approval and decision rows FOR SHARE;
--   3. the world, measured as gcos_kernel under that lock: the fingerprint, re-verify, the plan's global stops;
--   4. the seven gates, evaluated by gcos.evaluate_gates (010) on that world, and written as a
--      policy_decision record; a refusal writes `<action>_refused` and returns (nothing is applied);
--   5. the mutation (or rollback evidence) as gcos_kernel in a subtransaction, judged there: the footprint
--      against the allow list, the step's and the plan's stop conditions, the success evidence, session
--      residue (advisory locks, settings); for a rollback, the fingerprint after must equal the one the
--      commit in force recorded before it applied. Anything wrong undoes the subtransaction, writes a `stop`
--      record and returns;
--   6. the `commit` (or `rollback`) record, naming its policy decision, with the fingerprints before and
--      after (the whole one after, for `gcos drift`).
-- Every record of a run carries the same trace_id and run_id and "kernel": true.
--
-- Where the kernel runs (public adopted), gcos.ledger_append refuses every kind a rehearsal or commit writes
-- to everyone but superusers: only the kernel claims them.
--
-- Differences from the client's commit (apply.py): approvals and decisions are judged once, under the lock,
-- by the clock at that moment (the client also re-judged them just before COMMIT); batched steps are not
-- committed here yet (0A000).
SET LOCAL ROLE gcos_owner;

-- Who may commit: a named human operator (or admin) logged in as itself; a superuser only breaking glass.
-- Returns whether glass was broken.
CREATE FUNCTION gcos._kernel_committer(p_break_glass boolean) RETURNS boolean
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_actor record;
BEGIN
    SELECT * INTO v_actor FROM gcos._kernel_actor();
    IF v_actor.is_superuser THEN
        IF NOT COALESCE(p_break_glass, false) THEN
            PERFORM gcos._refuse('gcos: a superuser commits only breaking glass (gcos commit --break-glass, recorded as such); commit as a named human operator instead');
        END IF;
        RETURN true;
    END IF;
    IF v_actor.kind IS DISTINCT FROM 'human' OR NOT (v_actor.roles && ARRAY['operator', 'admin']::text[]) THEN
        PERFORM gcos._refuse(pg_catalog.format('gcos: role %I may not commit: it needs a named human principal with the operator role',
                                               v_actor.role_name));
    END IF;
    RETURN false;
END
$$;

-- The world the gates judge, measured as gcos_kernel now: {fingerprint, world: {schema_hash, reverify,
-- global_stops}} (global stops without the footprint items, which only a mutation has).
CREATE FUNCTION gcos._kernel_world(p_spec jsonb, p_plan jsonb) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_fp jsonb := gcos._kernel_fingerprint(ARRAY(SELECT pg_catalog.jsonb_array_elements_text(COALESCE(p_spec -> 'watch', '[]'))));
    v_stops jsonb := '[]';
    v_stop jsonb;
    v_held jsonb;
BEGIN
    FOR v_stop IN SELECT e.value FROM pg_catalog.jsonb_array_elements(COALESCE(p_plan -> 'global_stop', '[]')) AS e
                   WHERE NOT e.value ? 'max_new_tables' LOOP
        v_held := gcos._kernel_stop(v_stop, 0);
        v_stops := v_stops || pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
            'name', v_held -> 'name', 'holds', v_held -> 'held', 'detail', v_held -> 'detail'));
    END LOOP;
    RETURN pg_catalog.jsonb_build_object('fingerprint', v_fp, 'world', pg_catalog.jsonb_build_object(
        'schema_hash', v_fp -> 'schema_hash', 'reverify', gcos._kernel_checks(p_spec -> 'reverify'),
        'global_stops', v_stops));
END
$$;

-- Why an applied mutation must not stay (NULL when it may): the allow list, stops, success, session residue.
CREATE FUNCTION gcos._commit_verdict(p_step text, v jsonb, OUT outcome text, OUT message text)
    LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    IF pg_catalog.jsonb_array_length(COALESCE(v -> 'violations', '[]')) > 0 OR EXISTS (
           SELECT FROM pg_catalog.jsonb_array_elements(COALESCE(v -> 'stops', '[]') || COALESCE(v -> 'success', '[]')) AS e
            WHERE (e.value ->> 'held')::boolean OR NOT COALESCE((e.value ->> 'ok')::boolean, true)) THEN
        SELECT * INTO r FROM gcos._rehearsal_outcome(p_step, v || '{"after_rollback": null}');
        outcome := r.outcome;
        message := pg_catalog.replace(r.message, 'the step was rolled back', 'nothing was committed');
    ELSIF pg_catalog.jsonb_array_length(COALESCE(v -> 'session_residue', '[]')) > 0 THEN
        outcome := 'residue';
        message := pg_catalog.format('%s left %s in the session, which outlives a commit; nothing was committed', p_step,
                                     pg_catalog.array_to_string(ARRAY(SELECT pg_catalog.jsonb_array_elements_text(v -> 'session_residue')), ', '));
    ELSIF v ? 'prove' AND (v -> 'after' ->> 'hash') IS DISTINCT FROM (v ->> 'prove') THEN
        outcome := 'rollback_unproven';
        message := pg_catalog.format('the rollback evidence of %s does not return the world to the fingerprint before its commit; nothing was rolled back', p_step);
    END IF;
END
$$;

-- The mutation (commit) or the rollback evidence (rollback) as gcos_kernel, judged in a subtransaction that
-- is undone when it must not stay. Returns what was seen, with "outcome"/"message" when it was undone.
CREATE FUNCTION gcos._commit_apply(p_spec jsonb, p_plan jsonb, p_action text, p_before jsonb, p_prove text) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_watch text[] := ARRAY(SELECT pg_catalog.jsonb_array_elements_text(COALESCE(p_spec -> 'watch', '[]')));
    v_state jsonb := gcos._session_state();
    v_probe jsonb := gcos.footprint_probe();
    v_owned jsonb := gcos._kernel_owned();
    v jsonb := CASE WHEN p_prove IS NULL THEN '{}'::jsonb ELSE pg_catalog.jsonb_build_object('prove', p_prove) END;
    v_now jsonb;
    v_stop jsonb;
    r record;
BEGIN
    BEGIN
        IF p_action = 'rollback' OR p_spec ? 'mutation' THEN  -- a verification-only step applies nothing
            PERFORM gcos._kernel_exec(CASE p_action WHEN 'commit' THEN p_spec -> 'mutation' ->> 'sql'
                                                    ELSE p_spec -> 'rollback' ->> 'sql' END);
        END IF;
        v_now := gcos._session_state();
        v := v || pg_catalog.jsonb_build_object('after', gcos._kernel_fingerprint(v_watch), 'session_residue', (
            SELECT COALESCE(pg_catalog.jsonb_agg(x), '[]') FROM (
                SELECT l AS x FROM pg_catalog.jsonb_array_elements_text(v_now -> 'locks') AS l WHERE NOT (v_state -> 'locks') ? l
                UNION ALL
                SELECT 'setting ' || e.key FROM pg_catalog.jsonb_each(v_now -> 'settings') AS e
                 WHERE e.value IS DISTINCT FROM v_state -> 'settings' -> e.key) AS d));
        IF p_action = 'commit' THEN
            v := v || pg_catalog.jsonb_build_object('footprint', gcos.footprint(p_before, v -> 'after', v_probe, gcos.footprint_probe()));
            v := v || pg_catalog.jsonb_build_object(
                'violations', gcos.allow_violations(p_spec -> 'mutation' -> 'allow', v -> 'footprint')
                              || gcos._kernel_invariants(v_owned) || gcos._sequences_back(p_before, v -> 'after'),
                'stops', '[]'::jsonb, 'success', gcos._kernel_checks(p_spec -> 'success'));
            FOR v_stop IN SELECT e.value FROM pg_catalog.jsonb_array_elements(
                              COALESCE(p_spec -> 'stop', '[]') || COALESCE(p_plan -> 'global_stop', '[]')) AS e LOOP
                v := pg_catalog.jsonb_set(v, '{stops}', (v -> 'stops') || pg_catalog.jsonb_build_array(
                    gcos._kernel_stop(v_stop, pg_catalog.jsonb_array_length(v -> 'footprint' -> 'new_tables'))));
            END LOOP;
        END IF;
        IF p_action = 'rollback' THEN
            v := v || pg_catalog.jsonb_build_object('violations',
                gcos._rollback_violations(p_spec -> 'mutation' -> 'allow', v_probe, gcos.footprint_probe())
                || gcos._kernel_invariants(v_owned) || gcos._sequences_back(p_before, v -> 'after'));
        END IF;
        SELECT * INTO r FROM gcos._commit_verdict(p_spec ->> 'id', v);
        IF r.outcome IS NOT NULL THEN
            v := v || pg_catalog.jsonb_build_object('outcome', r.outcome, 'message', r.message);
            RAISE EXCEPTION 'gcos: not applied' USING ERRCODE = 'GC100';
        END IF;
    EXCEPTION
        WHEN SQLSTATE 'GC100' THEN
            NULL;
        WHEN lock_not_available THEN
            v := v || pg_catalog.jsonb_build_object('outcome', 'lock_timeout', 'message',
                pg_catalog.format('%s of %s could not get a lock within lock_timeout: %s; nothing was applied, retry when the other session is done',
                                  p_action, p_spec ->> 'id', SQLERRM));
        WHEN query_canceled THEN
            v := v || pg_catalog.jsonb_build_object('outcome', 'timeout', 'message',
                pg_catalog.format('%s of %s hit statement_timeout; nothing was applied', p_action, p_spec ->> 'id'));
        WHEN OTHERS THEN
            v := v || pg_catalog.jsonb_build_object('outcome', p_action || '_failed', 'message',
                pg_catalog.format('%s of %s failed in the database: %s; nothing was applied', p_action, p_spec ->> 'id', SQLERRM));
    END;
    IF pg_catalog.jsonb_array_length(COALESCE(v -> 'session_residue', '[]')) > 0 THEN
        PERFORM pg_catalog.pg_advisory_unlock_all();  -- the kernel holds none of its own (its lock is xact-level)
    END IF;
    RETURN v;
END
$$;

-- The fingerprint a rollback must return to: the one the commit in force recorded before it applied.
CREATE FUNCTION gcos._commit_in_force(p_step text, OUT seq bigint, OUT before_hash text)
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT l.seq, l.record #>> '{payload,fingerprint_before,hash}'
      FROM gcos.ledger AS l
     WHERE l.seq = (gcos._step_history(p_step) ->> 'commit_seq')::bigint
$$;

CREATE FUNCTION gcos.commit(p_spec_hash text, p_plan_hash text, p_action text, p_run_id text,
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
        RAISE EXCEPTION 'gcos: batched steps are committed in batches by the client until the kernel runs them'
            USING ERRCODE = '0A000';
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
                                                    'allow_violations', COALESCE(v -> 'violations', '[]')));
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

REVOKE ALL ON FUNCTION gcos._kernel_committer(boolean), gcos._kernel_world(jsonb, jsonb), gcos._commit_verdict(text, jsonb),
    gcos._commit_apply(jsonb, jsonb, text, jsonb, text), gcos._commit_in_force(text),
    gcos.commit(text, text, text, text, text, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gcos.commit(text, text, text, text, text, boolean) TO gcos_operator, gcos_admin;

-- ----------------------------------------------------------------------------------- only the kernel writes outcomes

-- The kinds a rehearsal or a commit writes. Where the kernel runs (schema public adopted) only the kernel
-- (or a superuser) appends them: a client cannot claim a rehearsal, a decision, a commit or a stop.
CREATE FUNCTION gcos._kernel_kinds() RETURNS text[]
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ARRAY['rehearsal', 'policy_decision', 'commit', 'rollback', 'commit_refused', 'rollback_refused', 'stop',
                 'batch_started', 'batch_resumed']
$$;

CREATE OR REPLACE FUNCTION gcos.ledger_append(p_kind text, p_step_id text, p_spec_hash text, p_trace_id text,
                                              p_span_id text, p_payload jsonb)
    RETURNS TABLE (seq bigint, hash text)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_actor record;
    v_login record;
BEGIN
    IF p_kind = ANY (gcos._reserved_kinds()) THEN
        PERFORM gcos._refuse(pg_catalog.format(
            'gcos: %s records are written only by their own gcos function, not by gcos.ledger_append', p_kind));
    END IF;
    SELECT * INTO v_actor FROM gcos._session_actor();
    SELECT * INTO v_login FROM gcos._session_identity();
    IF v_login.login_role_oid IS DISTINCT FROM v_actor.role_oid THEN
        PERFORM gcos._refuse(pg_catalog.format('gcos: this session logged in as %s but acts as %s; records name who logged in',
                                               v_login.login_role, v_actor.role_name));
    END IF;
    IF p_payload ? 'kernel' THEN
        PERFORM gcos._refuse('gcos: only the kernel marks a record "kernel"; gcos.ledger_append never does');
    END IF;
    IF p_kind = ANY (gcos._kernel_kinds()) AND NOT v_actor.is_superuser
       AND EXISTS (SELECT FROM gcos.adopted_schemas AS a WHERE a.schema_name = 'public' AND a.released_at IS NULL) THEN
        PERFORM gcos._refuse(pg_catalog.format(
            'gcos: where the kernel runs (schema public adopted) only the kernel writes %s records; use gcos rehearse or gcos commit',
            p_kind));
    END IF;
    IF p_kind = ANY (gcos._outcome_kinds()) AND NOT v_actor.is_superuser AND (v_actor.kind IS DISTINCT FROM 'human'
            OR NOT (v_actor.roles && ARRAY['operator', 'admin']::text[])) THEN
        PERFORM gcos._refuse(pg_catalog.format(
            'gcos: %s records are appended only by a human operator; role %I may not', p_kind, v_actor.role_name));
    END IF;
    RETURN QUERY SELECT w.seq, w.hash FROM gcos._ledger_write(p_kind, p_step_id, p_spec_hash, p_trace_id,
                                                                p_span_id, p_payload) AS w;
END
$$;

-- Gate 4 where the kernel runs: only a rehearsal the kernel wrote counts (a client's record, written while
-- public was not adopted or before, proved nothing the kernel saw).
CREATE OR REPLACE FUNCTION gcos._rehearsal_relied_on(p_step_id text, p_action text, p_history jsonb) RETURNS jsonb
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.jsonb_build_object(
               'seq', l.seq, 'spec_hash', l.spec_hash, 'plan_hash', gcos._jtext(l.record #> '{payload,plan_hash}'),
               'outcome', gcos._jtext(l.record #> '{payload,outcome}'),
               'entry_schema_hash', gcos._jtext(l.record #> '{payload,fingerprints,entry,schema_hash}'),
               'actor_oid', gcos._jint(l.record #> '{actor,role_oid}'),
               'actor_name', gcos._jtext(l.record #> '{actor,principal}'))
      FROM gcos.ledger AS l
     WHERE l.kind = 'rehearsal' AND l.step_id = p_step_id
       AND CASE WHEN p_action = 'rollback' THEN l.seq < COALESCE((p_history ->> 'commit_seq')::bigint, 0)
                ELSE l.seq > (p_history ->> 'epoch_seq')::bigint END
       AND (NOT EXISTS (SELECT FROM gcos.adopted_schemas AS a WHERE a.schema_name = 'public' AND a.released_at IS NULL)
            OR (l.record #> '{payload,kernel}') = 'true'::jsonb)
     ORDER BY l.seq DESC
     LIMIT 1
$$;

REVOKE ALL ON FUNCTION gcos._kernel_kinds(), gcos.ledger_append(text, text, text, text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gcos.ledger_append(text, text, text, text, text, jsonb)
    TO gcos_admin, gcos_operator, gcos_sovereign, gcos_council;
