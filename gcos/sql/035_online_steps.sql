-- gcos schema version 35: online steps (mode: online, issue 11 item 5).
--
-- CREATE INDEX CONCURRENTLY, DROP INDEX CONCURRENTLY, REINDEX ... CONCURRENTLY and ALTER TABLE ... DETACH
-- PARTITION ... CONCURRENTLY cannot run in a function or a transaction block, so the kernel cannot run them in
-- gcos._kernel_exec. The database still decides:
--   gcos.rehearse_online(spec, plan, trace, pieces)  rehearses the TRANSACTIONAL EQUIVALENT (CONCURRENTLY taken
--       out) inside the kernel's BEGIN..ROLLBACK, exactly as any step, and says so in its record ("online").
--   gcos.online_begin(spec, plan, run, trace, pieces, glass)  the committer, the commit lock, the world and the
--       seven gates as gcos.commit; a refusal writes commit_refused; else a policy_decision record and an open
--       online run bound to this backend.
--   gcos.online_next(run)  the next statement: one that may run in a transaction runs now as gcos_kernel in the
--       caller's transaction (its own, so an ALTER TYPE ... ADD VALUE commits before a later statement uses the
--       value); a concurrent one gets a TICKET: INVALID indexes the step's allow list names (leftovers of a
--       failed attempt) are dropped, then this backend's login role is made a member of gcos_kernel (the owner
--       of adopted tables; PostgreSQL 16+: INHERIT TRUE, SET FALSE) and the event trigger gcos_online_guard
--       refuses, in this backend, every DDL command but the ticketed text, and in any other session of a role
--       holding a ticket (or a member of it), every DDL command. Not closed: DML (no event trigger sees it).
--   gcos.online_done(run, error)  revokes the membership, ends the ticket, proves the piece (no INVALID index of
--       the allow list); an error or an invalid index writes a `stop` record and ends the run.
--   gcos.online_finish(run)  the success checks and the validity of every index the allow list creates
--       (pg_index.indisvalid), then the `commit` record (online: true) or a `stop` record.
-- A ticket whose backend is gone (crash) is swept (membership revoked, run stopped) by the next online call or
-- gcos.online_sweep(). Statements are the spec's own text: the client names the pieces, the kernel checks that
-- they tile the registered mutation SQL in order with only blanks, semicolons and comments between them.
SET LOCAL ROLE gcos_owner;

CREATE TABLE gcos.online_runs (
    run_id text PRIMARY KEY,
    step_id text NOT NULL,
    spec_hash text NOT NULL,
    plan_hash text NOT NULL,
    trace_id text NOT NULL,
    pieces jsonb NOT NULL,
    next_piece integer NOT NULL DEFAULT 0,
    pid integer NOT NULL,
    role_name name NOT NULL,
    base jsonb NOT NULL,
    decision jsonb NOT NULL,
    decision_seq bigint NOT NULL,
    fingerprint_before jsonb NOT NULL,
    opened_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    closed_at timestamptz
);

CREATE TABLE gcos.online_tickets (
    pid integer PRIMARY KEY,
    role_name name NOT NULL,
    run_id text NOT NULL REFERENCES gcos.online_runs,
    piece integer NOT NULL,
    statement text NOT NULL,
    issued_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp()
);
REVOKE ALL ON gcos.online_runs, gcos.online_tickets FROM PUBLIC;

