-- gcos fingerprint, category "column": every live column of the relations of relation.sql, named
-- schema.relation.column. The collation only when it is not the database default. A DEFAULT cannot
-- refer to columns, so it is deparsed without the table (pg_get_expr(adbin, 0): no relcache entry to
-- build per table, much faster on a fresh connection); a generation expression needs the table.
-- not_null_constraint: the named NOT NULL constraint of PostgreSQL 18 (name, validated, NO INHERIT,
-- local, inherited count, comment).
-- position: the column's rank among the live columns of its relation (1, 2, ...: dropped columns leave
-- no gap, so a table rebuilt without them is the same; counted only for relations that have some).
-- fields: position, type, not_null, not_null_constraint, default, storage, comment, more
-- "more" is NULL for the common column and otherwise the record (generated, identity, collation,
-- compression, statistics_target, options, fdw_options, acl, local, inherited, not_null_validated,
-- not_null_no_inherit, not_null_local, not_null_inherited): rare attributes cost nothing when unset.
WITH nsp AS (
    SELECT n.oid, quote_ident(n.nspname) AS qname
      FROM pg_namespace AS n
     WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
       AND n.nspname <> ALL (%(exclude)s::text[])
), rel AS (
    SELECT c.oid, nsp.qname || '.' || quote_ident(c.relname) AS qname,
           EXISTS (SELECT FROM pg_attribute AS x WHERE x.attrelid = c.oid AND x.attisdropped) AS has_dropped
      FROM pg_class AS c
      JOIN nsp ON nsp.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
       AND (%(no_extensions)s OR NOT EXISTS (SELECT FROM pg_depend AS e
                                           WHERE e.classid = 'pg_class'::regclass AND e.objid = c.oid AND e.deptype = 'e'))
)
SELECT rel.qname || '.' || quote_ident(a.attname) AS identity,
       ROW(
           CASE WHEN rel.has_dropped
                THEN a.attnum - (SELECT count(*) FROM pg_attribute AS x
                                  WHERE x.attrelid = a.attrelid AND x.attisdropped AND x.attnum < a.attnum)
                ELSE a.attnum END,
           format_type(a.atttypid, a.atttypmod),
           a.attnotnull,
           nn.conname,
           CASE WHEN a.attgenerated = '' THEN pg_get_expr(ad.adbin, 0) END,
           a.attstorage,
           d.description,
           CASE WHEN a.attgenerated <> '' OR a.attidentity <> '' OR a.attcollation NOT IN (0, 100)
                  OR a.attcompression <> '' OR coalesce(a.attstattarget, -1) <> -1 OR a.attoptions IS NOT NULL
                  OR a.attfdwoptions IS NOT NULL OR a.attacl IS NOT NULL OR NOT a.attislocal OR a.attinhcount <> 0
                  OR NOT nn.convalidated OR nn.connoinherit OR NOT nn.conislocal OR nn.coninhcount <> 0
                THEN ROW(
                    CASE WHEN a.attgenerated <> '' THEN a.attgenerated::text || ' ' || pg_get_expr(ad.adbin, ad.adrelid) END,
                    nullif(a.attidentity, ''),
                    CASE WHEN a.attcollation NOT IN (0, 100) THEN a.attcollation::regcollation::text END,
                    nullif(a.attcompression, ''),
                    a.attstattarget::text,
                    CASE WHEN a.attoptions IS NOT NULL THEN (SELECT array_agg(o ORDER BY o) FROM unnest(a.attoptions) AS o) END,
                    CASE WHEN a.attfdwoptions IS NOT NULL THEN (SELECT array_agg(o ORDER BY o) FROM unnest(a.attfdwoptions) AS o) END,
                    CASE WHEN a.attacl IS NOT NULL AND a.attacl <> '{}' THEN (SELECT array_agg(x::text ORDER BY x::text) FROM unnest(a.attacl) AS x) END,
                    a.attislocal,
                    a.attinhcount::text,
                    nn.convalidated,
                    nn.connoinherit,
                    nn.conislocal,
                    nn.coninhcount::text,
                    nd.description
                )::text END
       )::text AS definition
  FROM pg_attribute AS a
  JOIN rel ON rel.oid = a.attrelid
  LEFT JOIN pg_attrdef AS ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
  LEFT JOIN pg_constraint AS nn ON nn.contype = 'n' AND nn.conrelid = a.attrelid AND nn.conkey[1] = a.attnum
  LEFT JOIN pg_description AS nd
         ON nd.objoid = nn.oid AND nd.classoid = 'pg_constraint'::regclass AND nd.objsubid = 0
  LEFT JOIN pg_description AS d
         ON d.objoid = a.attrelid AND d.classoid = 'pg_class'::regclass AND d.objsubid = a.attnum
 WHERE a.attnum > 0 AND NOT a.attisdropped
