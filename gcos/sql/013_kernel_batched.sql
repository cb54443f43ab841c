-- gcos schema version 13: the kernel runs batched steps (issue 9 item 2: "Rehearsal, commit, rollback and every
-- batch run inside the database").
--
--   gcos.batch_start(spec_hash, plan_hash, run_id, trace_id, break_glass) -> jsonb    gcos_operator, gcos_admin
--   gcos.batch_next(run_id, trace_id, break_glass) -> jsonb                          gcos_operator, gcos_admin
--   gcos.batch_close(run_id, trace_id, break_glass) -> jsonb                         gcos_operator, gcos_admin
--
-- A batched step (mode: batched, seed 002 step 9) is committed in many short transactions, as gcos/batched.py
-- does for the client, but every phase runs here, as gcos_kernel, on the REGISTERED spec and plan:
--
--   batch_start, in the caller's transaction: the caller is a named human operator (a superuser only
--     breaking glass: gcos._kernel_committer); the commit lock; the approval rows FOR SHARE; the world measured
--     as gcos_kernel (gcos._kernel_world); the seven gates (gcos.evaluate_gates). Refused: a commit_refused
--     record, nothing runs. Allowed: the spec's mutation as gcos_kernel, judged as a commit's (footprint against
--     the allow list, kernel invariants, the step's and plan's stops, session residue; success is judged at
--     close), the cursor row read FOR UPDATE, then the policy_decision and batch_started records and the run's
--     row in gcos.batch_runs. An OPEN run of the step (a batch_started record with no later applied commit) is
--     resumed instead (same run id), with batched.py's resume rules: gate 1 also requires the spec and plan
--     hashes the run started with; gate 3 also requires that no stop condition of the step holds on the partly
--     applied world; gate 4 also holds when the rehearsal that opened the run passed and the schema is still the
--     one the run started on. A batch_resumed record {of_seq, resumed_from} joins the new policy decision.
--   batch_next, ONE batch in the caller's transaction (the client calls it in a loop, one transaction per call,
--     with statement_timeout at most 5 s, seed 002's statement limit; refused otherwise): the run's row FOR
--     UPDATE (one runner per run: the caller must be the role and trace that started or resumed it), the
--     approval rows FOR SHARE and gates 5 and 6 again (a revocation stops the run at the next batch: a
--     commit_refused record, the earlier batches stay), the cursor row FOR UPDATE (it must be where the run
--     left it), the next keyset range (after, upto] of batch.table from the cursor, the batch SQL as
--     gcos_kernel in a subtransaction judged there (rows against the allow list; no catalog row written, so no
--     DDL; its source table unwritten; no session residue), the cursor moved compare-and-set and the run's
--     counters, all in that same transaction. A stopped batch is undone and a `stop` record written; the run
--     stays open and resumable. Returns {outcome: batch | done | commit_refused | <stop outcome>, ...}.
--   batch_close, in the caller's transaction once batch_next said done (else it returns outcome "more" and
--     records nothing: keys arrived meanwhile, or the caller skipped batches): the commit lock, gates 5 and 6, the
--     fingerprint after, the footprint since the start against the allow list, the step's and plan's stops, the
--     success evidence. Pass: the `commit` record, with the payload keys of the client's batched commit (state,
--     report and drift project it alike), fingerprint_before = the one taken when the run started, counters
--     of the whole run (every process of it), and "kernel": true. Fail: a `stop` record.
-- Every record of a run carries its run_id, the trace_id of the start or resume it belongs to, "kernel": true
-- and break_glass. The commit names the policy decision of that start or resume (same trace), so it counts.
-- The batch_* kinds are kernel kinds (012): where public is adopted nobody but a superuser appends them.
SET LOCAL ROLE gcos_owner;

-- ----------------------------------------------------------------------------------- the runs

-- A kernel run of a batched step: where it stands, written only by the functions below in the transaction
-- of each phase (so a killed client leaves it exactly at its last committed batch).
CREATE TABLE gcos.batch_runs (
    run_id text PRIMARY KEY CHECK (run_id ~ '^[0-9a-f]{32}$'),
    step_id text NOT NULL,
    spec_hash text NOT NULL REFERENCES gcos.specs (spec_hash),
    plan_hash text NOT NULL REFERENCES gcos.plans (plan_hash),
    size integer NOT NULL CHECK (size > 0),
    fingerprint_before jsonb NOT NULL,          -- the whole fingerprint before the run's first mutation
    started_seq bigint NOT NULL REFERENCES gcos.ledger (seq),   -- batch_started
    segment_seq bigint NOT NULL REFERENCES gcos.ledger (seq),   -- batch_started or the latest batch_resumed
    decision_seq bigint NOT NULL REFERENCES gcos.ledger (seq),  -- that segment's policy decision
    trace_id text NOT NULL CHECK (trace_id ~ '^[0-9a-f]{32}$'), -- that segment's trace
    actor_oid oid NOT NULL,                     -- who runs that segment
    break_glass boolean NOT NULL,
    segment_from bigint,                        -- the watermark that segment started from
    watermark bigint,                           -- the cursor after the last committed batch
    batches integer NOT NULL DEFAULT 0,
    rows_seen bigint NOT NULL DEFAULT 0,
    rows_written bigint NOT NULL DEFAULT 0,
    max_batch_ms integer NOT NULL DEFAULT 0,
    row_deltas jsonb NOT NULL DEFAULT '{}',     -- {table: {inserted, updated, deleted}} of the mutations and batches
    closed_seq bigint REFERENCES gcos.ledger (seq),             -- the commit record
    updated_at timestamptz NOT NULL
);
CREATE INDEX batch_runs_step_idx ON gcos.batch_runs (step_id);
SELECT gcos._guard_table('gcos.batch_runs', 'gcos.batch_start, gcos.batch_next or gcos.batch_close (gcos commit)');
REVOKE ALL ON gcos.batch_runs FROM PUBLIC;
GRANT SELECT ON gcos.batch_runs TO gcos_admin, gcos_operator, gcos_sovereign, gcos_council, gcos_auditor;