-- Whether backend p_pid still holds run p_run_id's session-level advisory lock (taken by online_begin): a live
-- backend, not one that ended and whose pid was reused (pg_locks, unlike pg_stat_activity, shows every role's).
CREATE FUNCTION gcos._online_alive(p_pid integer, p_run_id text) RETURNS boolean
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (
        SELECT FROM pg_catalog.pg_locks AS l, (SELECT pg_catalog.hashtextextended('gcos:online:' || p_run_id, 0) AS k) AS key
         WHERE l.locktype = 'advisory' AND l.granted AND l.pid = p_pid AND l.objsubid = 1
           AND l.classid::bigint = ((key.k >> 32) & 4294967295) AND l.objid::bigint = (key.k & 4294967295))
$$;

-- Whether a piece must run outside a transaction block (leading blanks and comments skipped).
CREATE FUNCTION gcos._online_concurrent(p_piece text) RETURNS boolean
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.regexp_replace(p_piece, '^(\s|--[^\n]*(\n|$)|/\*([^*]|\*+[^*/])*\*+/)*', '') ~*
           '^(CREATE\s+(UNIQUE\s+)?INDEX\s+CONCURRENTLY|DROP\s+INDEX\s+CONCURRENTLY|REINDEX\s+(INDEX|TABLE)\s+CONCURRENTLY|ALTER\s+TABLE\M.*\mDETACH\s+PARTITION\M.*\mCONCURRENTLY\M)'
$$;

-- The pieces the client names, checked against the registered mutation SQL: each is the spec's text, in order,
-- with only blanks, semicolons and comments around them. Returns [{sql, concurrent}] and the transactional
-- equivalent (the SQL with the first CONCURRENTLY of each concurrent piece taken out).
CREATE FUNCTION gcos._online_pieces(p_sql text, p_pieces jsonb, OUT pieces jsonb, OUT equivalent text)
    LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_gap constant text := '^(\s|;|--[^\n]*(\n|$)|/\*([^*]|\*+[^*/])*\*+/)*$';
    v_rest text := COALESCE(p_sql, '');
    v_piece text;
    v_at integer;
    v_conc boolean;
BEGIN
    pieces := '[]';
    equivalent := '';
    IF pg_catalog.jsonb_typeof(p_pieces) IS DISTINCT FROM 'array' OR pg_catalog.jsonb_array_length(p_pieces) = 0 THEN
        PERFORM gcos._invalid('gcos: an online step runs its mutation statement by statement: name its statements (gcos commit does)');
    END IF;
    FOR v_piece IN SELECT e.value FROM pg_catalog.jsonb_array_elements_text(p_pieces) AS e LOOP
        v_at := pg_catalog.strpos(v_rest, v_piece);
        IF v_piece = '' OR v_at = 0 OR pg_catalog.left(v_rest, v_at - 1) !~ v_gap THEN
            PERFORM gcos._invalid('gcos: the statements named are not the step''s mutation SQL, in order; the kernel runs only the registered text');
        END IF;
        v_conc := gcos._online_concurrent(v_piece);
        equivalent := equivalent || pg_catalog.left(v_rest, v_at - 1)
                      || CASE WHEN v_conc THEN pg_catalog.regexp_replace(v_piece, '\mCONCURRENTLY\M', '', 'i') ELSE v_piece END;
        pieces := pieces || pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object('sql', v_piece, 'concurrent', v_conc));
        v_rest := pg_catalog.substr(v_rest, v_at + pg_catalog.length(v_piece));
    END LOOP;
    IF v_rest !~ v_gap THEN
        PERFORM gcos._invalid('gcos: the statements named leave part of the step''s mutation SQL out; name every statement');
    END IF;
    equivalent := equivalent || v_rest;
END
$$;

-- As gcos._rehearse_measured (025), on the spec with its mutation SQL replaced by the transactional equivalent;
-- the record (kind rehearsal, of the registered spec hash) says so under "online".
CREATE FUNCTION gcos._rehearse_online_measured(p_spec_hash text, p_plan_hash text, p_trace_id text, p_equivalent text,
                                               p_dropped jsonb) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_started timestamptz := pg_catalog.clock_timestamp();
    v_spec jsonb := pg_catalog.jsonb_set((SELECT s.document FROM gcos.specs AS s WHERE s.spec_hash = p_spec_hash),
                                      '{mutation,sql}', pg_catalog.to_jsonb(p_equivalent));
    v_plan jsonb := (SELECT p.document FROM gcos.plans AS p WHERE p.plan_hash = p_plan_hash);
    v_step text;
    v_watch text[];
    v_run text;
    v jsonb := '{}';
    v_exit jsonb;
    r record;
    v_outcome text;
    v_message text;
    v_residue record;
    v_sequences jsonb := '[]';
    v_first jsonb;
    v_session jsonb := '[]';
    v_write record;
    v_payload jsonb;
    v_exc jsonb := gcos._exceptions_in_force(p_spec_hash, NULL, NULL);
