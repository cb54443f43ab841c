-- gcos fingerprint, category "function": functions, procedures, aggregates and window functions, named
-- schema.name(input argument types). pg_get_functiondef is the whole CREATE statement: arguments,
-- result, language, body, volatility, strictness, SECURITY DEFINER, leakproof, parallel safety,
-- cost/rows, SET options (search_path). Aggregates have none: their pg_aggregate row instead.
-- fields: kind, definition, arguments, result, aggregate, owner, acl, comment
WITH nsp AS (
    SELECT n.oid, quote_ident(n.nspname) AS qname
      FROM pg_namespace AS n
     WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
       AND n.nspname <> ALL (%(exclude)s::text[])
)
SELECT nsp.qname || '.' || quote_ident(p.proname) || '(' || oidvectortypes(p.proargtypes) || ')' AS identity,
       ROW(
           p.prokind,
           CASE WHEN p.prokind <> 'a' THEN pg_get_functiondef(p.oid) END,
           pg_get_function_arguments(p.oid),
           pg_get_function_result(p.oid),
           CASE WHEN p.prokind = 'a' THEN
               (SELECT ROW(g.aggkind, g.aggnumdirectargs::text, g.aggtransfn::regprocedure::text,
                           g.aggfinalfn::regprocedure::text, g.aggcombinefn::regprocedure::text,
                           g.aggserialfn::regprocedure::text, g.aggdeserialfn::regprocedure::text,
                           g.aggmtransfn::regprocedure::text, g.aggminvtransfn::regprocedure::text,
                           g.aggmfinalfn::regprocedure::text, g.aggfinalextra, g.aggmfinalextra,
                           g.aggfinalmodify, g.aggmfinalmodify, g.aggsortop::regoperator::text,
                           format_type(g.aggtranstype, NULL), g.aggtransspace::text,
                           format_type(nullif(g.aggmtranstype, 0), NULL), g.aggmtransspace::text,
                           g.agginitval, g.aggminitval, p.proisstrict, p.proparallel)::text
                  FROM pg_aggregate AS g WHERE g.aggfnoid = p.oid) END,
           pg_get_userbyid(p.proowner),
           CASE WHEN p.proacl IS NOT NULL
                 AND NOT (p.proacl @> acldefault('f', p.proowner) AND p.proacl <@ acldefault('f', p.proowner))
                THEN (SELECT array_agg(x::text ORDER BY x::text) FROM unnest(p.proacl) AS x) END,
           d.description
       )::text AS definition
  FROM pg_proc AS p
  JOIN nsp ON nsp.oid = p.pronamespace
  LEFT JOIN pg_description AS d
         ON d.objoid = p.oid AND d.classoid = 'pg_proc'::regclass AND d.objsubid = 0
 WHERE (%(no_extensions)s OR NOT EXISTS (SELECT FROM pg_depend AS e
                                           WHERE e.classid = 'pg_proc'::regclass AND e.objid = p.oid AND e.deptype = 'e'))
