-- gcos schema version 10: the seven commit gates, decided by the database (issue 9 item 3; CONTRACT.md
-- "Gates that COMMIT must pass").
--
-- API (SECURITY INVOKER, search_path pinned; EXECUTE to gcos_admin, gcos_operator, gcos_sovereign,
-- gcos_council and gcos_auditor: it only reads what they can read):
--   gcos.evaluate_gates(p_spec_hash text, p_plan_hash text, p_action text, p_world jsonb) RETURNS jsonb
--       p_action 'commit' or 'rollback' (22023 otherwise; 22023 for a hash that is not 64 hex digits, or a
--       p_world that is not an object). The spec and plan are the REGISTERED documents (gcos.specs,
--       gcos.plans, 006) with these hashes; the step is the spec's id. p_world is what the caller measured
--       in its own transaction (the kernel, under the commit lock):
--         {"schema_hash": text,                         the schema fingerprint now (gcos.fingerprint)
--          "reverify": [gcos.evaluate_check(c) ...],    one result per check of the spec's reverify, in order
--          "global_stops": [{name, holds, detail} ...], gcos.stop_holds of the plan's global_stop items
--                                                       (max_new_tables may be left out: no footprint yet)
--          "as_actor": false}                           optional: `gcos status`, nobody is committing, so
--                                                       the session's own approvals are not self-approvals
--       A key left out is "not measured": that gate refuses with known=false (fail closed), as gates.py does
--       for status. Everything else is read here, now: the ledger (rehearsals; commits and rollbacks that
--       count, i.e. outcome applied AND naming an earlier allowing policy_decision of the same step and
--       trace), approvals, decisions, revocations, principals now, gcos.principal_conflicts now,
--       gcos.database_incarnation(), clock_timestamp() (expires_at <= clock is expired) and the committer
--       (session_user's principal).
--       Returns the policy decision payload gates.py writes, but for trace_id (the caller adds it):
--         {format_version, allow, action, step_id, spec_hash, plan_hash, evaluated_at, failed, refusal,
--          gates: [{number, gate, allow, known, reason, remedy, command, evidence, decisive}, ... 7 of them]}
--       Gate numbers, names, allow/known/decisive and evidence follow gates.py rule for rule; reasons and
--       remedies say the same thing (the command is always the next one to run).
--       An unregistered spec hash refuses gate 1 (remedy: gcos rehearse, which registers it) and leaves
--       gates 2-7 unknown; an unregistered plan, or a plan without the step, refuses gate 1 and binds nothing.
--       Raises GC007 when gcos.os_proposal_approvals / gcos.decisions (and their revocations) disagree with
--       the ledger for this step (gates.py: LedgerBroken, exit 7): run `gcos ledger verify`.
--   gcos.rollback_subject_hash(p_spec_hash text) RETURNS text
--       sha256(JCS({"rollback_of": spec hash})): what an approval of a step's ROLLBACK binds instead of the
--       spec hash (gates.rollback_subject_hash).
--
-- Deliberate differences from gates.py (wording aside):
--   * the state of a DEPENDENCY named in gate 2's reason is committed, rolled_back or "not committed" (the
--     database cannot tell which of a dependency's registered specs is current, so it does not project
--     planned/rehearsed/approved for it); the judged step's state in gate 7 is projected as state.py does;
--   * gate 2 of a rollback finds the committed dependants from the depends_on of the spec each one was
--     committed with (the registry), not from the specs on disk; a committed step whose spec was never
--     registered makes the gate unknown (refused), since nobody can tell whether it depends on this one;
--   * gate 3 refuses (unknown) re-verify results that are not one per check of the spec, in order, and
--     gate 7 refuses (unknown) fewer global stop results than the plan has (non-footprint) items;
--   * names are compared for "one person counts once" after collapsing white space and lower() (Python:
--     casefold(), which also folds e.g. German sharp s).
SET LOCAL ROLE gcos_owner;

-- ----------------------------------------------------------------------------------- helpers

CREATE FUNCTION gcos.rollback_subject_hash(p_spec_hash text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(
               gcos.jcs(pg_catalog.jsonb_build_object('rollback_of', p_spec_hash)), 'UTF8')), 'hex')
$$;

-- A hash as people read it in a sentence (gates.short).
CREATE FUNCTION gcos._short(p_hash text) RETURNS text
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT CASE WHEN COALESCE(p_hash, '') = '' THEN '(none)' ELSE pg_catalog.left(p_hash, 12) || '…' END $$;

-- A JSON string's text (else NULL), a JSON integer's value (else NULL): what state.py's _str and _int accept.
CREATE FUNCTION gcos._jtext(p jsonb) RETURNS text
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT CASE WHEN pg_catalog.jsonb_typeof(p) = 'string' THEN p #>> '{}' END $$;

