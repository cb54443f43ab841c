-- gcos schema version 15: the ledger is closed to clients (issue 9, seed 000: "a single write aperture").
--
--   gcos.record_drift(trace_id) -> jsonb      gcos_admin, gcos_operator, gcos_sovereign, gcos_council, gcos_auditor
--
-- 1. gcos.ledger_append appends for a superuser only. Until now operators, sovereigns, council members and admins
--    could append any kind but the reserved ones (and, where public was not adopted, even the kernel's kinds): the
--    client path that needed it is gone (rehearse, commit and rollback run only in the kernel). EXECUTE is revoked
--    from every gcos group role and the function refuses any other caller itself (42501), so a stray GRANT opens
--    nothing. No gcos function calls it: the kernel and the other apertures write through gcos._ledger_write.
--    A superuser keeps it (repairs, tests of forged records); its records never say "kernel".
--
-- 2. Drift is recorded by the kernel. gcos.record_drift takes nothing but a trace id: under the commit lock (no
--    commit, rollback or batch close between reading the baseline and measuring) it finds the baseline itself,
--    the last commit or rollback of any step that COUNTS (applied, naming an earlier allowing policy_decision of
--    the same step and trace: gcos._step_history's rule, history.py's `baseline`), measures the live world as
--    gcos_kernel (gcos._kernel_fingerprint, the fingerprint the commit recorded, watching the tables the baseline
--    recorded), compares, and when anything differs appends the `drift` record itself ("kernel": true, the
--    differences named per category and object as `gcos drift` always did). It returns what it found:
--      {kernel, baseline_seq, baseline_step, baseline_kind, baseline_hash, live_hash, live_schema_hash, compared,
--       differences: [line, ...], ledger_seq}       (baseline_seq null: nothing committed yet, nothing recorded)
--    Like with like: a kernel commit (012, 013) or a client commit of gcos 3+ recorded fingerprint_after_full, the
--    whole fingerprint, and is compared object by object ("compared": "full"); an older baseline without it is
--    compared by its summary (schema hash and each watched table's rows and content: "compared": "summary").
--    Sequence states are residue, never drift. A watched table gcos_kernel can no longer read (a superuser
--    recreated it) is named as drift, not an error.
--    Who may ask: every gcos group role, the auditor included, and a superuser. The caller chooses nothing the
--    record says but the trace id and the moment: the kernel measures and writes, and the actor names who asked.
--    Drift is an observation, the auditor's own business; refusing it to approvers or auditors would only leave
--    a change unrecorded. The caller must be a registered principal that logged in as itself.
--    Where schema public is not adopted the kernel governs nothing and cannot read the world, so a baseline there
--    is refused (55000: adopt public first); with no baseline there is nothing to compare, anywhere.
--
-- 3. Gate 3's reason shows an expectation as people write it ("expected gte 1000000", Expectation.describe),
--    not as JSON ("expected {"gte": 1000000}").
SET LOCAL ROLE gcos_owner;

-- ----------------------------------------------------------------------------------- 1. the ledger is closed

CREATE OR REPLACE FUNCTION gcos.ledger_append(p_kind text, p_step_id text, p_spec_hash text, p_trace_id text,
                                              p_span_id text, p_payload jsonb)
    RETURNS TABLE (seq bigint, hash text)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_actor record;
    v_login record;
BEGIN
    SELECT * INTO v_actor FROM gcos._session_actor();
    IF NOT v_actor.is_superuser THEN
        PERFORM gcos._refuse(pg_catalog.format(
            'gcos: role %I may not append ledger records: only the kernel records what happened (gcos rehearse, commit, rollback, drift)',
            v_actor.role_name));
    END IF;
    IF p_kind = ANY (gcos._reserved_kinds()) THEN
        PERFORM gcos._refuse(pg_catalog.format(
            'gcos: %s records are written only by their own gcos function, not by gcos.ledger_append', p_kind));
    END IF;
    SELECT * INTO v_login FROM gcos._session_identity();
    IF v_login.login_role_oid IS DISTINCT FROM v_actor.role_oid THEN
        PERFORM gcos._refuse(pg_catalog.format('gcos: this session logged in as %s but acts as %s; records name who logged in',
                                               v_login.login_role, v_actor.role_name));
    END IF;
    IF p_payload ? 'kernel' THEN
        PERFORM gcos._refuse('gcos: only the kernel marks a record "kernel"; gcos.ledger_append never does');
    END IF;
    RETURN QUERY SELECT w.seq, w.hash FROM gcos._ledger_write(p_kind, p_step_id, p_spec_hash, p_trace_id,
                                                                p_span_id, p_payload) AS w;
END
$$;

REVOKE ALL ON FUNCTION gcos.ledger_append(text, text, text, text, text, jsonb)
    FROM PUBLIC, gcos_admin, gcos_operator, gcos_sovereign, gcos_council, gcos_auditor;

-- ----------------------------------------------------------------------------------- 2. drift, by the kernel

-- The drift baseline: the seq of the last commit or rollback of any step that counts (gcos._step_history's rule).
CREATE FUNCTION gcos._drift_baseline() RETURNS bigint
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT l.seq
      FROM gcos.ledger AS l
      JOIN gcos.ledger AS d ON d.seq = gcos._jint(l.record #> '{payload,policy_decision_seq}') AND d.seq < l.seq
                           AND d.kind = 'policy_decision' AND d.step_id = l.step_id
                           AND (d.record #> '{payload,allow}') = 'true'::jsonb
                           AND (d.record -> 'trace_id') = (l.record -> 'trace_id')
     WHERE l.kind IN ('commit', 'rollback') AND l.step_id IS NOT NULL
       AND (l.record #> '{payload,outcome}') = '"applied"'::jsonb
     ORDER BY l.seq DESC
     LIMIT 1
$$;

-- "1 row", "3 rows" (fingerprint._rows).
CREATE FUNCTION gcos._rows_text(p_rows jsonb) RETURNS text
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT COALESCE(p_rows #>> '{}', '0') || CASE WHEN p_rows = '1'::jsonb THEN ' row' ELSE ' rows' END $$;

-- What differs from the recorded fingerprint to the live one, as fingerprint.diff words it (residue left out):
-- with the whole recorded fingerprint (p_full), schema objects by category in fingerprint.CATEGORIES order, then
-- watched tables; with only its summary, the schema hash and each watched table. p_unreadable: watched tables
-- gcos_kernel can no longer read (left out of p_live).
CREATE FUNCTION gcos._drift_differences(p_full jsonb, p_summary jsonb, p_live jsonb, p_unreadable text[]) RETURNS jsonb
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    WITH cats(c, o) AS (
        SELECT u.c, u.o FROM pg_catalog.unnest(ARRAY['schema', 'relation', 'column', 'constraint', 'index', 'trigger',
            'rule', 'function', 'sequence', 'type', 'policy', 'statistics', 'extension', 'event_trigger',
            'default_privileges']) WITH ORDINALITY AS u(c, o)
    ), recorded AS (
        SELECT COALESCE(p_full, p_summary) -> 'tables' AS tables
    ), lines(o1, o2, o3, line) AS (
        SELECT 0::bigint, '', '', pg_catalog.format('format format_version changed (%s → %s)',
                                                    p_full -> 'format_version', p_live -> 'format_version')
         WHERE p_full IS NOT NULL AND (p_full -> 'format_version') IS DISTINCT FROM (p_live -> 'format_version')
        UNION ALL
        SELECT 1, '', '', pg_catalog.format('schema %s… → %s…', pg_catalog.left(COALESCE(p_summary ->> 'schema_hash', '?'), 12),
                                            pg_catalog.left(p_live ->> 'schema_hash', 12))
         WHERE p_full IS NULL AND (p_summary -> 'schema_hash') IS DISTINCT FROM (p_live -> 'schema_hash')
        UNION ALL
        SELECT 2 + COALESCE((SELECT cats.o FROM cats WHERE cats.c = o.category), 100), o.category, o.identity,
               o.category || ' ' || o.identity || ' ' || o.change
          FROM pg_catalog.jsonb_to_recordset(gcos.footprint(p_full, p_live, '{}', '{}') -> 'objects')
               AS o(category text, identity text, change text)
         WHERE p_full IS NOT NULL
        UNION ALL
        SELECT 200, '', t.key, 'table_data ' || t.key || ' ' || CASE
                   WHEN t.key = ANY (p_unreadable) THEN 'changed (gcos_kernel cannot read it)'
                   WHEN p_full IS NULL THEN 'changed'
                   WHEN NOT (p_live -> 'tables') ? t.key THEN 'removed (had ' || gcos._rows_text(t.value -> 'rows') || ')'
                   WHEN (t.value -> 'rows') IS DISTINCT FROM (p_live -> 'tables' -> t.key -> 'rows')
                       THEN pg_catalog.format('changed (rows %s → %s)', t.value -> 'rows', p_live -> 'tables' -> t.key -> 'rows')
                   ELSE 'changed (content changed, ' || gcos._rows_text(t.value -> 'rows') || ')' END
          FROM recorded, pg_catalog.jsonb_each(COALESCE(recorded.tables, '{}')) AS t
         WHERE t.key = ANY (p_unreadable)
            OR (t.value -> 'rows', t.value -> 'content')
               IS DISTINCT FROM (p_live -> 'tables' -> t.key -> 'rows', p_live -> 'tables' -> t.key -> 'content')
        UNION ALL
        SELECT 200, '', t.key, 'table_data ' || t.key || ' added (' || gcos._rows_text(t.value -> 'rows') || ')'
          FROM recorded, pg_catalog.jsonb_each(COALESCE(p_live -> 'tables', '{}')) AS t
         WHERE p_full IS NOT NULL AND NOT COALESCE(recorded.tables, '{}') ? t.key
    )
    SELECT COALESCE(pg_catalog.jsonb_agg(l.line ORDER BY l.o1, l.o2 COLLATE "C", l.o3 COLLATE "C"), '[]') FROM lines AS l
$$;

-- The baseline's recorded fingerprints: the whole one (NULL when the record has none, as before gcos 3) and the
-- summary. 22023 when what is there cannot be a fingerprint (only a superuser can have written it).
CREATE FUNCTION gcos._drift_recorded(p_seq bigint, p_payload jsonb, OUT whole jsonb, OUT summary jsonb)
    LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    whole := NULLIF(NULLIF(p_payload -> 'fingerprint_after_full', 'null'::jsonb), '{}'::jsonb);
    summary := COALESCE(NULLIF(p_payload -> 'fingerprint_after', 'null'::jsonb), '{}'::jsonb);
    IF pg_catalog.jsonb_typeof(summary) <> 'object'
       OR pg_catalog.jsonb_typeof(COALESCE(summary -> 'tables', '{}')) <> 'object'
       OR (whole IS NOT NULL AND (pg_catalog.jsonb_typeof(whole) <> 'object'
                                  OR pg_catalog.jsonb_typeof(whole -> 'schema') IS DISTINCT FROM 'object'
                                  OR pg_catalog.jsonb_typeof(whole -> 'tables') IS DISTINCT FROM 'object')) THEN
        PERFORM gcos._invalid(pg_catalog.format('gcos: the fingerprint in ledger record %s cannot be read', p_seq));
    END IF;
END
$$;

CREATE FUNCTION gcos.record_drift(p_trace_id text DEFAULT NULL) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_actor record;
    v_base record;
    v_fp record;
    v_watch text[];
    v_unreadable text[];
    v_live jsonb;
    v_result jsonb;
    v_diffs jsonb;
    v_write record;
BEGIN
    SELECT * INTO v_actor FROM gcos._kernel_actor();
    IF v_actor.principal IS NULL AND NOT v_actor.is_superuser THEN
        PERFORM gcos._refuse(pg_catalog.format(
            'gcos: session role %I is not a registered principal; ask a gcos admin to run gcos principals add %s',
            v_actor.role_name, v_actor.role_name));
    END IF;
    PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended('gcos:commit', 0));
    SELECT l.seq, l.step_id, l.kind, l.record -> 'payload' AS payload INTO v_base
      FROM gcos.ledger AS l WHERE l.seq = gcos._drift_baseline();
    v_result := pg_catalog.jsonb_build_object('kernel', true, 'baseline_seq', v_base.seq, 'baseline_step', v_base.step_id,
                                              'baseline_kind', v_base.kind, 'differences', '[]'::jsonb, 'ledger_seq', NULL);
    IF v_base.seq IS NULL THEN
        RETURN v_result;
    END IF;
    IF NOT EXISTS (SELECT FROM gcos.adopted_schemas AS a WHERE a.schema_name = 'public' AND a.released_at IS NULL) THEN
        RAISE EXCEPTION 'gcos: the kernel measures drift only where schema public is adopted'
            USING ERRCODE = '55000', HINT = 'An admin runs gcos adopt public first.';
    END IF;
    SELECT * INTO v_fp FROM gcos._drift_recorded(v_base.seq, v_base.payload);
    SELECT COALESCE(pg_catalog.array_agg(k ORDER BY k COLLATE "C") FILTER (WHERE NOT u), '{}'),
           COALESCE(pg_catalog.array_agg(k ORDER BY k COLLATE "C") FILTER (WHERE u), '{}')
      INTO v_watch, v_unreadable
      FROM (SELECT t.k, COALESCE(NOT pg_catalog.has_table_privilege('gcos_kernel', pg_catalog.to_regclass(t.k), 'SELECT'),
                                 false) AS u
              FROM pg_catalog.jsonb_object_keys(COALESCE(COALESCE(v_fp.whole, v_fp.summary) -> 'tables', '{}')) AS t(k)) AS w;
    v_live := gcos._kernel_fingerprint(v_watch);
    v_diffs := gcos._drift_differences(v_fp.whole, v_fp.summary, v_live, v_unreadable);
    v_result := v_result || pg_catalog.jsonb_build_object(
        'baseline_hash', v_fp.summary -> 'hash', 'live_hash', v_live -> 'hash', 'live_schema_hash', v_live -> 'schema_hash',
        'compared', CASE WHEN v_fp.whole IS NULL THEN 'summary' ELSE 'full' END, 'differences', v_diffs);
    IF pg_catalog.jsonb_array_length(v_diffs) = 0 THEN
        RETURN v_result;
    END IF;
    SELECT * INTO v_write FROM gcos._ledger_write('drift', v_base.step_id, NULL, p_trace_id, NULL, pg_catalog.jsonb_build_object(
        'format_version', 1, 'kernel', true, 'baseline_seq', v_base.seq, 'baseline_kind', v_base.kind,
        'baseline_hash', v_result -> 'baseline_hash', 'live_hash', v_result -> 'live_hash',
        'live_schema_hash', v_result -> 'live_schema_hash', 'compared', v_result -> 'compared',
        'differences', (SELECT pg_catalog.jsonb_agg(e.x ORDER BY e.o) FROM pg_catalog.jsonb_array_elements(v_diffs)
                                                                        WITH ORDINALITY AS e(x, o) WHERE e.o <= 200),
        'differences_total', pg_catalog.jsonb_array_length(v_diffs)));
    RETURN v_result || pg_catalog.jsonb_build_object('ledger_seq', v_write.seq);
END
$$;

REVOKE ALL ON FUNCTION gcos._drift_baseline(), gcos._rows_text(jsonb), gcos._drift_differences(jsonb, jsonb, jsonb, text[]),
    gcos._drift_recorded(bigint, jsonb), gcos.record_drift(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gcos.record_drift(text)
    TO gcos_admin, gcos_operator, gcos_sovereign, gcos_council, gcos_auditor;

-- ----------------------------------------------------------------------------------- 3. gate 3 in words

-- An expectation as a spec writes it (spec.Expectation.describe): "gte 1000000", "in [1, 2]", a bare value for eq.
CREATE FUNCTION gcos._expect_text(p_expect jsonb) RETURNS text
    LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_op text := 'eq';
    v_value jsonb := p_expect;
BEGIN
    IF pg_catalog.jsonb_typeof(p_expect) = 'object' AND (SELECT pg_catalog.count(*) FROM pg_catalog.jsonb_object_keys(p_expect)) = 1 THEN
        SELECT j.key, j.value INTO v_op, v_value FROM pg_catalog.jsonb_each(p_expect) AS j;
    END IF;
    RETURN CASE WHEN v_op = 'eq' THEN '' ELSE v_op || ' ' END
           || CASE WHEN pg_catalog.jsonb_typeof(v_value) = 'string' THEN v_value #>> '{}' ELSE v_value::text END;
END
$$;

CREATE OR REPLACE FUNCTION gcos._gate_reverify(c jsonb) RETURNS jsonb
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_sid text := c ->> 'step_id';
    v_results jsonb := c #> '{world,reverify}';
    v_checks jsonb := COALESCE(c #> '{spec,reverify}', '[]'::jsonb);
    v_bad jsonb;
BEGIN
    IF c ->> 'action' = 'rollback' THEN
        RETURN gcos._gate(3, 'reverify', true, pg_catalog.format('re-verify describes the world before %s''s commit; a '
                          'rollback is proven by the pre-commit fingerprint instead', v_sid), '', 'nothing to do');
    ELSIF v_results IS NULL OR pg_catalog.jsonb_typeof(v_results) <> 'array' THEN
        RETURN gcos._gate(3, 'reverify', false, pg_catalog.format('re-verify of %s has not been run here', v_sid),
                          'gcos verify ' || v_sid, 'run', false);
    ELSIF ARRAY(SELECT e ->> 'name' FROM pg_catalog.jsonb_array_elements(v_results) WITH ORDINALITY AS x(e, o) ORDER BY o)
          IS DISTINCT FROM ARRAY(SELECT e ->> 'name' FROM pg_catalog.jsonb_array_elements(v_checks) WITH ORDINALITY AS x(e, o) ORDER BY o) THEN
        RETURN gcos._gate(3, 'reverify', false, pg_catalog.format('the re-verify results given are not one per check of '
                          '%s''s spec (%s checks)', v_sid, pg_catalog.jsonb_array_length(v_checks)),
                          'gcos verify ' || v_sid, 'run', false);
    END IF;
    SELECT e INTO v_bad FROM pg_catalog.jsonb_array_elements(v_results) WITH ORDINALITY AS x(e, o)
     WHERE (e -> 'ok') IS DISTINCT FROM 'true'::jsonb ORDER BY o LIMIT 1;
    IF v_bad IS NOT NULL THEN
        RETURN gcos._gate(3, 'reverify', false, pg_catalog.format('re-verify of %s does not hold: re-verify check %L expected %s, got %s',
                          v_sid, v_bad ->> 'name', COALESCE(gcos._expect_text(v_bad -> 'expected'), '?'),
                          COALESCE('an error: ' || (v_bad ->> 'error'), v_bad ->> 'actual', 'null')),
                          'gcos verify ' || v_sid, 'fix the world or the spec, then check with');
    END IF;
    RETURN gcos._gate(3, 'reverify', true, pg_catalog.format('re-verify of %s holds: all re-verify checks hold', v_sid),
                      '', 'nothing to do');
END
$$;

-- Invoker, like every gate helper (010): the gcos roles that may evaluate the gates need it.
REVOKE ALL ON FUNCTION gcos._expect_text(jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gcos._expect_text(jsonb) TO gcos_admin, gcos_operator, gcos_sovereign, gcos_council, gcos_auditor;
