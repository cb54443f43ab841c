-- gcos schema version 52: the catalog proof stored across commands (issue 13, performance at scale).
--
-- Every command measured its first fingerprint in full although, most of the time, nothing changed since the
-- previous command measured it. 047's proof holds across transactions: a catalog row version visible now whose
-- xmin is not older than the mark snapshot's xmin was created by a transaction that had not finished when the
-- mark was taken; the same count per catalog and no young row version outside the marked ones => the same row
-- versions as at the mark. Here the mark and the schema part it vouches for are taken in ONE statement, so on one
-- snapshot (every function below the statement is STABLE: they read their caller's snapshot), and kept in
-- gcos.catalog_proof. A later command checks the mark (047/049's gcos._catalog_unchanged: catalogs, roles, user
-- mappings, in-place index flags, the loaded fingerprint queries) and, when it holds, takes the stored schema part
-- instead of measuring it; else it measures with a fresh mark and stores that. When in doubt: measured.
--
--   gcos.catalog_proof: one row per fingerprint exclude list, owned by gcos_owner, no grants to anyone; written only
--       by gcos._catalog_proof, which computes every value itself. A row proves nothing outside the database oid and
--       the server run (pg_postmaster_start_time()) it was taken in (a restart, pg_upgrade, a restore or a standby
--       expires it), nor once its mark's xmin is 2^30 transactions old (64-bit, so a wrapped counter cannot look
--       young again), nor when its 32-bit young disagrees with its 64-bit one.
--   gcos._fp_schema_marked(exclude, objects): mark + schema part (+ object map) on one snapshot.
--   gcos._catalog_proof_read(exclude, objects): the stored schema part when its proof holds, else NULL (STABLE: its
--       callers check it in the statement that measures the rest, on one snapshot).
--   gcos._catalog_proof(exclude, objects): measured with a fresh mark and stored (not in a read-only transaction,
--       not on a standby, not while another transaction is storing it).
--   gcos.fingerprint_digests (042): its schema part through gcos._catalog_proof; "established" says which.
--   gcos._kernel_fingerprint_entry(watch): a rehearsal's entry fingerprint, object map included (stored with the
--       proof by the rehearsal that measured it, so footprint and _fp_differences still name objects).
--   gcos._rehearse_measured (048): its entry through that; the record's entry summary says how it was established.
--   gcos._commit_apply (025): its after fingerprint through that too (the record unchanged: "established" left out),
--       so a commit leaves the proof of the world it made and the next rehearsal's entry is proved.
SET LOCAL ROLE gcos_owner;

