-- gcos schema version 20: M-1 on every step, and people rather than roles (issue 10 items 1 and 9).
--
-- Seed 002 §70.0: no step may COMMIT until "M-1 (os_proposal_approvals>0, named sovereign approval for THAT
-- step)"; seed 004: ">=2 distinct human signers" where a step asks for cross-signing. Until now step 7 (SB-1-2,
-- signers 2 from [sovereign, council]) committed on two council members' approvals and no sovereign, and two
-- principals counted as two signers unless their display names matched.
--
-- 1. People. gcos.principals gains `person` (NOT NULL, 1 to 200 printable characters): the human a principal
--    belongs to. Existing principals get their display name (as the old rule compared), so nothing changes for
--    them. gcos.principals_history gains `person` too (NULL on rows written before this version: the person was
--    the display name). gcos.add_principal gains p_person (DEFAULT NULL: a new principal's person is its display
--    name; a changed principal keeps its person unless one is given); the `principal` ledger record's payload
--    carries "person". gcos.whoami() returns the person as its last column.
--    gcos._one_person: two principals are one person when they are the same role, when their persons are equal,
--    or (as before) when their display names are, after collapsing white space and lower(). Gate 5 counts
--    distinct persons; a person's latest word (over all their principals) supersedes their earlier approvals of
--    another verdict; the rehearser and the committer are compared as persons (no self-approval through a
--    second principal).
-- 2. M-1. Gate 5 requires, beside the spec's `signers` distinct persons, the spec's
--    `approvals.require` ({role: how many distinct persons holding it}), with a floor no spec can lower:
--    require.sovereign is at least 1, whatever the registered document says (a missing or unreadable require
--    is {"sovereign": 1}; an unreadable count counts as 1). The persons needed are
--    max(signers, sum(require)); the roles are matched to distinct persons (Hall's condition over the required
--    roles: one person holding sovereign and council fills ONE signature). A person signing through several
--    principals fills one signature with the union of the roles those approvals were made in. The refusal says
--    what is missing ("no sovereign among the 2 approvals", "only 1 sovereign among the 3 approvals, 2
--    needed") and asks the missing role(s) to approve. Gate 7's projection "approved" uses the same rule.
--
-- New (SECURITY INVOKER, search_path pinned, EXECUTE for the gcos group roles like every gate helper):
--   gcos._person_key(text), gcos._person_of(bigint, text), gcos._one_person(bigint, text, text, bigint, text,
--   text), gcos._approvals_require(jsonb), gcos._approvals_needed(jsonb, jsonb), gcos._signers_missing(jsonb,
--   jsonb). Replaced (dropped and created: their signatures change): gcos.add_principal, gcos.whoami,
--   gcos._approver_problem, gcos._approvals_judged. Replaced in place: gcos._approvals_count,
--   gcos._gate_approvals, gcos._gate_state.
SET LOCAL ROLE gcos_owner;

-- ----------------------------------------------------------------------------------- the person

ALTER TABLE gcos.principals ADD COLUMN person text;
UPDATE gcos.principals SET person = display_name;
ALTER TABLE gcos.principals
    ALTER COLUMN person SET NOT NULL,
    ADD CONSTRAINT principals_person_check
        CHECK (person ~ E'\\S' AND person !~ '[[:cntrl:]]' AND pg_catalog.length(person) <= 200);
ALTER TABLE gcos.principals_history ADD COLUMN person text;  -- NULL before version 20: the display name

-- How a person is compared: white space collapsed, trimmed, lower().
CREATE FUNCTION gcos._person_key(p text) RETURNS text
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT NULLIF(pg_catalog.lower(pg_catalog.btrim(pg_catalog.regexp_replace(p, '\s+', ' ', 'g'), ' ')), '') $$;

-- The person of a role now (its principal's), else the name it acted under.
CREATE FUNCTION gcos._person_of(p_oid bigint, p_name text) RETURNS text
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT COALESCE((SELECT p.person FROM gcos.principals AS p WHERE p.role_oid::bigint = p_oid), p_name) $$;

-- One person: the same role, the same person, or (the rule before version 20) the same display name.
CREATE FUNCTION gcos._one_person(p_oid bigint, p_person text, p_name text,
                                 p_other_oid bigint, p_other_person text, p_other_name text) RETURNS boolean
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT gcos._same_person(p_oid, p_name, p_other_oid, p_other_name)
        OR COALESCE(gcos._person_key(p_person) = gcos._person_key(p_other_person), false)
$$;

DROP FUNCTION gcos.whoami();
CREATE FUNCTION gcos.whoami()
    RETURNS TABLE (role_oid oid, role_name text, is_superuser boolean, display_name text, kind text,
                   roles text[], created_at timestamptz, updated_at timestamptz, person text)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT r.oid, r.rolname::text, r.rolsuper, p.display_name, p.kind, p.roles, p.created_at, p.updated_at, p.person
      FROM pg_catalog.pg_roles AS r
      LEFT JOIN gcos.principals AS p ON p.role_oid = r.oid
     WHERE r.rolname = session_user
$$;

-- As 001 defined it, with the person (see the header). Callers: a superuser or a human admin, never for itself.
DROP FUNCTION gcos.add_principal(text, text, text, text[], text, text);
CREATE FUNCTION gcos.add_principal(p_role text, p_display_name text, p_kind text, p_roles text[],
                                   p_trace_id text DEFAULT NULL, p_span_id text DEFAULT NULL,
                                   p_person text DEFAULT NULL)
    RETURNS TABLE (role_oid oid, changed boolean, ledger_seq bigint)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_actor record;
    v_target record;
    v_old record;
    v_roles text[];
    v_person text;
    v_found boolean;
    v_now timestamptz := pg_catalog.clock_timestamp();
    v_write record;
BEGIN
    SELECT * INTO v_actor FROM gcos._session_actor();
    IF NOT v_actor.is_superuser THEN
        IF v_actor.principal IS NULL THEN
            PERFORM gcos._refuse(pg_catalog.format('gcos: session role %I is not a registered principal and cannot add principals', v_actor.role_name));
        ELSIF v_actor.kind <> 'human' OR NOT ('admin' = ANY (v_actor.roles)) THEN
            PERFORM gcos._refuse(pg_catalog.format('gcos: principal %s (%s) is not a human admin and cannot add principals', v_actor.principal, v_actor.kind));
        END IF;
    END IF;

    SELECT r.oid, r.rolname::text AS rolname INTO v_target FROM pg_catalog.pg_roles AS r WHERE r.rolname = p_role;
    IF v_target.oid IS NULL THEN
        PERFORM gcos._invalid(pg_catalog.format('gcos: database role %L does not exist; create it first', p_role));
    END IF;
    IF v_target.rolname IN ('gcos_owner', 'gcos_admin', 'gcos_operator', 'gcos_sovereign', 'gcos_council', 'gcos_auditor') THEN
        PERFORM gcos._invalid(pg_catalog.format('gcos: %s is a gcos group role, not a person or service', v_target.rolname));
    END IF;
    IF v_target.oid = v_actor.role_oid AND NOT v_actor.is_superuser THEN
        PERFORM gcos._refuse('gcos: an admin cannot change their own principal; ask another admin');
    END IF;
    IF p_kind IS NULL OR p_kind NOT IN ('human', 'agent', 'service') THEN
        PERFORM gcos._invalid(pg_catalog.format('gcos: principal kind %L is not one of human, agent, service', p_kind));
    END IF;
    IF p_display_name IS NULL OR p_display_name !~ E'\\S' OR p_display_name ~ '[[:cntrl:]]'
       OR pg_catalog.length(p_display_name) > 200 THEN
        PERFORM gcos._invalid('gcos: a principal name is 1 to 200 printable characters');
    END IF;
    IF p_person IS NOT NULL AND (p_person !~ E'\\S' OR p_person ~ '[[:cntrl:]]' OR pg_catalog.length(p_person) > 200) THEN
        PERFORM gcos._invalid('gcos: a person is 1 to 200 printable characters');
    END IF;
    IF p_roles IS NULL OR pg_catalog.array_position(p_roles, NULL) IS NOT NULL
       OR NOT (p_roles <@ ARRAY['sovereign', 'council', 'operator', 'auditor', 'admin']) THEN
        PERFORM gcos._invalid('gcos: principal roles are among sovereign, council, operator, auditor, admin');
    END IF;
    v_roles := ARRAY(SELECT DISTINCT x FROM pg_catalog.unnest(p_roles) AS u(x) ORDER BY x);

    SELECT p.* INTO v_old FROM gcos.principals AS p WHERE p.role_oid = v_target.oid FOR UPDATE;
    v_found := FOUND;
    v_person := COALESCE(p_person, v_old.person, p_display_name);
    IF v_found AND v_old.display_name = p_display_name AND v_old.kind = p_kind AND v_old.roles = v_roles
       AND v_old.role_name = v_target.rolname AND v_old.person = v_person THEN
        RETURN QUERY SELECT v_target.oid::oid, false, NULL::bigint;
        RETURN;
    END IF;

    SELECT * INTO v_write FROM gcos._ledger_write('principal', NULL, NULL, p_trace_id, p_span_id,
        pg_catalog.jsonb_build_object('change', CASE WHEN v_old.role_oid IS NULL THEN 'added' ELSE 'changed' END,
                                      'role', v_target.rolname, 'role_oid', v_target.oid::bigint,
                                      'display_name', p_display_name, 'person', v_person, 'kind', p_kind,
                                      'roles', pg_catalog.to_jsonb(v_roles)));
    INSERT INTO gcos.principals AS p (role_oid, role_name, display_name, kind, roles, created_at, updated_at, ledger_seq, person)
    VALUES (v_target.oid, v_target.rolname, p_display_name, p_kind, v_roles, v_now, v_now, v_write.seq, v_person)
    ON CONFLICT ON CONSTRAINT principals_pkey DO UPDATE
       SET role_name = EXCLUDED.role_name, display_name = EXCLUDED.display_name, kind = EXCLUDED.kind,
           roles = EXCLUDED.roles, updated_at = EXCLUDED.updated_at, ledger_seq = EXCLUDED.ledger_seq,
           person = EXCLUDED.person;
    INSERT INTO gcos.principals_history (role_oid, role_name, display_name, kind, roles, changed_by_oid,
                                         changed_by, changed_at, ledger_seq, person)
    VALUES (v_target.oid, v_target.rolname, p_display_name, p_kind, v_roles, v_actor.role_oid,
            v_actor.role_name, v_now, v_write.seq, v_person);
    RETURN QUERY SELECT v_target.oid::oid, true, v_write.seq;
END
$$;

-- ----------------------------------------------------------------------------------- what a step needs

-- {role: distinct persons holding it} the step needs: the spec's approvals.require over the floor
-- {"sovereign": 1}; sovereign never below 1, other roles never below 0, an unreadable count is 1.
CREATE FUNCTION gcos._approvals_require(c jsonb) RETURNS jsonb
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.jsonb_object_agg(r.key, CASE WHEN r.key = 'sovereign' THEN GREATEST(COALESCE(gcos._jint(r.value), 1), 1)
                                                   ELSE GREATEST(COALESCE(gcos._jint(r.value), 1), 0) END)
      FROM pg_catalog.jsonb_each('{"sovereign": 1}'::jsonb
                                 || CASE WHEN pg_catalog.jsonb_typeof(c #> '{spec,approvals,require}') = 'object'
                                         THEN c #> '{spec,approvals,require}' ELSE '{}'::jsonb END) AS r
$$;

-- Distinct persons needed: max(signers, sum of the required roles), at least 1.
CREATE FUNCTION gcos._approvals_needed(c jsonb, p_require jsonb) RETURNS integer
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT GREATEST(COALESCE(gcos._jint(c #> '{spec,approvals,signers}'), 1), 1,
                    (SELECT COALESCE(pg_catalog.sum((r.value #>> '{}')::integer), 0)::integer
                       FROM pg_catalog.jsonb_each(p_require) AS r))::integer
$$;

-- "sovereign", "council member", "sovereigns", "council members".
CREATE FUNCTION gcos._role_word(p_role text, p_n integer) RETURNS text
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT CASE p_role WHEN 'council' THEN 'council member' ELSE p_role END || CASE WHEN p_n <> 1 THEN 's' ELSE '' END $$;

-- What the counted persons ([{roles}], one per person) lack of p_require, or NULL: the first role fewer
-- persons hold than required, else a set of roles that distinct persons cannot all fill (one person
-- holding two required roles fills one signature). short: the roles to ask for.
CREATE FUNCTION gcos._signers_missing(p_require jsonb, p_counted jsonb, OUT missing text, OUT short text[])
    LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_roles text[];
    v_need integer[];
    v_total integer := pg_catalog.jsonb_array_length(p_counted);
    v_got integer;
    v_sum integer;
    v_set text[];
    i integer;
    m integer;
BEGIN
    SELECT pg_catalog.array_agg(r.key ORDER BY r.key <> 'sovereign', r.key),
           pg_catalog.array_agg((r.value #>> '{}')::integer ORDER BY r.key <> 'sovereign', r.key)
      INTO v_roles, v_need
      FROM pg_catalog.jsonb_each(p_require) AS r WHERE (r.value #>> '{}')::integer > 0;
    FOR i IN 1 .. COALESCE(pg_catalog.cardinality(v_roles), 0) LOOP
        SELECT pg_catalog.count(*) INTO v_got FROM pg_catalog.jsonb_array_elements(p_counted) AS e
         WHERE v_roles[i] = ANY (gcos._jarray_text(e -> 'roles'));
        IF v_got < v_need[i] THEN
            short := ARRAY[v_roles[i]];
            missing := CASE WHEN v_got = 0
                            THEN pg_catalog.format('no %s among the %s approval%s', gcos._role_word(v_roles[i], 1), v_total,
                                                   CASE WHEN v_total <> 1 THEN 's' ELSE '' END)
                            ELSE pg_catalog.format('only %s %s among the %s approvals, %s needed', v_got,
                                                   gcos._role_word(v_roles[i], v_got), v_total, v_need[i]) END;
            RETURN;
        END IF;
    END LOOP;
    FOR m IN 1 .. (1 << COALESCE(pg_catalog.cardinality(v_roles), 0)) - 1 LOOP  -- Hall's condition, every set of roles
        v_set := ARRAY(SELECT v_roles[k] FROM pg_catalog.generate_series(1, pg_catalog.cardinality(v_roles)) AS k
                        WHERE m & (1 << (k - 1)) <> 0 ORDER BY k);
        v_sum := (SELECT pg_catalog.sum(v_need[k]) FROM pg_catalog.generate_series(1, pg_catalog.cardinality(v_roles)) AS k
                   WHERE m & (1 << (k - 1)) <> 0);
        SELECT pg_catalog.count(*) INTO v_got FROM pg_catalog.jsonb_array_elements(p_counted) AS e
         WHERE gcos._jarray_text(e -> 'roles') && v_set;
        IF v_got < v_sum THEN
            short := v_set;
            missing := pg_catalog.format('the %s approvals cannot be %s by distinct people', v_total,
                (SELECT pg_catalog.string_agg(pg_catalog.format('%s %s', v_need[k], gcos._role_word(v_roles[k], v_need[k])), ' and ' ORDER BY k)
                   FROM pg_catalog.generate_series(1, pg_catalog.cardinality(v_roles)) AS k WHERE m & (1 << (k - 1)) <> 0));
            RETURN;
        END IF;
    END LOOP;
END
$$;

-- ----------------------------------------------------------------------------------- gate 5, by person

-- As 010's, comparing persons: the rehearser's and the committer's persons (their principals' now) against
-- the approver's, so a second principal of the same person is no way around "no self-approval".
DROP FUNCTION gcos._approver_problem(jsonb, bigint, text, text, text, text[], boolean, text[]);
CREATE FUNCTION gcos._approver_problem(c jsonb, p_oid bigint, p_who text, p_person text, p_verdict text, p_kind text,
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
                                  gcos._person_of((c #>> '{rehearsal,actor_oid}')::bigint, c #>> '{rehearsal,actor_name}'),
                                  c #>> '{rehearsal,actor_name}') THEN
            pg_catalog.format('is by %s, who ran the rehearsal (no self-approval)', p_who)
        WHEN gcos._one_person(p_oid, p_person, p_who, (c ->> 'actor_oid')::bigint,
                              gcos._person_of((c ->> 'actor_oid')::bigint, c ->> 'actor_name'), c ->> 'actor_name') THEN
            pg_catalog.format('is by %s, %s (no self-approval)', p_who, CASE WHEN c ->> 'action' = 'rollback'
                              THEN 'the one rolling it back' ELSE 'the committer himself' END)
    END
$$;

-- As 010's, with each approver's person and roles: a person's latest word over all their principals
-- supersedes their earlier approvals of another verdict.
DROP FUNCTION gcos._approvals_judged(jsonb);
CREATE FUNCTION gcos._approvals_judged(c jsonb)
    RETURNS TABLE (id bigint, role_oid bigint, who text, person text, roles text[], expires_at timestamptz, why text,
                   conflicted boolean)
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    WITH a AS (
        SELECT x.id, x.ledger_seq, x.approver_oid::bigint AS role_oid, x.approver AS who, x.verdict, x.expires_at,
               COALESCE(p.person, x.approver) AS person,
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

-- gates.count_approvals, by person: {counted: [{id, role_oid, who, person, roles, expires_at}] one per person,
-- in order (roles: every role that person approved in); discounted: [{id, who, why, conflicted}] by id;
-- selfish: [who]; require: {role: n}; need: persons needed; missing: what the roles lack (or absent);
-- short: the roles to ask for; enough: gate 5 holds}.
CREATE OR REPLACE FUNCTION gcos._approvals_count(c jsonb) RETURNS jsonb
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a record;
    v_twin jsonb;
    v_at integer;
    v_counted jsonb := '[]';
    v_discounted jsonb := '[]';
    v_selfish jsonb := '[]';
    v_require jsonb := gcos._approvals_require(c);
    v_need integer := gcos._approvals_needed(c, v_require);
    v_lack record;
BEGIN
    FOR a IN SELECT * FROM gcos._approvals_judged(c) LOOP
        IF a.why IS NULL THEN
            v_twin := NULL;
            SELECT x.e, x.o::integer - 1 INTO v_twin, v_at FROM pg_catalog.jsonb_array_elements(v_counted) WITH ORDINALITY AS x(e, o)
             WHERE gcos._one_person(a.role_oid, a.person, a.who, (x.e ->> 'role_oid')::bigint, x.e ->> 'person', x.e ->> 'who')
             ORDER BY x.o LIMIT 1;
            IF v_twin IS NULL THEN
                v_counted := v_counted || pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
                    'id', a.id, 'role_oid', a.role_oid, 'who', a.who, 'person', a.person, 'roles', pg_catalog.to_jsonb(a.roles),
                    'expires_at', gcos._utc(a.expires_at)));
                CONTINUE;
            END IF;
            a.why := CASE WHEN (v_twin ->> 'role_oid')::bigint = a.role_oid OR v_twin ->> 'who' = a.who
                          THEN pg_catalog.format('is by %s again (as approval %s): one person counts once, whatever their roles',
                                                 a.who, v_twin ->> 'id')
                          ELSE pg_catalog.format('is by %s, the same person as %s (approval %s): one person counts once, '
                                                 'whatever their roles', a.who, v_twin ->> 'who', v_twin ->> 'id') END;
            v_counted := pg_catalog.jsonb_set(v_counted, ARRAY[v_at::text, 'roles'], pg_catalog.to_jsonb(ARRAY(
                SELECT DISTINCT u.r FROM pg_catalog.unnest(gcos._jarray_text(v_twin -> 'roles') || a.roles) AS u(r) ORDER BY u.r)));
        ELSIF a.why LIKE '%(no self-approval)' THEN
            v_selfish := v_selfish || pg_catalog.to_jsonb(a.who);
        END IF;
        v_discounted := v_discounted || pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
            'id', a.id, 'who', a.who, 'why', a.why, 'conflicted', a.conflicted));
    END LOOP;
    SELECT * INTO v_lack FROM gcos._signers_missing(v_require, v_counted);
    RETURN pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object('missing', v_lack.missing)) || pg_catalog.jsonb_build_object(
        'counted', v_counted, 'selfish', v_selfish, 'require', v_require, 'need', v_need,
        'short', pg_catalog.to_jsonb(COALESCE(v_lack.short, '{}')),
        'enough', pg_catalog.jsonb_array_length(v_counted) >= v_need AND v_lack.missing IS NULL,
        'discounted', (SELECT COALESCE(pg_catalog.jsonb_agg(e ORDER BY (e ->> 'id')::bigint), '[]')
                         FROM pg_catalog.jsonb_array_elements(v_discounted) AS e));
END
$$;

-- Gate 5: enough distinct, named, human persons' approvals bound to exactly this spec, plan, target and
-- subject, at least one of them a sovereign (M-1), and the roles the spec requires.
CREATE OR REPLACE FUNCTION gcos._gate_approvals(c jsonb) RETURNS jsonb
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_count jsonb := gcos._approvals_count(c);
    v_counted jsonb := v_count -> 'counted';
    v_discounted jsonb := v_count -> 'discounted';
    v_need integer := (v_count ->> 'need')::integer;
    v_missing text := v_count ->> 'missing';
    v_what text := CASE WHEN c ->> 'action' = 'rollback' THEN 'the rollback of ' ELSE '' END || (c ->> 'step_id');
    v_ids bigint[] := ARRAY(SELECT (e ->> 'id')::bigint FROM pg_catalog.jsonb_array_elements(v_counted) WITH ORDINALITY AS x(e, o) ORDER BY o);
    v_n_ids integer := pg_catalog.cardinality(v_ids);
    v_command text := pg_catalog.format('gcos approve %s%s --verdict approve --expires-in 24h', c ->> 'step_id',
                                        CASE WHEN c ->> 'action' = 'rollback' THEN ' --rollback' ELSE '' END);
    v_list text := (SELECT pg_catalog.string_agg(pg_catalog.format('%s (approval %s)', e ->> 'who', e ->> 'id'), ', ' ORDER BY o)
                      FROM pg_catalog.jsonb_array_elements(v_counted) WITH ORDINALITY AS x(e, o));
    v_required text := (SELECT pg_catalog.string_agg(pg_catalog.format('%s %s', r.value, gcos._role_word(r.key, (r.value #>> '{}')::integer)),
                                                     ' and ' ORDER BY r.key <> 'sovereign', r.key)
                          FROM pg_catalog.jsonb_each(v_count -> 'require') AS r WHERE (r.value #>> '{}')::integer > 0);
    v_reason text;
    v_lead text;
    v_why text;
    v_n integer := pg_catalog.jsonb_array_length(v_discounted);
BEGIN
    IF (v_count -> 'enough') = 'true'::jsonb THEN
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
    v_lead := pg_catalog.format('ask %s%s to run', gcos._roles_text(CASE WHEN v_missing IS NOT NULL
                                    THEN gcos._jarray_text(v_count -> 'short') ELSE gcos._jarray_text(c #> '{spec,approvals,roles}') END, true),
                                COALESCE(' other than ' || v_why, ''));
    IF v_n_ids = 0 AND v_n = 0 THEN
        RETURN gcos._gate(5, 'approvals', false, pg_catalog.format('no approval for %s bound to spec %s', v_what,
                          gcos._short(c ->> 'spec_hash')), v_command, v_lead);
    ELSIF v_n_ids = 0 AND v_n = 1 THEN
        RETURN gcos._gate(5, 'approvals', false, pg_catalog.format('no approval counts for %s: approval %s by %s %s', v_what,
                          v_discounted #>> '{0,id}', v_discounted #>> '{0,who}', v_discounted #>> '{0,why}'),
                          v_command, v_lead, true, v_ids);
    END IF;
    SELECT pg_catalog.string_agg(pg_catalog.format('approval %s by %s %s', e ->> 'id', e ->> 'who', e ->> 'why'), '; ' ORDER BY o)
           || CASE WHEN v_n > 5 THEN pg_catalog.format('; and %s more', v_n - 5) ELSE '' END
      INTO v_why FROM pg_catalog.jsonb_array_elements(v_discounted) WITH ORDINALITY AS x(e, o) WHERE o <= 5;
    IF v_n_ids >= v_need THEN  -- enough persons, not the roles: say what is missing first
        v_reason := pg_catalog.format('%s has %s (%s): it needs %s distinct approver%s, at least %s (seed 002 §70.0 M-1: '
                                      'a named sovereign approval for every step)', v_what, v_missing, v_list, v_need,
                                      CASE WHEN v_need <> 1 THEN 's' ELSE '' END, v_required);
    ELSE
        v_reason := pg_catalog.format('%s needs %s distinct approver%s and has %s%s', v_what, v_need,
                                      CASE WHEN v_need <> 1 THEN 's' ELSE '' END, v_n_ids, COALESCE(' (' || v_list || ')', ''))
                    || CASE WHEN v_n_ids > 0 THEN COALESCE('; ' || v_missing, '') ELSE '' END;
    END IF;
    RETURN gcos._gate(5, 'approvals', false, v_reason || COALESCE(': ' || v_why, ''), v_command, v_lead, true, v_ids);
END
$$;

-- As 010's, with "approved" meaning what gate 5 means (persons, roles, M-1).
CREATE OR REPLACE FUNCTION gcos._gate_state(c jsonb) RETURNS jsonb
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
    IF v_state = 'rehearsed' AND (gcos._approvals_count((c - 'actor_name') || '{"actor_oid": 0}'::jsonb) -> 'enough') = 'true'::jsonb THEN
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

-- ----------------------------------------------------------------------------------- privileges

REVOKE ALL ON FUNCTION
    gcos._person_key(text), gcos._person_of(bigint, text), gcos._one_person(bigint, text, text, bigint, text, text),
    gcos.whoami(), gcos.add_principal(text, text, text, text[], text, text, text), gcos._approvals_require(jsonb),
    gcos._approvals_needed(jsonb, jsonb), gcos._role_word(text, integer), gcos._signers_missing(jsonb, jsonb),
    gcos._approver_problem(jsonb, bigint, text, text, text, text, text[], boolean, text[]), gcos._approvals_judged(jsonb)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gcos.whoami() TO PUBLIC;
GRANT EXECUTE ON FUNCTION gcos.add_principal(text, text, text, text[], text, text, text) TO gcos_admin;
GRANT EXECUTE ON FUNCTION
    gcos._person_key(text), gcos._person_of(bigint, text), gcos._one_person(bigint, text, text, bigint, text, text),
    gcos._approvals_require(jsonb), gcos._approvals_needed(jsonb, jsonb), gcos._role_word(text, integer),
    gcos._signers_missing(jsonb, jsonb), gcos._approver_problem(jsonb, bigint, text, text, text, text, text[], boolean, text[]),
    gcos._approvals_judged(jsonb)
    TO gcos_admin, gcos_operator, gcos_sovereign, gcos_council, gcos_auditor;
