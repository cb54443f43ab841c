-- gcos fingerprint, sequence state before PostgreSQL 18 (no pg_get_sequence_data): the sequences of
-- sequence.sql the current role may SELECT, with pg_sequence_last_value (NULL when nextval was not
-- called since creation, RESTART or setval(..., false)); the caller reads last_value/is_called of
-- those from the sequences themselves.
WITH nsp AS (
    SELECT n.oid, n.nspname, quote_ident(n.nspname) AS qname
      FROM pg_namespace AS n
     WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
       AND n.nspname <> ALL (%(exclude)s::text[])
)
SELECT nsp.qname || '.' || quote_ident(c.relname) AS identity,
       nsp.nspname,
       c.relname,
       s.seqincrement,
       pg_sequence_last_value(c.oid) AS last_value
  FROM pg_sequence AS s
  JOIN pg_class AS c ON c.oid = s.seqrelid
  JOIN nsp ON nsp.oid = c.relnamespace
 WHERE CASE WHEN c.relkind = 'S' THEN has_sequence_privilege(c.oid, 'SELECT') ELSE false END
   AND (%(no_extensions)s OR NOT EXISTS (SELECT FROM pg_depend AS e
                                           WHERE e.classid = 'pg_class'::regclass AND e.objid = c.oid AND e.deptype = 'e'))
