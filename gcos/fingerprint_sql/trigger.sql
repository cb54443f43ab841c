-- gcos fingerprint, category "trigger": user triggers (foreign keys' internal ones are in
-- constraint.sql), named schema.table.trigger, by pg_get_triggerdef and enabled state
-- (O origin, D disabled, R replica, A always).
-- fields: definition, enabled, comment
WITH nsp AS (
    SELECT n.oid, quote_ident(n.nspname) AS qname
      FROM pg_namespace AS n
     WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
       AND n.nspname <> ALL (%(exclude)s::text[])
)
SELECT nsp.qname || '.' || quote_ident(c.relname) || '.' || quote_ident(t.tgname) AS identity,
       ROW(
           pg_get_triggerdef(t.oid),
           t.tgenabled,
           d.description
       )::text AS definition
  FROM pg_trigger AS t
  JOIN pg_class AS c ON c.oid = t.tgrelid
  JOIN nsp ON nsp.oid = c.relnamespace
  LEFT JOIN pg_description AS d
         ON d.objoid = t.oid AND d.classoid = 'pg_trigger'::regclass AND d.objsubid = 0
 WHERE NOT t.tgisinternal
   AND (%(no_extensions)s OR NOT EXISTS (SELECT FROM pg_depend AS e
                                           WHERE e.classid = 'pg_class'::regclass AND e.objid = c.oid AND e.deptype = 'e'))
