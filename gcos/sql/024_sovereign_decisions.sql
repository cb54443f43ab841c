-- gcos schema version 24: decisions are a sovereign's, never the committer's, always expire, and are bound to
-- the text decided (issue 10 item 3; seed 002 §70.2 #8: a C-7/C-1/C-2 decision may not be "ratified by silence
-- (silence ≠ approval) or recorded by an agent that may not record (D10 sovereign)").
--
-- Until now a council member could record a decision, the committer could be its decider, a decision counted
-- whatever had been decided, and SB-1-2's A-8 stood for C-1 and C-2 together.
--
-- 1. The text. A plan carries the text of every decision its steps require (plans/*.yaml
--    `decisions: {C-1: {text: "..."}}`, checked by gcos.spec). A decision's text hash is
--    sha256(UTF-8 text), lowercase hex: gcos.decision_text_hash(text). gcos.decisions gains text_hash (NULL on
--    rows from before this version: they never count again; decide again).
-- 2. gcos.record_decision(p_decision, p_text_hash, p_verdict, p_expires_at, p_note, p_trace_id, p_span_id)
--    replaces the signature without the hash (dropped: an old client gets "function does not exist" rather
--    than a decision bound to nothing). It refuses (42501) a principal without the sovereign role, 22023 a hash
--    that is not 64 lowercase hex digits, and (as before, gcos._check_expiry) a missing, infinite or past
--    expiry. The ledger payload carries "text_hash".
-- 3. Gate 6 (gcos._decision_word, gcos._gate_decisions) counts a decision record only if, beside 010's rules,
--    its text hash is the hash of the decision's text in the plan the commit runs under (no text there: the
--    gate refuses and says to add it), it was recorded as a sovereign and its decider still holds the sovereign
--    role, and its decider is not the committer (gcos._one_person: the same role, person or display name). Each
--    reason is named. gcos._gates_cross_check compares text_hash too.
SET LOCAL ROLE gcos_owner;

ALTER TABLE gcos.decisions ADD COLUMN text_hash text CHECK (text_hash ~ '^[0-9a-f]{64}$');

-- What a decision record is bound to: sha256 over the UTF-8 text, lowercase hex (Python: hashlib.sha256).
CREATE FUNCTION gcos.decision_text_hash(p_text text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT SET search_path = pg_catalog, pg_temp
AS $$ SELECT pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(p_text, 'UTF8')), 'hex') $$;

-- ----------------------------------------------------------------------------------- the aperture

DROP FUNCTION gcos.record_decision(text, text, timestamptz, text, text, text);
CREATE FUNCTION gcos.record_decision(p_decision text, p_text_hash text, p_verdict text, p_expires_at timestamptz,
                                     p_note text, p_trace_id text DEFAULT NULL, p_span_id text DEFAULT NULL)
    RETURNS TABLE (decision_id bigint, ledger_seq bigint, ledger_hash text)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a record;
    v_now timestamptz;
    v_id bigint;
    v_db record;
    v_write record;
BEGIN
    SELECT * INTO a FROM gcos._require_authority('decide');
    IF NOT ('sovereign' = ANY (a.roles)) THEN
        PERFORM gcos._refuse(pg_catalog.format(
            'gcos: principal %s is not a sovereign and cannot record a decision: only a sovereign decides (seed 002 §70.2 #8, D10)',
            a.principal));
    END IF;
    IF p_decision IS NULL OR p_decision !~ E'^[A-Z][A-Z0-9]*-[0-9]+(\\.[0-9]+)*$' OR pg_catalog.length(p_decision) > 63 THEN
        PERFORM gcos._invalid(pg_catalog.format('gcos: decision id %L is invalid; use a name such as A-4 or C-7.1', p_decision));
    END IF;
    IF p_text_hash IS NULL OR p_text_hash !~ '^[0-9a-f]{64}$' THEN
        PERFORM gcos._invalid(pg_catalog.format(
            'gcos: decision %s needs the sha256 of its text (64 lowercase hex digits), the text its plan carries', p_decision));
    END IF;
    PERFORM gcos._check_verdict(p_verdict);
    v_now := pg_catalog.clock_timestamp();
    PERFORM gcos._check_expiry(p_expires_at, v_now);
    SELECT * INTO v_db FROM gcos.database_incarnation();
    v_id := pg_catalog.nextval('gcos.decisions_id_seq');
    SELECT * INTO v_write FROM gcos._ledger_write('decision', NULL, NULL, p_trace_id, p_span_id,
        pg_catalog.jsonb_build_object(
            'decision_id', v_id, 'decision', p_decision, 'text_hash', p_text_hash, 'verdict', p_verdict,
            'expires_at', gcos._utc(p_expires_at), 'note', p_note, 'decider_roles', pg_catalog.to_jsonb(a.roles),
            'target', pg_catalog.jsonb_build_object('system_identifier', v_db.system_identifier,
                                                    'database', v_db.database_name,
                                                    'database_oid', v_db.database_oid::bigint)));
    INSERT INTO gcos.decisions (id, decision, text_hash, verdict, decider_oid, decider, decider_role, decider_roles,
                                note, expires_at, created_at, ledger_seq, system_identifier, database_name, database_oid)
    VALUES (v_id, p_decision, p_text_hash, p_verdict, a.role_oid, a.principal, a.role_name, a.roles, p_note,
            p_expires_at, v_now, v_write.seq, v_db.system_identifier, v_db.database_name, v_db.database_oid);
    RETURN QUERY SELECT v_id, v_write.seq, v_write.hash;
END
$$;

-- ----------------------------------------------------------------------------------- the cross-check

-- As 010, with the decisions' text hash compared too.
CREATE OR REPLACE FUNCTION gcos._gates_cross_check(p_step_id text, p_decisions text[]) RETURNS void
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_odd text;
BEGIN
    SELECT pg_catalog.string_agg(DISTINCT COALESCE(l.id, t.id)::text, ', ') INTO v_odd
      FROM (SELECT gcos._jint(e.record #> '{payload,approval_id}') AS id, e.spec_hash,
                   e.record #>> '{payload,plan_hash}' AS plan_hash, e.record #>> '{payload,verdict}' AS verdict,
                   gcos._jint(e.record #> '{actor,role_oid}') AS oid, (e.record #>> '{payload,expires_at}')::timestamptz AS expires_at,
                   e.seq AS ledger_seq,
                   EXISTS (SELECT 1 FROM gcos.ledger AS x WHERE x.kind = 'approval_revocation'
                              AND (x.record #> '{payload,approval_id}') = (e.record #> '{payload,approval_id}')) AS revoked,
                   gcos._jtext(e.record #> '{payload,target,system_identifier}') AS sysid,
                   gcos._jtext(e.record #> '{payload,target,database}') AS db,
                   gcos._jint(e.record #> '{payload,target,database_oid}') AS dboid
              FROM gcos.ledger AS e WHERE e.kind = 'approval' AND e.step_id = p_step_id) AS l
      FULL JOIN (SELECT a.id, a.spec_hash, a.plan_hash, a.verdict, a.approver_oid::bigint AS oid, a.expires_at,
                        a.ledger_seq, r.id IS NOT NULL AS revoked, a.system_identifier AS sysid,
                        a.database_name::text AS db, a.database_oid::bigint AS dboid
                   FROM gcos.os_proposal_approvals AS a LEFT JOIN gcos.approval_revocations AS r ON r.approval_id = a.id
                  WHERE a.step_id = p_step_id) AS t ON t.id = l.id
     WHERE ROW(l.*) IS DISTINCT FROM ROW(t.*);
    IF v_odd IS NOT NULL THEN
        RAISE EXCEPTION 'gcos: the approvals of % in gcos.os_proposal_approvals and in the ledger disagree (approval %); run gcos ledger verify and keep the database as evidence',
            p_step_id, v_odd USING ERRCODE = 'GC007';
    END IF;
    SELECT pg_catalog.string_agg(DISTINCT COALESCE(l.id, t.id)::text, ', ') INTO v_odd
      FROM (SELECT gcos._jint(e.record #> '{payload,decision_id}') AS id, e.record #>> '{payload,decision}' AS decision,
                   gcos._jtext(e.record #> '{payload,text_hash}') AS text_hash,
                   e.record #>> '{payload,verdict}' AS verdict, gcos._jint(e.record #> '{actor,role_oid}') AS oid,
                   (e.record #>> '{payload,expires_at}')::timestamptz AS expires_at, e.seq AS ledger_seq,
                   EXISTS (SELECT 1 FROM gcos.ledger AS x WHERE x.kind = 'decision_revocation'
                              AND (x.record #> '{payload,decision_id}') = (e.record #> '{payload,decision_id}')) AS revoked,
                   gcos._jtext(e.record #> '{payload,target,system_identifier}') AS sysid,
                   gcos._jtext(e.record #> '{payload,target,database}') AS db,
                   gcos._jint(e.record #> '{payload,target,database_oid}') AS dboid
              FROM gcos.ledger AS e WHERE e.kind = 'decision' AND (e.record #>> '{payload,decision}') = ANY (p_decisions)) AS l
      FULL JOIN (SELECT d.id, d.decision, d.text_hash, d.verdict, d.decider_oid::bigint AS oid, d.expires_at, d.ledger_seq,
                        r.id IS NOT NULL AS revoked, d.system_identifier AS sysid, d.database_name::text AS db,
                        d.database_oid::bigint AS dboid
                   FROM gcos.decisions AS d LEFT JOIN gcos.decision_revocations AS r ON r.decision_id = d.id
                  WHERE d.decision = ANY (p_decisions)) AS t ON t.id = l.id
     WHERE ROW(l.*) IS DISTINCT FROM ROW(t.*);
    IF v_odd IS NOT NULL THEN
        RAISE EXCEPTION 'gcos: decision records % in gcos.decisions and in the ledger disagree; run gcos ledger verify and keep the database as evidence',
            v_odd USING ERRCODE = 'GC007';
    END IF;
END
$$;

-- ----------------------------------------------------------------------------------- gate 6

-- The latest word in force on one decision, as 010, where a record counts only if it is bound to the text the
-- plan carries now, was recorded by a sovereign who still is one, and its decider is not the committer.
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
            WHEN d.text_hash IS NULL
                THEN 'was recorded before gcos bound decisions to their text, so it never counts; decide it again'
            WHEN d.text_hash <> v_hash
                THEN pg_catalog.format('decided text %s, but plan %s now says %s: the decision was edited, so decide it again',
                                       gcos._short(d.text_hash), c #>> '{plan,id}', gcos._short(v_hash))
            WHEN d.kind IS DISTINCT FROM 'human' THEN pg_catalog.format('is by %s, not a human principal', d.who)
            WHEN d.superuser THEN pg_catalog.format('is by %s, a superuser', d.who)
            WHEN NOT d.as_sovereign THEN pg_catalog.format('is by %s, who was not a sovereign: only a sovereign decides', d.who)
            WHEN NOT d.sovereign_now THEN pg_catalog.format('is by %s, who is no longer a sovereign', d.who)
            WHEN pg_catalog.cardinality(d.conflicts) > 0 THEN gcos._conflict_problem(d.who, d.conflicts)
            WHEN gcos._one_person(d.oid, gcos._person_of(d.oid, d.who), d.who, (c ->> 'actor_oid')::bigint,
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
        why := pg_catalog.format('stands at %s (record %s by %s)', v_word.verdict, v_word.id, v_word.who);
    ELSE
        record_id := v_word.id;
        who := v_word.who;
        expires_at := v_word.expires_at;
    END IF;
END
$$;

-- Gate 6, as 010, asking a sovereign who is not the committer.
CREATE OR REPLACE FUNCTION gcos._gate_decisions(c jsonb) RETURNS jsonb
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_required text[] := gcos._jarray_text(c #> '{spec,decisions}');
    v_held text;
    v_ids bigint[];
    v_missing text;
    v_first text;
BEGIN
    IF c ->> 'action' = 'rollback' THEN
        RETURN gcos._gate(6, 'decisions', true, 'decisions gate a commit; a rollback needs its own approval only', '', 'nothing to do');
    ELSIF pg_catalog.cardinality(v_required) = 0 THEN
        RETURN gcos._gate(6, 'decisions', true, 'no decisions required', '', 'nothing to do');
    END IF;
    SELECT pg_catalog.string_agg(pg_catalog.format('%s (record %s by %s, expires %s)', n.name, w.record_id, w.who,
                                                   gcos._utc(w.expires_at)), ', ' ORDER BY n.o) FILTER (WHERE w.record_id IS NOT NULL),
           pg_catalog.array_agg(w.record_id ORDER BY n.o) FILTER (WHERE w.record_id IS NOT NULL),
           pg_catalog.string_agg(pg_catalog.format('decision %s %s', n.name, w.why), '; ' ORDER BY n.o) FILTER (WHERE w.record_id IS NULL),
           (pg_catalog.array_agg(n.name ORDER BY n.o) FILTER (WHERE w.record_id IS NULL))[1]
      INTO v_held, v_ids, v_missing, v_first
      FROM pg_catalog.unnest(v_required) WITH ORDINALITY AS n(name, o), LATERAL gcos._decision_word(c, n.name) AS w;
    IF v_missing IS NOT NULL THEN
        RETURN gcos._gate(6, 'decisions', false, v_missing, pg_catalog.format('gcos decide %s --verdict approve --expires-in 24h',
                          v_first), 'ask a sovereign who is not the committer to run', true, v_ids);
    END IF;
    RETURN gcos._gate(6, 'decisions', true, 'decisions hold: ' || v_held, '', 'nothing to do', true, v_ids);
END
$$;

-- ----------------------------------------------------------------------------------- privileges

REVOKE ALL ON FUNCTION gcos.decision_text_hash(text),
    gcos.record_decision(text, text, text, timestamptz, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gcos.decision_text_hash(text)
    TO gcos_admin, gcos_operator, gcos_sovereign, gcos_council, gcos_auditor;
GRANT EXECUTE ON FUNCTION gcos.record_decision(text, text, text, timestamptz, text, text, text)
    TO gcos_sovereign, gcos_council;
