-- gcos schema version 8: who really acted, separation of duties, approvals bound to the database
-- incarnation (issue 9 items 5, 6 and 7), and gcos tables written only through gcos functions.
--
-- New functions (each pins search_path; none is SECURITY DEFINER):
--   gcos._session_identity() -> (login_role_oid oid, login_role text, authn_id text)       internal
--       login_role: the role this BACKEND authenticated as, read from pg_stat_get_activity(pg_backend_pid())
--       .usesysid. SET SESSION AUTHORIZATION changes session_user but never that value (PostgreSQL 14+).
--       authn_id: PostgreSQL 16+ `system_user` ("scram-sha-256:alice", "peer:osuser", "cert:CN"); NULL on
--       14/15 and under trust authentication (there is no authenticated identity then).
--   gcos.principal_conflicts(role_oid oid) -> text[]           gcos_admin/operator/sovereign/council/auditor
--       Why this role may not approve or decide (separation of duties), as codes: 'superuser' (alone: a
--       superuser is a member of everything), 'createrole' (before PostgreSQL 16 only: CREATEROLE can grant
--       itself any non-superuser role, gcos_owner included), 'gcos_kernel', 'gcos_owner', 'gcos_admin'
--       (member of that role, directly or through other roles, with or without INHERIT/SET, or holding
--       ADMIN OPTION on it: pg_has_role(..., 'MEMBER')), 'pg_write_all_data' (PostgreSQL 14+: writes every
--       table around the grants, the adopted schemas included), 'pg_maintain' (17+: locks, vacuums, reindexes
--       and refreshes every table), 'admin' (a gcos principal holding the admin role), in that order.
--       Empty: no conflict. A dropped role has none (it is no longer anyone).
--   gcos.database_incarnation() -> (system_identifier text, database_name text, database_oid oid)  PUBLIC
--       What an approval or decision is bound to.
--   gcos._only_through_gcos() -> trigger                                                      no grants
--       The write guard on EVERY table of the gcos schema (see "Who may write gcos tables" below).
--   gcos._guard_table(p_table regclass, p_via text) -> boolean                       install-time, no grants
--       Puts the guard on one table (p_via: the gcos functions that write it, named in the refusal); false
--       when it was there already.
--   gcos._guard_tables() -> integer                                                  install-time, no grants
--       Guards every table (and partition) of the gcos schema that is not guarded yet; returns how many it
--       guarded. A LATER MIGRATION THAT CREATES A TABLE ENDS WITH `SELECT gcos._guard_tables();`
--       (tests/test_authority_kernel.py fails for any gcos table without both guard triggers).
--
-- Who may write gcos tables: the append-only triggers and the ledger guards check WHAT is written, not WHO
-- writes it, and a role holding pg_write_all_data (or a stray table grant) passes the privilege wall, so it
-- could compute a well-formed successor of the ledger head (actor: anyone, kind: approval), insert it, move
-- the head, and insert the matching approval row: the ledger verified intact and the gate counted it.
-- Now every gcos table carries two ENABLE ALWAYS triggers (session_replication_role = replica does not
-- switch them off), named to fire before the table's other triggers of the same kind:
--   gcos_0_only_through_gcos_statement  BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE FOR EACH STATEMENT
--   gcos_0_only_through_gcos_row        BEFORE INSERT OR UPDATE OR DELETE FOR EACH ROW
--                                       (logical replication's apply fires row triggers only)
-- both executing gcos._only_through_gcos(<the gcos functions that write the table>), which refuses
-- (42501) unless current_user is gcos_owner (the row arrives through a gcos SECURITY DEFINER function,
-- which runs as its owner gcos_owner) or a superuser (install; superusers are outside the model). INSERT
-- (COPY FROM, ON CONFLICT, MERGE included), UPDATE, DELETE and TRUNCATE are refused before any row is
-- touched, even when no row matches. A member of gcos_owner that has not SET ROLE gcos_owner is refused
-- too; one that has is the owner (it could drop the triggers) and meets the append-only guards (GC001) as
-- before.
-- Not covered (denial of service, never a forged row): pg_write_all_data may still call nextval/setval on
-- the gcos sequences (an approval id made to collide fails record_approval), and take row locks (SELECT ...
-- FOR UPDATE) and LOCK TABLE on gcos tables (holding up gcos writers); principal_conflicts flags such roles.
--
-- Changed here:
--   * every ledger record's "actor" gains "login_role" (text) and "system_user" (text or null), stamped by
--     gcos._ledger_write beside the session role ("role", "role_oid") it already carried;
--   * gcos._require_authority (used by record_approval, record_decision, revoke_approval, revoke_decision)
--     now refuses (42501) a session whose login role is not its session role (a superuser's
--     SET SESSION AUTHORIZATION alice cannot approve, decide or revoke as alice), and a principal with any
--     principal_conflicts (checked after the existing superuser/kind/role checks). Revocations are refused
--     too: revoking a later reject can reopen a gate;
--   * gcos.os_proposal_approvals gains database_oid; gcos.decisions gains system_identifier, database_name
--     and database_oid; record_approval/record_decision fill them and write them into the ledger payload's
--     "target" ({"system_identifier", "database", "database_oid"}; decisions had no target before).
--     Rows from before this version have NULLs there: the gates never count them (fail closed: approve
--     and decide again after the upgrade).
--
-- What is and is not detected (the gates re-check conflicts and the incarnation at commit time):
--   * SET SESSION AUTHORIZATION (needs a superuser login): detected on every supported version, because
--     pg_stat_activity keeps the login role. SET ROLE never changes session_user, so it changes no actor.
--   * A superuser (or, before 16, a CREATEROLE role; from 16, one with ADMIN OPTION on the victim's role)
--     who resets alice's password and logs in as alice: undetectable in-band on every version; on 16+ the
--     record shows "scram-sha-256:alice" exactly like Alice's own login. Only pg_hba/password policy and
--     who holds superuser protect against it.
--   * trust authentication: anyone who reaches the socket can log in as alice; login_role is then alice
--     and system_user NULL (16+), so the record shows that NO identity was authenticated, and on 14/15 it
--     cannot be told apart from a password login. gcos does not refuse it: use a real auth method.
--   * peer/ident/cert/gss with a pg_ident.conf map: login_role is the mapped role, system_user (16+) the
--     external identity ("peer:bob"), so a map that lets OS user bob in as alice is visible in every record
--     on 16+ but not refused (the map is the administrator's statement that bob may be alice); on 14/15 the
--     external identity is not visible at all.
--   * Connection poolers that switch users with SET SESSION AUTHORIZATION or SET ROLE cannot approve;
--     connect as the approver.
--   * Clone replay: CREATE DATABASE ... TEMPLATE (same cluster) gives a new database OID, so a clone renamed
--     to the original's name refuses the copied approvals and decisions. A PHYSICAL copy (pg_basebackup,
--     a standby promoted or restored by PITR, a file-level copy) keeps the system identifier, the database
--     OID and its name: it is the same incarnation to gcos, and an approval in force may commit once on the
--     original and once on the copy. Keep approvals short-lived, restrict REPLICATION and backup access,
--     and compare ledger anchors (`gcos ledger anchor`) of the two: they diverge after the fork.
--   * Membership granted after approving: the gates read principal_conflicts at commit time and drop the
--     approval; revoking that membership again lets it count again (the grant history is not kept).
SET LOCAL ROLE gcos_owner;

-- ----------------------------------------------------------------------------------- columns

ALTER TABLE gcos.os_proposal_approvals ADD COLUMN database_oid oid;
ALTER TABLE gcos.decisions ADD COLUMN system_identifier text, ADD COLUMN database_name name,
    ADD COLUMN database_oid oid;

-- ----------------------------------------------------------------------------------- who acted

CREATE FUNCTION gcos._session_identity(OUT login_role_oid oid, OUT login_role text, OUT authn_id text)
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    SELECT a.usesysid, r.rolname::text INTO login_role_oid, login_role
      FROM pg_catalog.pg_stat_get_activity(pg_catalog.pg_backend_pid()) AS a
      LEFT JOIN pg_catalog.pg_roles AS r ON r.oid = a.usesysid;
    IF pg_catalog.current_setting('server_version_num')::integer >= 160000 THEN
        EXECUTE 'SELECT system_user' INTO authn_id;  -- dynamic: the keyword does not parse before 16
    END IF;
END
$$;

CREATE FUNCTION gcos.database_incarnation(OUT system_identifier text, OUT database_name text, OUT database_oid oid)
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT s.system_identifier::text, d.datname::text, d.oid
      FROM pg_catalog.pg_control_system() AS s, pg_catalog.pg_database AS d
     WHERE d.datname = pg_catalog.current_database()
$$;

-- ----------------------------------------------------------------------------------- separation of duties

CREATE FUNCTION gcos.principal_conflicts(p_role_oid oid) RETURNS text[]
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
    v_name text;
    v_group oid;
    v_out text[] := '{}';
BEGIN
    SELECT a.rolsuper, a.rolcreaterole INTO r FROM pg_catalog.pg_roles AS a WHERE a.oid = p_role_oid;
    IF NOT FOUND THEN
        RETURN v_out;
    ELSIF r.rolsuper THEN
        RETURN ARRAY['superuser'];
    END IF;
    IF r.rolcreaterole AND pg_catalog.current_setting('server_version_num')::integer < 160000 THEN
        v_out := v_out || 'createrole'::text;
    END IF;
    -- pg_write_all_data (14+) and pg_maintain (17+) are looked up by name: to_regrole is NULL where absent.
    FOREACH v_name IN ARRAY ARRAY['gcos_kernel', 'gcos_owner', 'gcos_admin', 'pg_write_all_data', 'pg_maintain'] LOOP
        v_group := pg_catalog.to_regrole(v_name);
        IF v_group IS NOT NULL AND pg_catalog.pg_has_role(p_role_oid, v_group, 'MEMBER') THEN
            v_out := v_out || v_name;
        END IF;
    END LOOP;
    IF EXISTS (SELECT 1 FROM gcos.principals AS p WHERE p.role_oid = p_role_oid AND 'admin' = ANY (p.roles)) THEN
        v_out := v_out || 'admin'::text;
    END IF;
    RETURN v_out;
END
$$;

-- The conflicts as words, for refusals.
CREATE FUNCTION gcos._conflicts_text(p_conflicts text[]) RETURNS text
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.string_agg(CASE c WHEN 'superuser' THEN 'a superuser'
                                        WHEN 'createrole' THEN 'a CREATEROLE role (before PostgreSQL 16 it can grant itself gcos_owner)'
                                        WHEN 'admin' THEN 'a gcos admin'
                                        WHEN 'pg_write_all_data' THEN 'a member of pg_write_all_data (it writes every table around the grants)'
                                        WHEN 'pg_maintain' THEN 'a member of pg_maintain (it can lock and maintain every table)'
                                        ELSE 'a member of ' || c END, ', ' ORDER BY o)
      FROM pg_catalog.unnest(p_conflicts) WITH ORDINALITY AS u(c, o)
$$;

-- ----------------------------------------------------------------------------------- the ledger's actor

-- As 001, with "login_role" and "system_user" in the actor.
CREATE OR REPLACE FUNCTION gcos._ledger_write(p_kind text, p_step_id text, p_spec_hash text, p_trace_id text,
                                              p_span_id text, p_payload jsonb, OUT seq bigint, OUT hash text)
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_actor record;
    v_who record;
    v_head record;
    v_trace text := COALESCE(p_trace_id, pg_catalog.replace(pg_catalog.gen_random_uuid()::text, '-', ''));
    v_span text := COALESCE(p_span_id, pg_catalog.left(pg_catalog.replace(pg_catalog.gen_random_uuid()::text, '-', ''), 16));
    v_seq bigint;
    v_record jsonb;
    v_canonical text;
    v_hash text;
BEGIN
    IF p_kind IS NULL OR p_kind !~ E'^[a-z][a-z0-9_]*(\\.[a-z0-9_]+)*$' OR pg_catalog.length(p_kind) > 63 THEN
        PERFORM gcos._invalid(pg_catalog.format('gcos: ledger kind %L is invalid; use lowercase words such as rehearsal or commit', p_kind));
    END IF;
    IF p_step_id IS NOT NULL AND (p_step_id !~ '^[A-Za-z][A-Za-z0-9]*(-[A-Za-z0-9]+)*$' OR pg_catalog.length(p_step_id) > 63) THEN
        PERFORM gcos._invalid(pg_catalog.format('gcos: step id %L is invalid', p_step_id));
    END IF;
    IF p_spec_hash IS NOT NULL AND p_spec_hash !~ '^[0-9a-f]{64}$' THEN
        PERFORM gcos._invalid('gcos: a spec hash is 64 lowercase hex digits');
    END IF;
    IF v_trace !~ '^[0-9a-f]{32}$' OR v_trace = pg_catalog.repeat('0', 32) THEN
        PERFORM gcos._invalid('gcos: trace_id must be 32 lowercase hex digits, not all zero');
    END IF;
    IF v_span !~ '^[0-9a-f]{16}$' OR v_span = pg_catalog.repeat('0', 16) THEN
        PERFORM gcos._invalid('gcos: span_id must be 16 lowercase hex digits, not all zero');
    END IF;
    IF p_payload IS NULL OR pg_catalog.jsonb_typeof(p_payload) <> 'object' THEN
        PERFORM gcos._invalid('gcos: a ledger payload is a JSON object');
    END IF;

    SELECT * INTO v_actor FROM gcos._session_actor();
    IF v_actor.principal IS NULL AND NOT v_actor.is_superuser THEN
        PERFORM gcos._refuse(pg_catalog.format(
            'gcos: session role %I is not a registered principal; ask a gcos admin to run gcos principals add %s',
            v_actor.role_name, v_actor.role_name));
    END IF;
    SELECT * INTO v_who FROM gcos._session_identity();

    SELECT h.seq, h.hash INTO v_head FROM gcos.ledger_head AS h WHERE h.singleton FOR UPDATE;
    v_seq := v_head.seq + 1;
    v_record := pg_catalog.jsonb_build_object(
        'format_version', 1,
        'seq', v_seq,
        'prev_hash', v_head.hash,
        'recorded_at', gcos._utc(pg_catalog.clock_timestamp()),
        'trace_id', v_trace,
        'span_id', v_span,
        'actor', pg_catalog.jsonb_build_object('principal', v_actor.principal, 'role', v_actor.role_name,
                                               'role_oid', v_actor.role_oid::bigint, 'kind', v_actor.kind,
                                               'login_role', v_who.login_role, 'system_user', v_who.authn_id),
        'kind', p_kind,
        'step_id', p_step_id,
        'spec_hash', p_spec_hash,
        'payload', p_payload);
    v_canonical := gcos.jcs(v_record);
    v_hash := pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(v_canonical, 'UTF8')), 'hex');
    INSERT INTO gcos.ledger (seq, prev_hash, hash, canonical) VALUES (v_seq, v_head.hash, v_hash, v_canonical);
    UPDATE gcos.ledger_head AS h SET seq = v_seq, hash = v_hash WHERE h.singleton;
    seq := v_seq;
    hash := v_hash;
