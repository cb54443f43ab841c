-- gcos schema version 37: online steps mended again (attacks on 035/036).
--
-- 1. The kernel never runs text from inside a comment: gcos._online_lex reads the registered SQL as PostgreSQL's
--    lexer does ('--' comments to a newline or carriage return, nested /* */ comments, '' strings with ''
--    escapes, E'' strings with backslash escapes, "" identifiers, dollar quotes) and gcos._online_pieces accepts
--    the client's statements only where they begin and end outside comments and quoted text, with nothing but
--    blanks, semicolons and whole comments between them; a concurrent statement (sent alone, verbatim) holds no
--    comment and no second statement. standard_conforming_strings must be on (the lexer reads strings so).
-- 2. An online commit evaluates the step's stop conditions and the plan's global stops after its last statement,
--    as gcos._commit_apply does (gcos._kernel_stop, waived by gcos._waive): a held stop writes `stop` (exit 4),
--    not `commit`; the statements already applied stay applied (each idempotent) and the record says how many.
-- 3. The guard judges every role the session can become: MEMBER (a NOINHERIT member SETs ROLE), and the role the
--    session SET (current_setting('role')) as well as the login role; a session that SET ROLE gcos_kernel (possible
--    on PostgreSQL 15 while its role held a ticket) runs no DDL without a live ticket of its own.
SET LOCAL ROLE gcos_owner;

