-- gcos fingerprint, category "rule": rewrite rules other than views' own _RETURN rule, named
-- schema.relation.rule, by pg_get_ruledef and enabled state.
-- fields: definition, enabled, comment
WITH nsp AS (
    SELECT n.oid, quote_ident(n.nspname) AS qname
      FROM pg_namespace AS n
     WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
       AND n.nspname <> ALL (%(exclude)s::text[])
)
SELECT nsp.qname || '.' || quote_ident(c.relname) || '.' || quote_ident(r.rulename) AS identity,
       ROW(
           pg_get_ruledef(r.oid),
           r.ev_enabled,
           d.description
       )::text AS definition
  FROM pg_rewrite AS r
  JOIN pg_class AS c ON c.oid = r.ev_class
  JOIN nsp ON nsp.oid = c.relnamespace
  LEFT JOIN pg_description AS d
         ON d.objoid = r.oid AND d.classoid = 'pg_rewrite'::regclass AND d.objsubid = 0
 WHERE r.rulename <> '_RETURN'
   AND (%(no_extensions)s OR NOT EXISTS (SELECT FROM pg_depend AS e
                                           WHERE e.classid = 'pg_class'::regclass AND e.objid = c.oid AND e.deptype = 'e'))
