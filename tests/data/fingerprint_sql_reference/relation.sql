-- gcos fingerprint, category "relation": tables, partitioned tables, views, materialized views and
-- foreign tables: the view query, partitioning, inheritance, typed-table type, options, persistence,
-- row-level security, replica identity, tablespace, access method, foreign server. Columns (with their
-- position) are in column.sql.
-- fields: kind, owner, acl, options, persistence, row_security, force_row_security, replica_identity, tablespace, access_method, of_type, partition_key, partition_bound, inherits, query, populated, foreign_server, foreign_options, comment
WITH nsp AS (
    SELECT n.oid, quote_ident(n.nspname) AS qname
      FROM pg_namespace AS n
     WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
       AND n.nspname <> ALL (%(exclude)s::text[])
)
SELECT nsp.qname || '.' || quote_ident(c.relname) AS identity,
       ROW(
           c.relkind,
           pg_get_userbyid(c.relowner),
           CASE WHEN c.relacl IS NOT NULL
                 AND NOT (c.relacl @> acldefault('r', c.relowner) AND c.relacl <@ acldefault('r', c.relowner))
                THEN (SELECT array_agg(x::text ORDER BY x::text) FROM unnest(c.relacl) AS x) END,
           CASE WHEN c.reloptions IS NOT NULL THEN (SELECT array_agg(o ORDER BY o) FROM unnest(c.reloptions) AS o) END,
           c.relpersistence,
           c.relrowsecurity,
           c.relforcerowsecurity,
           c.relreplident,
           ts.spcname,
           am.amname,
           CASE WHEN c.reloftype <> 0 THEN format_type(c.reloftype, NULL) END,
           CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END,
           CASE WHEN c.relispartition THEN pg_get_expr(c.relpartbound, c.oid) END,
           (SELECT array_agg(i.inhparent::regclass::text ORDER BY i.inhseqno) FROM pg_inherits AS i WHERE i.inhrelid = c.oid),
           CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END,
           CASE WHEN c.relkind = 'm' THEN c.relispopulated END,
           CASE WHEN c.relkind = 'f' THEN
               (SELECT quote_ident(s.srvname) FROM pg_foreign_table AS f JOIN pg_foreign_server AS s ON s.oid = f.ftserver
                 WHERE f.ftrelid = c.oid) END,
           CASE WHEN c.relkind = 'f' THEN
               (SELECT array_agg(o ORDER BY o) FROM pg_foreign_table AS f, unnest(f.ftoptions) AS o
                 WHERE f.ftrelid = c.oid) END,
           d.description
       )::text AS definition
  FROM pg_class AS c
  JOIN nsp ON nsp.oid = c.relnamespace
  LEFT JOIN pg_tablespace AS ts ON ts.oid = c.reltablespace
  LEFT JOIN pg_am AS am ON am.oid = c.relam
  LEFT JOIN pg_description AS d
         ON d.objoid = c.oid AND d.classoid = 'pg_class'::regclass AND d.objsubid = 0
 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
   AND (%(no_extensions)s OR NOT EXISTS (SELECT FROM pg_depend AS e
                                           WHERE e.classid = 'pg_class'::regclass AND e.objid = c.oid AND e.deptype = 'e'))