CREATE FUNCTION gcos._jint(p jsonb) RETURNS bigint
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN pg_catalog.jsonb_typeof(p) = 'number' AND (p #>> '{}') ~ '^-?[0-9]{1,18}$'
                THEN (p #>> '{}')::bigint END
$$;

-- One person: the same role, or the same display name once white space is collapsed and case folded.
CREATE FUNCTION gcos._same_person(p_oid bigint, p_name text, p_other_oid bigint, p_other_name text) RETURNS boolean
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT (p_other_oid IS NOT NULL AND p_oid = p_other_oid)
        OR COALESCE(NULLIF(pg_catalog.lower(pg_catalog.btrim(pg_catalog.regexp_replace(p_name, '\s+', ' ', 'g'), ' ')), '')
                  = pg_catalog.lower(pg_catalog.btrim(pg_catalog.regexp_replace(p_other_name, '\s+', ' ', 'g'), ' ')),
                    false)
$$;

-- "sovereign or council member" (with an article: "a sovereign or council member").
CREATE FUNCTION gcos._roles_text(p_roles text[], p_article boolean) RETURNS text
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN NOT p_article THEN '' WHEN t.text ~ '^[aeiou]' THEN 'an ' ELSE 'a ' END || t.text
      FROM (SELECT pg_catalog.string_agg(CASE r WHEN 'council' THEN 'council member' ELSE r END, ' or ' ORDER BY o) AS text
              FROM pg_catalog.unnest(CASE WHEN pg_catalog.cardinality(p_roles) > 0 THEN p_roles
                                          ELSE ARRAY['sovereign'] END) WITH ORDINALITY AS u(r, o)) AS t
$$;

CREATE FUNCTION gcos._jarray_text(p jsonb) RETURNS text[]
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT COALESCE(pg_catalog.array_agg(e.x ORDER BY e.o), '{}')
      FROM pg_catalog.jsonb_array_elements_text(CASE WHEN pg_catalog.jsonb_typeof(p) = 'array' THEN p ELSE '[]' END)
           WITH ORDINALITY AS e(x, o)
$$;

-- One gate's result, as gates.GateResult.to_payload writes it.
CREATE FUNCTION gcos._gate(p_number integer, p_gate text, p_allow boolean, p_reason text, p_command text,
                           p_lead text DEFAULT 'run', p_known boolean DEFAULT true, p_evidence bigint[] DEFAULT '{}',
                           p_decisive boolean DEFAULT false) RETURNS jsonb
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.jsonb_build_object(
        'number', p_number, 'gate', p_gate, 'allow', p_allow, 'known', p_known, 'reason', p_reason,
        'remedy', CASE WHEN COALESCE(p_command, '') = '' THEN p_lead ELSE p_lead || ': ' || p_command END,
        'command', COALESCE(p_command, ''), 'evidence', pg_catalog.to_jsonb(COALESCE(p_evidence, '{}')),
        'decisive', p_decisive)
$$;

CREATE FUNCTION gcos._conflict_problem(p_who text, p_conflicts text[]) RETURNS text
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.format('is by %s, who is %s: separation of duties keeps whoever can change gcos from approving '
                             '(revoke that from their role, or ask another approver)', p_who, gcos._conflicts_text(p_conflicts))
$$;

CREATE FUNCTION gcos._incarnation_problem(p_name text, p_recorded bigint, p_current bigint, p_what text) RETURNS text
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN p_recorded IS NULL
                THEN pg_catalog.format('was recorded before gcos bound %s to the database OID, so it never counts; '
                                       'record it again', p_what)
                ELSE pg_catalog.format('is from another incarnation of database %s (OID %s, this is OID %s): a copy '
                                       'made with CREATE DATABASE … TEMPLATE refuses it', p_name, p_recorded, p_current)
           END
$$;

-- ----------------------------------------------------------------------------------- the ledger, read

-- What counts in a step's history (state.read_ledger): commits and rollbacks with outcome applied that
-- name an earlier allowing policy decision of the same step and trace. committed/commit_* describe the
-- commit in force (none when it was rolled back); epoch_seq is the last commit or rollback.
CREATE FUNCTION gcos._step_history(p_step_id text) RETURNS jsonb
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    WITH counted AS (
        SELECT l.seq, l.kind, l.spec_hash,
               gcos._jtext(l.record #> '{payload,fingerprint_after,schema_hash}') AS schema_after
          FROM gcos.ledger AS l
          JOIN gcos.ledger AS d ON d.seq = gcos._jint(l.record #> '{payload,policy_decision_seq}') AND d.seq < l.seq
                               AND d.kind = 'policy_decision' AND d.step_id = l.step_id
                               AND (d.record #> '{payload,allow}') = 'true'::jsonb
                               AND (d.record -> 'trace_id') = (l.record -> 'trace_id')
         WHERE l.step_id = p_step_id AND l.kind IN ('commit', 'rollback')
           AND (l.record #> '{payload,outcome}') = '"applied"'::jsonb
    ), c AS (SELECT * FROM counted WHERE kind = 'commit' ORDER BY seq DESC LIMIT 1),
       r AS (SELECT * FROM counted WHERE kind = 'rollback' ORDER BY seq DESC LIMIT 1),
       h AS (SELECT c.seq AS commit_seq, c.spec_hash, c.schema_after, r.seq AS rollback_seq,
                    c.seq IS NOT NULL AND (r.seq IS NULL OR r.seq < c.seq) AS committed
               FROM (SELECT 1) AS one LEFT JOIN c ON true LEFT JOIN r ON true)
    SELECT pg_catalog.jsonb_build_object(
               'committed', h.committed, 'last_commit_seq', h.commit_seq, 'rollback_seq', h.rollback_seq,
               'epoch_seq', GREATEST(COALESCE(h.commit_seq, 0), COALESCE(h.rollback_seq, 0)),
               'commit_seq', CASE WHEN h.committed THEN h.commit_seq END,
               'commit_spec_hash', CASE WHEN h.committed THEN h.spec_hash END,
               'commit_schema_hash', CASE WHEN h.committed THEN h.schema_after END)
      FROM h
$$;

-- The rehearsal a gate relies on: commit, the latest since the last commit or rollback; rollback, the
-- latest before the commit in force (it proved the rollback evidence).
CREATE FUNCTION gcos._rehearsal_relied_on(p_step_id text, p_action text, p_history jsonb) RETURNS jsonb
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
     ORDER BY l.seq DESC
     LIMIT 1
$$;

-- {rollback subject hash: spec hash} for every spec of the step gcos knows (registered, rehearsed or
-- committed, and the one judged), so an approval of a rollback is recognised as one.
CREATE FUNCTION gcos._rollback_subjects(p_step_id text, p_spec_hash text) RETURNS jsonb
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT COALESCE(pg_catalog.jsonb_object_agg(gcos.rollback_subject_hash(k.h), k.h), '{}')
      FROM (SELECT p_spec_hash AS h
            UNION SELECT s.spec_hash FROM gcos.specs AS s WHERE s.step_id = p_step_id
            UNION SELECT l.spec_hash FROM gcos.ledger AS l
                   WHERE l.step_id = p_step_id AND l.kind IN ('rehearsal', 'commit') AND l.spec_hash IS NOT NULL) AS k
$$;

-- The approvals and decisions tables must say what the ledger says (approvals._cross_check): GC007 if not.
CREATE FUNCTION gcos._gates_cross_check(p_step_id text, p_decisions text[]) RETURNS void
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
                   e.record #>> '{payload,verdict}' AS verdict, gcos._jint(e.record #> '{actor,role_oid}') AS oid,
                   (e.record #>> '{payload,expires_at}')::timestamptz AS expires_at, e.seq AS ledger_seq,
                   EXISTS (SELECT 1 FROM gcos.ledger AS x WHERE x.kind = 'decision_revocation'
                              AND (x.record #> '{payload,decision_id}') = (e.record #> '{payload,decision_id}')) AS revoked,
                   gcos._jtext(e.record #> '{payload,target,system_identifier}') AS sysid,
                   gcos._jtext(e.record #> '{payload,target,database}') AS db,
                   gcos._jint(e.record #> '{payload,target,database_oid}') AS dboid
              FROM gcos.ledger AS e WHERE e.kind = 'decision' AND (e.record #>> '{payload,decision}') = ANY (p_decisions)) AS l
      FULL JOIN (SELECT d.id, d.decision, d.verdict, d.decider_oid::bigint AS oid, d.expires_at, d.ledger_seq,
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

-- Everything the gates look at, read now (gates.Facts): one JSON object, nulls left out.
CREATE FUNCTION gcos._gates_context(p_spec_hash text, p_plan_hash text, p_action text, p_world jsonb) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_spec jsonb := (SELECT s.document FROM gcos.specs AS s WHERE s.spec_hash = p_spec_hash);
    v_plan jsonb := (SELECT p.document FROM gcos.plans AS p WHERE p.plan_hash = p_plan_hash);
    v_step text := v_spec ->> 'id';
    v_history jsonb := gcos._step_history(v_step);
    v_as_actor boolean := COALESCE(p_world -> 'as_actor', 'true'::jsonb) <> 'false'::jsonb;
    v_db record;
    v_me record;
BEGIN
    SELECT * INTO v_db FROM gcos.database_incarnation();
    SELECT r.oid::bigint AS oid, p.display_name INTO v_me
      FROM pg_catalog.pg_roles AS r LEFT JOIN gcos.principals AS p ON p.role_oid = r.oid
     WHERE r.rolname = session_user;
    RETURN pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
        'action', p_action, 'spec_hash', p_spec_hash, 'spec', v_spec, 'step_id', v_step,
        'plan', v_plan, 'plan_given', p_plan_hash,
        'plan_hash', CASE WHEN COALESCE((v_plan -> 'steps') ? v_step, false) THEN p_plan_hash END,
        'history', v_history, 'rehearsal', gcos._rehearsal_relied_on(v_step, p_action, v_history),
        'rollback_subjects', gcos._rollback_subjects(v_step, p_spec_hash),
        'now', pg_catalog.clock_timestamp(), 'system_identifier', v_db.system_identifier,
        'database', v_db.database_name, 'database_oid', v_db.database_oid::bigint,
        'actor_oid', CASE WHEN v_as_actor THEN v_me.oid ELSE 0 END,
        'actor_name', CASE WHEN v_as_actor THEN v_me.display_name END))
        || pg_catalog.jsonb_build_object('world', COALESCE(p_world, '{}'::jsonb));
END
$$;

-- The state named in reasons: committed, rehearsed (on this spec and plan), rolled_back or planned.
CREATE FUNCTION gcos._state_text(c jsonb) RETURNS text
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN (c #>> '{history,committed}')::boolean THEN 'committed'
                WHEN c #>> '{rehearsal,outcome}' = 'passed' AND c #>> '{rehearsal,spec_hash}' = c ->> 'spec_hash'
                     AND c #>> '{rehearsal,plan_hash}' = c ->> 'plan_hash' THEN 'rehearsed'
                WHEN c #>> '{history,rollback_seq}' IS NOT NULL THEN 'rolled_back'
                ELSE 'planned' END
$$;

-- ----------------------------------------------------------------------------------- gates 1-4

-- Gate 1: the spec and plan are registered (validated by 006), the step is in the plan, the plan's
-- mandatory fold-ins for it are declared; for a rollback, the spec is the one committed.
CREATE FUNCTION gcos._gate_spec(c jsonb) RETURNS jsonb
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_sid text := c ->> 'step_id';
    v_plan_id text := c #>> '{plan,id}';
    v_mandatory text[] := gcos._jarray_text(c #> ARRAY['plan', 'fold_ins', c ->> 'step_id']);
    v_missing text[];
    v_committed text := c #>> '{history,commit_spec_hash}';
BEGIN
    IF c ->> 'plan_given' IS NULL THEN
        RETURN gcos._gate(1, 'spec', false, v_sid || ' is in no plan, so nothing can bind its plan hash', 'gcos plan',
                          pg_catalog.format('add %s to a plan under plans/, then check with', v_sid));
    ELSIF c -> 'plan' IS NULL THEN
        RETURN gcos._gate(1, 'spec', false, pg_catalog.format('plan %s of %s is not registered in this database',
                          gcos._short(c ->> 'plan_given'), v_sid),
                          'gcos rehearse ' || v_sid, 'register it by running');
    ELSIF c ->> 'plan_hash' IS NULL THEN
        RETURN gcos._gate(1, 'spec', false, pg_catalog.format('%s is not in plan %s %s, so nothing can bind its plan hash',
                          v_sid, v_plan_id, gcos._short(c ->> 'plan_given')),
                          'gcos plan', pg_catalog.format('add %s to a plan under plans/, then check with', v_sid));
    END IF;
    v_missing := ARRAY(SELECT f FROM pg_catalog.unnest(v_mandatory) WITH ORDINALITY AS u(f, o)
                        WHERE NOT f = ANY (gcos._jarray_text(c #> '{spec,fold_ins}')) ORDER BY o);
    IF pg_catalog.cardinality(v_missing) > 0 THEN
        RETURN gcos._gate(1, 'spec', false, pg_catalog.format(
                              'plan %s makes fold-in %s mandatory for %s and its spec does not declare it',
                              v_plan_id, pg_catalog.array_to_string(v_missing, ', '), v_sid),
                          'gcos rehearse ' || v_sid, pg_catalog.format(
                              'apply and declare %s under fold_ins in %s''s spec, then run',
                              pg_catalog.array_to_string(v_missing, ', '), v_sid));
    ELSIF c ->> 'action' = 'rollback' AND v_committed IS NOT NULL AND v_committed <> c ->> 'spec_hash' THEN
        RETURN gcos._gate(1, 'spec', false, pg_catalog.format(
                              '%s was committed with spec %s but its spec is now %s: the rollback evidence to apply is '
                              'not the one committed', v_sid, gcos._short(v_committed), gcos._short(c ->> 'spec_hash')),
                          'gcos rollback ' || v_sid, pg_catalog.format('restore %s''s spec as committed (%s), then run',
                                                                       v_sid, gcos._short(v_committed)));
    END IF;
    RETURN gcos._gate(1, 'spec', true, pg_catalog.format('spec %s and plan %s %s are valid%s',
                          gcos._short(c ->> 'spec_hash'), v_plan_id, gcos._short(c ->> 'plan_hash'),
                          CASE WHEN pg_catalog.cardinality(v_mandatory) > 0
                               THEN '; fold-ins declared: ' || pg_catalog.array_to_string(v_mandatory, ', ') ELSE '' END),
                      '', 'nothing to do');
END
$$;

-- Committed steps whose committed spec depends on p_step_id (known), or whose spec was never registered,
-- so nobody can tell (not known); in commit order.
CREATE FUNCTION gcos._committed_dependants(p_step_id text, OUT step_id text, OUT known boolean)
    RETURNS SETOF record
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT s.step_id, d.document IS NOT NULL
      FROM (SELECT DISTINCT l.step_id FROM gcos.ledger AS l
             WHERE l.kind = 'commit' AND l.step_id IS NOT NULL AND l.step_id <> p_step_id) AS s
     CROSS JOIN LATERAL gcos._step_history(s.step_id) AS h(history)
      LEFT JOIN LATERAL (SELECT x.document FROM gcos.specs AS x WHERE x.step_id = s.step_id
                          ORDER BY x.spec_hash = h.history ->> 'commit_spec_hash' DESC, x.ledger_seq DESC
                          LIMIT 1) AS d ON true
     WHERE (h.history ->> 'committed')::boolean
       AND (d.document IS NULL OR COALESCE((d.document -> 'depends_on') ? p_step_id, false))
     ORDER BY (h.history ->> 'commit_seq')::bigint
$$;

-- Gate 2: every depends_on step is committed (commit); no committed step depends on this one (rollback).
CREATE FUNCTION gcos._gate_dependencies(c jsonb) RETURNS jsonb
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_sid text := c ->> 'step_id';
    v_deps text[] := gcos._jarray_text(c #> '{spec,depends_on}');
    v_names text[];
    v_unknown text[];
    v_waiting text;
    v_first text;
BEGIN
    IF c ->> 'action' = 'rollback' THEN
        SELECT pg_catalog.array_agg(d.step_id), pg_catalog.array_agg(d.step_id) FILTER (WHERE NOT d.known)
          INTO v_names, v_unknown FROM gcos._committed_dependants(v_sid) AS d;
        IF pg_catalog.cardinality(v_unknown) > 0 THEN
            RETURN gcos._gate(2, 'dependencies', false, pg_catalog.format(
                                  '%s committed without a registered spec, so gcos cannot tell whether it depends on %s',
                                  pg_catalog.array_to_string(v_unknown, ', '), v_sid),
                              'gcos rehearse ' || v_unknown[1], 'register its spec by running', false);
        ELSIF pg_catalog.cardinality(v_names) > 0 THEN
            RETURN gcos._gate(2, 'dependencies', false, pg_catalog.format('%s depend%s on %s and %s committed',
                                  pg_catalog.array_to_string(v_names, ', '), CASE WHEN pg_catalog.cardinality(v_names) = 1 THEN 's' ELSE '' END,
                                  v_sid, CASE WHEN pg_catalog.cardinality(v_names) = 1 THEN 'is' ELSE 'are' END),
                              'gcos rollback ' || v_names[pg_catalog.cardinality(v_names)], 'roll back the dependents first');
        END IF;
        RETURN gcos._gate(2, 'dependencies', true, 'no committed step depends on ' || v_sid, '', 'nothing to do');
    END IF;
    SELECT pg_catalog.string_agg(pg_catalog.format('%s (%s)', d.dep, CASE WHEN h.history ->> 'rollback_seq' IS NOT NULL
                                                                       THEN 'rolled_back' ELSE 'not committed' END), ', ' ORDER BY d.o),
           (pg_catalog.array_agg(d.dep ORDER BY d.o))[1]
      INTO v_waiting, v_first
      FROM pg_catalog.unnest(v_deps) WITH ORDINALITY AS d(dep, o), LATERAL gcos._step_history(d.dep) AS h(history)
     WHERE NOT (h.history ->> 'committed')::boolean;
    IF v_waiting IS NOT NULL THEN
        RETURN gcos._gate(2, 'dependencies', false, pg_catalog.format('%s depends on %s, not yet committed', v_sid, v_waiting),
                          'gcos commit ' || v_first, 'commit it first');
    END IF;
    RETURN gcos._gate(2, 'dependencies', true, CASE WHEN pg_catalog.cardinality(v_deps) = 0 THEN 'no dependencies'
                          ELSE pg_catalog.format('dependencies %s are committed', pg_catalog.array_to_string(v_deps, ', ')) END,
                      '', 'nothing to do');
END
$$;

-- Gate 3: the re-verify results the caller measured now all hold (a rollback is proven by the fingerprint).
CREATE FUNCTION gcos._gate_reverify(c jsonb) RETURNS jsonb
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
                          v_sid, v_bad ->> 'name', COALESCE(v_bad ->> 'expected', '?'),
                          COALESCE('an error: ' || (v_bad ->> 'error'), v_bad ->> 'actual', 'null')),
                          'gcos verify ' || v_sid, 'fix the world or the spec, then check with');
    END IF;
    RETURN gcos._gate(3, 'reverify', true, pg_catalog.format('re-verify of %s holds: all re-verify checks hold', v_sid),
                      '', 'nothing to do');
END
$$;

-- Gate 4, rollback: a passing rehearsal of this spec preceded the commit in force (it proved the rollback
-- evidence) and the schema is still the one that commit left.
CREATE FUNCTION gcos._gate_rehearsal_rollback(c jsonb) RETURNS jsonb
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_sid text := c ->> 'step_id';
    r jsonb := c -> 'rehearsal';
    v_commit text := c #>> '{history,commit_seq}';
    v_after text := c #>> '{history,commit_schema_hash}';
    v_now text := c #>> '{world,schema_hash}';
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
    ELSIF v_after IS NULL OR v_now <> v_after THEN
        RETURN gcos._gate(4, 'rehearsal', false, pg_catalog.format('database changed since the commit of %s (seq %s: schema '
                          '%s, now %s) — its rollback evidence no longer applies', v_sid, v_commit, gcos._short(v_after),
                          gcos._short(v_now)), 'gcos drift', 'find what changed with');
    END IF;
    RETURN gcos._gate(4, 'rehearsal', true, pg_catalog.format('rehearsal seq %s proved the rollback evidence and the '
                      'schema is as commit seq %s left it', r ->> 'seq', v_commit), '', 'nothing to do', true,
                      ARRAY[(r ->> 'seq')::bigint]);
END
$$;

-- Gate 4, commit: a passing rehearsal of THIS spec and plan, on the schema fingerprint the database has now.
CREATE FUNCTION gcos._gate_rehearsal(c jsonb) RETURNS jsonb
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_sid text := c ->> 'step_id';
    r jsonb := c -> 'rehearsal';
    v_again text := 'gcos rehearse ' || (c ->> 'step_id');
    v_epoch bigint := (c #>> '{history,epoch_seq}')::bigint;
    v_now text := c #>> '{world,schema_hash}';
    v_latest text := pg_catalog.format('the latest rehearsal of %s (seq %s)', c ->> 'step_id', c #>> '{rehearsal,seq}');
BEGIN
    IF c ->> 'action' = 'rollback' THEN
        RETURN gcos._gate_rehearsal_rollback(c);
    ELSIF r IS NULL THEN
        RETURN gcos._gate(4, 'rehearsal', false, v_sid || ' has no rehearsal' || CASE WHEN v_epoch > 0 THEN pg_catalog.format(
                          ' since its last %s (seq %s)', CASE WHEN gcos._state_text(c) = 'rolled_back' THEN 'rollback'
                          ELSE 'commit or rollback' END, v_epoch) ELSE '' END, v_again);
    ELSIF r ->> 'spec_hash' IS DISTINCT FROM c ->> 'spec_hash' THEN
        RETURN gcos._gate(4, 'rehearsal', false, pg_catalog.format('%s is of spec %s, not the current %s', v_latest,
                          gcos._short(r ->> 'spec_hash'), gcos._short(c ->> 'spec_hash')), v_again);
    ELSIF r ->> 'outcome' IS DISTINCT FROM 'passed' THEN
        RETURN gcos._gate(4, 'rehearsal', false, pg_catalog.format('%s did not pass (outcome %s)', v_latest,
                          COALESCE(r ->> 'outcome', 'None')), v_again, 'fix it, then run');
    ELSIF c ->> 'plan_hash' IS NULL OR r ->> 'plan_hash' IS DISTINCT FROM c ->> 'plan_hash' THEN
        RETURN gcos._gate(4, 'rehearsal', false, pg_catalog.format('%s ran under plan %s, not the current %s', v_latest,
                          gcos._short(r ->> 'plan_hash'), gcos._short(c ->> 'plan_hash')), v_again);
    ELSIF r ->> 'entry_schema_hash' IS NULL THEN
        RETURN gcos._gate(4, 'rehearsal', false, v_latest || ' recorded no entry schema fingerprint', v_again);
    ELSIF v_now IS NULL THEN
        RETURN gcos._gate(4, 'rehearsal', false, pg_catalog.format('rehearsal seq %s of spec %s passed; the schema is compared '
                          'with its entry fingerprint at commit', r ->> 'seq', gcos._short(r ->> 'spec_hash')),
                          'gcos commit ' || v_sid, 'compared by', false, ARRAY[(r ->> 'seq')::bigint]);
    ELSIF v_now <> r ->> 'entry_schema_hash' THEN
        RETURN gcos._gate(4, 'rehearsal', false, pg_catalog.format('database changed since rehearsal — rehearse again '
                          '(rehearsal seq %s ran on schema %s, the schema is now %s)', r ->> 'seq',
                          gcos._short(r ->> 'entry_schema_hash'), gcos._short(v_now)), v_again);
    END IF;
    RETURN gcos._gate(4, 'rehearsal', true, pg_catalog.format('rehearsal seq %s of spec %s passed on the schema the database '
                      'has now', r ->> 'seq', gcos._short(r ->> 'spec_hash')), '', 'nothing to do', true,
                      ARRAY[(r ->> 'seq')::bigint]);
END
$$;

-- ----------------------------------------------------------------------------------- gate 5

-- Why an approval is not bound to what is judged now (gates._binding_problem), or NULL: subject (commit
-- or rollback), spec, plan, database incarnation, revocation, expiry by the database clock, epoch.
CREATE FUNCTION gcos._approval_binding(c jsonb, p_bound text, p_plan_hash text, p_sysid text, p_database text,
                                       p_database_oid bigint, p_revoked boolean, p_expires_at timestamptz,
                                       p_ledger_seq bigint) RETURNS text
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_of text := c #>> ARRAY['rollback_subjects', p_bound];  -- the spec whose rollback it approves, if one
    v_rollback boolean := c ->> 'action' = 'rollback';
    v_now timestamptz := (c ->> 'now')::timestamptz;
    v_epoch bigint := (c #>> '{history,epoch_seq}')::bigint;
BEGIN
    IF (v_of IS NOT NULL) <> v_rollback THEN
        RETURN pg_catalog.format('approves %s of %s, not %s', CASE WHEN v_of IS NOT NULL THEN 'the rollback' ELSE 'the commit' END,
                                 c ->> 'step_id', CASE WHEN v_rollback THEN 'the rollback' ELSE 'the commit' END);
    ELSIF COALESCE(v_of, p_bound) <> c ->> 'spec_hash' THEN
        RETURN pg_catalog.format('is bound to spec %s, not the current %s', gcos._short(COALESCE(v_of, p_bound)),
                                 gcos._short(c ->> 'spec_hash'));
    ELSIF c ->> 'plan_hash' IS NULL OR p_plan_hash <> c ->> 'plan_hash' THEN
        RETURN pg_catalog.format('is bound to plan %s, not the current %s', gcos._short(p_plan_hash), gcos._short(c ->> 'plan_hash'));
    ELSIF p_sysid IS DISTINCT FROM c ->> 'system_identifier' THEN
        RETURN pg_catalog.format('is from another database system (%s, this is %s)', p_sysid, c ->> 'system_identifier');
    ELSIF p_database IS DISTINCT FROM c ->> 'database' THEN
        RETURN pg_catalog.format('is from another database (%s, this is %s)', p_database, c ->> 'database');
    ELSIF p_database_oid IS DISTINCT FROM (c ->> 'database_oid')::bigint THEN
        RETURN gcos._incarnation_problem(p_database, p_database_oid, (c ->> 'database_oid')::bigint, 'approvals');
    ELSIF p_revoked THEN
        RETURN 'was revoked';
    ELSIF p_expires_at <= v_now THEN
        RETURN pg_catalog.format('expired at %s (database clock now %s)', gcos._utc(p_expires_at), gcos._utc(v_now));
    ELSIF p_ledger_seq <= v_epoch THEN
        RETURN pg_catalog.format('was recorded before %s''s last commit or rollback (seq %s) and is spent',
                                 c ->> 'step_id', v_epoch);
    END IF;
    RETURN NULL;
END
$$;

-- Why an approver's latest word does not count (gates._approver_problem), or NULL. The "(no
-- self-approval)" ending marks the rehearser's and the committer's own.
CREATE FUNCTION gcos._approver_problem(c jsonb, p_oid bigint, p_who text, p_verdict text, p_kind text, p_roles text[],
                                       p_superuser boolean, p_conflicts text[]) RETURNS text
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN p_verdict <> 'approve' THEN pg_catalog.format('has verdict %s (only approve opens the gate)', p_verdict)
        WHEN p_kind IS NULL THEN pg_catalog.format('is by %s, who is no longer a registered principal', p_who)
        WHEN p_kind <> 'human' THEN pg_catalog.format('is by %s, %s %s principal (only humans approve)', p_who,
                                                      CASE WHEN p_kind ~ '^[aeiou]' THEN 'an' ELSE 'a' END, p_kind)
        WHEN p_superuser THEN pg_catalog.format('is by %s, whose role is a superuser (a superuser''s approval proves nothing)', p_who)
        WHEN pg_catalog.cardinality(p_conflicts) > 0 THEN gcos._conflict_problem(p_who, p_conflicts)
        WHEN NOT (p_roles && gcos._jarray_text(c #> '{spec,approvals,roles}')) THEN
            pg_catalog.format('is by %s, who holds %s, not %s', p_who,
                              COALESCE(NULLIF(pg_catalog.array_to_string(p_roles, ', '), ''), 'no gcos role'),
                              gcos._roles_text(gcos._jarray_text(c #> '{spec,approvals,roles}'), false))
        WHEN c -> 'rehearsal' IS NOT NULL AND gcos._same_person(p_oid, p_who, (c #>> '{rehearsal,actor_oid}')::bigint,
                                                                c #>> '{rehearsal,actor_name}') THEN
            pg_catalog.format('is by %s, who ran the rehearsal (no self-approval)', p_who)
        WHEN gcos._same_person(p_oid, p_who, (c ->> 'actor_oid')::bigint, c ->> 'actor_name') THEN
            pg_catalog.format('is by %s, %s (no self-approval)', p_who, CASE WHEN c ->> 'action' = 'rollback'
                              THEN 'the one rolling it back' ELSE 'the committer himself' END)
    END
$$;

-- Every approval recorded for the step, in (ledger_seq, id) order, with why it does not count (NULL: it
-- counts unless an earlier counted one is by the same person). The approver is judged as they are NOW.
CREATE FUNCTION gcos._approvals_judged(c jsonb)
    RETURNS TABLE (id bigint, role_oid bigint, who text, expires_at timestamptz, why text, conflicted boolean)
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    WITH a AS (
        SELECT x.id, x.ledger_seq, x.approver_oid::bigint AS role_oid, x.approver AS who, x.verdict, x.expires_at,
               CASE WHEN r.oid IS NOT NULL THEN p.kind END AS kind, COALESCE(r.rolsuper, false) AS superuser,
               ARRAY(SELECT u.x FROM pg_catalog.unnest(x.approver_roles) AS u(x) WHERE u.x = ANY (p.roles)) AS roles,
               CASE WHEN p.role_oid IS NULL THEN '{}'::text[] ELSE gcos.principal_conflicts(x.approver_oid) END AS conflicts,
               gcos._approval_binding(c, x.spec_hash, x.plan_hash, x.system_identifier, x.database_name::text,
                                      x.database_oid::bigint, v.id IS NOT NULL, x.expires_at, x.ledger_seq) AS bound_why
          FROM gcos.os_proposal_approvals AS x
          LEFT JOIN gcos.approval_revocations AS v ON v.approval_id = x.id
          LEFT JOIN gcos.principals AS p ON p.role_oid = x.approver_oid
          LEFT JOIN pg_catalog.pg_roles AS r ON r.oid = x.approver_oid
         WHERE x.step_id = c ->> 'step_id'
    ), latest AS (  -- each principal's latest word among the approvals bound here
        SELECT DISTINCT ON (a.role_oid) a.role_oid, a.id, a.verdict
          FROM a WHERE a.bound_why IS NULL ORDER BY a.role_oid, a.ledger_seq DESC, a.id DESC
    )
    SELECT a.id, a.role_oid, a.who, a.expires_at,
           COALESCE(a.bound_why,
                    CASE WHEN l.id <> a.id AND l.verdict = a.verdict
                         THEN pg_catalog.format('is by %s again (as approval %s): one person counts once', a.who, l.id)
                         WHEN l.id <> a.id
                         THEN pg_catalog.format('is superseded by %s''s later %s (approval %s)', a.who, l.verdict, l.id) END,
                    gcos._approver_problem(c, a.role_oid, a.who, a.verdict, a.kind, a.roles, a.superuser, a.conflicts)),
           pg_catalog.cardinality(a.conflicts) > 0
      FROM a LEFT JOIN latest AS l ON l.role_oid = a.role_oid
     ORDER BY a.ledger_seq, a.id
$$;

-- gates.count_approvals: {counted: [{id, who, expires_at}] one per person, in order; discounted: [{id, who,
-- why, conflicted}] by id; selfish: [who] whose approvals were their own (rehearser or committer)}.
CREATE FUNCTION gcos._approvals_count(c jsonb) RETURNS jsonb
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a record;
    v_twin jsonb;
    v_counted jsonb := '[]';
    v_discounted jsonb := '[]';
    v_selfish jsonb := '[]';
BEGIN
    FOR a IN SELECT * FROM gcos._approvals_judged(c) LOOP
        IF a.why IS NULL THEN
            SELECT e INTO v_twin FROM pg_catalog.jsonb_array_elements(v_counted) AS e
             WHERE gcos._same_person(a.role_oid, a.who, (e ->> 'role_oid')::bigint, e ->> 'who') LIMIT 1;
            IF v_twin IS NOT NULL THEN
                a.why := pg_catalog.format('is by %s again (as approval %s): one person counts once, whatever their roles',
                                           a.who, v_twin ->> 'id');
            ELSE
                v_counted := v_counted || pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
                    'id', a.id, 'role_oid', a.role_oid, 'who', a.who, 'expires_at', gcos._utc(a.expires_at)));
                CONTINUE;
            END IF;
        ELSIF a.why LIKE '%(no self-approval)' THEN
            v_selfish := v_selfish || pg_catalog.to_jsonb(a.who);
        END IF;
        v_discounted := v_discounted || pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
            'id', a.id, 'who', a.who, 'why', a.why, 'conflicted', a.conflicted));
    END LOOP;
    RETURN pg_catalog.jsonb_build_object(
        'counted', v_counted, 'selfish', v_selfish,
        'discounted', (SELECT COALESCE(pg_catalog.jsonb_agg(e ORDER BY (e ->> 'id')::bigint), '[]')
                         FROM pg_catalog.jsonb_array_elements(v_discounted) AS e));
END
$$;

-- Gate 5: enough distinct, named, human approvals bound to exactly this spec, plan, target and subject.
CREATE FUNCTION gcos._gate_approvals(c jsonb) RETURNS jsonb
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_count jsonb := gcos._approvals_count(c);
    v_counted jsonb := v_count -> 'counted';
    v_discounted jsonb := v_count -> 'discounted';
    v_need integer := COALESCE((c #>> '{spec,approvals,signers}')::integer, 1);
    v_what text := CASE WHEN c ->> 'action' = 'rollback' THEN 'the rollback of ' ELSE '' END || (c ->> 'step_id');
    v_ids bigint[] := ARRAY(SELECT (e ->> 'id')::bigint FROM pg_catalog.jsonb_array_elements(v_counted) WITH ORDINALITY AS x(e, o) ORDER BY o);
    v_command text := pg_catalog.format('gcos approve %s%s --verdict approve --expires-in 24h', c ->> 'step_id',
                                        CASE WHEN c ->> 'action' = 'rollback' THEN ' --rollback' ELSE '' END);
    v_lead text;
    v_why text;
    v_n integer := pg_catalog.jsonb_array_length(v_discounted);
BEGIN
    IF pg_catalog.cardinality(v_ids) >= v_need THEN
        RETURN gcos._gate(5, 'approvals', true, v_what || ' is approved by ' || (
                              SELECT pg_catalog.string_agg(pg_catalog.format('%s (approval %s, expires %s)', e ->> 'who',
                                     e ->> 'id', e ->> 'expires_at'), ', ' ORDER BY o)
                                FROM pg_catalog.jsonb_array_elements(v_counted) WITH ORDINALITY AS x(e, o)),
                          '', 'nothing to do', true, v_ids);
    END IF;
    SELECT pg_catalog.string_agg(w.who, ', ' ORDER BY w.first) INTO v_why
      FROM (SELECT x.who, pg_catalog.min(x.o) AS first FROM (
                SELECT s.e #>> '{}' AS who, s.o FROM pg_catalog.jsonb_array_elements(v_count -> 'selfish') WITH ORDINALITY AS s(e, o)
                UNION ALL SELECT d.e ->> 'who', 1000000 + d.o FROM pg_catalog.jsonb_array_elements(v_discounted) WITH ORDINALITY AS d(e, o)
                           WHERE (d.e -> 'conflicted') = 'true'::jsonb
                UNION ALL SELECT k.e ->> 'who', 2000000 + k.o FROM pg_catalog.jsonb_array_elements(v_counted) WITH ORDINALITY AS k(e, o)
            ) AS x GROUP BY x.who) AS w;
    v_lead := pg_catalog.format('ask %s%s to run', gcos._roles_text(gcos._jarray_text(c #> '{spec,approvals,roles}'), true),
                                COALESCE(' other than ' || v_why, ''));
    IF pg_catalog.cardinality(v_ids) = 0 AND v_n = 0 THEN
        RETURN gcos._gate(5, 'approvals', false, pg_catalog.format('no approval for %s bound to spec %s', v_what,
                          gcos._short(c ->> 'spec_hash')), v_command, v_lead);
    ELSIF pg_catalog.cardinality(v_ids) = 0 AND v_n = 1 THEN
        RETURN gcos._gate(5, 'approvals', false, pg_catalog.format('no approval counts for %s: approval %s by %s %s', v_what,
                          v_discounted #>> '{0,id}', v_discounted #>> '{0,who}', v_discounted #>> '{0,why}'),
                          v_command, v_lead, true, v_ids);
    END IF;
    SELECT pg_catalog.string_agg(pg_catalog.format('approval %s by %s %s', e ->> 'id', e ->> 'who', e ->> 'why'), '; ' ORDER BY o)
           || CASE WHEN v_n > 5 THEN pg_catalog.format('; and %s more', v_n - 5) ELSE '' END
      INTO v_why FROM pg_catalog.jsonb_array_elements(v_discounted) WITH ORDINALITY AS x(e, o) WHERE o <= 5;
    RETURN gcos._gate(5, 'approvals', false, pg_catalog.format('%s needs %s distinct approver%s and has %s%s', v_what, v_need,
                      CASE WHEN v_need <> 1 THEN 's' ELSE '' END, pg_catalog.cardinality(v_ids),
                      COALESCE(' (' || (SELECT pg_catalog.string_agg(pg_catalog.format('%s (approval %s)', e ->> 'who', e ->> 'id'), ', ' ORDER BY o)
                                          FROM pg_catalog.jsonb_array_elements(v_counted) WITH ORDINALITY AS x(e, o)) || ')', ''))
                      || COALESCE(': ' || v_why, ''), v_command, v_lead, true, v_ids);
END
$$;

-- ----------------------------------------------------------------------------------- gates 6, 7

-- A decision's current word (gates._decision_word): its latest record in force (unrevoked, unexpired,
-- recorded in this database incarnation, by a human non-superuser without separation-of-duties conflicts
-- now); record_id is set when that word is approve, else why says what is missing.
CREATE FUNCTION gcos._decision_word(c jsonb, p_decision text, OUT record_id bigint, OUT who text,
                                    OUT expires_at timestamptz, OUT why text)
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d record;
    v_problem text;
    v_problems text[] := '{}';
    v_word record;
    v_has_word boolean := false;
    v_seen boolean := false;
BEGIN
    FOR d IN SELECT x.id, x.verdict, x.decider AS who, x.expires_at, x.system_identifier AS sysid,
                    x.database_name::text AS db, x.database_oid::bigint AS dboid, v.id IS NOT NULL AS revoked,
                    CASE WHEN r.oid IS NOT NULL THEN p.kind END AS kind, COALESCE(r.rolsuper, false) AS superuser,
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
            WHEN d.kind IS DISTINCT FROM 'human' THEN pg_catalog.format('is by %s, not a human principal', d.who)
            WHEN d.superuser THEN pg_catalog.format('is by %s, a superuser', d.who)
            WHEN pg_catalog.cardinality(d.conflicts) > 0 THEN gcos._conflict_problem(d.who, d.conflicts)
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

-- Gate 6: every decision the spec requires holds an approve in force (a rollback needs none).
CREATE FUNCTION gcos._gate_decisions(c jsonb) RETURNS jsonb
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
                          v_first), 'ask a sovereign or council member to run', true, v_ids);
    END IF;
    RETURN gcos._gate(6, 'decisions', true, 'decisions hold: ' || v_held, '', 'nothing to do', true, v_ids);
END
$$;

-- Gate 7: the plan's global stop conditions (as measured by the caller) do not hold, and the step is not
-- committed (commit) / is committed (rollback). Either refusal about the state is decisive.
CREATE FUNCTION gcos._gate_state(c jsonb) RETURNS jsonb
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_sid text := c ->> 'step_id';
    v_stops jsonb := c #> '{world,global_stops}';
    v_expected integer := (SELECT pg_catalog.count(*) FROM pg_catalog.jsonb_array_elements(
                               CASE WHEN c ->> 'plan_hash' IS NOT NULL THEN COALESCE(c #> '{plan,global_stop}', '[]') ELSE '[]' END) AS s(e)
                            WHERE NOT s.e ? 'max_new_tables');
    v_held text;
    v_state text := gcos._state_text(c);
    v_commit text := c #>> '{history,commit_seq}';
BEGIN
    IF v_state = 'rehearsed' AND pg_catalog.jsonb_array_length(gcos._approvals_count((c - 'actor_name') || '{"actor_oid": 0}'::jsonb) -> 'counted')
                                 >= COALESCE((c #>> '{spec,approvals,signers}')::integer, 1) THEN
        v_state := 'approved';  -- as the projection says it: enough approvals, whoever commits
    END IF;
    IF v_stops IS NULL OR pg_catalog.jsonb_typeof(v_stops) <> 'array' OR pg_catalog.jsonb_array_length(v_stops) < v_expected THEN
        RETURN gcos._gate(7, 'state', false, pg_catalog.format('%s of the %s global stop conditions of %s''s plan were measured',
                          CASE WHEN pg_catalog.jsonb_typeof(v_stops) = 'array' THEN pg_catalog.jsonb_array_length(v_stops) ELSE 0 END,
                          v_expected, v_sid), 'gcos status ' || v_sid, 'check them with', false);
    END IF;
    SELECT pg_catalog.string_agg(COALESCE(e ->> 'name', 'unnamed'), '; ' ORDER BY o) INTO v_held
      FROM pg_catalog.jsonb_array_elements(v_stops) WITH ORDINALITY AS x(e, o) WHERE (e -> 'holds') = 'true'::jsonb;
    IF v_held IS NOT NULL THEN
        RETURN gcos._gate(7, 'state', false, 'global stop condition held: ' || v_held, 'gcos rehearse ' || v_sid,
                          'resolve it in the database, then run');
    ELSIF c ->> 'action' = 'rollback' AND v_state <> 'committed' THEN
        RETURN gcos._gate(7, 'state', false, pg_catalog.format('%s is not committed (state %s); there is nothing to roll back',
                          v_sid, v_state), 'gcos status ' || v_sid, 'check with', true, '{}', true);
    ELSIF c ->> 'action' = 'rollback' THEN
        RETURN gcos._gate(7, 'state', true, pg_catalog.format('global stops clear; %s is committed (seq %s)', v_sid, v_commit),
                          '', 'nothing to do');
    ELSIF v_state = 'committed' THEN
        RETURN gcos._gate(7, 'state', false, pg_catalog.format('%s is already committed (commit seq %s) and is never re-applied',
                          v_sid, v_commit), 'gcos rollback ' || v_sid, 'to apply it again, first run', true, '{}', true);
    END IF;
    RETURN gcos._gate(7, 'state', true, pg_catalog.format('global stops clear; %s is not committed yet (state %s)', v_sid, v_state),
                      '', 'nothing to do');
END
$$;

-- ----------------------------------------------------------------------------------- the evaluation

-- Gates 2-7 when the spec is not registered: nothing can be judged about an unknown spec.
CREATE FUNCTION gcos._gates_unregistered(c jsonb) RETURNS jsonb
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    WITH s AS (SELECT COALESCE((SELECT l.step_id FROM gcos.ledger AS l WHERE l.spec_hash = c ->> 'spec_hash'
                                  AND l.step_id IS NOT NULL ORDER BY l.seq DESC LIMIT 1), 'STEP') AS sid)
    SELECT pg_catalog.jsonb_build_array(gcos._gate(1, 'spec', false, pg_catalog.format(
               'spec %s is not registered in this database, so gcos cannot tell what it is', gcos._short(c ->> 'spec_hash')),
               'gcos rehearse ' || s.sid, 'register it by running'))
           || (SELECT pg_catalog.jsonb_agg(gcos._gate(g.o::integer + 1, g.name, false, pg_catalog.format(
                          'spec %s is not registered, so this gate cannot be judged', gcos._short(c ->> 'spec_hash')),
                          'gcos rehearse ' || s.sid, 'register the spec by running', false) ORDER BY g.o)
                 FROM pg_catalog.unnest(ARRAY['dependencies', 'reverify', 'rehearsal', 'approvals', 'decisions', 'state'])
                      WITH ORDINALITY AS g(name, o))
      FROM s
$$;

CREATE FUNCTION gcos.evaluate_gates(p_spec_hash text, p_plan_hash text, p_action text, p_world jsonb) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c jsonb;
    v_gates jsonb;
    v_first jsonb;
BEGIN
    IF p_action IS NULL OR p_action NOT IN ('commit', 'rollback') THEN
        RAISE EXCEPTION 'gcos: action must be commit or rollback, not %', COALESCE(p_action, 'NULL') USING ERRCODE = '22023';
    ELSIF p_spec_hash IS NULL OR p_spec_hash !~ '^[0-9a-f]{64}$' OR p_plan_hash !~ '^[0-9a-f]{64}$' THEN
        RAISE EXCEPTION 'gcos: a spec hash and a plan hash are 64 lowercase hex digits' USING ERRCODE = '22023';
    ELSIF p_world IS NOT NULL AND pg_catalog.jsonb_typeof(p_world) <> 'object' THEN
        RAISE EXCEPTION 'gcos: the measured world is a JSON object (schema_hash, reverify, global_stops)' USING ERRCODE = '22023';
    END IF;
    c := gcos._gates_context(p_spec_hash, p_plan_hash, p_action, p_world);
    IF c ->> 'step_id' IS NULL THEN
        v_gates := gcos._gates_unregistered(c);
    ELSE
        PERFORM gcos._gates_cross_check(c ->> 'step_id', gcos._jarray_text(c #> '{spec,decisions}'));
        v_gates := pg_catalog.jsonb_build_array(gcos._gate_spec(c), gcos._gate_dependencies(c), gcos._gate_reverify(c),
                                                gcos._gate_rehearsal(c), gcos._gate_approvals(c), gcos._gate_decisions(c),
                                                gcos._gate_state(c));
    END IF;
    SELECT e INTO v_first FROM pg_catalog.jsonb_array_elements(v_gates) WITH ORDINALITY AS x(e, o)
     WHERE (e -> 'allow') = 'false'::jsonb ORDER BY (e -> 'decisive') = 'true'::jsonb DESC, o LIMIT 1;
    RETURN pg_catalog.jsonb_build_object(
        'format_version', 1, 'allow', v_first IS NULL, 'action', p_action, 'step_id', c -> 'step_id',
        'spec_hash', p_spec_hash, 'plan_hash', c -> 'plan_hash', 'evaluated_at', gcos._utc((c ->> 'now')::timestamptz),
        'gates', v_gates,
        'failed', (SELECT COALESCE(pg_catalog.jsonb_agg(e -> 'gate' ORDER BY o), '[]')
                     FROM pg_catalog.jsonb_array_elements(v_gates) WITH ORDINALITY AS x(e, o) WHERE (e -> 'allow') = 'false'::jsonb),
        'refusal', CASE WHEN v_first IS NOT NULL THEN pg_catalog.upper(pg_catalog.left(v_first ->> 'reason', 1))
                        || pg_catalog.substr(v_first ->> 'reason', 2)
                        || COALESCE('; ' || NULLIF(v_first ->> 'remedy', ''), '') END);
END
$$;

-- ----------------------------------------------------------------------------------- privileges

REVOKE ALL ON FUNCTION
    gcos.rollback_subject_hash(text), gcos._short(text), gcos._jtext(jsonb), gcos._jint(jsonb),
    gcos._same_person(bigint, text, bigint, text), gcos._roles_text(text[], boolean), gcos._jarray_text(jsonb),
    gcos._gate(integer, text, boolean, text, text, text, boolean, bigint[], boolean), gcos._conflict_problem(text, text[]),
    gcos._incarnation_problem(text, bigint, bigint, text), gcos._step_history(text),
    gcos._rehearsal_relied_on(text, text, jsonb), gcos._rollback_subjects(text, text),
    gcos._gates_cross_check(text, text[]), gcos._gates_context(text, text, text, jsonb), gcos._state_text(jsonb),
    gcos._gate_spec(jsonb), gcos._committed_dependants(text), gcos._gate_dependencies(jsonb), gcos._gate_reverify(jsonb),
    gcos._gate_rehearsal_rollback(jsonb), gcos._gate_rehearsal(jsonb),
    gcos._approval_binding(jsonb, text, text, text, text, bigint, boolean, timestamptz, bigint),
    gcos._approver_problem(jsonb, bigint, text, text, text, text[], boolean, text[]), gcos._approvals_judged(jsonb),
    gcos._approvals_count(jsonb), gcos._gate_approvals(jsonb), gcos._decision_word(jsonb, text),
    gcos._gate_decisions(jsonb), gcos._gate_state(jsonb), gcos._gates_unregistered(jsonb),
    gcos.evaluate_gates(text, text, text, jsonb)
    FROM PUBLIC;
-- SECURITY INVOKER all the way down: every helper runs with the caller's rights and reads only what the
-- gcos group roles may read, so each needs EXECUTE for them (gcos._utc and gcos._conflicts_text too).
GRANT EXECUTE ON FUNCTION
    gcos.rollback_subject_hash(text), gcos._short(text), gcos._jtext(jsonb), gcos._jint(jsonb),
    gcos._same_person(bigint, text, bigint, text), gcos._roles_text(text[], boolean), gcos._jarray_text(jsonb),
    gcos._gate(integer, text, boolean, text, text, text, boolean, bigint[], boolean), gcos._conflict_problem(text, text[]),
    gcos._incarnation_problem(text, bigint, bigint, text), gcos._step_history(text),
    gcos._rehearsal_relied_on(text, text, jsonb), gcos._rollback_subjects(text, text),
    gcos._gates_cross_check(text, text[]), gcos._gates_context(text, text, text, jsonb), gcos._state_text(jsonb),
    gcos._gate_spec(jsonb), gcos._committed_dependants(text), gcos._gate_dependencies(jsonb), gcos._gate_reverify(jsonb),
    gcos._gate_rehearsal_rollback(jsonb), gcos._gate_rehearsal(jsonb),
    gcos._approval_binding(jsonb, text, text, text, text, bigint, boolean, timestamptz, bigint),
    gcos._approver_problem(jsonb, bigint, text, text, text, text[], boolean, text[]), gcos._approvals_judged(jsonb),
    gcos._approvals_count(jsonb), gcos._gate_approvals(jsonb), gcos._decision_word(jsonb, text),
    gcos._gate_decisions(jsonb), gcos._gate_state(jsonb), gcos._gates_unregistered(jsonb),
    gcos.evaluate_gates(text, text, text, jsonb), gcos._utc(timestamptz), gcos._conflicts_text(text[])
    TO gcos_admin, gcos_operator, gcos_sovereign, gcos_council, gcos_auditor;
