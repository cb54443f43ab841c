-- gcos fingerprint, category "trigger": user triggers (foreign keys' internal ones are in
-- constraint.sql), named schema.table.trigger, by pg_get_triggerdef and enabled state
-- (O origin, D disabled, R replica, A always). The kernel's window shield (040) is left out while intact
-- (as gcos._window_shielded: its function, shape and ENABLE ALWAYS), so putting it on is no drift; a disabled or
-- altered one shows.
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
   AND NOT (t.tgname = 'gcos_window_shield' AND t.tgenabled = 'A' AND t.tgqual IS NULL AND t.tgnargs = 0
            AND t.tgtype IN (30, 62) AND cardinality(t.tgattr::smallint[]) = 0
            AND t.tgfoid IS NOT DISTINCT FROM to_regprocedure('gcos._window_shield()'))
   AND (%(no_extensions)s OR NOT EXISTS (SELECT FROM pg_depend AS e
                                           WHERE e.classid = 'pg_class'::regclass AND e.objid = c.oid AND e.deptype = 'e'))
