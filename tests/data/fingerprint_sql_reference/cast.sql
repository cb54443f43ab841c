-- gcos fingerprint, category "cast": every cast created in this database (not built in: OID at least
-- 16384, FirstNormalObjectId), named "source AS target" (one quoted name: casts live in no schema).
-- fields: function, context, method, comment
SELECT quote_ident(format_type(c.castsource, NULL) || ' AS ' || format_type(c.casttarget, NULL)) AS identity,
       ROW(
           CASE WHEN c.castfunc <> 0 THEN c.castfunc::regprocedure::text END,
           c.castcontext,
           c.castmethod,
           d.description
       )::text AS definition
  FROM pg_cast AS c
  LEFT JOIN pg_description AS d
         ON d.objoid = c.oid AND d.classoid = 'pg_cast'::regclass AND d.objsubid = 0
 WHERE c.oid >= 16384
   AND (%(no_extensions)s OR NOT EXISTS (SELECT FROM pg_depend AS e
                                           WHERE e.classid = 'pg_cast'::regclass AND e.objid = c.oid AND e.deptype = 'e'))
