-- gcos schema version 40: an online window lends no DML (issue 11 item 5, the hole 035 left open).
--
-- During an online window the kernel lends the ticket holder's login role gcos_kernel's rights (INHERIT TRUE,
-- SET FALSE; gcos._online_member), and gcos_kernel owns every adopted table: every session of that role could
-- INSERT, UPDATE, DELETE, TRUNCATE (COPY FROM, MERGE ...) adopted tables until online_done or, after a crash,
-- until the sweep. No event trigger sees DML, so every table and partition of the adopted schemas now carries
-- the WINDOW SHIELD: a BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ... FOR EACH STATEMENT trigger,
-- gcos_window_shield, ENABLE ALWAYS (session_replication_role, a superuser's anyway, cannot skip it), whose
-- function gcos._window_shield() refuses (42501) a statement whose current_user
--   is not gcos_kernel (the kernel's executors, SECURITY DEFINER functions it owns, run as it; so do the
--   referential actions of foreign keys, which PostgreSQL runs as the table's owner),
--   is not a superuser, and
--   has gcos_kernel's privileges (pg_has_role(current_user, 'gcos_kernel', 'USAGE')): a lent window, a crashed
--   window not yet swept, or any other membership (adopt refuses lasting members).
-- Application roles with their own grants are no members and pass; it costs one pg_has_role per statement.
--
-- Where it is put (gcos._window_shield_ensure, as gcos_kernel, the tables' owner, via gcos._kernel_exec):
--   * gcos.adopt, on every table of the schemas it adopts (gcos.release takes it off before handing back);
--   * gcos.online_begin, where missing or altered (a table a step created, a partition attached since, a
--     shield a superuser disabled), under lock_timeout (5 s unless the session set a shorter one): a table it
--     cannot lock refuses the begin with 55P03 and nothing is recorded or lent;
--   * gcos.online_next, right before a ticket lends the rights (a plain statement of the same run may have
--     created a table); if it cannot, the run stops (a `stop` record) and nothing is lent.
-- The shield function belongs to gcos_kernel (an adopted table's trigger may depend only on what a superuser or
-- the kernel owns: gcos._adopt_links), carries the executors' mark (032: the schema guard refuses any command on
-- it) and is executable by its owner alone (a trigger's function is checked at CREATE TRIGGER only).
-- The fingerprint leaves an intact shield out (gcos/fingerprint_sql/trigger.sql): a disabled or altered one shows.
SET LOCAL ROLE gcos_owner;

-- Whether relation p_rel carries the intact shield: the trigger gcos_window_shield, BEFORE, FOR EACH STATEMENT,
-- on INSERT, UPDATE, DELETE and (not for a foreign table) TRUNCATE, no column list, no WHEN, ENABLE ALWAYS.
CREATE FUNCTION gcos._window_shielded(p_rel oid) RETURNS boolean
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (
        SELECT FROM pg_catalog.pg_trigger AS t JOIN pg_catalog.pg_class AS c ON c.oid = t.tgrelid
         WHERE t.tgrelid = p_rel AND t.tgname = 'gcos_window_shield'
           AND t.tgfoid = pg_catalog.to_regprocedure('gcos._window_shield()')
           AND t.tgtype = CASE WHEN c.relkind = 'f' THEN 30 ELSE 62 END  -- BEFORE(2) INSERT(4) DELETE(8) UPDATE(16) TRUNCATE(32)
           AND t.tgenabled = 'A' AND t.tgqual IS NULL AND t.tgnargs = 0
           AND pg_catalog.cardinality(t.tgattr::smallint[]) = 0)
$$;

-- The tables, partitioned tables and foreign tables of the schemas p_nsps (NULL: every adopted schema) that lack
-- the intact shield.
CREATE FUNCTION gcos._window_unshielded(p_nsps oid[]) RETURNS TABLE (rel oid, nsp name, name name, relkind "char")
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.oid, n.nspname, c.relname, c.relkind
      FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'p', 'f')
       AND c.relnamespace = ANY (COALESCE(p_nsps, ARRAY(SELECT s.schema_oid FROM gcos.adopted_schemas AS s WHERE s.released_at IS NULL)))
       AND NOT gcos._window_shielded(c.oid)
     ORDER BY n.nspname, c.relname
$$;

-- Puts the shield where it is missing or altered, as gcos_kernel; a lock it cannot take within lock_timeout (5 s
-- unless the session's is shorter) is refused with 55P03, naming the table. Returns the tables it shielded.
CREATE FUNCTION gcos._window_shield_ensure(p_nsps oid[]) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_was text := pg_catalog.current_setting('lock_timeout');
    v_done jsonb := '[]';
    r record;
BEGIN
    FOR r IN SELECT * FROM gcos._window_unshielded(p_nsps) LOOP
        IF v_was = '0' OR pg_catalog.current_setting('lock_timeout')::interval > interval '5 s' THEN
            PERFORM pg_catalog.set_config('lock_timeout', '5s', true);
        END IF;
        BEGIN
            PERFORM gcos._kernel_exec(pg_catalog.format(
                'DROP TRIGGER IF EXISTS gcos_window_shield ON %1$I.%2$I; '
                'CREATE TRIGGER gcos_window_shield BEFORE INSERT OR UPDATE OR DELETE%3$s ON %1$I.%2$I '
                'FOR EACH STATEMENT EXECUTE FUNCTION gcos._window_shield(); '
                'ALTER TABLE %1$I.%2$I ENABLE ALWAYS TRIGGER gcos_window_shield',
                r.nsp, r.name, CASE WHEN r.relkind = 'f' THEN '' ELSE ' OR TRUNCATE' END));
        EXCEPTION WHEN lock_not_available THEN
            RAISE EXCEPTION 'gcos: could not lock %.% within lock_timeout to put the window shield on it (a session holds a lock on it), so no online window opens; nothing was applied',
                pg_catalog.quote_ident(r.nsp), pg_catalog.quote_ident(r.name) USING ERRCODE = '55P03';
        END;
        v_done := v_done || pg_catalog.to_jsonb(pg_catalog.format('%I.%I', r.nsp, r.name));
    END LOOP;
    PERFORM pg_catalog.set_config('lock_timeout', v_was, true);
    IF EXISTS (SELECT FROM gcos._window_unshielded(p_nsps)) THEN  -- never lend rights over an unshielded table
        PERFORM gcos._refuse('gcos: an adopted table still lacks the window shield after the kernel put it on; no online window opens');
    END IF;
    RETURN v_done;
END
$$;

-- Takes the shield off the tables of p_nsps (gcos.release, while gcos_kernel still owns them).
CREATE FUNCTION gcos._window_shield_drop(p_nsps oid[]) RETURNS void
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT n.nspname, c.relname
               FROM pg_catalog.pg_trigger AS t JOIN pg_catalog.pg_class AS c ON c.oid = t.tgrelid
               JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
              WHERE c.relnamespace = ANY (p_nsps) AND t.tgname = 'gcos_window_shield'
                AND t.tgfoid = pg_catalog.to_regprocedure('gcos._window_shield()') LOOP
        PERFORM gcos._kernel_exec(pg_catalog.format('DROP TRIGGER gcos_window_shield ON %I.%I', r.nspname, r.relname));
    END LOOP;
END
$$;

-- ----------------------------------------------------------------------------------- the shield itself

RESET ROLE;
CREATE FUNCTION gcos._window_shield() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF current_user <> 'gcos_kernel' AND pg_catalog.pg_has_role(current_user, 'gcos_kernel', 'USAGE')
       AND NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles AS r WHERE r.rolname = current_user) THEN
        RAISE EXCEPTION 'gcos: role % holds gcos_kernel''s rights (lent to an online window, or granted) and may not % %.% outside the kernel; only the kernel''s executors write adopted tables',
            current_user, TG_OP, pg_catalog.quote_ident(TG_TABLE_SCHEMA), pg_catalog.quote_ident(TG_TABLE_NAME)
            USING ERRCODE = '42501';
    END IF;
    RETURN NULL;
END
$$;
ALTER FUNCTION gcos._window_shield() OWNER TO gcos_kernel;
ALTER FUNCTION gcos._window_shield() SET standard_conforming_strings = on;  -- as every executor (039)
REVOKE ALL ON FUNCTION gcos._window_shield() FROM PUBLIC;
COMMENT ON FUNCTION gcos._window_shield() IS
    'gcos kernel executor: owned by gcos_kernel so that it acts as it; only gcos install changes it';

-- ----------------------------------------------------------------------------------- where it is put

SET LOCAL ROLE gcos_owner;

-- As 035, and the shield is put on every adopted table (where missing or altered) once the gates allow, before the
-- policy decision is recorded: a table it cannot lock refuses the begin (55P03), nothing recorded.
CREATE OR REPLACE FUNCTION gcos.online_begin(p_spec_hash text, p_plan_hash text, p_run_id text, p_trace_id text, p_pieces jsonb,
                                  p_break_glass boolean DEFAULT false) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_spec jsonb := (SELECT s.document FROM gcos.specs AS s WHERE s.spec_hash = p_spec_hash);
    v_plan jsonb := (SELECT p.document FROM gcos.plans AS p WHERE p.plan_hash = p_plan_hash);
    v_step text := v_spec ->> 'id';
    v_glass boolean;
    v_base jsonb;
    w jsonb;
    v_decision jsonb;
    v_cause jsonb;
    v_trace text;
    v_write record;
    r record;
BEGIN
    v_glass := gcos._kernel_committer(p_break_glass);
    PERFORM gcos._run_id_derived(p_spec_hash, p_plan_hash, 'commit', p_run_id);
    IF v_spec IS NULL OR v_plan IS NULL OR NOT v_plan -> 'steps' ? v_step OR v_spec ->> 'mode' IS DISTINCT FROM 'online'
       OR NOT v_spec ? 'mutation' OR p_run_id IS NULL OR p_run_id !~ '^[0-9a-f]{32}$' OR p_trace_id IS NULL THEN
        PERFORM gcos._invalid('gcos: online_begin commits a registered online step with a mutation, of a registered plan, with a 32-hex run id and a trace id');
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_event_trigger AS e WHERE e.evtname = 'gcos_online_guard' AND e.evtenabled = 'A')
       OR NOT EXISTS (SELECT FROM pg_catalog.pg_event_trigger AS e WHERE e.evtname = 'gcos_schema_guard' AND e.evtenabled = 'A') THEN
        RAISE EXCEPTION 'gcos: online steps need the schema guard (event triggers a superuser installs), which is not installed here; nothing was applied'
            USING ERRCODE = '42501', HINT = 'Install gcos as a superuser, or write the step without CONCURRENTLY (mode: transactional).';
    END IF;
    SELECT * INTO r FROM gcos._online_pieces(v_spec -> 'mutation' ->> 'sql', p_pieces);
    PERFORM gcos._online_sweep();
    PERFORM gcos._kernel_preflight();
    PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended('gcos:commit', 0));
    IF EXISTS (SELECT FROM gcos.online_runs AS o WHERE o.closed_at IS NULL) THEN
        PERFORM gcos._invalid('gcos: another online commit is open in this database; retry when it is done (gcos.online_sweep() ends one whose session is gone)');
    END IF;
    PERFORM gcos.lock_approvals(v_step, ARRAY(SELECT pg_catalog.jsonb_array_elements_text(COALESCE(v_spec -> 'decisions', '[]'))));
    v_base := pg_catalog.jsonb_build_object('run_id', p_run_id, 'action', 'commit', 'kernel', true, 'break_glass', v_glass, 'online', true);
    w := gcos._kernel_world(v_spec, v_plan);
    v_decision := gcos.evaluate_gates(p_spec_hash, p_plan_hash, 'commit', w -> 'world');
    v_cause := gcos._causation(v_decision);
    v_trace := gcos._run_trace('commit', v_cause, p_trace_id);
    v_decision := v_decision || pg_catalog.jsonb_build_object('trace_id', v_trace);
    v_base := v_base || pg_catalog.jsonb_build_object('attempt_trace_id', p_trace_id, 'causation', v_cause);
    IF NOT (v_decision ->> 'allow')::boolean THEN
        SELECT * INTO v_write FROM gcos._ledger_write('commit_refused', v_step, p_spec_hash, v_trace, NULL,
                                                      v_base || pg_catalog.jsonb_build_object('policy_decision', v_decision));
        RETURN v_base || pg_catalog.jsonb_build_object('outcome', 'commit_refused', 'decision', v_decision,
                                                       'message', v_decision ->> 'refusal', 'ledger_seq', v_write.seq);
    END IF;
    PERFORM gcos._window_shield_ensure(NULL);  -- 040: before anything is recorded or lent
    SELECT * INTO v_write FROM gcos._ledger_write('policy_decision', v_step, p_spec_hash, v_trace, NULL, v_decision);
    PERFORM pg_catalog.pg_advisory_lock(pg_catalog.hashtextextended('gcos:online:' || p_run_id, 0));
    INSERT INTO gcos.online_runs (run_id, step_id, spec_hash, plan_hash, trace_id, pieces, pid, role_name, base, decision,
                                  decision_seq, fingerprint_before)
    VALUES (p_run_id, v_step, p_spec_hash, p_plan_hash, v_trace, r.pieces, pg_catalog.pg_backend_pid(), session_user,
            v_base, v_decision, v_write.seq, w -> 'fingerprint');
    RETURN v_base || pg_catalog.jsonb_build_object('outcome', 'open', 'decision', v_decision, 'reverify', w -> 'world' -> 'reverify',
                                                   'pieces', pg_catalog.jsonb_array_length(r.pieces), 'ledger_seq', v_write.seq);