BEGIN
    PERFORM gcos._kernel_caller();
    IF v_spec IS NULL OR v_plan IS NULL THEN
        PERFORM gcos._invalid('gcos: the kernel rehearses registered specs and plans only; register them first (gcos rehearse does)');
    END IF;
    v_run := gcos.run_id(p_spec_hash, p_plan_hash, 'rehearse', (SELECT h.seq FROM gcos.ledger_head AS h WHERE h.singleton));
    v_step := v_spec ->> 'id';
    IF NOT v_plan -> 'steps' ? v_step THEN
        PERFORM gcos._invalid(pg_catalog.format('gcos: step %s is not in plan %s', v_step, v_plan ->> 'id'));
    END IF;
    PERFORM gcos._kernel_preflight();
    v_watch := ARRAY(SELECT pg_catalog.jsonb_array_elements_text(COALESCE(v_spec -> 'watch', '[]')));
    v := pg_catalog.jsonb_build_object('reverify', gcos._waive(gcos._kernel_checks(v_spec -> 'reverify'), 'reverify', v_exc,
                                                               pg_catalog.jsonb_array_length(COALESCE(v_spec -> 'reverify', '[]'))));
    v_first := (SELECT e.value FROM pg_catalog.jsonb_array_elements(v -> 'reverify') AS e
                 WHERE NOT (e.value ->> 'ok')::boolean AND NOT e.value ? 'waived' LIMIT 1);
    IF v_first IS NOT NULL THEN
        v_outcome := 'reverify_mismatch';
        v_message := pg_catalog.format('re-verify of %s failed: %L expected %s, got %s; the live world is not what the spec expects',
                                       v_step, v_first ->> 'name', v_first -> 'expected',
                                       COALESCE('error: ' || (v_first ->> 'error'), (v_first -> 'actual')::text));
    ELSE
        v := v || pg_catalog.jsonb_build_object('entry', gcos._kernel_fingerprint(v_watch));
        v := v || gcos._rehearse_inside(v_spec, v_plan, v -> 'entry', v_run);
        IF v ? 'success' THEN  -- the checks ran (a failed mutation has none)
            v := v || pg_catalog.jsonb_build_object(
                'stops', gcos._waive(v -> 'stops', 'stop', v_exc, pg_catalog.jsonb_array_length(COALESCE(v_spec -> 'stop', '[]'))),
                'success', gcos._waive(v -> 'success', 'success', v_exc, pg_catalog.jsonb_array_length(COALESCE(v_spec -> 'success', '[]'))));
        END IF;
        SELECT * INTO r FROM gcos._rehearsal_outcome(v_step, v);
        v_exit := gcos._kernel_fingerprint(v_watch);
        SELECT * INTO v_residue FROM gcos._rehearsal_residue(v_step, v, v_exit, r.outcome, r.message);
        v_outcome := v_residue.outcome;
        v_message := v_residue.message;
        v_sequences := v_residue.sequences;
        v_session := v_residue.session;
    END IF;
    v_payload := pg_catalog.jsonb_build_object(
        'format_version', 1, 'kernel', true, 'run_id', v_run, 'step', v_step, 'ref', 'step-' || (v_spec ->> 'order'),
        'plan_id', v_plan ->> 'id', 'plan_hash', p_plan_hash, 'outcome', v_outcome, 'message', v_message,
        'fingerprints', pg_catalog.jsonb_build_object(
            'entry', gcos._fp_summary(v -> 'entry'), 'inside', gcos._fp_summary(v -> 'inside'),
            'after_rollback', gcos._fp_summary(v -> 'after_rollback'), 'exit', gcos._fp_summary(v_exit)),
        'footprint', CASE WHEN v ? 'footprint' THEN pg_catalog.jsonb_build_object(
            'new_tables', v -> 'footprint' -> 'new_tables', 'dropped_tables', v -> 'footprint' -> 'dropped_tables',
            'row_deltas', v -> 'footprint' -> 'rows') END,
        'allow_violations', COALESCE(v -> 'violations', '[]'),
        'checks', pg_catalog.jsonb_build_object('reverify', v -> 'reverify', 'stop', COALESCE(v -> 'stops', '[]'),
                                                'success', COALESCE(v -> 'success', '[]')),
        'differences', CASE WHEN v_exit IS NULL THEN '[]'::jsonb ELSE gcos._fp_differences(v -> 'entry', v_exit) END,
        'residue', pg_catalog.jsonb_build_object('sequences', v_sequences, 'session', v_session),
        'exceptions', gcos._waivers(v -> 'reverify', 'reverify') || gcos._waivers(v -> 'stops', 'stop')
                      || gcos._waivers(v -> 'success', 'success'),
        'online', pg_catalog.jsonb_build_object('rehearsed', 'the transactional equivalent', 'sql', p_equivalent, 'dropped_invalid', p_dropped,
            'note', 'an online step''s concurrent statements cannot run in a transaction block: this rehearsal ran them without CONCURRENTLY inside BEGIN..ROLLBACK; the commit runs them one by one outside a transaction'),
        'duration_us', (EXTRACT(epoch FROM pg_catalog.clock_timestamp() - v_started) * 1000000)::bigint);
    SELECT * INTO v_write FROM gcos._ledger_write('rehearsal', v_step, p_spec_hash, p_trace_id, NULL, v_payload);
    RETURN v_payload || pg_catalog.jsonb_build_object('ledger_seq', v_write.seq, 'ledger_hash', v_write.hash);
