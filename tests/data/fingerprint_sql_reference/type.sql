-- gcos fingerprint, category "type": user-defined types, named schema.type: domains (base type, NOT
-- NULL, default, collation; their CHECKs are in constraint.sql), enums WITH their labels in order,
-- stand-alone composite types (attributes in order), ranges, base types. Not the row types of tables or
-- the automatic array and multirange types.
-- fields: kind, base, not_null, default, collation, labels, attributes, range, base_type, owner, acl, comment
WITH nsp AS (
    SELECT n.oid, quote_ident(n.nspname) AS qname
      FROM pg_namespace AS n
     WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
       AND n.nspname <> ALL (%(exclude)s::text[])
)
SELECT nsp.qname || '.' || quote_ident(t.typname) AS identity,
       ROW(
           t.typtype,
           CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) END,
           CASE WHEN t.typtype = 'd' THEN t.typnotnull END,
           CASE WHEN t.typtype = 'd' THEN pg_get_expr(t.typdefaultbin, 0) END,
           CASE WHEN t.typcollation NOT IN (0, 100) THEN t.typcollation::regcollation::text END,
           CASE WHEN t.typtype = 'e' THEN
               (SELECT array_agg(e.enumlabel::text ORDER BY e.enumsortorder) FROM pg_enum AS e WHERE e.enumtypid = t.oid) END,
           CASE WHEN t.typtype = 'c' THEN
               (SELECT array_agg(quote_ident(a.attname) || ' ' || format_type(a.atttypid, a.atttypmod)
                                 || CASE WHEN a.attcollation NOT IN (0, 100) THEN ' COLLATE ' || a.attcollation::regcollation::text ELSE '' END
                                 ORDER BY a.attnum)
                  FROM pg_attribute AS a
                 WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped) END,
           CASE WHEN t.typtype = 'r' THEN
               (SELECT ROW(format_type(r.rngsubtype, NULL),
                           CASE WHEN r.rngcollation NOT IN (0, 100) THEN r.rngcollation::regcollation::text END,
                           (SELECT quote_ident(oc_n.nspname) || '.' || quote_ident(oc.opcname)
                              FROM pg_opclass AS oc JOIN pg_namespace AS oc_n ON oc_n.oid = oc.opcnamespace
                             WHERE oc.oid = r.rngsubopc),
                           r.rngcanonical::regprocedure::text, r.rngsubdiff::regprocedure::text,
                           format_type(r.rngmultitypid, NULL))::text
                  FROM pg_range AS r WHERE r.rngtypid = t.oid) END,
           CASE WHEN t.typtype = 'b' THEN
               ROW(t.typinput::regprocedure::text, t.typoutput::regprocedure::text,
                   t.typreceive::regprocedure::text, t.typsend::regprocedure::text,
                   t.typmodin::regprocedure::text, t.typmodout::regprocedure::text,
                   t.typanalyze::regprocedure::text, t.typsubscript::regprocedure::text,
                   t.typlen::text, t.typbyval, t.typalign, t.typstorage, t.typcategory, t.typispreferred,
                   t.typdelim, CASE WHEN t.typelem <> 0 THEN format_type(t.typelem, NULL) END, t.typdefault)::text END,
           pg_get_userbyid(t.typowner),
           CASE WHEN t.typacl IS NOT NULL
                 AND NOT (t.typacl @> acldefault('T', t.typowner) AND t.typacl <@ acldefault('T', t.typowner))
                THEN (SELECT array_agg(x::text ORDER BY x::text) FROM unnest(t.typacl) AS x) END,
           d.description
       )::text AS definition
  FROM pg_type AS t
  JOIN nsp ON nsp.oid = t.typnamespace
  LEFT JOIN pg_description AS d
         ON d.objoid = t.oid AND d.classoid = 'pg_type'::regclass AND d.objsubid = 0
  LEFT JOIN pg_class AS tr ON tr.oid = t.typrelid
 WHERE t.typtype IN ('b', 'c', 'd', 'e', 'r')
   AND (t.typtype <> 'c' OR tr.relkind = 'c')
   AND NOT EXISTS (SELECT FROM pg_type AS el WHERE el.typarray = t.oid)
   AND (%(no_extensions)s OR NOT EXISTS (SELECT FROM pg_depend AS e
                                           WHERE e.classid = 'pg_type'::regclass AND e.objid = t.oid AND e.deptype = 'e'))
