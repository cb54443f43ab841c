-- gcos fingerprint, category "constraint": table constraints (schema.table.name) and domain constraints
-- (schema.domain.name). CHECK, FOREIGN KEY, EXCLUDE and trigger constraints by pg_get_constraintdef;
-- PRIMARY KEY and UNIQUE by their index (whose columns, INCLUDE, options and tablespace index.sql
-- describes) and deferrability — pg_get_constraintdef would print the same facts, with catalog lookups
-- per constraint. A table's NOT NULL constraints (PostgreSQL 18) belong to their column (column.sql).
-- Foreign keys also carry the enabled state of their internal triggers (DISABLE TRIGGER ALL switches
-- referential integrity off), listed by table and function, never by trigger name (names carry OIDs).
-- rel and dom are MATERIALIZED: inlined, the planner joins each constraint's table to the schema list in a
-- nested loop, rebuilding a hash of every schema per constraint (quadratic in schema-per-tenant databases).
-- fields: type, definition, index, deferrable, deferred, validated, local, inherited, no_inherit, triggers, comment
WITH nsp AS (
    SELECT n.oid, quote_ident(n.nspname) AS qname
      FROM pg_namespace AS n
     WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
       AND n.nspname <> ALL (%(exclude)s::text[])
), rel AS MATERIALIZED (
    SELECT c.oid, nsp.qname || '.' || quote_ident(c.relname) AS qname
      FROM pg_class AS c
      JOIN nsp ON nsp.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
       AND (%(no_extensions)s OR NOT EXISTS (SELECT FROM pg_depend AS e
                                           WHERE e.classid = 'pg_class'::regclass AND e.objid = c.oid AND e.deptype = 'e'))
), dom AS MATERIALIZED (
    SELECT t.oid, nsp.qname || '.' || quote_ident(t.typname) AS qname
      FROM pg_type AS t
      JOIN nsp ON nsp.oid = t.typnamespace
     WHERE t.typtype = 'd'
       AND (%(no_extensions)s OR NOT EXISTS (SELECT FROM pg_depend AS e
                                           WHERE e.classid = 'pg_type'::regclass AND e.objid = t.oid AND e.deptype = 'e'))
)
SELECT coalesce(rel.qname, dom.qname) || '.' || quote_ident(co.conname) AS identity,
       ROW(
           co.contype,
           CASE WHEN co.contype NOT IN ('p', 'u') THEN pg_get_constraintdef(co.oid) END,
           CASE WHEN co.conindid <> 0 THEN quote_ident(xn.nspname) || '.' || quote_ident(xc.relname) END,
           co.condeferrable,
           co.condeferred,
           co.convalidated,
           co.conislocal,
           co.coninhcount::text,
           co.connoinherit,
           CASE WHEN co.contype = 'f' THEN
               (SELECT array_agg(x ORDER BY x)
                  FROM (SELECT t.tgrelid::regclass::text || ' ' || t.tgfoid::regproc::text || ' ' || t.tgenabled::text AS x
                          FROM pg_trigger AS t
                         WHERE t.tgconstraint = co.oid AND t.tgisinternal) AS s) END,
           d.description
       )::text AS definition
  FROM pg_constraint AS co
  LEFT JOIN rel ON rel.oid = co.conrelid
  LEFT JOIN dom ON dom.oid = co.contypid
  LEFT JOIN pg_class AS xc ON xc.oid = co.conindid
  LEFT JOIN pg_namespace AS xn ON xn.oid = xc.relnamespace
  LEFT JOIN pg_description AS d
         ON d.objoid = co.oid AND d.classoid = 'pg_constraint'::regclass AND d.objsubid = 0
 WHERE (rel.oid IS NOT NULL AND co.contype <> 'n') OR dom.oid IS NOT NULL
