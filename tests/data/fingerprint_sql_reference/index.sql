-- gcos fingerprint, category "index": every index of the relations of relation.sql, named schema.index.
-- A plain index is described from the catalog in bulk — table, access method, uniqueness, each column
-- with its operator class, collation, ordering flags and options, INCLUDE columns, storage options — the
-- same facts pg_get_indexdef prints, without its per-index catalog lookups (~30 µs each on a fresh
-- connection). An index with expressions or a predicate also carries pg_get_indexdef. Plus validity,
-- replica-identity use, tablespace, comment. Not indisclustered: CLUSTER sets it, no definition changes.
-- fields: table, method, unique, nulls_not_distinct, primary, exclusion, immediate, columns, options, expression_definition, valid, replica_identity, tablespace, comment
WITH nsp AS (
    SELECT n.oid, quote_ident(n.nspname) AS qname
      FROM pg_namespace AS n
     WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
       AND n.nspname <> ALL (%(exclude)s::text[])
), ix AS (
    SELECT i.indexrelid, i.indrelid, i.indnkeyatts, i.indkey, i.indclass, i.indcollation, i.indoption,
           nsp.qname || '.' || quote_ident(ic.relname) AS identity
      FROM pg_index AS i
      JOIN pg_class AS ic ON ic.oid = i.indexrelid
      JOIN nsp ON nsp.oid = ic.relnamespace
     WHERE (%(no_extensions)s OR NOT EXISTS (SELECT FROM pg_depend AS e
                                           WHERE e.classid = 'pg_class'::regclass AND e.objid = i.indrelid AND e.deptype = 'e'))
), iattr AS (  -- index columns with opclass options or a statistics target: rare, so a small hash
    SELECT a.attrelid, a.attnum, a.attoptions, a.attstattarget
      FROM pg_attribute AS a
     WHERE a.attoptions IS NOT NULL OR coalesce(a.attstattarget, -1) <> -1
), cols AS (
    SELECT ix.indexrelid,
           array_agg(coalesce(quote_ident(a.attname), '(expression)')
                     || CASE WHEN k.n <= ix.indnkeyatts
                             THEN ' ' || quote_ident(opn.nspname) || '.' || quote_ident(opc.opcname)
                                  || CASE WHEN k.coll NOT IN (0, 100)
                                          THEN ' COLLATE ' || quote_ident(cn.nspname) || '.' || quote_ident(co.collname)
                                          ELSE '' END
                                  || ' ' || k.opt::text
                             ELSE ' INCLUDE' END
                     || coalesce(' ' || ia.attoptions::text, '')
                     || coalesce(' STATISTICS ' || ia.attstattarget::text, '')
                     ORDER BY k.n) AS columns
      FROM ix
     CROSS JOIN LATERAL unnest(ix.indkey::int2[], ix.indclass::oid[], ix.indcollation::oid[], ix.indoption::int2[])
                        WITH ORDINALITY AS k(attnum, opclass, coll, opt, n)
      LEFT JOIN pg_attribute AS a ON a.attrelid = ix.indrelid AND a.attnum = k.attnum
      LEFT JOIN iattr AS ia ON ia.attrelid = ix.indexrelid AND ia.attnum = k.n
      LEFT JOIN pg_opclass AS opc ON opc.oid = k.opclass
      LEFT JOIN pg_namespace AS opn ON opn.oid = opc.opcnamespace
      LEFT JOIN pg_collation AS co ON co.oid = k.coll
      LEFT JOIN pg_namespace AS cn ON cn.oid = co.collnamespace
     GROUP BY ix.indexrelid
)
SELECT ix.identity,
       ROW(
           quote_ident(tn.nspname) || '.' || quote_ident(tc.relname),
           am.amname,
           i.indisunique,
           CASE WHEN i.indisunique THEN i.indnullsnotdistinct END,
           i.indisprimary,
           i.indisexclusion,
           i.indimmediate,
           cols.columns,
           CASE WHEN ic.reloptions IS NOT NULL THEN (SELECT array_agg(o ORDER BY o) FROM unnest(ic.reloptions) AS o) END,
           CASE WHEN i.indexprs IS NOT NULL OR i.indpred IS NOT NULL THEN pg_get_indexdef(i.indexrelid) END,
           i.indisvalid,
           i.indisreplident,
           ts.spcname,
           d.description
       )::text AS definition
  FROM ix
  JOIN pg_index AS i ON i.indexrelid = ix.indexrelid
  JOIN pg_class AS ic ON ic.oid = ix.indexrelid
  JOIN pg_class AS tc ON tc.oid = ix.indrelid
  JOIN pg_namespace AS tn ON tn.oid = tc.relnamespace
  JOIN pg_am AS am ON am.oid = ic.relam
  LEFT JOIN cols ON cols.indexrelid = ix.indexrelid
  LEFT JOIN pg_tablespace AS ts ON ts.oid = ic.reltablespace
  LEFT JOIN pg_description AS d
         ON d.objoid = ix.indexrelid AND d.classoid = 'pg_class'::regclass AND d.objsubid = 0
