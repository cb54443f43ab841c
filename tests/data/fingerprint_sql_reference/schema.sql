-- gcos fingerprint, category "schema": every user schema.
-- fields: owner, acl, comment
SELECT quote_ident(n.nspname) AS identity,
       ROW(
           pg_get_userbyid(n.nspowner),
           CASE WHEN n.nspacl IS NOT NULL
                 AND NOT (n.nspacl @> acldefault('n', n.nspowner) AND n.nspacl <@ acldefault('n', n.nspowner))
                THEN (SELECT array_agg(x::text ORDER BY x::text) FROM unnest(n.nspacl) AS x) END,
           d.description
       )::text AS definition
  FROM pg_namespace AS n
  LEFT JOIN pg_description AS d
         ON d.objoid = n.oid AND d.classoid = 'pg_namespace'::regclass AND d.objsubid = 0
 WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
   AND n.nspname <> ALL (%(exclude)s::text[])
   AND (%(no_extensions)s OR NOT EXISTS (SELECT FROM pg_depend AS e
                                           WHERE e.classid = 'pg_namespace'::regclass AND e.objid = n.oid AND e.deptype = 'e'))
