-- gcos schema version 2: approvals, decisions and their revocations, written only through SECURITY
-- DEFINER functions that stamp the approver from session_user (CONTRACT.md "Authority", "Gates" 5-6;
-- seed 004 sections 3-4: human-only approvers, verdict vocabulary, every call audited; seed 000 P4:
-- expiry is mandatory and `expires_at <= now()` is expired).
SET LOCAL ROLE gcos_owner;

-- ----------------------------------------------------------------------------------- tables

CREATE SEQUENCE gcos.os_proposal_approvals_id_seq AS bigint;
CREATE TABLE gcos.os_proposal_approvals (
    id bigint PRIMARY KEY DEFAULT pg_catalog.nextval('gcos.os_proposal_approvals_id_seq'),
    step_id text NOT NULL CHECK (step_id ~ '^[A-Za-z][A-Za-z0-9]*(-[A-Za-z0-9]+)*$'),
    spec_hash text NOT NULL CHECK (spec_hash ~ '^[0-9a-f]{64}$'),
    plan_hash text NOT NULL CHECK (plan_hash ~ '^[0-9a-f]{64}$'),
    verdict text NOT NULL CHECK (verdict IN ('approve', 'reject', 'approve_with_conditions', 'defer')),
    approver_oid oid NOT NULL,
    approver text NOT NULL,             -- the principal's display name
    approver_role name NOT NULL,        -- the session role's name at the time
    approver_roles text[] NOT NULL,     -- the principal's gcos roles at the time
    system_identifier text NOT NULL,    -- pg_control_system().system_identifier (as text: > 2^53)
    database_name name NOT NULL,
    rehearsal_seq bigint REFERENCES gcos.ledger (seq),
    note text,
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL,
    ledger_seq bigint NOT NULL UNIQUE REFERENCES gcos.ledger (seq),
    CHECK (expires_at > created_at)
);
ALTER SEQUENCE gcos.os_proposal_approvals_id_seq OWNED BY gcos.os_proposal_approvals.id;
CREATE INDEX os_proposal_approvals_step_idx ON gcos.os_proposal_approvals (step_id, spec_hash);

CREATE SEQUENCE gcos.approval_revocations_id_seq AS bigint;
CREATE TABLE gcos.approval_revocations (
    id bigint PRIMARY KEY DEFAULT pg_catalog.nextval('gcos.approval_revocations_id_seq'),
    approval_id bigint NOT NULL UNIQUE REFERENCES gcos.os_proposal_approvals (id),
    revoked_by_oid oid NOT NULL,
    revoked_by text NOT NULL,
    revoked_by_role name NOT NULL,
    reason text,
    revoked_at timestamptz NOT NULL,
    ledger_seq bigint NOT NULL UNIQUE REFERENCES gcos.ledger (seq)
);
ALTER SEQUENCE gcos.approval_revocations_id_seq OWNED BY gcos.approval_revocations.id;

CREATE SEQUENCE gcos.decisions_id_seq AS bigint;
CREATE TABLE gcos.decisions (
    id bigint PRIMARY KEY DEFAULT pg_catalog.nextval('gcos.decisions_id_seq'),
    decision text NOT NULL CHECK (decision ~ E'^[A-Z][A-Z0-9]*-[0-9]+(\\.[0-9]+)*$'),
    verdict text NOT NULL CHECK (verdict IN ('approve', 'reject', 'approve_with_conditions', 'defer')),
    decider_oid oid NOT NULL,
    decider text NOT NULL,
    decider_role name NOT NULL,
    decider_roles text[] NOT NULL,
    note text,
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL,
    ledger_seq bigint NOT NULL UNIQUE REFERENCES gcos.ledger (seq),
    CHECK (expires_at > created_at)
);
ALTER SEQUENCE gcos.decisions_id_seq OWNED BY gcos.decisions.id;
CREATE INDEX decisions_decision_idx ON gcos.decisions (decision);

CREATE SEQUENCE gcos.decision_revocations_id_seq AS bigint;
CREATE TABLE gcos.decision_revocations (
    id bigint PRIMARY KEY DEFAULT pg_catalog.nextval('gcos.decision_revocations_id_seq'),
    decision_id bigint NOT NULL UNIQUE REFERENCES gcos.decisions (id),
    revoked_by_oid oid NOT NULL,
    revoked_by text NOT NULL,
    revoked_by_role name NOT NULL,
    reason text,
    revoked_at timestamptz NOT NULL,
    ledger_seq bigint NOT NULL UNIQUE REFERENCES gcos.ledger (seq)
);
ALTER SEQUENCE gcos.decision_revocations_id_seq OWNED BY gcos.decision_revocations.id;