END
$$;

-- ----------------------------------------------------------------------------------- authority

-- As 002, plus: the session role must be the login role (no SET SESSION AUTHORIZATION), the call must be
-- the statement the client sent (current_query names the gcos function; not from a trigger), and the
-- principal must have no principal_conflicts.
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
    ELSIF NOT (a.roles && ARRAY['sovereign', 'council']) THEN
        PERFORM gcos._refuse(pg_catalog.format(
            'gcos: principal %s holds neither the sovereign nor the council role and cannot %s', a.principal, p_action));
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

-- ----------------------------------------------------------------------------------- the aperture

-- As 002, bound to the database incarnation (system identifier, database OID and name).
CREATE OR REPLACE FUNCTION gcos.record_approval(p_step_id text, p_spec_hash text, p_plan_hash text, p_verdict text,
                                                p_expires_at timestamptz, p_note text, p_rehearsal_seq bigint,
                                                p_trace_id text DEFAULT NULL, p_span_id text DEFAULT NULL)
    RETURNS TABLE (approval_id bigint, ledger_seq bigint, ledger_hash text)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a record;
    v_now timestamptz;
    v_id bigint;
    v_db record;
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
    SELECT * INTO v_db FROM gcos.database_incarnation();
    v_id := pg_catalog.nextval('gcos.os_proposal_approvals_id_seq');
    SELECT * INTO v_write FROM gcos._ledger_write('approval', p_step_id, p_spec_hash, p_trace_id, p_span_id,
        pg_catalog.jsonb_build_object(
            'approval_id', v_id, 'plan_hash', p_plan_hash, 'verdict', p_verdict,
            'expires_at', gcos._utc(p_expires_at), 'note', p_note, 'rehearsal_seq', p_rehearsal_seq,
            'approver_roles', pg_catalog.to_jsonb(a.roles),
            'target', pg_catalog.jsonb_build_object('system_identifier', v_db.system_identifier,
                                                    'database', v_db.database_name,
                                                    'database_oid', v_db.database_oid::bigint)));
    INSERT INTO gcos.os_proposal_approvals (id, step_id, spec_hash, plan_hash, verdict, approver_oid, approver,
                                            approver_role, approver_roles, system_identifier, database_name,
                                            database_oid, rehearsal_seq, note, expires_at, created_at, ledger_seq)
    VALUES (v_id, p_step_id, p_spec_hash, p_plan_hash, p_verdict, a.role_oid, a.principal, a.role_name, a.roles,
            v_db.system_identifier, v_db.database_name, v_db.database_oid, p_rehearsal_seq, p_note, p_expires_at,
            v_now, v_write.seq);
    RETURN QUERY SELECT v_id, v_write.seq, v_write.hash;