CREATE TABLE gcos.catalog_proof (
    exclude text[] PRIMARY KEY,
    database oid NOT NULL,
    started timestamptz NOT NULL,
    young numeric NOT NULL,             -- the mark snapshot's xmin, 64-bit (xid8 as a number)
    mark jsonb NOT NULL,                -- 047/049's gcos._catalog_mark()
    schema_hash text NOT NULL,
    digests jsonb NOT NULL,
    objects jsonb,                      -- the object map (gcos.fingerprint_at's "schema"), when measured with it
    stored_at timestamptz NOT NULL
);
REVOKE ALL ON gcos.catalog_proof FROM PUBLIC;
SELECT gcos._guard_tables();  -- 008: every gcos table refuses writes but through gcos functions (and a superuser)

-- The catalog mark and the schema part it vouches for, on one snapshot (STABLE, called by one statement).
CREATE FUNCTION gcos._fp_schema_marked(p_exclude text[], p_objects boolean) RETURNS jsonb
    LANGUAGE plpgsql STABLE SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
    SET datestyle = 'ISO, YMD'
    SET intervalstyle = 'postgres'
    SET timezone = 'UTC'
    SET extra_float_digits = 1
    SET bytea_output = 'hex'
    SET lc_monetary = 'C'
    SET quote_all_identifiers = off
    SET standard_conforming_strings = on
    SET row_security = off
    SET join_collapse_limit = 1
    SET from_collapse_limit = 1
    SET jit = off
AS $$
DECLARE
    v_young text := pg_snapshot_xmin(pg_current_snapshot())::text;
    v_mark jsonb := gcos._catalog_mark();
    v_schema record;
BEGIN
    SELECT * INTO v_schema
      FROM gcos._fp_schema_digested(p_exclude, NOT EXISTS (SELECT FROM pg_extension AS x WHERE x.extname <> 'plpgsql'));
    RETURN jsonb_build_object('young', v_young, 'mark', v_mark,
                              'schema_hash', encode(sha256(convert_to(v_schema.schema, 'UTF8')), 'hex'),
                              'digests', v_schema.digests)
        || CASE WHEN p_objects THEN jsonb_build_object('schema', v_schema.schema::jsonb) ELSE '{}' END;
END
$$;

-- Whether a stored proof still holds now: same database and server run, a young horizon, the mark unchanged.
CREATE FUNCTION gcos._catalog_proof_holds(p gcos.catalog_proof) RETURNS boolean
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN p.database = (SELECT d.oid FROM pg_database AS d WHERE d.datname = current_database())
       AND p.started = pg_postmaster_start_time()
       AND NOT p.mark ? 'unprovable'
       AND p.mark ->> 'young' = (p.young % 4294967296)::text
       AND p.young <= pg_snapshot_xmin(pg_current_snapshot())::text::numeric
       AND pg_snapshot_xmax(pg_current_snapshot())::text::numeric - p.young < 1073741824  -- (xmax: the next xid)
       AND (p.mark ->> 'database')::oid = p.database
       AND gcos._catalog_unchanged(p.mark);
END
$$;

-- The stored schema part (schema_hash, digests, with the object map when p_objects) for exclude list p_exclude when its
-- proof holds ("proved unchanged"), else NULL. STABLE: called in the statement that measures the rest, the proof and
-- the rest read one snapshot.
CREATE FUNCTION gcos._catalog_proof_read(p_exclude text[], p_objects boolean) RETURNS jsonb
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p gcos.catalog_proof;
BEGIN
    IF p_exclude IS NULL OR array_position(p_exclude, NULL) IS NOT NULL OR p_objects IS NULL THEN
        RAISE EXCEPTION 'gcos.fingerprint: watch and exclude are arrays of names without NULLs, and the search_path is text'
            USING ERRCODE = '22023';
    END IF;
    SELECT * INTO p FROM gcos.catalog_proof AS c WHERE c.exclude = p_exclude;
    IF FOUND AND (p.objects IS NOT NULL OR NOT p_objects) AND gcos._catalog_proof_holds(p) THEN
        RETURN jsonb_build_object('schema_hash', p.schema_hash, 'digests', p.digests, 'established', 'proved unchanged')
            || CASE WHEN p_objects THEN jsonb_build_object('schema', p.objects) ELSE '{}' END;
    END IF;
    RETURN NULL;
END
$$;

-- The schema part for exclude list p_exclude measured on one snapshot with a fresh mark, and stored ("measured"):
-- what callers do when gcos._catalog_proof_read gave nothing.
CREATE FUNCTION gcos._catalog_proof(p_exclude text[], p_objects boolean) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v jsonb;
BEGIN
    IF p_exclude IS NULL OR array_position(p_exclude, NULL) IS NOT NULL OR p_objects IS NULL THEN
        RAISE EXCEPTION 'gcos.fingerprint: watch and exclude are arrays of names without NULLs, and the search_path is text'
            USING ERRCODE = '22023';
    END IF;
    v := gcos._fp_schema_marked(p_exclude, p_objects);  -- one statement: the mark and the schema on one snapshot
    -- stored only where it can last and nobody else is storing it (their row lock would make us wait)
    IF NOT v -> 'mark' ? 'unprovable' AND current_setting('transaction_read_only') = 'off' AND NOT pg_is_in_recovery()
       AND pg_try_advisory_xact_lock(hashtext('gcos.catalog_proof'), hashtext(p_exclude::text)) THEN
        BEGIN
            INSERT INTO gcos.catalog_proof AS c (exclude, database, started, young, mark, schema_hash, digests, objects, stored_at)
            VALUES (p_exclude, (v -> 'mark' ->> 'database')::oid, pg_postmaster_start_time(), (v ->> 'young')::numeric,
                    v -> 'mark', v ->> 'schema_hash', v -> 'digests', v -> 'schema', clock_timestamp())
            ON CONFLICT (exclude) DO UPDATE
               SET database = excluded.database, started = excluded.started, young = excluded.young, mark = excluded.mark,
                   schema_hash = excluded.schema_hash, digests = excluded.digests, objects = excluded.objects,
                   stored_at = excluded.stored_at;
            -- a few exclude lists at most (any reader may ask for any list): the least recently stored go
            DELETE FROM gcos.catalog_proof AS c
             WHERE c.exclude IN (SELECT o.exclude FROM gcos.catalog_proof AS o ORDER BY o.stored_at DESC
                                 OFFSET 8 FOR UPDATE SKIP LOCKED);
        EXCEPTION
            WHEN serialization_failure OR lock_not_available OR unique_violation THEN
                NULL;  -- (REPEATABLE READ meeting a newer row, or a superuser's lock: not stored this time)
        END;
    END IF;
    RETURN (v - 'young' - 'mark') || jsonb_build_object('established', 'measured');
END
$$;

-- 042's fingerprint without its object map; the schema part proved unchanged from the stored proof when it holds.
CREATE FUNCTION gcos._fp_digests_stored(p_watch text[], p_exclude text[], p_search_path text) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v jsonb;
    v_known jsonb;
BEGIN
    IF p_watch IS NULL OR p_exclude IS NULL OR p_search_path IS NULL
       OR array_position(p_watch, NULL) IS NOT NULL OR array_position(p_exclude, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'gcos.fingerprint: watch and exclude are arrays of names without NULLs, and the search_path is text'
            USING ERRCODE = '22023';
    END IF;
    -- the proof checked and the rest measured in one statement: one snapshot, as 042's one fingerprint
    v := (SELECT gcos._fp_take_proved(p_watch, p_exclude, p_search_path, k.known, '{}')
                 || jsonb_build_object('established', k.known -> 'established')
            FROM (SELECT gcos._catalog_proof_read(p_exclude, false) AS known OFFSET 0) AS k  -- (a fence: read once)
           WHERE k.known IS NOT NULL);
    IF v IS NULL THEN
        v_known := gcos._catalog_proof(p_exclude, false);
        v := gcos._fp_take_proved(p_watch, p_exclude, p_search_path, v_known, '{}')
             || jsonb_build_object('established', v_known -> 'established');
    END IF;
    RETURN v - 'tables_proved';
END
$$;

-- 042's gcos.fingerprint_digests (the same keys, and "established"); VOLATILE now: it may store the proof.
CREATE OR REPLACE FUNCTION gcos.fingerprint_digests(p_watch text[] DEFAULT '{}', p_exclude text[] DEFAULT '{gcos}') RETURNS jsonb
    LANGUAGE sql VOLATILE SECURITY INVOKER
AS $$ SELECT gcos._fp_digests_stored(p_watch, p_exclude, pg_catalog.current_setting('search_path')) $$;

-- gcos._kernel_fingerprint (011) for a rehearsal's entry: the schema part and object map from the stored proof when
-- it holds, the watched tables, sequences and missing names measured as the kernel, as always.
CREATE FUNCTION gcos._kernel_fingerprint_entry(p_watch text[]) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET standard_conforming_strings = on
AS $$
DECLARE
    v_watch text[] := COALESCE(p_watch, '{}');
    v jsonb;
    v_known jsonb;
BEGIN
    -- the proof checked and the rest measured in one statement (one snapshot); else measured, stored, and the rest
    v := (SELECT gcos._fp_take_proved(v_watch, '{gcos}', 'public, pg_temp', k.known, '{}')
                 || jsonb_build_object('schema', k.known -> 'schema', 'established', k.known -> 'established')
            FROM (SELECT gcos._catalog_proof_read('{gcos}', true) AS known OFFSET 0) AS k  -- (a fence: read once)
           WHERE k.known IS NOT NULL);
    IF v IS NULL THEN
        v_known := gcos._catalog_proof('{gcos}', true);
        v := gcos._fp_take_proved(v_watch, '{gcos}', 'public, pg_temp', v_known, '{}')
             || jsonb_build_object('schema', v_known -> 'schema', 'established', v_known -> 'established');
    END IF;
    RETURN v - 'tables_proved';
END
$$;

-- 048's gcos._rehearse_measured; the entry through the stored proof, its summary saying how it was established.
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
    v_mark jsonb;
    r record;
    v_outcome text;
    v_message text;
    v_residue record;
    v_sequences jsonb := '[]';
    v_first jsonb;
    v_session jsonb := '[]';
    v_write record;
    v_payload jsonb;
    v_exc jsonb := gcos._exceptions_in_force(p_spec_hash, NULL, NULL);
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
    v := pg_catalog.jsonb_build_object('reverify', gcos._waive(gcos._kernel_checks(v_spec -> 'reverify'), 'reverify', v_exc,
                                                               pg_catalog.jsonb_array_length(COALESCE(v_spec -> 'reverify', '[]'))));
    v_first := (SELECT e.value FROM pg_catalog.jsonb_array_elements(v -> 'reverify') AS e
                 WHERE NOT (e.value ->> 'ok')::boolean AND NOT e.value ? 'waived' LIMIT 1);
    IF v_first IS NOT NULL THEN
        v_outcome := 'reverify_mismatch';
        v_message := pg_catalog.format('re-verify of %s failed: %L expected %s, got %s; the live world is not what the spec expects',
                                       v_step, v_first ->> 'name', v_first -> 'expected',
                                       COALESCE('error: ' || (v_first ->> 'error'), (v_first -> 'actual')::text));
    ELSE
        -- before the entry: what commits in between is seen as a change (the catalogs', then the watched tables')
        v_mark := gcos._catalog_mark();
        v_mark := v_mark || pg_catalog.jsonb_build_object('tables', gcos._kernel_tables_mark(v_watch));
        v := v || pg_catalog.jsonb_build_object('entry', gcos._kernel_fingerprint_entry(v_watch));
        v := v || gcos._rehearse_inside(v_spec, v_plan, (v -> 'entry') || pg_catalog.jsonb_build_object('catalog_mark', v_mark), v_run);
        IF v ? 'success' THEN  -- the checks ran (a failed mutation has none)
            v := v || pg_catalog.jsonb_build_object(
                'stops', gcos._waive(v -> 'stops', 'stop', v_exc, pg_catalog.jsonb_array_length(COALESCE(v_spec -> 'stop', '[]'))),
                'success', gcos._waive(v -> 'success', 'success', v_exc, pg_catalog.jsonb_array_length(COALESCE(v_spec -> 'success', '[]'))));
        END IF;
        SELECT * INTO r FROM gcos._rehearsal_outcome(v_step, v);
        v_exit := gcos._kernel_fingerprint_proved(v_watch, v -> 'entry', v_mark);
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
            'entry', gcos._fp_summary_established(v -> 'entry'), 'inside', gcos._fp_summary(v -> 'inside'),
            'after_rollback', gcos._fp_summary_established(v -> 'after_rollback'),
            'exit', gcos._fp_summary_established(v_exit)),
        'footprint', CASE WHEN v ? 'footprint' THEN pg_catalog.jsonb_build_object(
            'new_tables', v -> 'footprint' -> 'new_tables', 'dropped_tables', v -> 'footprint' -> 'dropped_tables',
            'row_deltas', v -> 'footprint' -> 'rows') END,
        'allow_violations', COALESCE(v -> 'violations', '[]'),
        'checks', pg_catalog.jsonb_build_object('reverify', v -> 'reverify', 'stop', COALESCE(v -> 'stops', '[]'),
                                                'success', COALESCE(v -> 'success', '[]')),
        'differences', CASE WHEN v_exit IS NULL THEN '[]'::jsonb ELSE gcos._fp_differences(v -> 'entry', v_exit) END,
        'residue', pg_catalog.jsonb_build_object('sequences', v_sequences, 'session', v_session),
        'exceptions', gcos._waivers(v -> 'reverify', 'reverify') || gcos._waivers(v -> 'stops', 'stop')
                      || gcos._waivers(v -> 'success', 'success'),
        'duration_us', (EXTRACT(epoch FROM pg_catalog.clock_timestamp() - v_started) * 1000000)::bigint);
    SELECT * INTO v_write FROM gcos._ledger_write('rehearsal', v_step, p_spec_hash, p_trace_id, NULL, v_payload);
    RETURN v_payload || pg_catalog.jsonb_build_object('ledger_seq', v_write.seq, 'ledger_hash', v_write.hash);
END
$$;

-- 025's gcos._commit_apply (the plain commit and rollback, and a batched run's close); its after fingerprint through
-- gcos._kernel_fingerprint_entry, so the proof of what it leaves is stored with the commit.
CREATE OR REPLACE FUNCTION gcos._commit_apply(p_spec jsonb, p_plan jsonb, p_action text, p_before jsonb, p_prove text) RETURNS jsonb
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
    v_exc jsonb;
    r record;
