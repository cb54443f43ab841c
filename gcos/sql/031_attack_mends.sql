-- gcos schema version 31: the holes session 18's attacks found in 024-028 (tests/test_attacks_s18.py), mended.
--
-- * Out-of-order rollback (028): a later commit in force that created, changed or dropped a function, procedure,
--   trigger or event trigger overlaps every earlier step. The catalog records no dependency of a plpgsql body on the
--   tables it reads or writes (nor of a trigger's function on them), so gcos cannot rule the overlap out: it fails
--   closed, names the commit, what code it changed, and the order (gcos._commit_code, gcos._rollback_out_of_order,
--   gcos._gate_rehearsal_rollback).
-- * batch.finish / batch.on_stop (027): setval is not transactional, so a worker SQL that set a sequence back left
--   it set back after it was undone. gcos._batch_worker now reads the sequences before the worker SQL and, when one
--   went back, puts it back where it was (only ever forward) and undoes the worker with a sequence_state violation.
-- * Traces (026): gcos.rehearse refuses (22023) a trace id that already carries records of another step or spec
--   (the registration of this spec and plan under it is fine): a new run takes a new trace.
-- * gcos.record_approval (026): the rehearsal an approval names must be a passing rehearsal of the same spec hash
--   and plan hash (22023 otherwise).
-- * Decisions (024): the latest word in force on a decision wins. A later non-approve record (reject, defer, ...)
--   that is unrevoked, unexpired, of this database and by a human who was and is a sovereign overrides an earlier
--   approve whatever text it bound (and whoever commits): gate 6 says "stands at reject (record N by X ...)".
SET LOCAL ROLE gcos_owner;

-- ----------------------------------------------------------------------------------- 028: code in a later commit

-- The functions, procedures, triggers and event triggers a commit record (its payload) created, changed or dropped,
-- as "category identity"; NULL when its schema before is not recorded in full.
CREATE FUNCTION gcos._commit_code(p jsonb) RETURNS text[]
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN b.s IS NOT NULL AND pg_catalog.jsonb_typeof(p #> '{fingerprint_after_full,schema}') = 'object' THEN
               (SELECT COALESCE(pg_catalog.array_agg(o.category || ' ' || o.identity ORDER BY o.category, o.identity COLLATE "C"), '{}')
                  FROM gcos._schema_changes(b.s, p #> '{fingerprint_after_full,schema}') AS o
                 WHERE o.category IN ('function', 'procedure', 'trigger', 'event_trigger')) END
      FROM (SELECT gcos._schema_at(p #>> '{fingerprint_before,schema_hash}') AS s) AS b
$$;

-- FROM 028_rollback_out_of_order.sql: a later commit in force that changed code (gcos._commit_code) overlaps
-- (verdict overlap gains "code": which commits count for that alone, and what they changed).
CREATE OR REPLACE FUNCTION gcos._rollback_out_of_order(p_seq bigint, p_now text) RETURNS jsonb
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p jsonb := (SELECT l.record -> 'payload' FROM gcos.ledger AS l WHERE l.seq = p_seq);
    v_units text[];
    v_blocked text[] := '{}';
    v_later text[] := '{}';
    v_order text[] := '{}';
    v_code text[] := '{}';
    v_first text;
    v_changed text[];
    l record;
    u text[];
    c text[];
BEGIN
    IF p_now IS DISTINCT FROM (SELECT g.payload #>> '{fingerprint_after,schema_hash}' FROM gcos._governed_after(0) AS g
                                ORDER BY g.seq DESC LIMIT 1) THEN
        RETURN '{"verdict": "drift"}';
    END IF;
    v_units := gcos._commit_units(p);
    IF v_units IS NULL OR gcos._schema_at(p_now) IS NULL THEN
        RETURN '{"verdict": "unknown"}';
    END IF;
    FOR l IN SELECT g.seq, g.step_id, g.payload FROM gcos._governed_after(p_seq) AS g WHERE g.in_force ORDER BY g.seq LOOP
        u := gcos._commit_units(l.payload);
        c := gcos._commit_code(l.payload);
        v_later := v_later || pg_catalog.format('%s (commit seq %s)', l.step_id, l.seq);
        IF u IS NULL OR u && (v_units || v_blocked) OR pg_catalog.cardinality(c) > 0 THEN
            IF u IS NOT NULL AND NOT u && (v_units || v_blocked) THEN
                v_code := v_code || pg_catalog.format('%s (commit seq %s) changed %s%s', l.step_id, l.seq,
                                                      pg_catalog.array_to_string(c[1:3], ', '),
                                                      CASE WHEN pg_catalog.cardinality(c) > 3 THEN ' and more' ELSE '' END);
            END IF;
            v_blocked := v_blocked || COALESCE(u, '{}');
            v_order := pg_catalog.format('%s (commit seq %s)', l.step_id, l.seq) || v_order;
            v_first := l.step_id;
        END IF;
    END LOOP;
    IF v_first IS NOT NULL THEN
        RETURN pg_catalog.jsonb_build_object('verdict', 'overlap', 'order', pg_catalog.array_to_string(v_order, ', then '),
                                             'first', v_first, 'code', NULLIF(pg_catalog.array_to_string(v_code, '; '), ''));
    END IF;
    SELECT pg_catalog.array_agg(o.category || ' ' || o.identity ORDER BY o.category, o.identity COLLATE "C") INTO v_changed
      FROM gcos._schema_changes(gcos._schema_at(p #>> '{fingerprint_before,schema_hash}'), p #> '{fingerprint_after_full,schema}') AS o
     WHERE (gcos._schema_at(p_now) -> o.category ->> o.identity) IS DISTINCT FROM o.after;
    IF v_changed IS NOT NULL THEN
        RETURN pg_catalog.jsonb_build_object('verdict', 'drift', 'changed', pg_catalog.array_to_string(v_changed[1:3], ', '));
    END IF;
    RETURN pg_catalog.jsonb_build_object('verdict', 'allow', 'later', COALESCE(pg_catalog.array_to_string(v_later, ', '), ''),
        'objects', (SELECT pg_catalog.count(*) FROM gcos._schema_changes(gcos._schema_at(p #>> '{fingerprint_before,schema_hash}'),
                                                                         p #> '{fingerprint_after_full,schema}')));
END
$$;

-- FROM 028_rollback_out_of_order.sql: an overlap by code says so.
CREATE OR REPLACE FUNCTION gcos._gate_rehearsal_rollback(c jsonb) RETURNS jsonb
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_sid text := c ->> 'step_id';
    r jsonb := c -> 'rehearsal';
    v_commit text := c #>> '{history,commit_seq}';
    v_after text := c #>> '{history,commit_schema_hash}';
    v_now text := c #>> '{world,schema_hash}';
    a jsonb;
    v_later text;
    v_last text;
BEGIN
    IF v_commit IS NULL THEN
        RETURN gcos._gate(4, 'rehearsal', false, v_sid || ' has no commit in force to roll back', 'gcos status ' || v_sid, 'check with');
    ELSIF r IS NULL OR r ->> 'outcome' IS DISTINCT FROM 'passed' OR r ->> 'spec_hash' IS DISTINCT FROM c ->> 'spec_hash' THEN
        RETURN gcos._gate(4, 'rehearsal', false, pg_catalog.format('no passing rehearsal of spec %s preceded %s''s commit (seq '
                          '%s), so its rollback evidence is unproven', gcos._short(c ->> 'spec_hash'), v_sid, v_commit),
                          'gcos status ' || v_sid, 'check with');
    ELSIF v_now IS NULL THEN
        RETURN gcos._gate(4, 'rehearsal', false, pg_catalog.format('rehearsal seq %s proved the rollback evidence; the schema '
                          'is compared with the one after commit seq %s when rolling back', r ->> 'seq', v_commit),
                          'gcos rollback ' || v_sid, 'compared by', false, ARRAY[(r ->> 'seq')::bigint]);
    ELSIF v_after IS NULL OR v_now <> v_after OR EXISTS (SELECT FROM gcos._governed_after(v_commit::bigint)) THEN
        a := gcos._rollback_out_of_order(v_commit::bigint, v_now);
        IF a ->> 'verdict' = 'allow' THEN
            RETURN gcos._gate(4, 'rehearsal', true, pg_catalog.format('rehearsal seq %s proved the rollback evidence; %s changed '
                              '%s schema objects, all as commit seq %s left them, and no later commit in force (%s) overlaps '
                              'its footprint: it rolls back out of order, back to its state before the commit, nothing else '
                              'changed', r ->> 'seq', v_sid, a ->> 'objects', v_commit, COALESCE(NULLIF(a ->> 'later', ''), 'none')),
                              '', 'nothing to do', true, ARRAY[(r ->> 'seq')::bigint]);
        ELSIF a ->> 'verdict' = 'overlap' THEN
            RETURN gcos._gate(4, 'rehearsal', false, pg_catalog.format('%s was committed at seq %s and later commits in force '
                              'overlap its footprint%s; roll them back first, latest first: %s; then %s', v_sid, v_commit,
                              COALESCE(' (' || (a ->> 'code') || ': gcos cannot see what a function or trigger body reads '
                                       'or writes, so code changed later counts as an overlap)', ''),
                              a ->> 'order', v_sid), 'gcos rollback ' || (a ->> 'first'), 'start with');
        ELSIF a ->> 'verdict' = 'unknown' AND v_after IS NOT DISTINCT FROM v_now THEN
            NULL;  -- as before: the schema is as the commit left it, and the proof is the fingerprint before it
        ELSIF a ->> 'verdict' = 'unknown' THEN
            SELECT pg_catalog.string_agg(pg_catalog.format('%s (commit seq %s)', g.step_id, g.seq), ', then ' ORDER BY g.seq DESC),
                   (pg_catalog.array_agg(g.step_id ORDER BY g.seq DESC))[1]
              INTO v_later, v_last
              FROM gcos._governed_after(v_commit::bigint) AS g WHERE g.in_force;
            IF v_later IS NOT NULL THEN
                RETURN gcos._gate(4, 'rehearsal', false, pg_catalog.format('%s was committed at seq %s and later commits changed '
                                  'the schema since; the ledger does not record the schema before one of these commits in full, '
                                  'so no overlap can be ruled out; roll them back first, latest first: %s; then %s', v_sid,
                                  v_commit, v_later, v_sid), 'gcos rollback ' || v_last, 'start with');
            END IF;
        END IF;
        IF a ->> 'verdict' <> 'unknown' OR v_after IS DISTINCT FROM v_now THEN
            RETURN gcos._gate(4, 'rehearsal', false, pg_catalog.format('database changed since the commit of %s (seq %s: schema '
                              '%s, now %s)%s and no later commit did it — its rollback evidence no longer applies', v_sid, v_commit,
                              gcos._short(v_after), gcos._short(v_now), COALESCE(': ' || (a ->> 'changed'), '')),
                              'gcos drift', 'find what changed with');
        END IF;
    END IF;
    RETURN gcos._gate(4, 'rehearsal', true, pg_catalog.format('rehearsal seq %s proved the rollback evidence and the '
                      'schema is as commit seq %s left it', r ->> 'seq', v_commit), '', 'nothing to do', true,
                      ARRAY[(r ->> 'seq')::bigint]);
END
$$;

-- ----------------------------------------------------------------------------------- 027: a worker's sequences

-- FROM 027_batch_stops.sql: a sequence the worker SQL set back is put back where it was (setval survives the
-- undo) and the worker is undone with a sequence_state violation.
CREATE OR REPLACE FUNCTION gcos._batch_worker(p_spec jsonb, p_key text) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_sql text := p_spec #>> ARRAY['batch', p_key];
    v jsonb := pg_catalog.jsonb_build_object('key', p_key);
    v_probe jsonb;
    v_catalog bigint;
    v_fp jsonb;
    v_seqs jsonb;
    v_back jsonb;
    s record;
BEGIN
    IF v_sql IS NULL THEN
        RETURN NULL;
    END IF;
    v_seqs := pg_catalog.jsonb_build_object('sequences', gcos._kernel_fingerprint('{}') -> 'sequences');
    v_probe := gcos.footprint_probe();
    v_catalog := gcos._catalog_writes();
    BEGIN
        PERFORM gcos._kernel_exec(v_sql);
        v_fp := gcos.footprint('{}', '{}', v_probe, gcos.footprint_probe());
        v_catalog := gcos._catalog_writes() - v_catalog;
        v_back := gcos._sequences_back(v_seqs, pg_catalog.jsonb_build_object('sequences', gcos._kernel_fingerprint('{}') -> 'sequences'));
        v := v || pg_catalog.jsonb_build_object('rows', COALESCE(v_fp -> 'rows', '{}'),
            'violations', gcos.allow_violations(p_spec #> '{mutation,allow}', v_fp) || v_back
                          || CASE WHEN v_catalog > 0 THEN pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
                                 'category', 'catalog', 'identity', 'pg_catalog', 'change',
                                 v_catalog || ' catalog row(s) written (batch.' || p_key || ' writes table rows only)', 'need', '[]'::jsonb))
                             ELSE '[]'::jsonb END);
        IF pg_catalog.jsonb_array_length(v_back) > 0 THEN
            v := v || pg_catalog.jsonb_build_object('error', pg_catalog.format('batch.%s set a sequence back (%s; put back where it '
                     'was, as setval survives an undo); it was undone', p_key, (SELECT pg_catalog.string_agg(
                     'sequence_state ' || (e ->> 'identity') || ' ' || (e ->> 'change'), ', ') FROM pg_catalog.jsonb_array_elements(v_back) AS x(e))));
            RAISE EXCEPTION 'gcos: worker rows undone' USING ERRCODE = 'GC100';
        ELSIF pg_catalog.jsonb_array_length(v -> 'violations') > 0 THEN
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
    -- setval is not transactional: what the worker set back stays set back through the undo unless put back here
    -- (only forward: a sequence that moved on meanwhile is left where it is). Without an error nothing went back.
    IF v ? 'error' THEN
        FOR s IN SELECT e.value ->> 'identity' AS identity
                   FROM pg_catalog.jsonb_array_elements(gcos._sequences_back(v_seqs,
                            pg_catalog.jsonb_build_object('sequences', gcos._kernel_fingerprint('{}') -> 'sequences'))) AS e LOOP
            PERFORM gcos._kernel_exec(pg_catalog.format(  -- as it was: called at the value before its next, where there is one
                'SELECT CASE WHEN (q.seqincrement > 0 AND %2$L::bigint - q.seqincrement >= q.seqmin) OR (q.seqincrement < 0 '
                'AND %2$L::bigint - q.seqincrement <= q.seqmax) THEN pg_catalog.setval(%1$L::regclass, %2$L::bigint - q.seqincrement, true) '
                'ELSE pg_catalog.setval(%1$L::regclass, %2$L::bigint, false) END FROM pg_catalog.pg_sequence AS q '
                'WHERE q.seqrelid = %1$L::regclass', s.identity, v_seqs -> 'sequences' ->> s.identity));
        END LOOP;
    END IF;
    RETURN v;
END
$$;

-- ----------------------------------------------------------------------------------- 026: traces and approvals

-- Records by trace id: gcos.rehearse asks whether a trace is already another run's.
CREATE INDEX ledger_trace_idx ON gcos.ledger ((record ->> 'trace_id'));

-- FROM 016_rehearse_read_committed.sql: a new rehearsal may not join a trace that already carries records of
-- another step or spec (only this spec's and plan's registrations, and this step's records of this spec, may be
-- there): one trace per step run.
CREATE OR REPLACE FUNCTION gcos.rehearse(p_spec_hash text, p_plan_hash text, p_trace_id text DEFAULT NULL) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_trace text := COALESCE(p_trace_id, NULLIF(pg_catalog.current_setting('gcos.trace_id', true), ''));
    v_step text := (SELECT s.document ->> 'id' FROM gcos.specs AS s WHERE s.spec_hash = p_spec_hash);
    v_other record;
BEGIN
    IF pg_catalog.current_setting('transaction_isolation') <> 'read committed' THEN
        PERFORM gcos._invalid('gcos: the kernel rehearses in a READ COMMITTED transaction (its record follows whatever the ledger received meanwhile); start the transaction READ COMMITTED');
    END IF;
    PERFORM pg_catalog.pg_advisory_xact_lock_shared(pg_catalog.hashtextextended('gcos:commit', 0));
    SELECT l.seq, l.kind, COALESCE(l.step_id, 'no step') AS step_id INTO v_other
      FROM gcos.ledger AS l
     WHERE (l.record ->> 'trace_id') = v_trace
       AND NOT (l.step_id IS NOT DISTINCT FROM v_step AND l.spec_hash IS NOT DISTINCT FROM p_spec_hash)
       AND NOT (l.kind = 'plan_registered' AND (l.record #>> '{payload,hash}') IS NOT DISTINCT FROM p_plan_hash)
     ORDER BY l.seq LIMIT 1;
    IF FOUND THEN
        PERFORM gcos._invalid(pg_catalog.format('gcos: trace %s already carries another run''s records (ledger seq %s, %s of %s), '
                                                'so a rehearsal of %s may not join it: use a new trace id', v_trace, v_other.seq,
                                                v_other.kind, v_other.step_id, COALESCE(v_step, 'an unregistered spec')));
    END IF;
    RETURN gcos._rehearse_measured(p_spec_hash, p_plan_hash, p_trace_id);
END
$$;

-- FROM 026_traces.sql: the rehearsal an approval names must have passed, for this spec hash and plan hash.
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
        SELECT l.seq, l.spec_hash, l.kind, l.record ->> 'trace_id' AS trace_id, l.record #>> '{payload,outcome}' AS outcome,
               l.record #>> '{payload,plan_hash}' AS plan_hash INTO v_rehearsal
          FROM gcos.ledger AS l WHERE l.seq = p_rehearsal_seq;
        IF NOT FOUND THEN
            PERFORM gcos._invalid(pg_catalog.format('gcos: ledger record %s does not exist', p_rehearsal_seq));
        ELSIF v_rehearsal.kind IS DISTINCT FROM 'rehearsal' THEN
            PERFORM gcos._invalid(pg_catalog.format('gcos: ledger record %s is a %s record, not a rehearsal',
                                                    p_rehearsal_seq, v_rehearsal.kind));
        ELSIF v_rehearsal.spec_hash IS DISTINCT FROM p_spec_hash THEN
            PERFORM gcos._invalid(pg_catalog.format(
                'gcos: ledger record %s is not about spec hash %s', p_rehearsal_seq, p_spec_hash));
        ELSIF v_rehearsal.outcome IS DISTINCT FROM 'passed' THEN
            PERFORM gcos._invalid(pg_catalog.format(
                'gcos: ledger record %s is a rehearsal that did not pass (%s): an approval rests on a passing rehearsal; '
                'rehearse again, or approve naming no rehearsal', p_rehearsal_seq, COALESCE(v_rehearsal.outcome, 'no outcome')));
        ELSIF v_rehearsal.plan_hash IS DISTINCT FROM p_plan_hash THEN
            PERFORM gcos._invalid(pg_catalog.format(
                'gcos: ledger record %s rehearsed plan hash %s, not %s: an approval rests on a rehearsal under the plan it binds',
                p_rehearsal_seq, gcos._short(v_rehearsal.plan_hash), gcos._short(p_plan_hash)));
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

-- ----------------------------------------------------------------------------------- 024: the latest word wins

-- FROM 024_sovereign_decisions.sql: a non-approve record counts as the decision's latest word whatever text it
-- bound and whoever commits (it can only close the gate); an approve still counts only as 024 says.
CREATE OR REPLACE FUNCTION gcos._decision_word(c jsonb, p_decision text, OUT record_id bigint, OUT who text,
                                               OUT expires_at timestamptz, OUT why text)
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d record;
    v_text text := c #>> ARRAY['plan', 'decisions', p_decision, 'text'];
    v_hash text := gcos.decision_text_hash(c #>> ARRAY['plan', 'decisions', p_decision, 'text']);
    v_problem text;
    v_problems text[] := '{}';
    v_word record;
    v_has_word boolean := false;
    v_seen boolean := false;
BEGIN
    IF v_text IS NULL OR v_text !~ E'\\S' THEN
        why := pg_catalog.format('has no text in plan %s, so nothing says what was decided (add it under decisions: in the plan)',
                                 COALESCE(c #>> '{plan,id}', '(none)'));
        RETURN;
    END IF;
    FOR d IN SELECT x.id, x.verdict, x.decider AS who, x.decider_oid::bigint AS oid, x.expires_at, x.text_hash,
                    x.system_identifier AS sysid, x.database_name::text AS db, x.database_oid::bigint AS dboid,
                    v.id IS NOT NULL AS revoked, CASE WHEN r.oid IS NOT NULL THEN p.kind END AS kind,
                    COALESCE(r.rolsuper, false) AS superuser,
                    'sovereign' = ANY (x.decider_roles) AS as_sovereign,
                    COALESCE('sovereign' = ANY (p.roles), false) AS sovereign_now,
                    CASE WHEN p.role_oid IS NULL THEN '{}'::text[] ELSE gcos.principal_conflicts(x.decider_oid) END AS conflicts
               FROM gcos.decisions AS x
               LEFT JOIN gcos.decision_revocations AS v ON v.decision_id = x.id
               LEFT JOIN gcos.principals AS p ON p.role_oid = x.decider_oid
               LEFT JOIN pg_catalog.pg_roles AS r ON r.oid = x.decider_oid
              WHERE x.decision = p_decision ORDER BY x.ledger_seq, x.id LOOP
        v_seen := true;
        v_problem := CASE
            WHEN d.revoked THEN 'was revoked'
            WHEN d.expires_at <= (c ->> 'now')::timestamptz THEN 'expired at ' || gcos._utc(d.expires_at)
            WHEN d.dboid IS NULL THEN 'was recorded before gcos bound decisions to the database, so it never counts; record it again'
            WHEN (d.sysid, d.db) IS DISTINCT FROM (c ->> 'system_identifier', c ->> 'database')
                THEN pg_catalog.format('is from another database (%s on system %s)', d.db, d.sysid)
            WHEN d.dboid <> (c ->> 'database_oid')::bigint
                THEN gcos._incarnation_problem(d.db, d.dboid, (c ->> 'database_oid')::bigint, 'decisions')
            WHEN d.verdict = 'approve' AND d.text_hash IS NULL
                THEN 'was recorded before gcos bound decisions to their text, so it never counts; decide it again'
            WHEN d.verdict = 'approve' AND d.text_hash <> v_hash
                THEN pg_catalog.format('decided text %s, but plan %s now says %s: the decision was edited, so decide it again',
                                       gcos._short(d.text_hash), c #>> '{plan,id}', gcos._short(v_hash))
            WHEN d.kind IS DISTINCT FROM 'human' THEN pg_catalog.format('is by %s, not a human principal', d.who)
            WHEN d.superuser THEN pg_catalog.format('is by %s, a superuser', d.who)
            WHEN NOT d.as_sovereign THEN pg_catalog.format('is by %s, who was not a sovereign: only a sovereign decides', d.who)
            WHEN NOT d.sovereign_now THEN pg_catalog.format('is by %s, who is no longer a sovereign', d.who)
            WHEN d.verdict = 'approve' AND pg_catalog.cardinality(d.conflicts) > 0 THEN gcos._conflict_problem(d.who, d.conflicts)
            WHEN d.verdict = 'approve'
                 AND gcos._one_person(d.oid, gcos._person_of(d.oid, d.who), d.who, (c ->> 'actor_oid')::bigint,
                                      gcos._person_of((c ->> 'actor_oid')::bigint, c ->> 'actor_name'), c ->> 'actor_name')
                THEN pg_catalog.format('is by %s, who is committing: the decider never commits the step that needs the decision', d.who)
        END;
        IF v_problem IS NULL THEN
            v_word := d;
            v_has_word := true;
        ELSE
            v_problems := v_problems || pg_catalog.format('record %s %s', d.id, v_problem);
        END IF;
    END LOOP;
    IF NOT v_seen THEN
        why := 'has never been recorded';
    ELSIF NOT v_has_word THEN
        why := 'has no approve in force: ' || pg_catalog.array_to_string(
            v_problems[GREATEST(pg_catalog.cardinality(v_problems) - 2, 1):], ', ');
    ELSIF v_word.verdict <> 'approve' THEN
        why := pg_catalog.format('stands at %s (record %s by %s%s)', v_word.verdict, v_word.id, v_word.who,
                                 CASE WHEN v_word.text_hash IS DISTINCT FROM v_hash
                                      THEN pg_catalog.format(', on text %s, not plan %s''s %s: the latest word in force stands, '
                                                             'whatever text it bound', COALESCE(gcos._short(v_word.text_hash), 'unbound'),
                                                             c #>> '{plan,id}', gcos._short(v_hash))
                                      ELSE '' END);
    ELSE
        record_id := v_word.id;
        who := v_word.who;
        expires_at := v_word.expires_at;
    END IF;
END
$$;

RESET ROLE;
REVOKE ALL ON FUNCTION gcos._commit_code(jsonb) FROM PUBLIC;
-- Gate 4 runs with the caller's rights (010): its helpers are executable by the gcos roles, as the gates' are.
GRANT EXECUTE ON FUNCTION gcos._commit_code(jsonb) TO gcos_admin, gcos_operator, gcos_sovereign, gcos_council, gcos_auditor;