END
$$;

-- As 036, and right before a ticket lends gcos_kernel's rights the shield is checked (and put) again; if it cannot
-- be, the run stops and nothing is lent.
CREATE OR REPLACE FUNCTION gcos.online_next(p_run_id text) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r gcos.online_runs := gcos._online_run(p_run_id);
    v_spec jsonb := (SELECT s.document FROM gcos.specs AS s WHERE s.spec_hash = r.spec_hash);
    v_piece jsonb := r.pieces -> r.next_piece;
    v_dropped jsonb;
    s record;
BEGIN
    IF v_piece IS NULL THEN
        RETURN pg_catalog.jsonb_build_object('kind', 'done');
    END IF;
    PERFORM gcos._kernel_preflight();  -- no temporary objects (a SECURITY DEFINER one could act in the window)
    IF NOT (v_piece ->> 'concurrent')::boolean THEN
        BEGIN
            PERFORM gcos._kernel_exec(v_piece ->> 'sql');
        EXCEPTION WHEN OTHERS THEN
            RETURN gcos._online_stop(p_run_id, SQLERRM) || pg_catalog.jsonb_build_object('kind', 'stopped');
        END;
        UPDATE gcos.online_runs AS o SET next_piece = o.next_piece + 1 WHERE o.run_id = p_run_id;
        RETURN pg_catalog.jsonb_build_object('kind', 'applied', 'piece', r.next_piece + 1);
    END IF;
    BEGIN  -- 040: no rights lent over a table without the shield (a plain piece of this run may have created one)
        PERFORM gcos._window_shield_ensure(NULL);
    EXCEPTION WHEN lock_not_available OR insufficient_privilege THEN
        RETURN gcos._online_stop(p_run_id, SQLERRM, CASE SQLSTATE WHEN '55P03' THEN 'lock_timeout' ELSE 'commit_failed' END)
               || pg_catalog.jsonb_build_object('kind', 'stopped');
    END;
    v_dropped := gcos._online_drop_invalid(v_spec);
    s := gcos._online_shape(v_piece ->> 'sql');
    INSERT INTO gcos.online_tickets (pid, role_name, run_id, piece, statement, before)
    VALUES (pg_catalog.pg_backend_pid(), session_user, p_run_id, r.next_piece, v_piece ->> 'sql',
            CASE WHEN s.kind = 'reindex' THEN gcos._online_filenode(s.name) END);
    PERFORM gcos._online_member(session_user, true);
    RETURN pg_catalog.jsonb_build_object('kind', 'ticket', 'piece', r.next_piece + 1, 'sql', v_piece ->> 'sql',
                                         'dropped_invalid', v_dropped);