BEGIN
    BEGIN
        IF p_action = 'rollback' OR p_spec ? 'mutation' THEN  -- a verification-only step applies nothing
            PERFORM gcos._kernel_exec(CASE p_action WHEN 'commit' THEN p_spec -> 'mutation' ->> 'sql'
                                                    ELSE p_spec -> 'rollback' ->> 'sql' END);
        END IF;
        v_now := gcos._session_state();
        -- (052) through the stored proof, stored anew from a mark on the fingerprint's own snapshot: the next command's
        -- first fingerprint is then proved; the mutation's own rows are young and marked, gone again if it is undone
        v := v || pg_catalog.jsonb_build_object('after', gcos._kernel_fingerprint_entry(v_watch) - 'established', 'session_residue', (
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
            v_exc := gcos._spec_exceptions(p_spec);  -- waived checks stay in the results, marked (025)
            v := v || pg_catalog.jsonb_build_object(
                'stops', gcos._waive(v -> 'stops', 'stop', v_exc, pg_catalog.jsonb_array_length(COALESCE(p_spec -> 'stop', '[]'))),
                'success', gcos._waive(v -> 'success', 'success', v_exc, pg_catalog.jsonb_array_length(COALESCE(p_spec -> 'success', '[]'))));
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

-- ----------------------------------------------------------------------------------- ownership and grants

RESET ROLE;
ALTER FUNCTION gcos._kernel_fingerprint_entry(text[]) OWNER TO gcos_kernel;  -- reads the tables as the kernel
REVOKE ALL ON FUNCTION gcos._fp_schema_marked(text[], boolean), gcos._catalog_proof_holds(gcos.catalog_proof),
    gcos._catalog_proof_read(text[], boolean),
    gcos._catalog_proof(text[], boolean), gcos._fp_digests_stored(text[], text[], text),
    gcos._kernel_fingerprint_entry(text[]) FROM PUBLIC;
-- the stored proof is read and written as gcos_owner, by gcos._catalog_proof alone; readers ask for it
GRANT EXECUTE ON FUNCTION gcos._catalog_proof(text[], boolean), gcos._catalog_proof_read(text[], boolean)
    TO gcos_admin, gcos_operator, gcos_auditor, gcos_kernel;
GRANT EXECUTE ON FUNCTION gcos._fp_digests_stored(text[], text[], text) TO gcos_admin, gcos_operator, gcos_auditor;
-- 048's invoker helpers, read-only: now also under gcos.fingerprint_digests
GRANT EXECUTE ON FUNCTION gcos._fp_take_proved(text[], text[], text, jsonb, jsonb), gcos._fp_tables_text(jsonb)
    TO gcos_admin, gcos_operator, gcos_auditor;
GRANT EXECUTE ON FUNCTION gcos._kernel_fingerprint_entry(text[]) TO gcos_owner;