END
$$;

-- As gcos.rehearse (031) for an online step: the pieces are checked against the registered SQL first.
CREATE FUNCTION gcos.rehearse_online(p_spec_hash text, p_plan_hash text, p_trace_id text, p_pieces jsonb) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_spec jsonb := (SELECT s.document FROM gcos.specs AS s WHERE s.spec_hash = p_spec_hash);
    v_other record;
    r record;
BEGIN
    PERFORM gcos._kernel_caller();
    IF v_spec IS NULL OR v_spec ->> 'mode' IS DISTINCT FROM 'online' OR NOT v_spec ? 'mutation' THEN
        PERFORM gcos._invalid('gcos: gcos.rehearse_online rehearses registered online steps with a mutation only; rehearse others with gcos.rehearse');
    END IF;
    IF pg_catalog.current_setting('transaction_isolation') <> 'read committed' THEN
        PERFORM gcos._invalid('gcos: the kernel rehearses in a READ COMMITTED transaction; start the transaction READ COMMITTED');
    END IF;
    SELECT * INTO r FROM gcos._online_pieces(v_spec -> 'mutation' ->> 'sql', p_pieces);
    PERFORM pg_catalog.pg_advisory_xact_lock_shared(pg_catalog.hashtextextended('gcos:commit', 0));
    SELECT l.seq, l.kind, COALESCE(l.step_id, 'no step') AS step_id INTO v_other
      FROM gcos.ledger AS l
     WHERE (l.record ->> 'trace_id') = p_trace_id
       AND NOT (l.step_id IS NOT DISTINCT FROM v_spec ->> 'id' AND l.spec_hash IS NOT DISTINCT FROM p_spec_hash)
       AND NOT (l.kind = 'plan_registered' AND (l.record #>> '{payload,hash}') IS NOT DISTINCT FROM p_plan_hash)
     ORDER BY l.seq LIMIT 1;
    IF FOUND OR p_trace_id IS NULL THEN
        PERFORM gcos._invalid(pg_catalog.format('gcos: trace %s is missing or already carries another run''s records; use a new trace id', p_trace_id));
    END IF;
    -- INVALID leftovers of a failed attempt are dropped for good first (the world before that attempt): a
    -- rehearsal with them could not prove its rollback (no SQL recreates an invalid index); the record names them
    RETURN gcos._rehearse_online_measured(p_spec_hash, p_plan_hash, p_trace_id, r.equivalent, gcos._online_drop_invalid(v_spec));
END
$$;

-- ----------------------------------------------------------------------------------- the ticket's rights

RESET ROLE;
-- Makes p_role a member of gcos_kernel (with a ticket of this backend naming it) or ends that (without one).
-- Owned by the installing superuser: granting gcos_kernel needs ADMIN OPTION on it, which no lasting role may
-- hold (007). Only gcos_owner (the online kernel functions) may call it.
CREATE FUNCTION gcos._online_member(p_role name, p_grant boolean) RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_grant THEN
        IF NOT EXISTS (SELECT FROM gcos.online_tickets AS t WHERE t.pid = pg_catalog.pg_backend_pid() AND t.role_name = p_role) THEN
            PERFORM gcos._refuse('gcos: gcos_kernel''s rights are lent only for a ticket of this session');
        END IF;
        EXECUTE pg_catalog.format('GRANT gcos_kernel TO %I%s', p_role,
            CASE WHEN pg_catalog.current_setting('server_version_num')::integer >= 160000 THEN ' WITH INHERIT TRUE, SET FALSE' ELSE '' END);
        IF NOT pg_catalog.pg_has_role(p_role, 'gcos_kernel', 'USAGE') THEN
            RAISE EXCEPTION 'gcos: role % is NOINHERIT, so it cannot use the rights an online ticket lends; give it INHERIT (ALTER ROLE % INHERIT) or upgrade to PostgreSQL 16+',
                p_role, p_role USING ERRCODE = '42501';
        END IF;
    ELSE
        IF pg_catalog.current_setting('role') = 'gcos_kernel' THEN
            -- PostgreSQL 15 lends SET too, and a role once set outlives the membership: the session that became
            -- gcos_kernel in its window ends here (nothing of this call stays; the sweep then revokes)
            PERFORM pg_catalog.pg_terminate_backend(pg_catalog.pg_backend_pid());
            PERFORM pg_catalog.pg_sleep(5);  -- the signal ends the backend before this returns
        END IF;
        IF NOT EXISTS (SELECT FROM gcos.online_tickets AS t WHERE t.role_name = p_role)
           AND pg_catalog.pg_has_role(p_role, 'gcos_kernel', 'MEMBER') THEN
            EXECUTE pg_catalog.format('REVOKE gcos_kernel FROM %I', p_role);
        END IF;
    END IF;
END
$$;
REVOKE ALL ON FUNCTION gcos._online_member(name, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gcos._online_member(name, boolean) TO gcos_owner;

SET LOCAL ROLE gcos_owner;

-- The event trigger: while this backend holds a ticket only its text runs; a session whose login role is (or is
-- a member of) a role holding a ticket of another backend (another session of the same role, a member of that
-- role, a crashed window not yet swept) runs no DDL at all.
CREATE FUNCTION gcos._online_guard() RETURNS event_trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t record;
BEGIN
    SELECT * INTO t FROM gcos.online_tickets AS k WHERE k.pid = pg_catalog.pg_backend_pid();
    IF FOUND AND gcos._online_alive(t.pid, t.run_id) THEN
        IF pg_catalog.btrim(pg_catalog.current_query(), E' \t\r\n;') = pg_catalog.btrim(t.statement, E' \t\r\n;') THEN
            RETURN;
        END IF;
        RAISE EXCEPTION 'gcos: this session holds an online ticket for % of run %, and may run only that statement (% refused)',
            t.piece + 1, t.run_id, TG_TAG USING ERRCODE = '42501';
    END IF;
    IF EXISTS (SELECT FROM gcos.online_tickets AS k WHERE pg_catalog.pg_has_role(session_user, k.role_name, 'USAGE'))
       AND NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles AS r WHERE r.rolname = session_user) THEN
        RAISE EXCEPTION 'gcos: role % holds gcos_kernel''s rights lent to an online ticket of another session; % refused',
            session_user, TG_TAG USING ERRCODE = '42501';
    END IF;
END
$$;
REVOKE ALL ON FUNCTION gcos._online_guard() FROM PUBLIC;

-- Tickets whose backend is gone: membership revoked, run stopped (a `stop` record).
CREATE FUNCTION gcos._online_sweep() RETURNS integer
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t record;
    n integer := 0;
BEGIN
    FOR t IN SELECT k.* FROM gcos.online_tickets AS k WHERE NOT gcos._online_alive(k.pid, k.run_id) LOOP
        DELETE FROM gcos.online_tickets AS k WHERE k.pid = t.pid;
        PERFORM gcos._online_member(t.role_name, false);
        PERFORM gcos._online_stop(t.run_id, pg_catalog.format('the session holding the ticket for statement %s ended before it reported back', t.piece + 1));
        n := n + 1;
    END LOOP;
    FOR t IN SELECT r.run_id FROM gcos.online_runs AS r WHERE r.closed_at IS NULL AND NOT gcos._online_alive(r.pid, r.run_id) LOOP
        PERFORM gcos._online_stop(t.run_id, 'the session that opened it ended before it finished');
    END LOOP;
    RETURN n;
END
$$;

CREATE FUNCTION gcos.online_sweep() RETURNS integer
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT gcos._online_sweep() $$;

-- Ends an open run with a `stop` record (what was applied stays: each statement committed on its own).
CREATE FUNCTION gcos._online_stop(p_run_id text, p_reason text, p_outcome text DEFAULT 'commit_failed') RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r gcos.online_runs;
    v_write record;
    v_msg text;
BEGIN
    UPDATE gcos.online_runs AS o SET closed_at = pg_catalog.clock_timestamp()
     WHERE o.run_id = p_run_id AND o.closed_at IS NULL RETURNING o.* INTO r;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF r.pid = pg_catalog.pg_backend_pid() THEN
        PERFORM pg_catalog.pg_advisory_unlock(pg_catalog.hashtextextended('gcos:online:' || p_run_id, 0));
    END IF;
    v_msg := pg_catalog.format('online commit of %s stopped at statement %s of %s: %s; statements before it stay applied (each committed on its own, idempotent): fix and run gcos commit again',
                               r.step_id, r.next_piece + 1, pg_catalog.jsonb_array_length(r.pieces), p_reason);
    SELECT * INTO v_write FROM gcos._ledger_write('stop', r.step_id, r.spec_hash, r.trace_id, NULL,
        r.base || pg_catalog.jsonb_build_object('outcome', p_outcome, 'reason', v_msg, 'online', true,
                                                'statements_applied', r.next_piece, 'policy_decision', r.decision));
    RETURN r.base || pg_catalog.jsonb_build_object('outcome', p_outcome, 'message', v_msg, 'decision', r.decision,
                                                   'ledger_seq', v_write.seq);
END
$$;

-- The indexes of schema public the step's allow list lets it create (by the index's name or its table's).
CREATE FUNCTION gcos._online_indexes(p_spec jsonb) RETURNS TABLE (index_oid oid, name text, valid boolean)
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    WITH allow AS (
        SELECT COALESCE(p_spec -> 'mutation' -> 'allow', '[]') AS a
    ), names AS (
        SELECT DISTINCT pg_catalog.regexp_replace(n.value, '^public\.', '') AS name
          FROM allow,
               pg_catalog.jsonb_array_elements(CASE WHEN pg_catalog.jsonb_typeof(allow.a) = 'array' THEN allow.a
                                                    ELSE pg_catalog.jsonb_build_array(allow.a) END) AS e,
               pg_catalog.jsonb_each(e.value) AS kv,
               pg_catalog.jsonb_array_elements_text(CASE WHEN pg_catalog.jsonb_typeof(kv.value) = 'array' THEN kv.value
                                                         ELSE pg_catalog.jsonb_build_array(kv.value) END) AS n
         WHERE kv.key IN ('create_index', 'create_index_concurrently')
    )
    SELECT i.indexrelid, c.relname::text, i.indisvalid
      FROM pg_catalog.pg_index AS i
      JOIN pg_catalog.pg_class AS c ON c.oid = i.indexrelid
      JOIN pg_catalog.pg_class AS t ON t.oid = i.indrelid
     WHERE c.relnamespace = 'public'::regnamespace
       AND (c.relname IN (SELECT names.name FROM names) OR t.relname IN (SELECT names.name FROM names))
$$;

-- Drops the INVALID indexes the allow list names (a failed CREATE INDEX CONCURRENTLY leaves one, and IF NOT
-- EXISTS would then skip the build): as gcos_kernel, their owner. Returns their names.
CREATE FUNCTION gcos._online_drop_invalid(p_spec jsonb) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_dropped jsonb := '[]';
    r record;
BEGIN
    FOR r IN SELECT x.index_oid, x.name FROM gcos._online_indexes(p_spec) AS x WHERE NOT x.valid LOOP
        PERFORM gcos._kernel_exec(pg_catalog.format('DROP INDEX public.%I', r.name));
        v_dropped := v_dropped || pg_catalog.to_jsonb(r.name);
    END LOOP;
    RETURN v_dropped;
END
$$;

-- The open run of this backend (refused otherwise).
CREATE FUNCTION gcos._online_run(p_run_id text) RETURNS gcos.online_runs
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r gcos.online_runs;
BEGIN
    SELECT * INTO r FROM gcos.online_runs AS o WHERE o.run_id = p_run_id AND o.closed_at IS NULL;
    IF NOT FOUND OR r.pid <> pg_catalog.pg_backend_pid() OR r.role_name <> session_user
       OR NOT gcos._online_alive(r.pid, r.run_id) THEN
        PERFORM gcos._refuse(pg_catalog.format('gcos: online run %s is not open in this session', p_run_id));
    END IF;
    RETURN r;
END
$$;

CREATE FUNCTION gcos.online_begin(p_spec_hash text, p_plan_hash text, p_run_id text, p_trace_id text, p_pieces jsonb,
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

-- The next statement: run now (in the caller's transaction), or ticketed to run top-level in this session.
CREATE FUNCTION gcos.online_next(p_run_id text) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r gcos.online_runs := gcos._online_run(p_run_id);
    v_spec jsonb := (SELECT s.document FROM gcos.specs AS s WHERE s.spec_hash = r.spec_hash);
    v_piece jsonb := r.pieces -> r.next_piece;
    v_dropped jsonb;
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
    v_dropped := gcos._online_drop_invalid(v_spec);
    INSERT INTO gcos.online_tickets (pid, role_name, run_id, piece, statement)
    VALUES (pg_catalog.pg_backend_pid(), session_user, p_run_id, r.next_piece, v_piece ->> 'sql');
    PERFORM gcos._online_member(session_user, true);
    RETURN pg_catalog.jsonb_build_object('kind', 'ticket', 'piece', r.next_piece + 1, 'sql', v_piece ->> 'sql',
                                         'dropped_invalid', v_dropped);
END
$$;

-- The ticketed statement ran (p_error NULL) or failed: rights revoked, ticket ended, the piece proven.
CREATE FUNCTION gcos.online_done(p_run_id text, p_error text, p_sqlstate text DEFAULT NULL) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r gcos.online_runs := gcos._online_run(p_run_id);
    v_spec jsonb := (SELECT s.document FROM gcos.specs AS s WHERE s.spec_hash = r.spec_hash);
    v_bad text;
BEGIN
    DELETE FROM gcos.online_tickets AS t WHERE t.pid = pg_catalog.pg_backend_pid() AND t.run_id = p_run_id;
    IF NOT FOUND THEN
        PERFORM gcos._refuse(pg_catalog.format('gcos: online run %s holds no ticket in this session', p_run_id));
    END IF;
    PERFORM gcos._online_member(session_user, false);
    IF p_error IS NOT NULL THEN  -- the outcome names a lock or statement timeout (exit 8), else a failure
        RETURN gcos._online_stop(p_run_id, p_error, CASE p_sqlstate WHEN '55P03' THEN 'lock_timeout'
                                                                    WHEN '57014' THEN 'timeout' ELSE 'commit_failed' END)
               || pg_catalog.jsonb_build_object('kind', 'stopped');
    END IF;
    SELECT pg_catalog.string_agg(x.name, ', ') INTO v_bad FROM gcos._online_indexes(v_spec) AS x WHERE NOT x.valid;
    IF v_bad IS NOT NULL THEN
        RETURN gcos._online_stop(p_run_id, 'index ' || v_bad || ' is INVALID (pg_index.indisvalid false)', 'success_failed')
               || pg_catalog.jsonb_build_object('kind', 'stopped');
    END IF;
    UPDATE gcos.online_runs AS o SET next_piece = o.next_piece + 1 WHERE o.run_id = p_run_id;
    RETURN pg_catalog.jsonb_build_object('kind', 'applied', 'piece', r.next_piece + 1);
END
$$;

-- Every statement ran: the success checks and index validity decide between `commit` and `stop`.
CREATE FUNCTION gcos.online_finish(p_run_id text) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r gcos.online_runs := gcos._online_run(p_run_id);
    v_spec jsonb := (SELECT s.document FROM gcos.specs AS s WHERE s.spec_hash = r.spec_hash);
    v_plan jsonb := (SELECT p.document FROM gcos.plans AS p WHERE p.plan_hash = r.plan_hash);
    v_after jsonb;
    v_success jsonb;
    v_indexes jsonb;
    v_failed jsonb;
    v_record jsonb;
    v_write record;
BEGIN
    IF r.next_piece < pg_catalog.jsonb_array_length(r.pieces) THEN
        PERFORM gcos._invalid(pg_catalog.format('gcos: online run %s has run %s of %s statements', p_run_id, r.next_piece,
                                                pg_catalog.jsonb_array_length(r.pieces)));
    END IF;
    PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended('gcos:commit', 0));
    v_success := gcos._kernel_checks(v_spec -> 'success');
    SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object('index', x.name, 'valid', x.valid) ORDER BY x.name), '[]')
      INTO v_indexes FROM gcos._online_indexes(v_spec) AS x;
    v_failed := (SELECT e.value FROM pg_catalog.jsonb_array_elements(v_success) AS e
                  WHERE NOT COALESCE((e.value ->> 'ok')::boolean, false) LIMIT 1);
    IF v_failed IS NOT NULL OR EXISTS (SELECT FROM pg_catalog.jsonb_array_elements(v_indexes) AS e WHERE NOT (e.value ->> 'valid')::boolean) THEN
        RETURN gcos._online_stop(p_run_id, COALESCE(pg_catalog.format('success check %L failed', v_failed ->> 'name'),
                                                    'an index the step creates is INVALID (pg_index.indisvalid false)'), 'success_failed')
               || pg_catalog.jsonb_build_object('success', v_success, 'indexes', v_indexes);
    END IF;
    v_after := gcos._kernel_fingerprint(ARRAY(SELECT pg_catalog.jsonb_array_elements_text(COALESCE(v_spec -> 'watch', '[]'))));
    UPDATE gcos.online_runs AS o SET closed_at = pg_catalog.clock_timestamp() WHERE o.run_id = p_run_id;
    PERFORM pg_catalog.pg_advisory_unlock(pg_catalog.hashtextextended('gcos:online:' || p_run_id, 0));
    v_record := r.base || pg_catalog.jsonb_build_object(
        'format_version', 1, 'outcome', 'applied', 'plan_id', v_plan ->> 'id', 'plan_hash', r.plan_hash,
        'fingerprint_before', gcos._fp_summary(r.fingerprint_before), 'fingerprint_after', gcos._fp_summary(v_after),
        'fingerprint_after_full', v_after, 'policy_decision_seq', r.decision_seq,
        'causation', (r.base -> 'causation') || pg_catalog.jsonb_build_object('policy_decision_seq', r.decision_seq),
        'indexes', v_indexes, 'statements', pg_catalog.jsonb_array_length(r.pieces),
        'footprint', pg_catalog.jsonb_build_object('new_tables', '[]'::jsonb, 'row_deltas', '{}'::jsonb));
    SELECT * INTO v_write FROM gcos._ledger_write('commit', r.step_id, r.spec_hash, r.trace_id, NULL, v_record);
    RETURN v_record || pg_catalog.jsonb_build_object(
        'decision', r.decision, 'ledger_seq', v_write.seq, 'success', v_success, 'stops', '[]'::jsonb,
        'message', pg_catalog.format('%s committed online in the kernel (%s statements, indexes valid): ledger seq %s, run %s',
                                     r.step_id, pg_catalog.jsonb_array_length(r.pieces), v_write.seq, p_run_id));
END
$$;

-- ----------------------------------------------------------------------------------- privileges

RESET ROLE;
SELECT gcos._guard_table('gcos.online_runs', 'gcos.online_begin (gcos commit of an online step)');
SELECT gcos._guard_table('gcos.online_tickets', 'gcos.online_next (gcos commit of an online step)');
GRANT SELECT ON gcos.online_runs, gcos.online_tickets TO gcos_admin, gcos_operator, gcos_sovereign, gcos_council, gcos_auditor;
CREATE EVENT TRIGGER gcos_online_guard ON ddl_command_start EXECUTE FUNCTION gcos._online_guard();
ALTER EVENT TRIGGER gcos_online_guard ENABLE ALWAYS;
REVOKE ALL ON FUNCTION gcos._online_concurrent(text), gcos._online_pieces(text, jsonb),
    gcos._rehearse_online_measured(text, text, text, text, jsonb), gcos.rehearse_online(text, text, text, jsonb),
    gcos._online_alive(integer, text), gcos._online_sweep(), gcos.online_sweep(), gcos._online_stop(text, text, text), gcos._online_indexes(jsonb),
    gcos._online_drop_invalid(jsonb), gcos._online_run(text), gcos.online_begin(text, text, text, text, jsonb, boolean),
    gcos.online_next(text), gcos.online_done(text, text, text), gcos.online_finish(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gcos.rehearse_online(text, text, text, jsonb) TO gcos_operator, gcos_admin;
GRANT EXECUTE ON FUNCTION gcos.online_begin(text, text, text, text, jsonb, boolean), gcos.online_next(text),
    gcos.online_done(text, text, text), gcos.online_finish(text), gcos.online_sweep() TO gcos_operator, gcos_admin;