END
$$;

-- As 007, and the tables of the adopted schemas get the shield (as gcos_kernel, their owner by then).
CREATE OR REPLACE FUNCTION gcos.adopt(p_schemas text[])
    RETURNS TABLE (schema_name text, status text, ledger_seq bigint, payload jsonb)
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_nsps oid[] := gcos._adopt_schemas(p_schemas);
    v_todo oid[] := '{}';
    v_nsp oid;
    v_seq bigint;
    v_session jsonb;
    v_reads jsonb := '{}';
BEGIN
    PERFORM pg_catalog.pg_advisory_xact_lock(7449920749946826608);  -- 'gcosadop'
    FOREACH v_nsp IN ARRAY v_nsps LOOP
        SELECT s.ledger_seq INTO v_seq FROM gcos.adopted_schemas AS s WHERE s.schema_oid = v_nsp AND s.released_at IS NULL;
        IF v_seq IS NULL THEN
            v_todo := v_todo || v_nsp;
        ELSE
            RETURN QUERY SELECT n.nspname::text, 'already_adopted'::text, v_seq,
                                pg_catalog.jsonb_build_object('violations', pg_catalog.to_jsonb(gcos._adopt_violations(
                                    gcos._adopt_state(v_nsp, v_nsps), 'adopt', l.record -> 'payload')))
                           FROM pg_catalog.pg_namespace AS n, gcos.ledger AS l WHERE n.oid = v_nsp AND l.seq = v_seq;
        END IF;
    END LOOP;
    IF pg_catalog.cardinality(v_todo) = 0 THEN
        RETURN;
    END IF;
    PERFORM gcos._adopt_no_members();
    FOREACH v_nsp IN ARRAY v_todo LOOP
        PERFORM gcos._adopt_begin(v_nsp, 'adopt');
    END LOOP;
    PERFORM gcos._adopt_check_objects(v_todo);
    v_session := gcos._kernel_session_begin(ARRAY[gcos._kernel_oid()]);
    FOREACH v_nsp IN ARRAY v_todo LOOP
        v_reads := v_reads || pg_catalog.jsonb_build_object(v_nsp::text, gcos._adopt_take(v_nsp));
    END LOOP;
    FOREACH v_nsp IN ARRAY v_todo LOOP
        PERFORM gcos._adopt_lockdown(v_nsp, v_reads -> v_nsp::text);
    END LOOP;
    PERFORM gcos._adopt_check_views(v_todo);
    PERFORM gcos._window_shield_ensure(v_todo);  -- 040: as gcos_kernel, the tables' owner now
    PERFORM gcos._kernel_session_end(v_session);
    FOREACH v_nsp IN ARRAY v_todo LOOP
        RETURN QUERY SELECT n.nspname::text, 'adopted'::text, r.ledger_seq, r.payload
                       FROM gcos._adopt_record(v_nsp, 'adopt') AS r, pg_catalog.pg_namespace AS n WHERE n.oid = v_nsp;
    END LOOP;
