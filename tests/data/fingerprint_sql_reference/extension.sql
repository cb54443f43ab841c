-- gcos fingerprint, category "extension": installed extensions by name (their member objects are left
-- out of the other categories, as pg_dump does); one installed in an excluded schema is left out.
-- fields: version, schema, owner, relocatable, comment
SELECT quote_ident(x.extname) AS identity,
       ROW(
           x.extversion,
           quote_ident(n.nspname),
           pg_get_userbyid(x.extowner),
           x.extrelocatable,
           d.description
       )::text AS definition
  FROM pg_extension AS x
  JOIN pg_namespace AS n ON n.oid = x.extnamespace
  LEFT JOIN pg_description AS d
         ON d.objoid = x.oid AND d.classoid = 'pg_extension'::regclass AND d.objsubid = 0
 WHERE n.nspname <> ALL (%(exclude)s::text[])
