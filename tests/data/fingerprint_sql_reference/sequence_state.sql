-- gcos fingerprint, sequence state (residue, not part of the hash): last_value and is_called of every
-- sequence of sequence.sql the current role may SELECT, by pg_get_sequence_data (PostgreSQL 18+;
-- before that, sequence_state_legacy.sql).
WITH nsp AS (
    SELECT n.oid, quote_ident(n.nspname) AS qname
      FROM pg_namespace AS n
     WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
       AND n.nspname <> ALL (%(exclude)s::text[])
), seq AS (
    SELECT nsp.qname || '.' || quote_ident(c.relname) AS identity, c.oid, s.seqincrement
      FROM pg_sequence AS s
      JOIN pg_class AS c ON c.oid = s.seqrelid
      JOIN nsp ON nsp.oid = c.relnamespace
     WHERE CASE WHEN c.relkind = 'S' THEN has_sequence_privilege(c.oid, 'SELECT') ELSE false END
       AND (%(no_extensions)s OR NOT EXISTS (SELECT FROM pg_depend AS e
                                           WHERE e.classid = 'pg_class'::regclass AND e.objid = c.oid AND e.deptype = 'e'))
)
SELECT seq.identity, seq.seqincrement, d.last_value, d.is_called
  FROM seq, LATERAL pg_get_sequence_data(seq.oid) AS d
