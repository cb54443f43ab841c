-- gcos schema version 22: every record is written durably, and run ids derive from content (issue 10, items 11 and 8).
--
-- Item 11, "approvals, decisions, revocations and rehearsal records are written with synchronous_commit = on, like
-- commits", held by the database whatever the client set: every record enters gcos.ledger through one INSERT
-- (gcos._ledger_write, the one writer of 001/008, called by every aperture: add_principal, register_spec and
-- register_plan, record_approval, record_decision, revoke_*, adopt and release, record_drift, rehearse, commit,
-- batch_start, batch_next, batch_close), so two triggers on that table raise synchronous_commit to on for the rest
-- of the writing transaction (set_config(..., true): a function's SET clause would be undone when it returns):
--   gcos_ledger_durable             AFTER INSERT, row: as soon as a record is written (SHOW reads on after the call);
--   gcos_ledger_durable_at_commit   a constraint trigger, DEFERRABLE INITIALLY DEFERRED: again at COMMIT, so a
--                                   client that lowers it after the call is overruled when the transaction commits.
-- Both only raise (off, local, remote_write -> on; remote_apply, stronger, stays). Limit: a client may run
-- SET CONSTRAINTS ALL IMMEDIATE and then lower the setting again before COMMIT; PostgreSQL has no way to forbid a
-- user-settable parameter, so that client deliberately weakens only its own transaction's durability.
--
-- Item 8, "run ids and idempotency keys derive from content (spec hash, plan hash, the database's identity, the
-- ledger position), never uuid4" (seed 003 A3):
--   gcos.run_id(spec_hash, plan_hash, action, ledger_seq) -> text                 the gcos roles
--     = lpad(to_hex(ledger_seq), 12, '0')
--       || left(sha256_hex(gcos.jcs({"action", "database": {"system_identifier", "database_oid"}, "ledger_seq",
--                                    "plan_hash", "spec_hash"})), 20)
--     action is rehearse, commit or rollback (a batched run is a commit); ledger_seq is the ledger head's seq when
--     the run was derived (0: empty ledger); the database is gcos.database_incarnation() (a clone or a restored
--     copy is another database, so its ids differ). 32 lowercase hex, as before; the position leads, so the
--     kernel can recompute an id a client brings.
--   A rehearsal: the kernel derives it (gcos._rehearse_measured, replaced below: the one change is v_run) at the
--     head it starts on. A commit, rollback or batched start: the client reads the head and derives the id in its
--     session just before the call (it must know the id before COMMIT, to settle a dropped COMMIT by run id:
--     gcos/kernel.py settle_in_doubt); gcos.commit and gcos.batch_start now refuse (22023) an id that does not
--     recompute from its own position, names a position past the head, or names a run already recorded for the
--     step (a stale position), then run the kernel as before (gcos._commit_kernel, gcos._batch_start_kernel: the
--     functions of 019 and 013, renamed). A retry at the same position gets the same id; any record moves the
--     head, so the next attempt gets another. A resumed batched run keeps the id of its start.
--   The step 9 batch SQL keys candidate_scan_run by %(run_id)s, the kernel's run id: deterministic with it.
SET LOCAL ROLE gcos_owner;

-- ----------------------------------------------------------------------------------- item 11: durable records

-- Raise synchronous_commit to on for the rest of the writing transaction (never lower remote_apply).
CREATE FUNCTION gcos._ledger_durable() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF pg_catalog.current_setting('synchronous_commit') IN ('off', 'local', 'remote_write') THEN
        PERFORM pg_catalog.set_config('synchronous_commit', 'on', true);
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION gcos._ledger_durable() FROM PUBLIC;

RESET ROLE;
CREATE TRIGGER gcos_ledger_durable AFTER INSERT ON gcos.ledger
    FOR EACH ROW EXECUTE FUNCTION gcos._ledger_durable();