SELECT gcos._protect('gcos.os_proposal_approvals', true, false);
SELECT gcos._protect('gcos.approval_revocations', true, false);
SELECT gcos._protect('gcos.decisions', true, false);
SELECT gcos._protect('gcos.decision_revocations', true, false);

-- What the commit gates read: each approval/decision with its revocation and whether it is in force now.
CREATE VIEW gcos.approval_status AS
SELECT a.*, r.id AS revocation_id, r.revoked_at, r.revoked_by, r.reason AS revocation_reason,
       (r.id IS NULL AND a.expires_at > pg_catalog.now()) AS in_force
  FROM gcos.os_proposal_approvals AS a
  LEFT JOIN gcos.approval_revocations AS r ON r.approval_id = a.id;

CREATE VIEW gcos.decision_status AS
SELECT d.*, r.id AS revocation_id, r.revoked_at, r.revoked_by, r.reason AS revocation_reason,
       (r.id IS NULL AND d.expires_at > pg_catalog.now()) AS in_force
  FROM gcos.decisions AS d
  LEFT JOIN gcos.decision_revocations AS r ON r.decision_id = d.id;

-- ----------------------------------------------------------------------------------- authority checks

-- The session role may approve, decide or revoke only as a registered human principal holding the
-- sovereign or council role, and never as a superuser (pg_has_role says yes to a superuser for every
-- role, so its "approval" would prove nothing). Group-role grants do not matter here: kind does.
CREATE FUNCTION gcos._require_authority(p_action text, OUT role_oid oid, OUT role_name text,
                                        OUT principal text, OUT kind text, OUT roles text[])
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a record;
BEGIN
    SELECT * INTO a FROM gcos._session_actor();
    IF a.is_superuser THEN
        PERFORM gcos._refuse(pg_catalog.format(
            'gcos: session role %I is a superuser and cannot %s; connect as your own named role', a.role_name, p_action));
    ELSIF a.principal IS NULL THEN
        PERFORM gcos._refuse(pg_catalog.format(
            'gcos: session role %I is not a registered principal and cannot %s; ask a gcos admin to run gcos principals add %s',
            a.role_name, p_action, a.role_name));
    ELSIF a.kind <> 'human' THEN
        PERFORM gcos._refuse(pg_catalog.format(
            'gcos: principal %s is of kind %s and cannot %s; only human principals can', a.principal, a.kind, p_action));
    ELSIF NOT (a.roles && ARRAY['sovereign', 'council']) THEN
        PERFORM gcos._refuse(pg_catalog.format(
            'gcos: principal %s holds neither the sovereign nor the council role and cannot %s', a.principal, p_action));
    END IF;
    role_oid := a.role_oid;
    role_name := a.role_name;
    principal := a.principal;
    kind := a.kind;
    roles := a.roles;
END
$$;

CREATE FUNCTION gcos._check_expiry(p_expires_at timestamptz, p_now timestamptz) RETURNS void
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_expires_at IS NULL OR NOT pg_catalog.isfinite(p_expires_at) THEN
        PERFORM gcos._invalid('gcos: an expiry time is required (authority always expires); pass a finite expires_at');
    ELSIF p_expires_at <= p_now THEN
        PERFORM gcos._invalid(pg_catalog.format('gcos: expiry %s is not in the future', gcos._utc(p_expires_at)));
    END IF;
END
$$;

CREATE FUNCTION gcos._check_verdict(p_verdict text) RETURNS void
    LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_verdict IS NULL OR p_verdict NOT IN ('approve', 'reject', 'approve_with_conditions', 'defer') THEN
        PERFORM gcos._invalid(pg_catalog.format(
            'gcos: verdict %L is not one of approve, reject, approve_with_conditions, defer', p_verdict));
    END IF;
END
$$;

-- ----------------------------------------------------------------------------------- the aperture

CREATE FUNCTION gcos.record_approval(p_step_id text, p_spec_hash text, p_plan_hash text, p_verdict text,
                                     p_expires_at timestamptz, p_note text, p_rehearsal_seq bigint,
                                     p_trace_id text DEFAULT NULL, p_span_id text DEFAULT NULL)
    RETURNS TABLE (approval_id bigint, ledger_seq bigint, ledger_hash text)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a record;
    v_now timestamptz;
    v_id bigint;
    v_sysid text;
    v_rehearsal record;
    v_write record;