END
$$;

CREATE OR REPLACE FUNCTION gcos.record_decision(p_decision text, p_verdict text, p_expires_at timestamptz,
                                                p_note text, p_trace_id text DEFAULT NULL,
                                                p_span_id text DEFAULT NULL)
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
    IF p_decision IS NULL OR p_decision !~ E'^[A-Z][A-Z0-9]*-[0-9]+(\\.[0-9]+)*$' OR pg_catalog.length(p_decision) > 63 THEN
        PERFORM gcos._invalid(pg_catalog.format('gcos: decision id %L is invalid; use a name such as A-4 or C-7.1', p_decision));
    END IF;
    PERFORM gcos._check_verdict(p_verdict);
    v_now := pg_catalog.clock_timestamp();
    PERFORM gcos._check_expiry(p_expires_at, v_now);
    SELECT * INTO v_db FROM gcos.database_incarnation();
    v_id := pg_catalog.nextval('gcos.decisions_id_seq');
    SELECT * INTO v_write FROM gcos._ledger_write('decision', NULL, NULL, p_trace_id, p_span_id,
        pg_catalog.jsonb_build_object(
            'decision_id', v_id, 'decision', p_decision, 'verdict', p_verdict,
            'expires_at', gcos._utc(p_expires_at), 'note', p_note, 'decider_roles', pg_catalog.to_jsonb(a.roles),
            'target', pg_catalog.jsonb_build_object('system_identifier', v_db.system_identifier,
                                                    'database', v_db.database_name,
                                                    'database_oid', v_db.database_oid::bigint)));
    INSERT INTO gcos.decisions (id, decision, verdict, decider_oid, decider, decider_role, decider_roles, note,
                                expires_at, created_at, ledger_seq, system_identifier, database_name, database_oid)
    VALUES (v_id, p_decision, p_verdict, a.role_oid, a.principal, a.role_name, a.roles, p_note, p_expires_at,
            v_now, v_write.seq, v_db.system_identifier, v_db.database_name, v_db.database_oid);
    RETURN QUERY SELECT v_id, v_write.seq, v_write.hash;
