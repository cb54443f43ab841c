-- gcos schema version 28: rollback is not last-in-first-out across the whole database (issue 10
-- item 10). A step whose footprint does not overlap any later commit still in force rolls back out of order; the
-- proof is that the objects and watched rows it changed return to their state before its commit and nothing
-- outside its footprint changes. A later commit that does overlap is named, with the order to undo them in.
--
-- What is recorded makes it provable: a commit or rollback record holds the whole fingerprint after it
-- (fingerprint_after_full) and the summary of the one before (hashes and watched tables). The schema map before
-- a commit is the whole map of any record whose schema hash it had, checked by recomputing the hash from the map
-- (gcos._schema_at). A commit's footprint is then the schema objects that differ between its maps before and
-- after, as the relations they belong to, with the tables whose rows it changed and the relations linked to those
-- in the catalog (views over them, indexes, foreign keys): gcos._commit_units. When any of that is not recorded,
-- the rollback is refused as before (fail closed).
--
-- Gate 4 of a rollback (gcos._gate_rehearsal_rollback) judges it; gcos._commit_in_force gives the kernel the
-- fingerprint hash the rollback must reach: the live fingerprint with this step's objects and watched tables
-- set back to their recorded state before its commit, recomputed (gcos._rollback_expected).
SET LOCAL ROLE gcos_owner;

-- The hashes of a fingerprint rebuilt from its maps, canonical as gcos.fingerprint_at writes them.
CREATE FUNCTION gcos._fp_rehash(p_schema jsonb, p_tables jsonb) RETURNS jsonb
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
    WITH s AS (
        SELECT pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to('{' || COALESCE(pg_catalog.string_agg(
                   gcos._jcs_string(c.key) || ':{' || COALESCE((
                       SELECT pg_catalog.string_agg(gcos._jcs_string(o.key) || ':' || gcos._jcs_string(o.value #>> '{}'), ','
                                                    ORDER BY o.key COLLATE "C")
                         FROM pg_catalog.jsonb_each(c.value) AS o), '') || '}', ',' ORDER BY c.key COLLATE "C"), '') || '}',
               'UTF8')), 'hex') AS h
          FROM pg_catalog.jsonb_each(COALESCE(p_schema, '{}')) AS c
    ), t AS (
        SELECT '{' || COALESCE(pg_catalog.string_agg(gcos._jcs_string(e.key) || ':{"content":'
                   || gcos._jcs_string(e.value ->> 'content') || ',"rows":' || (e.value ->> 'rows') || '}', ','
                   ORDER BY e.key COLLATE "C"), '') || '}' AS txt
          FROM pg_catalog.jsonb_each(COALESCE(p_tables, '{}')) AS e
    )
    SELECT pg_catalog.jsonb_build_object('schema_hash', s.h, 'hash', pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(
               '{"format_version":1,"schema_hash":"' || s.h || '","tables":' || t.txt || '}', 'UTF8')), 'hex'))
      FROM s, t
$$;