CREATE CONSTRAINT TRIGGER gcos_ledger_durable_at_commit AFTER INSERT ON gcos.ledger
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION gcos._ledger_durable();
ALTER TABLE gcos.ledger ENABLE ALWAYS TRIGGER gcos_ledger_durable;
ALTER TABLE gcos.ledger ENABLE ALWAYS TRIGGER gcos_ledger_durable_at_commit;
SET LOCAL ROLE gcos_owner;

-- ----------------------------------------------------------------------------------- item 8: run ids

CREATE FUNCTION gcos.run_id(p_spec_hash text, p_plan_hash text, p_action text, p_ledger_seq bigint) RETURNS text
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_db record;
BEGIN
    IF p_spec_hash IS NULL OR p_spec_hash !~ '^[0-9a-f]{64}$' OR p_plan_hash IS NULL OR p_plan_hash !~ '^[0-9a-f]{64}$'
       OR p_action IS NULL OR p_action NOT IN ('rehearse', 'commit', 'rollback')
       OR p_ledger_seq IS NULL OR p_ledger_seq < 0 OR p_ledger_seq >= 281474976710656 THEN
        PERFORM gcos._invalid('gcos: a run id derives from a spec hash, a plan hash (64 hex each), an action (rehearse, commit or rollback) and a ledger seq (0 to 2^48-1)');
    END IF;
    SELECT * INTO v_db FROM gcos.database_incarnation();
    RETURN pg_catalog.lpad(pg_catalog.to_hex(p_ledger_seq), 12, '0') || pg_catalog.left(pg_catalog.encode(pg_catalog.sha256(
        pg_catalog.convert_to(gcos.jcs(pg_catalog.jsonb_build_object(
            'action', p_action, 'spec_hash', p_spec_hash, 'plan_hash', p_plan_hash, 'ledger_seq', p_ledger_seq,
            'database', pg_catalog.jsonb_build_object('system_identifier', v_db.system_identifier,
                                                      'database_oid', v_db.database_oid::bigint))), 'UTF8')), 'hex'), 20);
END
$$;

-- Refuse (22023) a run id a client brings unless it is gcos.run_id of this spec, plan and action at the position it
-- names, that position is not past the ledger head, and no record of the step carries it yet. Malformed calls
-- pass through: the kernel function refuses them with its own message.
CREATE FUNCTION gcos._run_id_derived(p_spec_hash text, p_plan_hash text, p_action text, p_run_id text) RETURNS void
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_step text := (SELECT s.document ->> 'id' FROM gcos.specs AS s WHERE s.spec_hash = p_spec_hash);
    v_seq bigint;
    v_used bigint;
BEGIN
    IF v_step IS NULL OR p_plan_hash IS NULL OR p_plan_hash !~ '^[0-9a-f]{64}$' OR p_action IS NULL
       OR p_action NOT IN ('commit', 'rollback') OR p_run_id IS NULL OR p_run_id !~ '^[0-9a-f]{32}$' THEN
        RETURN;
    END IF;
    v_seq := ('x' || pg_catalog.left(p_run_id, 12))::bit(48)::bigint;
    IF p_run_id <> gcos.run_id(p_spec_hash, p_plan_hash, p_action, v_seq)
       OR v_seq > (SELECT h.seq FROM gcos.ledger_head AS h WHERE h.singleton) THEN
        PERFORM gcos._invalid(pg_catalog.format(
            'gcos: run id %s of %s is not derived from its content and the ledger; derive it just before the call: SELECT gcos.run_id(spec_hash, plan_hash, %L, seq) FROM gcos.ledger_head (gcos %s does)',
            p_run_id, v_step, p_action, p_action));
    END IF;
    SELECT l.seq INTO v_used FROM gcos.ledger AS l
     WHERE l.step_id = v_step AND l.record #>> '{payload,run_id}' = p_run_id ORDER BY l.seq LIMIT 1;
    IF v_used IS NOT NULL THEN
        PERFORM gcos._invalid(pg_catalog.format(
            'gcos: run id %s of %s is already recorded (ledger seq %s): it was derived at a stale position; derive a new one from the current ledger head',
            p_run_id, v_step, v_used));
    END IF;
END
$$;

