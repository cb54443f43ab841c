-- gcos schema version 39: the kernel's executors read a step's SQL one way, whatever the caller's session says.
--
-- A step's SQL is judged (the client's parser, the kernel's online lexer, the rehearsal) with
-- standard_conforming_strings on, PostgreSQL's default. A caller could turn it off in its own session before a
-- commit, and then the executor, running as gcos_kernel inside that session, would read backslashes in string
-- literals as escapes: 'a\' would no longer end where it ended when the step was rehearsed and approved, and text
-- the approvers saw inside a literal could run as a statement. Every executor (the functions of schema gcos that
-- gcos_kernel owns, marked by 032) now carries standard_conforming_strings = on, which PostgreSQL applies for the
-- call and restores after it, so what runs is read as it was rehearsed.
DO $$
DECLARE
    f record;
BEGIN
    FOR f IN SELECT p.oid::regprocedure AS fn FROM pg_catalog.pg_proc AS p
              WHERE p.pronamespace = 'gcos'::regnamespace AND p.proowner = 'gcos_kernel'::regrole LOOP
        EXECUTE pg_catalog.format('ALTER FUNCTION %s SET standard_conforming_strings = on', f.fn);
    END LOOP;
END
$$;