-- The commits and rollbacks that count (gcos._step_history's rule) after ledger seq p_after, each saying whether
-- it is a commit still in force.
CREATE FUNCTION gcos._governed_after(p_after bigint)
    RETURNS TABLE (seq bigint, kind text, step_id text, in_force boolean, payload jsonb)
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT l.seq, l.kind, l.step_id,
           l.kind = 'commit' AND (gcos._step_history(l.step_id) ->> 'commit_seq')::bigint = l.seq,
           l.record -> 'payload'
      FROM gcos.ledger AS l
      JOIN gcos.ledger AS d ON d.seq = gcos._jint(l.record #> '{payload,policy_decision_seq}') AND d.seq < l.seq
                           AND d.kind = 'policy_decision' AND d.step_id = l.step_id
                           AND (d.record #> '{payload,allow}') = 'true'::jsonb
                           AND (d.record -> 'trace_id') = (l.record -> 'trace_id')
     WHERE l.kind IN ('commit', 'rollback') AND l.step_id IS NOT NULL AND l.seq > p_after
       AND (l.record #> '{payload,outcome}') = '"applied"'::jsonb
$$;

-- The whole schema map whose hash is p_schema_hash, from the latest commit or rollback record that holds it,
-- checked against the hash; NULL when none does.
CREATE FUNCTION gcos._schema_at(p_schema_hash text) RETURNS jsonb
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT x.s FROM (
        SELECT l.record #> '{payload,fingerprint_after_full,schema}' AS s
          FROM gcos.ledger AS l
         WHERE l.kind IN ('commit', 'rollback')
           AND l.record #>> '{payload,fingerprint_after_full,schema_hash}' = p_schema_hash
         ORDER BY l.seq DESC LIMIT 1) AS x
     WHERE pg_catalog.jsonb_typeof(x.s) = 'object' AND gcos._fp_rehash(x.s, '{}') ->> 'schema_hash' = p_schema_hash
$$;

-- The schema objects that differ between two schema maps, with their definition hashes before and after.
CREATE FUNCTION gcos._schema_changes(p_before jsonb, p_after jsonb)
    RETURNS TABLE (category text, identity text, before text, after text)
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT k.c, COALESCE(x.bkey, x.akey), x.bval, x.aval
      FROM (SELECT c FROM pg_catalog.jsonb_object_keys(COALESCE(p_before, '{}')) AS c
            UNION SELECT c FROM pg_catalog.jsonb_object_keys(COALESCE(p_after, '{}')) AS c) AS k(c)
     CROSS JOIN LATERAL (
        SELECT b.key AS bkey, a.key AS akey, b.value #>> '{}' AS bval, a.value #>> '{}' AS aval
          FROM pg_catalog.jsonb_each(COALESCE(p_before -> k.c, '{}')) AS b
          FULL JOIN pg_catalog.jsonb_each(COALESCE(p_after -> k.c, '{}')) AS a ON a.key = b.key) AS x
     WHERE x.bval IS DISTINCT FROM x.aval
$$;

-- Units, with the relations the catalog links to their relations: what each depends on and what depends on it
-- (a view and the tables it reads, an index or owned sequence and its table), and foreign keys either way.
-- A unit is a relation identity (schema.relation, quoted as the fingerprint quotes it) or "category identity".
CREATE FUNCTION gcos._units_related(p_units text[]) RETURNS text[]
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    WITH rel AS (
        SELECT pg_catalog.to_regclass(u)::oid AS oid FROM pg_catalog.unnest(p_units) AS u WHERE u !~ '^[a-z_]+ '
    ), linked(oid) AS (
        SELECT d.refobjid FROM rel JOIN pg_catalog.pg_depend AS d
            ON d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = rel.oid AND d.refclassid = 'pg_catalog.pg_class'::regclass
        UNION SELECT d.objid FROM rel JOIN pg_catalog.pg_depend AS d
            ON d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid = rel.oid AND d.classid = 'pg_catalog.pg_class'::regclass
        UNION SELECT w.ev_class FROM rel JOIN pg_catalog.pg_depend AS d
            ON d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid = rel.oid AND d.classid = 'pg_catalog.pg_rewrite'::regclass
          JOIN pg_catalog.pg_rewrite AS w ON w.oid = d.objid
        UNION SELECT d.refobjid FROM rel JOIN pg_catalog.pg_rewrite AS w ON w.ev_class = rel.oid
          JOIN pg_catalog.pg_depend AS d ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid = w.oid
                                        AND d.refclassid = 'pg_catalog.pg_class'::regclass
        UNION SELECT k.confrelid FROM rel JOIN pg_catalog.pg_constraint AS k ON k.conrelid = rel.oid AND k.confrelid <> 0
        UNION SELECT k.conrelid FROM rel JOIN pg_catalog.pg_constraint AS k ON k.confrelid = rel.oid AND k.conrelid <> 0
    )
    SELECT COALESCE(pg_catalog.array_agg(DISTINCT x.u), '{}') FROM (
        SELECT pg_catalog.unnest(p_units) AS u
        UNION ALL
        SELECT pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname)
          FROM linked JOIN pg_catalog.pg_class AS c ON c.oid = linked.oid
          JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
         WHERE n.nspname <> 'pg_catalog' AND n.nspname <> 'gcos') AS x
$$;

-- The footprint of a commit record (its payload) as units (gcos._units_related): the schema objects it changed,
-- each as the relation it belongs to where it belongs to one, the tables whose rows it changed (its row deltas
-- and the watched tables whose rows or content differ), and the relations linked to those. NULL when its schema
-- before is not recorded in full: its footprint cannot be known.
CREATE FUNCTION gcos._commit_units(p jsonb) RETURNS text[]
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_before jsonb := gcos._schema_at(p #>> '{fingerprint_before,schema_hash}');
    v_units text[];
BEGIN
    IF v_before IS NULL OR pg_catalog.jsonb_typeof(p #> '{fingerprint_after_full,schema}') IS DISTINCT FROM 'object' THEN
        RETURN NULL;
    END IF;
    SELECT pg_catalog.array_agg(x.u) INTO v_units FROM (
        SELECT CASE WHEN o.category IN ('relation', 'column', 'constraint', 'index', 'trigger', 'rule', 'policy', 'sequence',
                                        'statistics')
                    THEN (SELECT pg_catalog.quote_ident(i[1]) || '.' || pg_catalog.quote_ident(i[2])
                            FROM pg_catalog.parse_ident(o.identity, false) AS i)
                    ELSE o.category || ' ' || o.identity END AS u
          FROM gcos._schema_changes(v_before, p #> '{fingerprint_after_full,schema}') AS o
        UNION ALL
        SELECT k FROM pg_catalog.jsonb_object_keys(COALESCE(p #> '{footprint,row_deltas}', '{}')) AS k
        UNION ALL
        SELECT COALESCE(b.key, a.key)
          FROM pg_catalog.jsonb_each(COALESCE(p #> '{fingerprint_before,tables}', '{}')) AS b
          FULL JOIN pg_catalog.jsonb_each(COALESCE(p #> '{fingerprint_after,tables}', '{}')) AS a ON a.key = b.key
         WHERE a.value IS DISTINCT FROM b.value) AS x;
    RETURN gcos._units_related(COALESCE(v_units, '{}'));
END
$$;

-- Whether the commit in force p_seq of a step may roll back although the world changed since (schema hash now
-- p_now), from recorded facts: {verdict, ...}. verdict "allow" (later: the later commits in force, none of which
-- overlaps it; objects: how many schema objects it changed), "overlap" (order: the later commits in force that
-- overlap it, or overlap one that does, latest first; first: the step to start with), "unknown" (its footprint or
-- a later one's cannot be known from the ledger), "drift" (the world changed after the last governed change, or
-- its own objects changed and no later commit in force did it: changed, a few of them).
CREATE FUNCTION gcos._rollback_out_of_order(p_seq bigint, p_now text) RETURNS jsonb
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p jsonb := (SELECT l.record -> 'payload' FROM gcos.ledger AS l WHERE l.seq = p_seq);
    v_units text[];
    v_blocked text[] := '{}';
    v_later text[] := '{}';
    v_order text[] := '{}';
    v_first text;
    v_changed text[];
    l record;
    u text[];
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
        v_later := v_later || pg_catalog.format('%s (commit seq %s)', l.step_id, l.seq);
        IF u IS NULL OR u && (v_units || v_blocked) THEN
            v_blocked := v_blocked || COALESCE(u, '{}');
            v_order := pg_catalog.format('%s (commit seq %s)', l.step_id, l.seq) || v_order;
            v_first := l.step_id;
        END IF;
    END LOOP;
    IF v_first IS NOT NULL THEN
        RETURN pg_catalog.jsonb_build_object('verdict', 'overlap', 'order', pg_catalog.array_to_string(v_order, ', then '),
                                             'first', v_first);
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

-- Gate 4 of a rollback, as 023 defined it, but a world changed since the commit (or governed changes after it)
-- no longer refuses by itself: gcos._rollback_out_of_order judges whether the step may go out of order.
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
                              'overlap its footprint; roll them back first, latest first: %s; then %s', v_sid, v_commit,
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

-- The fingerprint hash the rollback of a commit (its spec hash and payload) must reach when governed changes
-- came after it: the live fingerprint with the schema objects and watched tables the commit changed set back to
-- their recorded state before it, rehashed. NULL when that cannot be built from the record (the kernel then
-- demands the fingerprint before the commit, as before).
CREATE FUNCTION gcos._rollback_expected(p_spec_hash text, p jsonb) RETURNS text
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_before jsonb := gcos._schema_at(p #>> '{fingerprint_before,schema_hash}');
    v_spec jsonb := (SELECT s.document FROM gcos.specs AS s WHERE s.spec_hash = p_spec_hash);
    v_now jsonb;
    v_schema jsonb;
    v_tables jsonb;
    o record;
BEGIN
    IF v_before IS NULL OR v_spec IS NULL OR pg_catalog.jsonb_typeof(p #> '{fingerprint_after_full,schema}') IS DISTINCT FROM 'object' THEN
        RETURN NULL;
    END IF;
    v_now := gcos._kernel_fingerprint(ARRAY(SELECT pg_catalog.jsonb_array_elements_text(COALESCE(v_spec -> 'watch', '[]'))));
    IF gcos._fp_rehash(v_now -> 'schema', v_now -> 'tables') ->> 'hash' IS DISTINCT FROM v_now ->> 'hash' THEN
        RETURN NULL;  -- keys this rebuild cannot order as the fingerprint does
    END IF;
    v_schema := v_now -> 'schema';
    FOR o IN SELECT * FROM gcos._schema_changes(v_before, p #> '{fingerprint_after_full,schema}') LOOP
        v_schema := CASE WHEN o.before IS NULL THEN v_schema #- ARRAY[o.category, o.identity]
                         ELSE pg_catalog.jsonb_set(v_schema, ARRAY[o.category], COALESCE(v_schema -> o.category, '{}')
                                                   || pg_catalog.jsonb_build_object(o.identity, o.before)) END;
    END LOOP;
    v_tables := v_now -> 'tables';
    FOR o IN SELECT COALESCE(b.key, a.key) AS t, b.value AS before
               FROM pg_catalog.jsonb_each(COALESCE(p #> '{fingerprint_before,tables}', '{}')) AS b
               FULL JOIN pg_catalog.jsonb_each(COALESCE(p #> '{fingerprint_after,tables}', '{}')) AS a ON a.key = b.key
              WHERE a.value IS DISTINCT FROM b.value LOOP
        v_tables := CASE WHEN o.before IS NULL THEN v_tables - o.t
                         ELSE v_tables || pg_catalog.jsonb_build_object(o.t, o.before) END;
    END LOOP;
    RETURN gcos._fp_rehash(v_schema, v_tables) ->> 'hash';
END
$$;

-- The fingerprint a rollback must return to: the one the commit in force recorded before it applied when nothing
-- governed came after it; otherwise the live one with this step's footprint set back (gcos._rollback_expected).
CREATE OR REPLACE FUNCTION gcos._commit_in_force(p_step text, OUT seq bigint, OUT before_hash text)
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v record;
BEGIN
    SELECT l.seq, l.spec_hash, l.record -> 'payload' AS payload INTO v
      FROM gcos.ledger AS l WHERE l.seq = (gcos._step_history(p_step) ->> 'commit_seq')::bigint;
    seq := v.seq;
    before_hash := v.payload #>> '{fingerprint_before,hash}';
    IF seq IS NOT NULL AND EXISTS (SELECT FROM gcos._governed_after(seq)) THEN
        before_hash := COALESCE(gcos._rollback_expected(v.spec_hash, v.payload), before_hash);
    END IF;
END
$$;

RESET ROLE;
REVOKE ALL ON FUNCTION gcos._fp_rehash(jsonb, jsonb), gcos._governed_after(bigint), gcos._schema_at(text),
    gcos._schema_changes(jsonb, jsonb), gcos._units_related(text[]), gcos._commit_units(jsonb),
    gcos._rollback_out_of_order(bigint, text), gcos._rollback_expected(text, jsonb) FROM PUBLIC;
-- Gate 4 runs with the caller's rights (010): its helpers are executable by the gcos roles, as the gates' are.
GRANT EXECUTE ON FUNCTION gcos._fp_rehash(jsonb, jsonb), gcos._governed_after(bigint), gcos._schema_at(text),
    gcos._schema_changes(jsonb, jsonb), gcos._units_related(text[]), gcos._commit_units(jsonb),
    gcos._rollback_out_of_order(bigint, text)
    TO gcos_admin, gcos_operator, gcos_sovereign, gcos_council, gcos_auditor;
