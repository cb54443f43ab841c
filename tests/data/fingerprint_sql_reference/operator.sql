-- gcos fingerprint, category "operator": every operator, operator class and operator family of a user
-- schema, named schema.name(left, right), schema.name(class method) and schema.name(family method).
-- fields: kind, function, commutator, negator, restrict, join, can_merge, can_hash, owner, comment (an
-- operator); the catalog row as JSON without OIDs, its operators and functions, owner, comment (a class
-- or family)
WITH nsp AS (
    SELECT n.oid, quote_ident(n.nspname) AS qname
      FROM pg_namespace AS n
     WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
       AND n.nspname <> ALL (%(exclude)s::text[])
), member AS (  -- the operators and functions of each family, as pg_amop and pg_amproc list them
    SELECT f.oid, array_agg(x ORDER BY x COLLATE "C") AS members
      FROM pg_opfamily AS f
      JOIN nsp ON nsp.oid = f.opfnamespace
     CROSS JOIN LATERAL (
           SELECT 'operator ' || o.amopstrategy || ' ' || o.amopopr::regoperator::text || ' '
                  || format_type(o.amoplefttype, NULL) || ' ' || format_type(o.amoprighttype, NULL) || ' ' || o.amoppurpose::text
                  || coalesce(' ' || o.amopsortfamily::regclass::text, '') AS x
             FROM pg_amop AS o WHERE o.amopfamily = f.oid
           UNION ALL
           SELECT 'function ' || p.amprocnum || ' ' || p.amproc::regprocedure::text || ' '
                  || format_type(p.amproclefttype, NULL) || ' ' || format_type(p.amprocrighttype, NULL)
             FROM pg_amproc AS p WHERE p.amprocfamily = f.oid) AS m
     GROUP BY f.oid
)
SELECT nsp.qname || '.' || quote_ident(o.oprname) || '(' || coalesce(format_type(nullif(o.oprleft, 0), NULL), 'NONE')
           || ', ' || coalesce(format_type(nullif(o.oprright, 0), NULL), 'NONE') || ')' AS identity,
       ROW(
           o.oprkind,
           o.oprcode::regprocedure::text,
           nullif(o.oprcom, 0)::regoperator::text,
           nullif(o.oprnegate, 0)::regoperator::text,
           nullif(o.oprrest, 0)::regprocedure::text,
           nullif(o.oprjoin, 0)::regprocedure::text,
           o.oprcanmerge,
           o.oprcanhash,
           pg_get_userbyid(o.oprowner),
           d.description
       )::text AS definition
  FROM pg_operator AS o
  JOIN nsp ON nsp.oid = o.oprnamespace
  LEFT JOIN pg_description AS d
         ON d.objoid = o.oid AND d.classoid = 'pg_operator'::regclass AND d.objsubid = 0
 WHERE (%(no_extensions)s OR NOT EXISTS (SELECT FROM pg_depend AS e
                                           WHERE e.classid = 'pg_operator'::regclass AND e.objid = o.oid AND e.deptype = 'e'))
UNION ALL
SELECT nsp.qname || '.' || quote_ident(c.opcname) || '(class ' || am.amname || ')',
       ROW(
           format_type(c.opcintype, NULL),
           c.opcdefault,
           nullif(c.opckeytype, 0)::regtype::text,
           f.opfname,
           pg_get_userbyid(c.opcowner),
           d.description
       )::text
  FROM pg_opclass AS c
  JOIN nsp ON nsp.oid = c.opcnamespace
  JOIN pg_am AS am ON am.oid = c.opcmethod
  JOIN pg_opfamily AS f ON f.oid = c.opcfamily
  LEFT JOIN pg_description AS d
         ON d.objoid = c.oid AND d.classoid = 'pg_opclass'::regclass AND d.objsubid = 0
 WHERE (%(no_extensions)s OR NOT EXISTS (SELECT FROM pg_depend AS e
                                           WHERE e.classid = 'pg_opclass'::regclass AND e.objid = c.oid AND e.deptype = 'e'))
UNION ALL
SELECT nsp.qname || '.' || quote_ident(f.opfname) || '(family ' || am.amname || ')',
       ROW(
           member.members,
           pg_get_userbyid(f.opfowner),
           d.description
       )::text
  FROM pg_opfamily AS f
  JOIN nsp ON nsp.oid = f.opfnamespace
  JOIN pg_am AS am ON am.oid = f.opfmethod
  LEFT JOIN member ON member.oid = f.oid
  LEFT JOIN pg_description AS d
         ON d.objoid = f.oid AND d.classoid = 'pg_opfamily'::regclass AND d.objsubid = 0
 WHERE (%(no_extensions)s OR NOT EXISTS (SELECT FROM pg_depend AS e
                                           WHERE e.classid = 'pg_opfamily'::regclass AND e.objid = f.oid AND e.deptype = 'e'))
