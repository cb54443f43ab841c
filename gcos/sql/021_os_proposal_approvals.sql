-- gcos schema version 21: one os_proposal_approvals (issue 10 item 2; seed 002 §70.0 "M-1
-- (os_proposal_approvals>0, named sovereign approval for THAT step)", §70.1 step 5 "os_proposal_approvals
-- matches the recorded approvals").
--
-- gcos records approvals in gcos.os_proposal_approvals (002) through gcos approve, and nowhere else. The
-- name the seed reads, public.os_proposal_approvals, is a VIEW of it that lists the approvals valid NOW,
-- one row each: those gate 5 would count (gcos._approvals_count, 010), so `SELECT count(*) FROM
-- os_proposal_approvals WHERE step_id = X` is > 0 exactly when X has a valid approval. Valid is judged
-- against the step's current subject:
--   * a committed step: the spec and plan of its commit in force (the commit's ledger record), its
--     committer and the rehearsal it relied on; approvals recorded since the step's last rollback count
--     (those before are spent), so the approvals that authorised the commit stay listed until they are
--     revoked or expire;
--   * any other step: its most recently registered spec (gcos.specs; `gcos rehearse` registers an edited
--     spec, and the edit unbinds every approval of the old one) under the plan of its latest rehearsal of
--     that spec (else its latest registered plan naming the step), nobody committing; approvals recorded
--     since its last commit or rollback count;
-- and, as gate 5 judges: verdict approve (a principal's latest word), unrevoked, expires_at later than the
-- database clock, bound to that spec, plan and this database incarnation, by a registered human
-- non-superuser holding one of the spec's approval roles, no self-approval, one person counts once.
--
-- API
--   gcos.valid_approvals() -> TABLE (approval_id, step_id, spec_hash, plan_hash, verdict, approver,
--       approver_roles, note, created_at, expires_at, ledger_seq)
--       SECURITY DEFINER (gcos_owner: it reads the approvals, the ledger, the registry and principals),
--       read-only; EXECUTE to the gcos group roles and gcos_kernel (a step's checks read the view).
--   gcos.proposal_approvals() -> the same columns
--       SECURITY INVOKER, owned by gcos_kernel, the same rows: what public.os_proposal_approvals selects.
--       An adopted schema's view may depend only on routines owned by the kernel or a superuser
--       (007 _adopt_links): the owner of anything else could replace it under the kernel.
--   gcos.approvals_on_record(p_step_id text) -> bigint[]
--       SECURITY DEFINER, read-only, from the LEDGER alone: the approvals that the allowing policy
--       decision of the step's commit in force counted (gate 5 evidence), each with its `approval`
--       record for the step, minus those with an `approval_revocation` record and those whose recorded
--       expiry has passed, in id order; NULL when the step is not committed. Step 5 compares it with the
--       view for steps 1-4: a row forged into gcos.os_proposal_approvals, or one missing, disagrees.
--   public.os_proposal_approvals, when the reference world is installed (its marker table
--       public.reference_world_baseline exists): the world's placeholder (a view that reads 0, or the table
--       of worlds built before this version, if empty) becomes the view of gcos.proposal_approvals(),
--       keeping its owner. A world built after gcos is installed creates that view itself
--       (gcos/world/01_schema.sql). SELECT to PUBLIC (the function behind it to the gcos roles and the
--       kernel); no role writes it: a view of a function is not updatable, and adopted, only the kernel
--       holds a write privilege on it.
SET LOCAL ROLE gcos_owner;

-- The context gate 5 judges a step's approvals against now (see above), or NULL when the step has no
-- current subject (no registered spec, or a commit whose record names none).
CREATE FUNCTION gcos._approvals_now(p_step_id text) RETURNS jsonb
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_history jsonb := gcos._step_history(p_step_id);
    v_commit record;
    v_spec text;
    v_plan text;
    c jsonb;
BEGIN
    IF (v_history ->> 'committed')::boolean THEN
        SELECT l.spec_hash, gcos._jtext(l.record #> '{payload,plan_hash}') AS plan_hash,
               gcos._jint(l.record #> '{actor,role_oid}') AS actor_oid, gcos._jtext(l.record #> '{actor,principal}') AS actor_name
          INTO v_commit FROM gcos.ledger AS l WHERE l.seq = (v_history ->> 'commit_seq')::bigint;
        IF v_commit.spec_hash IS NULL OR v_commit.plan_hash IS NULL THEN
            RETURN NULL;
        END IF;
        c := gcos._gates_context(v_commit.spec_hash, v_commit.plan_hash, 'commit', '{"as_actor": false}');
        RETURN c || pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
            'history', v_history || pg_catalog.jsonb_build_object('epoch_seq', COALESCE((v_history ->> 'rollback_seq')::bigint, 0)),
            'rehearsal', gcos._rehearsal_relied_on(p_step_id, 'rollback', v_history),
            'actor_oid', v_commit.actor_oid, 'actor_name', v_commit.actor_name));
    END IF;
    SELECT s.spec_hash INTO v_spec FROM gcos.specs AS s WHERE s.step_id = p_step_id ORDER BY s.ledger_seq DESC LIMIT 1;
    IF v_spec IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT gcos._jtext(l.record #> '{payload,plan_hash}') INTO v_plan
      FROM gcos.ledger AS l WHERE l.kind = 'rehearsal' AND l.step_id = p_step_id AND l.spec_hash = v_spec
     ORDER BY l.seq DESC LIMIT 1;
    IF v_plan IS NULL THEN
        SELECT p.plan_hash INTO v_plan FROM gcos.plans AS p WHERE (p.document -> 'steps') ? p_step_id
         ORDER BY p.ledger_seq DESC LIMIT 1;
    END IF;
    RETURN gcos._gates_context(v_spec, COALESCE(v_plan, pg_catalog.repeat('0', 64)), 'commit', '{"as_actor": false}');
END
$$;

CREATE FUNCTION gcos.valid_approvals()
    RETURNS TABLE (approval_id bigint, step_id text, spec_hash text, plan_hash text, verdict text, approver text,
                   approver_roles text[], note text, created_at timestamptz, expires_at timestamptz, ledger_seq bigint)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT a.id, a.step_id, a.spec_hash, a.plan_hash, a.verdict, a.approver, a.approver_roles, a.note, a.created_at,
           a.expires_at, a.ledger_seq
      FROM (SELECT DISTINCT x.step_id FROM gcos.os_proposal_approvals AS x) AS s
     CROSS JOIN LATERAL pg_catalog.jsonb_array_elements(
                    gcos._approvals_count(gcos._approvals_now(s.step_id)) -> 'counted') AS e(counted)
      JOIN gcos.os_proposal_approvals AS a ON a.id = (e.counted ->> 'id')::bigint AND a.step_id = s.step_id
$$;

CREATE FUNCTION gcos.approvals_on_record(p_step_id text) RETURNS bigint[]
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    WITH h AS (SELECT gcos._step_history(p_step_id) AS h),
    decision AS (
        SELECT d.record -> 'payload' AS payload
          FROM h, gcos.ledger AS c
          JOIN gcos.ledger AS d ON d.seq = gcos._jint(c.record #> '{payload,policy_decision_seq}') AND d.kind = 'policy_decision'
         WHERE (h.h ->> 'committed')::boolean AND c.seq = (h.h ->> 'commit_seq')::bigint
    ), counted AS (
        SELECT DISTINCT gcos._jint(ev.e) AS id
          FROM decision, pg_catalog.jsonb_array_elements(decision.payload -> 'gates') AS g(gate),
               pg_catalog.jsonb_array_elements(g.gate -> 'evidence') AS ev(e)
         WHERE (g.gate -> 'number') = '5'::jsonb AND pg_catalog.jsonb_typeof(g.gate -> 'evidence') = 'array'
    )
    SELECT CASE WHEN EXISTS (SELECT 1 FROM decision) THEN ARRAY(
        SELECT k.id FROM counted AS k
         WHERE EXISTS (SELECT 1 FROM gcos.ledger AS e
                        WHERE e.kind = 'approval' AND e.step_id = p_step_id
                          AND gcos._jint(e.record #> '{payload,approval_id}') = k.id
                          AND (e.record #>> '{payload,verdict}') = 'approve'
                          AND (e.record #>> '{payload,expires_at}')::timestamptz > pg_catalog.clock_timestamp())
           AND NOT EXISTS (SELECT 1 FROM gcos.ledger AS r
                            WHERE r.kind = 'approval_revocation' AND gcos._jint(r.record #> '{payload,approval_id}') = k.id)
         ORDER BY k.id) END
$$;

REVOKE ALL ON FUNCTION gcos._approvals_now(text), gcos.valid_approvals(), gcos.approvals_on_record(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gcos._approvals_now(text)
    TO gcos_admin, gcos_operator, gcos_sovereign, gcos_council, gcos_auditor;
GRANT EXECUTE ON FUNCTION gcos.valid_approvals(), gcos.approvals_on_record(text)
    TO gcos_admin, gcos_operator, gcos_sovereign, gcos_council, gcos_auditor, gcos_kernel;

-- ----------------------------------------------------------------------------------- the kernel's reading

RESET ROLE;
CREATE FUNCTION gcos.proposal_approvals()
    RETURNS TABLE (approval_id bigint, step_id text, spec_hash text, plan_hash text, verdict text, approver text,
                   approver_roles text[], note text, created_at timestamptz, expires_at timestamptz, ledger_seq bigint)
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT * FROM gcos.valid_approvals() $$;
ALTER FUNCTION gcos.proposal_approvals() OWNER TO gcos_kernel;
REVOKE ALL ON FUNCTION gcos.proposal_approvals() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gcos.proposal_approvals()
    TO gcos_admin, gcos_operator, gcos_sovereign, gcos_council, gcos_auditor;

-- The reference world's placeholder becomes the view (see above); any other database is left alone.
DO $$
DECLARE
    v_rel record;
    v_body constant text := 'SELECT approval_id, step_id, spec_hash, plan_hash, verdict, approver, approver_roles, note, '
                            'created_at, expires_at, ledger_seq FROM gcos.proposal_approvals()';
BEGIN
    SELECT c.oid, c.relkind, c.relowner::regrole::text AS owner INTO v_rel
      FROM pg_catalog.pg_class AS c WHERE c.oid = pg_catalog.to_regclass('public.os_proposal_approvals');
    IF v_rel.oid IS NULL OR v_rel.relkind NOT IN ('v', 'r') OR pg_catalog.to_regclass('public.reference_world_baseline') IS NULL THEN
        RETURN;
    ELSIF v_rel.relkind = 'v' THEN
        EXECUTE 'CREATE OR REPLACE VIEW public.os_proposal_approvals AS ' || v_body;
    ELSIF v_rel.relkind = 'r' THEN
        IF EXISTS (SELECT 1 FROM public.os_proposal_approvals) THEN
            RAISE EXCEPTION 'gcos: public.os_proposal_approvals holds rows that gcos never recorded; move them away, then install again'
                USING ERRCODE = '55000';
        END IF;
        DROP TABLE public.os_proposal_approvals;
        EXECUTE 'CREATE VIEW public.os_proposal_approvals AS ' || v_body;
        EXECUTE pg_catalog.format('ALTER VIEW public.os_proposal_approvals OWNER TO %s', v_rel.owner);
        GRANT SELECT ON public.os_proposal_approvals TO PUBLIC;
    END IF;
    COMMENT ON VIEW public.os_proposal_approvals IS
        'seed 002 §70.0 M-1 "os_proposal_approvals>0": the approvals valid now (those gate 5 counts), one row each, of gcos.os_proposal_approvals (gcos approve writes them; nobody writes this view).';
END
$$;

-- ----------------------------------------------------------------------------------- the kernel's invariants

-- 011's invariant "nothing in an adopted schema may reach into schema gcos" (a view that calls a gcos
-- function runs it as whoever reads the view) holds still, with ONE exception: the rule of the view
-- public.os_proposal_approvals may call gcos.proposal_approvals(), which only reads (STABLE, no SECURITY
-- DEFINER of its own; what it calls is read-only). Any other reach, or this view calling anything else, is
-- still a violation. SET LOCAL ROLE gcos_owner;
CREATE OR REPLACE FUNCTION gcos._kernel_invariants(p_owned_before jsonb) RETURNS jsonb
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    WITH adopted AS (
        SELECT a.schema_oid AS oid FROM gcos.adopted_schemas AS a WHERE a.released_at IS NULL
    ), kernel AS (
        SELECT 'gcos_kernel'::regrole::oid AS oid
    ), gcos_refs AS (  -- dependencies on a function, relation or type of schema gcos (few: none, normally)
        SELECT d.* FROM pg_catalog.pg_depend AS d
          JOIN pg_catalog.pg_proc AS p ON d.refclassid = 'pg_catalog.pg_proc'::regclass AND p.oid = d.refobjid
         WHERE p.pronamespace = 'gcos'::regnamespace AND d.deptype IN ('n', 'a')
           AND NOT (d.refobjid = 'gcos.proposal_approvals()'::regprocedure  -- 021: the seed's approvals, read-only
                    AND d.classid = 'pg_catalog.pg_rewrite'::regclass
                    AND d.objid = (SELECT r.oid FROM pg_catalog.pg_rewrite AS r
                                    WHERE r.ev_class = pg_catalog.to_regclass('public.os_proposal_approvals') AND r.rulename = '_RETURN'))
        UNION ALL
        SELECT d.* FROM pg_catalog.pg_depend AS d
          JOIN pg_catalog.pg_class AS c ON d.refclassid = 'pg_catalog.pg_class'::regclass AND c.oid = d.refobjid
         WHERE c.relnamespace = 'gcos'::regnamespace AND d.deptype IN ('n', 'a')
        UNION ALL
        SELECT d.* FROM pg_catalog.pg_depend AS d
          JOIN pg_catalog.pg_type AS t ON d.refclassid = 'pg_catalog.pg_type'::regclass AND t.oid = d.refobjid
         WHERE t.typnamespace = 'gcos'::regnamespace AND d.deptype IN ('n', 'a')
    ), found AS (
        SELECT 'privilege' AS category, c.oid::regclass::text AS identity,
               pg_catalog.format('%s granted to %s', x.privilege_type,
                                 CASE x.grantee WHEN 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(x.grantee) END) AS change
          FROM pg_catalog.pg_class AS c, pg_catalog.aclexplode(c.relacl) AS x
         WHERE c.relnamespace IN (SELECT oid FROM adopted) AND x.grantee <> (SELECT oid FROM kernel)
           AND (x.privilege_type IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER', 'MAINTAIN', 'USAGE')
                OR x.is_grantable)
        UNION ALL
        SELECT 'privilege', c.oid::regclass::text || '.' || pg_catalog.quote_ident(a.attname),
               pg_catalog.format('%s granted to %s', x.privilege_type,
                                 CASE x.grantee WHEN 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(x.grantee) END)
          FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_attribute AS a ON a.attrelid = c.oid AND a.attacl IS NOT NULL,
               pg_catalog.aclexplode(a.attacl) AS x
         WHERE c.relnamespace IN (SELECT oid FROM adopted) AND x.grantee <> (SELECT oid FROM kernel)
           AND (x.privilege_type <> 'SELECT' OR x.is_grantable)
        UNION ALL
        SELECT 'privilege', p.oid::regprocedure::text, 'SECURITY DEFINER routine executable by '
               || CASE x.grantee WHEN 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(x.grantee) END
          FROM pg_catalog.pg_proc AS p,
               pg_catalog.aclexplode(COALESCE(p.proacl, pg_catalog.acldefault('f', p.proowner))) AS x
         WHERE p.pronamespace IN (SELECT oid FROM adopted) AND p.prosecdef AND x.privilege_type = 'EXECUTE'
           AND x.grantee <> (SELECT oid FROM kernel)
        UNION ALL
        SELECT 'reaches_gcos', pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid),
               'depends on ' || pg_catalog.pg_describe_object(d.refclassid, d.refobjid, d.refobjsubid)
          FROM gcos_refs AS d
         WHERE CASE d.classid
                   WHEN 'pg_catalog.pg_proc'::regclass THEN (SELECT p.pronamespace FROM pg_catalog.pg_proc AS p WHERE p.oid = d.objid)
                   WHEN 'pg_catalog.pg_class'::regclass THEN (SELECT c.relnamespace FROM pg_catalog.pg_class AS c WHERE c.oid = d.objid)
                   WHEN 'pg_catalog.pg_type'::regclass THEN (SELECT t.typnamespace FROM pg_catalog.pg_type AS t WHERE t.oid = d.objid)
                   WHEN 'pg_catalog.pg_attrdef'::regclass THEN (SELECT c.relnamespace FROM pg_catalog.pg_attrdef AS ad
                       JOIN pg_catalog.pg_class AS c ON c.oid = ad.adrelid WHERE ad.oid = d.objid)
                   WHEN 'pg_catalog.pg_rewrite'::regclass THEN (SELECT c.relnamespace FROM pg_catalog.pg_rewrite AS r
                       JOIN pg_catalog.pg_class AS c ON c.oid = r.ev_class WHERE r.oid = d.objid)
                   WHEN 'pg_catalog.pg_policy'::regclass THEN (SELECT c.relnamespace FROM pg_catalog.pg_policy AS pol
                       JOIN pg_catalog.pg_class AS c ON c.oid = pol.polrelid WHERE pol.oid = d.objid)
                   WHEN 'pg_catalog.pg_trigger'::regclass THEN (SELECT c.relnamespace FROM pg_catalog.pg_trigger AS tg
                       JOIN pg_catalog.pg_class AS c ON c.oid = tg.tgrelid WHERE tg.oid = d.objid)
                   WHEN 'pg_catalog.pg_constraint'::regclass THEN (SELECT co.connamespace FROM pg_catalog.pg_constraint AS co
                       WHERE co.oid = d.objid)
               END IN (SELECT oid FROM adopted)
        UNION ALL
        SELECT 'kernel_object', o.key, pg_catalog.format('%s more owned by gcos_kernel',
                                                         o.value::bigint - COALESCE((p_owned_before ->> o.key)::bigint, 0))
          FROM pg_catalog.jsonb_each(gcos._kernel_owned()) AS o
         WHERE o.key NOT IN ('pg_class', 'pg_proc', 'pg_type', 'pg_namespace', 'pg_statistic_ext')
           AND o.value::bigint > COALESCE((p_owned_before ->> o.key)::bigint, 0)
    )
    SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'category', f.category, 'identity', f.identity, 'change', f.change, 'need', '[]'::jsonb)
               ORDER BY f.category, f.identity, f.change), '[]')
      FROM found AS f
$$;
