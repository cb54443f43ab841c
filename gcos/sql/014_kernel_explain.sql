-- gcos schema version 14: the gates explained as the kernel would judge them now (issue 9 item 3: "gcos status
-- and every refusal message explain that same evaluation (a kernel function returning the per-gate table)").
--
--   gcos.explain_gates(spec_hash, plan_hash, action) -> jsonb      gcos_admin, gcos_operator, gcos_sovereign,
--                                                                  gcos_council, gcos_auditor
--
-- Where schema public is adopted, the world a commit is judged on is measured by the kernel as gcos_kernel
-- (gcos._kernel_world, 012): the fingerprint, re-verify and the plan's global stops. A person who only looks
-- (`gcos status`) often cannot read what the kernel reads: tables a step created are owned by gcos_kernel, and a
-- sovereign may read nothing of the governed schema at all. This function measures that same world, without the
-- commit lock and writing nothing, and returns gcos.evaluate_gates on it with as_actor false (nobody is
-- committing): the decision a commit would take now, gate by gate. It refuses (55000) where public is not
-- adopted (there the client measures with its own rights) and a registered spec/plan that is unknown is judged
-- by evaluate_gates (gate 1 says so).
--
-- What it discloses: check values and stop details of REGISTERED specs, which the policy decision of every
-- commit records anyway (approvers read them); registering needs the operator role, so the residual risk is
-- the one the README names for rehearsals (a registered check can show what gcos_kernel can read).
SET LOCAL ROLE gcos_owner;

CREATE FUNCTION gcos.explain_gates(p_spec_hash text, p_plan_hash text, p_action text DEFAULT 'commit') RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_spec jsonb := (SELECT s.document FROM gcos.specs AS s WHERE s.spec_hash = p_spec_hash);
    v_plan jsonb := (SELECT p.document FROM gcos.plans AS p WHERE p.plan_hash = p_plan_hash);
    v_world jsonb := '{"as_actor": false}';
BEGIN
    IF NOT EXISTS (SELECT FROM gcos.adopted_schemas AS a WHERE a.schema_name = 'public' AND a.released_at IS NULL) THEN
        RAISE EXCEPTION 'gcos: the kernel measures the world only where schema public is adopted'
            USING ERRCODE = '55000', HINT = 'Measure it with your own rights (gcos status does) or run gcos adopt public.';
    END IF;
    IF v_spec IS NOT NULL AND v_plan IS NOT NULL AND v_plan -> 'steps' ? (v_spec ->> 'id') THEN
        -- The gates read the schema hash only: leave the watched tables' rows out (they can be millions).
        v_world := (gcos._kernel_world(v_spec - 'watch', v_plan) -> 'world') || v_world;
    END IF;
    RETURN gcos.evaluate_gates(p_spec_hash, p_plan_hash, p_action, v_world);
END
$$;

REVOKE ALL ON FUNCTION gcos.explain_gates(text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gcos.explain_gates(text, text, text)
    TO gcos_admin, gcos_operator, gcos_sovereign, gcos_council, gcos_auditor;
