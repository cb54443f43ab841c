-- gcos fingerprint, category "statistics": extended statistics OBJECTS (CREATE STATISTICS), named
-- schema.name — their definitions, never the statistics ANALYZE gathers.
-- fields: definition, target, owner, comment
WITH nsp AS (
    SELECT n.oid, quote_ident(n.nspname) AS qname
      FROM pg_namespace AS n
     WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
       AND n.nspname <> ALL (%(exclude)s::text[])
)
SELECT nsp.qname || '.' || quote_ident(s.stxname) AS identity,
       ROW(
           pg_get_statisticsobjdef(s.oid),
           s.stxstattarget::text,
           pg_get_userbyid(s.stxowner),
           d.description
       )::text AS definition
  FROM pg_statistic_ext AS s
  JOIN nsp ON nsp.oid = s.stxnamespace
  LEFT JOIN pg_description AS d
         ON d.objoid = s.oid AND d.classoid = 'pg_statistic_ext'::regclass AND d.objsubid = 0
 WHERE (%(no_extensions)s OR NOT EXISTS (SELECT FROM pg_depend AS e
                                           WHERE e.classid = 'pg_statistic_ext'::regclass AND e.objid = s.oid AND e.deptype = 'e'))
