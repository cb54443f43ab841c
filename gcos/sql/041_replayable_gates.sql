-- gcos schema version 41: every gate decision carries the facts it was judged on, and one pure function judges
-- them (issue 12 item 3, seed 001 "would the same policy produce the same allow/deny?").
--
-- Before 041 the gate helpers read gcos tables, pg_roles and the clock while they judged, so a decision could
-- not be re-derived anywhere but in the live database at that instant. Now:
--   gcos._gates_facts(p_spec_hash, p_plan_hash, p_action, p_world) RETURNS jsonb  (VOLATILE: reads the tables)
--       gcos._gates_context (the spec, plan, history, relied-on rehearsal, rollback subjects, database clock,
--       database incarnation, actor) plus everything else the gates look at, materialised as of now:
--         approval_rows   every approval of the step: its record, revoked or not, and the approver's principal
--                         now (kind, superuser, person, the roles that count, separation-of-duties conflicts);
--         decision_rows   {decision: [rows]} for the decisions the spec requires, judged the same way;
--         persons         {role oid: person} for the actor, the rehearser and every approver and decider;
--         dependencies    {step: history} for the spec's depends_on (commit);
--         dependants      [{step_id, known}] committed steps that depend on this one (rollback);
--         exceptions      the exceptions in force for the spec, judged for the actor (commit);
--         unregistered_step  the step a spec hash last named, when the spec is not registered.
--   gcos.judge_gates(p_facts jsonb) RETURNS jsonb  (reads no table, no clock, no catalog)
--       the seven gates over those facts: the decision payload evaluate_gates always returned.
--   gcos.evaluate_gates(...) = judge_gates(_gates_facts(...)) || {"facts": the facts}; the kernel writes that
--       payload into the policy_decision record, so the chain carries what each decision was judged on and an
--       auditor replays it with the SAME function on a scratch server (gcos audit replay).
-- Replaced (newest definitions: 010, 020, 025, 031), reading the facts instead of the tables:
--   gcos._gates_context, gcos._approvals_judged, gcos._approver_problem, gcos._decision_word,
--   gcos._gate_dependencies, gcos._gates_unregistered, gcos.evaluate_gates. New: gcos._fact_person.
-- What is recorded, not re-derived: which exceptions apply (025's judgement of the recorder now) and the
-- approvers' and deciders' principals as they were (kind, roles, conflicts): they are facts of the decision.
SET LOCAL ROLE gcos_owner;

-- The person of a role in the facts (gcos._person_of, as it read the principals when the facts were taken).
CREATE FUNCTION gcos._fact_person(c jsonb, p_oid bigint, p_name text) RETURNS text
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT COALESCE(c #>> ARRAY['persons', p_oid::text], p_name) $$;

-- {role oid: person} of the principals of these roles now (NULLs and roles without a person left out).
CREATE FUNCTION gcos._facts_persons(p_oids bigint[]) RETURNS jsonb
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT COALESCE(pg_catalog.jsonb_object_agg(p.role_oid::bigint::text, p.person), '{}')
      FROM gcos.principals AS p
     WHERE p.role_oid::bigint = ANY (p_oids) AND p.person IS NOT NULL
$$;

-- FROM 010_gates.sql: as 010's, with the rehearser's person, the approvals of the step and the persons.
CREATE OR REPLACE FUNCTION gcos._gates_context(p_spec_hash text, p_plan_hash text, p_action text, p_world jsonb) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_spec jsonb := (SELECT s.document FROM gcos.specs AS s WHERE s.spec_hash = p_spec_hash);
    v_plan jsonb := (SELECT p.document FROM gcos.plans AS p WHERE p.plan_hash = p_plan_hash);
    v_step text := v_spec ->> 'id';
    v_history jsonb := gcos._step_history(v_step);
    v_as_actor boolean := COALESCE(p_world -> 'as_actor', 'true'::jsonb) <> 'false'::jsonb;
    v_rehearsal jsonb := gcos._rehearsal_relied_on(v_step, p_action, v_history);
    v_db record;
    v_me record;
    v_rows jsonb;
BEGIN
    SELECT * INTO v_db FROM gcos.database_incarnation();
    SELECT r.oid::bigint AS oid, p.display_name INTO v_me
      FROM pg_catalog.pg_roles AS r LEFT JOIN gcos.principals AS p ON p.role_oid = r.oid
     WHERE r.rolname = session_user;
    SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'id', x.id, 'ledger_seq', x.ledger_seq, 'approver_oid', x.approver_oid::bigint, 'approver', x.approver,
               'verdict', x.verdict, 'expires_at', x.expires_at, 'spec_hash', x.spec_hash, 'plan_hash', x.plan_hash,
               'system_identifier', x.system_identifier, 'database_name', x.database_name::text,
               'database_oid', x.database_oid::bigint, 'revoked', v.id IS NOT NULL,
               'person', COALESCE(p.person, x.approver), 'kind', CASE WHEN r.oid IS NOT NULL THEN p.kind END,
               'superuser', COALESCE(r.rolsuper, false),
               'roles', ARRAY(SELECT u.x FROM pg_catalog.unnest(x.approver_roles) AS u(x) WHERE u.x = ANY (p.roles)),
               'conflicts', CASE WHEN p.role_oid IS NULL THEN '{}'::text[] ELSE gcos.principal_conflicts(x.approver_oid) END)
               ORDER BY x.ledger_seq, x.id), '[]')
      INTO v_rows
      FROM gcos.os_proposal_approvals AS x
      LEFT JOIN gcos.approval_revocations AS v ON v.approval_id = x.id
      LEFT JOIN gcos.principals AS p ON p.role_oid = x.approver_oid
      LEFT JOIN pg_catalog.pg_roles AS r ON r.oid = x.approver_oid
     WHERE x.step_id = v_step;
    RETURN pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
        'action', p_action, 'spec_hash', p_spec_hash, 'spec', v_spec, 'step_id', v_step,
        'plan', v_plan, 'plan_given', p_plan_hash,
        'plan_hash', CASE WHEN COALESCE((v_plan -> 'steps') ? v_step, false) THEN p_plan_hash END,
        'history', v_history, 'rehearsal', v_rehearsal,
        'rollback_subjects', gcos._rollback_subjects(v_step, p_spec_hash),
        'now', pg_catalog.clock_timestamp(), 'system_identifier', v_db.system_identifier,
        'database', v_db.database_name, 'database_oid', v_db.database_oid::bigint,
        'actor_oid', CASE WHEN v_as_actor THEN v_me.oid ELSE 0 END,
        'actor_name', CASE WHEN v_as_actor THEN v_me.display_name END))
        || pg_catalog.jsonb_build_object('world', COALESCE(p_world, '{}'::jsonb), 'approval_rows', v_rows,
                                         'persons', gcos._facts_persons(ARRAY[
                                             CASE WHEN v_as_actor THEN v_me.oid END,
                                             gcos._jint(v_rehearsal -> 'actor_oid')]
                                             || ARRAY(SELECT gcos._jint(e -> 'approver_oid')
                                                        FROM pg_catalog.jsonb_array_elements(v_rows) AS e)));