ALTER FUNCTION gcos.commit(text, text, text, text, text, boolean) RENAME TO _commit_kernel;
CREATE FUNCTION gcos.commit(p_spec_hash text, p_plan_hash text, p_action text, p_run_id text,
                            p_trace_id text, p_break_glass boolean DEFAULT false) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM gcos._kernel_committer(p_break_glass);  -- who, before what: the caller is refused first
    PERFORM gcos._run_id_derived(p_spec_hash, p_plan_hash, p_action, p_run_id);
    RETURN gcos._commit_kernel(p_spec_hash, p_plan_hash, p_action, p_run_id, p_trace_id, p_break_glass);
END
$$;

ALTER FUNCTION gcos.batch_start(text, text, text, text, boolean) RENAME TO _batch_start_kernel;
CREATE FUNCTION gcos.batch_start(p_spec_hash text, p_plan_hash text, p_run_id text, p_trace_id text,
                                 p_break_glass boolean DEFAULT false) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM gcos._kernel_committer(p_break_glass);
    PERFORM gcos._run_id_derived(p_spec_hash, p_plan_hash, 'commit', p_run_id);
    RETURN gcos._batch_start_kernel(p_spec_hash, p_plan_hash, p_run_id, p_trace_id, p_break_glass);
END
$$;

-- As 011 (016 renamed it), but its run id is gcos.run_id(spec, plan, 'rehearse', the ledger head it starts on),
-- no longer gen_random_uuid().
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
    v := pg_catalog.jsonb_build_object('reverify', gcos._kernel_checks(v_spec -> 'reverify'));
    v_first := (SELECT e.value FROM pg_catalog.jsonb_array_elements(v -> 'reverify') AS e
                 WHERE NOT (e.value ->> 'ok')::boolean LIMIT 1);
    IF v_first IS NOT NULL THEN
        v_outcome := 'reverify_mismatch';
        v_message := pg_catalog.format('re-verify of %s failed: %L expected %s, got %s; the live world is not what the spec expects',
                                       v_step, v_first ->> 'name', v_first -> 'expected',
                                       COALESCE('error: ' || (v_first ->> 'error'), (v_first -> 'actual')::text));
    ELSE
        v := v || pg_catalog.jsonb_build_object('entry', gcos._kernel_fingerprint(v_watch));
        v := v || gcos._rehearse_inside(v_spec, v_plan, v -> 'entry', v_run);
        SELECT * INTO r FROM gcos._rehearsal_outcome(v_step, v);
        v_exit := gcos._kernel_fingerprint(v_watch);
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
        'duration_us', (EXTRACT(epoch FROM pg_catalog.clock_timestamp() - v_started) * 1000000)::bigint);
    SELECT * INTO v_write FROM gcos._ledger_write('rehearsal', v_step, p_spec_hash, p_trace_id, NULL, v_payload);
    RETURN v_payload || pg_catalog.jsonb_build_object('ledger_seq', v_write.seq, 'ledger_hash', v_write.hash);
END
$$;

-- ----------------------------------------------------------------------------------- ownership and grants

RESET ROLE;
REVOKE ALL ON FUNCTION gcos.run_id(text, text, text, bigint), gcos._run_id_derived(text, text, text, text),
    gcos.commit(text, text, text, text, text, boolean), gcos.batch_start(text, text, text, text, boolean) FROM PUBLIC;
-- The renamed kernel functions keep the grants they had under their old names: only the wrappers call them now.
REVOKE ALL ON FUNCTION gcos._commit_kernel(text, text, text, text, text, boolean),
    gcos._batch_start_kernel(text, text, text, text, boolean) FROM PUBLIC, gcos_operator, gcos_admin;
GRANT EXECUTE ON FUNCTION gcos.run_id(text, text, text, bigint)
    TO gcos_admin, gcos_operator, gcos_sovereign, gcos_council, gcos_auditor;
GRANT EXECUTE ON FUNCTION gcos.commit(text, text, text, text, text, boolean),
    gcos.batch_start(text, text, text, text, boolean) TO gcos_operator, gcos_admin;
