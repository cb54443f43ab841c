-- gcos schema version 36: online steps mended (review of 035).
--
-- 1. A commit record only for work done: the event trigger marks the ticket as started when it lets the ticketed
--    text through (online_tickets.ran; REINDEX, which PostgreSQL < 17 shows no event trigger, proves itself by a
--    new relfilenode); online_done refuses a ticket that never started; online_done and online_finish prove every
--    index the pieces and the allow list name (to_regclass in the adopted schemas): created or reindexed ones
--    exist, valid and ready (pg_index.indisvalid AND indisready); dropped ones are absent.
-- 2. A ticket lends gcos_kernel's rights cluster-wide (roles are global): the event trigger refuses DDL to any
--    non-superuser session whose login role can use gcos_kernel's rights and whose backend holds no live ticket in
--    THIS database (the kernel's own DDL runs in SECURITY DEFINER functions called by roles that are no members).
-- 3. The allow list's index names resolve in any adopted schema (not public only), by the index's name only.
-- 4. The kernel takes a statement as concurrent only in one of four anchored whole-statement shapes, and removes
--    CONCURRENTLY only at the keyword's position (gcos/sqlcheck/online.py holds the same shapes).
-- 5. A rehearsal drops INVALID leftovers inside its BEGIN..ROLLBACK only, and says so; the durable drop is the
--    gated commit path's (gcos.online_next).
SET LOCAL ROLE gcos_owner;

ALTER TABLE gcos.online_tickets ADD COLUMN ran boolean NOT NULL DEFAULT false,
                                ADD COLUMN before text;

-- The shape of a concurrent statement (kind create/drop/reindex/detach, the index it names, the text without
-- CONCURRENTLY), or NULLs: leading and trailing blanks, semicolons and comments aside, the whole statement is one of
--   CREATE [UNIQUE] INDEX CONCURRENTLY IF NOT EXISTS name ON ...
--   DROP INDEX CONCURRENTLY IF EXISTS name
--   REINDEX INDEX CONCURRENTLY name
--   ALTER TABLE [ONLY] name DETACH PARTITION name CONCURRENTLY
CREATE FUNCTION gcos._online_shape(p_piece text, OUT kind text, OUT name text, OUT equivalent text)
    LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_gap constant text := '(?:\s|;|--[^\n]*(?:\n|$)|/\*(?:[^*]|\*+[^*/])*\*+/)*';
    v_id constant text := '(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)';
    v_qid text := v_id || '(?:\s*\.\s*' || v_id || ')?';
    v_parts text[];
    v_body text;
    m text[];
BEGIN
    v_parts := pg_catalog.regexp_match(COALESCE(p_piece, ''), '^(' || v_gap || ')(.*?)(' || v_gap || ')$');
    IF v_parts IS NULL OR v_parts[2] = '' THEN
        RETURN;
    END IF;
    v_body := v_parts[2];
    m := pg_catalog.regexp_match(v_body, '^(CREATE\s+(?:UNIQUE\s+)?INDEX\s+)CONCURRENTLY(\s+IF\s+NOT\s+EXISTS\s+(' || v_qid || ')\s+ON\s.*)$', 'i');
    IF m IS NOT NULL THEN
        kind := 'create';
    ELSE
        m := pg_catalog.regexp_match(v_body, '^(DROP\s+INDEX\s+)CONCURRENTLY(\s+IF\s+EXISTS\s+(' || v_qid || '))$', 'i');
        kind := CASE WHEN m IS NOT NULL THEN 'drop' END;
    END IF;
    IF m IS NULL THEN
        m := pg_catalog.regexp_match(v_body, '^(REINDEX\s+INDEX\s+)CONCURRENTLY(\s+(' || v_qid || '))$', 'i');
        kind := CASE WHEN m IS NOT NULL THEN 'reindex' END;
    END IF;
    IF m IS NULL THEN
        m := pg_catalog.regexp_match(v_body, '^(ALTER\s+TABLE\s+(?:ONLY\s+)?' || v_qid || '\s+DETACH\s+PARTITION\s+' || v_qid || '\s+)CONCURRENTLY()$', 'i');
        kind := CASE WHEN m IS NOT NULL THEN 'detach' END;
    END IF;
    IF m IS NULL THEN
        RETURN;
    END IF;
    name := gcos._online_name(m[3]);
    equivalent := v_parts[1] || m[1] || m[2] || v_parts[3];
END
$$;

-- An identifier as allow lists spell it (gcos/sqlcheck/classify.py norm): unquoted parts folded to lower case,
-- quoted ones unquoted, schema public implied.
CREATE FUNCTION gcos._online_name(p_qid text) RETURNS text
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.regexp_replace(pg_catalog.string_agg(
               CASE WHEN p.parts[1] ~ '^"' THEN pg_catalog.replace(pg_catalog.substr(p.parts[1], 2, pg_catalog.length(p.parts[1]) - 2), '""', '"')
                    ELSE pg_catalog.lower(p.parts[1]) END, '.' ORDER BY p.n), '^public\.', '')
      FROM pg_catalog.regexp_matches(p_qid, '("(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)', 'g') WITH ORDINALITY AS p(parts, n)
$$;

CREATE OR REPLACE FUNCTION gcos._online_concurrent(p_piece text) RETURNS boolean
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT (gcos._online_shape(p_piece)).kind IS NOT NULL $$;

-- As 035, with the shapes of gcos._online_shape: a piece is concurrent only in one of them, and its transactional
-- equivalent is the piece without the CONCURRENTLY at the keyword's position (never a literal's or a name's).
CREATE OR REPLACE FUNCTION gcos._online_pieces(p_sql text, p_pieces jsonb, OUT pieces jsonb, OUT equivalent text)
    LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_gap constant text := '^(\s|;|--[^\n]*(\n|$)|/\*([^*]|\*+[^*/])*\*+/)*$';
    v_rest text := COALESCE(p_sql, '');
    v_piece text;
    v_at integer;
    s record;
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
        s := gcos._online_shape(v_piece);
        equivalent := equivalent || pg_catalog.left(v_rest, v_at - 1) || COALESCE(s.equivalent, v_piece);
        pieces := pieces || pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object('sql', v_piece, 'concurrent', s.kind IS NOT NULL));
        v_rest := pg_catalog.substr(v_rest, v_at + pg_catalog.length(v_piece));
    END LOOP;
    IF v_rest !~ v_gap THEN
        PERFORM gcos._invalid('gcos: the statements named leave part of the step''s mutation SQL out; name every statement');
    END IF;
    equivalent := equivalent || v_rest;
