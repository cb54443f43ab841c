-- gcos schema version 4: who may append outcome records (review finding: an agent with the operator role
-- could append a "commit" record through gcos.ledger_append and make a step look committed).
--
-- Records that change a step's state — commit, rollback, policy_decision, batch_started, batch_resumed —
-- may be appended only by a superuser or by a HUMAN principal holding the operator or admin role. Agents
-- and services may still rehearse and propose (CONTRACT.md "Who uses it"). gcos's state projection also
-- counts a commit or rollback only when it names an allowing policy decision of the same step and trace.
SET LOCAL ROLE gcos_owner;

CREATE FUNCTION gcos._outcome_kinds() RETURNS text[]
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT ARRAY['commit', 'rollback', 'policy_decision', 'batch_started', 'batch_resumed'] $$;

CREATE OR REPLACE FUNCTION gcos.ledger_append(p_kind text, p_step_id text, p_spec_hash text, p_trace_id text,
                                              p_span_id text, p_payload jsonb)
    RETURNS TABLE (seq bigint, hash text)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_actor record;
BEGIN
    IF p_kind = ANY (gcos._reserved_kinds()) THEN
        PERFORM gcos._refuse(pg_catalog.format(
            'gcos: %s records are written only by their own gcos function, not by gcos.ledger_append', p_kind));
    END IF;
    IF p_kind = ANY (gcos._outcome_kinds()) THEN
        SELECT * INTO v_actor FROM gcos._session_actor();
        IF NOT v_actor.is_superuser AND (v_actor.kind IS DISTINCT FROM 'human'
                OR NOT (v_actor.roles && ARRAY['operator', 'admin']::text[])) THEN
            PERFORM gcos._refuse(pg_catalog.format(
                'gcos: %s records are appended only by a human operator; role %I may not', p_kind,
                v_actor.role_name));
        END IF;
    END IF;
    RETURN QUERY SELECT w.seq, w.hash FROM gcos._ledger_write(p_kind, p_step_id, p_spec_hash, p_trace_id,
                                                                p_span_id, p_payload) AS w;
END
$$;

REVOKE ALL ON FUNCTION gcos._outcome_kinds() FROM PUBLIC;
REVOKE ALL ON FUNCTION gcos.ledger_append(text, text, text, text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gcos.ledger_append(text, text, text, text, text, jsonb)
    TO gcos_admin, gcos_operator, gcos_sovereign, gcos_council;