BEGIN
    SELECT * INTO a FROM gcos._require_authority('approve');
    IF p_step_id IS NULL OR p_step_id !~ '^[A-Za-z][A-Za-z0-9]*(-[A-Za-z0-9]+)*$' OR pg_catalog.length(p_step_id) > 63 THEN
        PERFORM gcos._invalid(pg_catalog.format('gcos: step id %L is invalid', p_step_id));
    END IF;
    IF p_spec_hash IS NULL OR p_spec_hash !~ '^[0-9a-f]{64}$' OR p_plan_hash IS NULL OR p_plan_hash !~ '^[0-9a-f]{64}$' THEN
        PERFORM gcos._invalid('gcos: an approval binds a spec hash and a plan hash, each 64 lowercase hex digits');
    END IF;
    PERFORM gcos._check_verdict(p_verdict);
    v_now := pg_catalog.clock_timestamp();
    PERFORM gcos._check_expiry(p_expires_at, v_now);
    IF p_rehearsal_seq IS NOT NULL THEN
        SELECT l.seq, l.spec_hash INTO v_rehearsal FROM gcos.ledger AS l WHERE l.seq = p_rehearsal_seq;
        IF NOT FOUND THEN
            PERFORM gcos._invalid(pg_catalog.format('gcos: ledger record %s does not exist', p_rehearsal_seq));
        ELSIF v_rehearsal.spec_hash IS DISTINCT FROM p_spec_hash THEN
            PERFORM gcos._invalid(pg_catalog.format(
                'gcos: ledger record %s is not about spec hash %s', p_rehearsal_seq, p_spec_hash));
        END IF;
    END IF;
    SELECT s.system_identifier::text INTO v_sysid FROM pg_catalog.pg_control_system() AS s;
    v_id := pg_catalog.nextval('gcos.os_proposal_approvals_id_seq');
    SELECT * INTO v_write FROM gcos._ledger_write('approval', p_step_id, p_spec_hash, p_trace_id, p_span_id,
        pg_catalog.jsonb_build_object(
            'approval_id', v_id, 'plan_hash', p_plan_hash, 'verdict', p_verdict,
            'expires_at', gcos._utc(p_expires_at), 'note', p_note, 'rehearsal_seq', p_rehearsal_seq,
            'approver_roles', pg_catalog.to_jsonb(a.roles),
            'target', pg_catalog.jsonb_build_object('system_identifier', v_sysid,
                                                    'database', pg_catalog.current_database()::text)));
    INSERT INTO gcos.os_proposal_approvals (id, step_id, spec_hash, plan_hash, verdict, approver_oid, approver,
                                            approver_role, approver_roles, system_identifier, database_name,
                                            rehearsal_seq, note, expires_at, created_at, ledger_seq)
    VALUES (v_id, p_step_id, p_spec_hash, p_plan_hash, p_verdict, a.role_oid, a.principal, a.role_name, a.roles,
            v_sysid, pg_catalog.current_database(), p_rehearsal_seq, p_note, p_expires_at, v_now, v_write.seq);
    RETURN QUERY SELECT v_id, v_write.seq, v_write.hash;
END
$$;

CREATE FUNCTION gcos.record_decision(p_decision text, p_verdict text, p_expires_at timestamptz, p_note text,
                                     p_trace_id text DEFAULT NULL, p_span_id text DEFAULT NULL)
    RETURNS TABLE (decision_id bigint, ledger_seq bigint, ledger_hash text)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a record;
    v_now timestamptz;
    v_id bigint;
    v_write record;
BEGIN
    SELECT * INTO a FROM gcos._require_authority('decide');
    IF p_decision IS NULL OR p_decision !~ E'^[A-Z][A-Z0-9]*-[0-9]+(\\.[0-9]+)*$' OR pg_catalog.length(p_decision) > 63 THEN
        PERFORM gcos._invalid(pg_catalog.format('gcos: decision id %L is invalid; use a name such as A-4 or C-7.1', p_decision));
    END IF;
    PERFORM gcos._check_verdict(p_verdict);
    v_now := pg_catalog.clock_timestamp();
    PERFORM gcos._check_expiry(p_expires_at, v_now);
    v_id := pg_catalog.nextval('gcos.decisions_id_seq');
    SELECT * INTO v_write FROM gcos._ledger_write('decision', NULL, NULL, p_trace_id, p_span_id,
        pg_catalog.jsonb_build_object(
            'decision_id', v_id, 'decision', p_decision, 'verdict', p_verdict,
            'expires_at', gcos._utc(p_expires_at), 'note', p_note, 'decider_roles', pg_catalog.to_jsonb(a.roles)));
    INSERT INTO gcos.decisions (id, decision, verdict, decider_oid, decider, decider_role, decider_roles, note,
                                expires_at, created_at, ledger_seq)
    VALUES (v_id, p_decision, p_verdict, a.role_oid, a.principal, a.role_name, a.roles, p_note, p_expires_at,
            v_now, v_write.seq);
    RETURN QUERY SELECT v_id, v_write.seq, v_write.hash;
