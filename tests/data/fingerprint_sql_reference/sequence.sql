-- gcos fingerprint, category "sequence": each sequence's DEFINITION — data type, start, increment,
-- bounds, cache, cycle, the column owning it (OWNED BY, or an identity column), persistence — never its
-- current value (nextval is not transactional: sequence_state.sql).
-- fields: type, start, increment, min, max, cache, cycle, owned_by, persistence, owner, acl, comment
WITH nsp AS (
    SELECT n.oid, quote_ident(n.nspname) AS qname
      FROM pg_namespace AS n
     WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
       AND n.nspname <> ALL (%(exclude)s::text[])
)
SELECT nsp.qname || '.' || quote_ident(c.relname) AS identity,
       ROW(
           format_type(s.seqtypid, NULL),
           s.seqstart::text,
           s.seqincrement::text,
           s.seqmin::text,
           s.seqmax::text,
           s.seqcache::text,
           s.seqcycle,
           CASE WHEN dep.objid IS NOT NULL THEN
               dep.refobjid::regclass::text || '.' || quote_ident(a.attname)
               || CASE WHEN dep.deptype = 'i' THEN ' (identity)' ELSE '' END END,
           c.relpersistence,
           pg_get_userbyid(c.relowner),
           CASE WHEN c.relacl IS NOT NULL
                 AND NOT (c.relacl @> acldefault('s', c.relowner) AND c.relacl <@ acldefault('s', c.relowner))
                THEN (SELECT array_agg(x::text ORDER BY x::text) FROM unnest(c.relacl) AS x) END,
           d.description
       )::text AS definition
  FROM pg_sequence AS s
  JOIN pg_class AS c ON c.oid = s.seqrelid
  JOIN nsp ON nsp.oid = c.relnamespace
  LEFT JOIN pg_depend AS dep
         ON dep.classid = 'pg_class'::regclass AND dep.objid = c.oid AND dep.objsubid = 0
        AND dep.refclassid = 'pg_class'::regclass AND dep.refobjsubid > 0 AND dep.deptype IN ('a', 'i')
  LEFT JOIN pg_attribute AS a ON a.attrelid = dep.refobjid AND a.attnum = dep.refobjsubid
  LEFT JOIN pg_description AS d
         ON d.objoid = c.oid AND d.classoid = 'pg_class'::regclass AND d.objsubid = 0
 WHERE (%(no_extensions)s OR NOT EXISTS (SELECT FROM pg_depend AS e
                                           WHERE e.classid = 'pg_class'::regclass AND e.objid = c.oid AND e.deptype = 'e'))