-- The class of each character of p_sql, as PostgreSQL's lexer reads it (standard_conforming_strings on):
-- c code, w a blank or ';' of code, M/m the first/other characters of a comment, Q/q of a quoted token (string,
-- quoted identifier, dollar-quoted text). Unterminated comments and quotes are refused.
CREATE FUNCTION gcos._online_lex(p_sql text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE STRICT SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c constant text[] := pg_catalog.regexp_split_to_array(p_sql, '');  -- characters, each reached in O(1)
    n constant integer := pg_catalog.cardinality(c);
    v_start constant text := '^([A-Za-z_]|[^\x01-\x7f])$';             -- what begins an identifier
    v text[] := '{}';  -- the classes of each token
    i integer := 1;
    j integer;
    d integer;
    ch text;
    v_close text;
    v_tag text;
BEGIN
    WHILE i <= n LOOP
        ch := c[i];
        j := i + 1;  -- the token's end (exclusive)
        IF ch = '-' AND c[i + 1] = '-' THEN  -- to a newline or a carriage return, as PostgreSQL's lexer
            WHILE j <= n AND c[j] NOT IN (E'\n', E'\r') LOOP j := j + 1; END LOOP;
            v := v || ('M' || pg_catalog.repeat('m', j - i - 1));
        ELSIF ch = '/' AND c[i + 1] = '*' THEN  -- nested
            d := 1;
            j := i + 2;
            WHILE d > 0 LOOP
                IF j > n THEN
                    PERFORM gcos._invalid(pg_catalog.format('gcos: the step''s SQL has an unterminated comment at character %s', i));
                ELSIF c[j] = '/' AND c[j + 1] = '*' THEN
                    d := d + 1; j := j + 2;
                ELSIF c[j] = '*' AND c[j + 1] = '/' THEN
                    d := d - 1; j := j + 2;
                ELSE
                    j := j + 1;
                END IF;
            END LOOP;
            v := v || ('M' || pg_catalog.repeat('m', j - i - 1));
        ELSIF ch IN ('''', '"') OR (ch IN ('e', 'E') AND c[i + 1] = '''') THEN  -- '' and "" doubled; E'' backslashes too
            IF ch IN ('e', 'E') THEN ch := 'E'; j := i + 2; END IF;
            v_close := CASE ch WHEN '"' THEN '"' ELSE '''' END;
            LOOP
                IF j > n THEN
                    PERFORM gcos._invalid(pg_catalog.format('gcos: the step''s SQL has an unterminated quoted text at character %s', i));
                ELSIF ch = 'E' AND c[j] = '\' THEN
                    j := j + 2;
                ELSIF c[j] = v_close THEN
                    EXIT WHEN c[j + 1] IS DISTINCT FROM v_close;
                    j := j + 2;
                ELSE
                    j := j + 1;
                END IF;
            END LOOP;
            j := j + 1;
            v := v || ('Q' || pg_catalog.repeat('q', j - i - 1));
        ELSIF ch = '$' AND c[i + 1] ~ '^[0-9]$' THEN  -- a parameter
            WHILE j <= n AND c[j] ~ '^[0-9]$' LOOP j := j + 1; END LOOP;
            v := v || pg_catalog.repeat('c', j - i);
        ELSIF ch = '$' THEN  -- $tag$ (tag empty or an identifier without '$') quotes to the same $tag$
            IF j <= n AND c[j] ~ v_start THEN
                WHILE j <= n AND c[j] ~ '^([A-Za-z0-9_]|[^\x01-\x7f])$' LOOP j := j + 1; END LOOP;
            END IF;
            IF j <= n AND c[j] = '$' THEN
                v_tag := pg_catalog.array_to_string(c[i:j], '');
                d := j - i + 1;
                j := j + 1;
                LOOP
                    IF j + d - 1 > n THEN
                        PERFORM gcos._invalid(pg_catalog.format('gcos: the step''s SQL has an unterminated dollar quote at character %s', i));
                    END IF;
                    EXIT WHEN c[j] = '$' AND pg_catalog.array_to_string(c[j:j + d - 1], '') = v_tag;
                    j := j + 1;
                END LOOP;
                j := j + d;
                v := v || ('Q' || pg_catalog.repeat('q', j - i - 1));
            ELSE  -- '$' alone (PostgreSQL then reads what follows afresh)
                j := i + 1;
                v := v || 'c'::text;
            END IF;
        ELSIF ch ~ v_start THEN  -- an identifier or key word, '$' and digits inside it
            WHILE j <= n AND c[j] ~ '^([A-Za-z0-9_$]|[^\x01-\x7f])$' LOOP j := j + 1; END LOOP;
            v := v || pg_catalog.repeat('c', j - i);
        ELSIF ch ~ '^[0-9]$' THEN  -- a number (a '$' after it starts a dollar quote, as in PostgreSQL's lexer)
            WHILE j <= n AND c[j] ~ '^[0-9A-Za-z_.]$' LOOP j := j + 1; END LOOP;
            v := v || pg_catalog.repeat('c', j - i);
        ELSE
            v := v || CASE WHEN ch ~ '^[ \t\n\r\f\v;]$' THEN 'w' ELSE 'c' END;
        END IF;
        i := j;
    END LOOP;
    RETURN pg_catalog.array_to_string(v, '');
END
$$;

-- As 036, but the pieces are judged by gcos._online_lex: each begins and ends outside comments and quoted text,
-- only blanks, semicolons and whole comments lie between them, and each is kept without the blanks and comments
-- at its ends (they stay in the equivalent, which is the registered text with CONCURRENTLY taken out); a
-- concurrent piece holds no comment and no second statement.
CREATE OR REPLACE FUNCTION gcos._online_pieces(p_sql text, p_pieces jsonb, OUT pieces jsonb, OUT equivalent text)
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_sql constant text := COALESCE(p_sql, '');
    v_lex text;
    v_at integer := 1;
    v_pos integer;
    v_end integer;
    v_piece text;
    v_core text;
    m text[];
    s record;
BEGIN
    pieces := '[]';
    equivalent := '';
    IF pg_catalog.current_setting('standard_conforming_strings') <> 'on' THEN
        PERFORM gcos._invalid('gcos: an online step runs with standard_conforming_strings on (the kernel reads its quotes so); turn it on');
    END IF;
    IF pg_catalog.jsonb_typeof(p_pieces) IS DISTINCT FROM 'array' OR pg_catalog.jsonb_array_length(p_pieces) = 0 THEN
        PERFORM gcos._invalid('gcos: an online step runs its mutation statement by statement: name its statements (gcos commit does)');
    END IF;
    v_lex := gcos._online_lex(v_sql);
    FOR v_piece IN SELECT e.value FROM pg_catalog.jsonb_array_elements_text(p_pieces) AS e LOOP
        v_pos := pg_catalog.strpos(pg_catalog.substr(v_sql, v_at), v_piece);
        IF v_piece = '' OR v_pos = 0 THEN
            PERFORM gcos._invalid('gcos: the statements named are not the step''s mutation SQL, in order; the kernel runs only the registered text');
        END IF;
        v_pos := v_at + v_pos - 1;
        v_end := v_pos + pg_catalog.length(v_piece);
        IF pg_catalog.substr(v_lex, v_at, v_pos - v_at) !~ '^[wmM]*$'            -- between pieces: blanks, ';', whole comments
           OR pg_catalog.substr(v_lex, v_pos, 1) !~ '^[cwMQ]$'                    -- a piece starts a token ...
           OR (v_pos > 1 AND pg_catalog.substr(v_lex, v_pos - 1, 1) !~ '^[wmM]$') -- ... after a blank or a comment
           OR (v_end <= pg_catalog.length(v_sql) AND pg_catalog.substr(v_lex, v_end, 1) !~ '^[wM]$') THEN  -- and ends one
            PERFORM gcos._invalid('gcos: the statements named begin or end inside a comment or quoted text of the step''s mutation SQL; the kernel runs only its statements, never its comments');
        END IF;
        m := pg_catalog.regexp_match(pg_catalog.substr(v_lex, v_pos, v_end - v_pos), '^([wmM]*)(.*?)[wmM]*$');
        IF m[2] = '' THEN
            PERFORM gcos._invalid('gcos: a statement named is only blanks and comments; name the step''s statements');
        END IF;
        v_core := pg_catalog.substr(v_sql, v_pos + pg_catalog.length(m[1]), pg_catalog.length(m[2]));
        s := gcos._online_shape(v_core);
        IF s.kind IS NOT NULL AND (m[2] ~ '[mM]' OR EXISTS (
                SELECT FROM pg_catalog.generate_series(1, pg_catalog.length(m[2])) AS k
                 WHERE pg_catalog.substr(m[2], k, 1) = 'w' AND pg_catalog.substr(v_core, k, 1) = ';')) THEN
            PERFORM gcos._invalid('gcos: a concurrent statement of an online step is sent alone and verbatim: it holds no comment and no second statement');
        END IF;
        equivalent := equivalent || pg_catalog.substr(v_sql, v_at, v_pos + pg_catalog.length(m[1]) - v_at) || COALESCE(s.equivalent, v_core);
        pieces := pieces || pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object('sql', v_core, 'concurrent', s.kind IS NOT NULL));
        v_at := v_pos + pg_catalog.length(m[1]) + pg_catalog.length(m[2]);
    END LOOP;
    IF pg_catalog.substr(v_lex, v_at) !~ '^[wmM]*$' THEN
        PERFORM gcos._invalid('gcos: the statements named leave part of the step''s mutation SQL out; name every statement');
    END IF;
    equivalent := equivalent || pg_catalog.substr(v_sql, v_at);
END
$$;

-- The step's stop conditions and the plan's global stops as a commit judges them (gcos._commit_apply: each by
-- gcos._kernel_stop, an online step creating no tables; those an exception in force names waived by gcos._waive).
CREATE FUNCTION gcos._online_stops(p_spec jsonb, p_plan jsonb) RETURNS jsonb
    LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT gcos._waive((SELECT COALESCE(pg_catalog.jsonb_agg(gcos._kernel_stop(x.e, 0) ORDER BY x.o), '[]')
                          FROM pg_catalog.jsonb_array_elements(COALESCE(p_spec -> 'stop', '[]') || COALESCE(p_plan -> 'global_stop', '[]'))
                               WITH ORDINALITY AS x(e, o)),
                       'stop', gcos._spec_exceptions(p_spec), pg_catalog.jsonb_array_length(COALESCE(p_spec -> 'stop', '[]')))
$$;

-- As 036, and the step's stop conditions and the plan's global stops are judged after the last statement
-- (gcos._online_stops): one that holds writes `stop` (exit 4) with the count of statements applied, not `commit`.
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
    v_stops jsonb;
    v_held jsonb;
    v_record jsonb;
    v_write record;
BEGIN
    IF r.next_piece < pg_catalog.jsonb_array_length(r.pieces) THEN
        PERFORM gcos._invalid(pg_catalog.format('gcos: online run %s has run %s of %s statements', p_run_id, r.next_piece,
                                                pg_catalog.jsonb_array_length(r.pieces)));
    END IF;
    PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended('gcos:commit', 0));
    v_stops := gcos._online_stops(v_spec, v_plan);  -- judged after the last statement, as a commit's
    v_held := (SELECT e.value FROM pg_catalog.jsonb_array_elements(v_stops) AS e
                WHERE COALESCE((e.value ->> 'held')::boolean, false) AND NOT e.value ? 'waived' LIMIT 1);
    IF v_held IS NOT NULL THEN
        RETURN gcos._online_stop(p_run_id, pg_catalog.format('stop condition %L holds after the last statement (%s); the run stopped, nothing more was committed',
                                                             v_held ->> 'name', COALESCE(v_held ->> 'detail', 'held')), 'stopped')
               || pg_catalog.jsonb_build_object('stops', v_stops);
    END IF;
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
        'decision', r.decision, 'ledger_seq', v_write.seq, 'success', v_success, 'stops', v_stops,
        'message', pg_catalog.format('%s committed online in the kernel (%s statements, indexes proven): ledger seq %s, run %s',
                                     r.step_id, pg_catalog.jsonb_array_length(r.pieces), v_write.seq, p_run_id));
END
$$;

-- As 036, but every role the session can act as is judged: MEMBER (a NOINHERIT member SETs ROLE to the holder),
-- for the login role and for the role the session SET (SET ROLE gcos_kernel kept past a PostgreSQL 15 window).
CREATE OR REPLACE FUNCTION gcos._online_guard() RETURNS event_trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t record;
    v_roles text[];
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
    -- the roles this session acts as outside kernel executors: its login role and the role it SET (a kernel
    -- executor is SECURITY DEFINER: current_user gcos_kernel there, but the GUC role stays what the session SET)
    v_roles := ARRAY[session_user::text] || CASE WHEN pg_catalog.current_setting('role') <> 'none'
                                                THEN ARRAY[pg_catalog.current_setting('role')] ELSE '{}' END;
    IF (SELECT r.rolsuper FROM pg_catalog.pg_roles AS r WHERE r.rolname = session_user) THEN
        RETURN;
    END IF;
    IF EXISTS (SELECT FROM gcos.online_tickets AS k, pg_catalog.unnest(v_roles) AS u(role_name)
                WHERE pg_catalog.pg_has_role(u.role_name, k.role_name, 'MEMBER')) THEN
        RAISE EXCEPTION 'gcos: role % can act as a role that holds gcos_kernel''s rights lent to an online ticket of another session; % refused',
            session_user, TG_TAG USING ERRCODE = '42501';
    END IF;
    IF EXISTS (SELECT FROM pg_catalog.unnest(v_roles) AS u(role_name) WHERE pg_catalog.pg_has_role(u.role_name, 'gcos_kernel', 'MEMBER'))
       -- a role that can make itself gcos_kernel anyway (ADMIN OPTION; CREATEROLE before 16; the installer, a
       -- member of gcos_owner during its install) loses nothing by passing: gcos adopt and install make it a member
       AND NOT pg_catalog.pg_has_role(session_user, 'gcos_kernel', 'MEMBER WITH ADMIN OPTION')
       AND NOT pg_catalog.pg_has_role(session_user, 'gcos_owner', 'MEMBER')
       AND NOT (pg_catalog.current_setting('server_version_num')::integer < 160000
                AND (SELECT r.rolcreaterole FROM pg_catalog.pg_roles AS r WHERE r.rolname = session_user)) THEN
        RAISE EXCEPTION 'gcos: role % can act as gcos_kernel (an online ticket of another session or database, a grant, or a SET ROLE that outlived its window) and this session holds no ticket in this database; % refused',
            session_user, TG_TAG USING ERRCODE = '42501';
    END IF;
END
$$;

-- As 035, but a stop after the last statement (gcos.online_finish) says so instead of naming a statement past the end.
CREATE OR REPLACE FUNCTION gcos._online_stop(p_run_id text, p_reason text, p_outcome text DEFAULT 'commit_failed') RETURNS jsonb
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
    v_msg := CASE WHEN r.next_piece < pg_catalog.jsonb_array_length(r.pieces)
                  THEN pg_catalog.format('online commit of %s stopped at statement %s of %s: %s; statements before it stay applied (each committed on its own, idempotent): fix and run gcos commit again',
                                         r.step_id, r.next_piece + 1, pg_catalog.jsonb_array_length(r.pieces), p_reason)
                  ELSE pg_catalog.format('online commit of %s stopped after its last statement (all %s applied, each committed on its own, idempotent): %s',
                                         r.step_id, r.next_piece, p_reason) END;
    SELECT * INTO v_write FROM gcos._ledger_write('stop', r.step_id, r.spec_hash, r.trace_id, NULL,
        r.base || pg_catalog.jsonb_build_object('outcome', p_outcome, 'reason', v_msg, 'online', true,
                                                'statements_applied', r.next_piece, 'policy_decision', r.decision));
    RETURN r.base || pg_catalog.jsonb_build_object('outcome', p_outcome, 'message', v_msg, 'decision', r.decision,
                                                   'ledger_seq', v_write.seq);
END
$$;

RESET ROLE;
REVOKE ALL ON FUNCTION gcos._online_lex(text), gcos._online_stops(jsonb, jsonb) FROM PUBLIC;