END
$$;

-- ----------------------------------------------------------------------------------- privileges

REVOKE ALL ON FUNCTION gcos._session_identity(), gcos._conflicts_text(text[]), gcos.principal_conflicts(oid),
    gcos.database_incarnation() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gcos.database_incarnation() TO PUBLIC;  -- catalog facts anyone can read
GRANT EXECUTE ON FUNCTION gcos.principal_conflicts(oid)
    TO gcos_admin, gcos_operator, gcos_sovereign, gcos_council, gcos_auditor;

-- ----------------------------------------------------------------------------------- who may write gcos tables

-- The write guard of every gcos table: only gcos_owner (a gcos SECURITY DEFINER function) or a superuser
-- writes. SECURITY INVOKER on purpose: current_user is whoever runs the statement. TG_ARGV[0] names the gcos
-- functions that write the table.
CREATE FUNCTION gcos._only_through_gcos() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF current_user <> 'gcos_owner'
       AND NOT COALESCE((SELECT r.rolsuper FROM pg_catalog.pg_roles AS r WHERE r.rolname = current_user), false) THEN
        RAISE EXCEPTION 'gcos: % on %.% by role % is refused: gcos tables are written only by gcos functions; use %',
            TG_OP, pg_catalog.quote_ident(TG_TABLE_SCHEMA), pg_catalog.quote_ident(TG_TABLE_NAME),
            pg_catalog.quote_ident(current_user), COALESCE(TG_ARGV[0], 'the gcos function that records it')
            USING ERRCODE = '42501',
                  HINT = 'Neither pg_write_all_data nor a grant on a gcos table lets a role write gcos evidence.';
    END IF;
    IF TG_LEVEL = 'ROW' AND TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;  -- NULL for a statement trigger, where it is ignored