-- ----------------------------------------------------------------------------------- kernel executors

-- The cursor row of batch.cursor in gov_worker_cursor (SB-13's cursor table, as batched.CURSOR_TABLE), locked.
CREATE FUNCTION gcos._kernel_cursor(p_worker text, p_source text, OUT found boolean, OUT watermark text,
                                    OUT watermark_kind text, OUT key_column text)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = public, pg_temp SET timezone = 'UTC' SET datestyle = 'ISO, YMD' SET intervalstyle = 'postgres'
AS $$
BEGIN
    SELECT true, c.watermark::text, c.watermark_kind::text, c.key_column::text
      INTO found, watermark, watermark_kind, key_column
      FROM gov_worker_cursor AS c WHERE c.worker_name = p_worker AND c.source = p_source FOR UPDATE;
    found := COALESCE(found, false);
EXCEPTION
    WHEN undefined_table OR undefined_column THEN
        found := false;
END
$$;

-- Move the cursor from p_from to p_to, compare-and-set: 1 when it was still at p_from.
CREATE FUNCTION gcos._kernel_cursor_move(p_worker text, p_source text, p_from text, p_to text) RETURNS integer
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = public, pg_temp SET timezone = 'UTC' SET datestyle = 'ISO, YMD' SET intervalstyle = 'postgres'
AS $$
DECLARE
    v_moved integer;
BEGIN
    UPDATE gov_worker_cursor AS c SET watermark = p_to, updated_at = pg_catalog.now()
     WHERE c.worker_name = p_worker AND c.source = p_source AND c.watermark IS NOT DISTINCT FROM p_from;
    GET DIAGNOSTICS v_moved = ROW_COUNT;
    RETURN v_moved;
END
$$;

-- The next keyset range of at most p_size keys of p_table after p_after (NULL: from the start): how many keys,
-- the lowest and the highest, and the table's identity as the footprint names it.
CREATE FUNCTION gcos._kernel_range(p_table text, p_key text, p_after bigint, p_size integer, OUT source text,
                                   OUT keys bigint, OUT lo bigint, OUT hi bigint)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = public, pg_temp SET timezone = 'UTC' SET datestyle = 'ISO, YMD' SET intervalstyle = 'postgres'
AS $$
DECLARE
    v_rel regclass := pg_catalog.to_regclass(p_table);
BEGIN
    IF v_rel IS NULL THEN
        RAISE EXCEPTION 'gcos: the batch table % does not exist', p_table USING ERRCODE = '42P01';
    END IF;
    SELECT pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname) INTO source
      FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace WHERE c.oid = v_rel;
    EXECUTE pg_catalog.format('SELECT pg_catalog.count(*), pg_catalog.min(k)::bigint, pg_catalog.max(k)::bigint FROM '
                              '(SELECT %1$I AS k FROM %2$s WHERE $1 IS NULL OR %1$I > $1 ORDER BY %1$I LIMIT $2) AS b',
                              p_key, v_rel)
      INTO keys, lo, hi USING p_after, p_size;
END
$$;

-- Keys of p_table in all and at or below p_upto (progress and its ETA).
CREATE FUNCTION gcos._kernel_keys(p_table text, p_key text, p_upto bigint, OUT total bigint, OUT done bigint)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = public, pg_temp SET timezone = 'UTC' SET datestyle = 'ISO, YMD' SET intervalstyle = 'postgres'
AS $$
BEGIN
    EXECUTE pg_catalog.format('SELECT pg_catalog.count(*), pg_catalog.count(*) FILTER (WHERE %I <= $1) FROM %s',
                              p_key, pg_catalog.to_regclass(p_table))
      INTO total, done USING p_upto;
END
$$;