END
$$;

-- The relation an allow-list name (as gcos/sqlcheck spells it: schema public implied) denotes: schema-qualified
-- as written, else in the adopted schemas (public first); NULL when there is none.
CREATE FUNCTION gcos._online_resolve(p_name text) RETURNS oid
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN pg_catalog.strpos(p_name, '.') > 0
                THEN pg_catalog.to_regclass(pg_catalog.format('%I.%I', pg_catalog.split_part(p_name, '.', 1),
                                                              pg_catalog.substr(p_name, pg_catalog.strpos(p_name, '.') + 1)))::oid
                ELSE (SELECT pg_catalog.to_regclass(pg_catalog.format('%I.%I', s.schema_name, p_name))::oid
                        FROM gcos.adopted_schemas AS s
                       WHERE s.released_at IS NULL AND pg_catalog.to_regclass(pg_catalog.format('%I.%I', s.schema_name, p_name)) IS NOT NULL
                       ORDER BY s.schema_name <> 'public', s.schema_name LIMIT 1) END
$$;

-- The index names an online step answers for: its allow list's create_index names and the names of its
-- concurrent pieces before p_upto, each with what must hold ('absent' when the last piece naming it drops it,
-- else 'valid'); with p_all false, only the names those pieces touch.
CREATE FUNCTION gcos._online_names(p_spec jsonb, p_pieces jsonb, p_upto integer, p_all boolean)
    RETURNS TABLE (name text, expect text)
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    WITH allow AS (
        SELECT COALESCE(p_spec -> 'mutation' -> 'allow', '[]') AS a
    ), listed AS (
        SELECT DISTINCT pg_catalog.regexp_replace(n.value, '^public\.', '') AS name
          FROM allow,
               pg_catalog.jsonb_array_elements(CASE WHEN pg_catalog.jsonb_typeof(allow.a) = 'array' THEN allow.a
                                                    ELSE pg_catalog.jsonb_build_array(allow.a) END) AS e,
               pg_catalog.jsonb_each(CASE WHEN pg_catalog.jsonb_typeof(e.value) = 'object' THEN e.value ELSE '{}' END) AS kv,
               pg_catalog.jsonb_array_elements_text(CASE WHEN pg_catalog.jsonb_typeof(kv.value) = 'array' THEN kv.value
                                                         ELSE pg_catalog.jsonb_build_array(kv.value) END) AS n
         WHERE kv.key IN ('create_index', 'create_index_concurrently')
    ), touched AS (
        SELECT DISTINCT ON (s.name) s.name, s.kind
          FROM pg_catalog.jsonb_array_elements(p_pieces) WITH ORDINALITY AS p(piece, n),
               LATERAL gcos._online_shape(p.piece ->> 'sql') AS s
         WHERE p.n <= p_upto AND s.name IS NOT NULL
         ORDER BY s.name, p.n DESC
    )
    SELECT x.name, CASE WHEN t.kind = 'drop' THEN 'absent' ELSE 'valid' END
      FROM (SELECT listed.name FROM listed WHERE p_all UNION SELECT touched.name FROM touched) AS x
      LEFT JOIN touched AS t ON t.name = x.name
