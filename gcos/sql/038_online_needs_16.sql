-- gcos schema version 38: online steps need PostgreSQL 16 or newer.
--
-- Before 16, GRANT carries SET ROLE with it: the membership an online ticket lends to the operator's login role
-- lets any session of that role SET ROLE gcos_kernel during the window, and PostgreSQL never re-checks a role once
-- set, so that session keeps gcos_kernel's rights to read and write rows of adopted tables after the window
-- closes (037 refuses its DDL, not its DML). From 16 the ticket lends INHERIT TRUE, SET FALSE. So the kernel
-- refuses online steps on older servers, at rehearse and at commit alike (gcos._online_pieces is the first thing
-- both call), with a sentence that says why and what to do instead.
SET LOCAL ROLE gcos_owner;

-- As 037's, refusing servers before PostgreSQL 16 first.
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
    IF pg_catalog.current_setting('server_version_num')::integer < 160000 THEN
        PERFORM gcos._invalid(pg_catalog.format('gcos: online steps need PostgreSQL 16 or newer (this server is %s): before 16 a lent membership carries SET ROLE, and a session that becomes gcos_kernel keeps its row rights after the window; write the step without CONCURRENTLY (mode: transactional)',
            pg_catalog.current_setting('server_version')));
    END IF;
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
