-- gcos schema version 33: the principal role vocabulary of seed 004 (issue 11 item 1).
--
-- Seed 004 names four approver roles: sovereign, council, company_admin and domain_admin. A principal may now hold
-- company_admin or domain_admin (gcos.principals.roles, gcos.add_principal), and gcos._require_authority lets a
-- human principal holding any of the four record an approval. Whether that approval COUNTS is gate 5's question, as
-- before: the approver must hold a role the spec's approvals.roles names (gcos._approver_problem, 020), and M-1 still
-- needs a sovereign among the signers (gcos._approvals_require keeps sovereign >= 1). Decisions and exceptions stay
-- a sovereign's (024, 025: unchanged). The database privilege to call gcos.record_approval comes from the group role
-- gcos_council, which gcos principals add grants to company_admin and domain_admin principals.
SET LOCAL ROLE gcos_owner;

ALTER TABLE gcos.principals DROP CONSTRAINT principals_roles_check;
ALTER TABLE gcos.principals ADD CONSTRAINT principals_roles_check
    CHECK (roles <@ ARRAY['sovereign', 'council', 'company_admin', 'domain_admin', 'operator', 'auditor', 'admin']
           AND pg_catalog.array_position(roles, NULL) IS NULL);

-- As 020's, with company_admin and domain_admin in the vocabulary.
CREATE OR REPLACE FUNCTION gcos.add_principal(p_role text, p_display_name text, p_kind text, p_roles text[],
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
       OR NOT (p_roles <@ ARRAY['sovereign', 'council', 'company_admin', 'domain_admin', 'operator', 'auditor', 'admin']) THEN
        PERFORM gcos._invalid('gcos: principal roles are among sovereign, council, company_admin, domain_admin, operator, auditor, admin');
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

-- As 008's, letting a human company_admin or domain_admin record an approval (gate 5 decides whether it counts).
CREATE OR REPLACE FUNCTION gcos._require_authority(p_action text, OUT role_oid oid, OUT role_name text,
                                                   OUT principal text, OUT kind text, OUT roles text[])
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a record;
    w record;
    v_conflicts text[];
BEGIN
    SELECT * INTO a FROM gcos._session_actor();
    SELECT * INTO w FROM gcos._session_identity();
    IF w.login_role_oid IS DISTINCT FROM a.role_oid THEN
        PERFORM gcos._refuse(pg_catalog.format(
            'gcos: this connection logged in as %s and acts as %I through SET SESSION AUTHORIZATION, so it cannot %s; %I must connect as themself',
            COALESCE(pg_catalog.quote_ident(w.login_role), 'an unknown role'), a.role_name, p_action, a.role_name));
    ELSIF pg_catalog.pg_trigger_depth() > 0 OR COALESCE(pg_catalog.current_query(), '')
            !~* '\m(record_approval|record_decision|revoke_approval|revoke_decision)\M' THEN
        -- An approver's own intent is the statement their client sent. A policy, view, default or trigger
        -- runs as whoever reads or writes its table, so code a step left there could otherwise sign for them.
        PERFORM gcos._refuse(pg_catalog.format(
            'gcos: %I may %s only by calling the gcos function itself, not from a trigger, policy, view or other function',
            a.role_name, p_action));
    ELSIF a.is_superuser THEN
        PERFORM gcos._refuse(pg_catalog.format(
            'gcos: session role %I is a superuser and cannot %s; connect as your own named role', a.role_name, p_action));
    ELSIF a.principal IS NULL THEN
        PERFORM gcos._refuse(pg_catalog.format(
            'gcos: session role %I is not a registered principal and cannot %s; ask a gcos admin to run gcos principals add %s',
            a.role_name, p_action, a.role_name));
    ELSIF a.kind <> 'human' THEN
        PERFORM gcos._refuse(pg_catalog.format(
            'gcos: principal %s is of kind %s and cannot %s; only human principals can', a.principal, a.kind, p_action));
    ELSIF NOT (a.roles && ARRAY['sovereign', 'council', 'company_admin', 'domain_admin']) THEN
        PERFORM gcos._refuse(pg_catalog.format(
            'gcos: principal %s holds neither the sovereign nor the council role (nor company_admin or domain_admin) and cannot %s',
            a.principal, p_action));
    END IF;
    v_conflicts := gcos.principal_conflicts(a.role_oid);
    IF pg_catalog.cardinality(v_conflicts) > 0 THEN
        PERFORM gcos._refuse(pg_catalog.format(
            'gcos: principal %s is %s and cannot %s: separation of duties keeps whoever can change gcos from approving; revoke that from role %I or ask another approver',
            a.principal, gcos._conflicts_text(v_conflicts), p_action, a.role_name));
    END IF;
    role_oid := a.role_oid;
    role_name := a.role_name;
    principal := a.principal;
    kind := a.kind;
    roles := a.roles;
END
$$;