$$;

-- Why the indexes of gcos._online_names do not hold (NULL when they do): a valid one must exist and be valid and
-- ready (pg_index.indisvalid AND indisready), an absent one must not exist.
CREATE FUNCTION gcos._online_proof(p_spec jsonb, p_pieces jsonb, p_upto integer, p_all boolean) RETURNS text
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n record;
    v_oid oid;
BEGIN
    FOR n IN SELECT * FROM gcos._online_names(p_spec, p_pieces, p_upto, p_all) AS x ORDER BY x.name LOOP
        v_oid := gcos._online_resolve(n.name);
        IF n.expect = 'absent' AND v_oid IS NOT NULL THEN
            RETURN pg_catalog.format('index %s still exists, though the step drops it', n.name);
        ELSIF n.expect = 'valid' AND v_oid IS NULL THEN
            RETURN pg_catalog.format('index %s does not exist (the step creates it)', n.name);
        ELSIF n.expect = 'valid' AND NOT EXISTS (SELECT FROM pg_catalog.pg_index AS i
                                                  WHERE i.indexrelid = v_oid AND i.indisvalid AND i.indisready) THEN
            RETURN pg_catalog.format('index %s is INVALID or not an index (pg_index.indisvalid/indisready false)', n.name);
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;

-- The existing indexes the allow list names, resolved in the adopted schemas (by the index's name only).
CREATE OR REPLACE FUNCTION gcos._online_indexes(p_spec jsonb) RETURNS TABLE (index_oid oid, name text, valid boolean)
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT i.indexrelid, x.name, i.indisvalid AND i.indisready
      FROM gcos._online_names(p_spec, '[]', 0, true) AS x
      JOIN pg_catalog.pg_index AS i ON i.indexrelid = gcos._online_resolve(x.name)
$$;

-- The SQL that drops the INVALID indexes the allow list names, and their names.
CREATE FUNCTION gcos._online_invalid(p_spec jsonb, OUT drop_sql text, OUT names jsonb)
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT COALESCE(pg_catalog.string_agg(pg_catalog.format('DROP INDEX %I.%I;', n.nspname, c.relname), E'\n' ORDER BY x.name), ''),
           COALESCE(pg_catalog.jsonb_agg(x.name ORDER BY x.name), '[]')
      FROM gcos._online_indexes(p_spec) AS x
      JOIN pg_catalog.pg_class AS c ON c.oid = x.index_oid
      JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
     WHERE NOT x.valid
$$;

-- Drops them for good (the gated commit path only: gcos.online_next), as gcos_kernel, their owner.
CREATE OR REPLACE FUNCTION gcos._online_drop_invalid(p_spec jsonb) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    SELECT * INTO r FROM gcos._online_invalid(p_spec);
    IF r.drop_sql <> '' THEN
        PERFORM gcos._kernel_exec(r.drop_sql);
    END IF;
    RETURN r.names;
END
$$;

-- The evidence of a REINDEX ticket (PostgreSQL < 17 fires no event trigger for REINDEX): the index's oid and
-- relfilenode, which a REINDEX CONCURRENTLY that ran changes.
CREATE FUNCTION gcos._online_filenode(p_name text) RETURNS text
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT o::text || ':' || COALESCE(pg_catalog.pg_relation_filenode(o)::text, '') FROM gcos._online_resolve(p_name) AS o $$;

-- As 035, and: letting the ticketed text through marks the ticket as started; a session that can use gcos_kernel's
-- rights (a ticket holder's role, in this database or another of the server) runs no DDL without a live ticket
-- of its own backend here. Superusers pass (install, adopt), and so do roles that can make themselves gcos_kernel
-- anyway (a non-superuser's gcos adopt and managed install make it a member for their transaction); the kernel's
-- own DDL runs in SECURITY DEFINER functions whose callers are no members of gcos_kernel.
CREATE OR REPLACE FUNCTION gcos._online_guard() RETURNS event_trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t record;
BEGIN
    SELECT * INTO t FROM gcos.online_tickets AS k WHERE k.pid = pg_catalog.pg_backend_pid();
    IF FOUND AND gcos._online_alive(t.pid, t.run_id) THEN
        IF pg_catalog.btrim(pg_catalog.current_query(), E' \t\r\n;') = pg_catalog.btrim(t.statement, E' \t\r\n;') THEN
            UPDATE gcos.online_tickets AS k SET ran = true WHERE k.pid = t.pid;
            RETURN;
        END IF;
        RAISE EXCEPTION 'gcos: this session holds an online ticket for % of run %, and may run only that statement (% refused)',
            t.piece + 1, t.run_id, TG_TAG USING ERRCODE = '42501';
    END IF;
    IF (SELECT r.rolsuper FROM pg_catalog.pg_roles AS r WHERE r.rolname = session_user) THEN
        RETURN;
    END IF;
    IF EXISTS (SELECT FROM gcos.online_tickets AS k WHERE pg_catalog.pg_has_role(session_user, k.role_name, 'USAGE')) THEN
        RAISE EXCEPTION 'gcos: role % holds gcos_kernel''s rights lent to an online ticket of another session; % refused',
            session_user, TG_TAG USING ERRCODE = '42501';
    END IF;
    IF pg_catalog.pg_has_role(session_user, 'gcos_kernel', 'USAGE')
       -- a role that can make itself gcos_kernel anyway (ADMIN OPTION; CREATEROLE before 16; the installer, a
       -- member of gcos_owner during its install) loses nothing by passing: gcos adopt and install make it a member
       AND NOT pg_catalog.pg_has_role(session_user, 'gcos_kernel', 'MEMBER WITH ADMIN OPTION')
       AND NOT pg_catalog.pg_has_role(session_user, 'gcos_owner', 'MEMBER')
       AND NOT (pg_catalog.current_setting('server_version_num')::integer < 160000
                AND (SELECT r.rolcreaterole FROM pg_catalog.pg_roles AS r WHERE r.rolname = session_user)) THEN
        RAISE EXCEPTION 'gcos: role % can use gcos_kernel''s rights (an online ticket of another session or database, or a grant) and this session holds no ticket in this database; % refused',
            session_user, TG_TAG USING ERRCODE = '42501';
    END IF;
END
$$;

-- As 035; a REINDEX ticket records the index's relfilenode (its evidence where no event trigger sees REINDEX).
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

-- As 035, and: a ticket that never started (the event trigger never let its text through; for REINDEX, the
-- index's relfilenode unchanged) stops the run whatever the client says; the indexes the pieces so far name are
-- proven (created or reindexed: exist, valid, ready; dropped: absent).
CREATE OR REPLACE FUNCTION gcos.online_done(p_run_id text, p_error text, p_sqlstate text DEFAULT NULL) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r gcos.online_runs := gcos._online_run(p_run_id);
    v_spec jsonb := (SELECT s.document FROM gcos.specs AS s WHERE s.spec_hash = r.spec_hash);
    t gcos.online_tickets;
    s record;
    v_bad text;
BEGIN
    DELETE FROM gcos.online_tickets AS k WHERE k.pid = pg_catalog.pg_backend_pid() AND k.run_id = p_run_id RETURNING k.* INTO t;
    IF NOT FOUND THEN
        PERFORM gcos._refuse(pg_catalog.format('gcos: online run %s holds no ticket in this session', p_run_id));
    END IF;
    PERFORM gcos._online_member(session_user, false);
    IF p_error IS NOT NULL THEN  -- the outcome names a lock or statement timeout (exit 8), else a failure
        RETURN gcos._online_stop(p_run_id, p_error, CASE p_sqlstate WHEN '55P03' THEN 'lock_timeout'
                                                                    WHEN '57014' THEN 'timeout' ELSE 'commit_failed' END)
               || pg_catalog.jsonb_build_object('kind', 'stopped');
    END IF;
    s := gcos._online_shape(t.statement);
    IF NOT t.ran AND NOT (s.kind = 'reindex' AND gcos._online_filenode(s.name) IS DISTINCT FROM t.before) THEN
        RETURN gcos._online_stop(p_run_id, 'the ticketed statement never started in this session (the kernel saw no such statement)')
               || pg_catalog.jsonb_build_object('kind', 'stopped');
    END IF;
    v_bad := gcos._online_proof(v_spec, r.pieces, r.next_piece + 1, false);
    IF v_bad IS NOT NULL THEN
        RETURN gcos._online_stop(p_run_id, v_bad, 'success_failed') || pg_catalog.jsonb_build_object('kind', 'stopped');
    END IF;
    UPDATE gcos.online_runs AS o SET next_piece = o.next_piece + 1 WHERE o.run_id = p_run_id;
    RETURN pg_catalog.jsonb_build_object('kind', 'applied', 'piece', r.next_piece + 1);
END
$$;

-- As 035, and every index the allow list and the pieces name is proven (gcos._online_proof), not only the
-- existing ones: a never-built index is no commit.
CREATE OR REPLACE FUNCTION gcos.online_finish(p_run_id text) RETURNS jsonb
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
    v_bad text;
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
    v_bad := gcos._online_proof(v_spec, r.pieces, pg_catalog.jsonb_array_length(r.pieces), true);
    IF v_failed IS NOT NULL OR v_bad IS NOT NULL THEN
        RETURN gcos._online_stop(p_run_id, CASE WHEN v_failed IS NOT NULL
                                                         THEN pg_catalog.format('success check %L failed', v_failed ->> 'name') ELSE v_bad END, 'success_failed')
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
        'message', pg_catalog.format('%s committed online in the kernel (%s statements, indexes proven): ledger seq %s, run %s',
                                     r.step_id, pg_catalog.jsonb_array_length(r.pieces), v_write.seq, p_run_id));
END
$$;

-- As 035, but the INVALID leftovers of a failed attempt are dropped INSIDE the rehearsal's BEGIN..ROLLBACK (the
-- equivalent starts with their DROP INDEX), never for good: that is the gated commit's (gcos.online_next).
CREATE OR REPLACE FUNCTION gcos.rehearse_online(p_spec_hash text, p_plan_hash text, p_trace_id text, p_pieces jsonb) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_spec jsonb := (SELECT s.document FROM gcos.specs AS s WHERE s.spec_hash = p_spec_hash);
    v_other record;
    v_invalid record;
    v_write record;
    v jsonb;
    v_live jsonb;
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
    SELECT * INTO v_invalid FROM gcos._online_invalid(v_spec);
    IF v_invalid.drop_sql = '' THEN
        RETURN gcos._rehearse_online_measured(p_spec_hash, p_plan_hash, p_trace_id, r.equivalent, '[]');
    END IF;
    -- the world as the commit's gates will find it (gate 4 compares its schema with the rehearsal's entry)
    v_live := gcos._fp_summary(gcos._kernel_fingerprint(ARRAY(SELECT pg_catalog.jsonb_array_elements_text(COALESCE(v_spec -> 'watch', '[]')))));
    BEGIN  -- the whole measured rehearsal on the world without the leftovers, then all of it rolled back ...
        PERFORM gcos._kernel_exec(v_invalid.drop_sql);
        v := gcos._rehearse_online_measured(p_spec_hash, p_plan_hash, p_trace_id, r.equivalent, pg_catalog.jsonb_build_object(
            'indexes', v_invalid.names, 'durable', false,
            'note', 'INVALID leftovers of a failed attempt: this rehearsal ran on the world without them (dropped inside its rolled-back transaction; they are still there); the approved commit drops them for good before its ticket; fingerprints.entry is the world with them, entry_without_them the one rehearsed'));
        RAISE EXCEPTION USING ERRCODE = 'GC036', MESSAGE = v::text;
    EXCEPTION WHEN SQLSTATE 'GC036' THEN
        v := SQLERRM::jsonb;
    END;
    -- ... but its record, written again, its entry the world with the leftovers (the commit drops them after its gates)
    v := pg_catalog.jsonb_set(v, '{online,dropped_invalid,entry_without_them}', v #> '{fingerprints,entry}');
    v := pg_catalog.jsonb_set(v, '{fingerprints,entry}', v_live);
    SELECT * INTO v_write FROM gcos._ledger_write('rehearsal', v ->> 'step', p_spec_hash, p_trace_id, NULL, v - 'ledger_seq' - 'ledger_hash');
    RETURN (v - 'ledger_seq' - 'ledger_hash') || pg_catalog.jsonb_build_object('ledger_seq', v_write.seq, 'ledger_hash', v_write.hash);
END
$$;

RESET ROLE;
REVOKE ALL ON FUNCTION gcos._online_shape(text), gcos._online_name(text), gcos._online_resolve(text),
    gcos._online_names(jsonb, jsonb, integer, boolean), gcos._online_proof(jsonb, jsonb, integer, boolean),
    gcos._online_invalid(jsonb), gcos._online_filenode(text) FROM PUBLIC;
