-- gcos fingerprint, category "event_trigger": database-wide event triggers by name (one whose function
-- lives in an excluded schema is left out).
-- fields: event, tags, function, enabled, owner, comment
SELECT quote_ident(t.evtname) AS identity,
       ROW(
           t.evtevent,
           (SELECT array_agg(x ORDER BY x) FROM unnest(t.evttags) AS x),
           t.evtfoid::regprocedure::text,
           t.evtenabled,
           pg_get_userbyid(t.evtowner),
           d.description
       )::text AS definition
  FROM pg_event_trigger AS t
  JOIN pg_proc AS p ON p.oid = t.evtfoid
  JOIN pg_namespace AS n ON n.oid = p.pronamespace
  LEFT JOIN pg_description AS d
         ON d.objoid = t.oid AND d.classoid = 'pg_event_trigger'::regclass AND d.objsubid = 0
 WHERE n.nspname <> ALL (%(exclude)s::text[])
   AND (%(no_extensions)s OR NOT EXISTS (SELECT FROM pg_depend AS e
                                           WHERE e.classid = 'pg_event_trigger'::regclass AND e.objid = t.oid AND e.deptype = 'e'))