END
$$;

CREATE FUNCTION gcos.revoke_approval(p_approval_id bigint, p_reason text,
                                     p_trace_id text DEFAULT NULL, p_span_id text DEFAULT NULL)
    RETURNS TABLE (revocation_id bigint, ledger_seq bigint, ledger_hash text)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a record;
    v_approval record;
    v_id bigint;
    v_write record;
BEGIN
    SELECT * INTO a FROM gcos._require_authority('revoke approvals');
    SELECT x.id, x.step_id, x.spec_hash INTO v_approval
      FROM gcos.os_proposal_approvals AS x WHERE x.id = p_approval_id FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM gcos._invalid(pg_catalog.format('gcos: approval %s does not exist', p_approval_id));
    END IF;
    IF EXISTS (SELECT 1 FROM gcos.approval_revocations AS r WHERE r.approval_id = p_approval_id) THEN
        PERFORM gcos._invalid(pg_catalog.format('gcos: approval %s is already revoked', p_approval_id));
    END IF;
    v_id := pg_catalog.nextval('gcos.approval_revocations_id_seq');
    SELECT * INTO v_write FROM gcos._ledger_write('approval_revocation', v_approval.step_id, v_approval.spec_hash,
        p_trace_id, p_span_id,
        pg_catalog.jsonb_build_object('revocation_id', v_id, 'approval_id', p_approval_id, 'reason', p_reason));
    INSERT INTO gcos.approval_revocations (id, approval_id, revoked_by_oid, revoked_by, revoked_by_role, reason,
                                           revoked_at, ledger_seq)
    VALUES (v_id, p_approval_id, a.role_oid, a.principal, a.role_name, p_reason, pg_catalog.clock_timestamp(),
            v_write.seq);
    RETURN QUERY SELECT v_id, v_write.seq, v_write.hash;
END
$$;

CREATE FUNCTION gcos.revoke_decision(p_decision_id bigint, p_reason text,
                                     p_trace_id text DEFAULT NULL, p_span_id text DEFAULT NULL)
    RETURNS TABLE (revocation_id bigint, ledger_seq bigint, ledger_hash text)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a record;
    v_decision record;
    v_id bigint;
    v_write record;
BEGIN
    SELECT * INTO a FROM gcos._require_authority('revoke decisions');
    SELECT x.id, x.decision INTO v_decision FROM gcos.decisions AS x WHERE x.id = p_decision_id FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM gcos._invalid(pg_catalog.format('gcos: decision record %s does not exist', p_decision_id));
    END IF;
    IF EXISTS (SELECT 1 FROM gcos.decision_revocations AS r WHERE r.decision_id = p_decision_id) THEN
        PERFORM gcos._invalid(pg_catalog.format('gcos: decision record %s is already revoked', p_decision_id));
    END IF;
    v_id := pg_catalog.nextval('gcos.decision_revocations_id_seq');
    SELECT * INTO v_write FROM gcos._ledger_write('decision_revocation', NULL, NULL, p_trace_id, p_span_id,
        pg_catalog.jsonb_build_object('revocation_id', v_id, 'decision_id', p_decision_id,
                                      'decision', v_decision.decision, 'reason', p_reason));
    INSERT INTO gcos.decision_revocations (id, decision_id, revoked_by_oid, revoked_by, revoked_by_role, reason,
                                           revoked_at, ledger_seq)
    VALUES (v_id, p_decision_id, a.role_oid, a.principal, a.role_name, p_reason, pg_catalog.clock_timestamp(),
            v_write.seq);
    RETURN QUERY SELECT v_id, v_write.seq, v_write.hash;
END
$$;

-- ----------------------------------------------------------------------------------- privileges

REVOKE ALL ON gcos.os_proposal_approvals, gcos.approval_revocations, gcos.decisions, gcos.decision_revocations,
              gcos.approval_status, gcos.decision_status FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA gcos FROM PUBLIC;
-- (functions: PUBLIC EXECUTE is revoked by gcos_owner's default privileges, see 001)
GRANT SELECT ON gcos.os_proposal_approvals, gcos.approval_revocations, gcos.decisions, gcos.decision_revocations,
                gcos.approval_status, gcos.decision_status
    TO gcos_admin, gcos_operator, gcos_sovereign, gcos_council, gcos_auditor;
GRANT EXECUTE ON FUNCTION
    gcos.record_approval(text, text, text, text, timestamptz, text, bigint, text, text),
    gcos.record_decision(text, text, timestamptz, text, text, text),
    gcos.revoke_approval(bigint, text, text, text),
    gcos.revoke_decision(bigint, text, text, text)
    TO gcos_sovereign, gcos_council;
