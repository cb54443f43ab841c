-- gcos fingerprint, category "collation": every collation of a user schema, named schema.collation.
-- fields: the catalog row as JSON without OIDs and without collversion (the provider library's version,
-- which an upgrade of ICU or glibc changes without a change of definition), owner, comment
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.collname) AS identity,
       ROW(
           (to_jsonb(c) - '{oid,collnamespace,collowner,collversion}'::text[])::text,
           pg_get_userbyid(c.collowner),
           d.description
       )::text AS definition
  FROM pg_collation AS c
  JOIN pg_namespace AS n ON n.oid = c.collnamespace
  LEFT JOIN pg_description AS d
         ON d.objoid = c.oid AND d.classoid = 'pg_collation'::regclass AND d.objsubid = 0
 WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
   AND n.nspname <> ALL (%(exclude)s::text[])
   AND (%(no_extensions)s OR NOT EXISTS (SELECT FROM pg_depend AS e
                                           WHERE e.classid = 'pg_collation'::regclass AND e.objid = c.oid AND e.deptype = 'e'))