-- One batch (as gcos._kernel_batch), returning the statement's row count.
CREATE FUNCTION gcos._kernel_batch_rows(p_sql text, p_after bigint, p_upto bigint, p_run_id text) RETURNS bigint
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = public, pg_temp SET timezone = 'UTC' SET datestyle = 'ISO, YMD' SET intervalstyle = 'postgres'
AS $$
DECLARE
    v_rows bigint;
BEGIN
    EXECUTE pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(p_sql, '%(after)s', '$1'), '%(upto)s', '$2'),
                               '%(run_id)s', '$3')
      USING p_after, p_upto, p_run_id;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    RETURN v_rows;
END
$$;

-- ----------------------------------------------------------------------------------- helpers

-- The step's open run: its latest batch_started record when no applied commit of the step followed it.
-- {seq, run_id, spec_hash, plan_hash, rehearsal_seq, schema_hash, kernel (the kernel started it)} or NULL.
CREATE FUNCTION gcos._batch_open(p_step text) RETURNS jsonb
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.jsonb_build_object(
               'seq', l.seq, 'run_id', l.record #>> '{payload,run_id}', 'spec_hash', l.spec_hash,
               'plan_hash', l.record #>> '{payload,plan_hash}', 'rehearsal_seq', l.record #> '{payload,rehearsal_seq}',
               'schema_hash', l.record #>> '{payload,fingerprint_before,schema_hash}',
               'kernel', EXISTS (SELECT FROM gcos.batch_runs AS r WHERE r.run_id = l.record #>> '{payload,run_id}'
                                    AND r.started_seq = l.seq))
      FROM gcos.ledger AS l
     WHERE l.kind = 'batch_started' AND l.step_id = p_step
       AND NOT EXISTS (SELECT FROM gcos.ledger AS c WHERE c.kind = 'commit' AND c.step_id = p_step AND c.seq > l.seq
                          AND (c.record #> '{payload,outcome}') = '"applied"'::jsonb)
     ORDER BY l.seq DESC
     LIMIT 1
$$;

-- A decision's allow, failed and refusal, from its gates (as gcos.evaluate_gates words them).
CREATE FUNCTION gcos._batch_decided(p_decision jsonb, p_gates jsonb) RETURNS jsonb
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
    WITH first AS (SELECT e FROM pg_catalog.jsonb_array_elements(p_gates) WITH ORDINALITY AS x(e, o)
                    WHERE (e -> 'allow') = 'false'::jsonb ORDER BY (e -> 'decisive') = 'true'::jsonb DESC, o LIMIT 1)
    SELECT p_decision || pg_catalog.jsonb_build_object(
        'gates', p_gates, 'allow', NOT EXISTS (SELECT FROM first),
        'failed', (SELECT COALESCE(pg_catalog.jsonb_agg(e -> 'gate' ORDER BY o), '[]')
                     FROM pg_catalog.jsonb_array_elements(p_gates) WITH ORDINALITY AS x(e, o) WHERE (e -> 'allow') = 'false'::jsonb),
        'refusal', (SELECT pg_catalog.upper(pg_catalog.left(e ->> 'reason', 1)) || pg_catalog.substr(e ->> 'reason', 2)
                           || COALESCE('; ' || NULLIF(e ->> 'remedy', ''), '') FROM first))
$$;

-- The commit gates adapted to resuming the open run p_open (batched.py's resume rules). A refusal of gate 3
-- because a stop condition holds on the partly applied world is marked "stop_held" (exit 4, not 6).
CREATE FUNCTION gcos._batch_resume_gates(p_decision jsonb, p_open jsonb, p_spec_hash text, p_plan_hash text,
                                         p_schema_now text, p_stops jsonb) RETURNS jsonb
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_sid text := p_decision ->> 'step_id';
    v_run text := p_open ->> 'run_id';
    v_seq bigint := (p_open ->> 'seq')::bigint;
    v_held jsonb := (SELECT e FROM pg_catalog.jsonb_array_elements(p_stops) AS x(e) WHERE (e ->> 'held')::boolean LIMIT 1);
    v_gates jsonb := '[]';
    g jsonb;
BEGIN
    FOR g IN SELECT e FROM pg_catalog.jsonb_array_elements(p_decision -> 'gates') WITH ORDINALITY AS x(e, o) ORDER BY o LOOP
        IF g ->> 'gate' = 'spec' AND (g ->> 'allow')::boolean AND NOT (p_open ->> 'kernel')::boolean THEN
            g := gcos._gate(1, 'spec', false, pg_catalog.format('run %s of %s was started by the client (ledger seq %s) '
                            'before schema public was adopted, and the kernel finishes only the runs it started', v_run, v_sid, v_seq),
                            'gcos adopt --release public', 'release public, finish it with gcos commit ' || v_sid
                            || ', then adopt public again; or run', true, ARRAY[v_seq]);
        ELSIF g ->> 'gate' = 'spec' AND (g ->> 'allow')::boolean
              AND (p_open ->> 'spec_hash' IS DISTINCT FROM p_spec_hash OR p_open ->> 'plan_hash' IS DISTINCT FROM p_plan_hash) THEN
            g := gcos._gate(1, 'spec', false, pg_catalog.format('run %s of %s started (ledger seq %s) with spec %s under plan %s, '
                            'and they are now %s and %s: a run is finished by the spec and plan that started it', v_run, v_sid,
                            v_seq, gcos._short(p_open ->> 'spec_hash'), gcos._short(p_open ->> 'plan_hash'),
                            gcos._short(p_spec_hash), gcos._short(p_plan_hash)), 'gcos commit ' || v_sid,
                            pg_catalog.format('restore the spec and plan as they were at seq %s, then run', v_seq), true, ARRAY[v_seq]);
        ELSIF g ->> 'gate' = 'reverify' AND (g ->> 'allow')::boolean AND v_held IS NOT NULL THEN
            g := gcos._gate(3, 'reverify', false, pg_catalog.format('stop condition %L of %s holds on the partly applied run %s (%s)',
                            v_held ->> 'name', v_sid, v_run, v_held ->> 'detail'), 'gcos verify ' || v_sid,
                            'investigate, then roll the run back by its run id; check with') || '{"stop_held": true}'::jsonb;
        ELSIF g ->> 'gate' = 'reverify' AND (g ->> 'allow')::boolean THEN
            g := g || pg_catalog.jsonb_build_object('reason', pg_catalog.format('%s; no stop condition of %s holds on the partly '
                                                                                'applied run %s', g ->> 'reason', v_sid, v_run));
        ELSIF g ->> 'gate' = 'rehearsal' AND NOT (g ->> 'allow')::boolean AND p_open ->> 'schema_hash' = p_schema_now
              AND pg_catalog.jsonb_typeof(p_open -> 'rehearsal_seq') = 'number' THEN
            g := gcos._gate(4, 'rehearsal', true, pg_catalog.format('resuming run %s: rehearsal seq %s opened it (ledger seq %s) '
                            'and the schema is still the one it started on (%s); as a commit: %s', v_run, p_open ->> 'rehearsal_seq',
                            v_seq, gcos._short(p_schema_now), g ->> 'reason'), '', 'nothing to do', true,
                            ARRAY[(p_open ->> 'rehearsal_seq')::bigint]);
        END IF;
        v_gates := v_gates || pg_catalog.jsonb_build_array(g);
    END LOOP;
    RETURN gcos._batch_decided(p_decision, v_gates);
END
$$;

-- Gates 5 and 6 now (the approval rows are locked by the caller), as a policy decision of those two gates,
-- for run p_run (its trace, kernel, break glass) at p_at ("batch 3", "close").
CREATE FUNCTION gcos._batch_authority(p_run gcos.batch_runs, p_glass boolean, p_at text) RETURNS jsonb
    LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT gcos._batch_decided(d, (SELECT pg_catalog.jsonb_agg(e ORDER BY o)
                                     FROM pg_catalog.jsonb_array_elements(d -> 'gates') WITH ORDINALITY AS x(e, o)
                                    WHERE e ->> 'gate' IN ('approvals', 'decisions')))
           || pg_catalog.jsonb_build_object('trace_id', p_run.trace_id, 'mode', 'batched', 'run_id', p_run.run_id,
                                            'at', p_at, 'kernel', true, 'break_glass', p_glass)
      FROM gcos.evaluate_gates(p_run.spec_hash, p_run.plan_hash, 'commit', '{}') AS d
$$;

-- A run stopped by gates 5 or 6 at p_at: the commit_refused record; the batches before it stay.
CREATE FUNCTION gcos._batch_refused(p_run gcos.batch_runs, p_base jsonb, p_auth jsonb) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v jsonb := p_base || pg_catalog.jsonb_build_object('at', p_auth ->> 'at', 'policy_decision', p_auth, 'refusal', pg_catalog.format(
        '%s (found at %s of run %s); its batches stay, up to key %s, and it resumes once authority is in force again',
        pg_catalog.rtrim(p_auth ->> 'refusal', '.'), p_auth ->> 'at', p_run.run_id, COALESCE(p_run.watermark::text, 'none')));
    v_write record;
BEGIN
    SELECT * INTO v_write FROM gcos._ledger_write('commit_refused', p_run.step_id, p_run.spec_hash, p_run.trace_id, NULL, v);
    RETURN p_base || pg_catalog.jsonb_build_object('outcome', 'commit_refused', 'decision', p_auth, 'message', v ->> 'refusal',
                                                   'ledger_seq', v_write.seq);
END
$$;

-- Catalog rows this transaction wrote so far: a batch that writes one changed the schema (or made a large
-- object, analyzed, ...); a batch writes table rows only.
CREATE FUNCTION gcos._catalog_writes() RETURNS bigint
    LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT COALESCE(pg_catalog.sum(s.n_tup_ins + s.n_tup_upd + s.n_tup_del), 0)::bigint
      FROM pg_catalog.pg_stat_xact_all_tables AS s WHERE s.schemaname = 'pg_catalog'
$$;

-- Row counters added up: {table: {inserted, updated, deleted}}.
CREATE FUNCTION gcos._deltas_add(p_a jsonb, p_b jsonb) RETURNS jsonb
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT COALESCE(pg_catalog.jsonb_object_agg(t.k, pg_catalog.jsonb_build_object(
               'inserted', COALESCE((p_a -> t.k ->> 'inserted')::bigint, 0) + COALESCE((p_b -> t.k ->> 'inserted')::bigint, 0),
               'updated', COALESCE((p_a -> t.k ->> 'updated')::bigint, 0) + COALESCE((p_b -> t.k ->> 'updated')::bigint, 0),
               'deleted', COALESCE((p_a -> t.k ->> 'deleted')::bigint, 0) + COALESCE((p_b -> t.k ->> 'deleted')::bigint, 0))), '{}')
      FROM (SELECT pg_catalog.jsonb_object_keys(COALESCE(p_a, '{}')) AS k
            UNION SELECT pg_catalog.jsonb_object_keys(COALESCE(p_b, '{}'))) AS t
$$;

-- Net rows per watched table between two fingerprints (the whole run, every process of it).
CREATE FUNCTION gcos._rows_net(p_before jsonb, p_after jsonb) RETURNS jsonb
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT COALESCE(pg_catalog.jsonb_object_agg(t.k, t.n), '{}') FROM (
        SELECT k, COALESCE((p_after -> 'tables' -> k ->> 'rows')::bigint, 0) - COALESCE((p_before -> 'tables' -> k ->> 'rows')::bigint, 0) AS n
          FROM (SELECT pg_catalog.jsonb_object_keys(COALESCE(p_before -> 'tables', '{}')) AS k
                UNION SELECT pg_catalog.jsonb_object_keys(COALESCE(p_after -> 'tables', '{}'))) AS keys) AS t
     WHERE t.n <> 0
$$;

-- The run p_run_id, locked, for the session that runs it: open, the trace of its current start or resume,
-- and the same role (another session that resumed it has taken it over).
CREATE FUNCTION gcos._batch_run(p_run_id text, p_trace_id text) RETURNS gcos.batch_runs
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
    ELSIF r.trace_id IS DISTINCT FROM p_trace_id THEN
        RAISE EXCEPTION 'gcos: run % of % was resumed by another gcos commit (ledger seq %); this one stops here', r.run_id,
            r.step_id, r.segment_seq USING ERRCODE = '55000', HINT = 'Run gcos status ' || r.step_id || ' to see where it stands.';
    END IF;
    RETURN r;
END
$$;

-- What a step left in the session between two gcos._session_state(): advisory locks, changed settings.
CREATE FUNCTION gcos._session_residue(p_before jsonb, p_now jsonb) RETURNS jsonb
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT COALESCE(pg_catalog.jsonb_agg(x), '[]') FROM (
        SELECT l AS x FROM pg_catalog.jsonb_array_elements_text(p_now -> 'locks') AS l WHERE NOT (p_before -> 'locks') ? l
        UNION ALL
        SELECT 'setting ' || e.key FROM pg_catalog.jsonb_each(p_now -> 'settings') AS e
         WHERE e.value IS DISTINCT FROM p_before -> 'settings' -> e.key) AS d
$$;

-- A batch runs under seed 002's statement limit: the caller sets statement_timeout (1 ms .. 5 s) for it.
CREATE FUNCTION gcos._batch_limit() RETURNS void
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF (SELECT s.setting::bigint FROM pg_catalog.pg_settings AS s WHERE s.name = 'statement_timeout') NOT BETWEEN 1 AND 5000 THEN
        PERFORM gcos._invalid('gcos: a batch runs under the 5 s statement limit; SET LOCAL statement_timeout = ''5s'' in the transaction that calls gcos.batch_next');
    END IF;
END
$$;

-- ----------------------------------------------------------------------------------- start and batch, judged

-- The mutation of a start or resume (judged as a commit's, success aside: it is judged at close) and the
-- cursor row, locked, in one subtransaction undone when anything is wrong. {watermark, footprint, ...}, with
-- "outcome"/"message" when it was undone.
CREATE FUNCTION gcos._batch_begin(p_spec jsonb, p_plan jsonb, p_before jsonb, p_resume boolean, p_at bigint) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_sid text := p_spec ->> 'id';
    v_where text := pg_catalog.format('gov_worker_cursor (%s, %s)', p_spec #>> '{batch,cursor,worker}', p_spec #>> '{batch,cursor,source}');
    v jsonb := '{}';
    c record;
BEGIN
    BEGIN
        v := gcos._commit_apply(p_spec - 'success', p_plan, 'commit', p_before, NULL);
        IF v ? 'outcome' THEN
            RETURN v;
        END IF;
        SELECT * INTO c FROM gcos._kernel_cursor(p_spec #>> '{batch,cursor,worker}', p_spec #>> '{batch,cursor,source}');
        IF NOT c.found THEN
            v := v || pg_catalog.jsonb_build_object('outcome', 'no_cursor', 'message', pg_catalog.format(
                     '%s has no cursor row %s, so it cannot run resumably; nothing was applied', v_sid, v_where));
        ELSIF c.watermark_kind IS DISTINCT FROM 'int' OR c.key_column IS DISTINCT FROM p_spec #>> '{batch,key}'
              OR c.watermark !~ '^-?[0-9]{1,18}$' THEN
            v := v || pg_catalog.jsonb_build_object('outcome', 'cursor_mismatch', 'message', pg_catalog.format(
                     'the cursor %s is keyed on %s (%s) at %s, not on %s (int) as the batch is; nothing was applied', v_where,
                     c.key_column, c.watermark_kind, COALESCE(c.watermark, 'NULL'), p_spec #>> '{batch,key}'));
        ELSIF p_resume AND c.watermark::bigint IS DISTINCT FROM p_at THEN
            v := v || pg_catalog.jsonb_build_object('outcome', 'cursor_moved', 'message', pg_catalog.format(
                     'the cursor %s is at %s, not at %s where the run''s last batch left it: something else moved it; nothing was applied',
                     v_where, COALESCE(c.watermark, 'NULL'), COALESCE(p_at::text, 'NULL')));
        END IF;
        IF v ? 'outcome' THEN
            RAISE EXCEPTION 'gcos: not started' USING ERRCODE = 'GC100';
        END IF;
        v := v || pg_catalog.jsonb_build_object('watermark', c.watermark::bigint);
    EXCEPTION
        WHEN SQLSTATE 'GC100' THEN
            NULL;
    END;
    RETURN v;
END
$$;

-- One batch (after, upto] as gcos_kernel in a subtransaction, judged there: its source table unwritten, its
-- rows within the allow list, no catalog row written, no session residue; then the cursor moved from the
-- run's watermark. Returns {written, rows, ms} or, undone, {outcome, message, violations}.
CREATE FUNCTION gcos._batch_apply(p_spec jsonb, p_run gcos.batch_runs, p_mark text, p_after bigint, p_upto bigint,
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
            'session_residue', gcos._session_residue(v_state, gcos._session_state()));
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

-- ----------------------------------------------------------------------------------- the entry points

-- The records and the run row of an allowed start (p_open NULL) or resume. Returns the run row.
CREATE FUNCTION gcos._batch_begun(p_spec jsonb, p_plan jsonb, p_plan_hash text, p_run_id text, p_trace_id text,
                                  p_glass boolean, p_open jsonb, p_decision jsonb, p_before jsonb, v jsonb) RETURNS gcos.batch_runs
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_step text := p_spec ->> 'id';
    v_hash text := p_decision ->> 'spec_hash';
    v_base jsonb := pg_catalog.jsonb_build_object('format_version', 1, 'run_id', p_run_id, 'kernel', true, 'break_glass', p_glass,
        'batch', pg_catalog.jsonb_build_object('table', p_spec #> '{batch,table}', 'key', p_spec #> '{batch,key}',
                                               'size', p_spec #> '{batch,size}'));
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
                                     decision_seq, trace_id, actor_oid, break_glass, segment_from, watermark, row_deltas, updated_at)
        VALUES (p_run_id, v_step, v_hash, p_plan_hash, (p_spec #>> '{batch,size}')::integer, p_before, v_marker.seq, v_marker.seq,
                v_decision.seq, p_trace_id, (SELECT a.role_oid FROM gcos._session_actor() AS a), p_glass,
                (v ->> 'watermark')::bigint, (v ->> 'watermark')::bigint, COALESCE(v #> '{footprint,rows}', '{}'),
                pg_catalog.clock_timestamp())
        RETURNING * INTO r;
    ELSE
        SELECT * INTO v_marker FROM gcos._ledger_write('batch_resumed', v_step, v_hash, p_trace_id, NULL, v_base || pg_catalog.jsonb_build_object(
            'of_seq', (p_open ->> 'seq')::bigint, 'policy_decision_seq', v_decision.seq,
            'cursor', v_cursor || pg_catalog.jsonb_build_object('resumed_from', v ->> 'watermark')));
        UPDATE gcos.batch_runs AS b
           SET segment_seq = v_marker.seq, decision_seq = v_decision.seq, trace_id = p_trace_id, break_glass = p_glass,
               actor_oid = (SELECT a.role_oid FROM gcos._session_actor() AS a), segment_from = (v ->> 'watermark')::bigint,
               row_deltas = gcos._deltas_add(b.row_deltas, v #> '{footprint,rows}'), updated_at = pg_catalog.clock_timestamp()
         WHERE b.run_id = p_run_id
        RETURNING * INTO r;
    END IF;
    RETURN r;
END
$$;

CREATE FUNCTION gcos.batch_start(p_spec_hash text, p_plan_hash text, p_run_id text, p_trace_id text,
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
    v_decision := v_decision || pg_catalog.jsonb_build_object('trace_id', p_trace_id, 'mode', 'batched', 'run_id', v_run,
                                                              'kernel', true, 'break_glass', v_glass);
    v_base := pg_catalog.jsonb_build_object('run_id', v_run, 'action', 'commit', 'mode', 'batched', 'kernel', true,
                                            'break_glass', v_glass, 'resumed', v_open IS NOT NULL);
    IF NOT (v_decision ->> 'allow')::boolean THEN
        SELECT * INTO v_write FROM gcos._ledger_write('commit_refused', v_step, p_spec_hash, p_trace_id, NULL,
                                                      v_base || pg_catalog.jsonb_build_object('policy_decision', v_decision));
        RETURN v_base || pg_catalog.jsonb_build_object('outcome', 'commit_refused', 'decision', v_decision,
                                                       'message', v_decision ->> 'refusal', 'ledger_seq', v_write.seq);
    END IF;
    v := gcos._batch_begin(v_spec, v_plan, w -> 'fingerprint', v_open IS NOT NULL,
                           (SELECT b.watermark FROM gcos.batch_runs AS b WHERE b.run_id = v_run));
    IF v ? 'outcome' THEN
        SELECT * INTO v_write FROM gcos._ledger_write('stop', v_step, p_spec_hash, p_trace_id, NULL,
            v_base || pg_catalog.jsonb_build_object('outcome', v -> 'outcome', 'reason', v -> 'message',
                                                    'allow_violations', COALESCE(v -> 'violations', '[]')));
        RETURN v_base || pg_catalog.jsonb_build_object('outcome', v -> 'outcome', 'message', v -> 'message', 'decision', v_decision,
                                                       'stops', COALESCE(v -> 'stops', '[]'), 'ledger_seq', v_write.seq);
    END IF;
    r := gcos._batch_begun(v_spec, v_plan, p_plan_hash, v_run, p_trace_id, v_glass, v_open, v_decision, w -> 'fingerprint', v);
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

CREATE FUNCTION gcos.batch_next(p_run_id text, p_trace_id text, p_break_glass boolean DEFAULT false) RETURNS jsonb
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
        SELECT * INTO v_write FROM gcos._ledger_write('stop', r.step_id, r.spec_hash, r.trace_id, NULL,
            v_base || pg_catalog.jsonb_build_object('outcome', v -> 'outcome', 'reason', v -> 'message', 'after', v_after,
                                                    'upto', v_upto, 'allow_violations', COALESCE(v -> 'violations', '[]')));
        RETURN v_base || pg_catalog.jsonb_build_object('outcome', v -> 'outcome', 'message', v -> 'message',
                                                       'watermark', r.watermark, 'ledger_seq', v_write.seq);
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

-- What close judges on the world the run made: the footprint since the start against the allow list,
-- sequences set back, the step's and plan's stops, the success evidence. {after, footprint, violations, stops, success}.
CREATE FUNCTION gcos._batch_judged(p_spec jsonb, p_plan jsonb, p_before jsonb) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_after jsonb := gcos._kernel_fingerprint(ARRAY(SELECT pg_catalog.jsonb_array_elements_text(COALESCE(p_spec -> 'watch', '[]'))));
    v_probe jsonb := gcos.footprint_probe();  -- relation kinds for the footprint; this transaction wrote no rows yet
    v_fp jsonb := gcos.footprint(p_before, v_after, v_probe, v_probe);
BEGIN
    RETURN pg_catalog.jsonb_build_object(
        'after', v_after, 'footprint', v_fp,
        'violations', gcos.allow_violations(p_spec #> '{mutation,allow}', v_fp) || gcos._sequences_back(p_before, v_after),
        'stops', (SELECT COALESCE(pg_catalog.jsonb_agg(gcos._kernel_stop(e, pg_catalog.jsonb_array_length(v_fp -> 'new_tables')) ORDER BY o), '[]')
                    FROM pg_catalog.jsonb_array_elements(COALESCE(p_spec -> 'stop', '[]') || COALESCE(p_plan -> 'global_stop', '[]'))
                         WITH ORDINALITY AS x(e, o)),
        'success', gcos._kernel_checks(p_spec -> 'success'));
END
$$;

-- The commit record of a closed run: the payload keys of batched.py's commit, the whole run's counters.
CREATE FUNCTION gcos._batch_commit_payload(r gcos.batch_runs, p_spec jsonb, p_plan jsonb, v jsonb) RETURNS jsonb
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
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
        'batch_started_seq', r.started_seq, 'resumed', r.segment_seq <> r.started_seq)
$$;

CREATE FUNCTION gcos.batch_close(p_run_id text, p_trace_id text, p_break_glass boolean DEFAULT false) RETURNS jsonb
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
    v := gcos._batch_judged(v_spec, v_plan, r.fingerprint_before);
    SELECT * INTO v_verdict FROM gcos._commit_verdict(r.step_id, v);
    IF v_verdict.outcome IS NOT NULL THEN
        v := v || pg_catalog.jsonb_build_object('outcome', v_verdict.outcome, 'message', pg_catalog.format(
                 '%s. The rows run %s wrote stay (idempotent, marked with the run id; the cursor is at %s): the step''s rollback '
                 'evidence removes them by run, or fix the cause and commit again to close the run', v_verdict.message, r.run_id,
                 COALESCE(r.watermark::text, 'the start')));
        SELECT * INTO v_write FROM gcos._ledger_write('stop', r.step_id, r.spec_hash, r.trace_id, NULL, v_base || pg_catalog.jsonb_build_object(
            'outcome', v -> 'outcome', 'reason', v -> 'message', 'stops', v -> 'stops', 'success', v -> 'success',
            'allow_violations', v -> 'violations'));
        RETURN v_base || pg_catalog.jsonb_build_object('outcome', v -> 'outcome', 'message', v -> 'message', 'stops', v -> 'stops',
                                                       'success', v -> 'success', 'ledger_seq', v_write.seq);
    END IF;
    v_record := v_base || gcos._batch_commit_payload(r, v_spec, v_plan, v);
    SELECT * INTO v_write FROM gcos._ledger_write('commit', r.step_id, r.spec_hash, r.trace_id, NULL, v_record);
    UPDATE gcos.batch_runs AS b SET closed_seq = v_write.seq, updated_at = pg_catalog.clock_timestamp() WHERE b.run_id = r.run_id;
    RETURN (v_record - 'fingerprint_after_full') || pg_catalog.jsonb_build_object(
        'ledger_seq', v_write.seq, 'stops', v -> 'stops', 'success', v -> 'success',
        'message', pg_catalog.format('%s committed in the kernel in batches: %s batch(es) of up to %s keys, %s row(s) written, the slowest '
                                     '%s ms (limit 5s); ledger seq %s, run %s', r.step_id, r.batches, r.size, r.rows_written,
                                     r.max_batch_ms, v_write.seq, r.run_id));
END
$$;

-- ----------------------------------------------------------------------------------- ownership and grants

RESET ROLE;
-- The executors act as gcos_kernel, the owner of the adopted schemas (as 011's).
ALTER FUNCTION gcos._kernel_cursor(text, text) OWNER TO gcos_kernel;
ALTER FUNCTION gcos._kernel_cursor_move(text, text, text, text) OWNER TO gcos_kernel;
ALTER FUNCTION gcos._kernel_range(text, text, bigint, integer) OWNER TO gcos_kernel;
ALTER FUNCTION gcos._kernel_keys(text, text, bigint) OWNER TO gcos_kernel;
ALTER FUNCTION gcos._kernel_batch_rows(text, bigint, bigint, text) OWNER TO gcos_kernel;
REVOKE ALL ON FUNCTION gcos._kernel_cursor(text, text), gcos._kernel_cursor_move(text, text, text, text),
    gcos._kernel_range(text, text, bigint, integer), gcos._kernel_keys(text, text, bigint),
    gcos._kernel_batch_rows(text, bigint, bigint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gcos._kernel_cursor(text, text), gcos._kernel_cursor_move(text, text, text, text),
    gcos._kernel_range(text, text, bigint, integer), gcos._kernel_keys(text, text, bigint),
    gcos._kernel_batch_rows(text, bigint, bigint, text) TO gcos_owner;
SET LOCAL ROLE gcos_owner;

REVOKE ALL ON FUNCTION gcos._batch_open(text), gcos._batch_decided(jsonb, jsonb),
    gcos._batch_resume_gates(jsonb, jsonb, text, text, text, jsonb), gcos._batch_authority(gcos.batch_runs, boolean, text),
    gcos._batch_refused(gcos.batch_runs, jsonb, jsonb),
    gcos._catalog_writes(), gcos._deltas_add(jsonb, jsonb), gcos._rows_net(jsonb, jsonb), gcos._batch_run(text, text),
    gcos._session_residue(jsonb, jsonb), gcos._batch_commit_payload(gcos.batch_runs, jsonb, jsonb, jsonb),
    gcos._batch_limit(), gcos._batch_begin(jsonb, jsonb, jsonb, boolean, bigint),
    gcos._batch_apply(jsonb, gcos.batch_runs, text, bigint, bigint, text),
    gcos._batch_begun(jsonb, jsonb, text, text, text, boolean, jsonb, jsonb, jsonb, jsonb), gcos._batch_judged(jsonb, jsonb, jsonb),
    gcos.batch_start(text, text, text, text, boolean), gcos.batch_next(text, text, boolean), gcos.batch_close(text, text, boolean)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gcos.batch_start(text, text, text, text, boolean), gcos.batch_next(text, text, boolean),
    gcos.batch_close(text, text, boolean) TO gcos_operator, gcos_admin;