END
$$;

-- As 007, and the shield is taken off before the tables are handed back.
CREATE OR REPLACE FUNCTION gcos.release(p_schemas text[])
    RETURNS TABLE (schema_name text, status text, ledger_seq bigint, payload jsonb)
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_nsps oid[] := gcos._adopt_schemas(p_schemas);
    v_nsp oid;
    v_adopt jsonb := '{}';
    v_owners jsonb := '{}';
    v_session jsonb;
    r record;
BEGIN
    PERFORM pg_catalog.pg_advisory_xact_lock(7449920749946826608);  -- 'gcosadop'
    FOREACH v_nsp IN ARRAY v_nsps LOOP
        IF NOT EXISTS (SELECT 1 FROM gcos.adopted_schemas AS s WHERE s.schema_oid = v_nsp AND s.released_at IS NULL) THEN
            RAISE EXCEPTION 'gcos: schema % is not adopted; there is nothing to release',
                (SELECT pg_catalog.quote_ident(n.nspname) FROM pg_catalog.pg_namespace AS n WHERE n.oid = v_nsp) USING ERRCODE = '22023';
        END IF;
    END LOOP;
    PERFORM gcos._adopt_no_members();
    FOREACH v_nsp IN ARRAY v_nsps LOOP
        v_adopt := v_adopt || pg_catalog.jsonb_build_object(v_nsp::text, gcos._adopt_begin(v_nsp, 'release'));
        v_owners := v_owners || pg_catalog.jsonb_build_object(v_nsp::text, gcos._release_owners(v_nsp, v_adopt -> v_nsp::text));
        PERFORM gcos._release_check_owners(v_owners -> v_nsp::text);
    END LOOP;
    v_session := gcos._kernel_session_begin(ARRAY(
        SELECT (o.value ->> 'owner')::oid FROM pg_catalog.jsonb_each(v_owners) AS s(key, value),
               pg_catalog.jsonb_array_elements(s.value) AS o(value)
         WHERE (o.value ->> 'classid')::oid = 'pg_catalog.pg_namespace'::pg_catalog.regclass));
    PERFORM gcos._window_shield_drop(v_nsps);  -- 040: while gcos_kernel still owns the tables
    FOR r IN SELECT o.value AS item FROM pg_catalog.jsonb_each(v_owners) AS s(key, value),
                    pg_catalog.jsonb_array_elements(s.value) WITH ORDINALITY AS o(value, ord) ORDER BY s.key, o.ord LOOP
        CONTINUE WHEN gcos._object_owner((r.item ->> 'classid')::oid, (r.item ->> 'objid')::oid) <> gcos._kernel_oid();
        EXECUTE pg_catalog.format('ALTER %s %s OWNER TO %I', r.item ->> 'keyword', r.item ->> 'object',
                                  gcos._role_label((r.item ->> 'owner')::bigint));
    END LOOP;
    FOREACH v_nsp IN ARRAY v_nsps LOOP
        PERFORM gcos._release_acls(v_nsp, v_adopt -> v_nsp::text);
    END LOOP;
    PERFORM gcos._kernel_session_end(v_session);
    FOREACH v_nsp IN ARRAY v_nsps LOOP
        RETURN QUERY SELECT n.nspname::text, 'released'::text, x.ledger_seq, x.payload
                       FROM gcos._adopt_record(v_nsp, 'release') AS x, pg_catalog.pg_namespace AS n WHERE n.oid = v_nsp;
    END LOOP;
END
$$;

-- As 021, and the window shield of an adopted table is no dependency on gcos a step made (one disabled or altered
-- since is put back by online_begin and online_next before any window opens); another trigger calling
-- gcos._window_shield() still is.
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
           AND NOT (d.refobjid = 'gcos._window_shield()'::regprocedure  -- 040: the intact window shield of an adopted table
                    AND d.classid = 'pg_catalog.pg_trigger'::regclass
                    AND EXISTS (SELECT FROM pg_catalog.pg_trigger AS tg
                                 WHERE tg.oid = d.objid AND tg.tgname = 'gcos_window_shield'))
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

RESET ROLE;
REVOKE ALL ON FUNCTION gcos._window_shielded(oid), gcos._window_unshielded(oid[]), gcos._window_shield_ensure(oid[]),
    gcos._window_shield_drop(oid[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gcos._window_shield_ensure(oid[]), gcos._window_shield_drop(oid[]), gcos._window_unshielded(oid[]),
    gcos._window_shielded(oid) TO gcos_admin;  -- gcos.adopt and gcos.release run with their caller's rights
