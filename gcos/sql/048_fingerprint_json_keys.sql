-- gcos schema version 48: the fingerprint writes each identity as a JSON string with PostgreSQL's own
-- to_json(text) instead of two regular-expression tests and replace()s per object (005's gcos._fp_json_sql):
-- ~20 ms of the 63 ms the column category took at 1,000 tables (15,416 objects). The text is the same:
-- to_json escapes exactly " and \ (as \" and \\), \b \f \n \r \t, every other character below U+0020 as
-- \u00xx in lower-case hex, and writes every other character as itself, which is what RFC 8785 and
-- gcos._jcs_string write (a text value cannot hold U+0000). Every recorded hash keeps its value
-- (tests/test_fingerprint_queries_identical.py checks it against 005's expression on identities made of
-- every such character).
SET LOCAL ROLE gcos_owner;

CREATE OR REPLACE FUNCTION gcos._fp_json_sql(p_column text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT pg_catalog.format('(to_json(%1$s)::text)', p_column)
$fn$;
