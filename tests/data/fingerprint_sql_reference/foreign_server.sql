-- gcos fingerprint, category "foreign_server": foreign-data wrappers created in this database (not an
-- extension's), foreign servers and user mappings, named wrapper(wrapper), server(server) and
-- server.user(user mapping) (user PUBLIC for a mapping of every role). Options sorted; a user
-- mapping's options are left out (pg_user_mappings shows them only to some roles).
-- fields: handler, validator, options, owner, acl, comment (a wrapper); wrapper, type, version,
-- options, owner, acl, comment (a server)
WITH ext AS (
    SELECT e.classid, e.objid FROM pg_depend AS e
     WHERE NOT %(no_extensions)s AND e.deptype = 'e'
       AND e.classid IN ('pg_foreign_data_wrapper'::regclass, 'pg_foreign_server'::regclass)
)
SELECT quote_ident(w.fdwname) || '(wrapper)' AS identity,
       ROW(
           nullif(w.fdwhandler, 0)::regproc::text,
           nullif(w.fdwvalidator, 0)::regproc::text,
           (SELECT array_agg(o ORDER BY o COLLATE "C") FROM unnest(w.fdwoptions) AS o),
           pg_get_userbyid(w.fdwowner),
           (SELECT array_agg(x::text ORDER BY x::text) FROM unnest(w.fdwacl) AS x),
           d.description
       )::text AS definition
  FROM pg_foreign_data_wrapper AS w
  LEFT JOIN pg_description AS d
         ON d.objoid = w.oid AND d.classoid = 'pg_foreign_data_wrapper'::regclass AND d.objsubid = 0
 WHERE NOT EXISTS (SELECT FROM ext WHERE ext.classid = 'pg_foreign_data_wrapper'::regclass AND ext.objid = w.oid)
UNION ALL
SELECT quote_ident(s.srvname) || '(server)',
       ROW(
           w.fdwname,
           s.srvtype,
           s.srvversion,
           (SELECT array_agg(o ORDER BY o COLLATE "C") FROM unnest(s.srvoptions) AS o),
           pg_get_userbyid(s.srvowner),
           (SELECT array_agg(x::text ORDER BY x::text) FROM unnest(s.srvacl) AS x),
           d.description
       )::text
  FROM pg_foreign_server AS s
  JOIN pg_foreign_data_wrapper AS w ON w.oid = s.srvfdw
  LEFT JOIN pg_description AS d
         ON d.objoid = s.oid AND d.classoid = 'pg_foreign_server'::regclass AND d.objsubid = 0
 WHERE NOT EXISTS (SELECT FROM ext WHERE ext.classid = 'pg_foreign_server'::regclass AND ext.objid = s.oid)
UNION ALL
SELECT quote_ident(u.srvname) || '.' || quote_ident(u.usename) || '(user mapping)',
       ROW(NULL::text)::text
  FROM pg_user_mappings AS u