END
$$;

-- Everything the seven gates look at, as of now (see the head of this file).
CREATE FUNCTION gcos._gates_facts(p_spec_hash text, p_plan_hash text, p_action text, p_world jsonb) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c jsonb := gcos._gates_context(p_spec_hash, p_plan_hash, p_action, p_world);
    v_step text := c ->> 'step_id';
    v_decisions text[] := gcos._jarray_text(c #> '{spec,decisions}');
    v_rows jsonb;
BEGIN
    IF v_step IS NULL THEN
        RETURN c || pg_catalog.jsonb_build_object('unregistered_step', COALESCE((
            SELECT l.step_id FROM gcos.ledger AS l WHERE l.spec_hash = p_spec_hash AND l.step_id IS NOT NULL
             ORDER BY l.seq DESC LIMIT 1), 'STEP'));
    END IF;
    SELECT COALESCE(pg_catalog.jsonb_object_agg(n.name, COALESCE((
               SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                          'id', x.id, 'verdict', x.verdict, 'who', x.decider, 'oid', x.decider_oid::bigint,
                          'expires_at', x.expires_at, 'text_hash', x.text_hash, 'sysid', x.system_identifier,
                          'db', x.database_name::text, 'dboid', x.database_oid::bigint, 'revoked', v.id IS NOT NULL,
                          'kind', CASE WHEN r.oid IS NOT NULL THEN p.kind END, 'superuser', COALESCE(r.rolsuper, false),
                          'as_sovereign', 'sovereign' = ANY (x.decider_roles),
                          'sovereign_now', COALESCE('sovereign' = ANY (p.roles), false),
                          'conflicts', CASE WHEN p.role_oid IS NULL THEN '{}'::text[]
                                            ELSE gcos.principal_conflicts(x.decider_oid) END)
                          ORDER BY x.ledger_seq, x.id)
                 FROM gcos.decisions AS x
                 LEFT JOIN gcos.decision_revocations AS v ON v.decision_id = x.id
                 LEFT JOIN gcos.principals AS p ON p.role_oid = x.decider_oid
                 LEFT JOIN pg_catalog.pg_roles AS r ON r.oid = x.decider_oid
                WHERE x.decision = n.name), '[]')), '{}')
      INTO v_rows
      FROM (SELECT DISTINCT u.name FROM pg_catalog.unnest(v_decisions) AS u(name)) AS n;
    c := c || pg_catalog.jsonb_build_object('decision_rows', v_rows);
    c := pg_catalog.jsonb_set(c, '{persons}', (c -> 'persons') || gcos._facts_persons(ARRAY(
             SELECT gcos._jint(e -> 'oid') FROM pg_catalog.jsonb_each(v_rows) AS d(name, rows),
                    pg_catalog.jsonb_array_elements(d.rows) AS e)));
    IF p_action = 'rollback' THEN
        c := c || pg_catalog.jsonb_build_object('dependants', (
            SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object('step_id', d.step_id, 'known', d.known)
                                                 ORDER BY d.o), '[]')
              FROM gcos._committed_dependants(v_step) WITH ORDINALITY AS d(step_id, known, o)));
    ELSE
        c := c || pg_catalog.jsonb_build_object('dependencies', (
            SELECT COALESCE(pg_catalog.jsonb_object_agg(d.dep, gcos._step_history(d.dep)), '{}')
              FROM (SELECT DISTINCT u.dep FROM pg_catalog.unnest(gcos._jarray_text(c #> '{spec,depends_on}')) AS u(dep)) AS d));
        c := c || pg_catalog.jsonb_build_object('exceptions',
                 gcos._exceptions_in_force(p_spec_hash, (c ->> 'actor_oid')::bigint, c ->> 'actor_name'));
    END IF;
    RETURN c;
END
$$;

-- FROM 020_signers.sql: as 020's, over the approval rows of the facts.
CREATE OR REPLACE FUNCTION gcos._approvals_judged(c jsonb)
    RETURNS TABLE (id bigint, role_oid bigint, who text, person text, roles text[], expires_at timestamptz, why text,
                   conflicted boolean)
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    WITH a AS (
        SELECT x.id, x.ledger_seq, x.approver_oid AS role_oid, x.approver AS who, x.verdict, x.expires_at,
               x.person, x.kind, x.superuser, x.roles, x.conflicts,
               gcos._approval_binding(c, x.spec_hash, x.plan_hash, x.system_identifier, x.database_name,
                                      x.database_oid, x.revoked, x.expires_at, x.ledger_seq) AS bound_why
          FROM pg_catalog.jsonb_to_recordset(COALESCE(c -> 'approval_rows', '[]')) AS x(
                   id bigint, ledger_seq bigint, approver_oid bigint, approver text, verdict text, expires_at timestamptz,
                   spec_hash text, plan_hash text, system_identifier text, database_name text, database_oid bigint,
                   revoked boolean, person text, kind text, superuser boolean, roles text[], conflicts text[])
    ), latest AS (  -- each principal's latest word among the approvals bound here
        SELECT DISTINCT ON (a.role_oid) a.role_oid, a.id, a.verdict
          FROM a WHERE a.bound_why IS NULL ORDER BY a.role_oid, a.ledger_seq DESC, a.id DESC
    ), word AS (  -- each person's
        SELECT DISTINCT ON (gcos._person_key(a.person)) gcos._person_key(a.person) AS person_key, a.id, a.verdict, a.who
          FROM a WHERE a.bound_why IS NULL ORDER BY gcos._person_key(a.person), a.ledger_seq DESC, a.id DESC
    )
    SELECT a.id, a.role_oid, a.who, a.person, a.roles, a.expires_at,
           COALESCE(a.bound_why,
                    CASE WHEN l.id <> a.id AND l.verdict = a.verdict
                         THEN pg_catalog.format('is by %s again (as approval %s): one person counts once', a.who, l.id)
                         WHEN l.id <> a.id
                         THEN pg_catalog.format('is superseded by %s''s later %s (approval %s)', a.who, l.verdict, l.id)
                         WHEN w.id <> a.id AND w.verdict <> a.verdict
                         THEN pg_catalog.format('is superseded by the later %s of %s, the same person, as %s (approval %s)',
                                                w.verdict, a.person, w.who, w.id) END,
                    gcos._approver_problem(c, a.role_oid, a.who, a.person, a.verdict, a.kind, a.roles, a.superuser, a.conflicts)),
           pg_catalog.cardinality(a.conflicts) > 0
      FROM a LEFT JOIN latest AS l ON l.role_oid = a.role_oid
             LEFT JOIN word AS w ON w.person_key = gcos._person_key(a.person)
     ORDER BY a.ledger_seq, a.id
$$;

-- FROM 020_signers.sql: as 020's, with the persons of the facts.
CREATE OR REPLACE FUNCTION gcos._approver_problem(c jsonb, p_oid bigint, p_who text, p_person text, p_verdict text, p_kind text,
                                                  p_roles text[], p_superuser boolean, p_conflicts text[]) RETURNS text
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
        WHEN c -> 'rehearsal' IS NOT NULL
             AND gcos._one_person(p_oid, p_person, p_who, (c #>> '{rehearsal,actor_oid}')::bigint,
                                  gcos._fact_person(c, (c #>> '{rehearsal,actor_oid}')::bigint, c #>> '{rehearsal,actor_name}'),
                                  c #>> '{rehearsal,actor_name}') THEN
            pg_catalog.format('is by %s, who ran the rehearsal (no self-approval)', p_who)
        WHEN gcos._one_person(p_oid, p_person, p_who, (c ->> 'actor_oid')::bigint,
                              gcos._fact_person(c, (c ->> 'actor_oid')::bigint, c ->> 'actor_name'), c ->> 'actor_name') THEN
            pg_catalog.format('is by %s, %s (no self-approval)', p_who, CASE WHEN c ->> 'action' = 'rollback'
                              THEN 'the one rolling it back' ELSE 'the committer himself' END)
    END
$$;

-- FROM 031_attack_mends.sql: as 031's, over the decision rows and persons of the facts.
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
    FOR d IN SELECT x.* FROM pg_catalog.jsonb_to_recordset(COALESCE(c #> ARRAY['decision_rows', p_decision], '[]')) AS x(
                 id bigint, verdict text, who text, oid bigint, expires_at timestamptz, text_hash text, sysid text, db text,
                 dboid bigint, revoked boolean, kind text, superuser boolean, as_sovereign boolean, sovereign_now boolean,
                 conflicts text[]) LOOP
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
                 AND gcos._one_person(d.oid, gcos._fact_person(c, d.oid, d.who), d.who, (c ->> 'actor_oid')::bigint,
                                      gcos._fact_person(c, (c ->> 'actor_oid')::bigint, c ->> 'actor_name'), c ->> 'actor_name')
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

-- FROM 010_gates.sql: as 010's, over the dependencies' histories and the committed dependants of the facts.
CREATE OR REPLACE FUNCTION gcos._gate_dependencies(c jsonb) RETURNS jsonb
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
        SELECT pg_catalog.array_agg(d.e ->> 'step_id' ORDER BY d.o),
               pg_catalog.array_agg(d.e ->> 'step_id' ORDER BY d.o) FILTER (WHERE (d.e -> 'known') = 'false'::jsonb)
          INTO v_names, v_unknown
          FROM pg_catalog.jsonb_array_elements(COALESCE(c -> 'dependants', '[]')) WITH ORDINALITY AS d(e, o);
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
      FROM pg_catalog.unnest(v_deps) WITH ORDINALITY AS d(dep, o),
           LATERAL (SELECT c #> ARRAY['dependencies', d.dep] AS history) AS h
     WHERE NOT COALESCE((h.history ->> 'committed')::boolean, false);
    IF v_waiting IS NOT NULL THEN
        RETURN gcos._gate(2, 'dependencies', false, pg_catalog.format('%s depends on %s, not yet committed', v_sid, v_waiting),
                          'gcos commit ' || v_first, 'commit it first');
    END IF;
    RETURN gcos._gate(2, 'dependencies', true, CASE WHEN pg_catalog.cardinality(v_deps) = 0 THEN 'no dependencies'
                          ELSE pg_catalog.format('dependencies %s are committed', pg_catalog.array_to_string(v_deps, ', ')) END,
                      '', 'nothing to do');
END
$$;

-- FROM 010_gates.sql: as 010's, naming the step the facts found for the unregistered spec.
CREATE OR REPLACE FUNCTION gcos._gates_unregistered(c jsonb) RETURNS jsonb
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    WITH s AS (SELECT COALESCE(c ->> 'unregistered_step', 'STEP') AS sid)
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

-- The seven gates over recorded facts: the live evaluation and an auditor's replay call this one function.
CREATE FUNCTION gcos.judge_gates(p_facts jsonb) RETURNS jsonb
    LANGUAGE plpgsql STABLE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c jsonb := p_facts;
    v_gates jsonb;
    v_first jsonb;
    v_exc jsonb := COALESCE(p_facts -> 'exceptions', '[]');
BEGIN
    IF p_facts IS NULL OR pg_catalog.jsonb_typeof(p_facts) <> 'object' OR NOT p_facts ? 'action' OR NOT p_facts ? 'now' THEN
        RAISE EXCEPTION 'gcos: the facts of a gate decision are a JSON object with action and now' USING ERRCODE = '22023';
    END IF;
    IF c ->> 'action' = 'commit' AND c ->> 'step_id' IS NOT NULL AND pg_catalog.jsonb_typeof(c #> '{world,reverify}') = 'array' THEN
        -- the re-verify results marked by the exceptions in force alone (a mark the caller brought is dropped)
        c := pg_catalog.jsonb_set(c, '{world,reverify}', gcos._waive(c #> '{world,reverify}', 'reverify', v_exc,
             pg_catalog.jsonb_array_length(COALESCE(c #> '{spec,reverify}', '[]'))));
    END IF;
    IF c ->> 'step_id' IS NULL THEN
        v_gates := gcos._gates_unregistered(c);
    ELSE
        v_gates := pg_catalog.jsonb_build_array(gcos._gate_spec(c), gcos._gate_dependencies(c), gcos._gate_reverify(c),
                                                gcos._gate_rehearsal(c), gcos._gate_approvals(c), gcos._gate_decisions(c),
                                                gcos._gate_state(c));
    END IF;
    SELECT e INTO v_first FROM pg_catalog.jsonb_array_elements(v_gates) WITH ORDINALITY AS x(e, o)
     WHERE (e -> 'allow') = 'false'::jsonb ORDER BY (e -> 'decisive') = 'true'::jsonb DESC, o LIMIT 1;
    RETURN pg_catalog.jsonb_build_object(
        'format_version', 1, 'allow', v_first IS NULL, 'action', c -> 'action', 'step_id', c -> 'step_id',
        'spec_hash', c -> 'spec_hash', 'plan_hash', c -> 'plan_hash', 'evaluated_at', gcos._utc((c ->> 'now')::timestamptz),
        'gates', v_gates,
        'exceptions', (SELECT COALESCE(pg_catalog.jsonb_agg(e - 'applies' ORDER BY o), '[]')
                         FROM pg_catalog.jsonb_array_elements(v_exc) WITH ORDINALITY AS x(e, o) WHERE (e -> 'applies') = 'true'::jsonb),
        'exceptions_not_applied', (SELECT COALESCE(pg_catalog.jsonb_agg(e - 'applies' ORDER BY o), '[]')
                         FROM pg_catalog.jsonb_array_elements(v_exc) WITH ORDINALITY AS x(e, o) WHERE (e -> 'applies') = 'false'::jsonb),
        'failed', (SELECT COALESCE(pg_catalog.jsonb_agg(e -> 'gate' ORDER BY o), '[]')
                     FROM pg_catalog.jsonb_array_elements(v_gates) WITH ORDINALITY AS x(e, o) WHERE (e -> 'allow') = 'false'::jsonb),
        'refusal', CASE WHEN v_first IS NOT NULL THEN pg_catalog.upper(pg_catalog.left(v_first ->> 'reason', 1))
                        || pg_catalog.substr(v_first ->> 'reason', 2)
                        || COALESCE('; ' || NULLIF(v_first ->> 'remedy', ''), '') END);
END
$$;

-- FROM 025_exceptions.sql: the facts, taken now; the cross-check; the judgement; the facts beside it.
CREATE OR REPLACE FUNCTION gcos.evaluate_gates(p_spec_hash text, p_plan_hash text, p_action text, p_world jsonb) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c jsonb;
BEGIN
    IF p_action IS NULL OR p_action NOT IN ('commit', 'rollback') THEN
        RAISE EXCEPTION 'gcos: action must be commit or rollback, not %', COALESCE(p_action, 'NULL') USING ERRCODE = '22023';
    ELSIF p_spec_hash IS NULL OR p_spec_hash !~ '^[0-9a-f]{64}$' OR p_plan_hash !~ '^[0-9a-f]{64}$' THEN
        RAISE EXCEPTION 'gcos: a spec hash and a plan hash are 64 lowercase hex digits' USING ERRCODE = '22023';
    ELSIF p_world IS NOT NULL AND pg_catalog.jsonb_typeof(p_world) <> 'object' THEN
        RAISE EXCEPTION 'gcos: the measured world is a JSON object (schema_hash, reverify, global_stops)' USING ERRCODE = '22023';
    END IF;
    c := gcos._gates_facts(p_spec_hash, p_plan_hash, p_action, p_world);
    IF c ->> 'step_id' IS NOT NULL THEN
        PERFORM gcos._gates_cross_check(c ->> 'step_id', gcos._jarray_text(c #> '{spec,decisions}'));
    END IF;
    RETURN gcos.judge_gates(c) || pg_catalog.jsonb_build_object('facts', c);
END
$$;

RESET ROLE;
REVOKE ALL ON FUNCTION gcos._fact_person(jsonb, bigint, text), gcos._facts_persons(bigint[]),
    gcos._gates_facts(text, text, text, jsonb), gcos.judge_gates(jsonb) FROM PUBLIC;
-- SECURITY INVOKER, as 010's helpers: the gcos roles run them; judge_gates reads nothing, so it is harmless.
GRANT EXECUTE ON FUNCTION gcos._fact_person(jsonb, bigint, text), gcos._facts_persons(bigint[]),
    gcos._gates_facts(text, text, text, jsonb), gcos.judge_gates(jsonb)
    TO gcos_admin, gcos_operator, gcos_sovereign, gcos_council, gcos_auditor;