END
$$;

-- Put the guard on gcos table p_table (false: it was there already). Install-time helper, no grants.
CREATE FUNCTION gcos._guard_table(p_table regclass, p_via text) RETURNS boolean
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_name text;
    v_made boolean := false;
BEGIN
    IF (SELECT c.relnamespace FROM pg_catalog.pg_class AS c WHERE c.oid = p_table) <> 'gcos'::pg_catalog.regnamespace THEN
        PERFORM gcos._invalid(pg_catalog.format('gcos: %s is not a table of the gcos schema', p_table));
    END IF;
    FOREACH v_name IN ARRAY ARRAY['gcos_0_only_through_gcos_statement', 'gcos_0_only_through_gcos_row'] LOOP
        CONTINUE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_trigger AS t WHERE t.tgrelid = p_table AND t.tgname = v_name);
        EXECUTE pg_catalog.format('CREATE TRIGGER %I BEFORE INSERT OR UPDATE OR DELETE%s ON %s FOR EACH %s '
                                  'EXECUTE FUNCTION gcos._only_through_gcos(%L)', v_name,
                                  CASE WHEN v_name LIKE '%statement' THEN ' OR TRUNCATE' ELSE '' END, p_table,
                                  CASE WHEN v_name LIKE '%statement' THEN 'STATEMENT' ELSE 'ROW' END,
                                  COALESCE(p_via, 'the gcos function that records it'));
        v_made := true;
    END LOOP;
    EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ALWAYS TRIGGER gcos_0_only_through_gcos_statement', p_table);
    EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ALWAYS TRIGGER gcos_0_only_through_gcos_row', p_table);
    RETURN v_made;
