-- gcos fingerprint, category "policy": row-level security policies, named schema.table.policy (whether
-- RLS is enabled/forced on the table is in relation.sql).
-- fields: command, permissive, roles, using, with_check, comment
WITH nsp AS (
    SELECT n.oid, quote_ident(n.nspname) AS qname
      FROM pg_namespace AS n
     WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
       AND n.nspname <> ALL (%(exclude)s::text[])
)
SELECT nsp.qname || '.' || quote_ident(c.relname) || '.' || quote_ident(p.polname) AS identity,
       ROW(
           p.polcmd,
           p.polpermissive,
           (SELECT array_agg(CASE WHEN r = 0 THEN 'public' ELSE quote_ident(pg_get_userbyid(r)) END ORDER BY 1)
              FROM unnest(p.polroles) AS r),
           pg_get_expr(p.polqual, p.polrelid),
           pg_get_expr(p.polwithcheck, p.polrelid),
           d.description
       )::text AS definition
  FROM pg_policy AS p
  JOIN pg_class AS c ON c.oid = p.polrelid
  JOIN nsp ON nsp.oid = c.relnamespace
  LEFT JOIN pg_description AS d
         ON d.objoid = p.oid AND d.classoid = 'pg_policy'::regclass AND d.objsubid = 0
 WHERE (%(no_extensions)s OR NOT EXISTS (SELECT FROM pg_depend AS e
                                           WHERE e.classid = 'pg_class'::regclass AND e.objid = c.oid AND e.deptype = 'e'))