END
$$;

-- Guard every table and partition of the gcos schema that is not guarded yet; how many were. Install-time
-- helper, no grants: a migration that creates a gcos table ends with SELECT gcos._guard_tables().
CREATE FUNCTION gcos._guard_tables() RETURNS integer
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t record;
    v_count integer := 0;
BEGIN
    FOR t IN SELECT c.oid::pg_catalog.regclass AS rel, c.relname::text AS name FROM pg_catalog.pg_class AS c
              WHERE c.relnamespace = 'gcos'::pg_catalog.regnamespace AND c.relkind IN ('r', 'p') ORDER BY c.oid
    LOOP
        IF gcos._guard_table(t.rel, CASE t.name
               WHEN 'schema_version' THEN 'gcos install'
               WHEN 'fingerprint_queries' THEN 'gcos install'
               WHEN 'principals' THEN 'gcos.add_principal (gcos principals add)'
               WHEN 'principals_history' THEN 'gcos.add_principal (gcos principals add)'
               WHEN 'ledger' THEN 'gcos.ledger_append or the gcos function that records the kind'
               WHEN 'ledger_head' THEN 'gcos.ledger_append or the gcos function that records the kind'
               WHEN 'os_proposal_approvals' THEN 'gcos.record_approval (gcos approve)'
               WHEN 'approval_revocations' THEN 'gcos.revoke_approval (gcos revoke)'
               WHEN 'decisions' THEN 'gcos.record_decision (gcos decide)'
               WHEN 'decision_revocations' THEN 'gcos.revoke_decision (gcos revoke --decision)'
               WHEN 'specs' THEN 'gcos.register_spec'
               WHEN 'plans' THEN 'gcos.register_plan'
               WHEN 'adopted_schemas' THEN 'gcos.adopt or gcos.release (gcos adopt)'
               WHEN 'adopt_staging' THEN 'gcos.adopt or gcos.release (gcos adopt)' END) THEN
            v_count := v_count + 1;
        END IF;
    END LOOP;
    RETURN v_count;
END
$$;

SELECT gcos._guard_tables();

REVOKE ALL ON FUNCTION gcos._only_through_gcos(), gcos._guard_table(regclass, text), gcos._guard_tables() FROM PUBLIC;
