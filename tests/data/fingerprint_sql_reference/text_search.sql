-- gcos fingerprint, category "text_search": every text search configuration, dictionary, parser and
-- template of a user schema, named schema.name(configuration) and so on.
-- fields: parser and token mappings, owner, comment (a configuration); template, options, owner, comment
-- (a dictionary); its functions (a parser or template)
WITH nsp AS (
    SELECT n.oid, quote_ident(n.nspname) AS qname
      FROM pg_namespace AS n
     WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
       AND n.nspname <> ALL (%(exclude)s::text[])
), ext AS (  -- members of extensions, left out unless there are none
    SELECT e.classid, e.objid FROM pg_depend AS e
     WHERE NOT %(no_extensions)s AND e.deptype = 'e'
       AND e.classid IN ('pg_ts_config'::regclass, 'pg_ts_dict'::regclass, 'pg_ts_parser'::regclass, 'pg_ts_template'::regclass)
)
SELECT nsp.qname || '.' || quote_ident(c.cfgname) || '(configuration)' AS identity,
       ROW(
           (SELECT quote_ident(pn.nspname) || '.' || quote_ident(pp.prsname)
              FROM pg_ts_parser AS pp JOIN pg_namespace AS pn ON pn.oid = pp.prsnamespace WHERE pp.oid = c.cfgparser),
           (SELECT array_agg(m.maptokentype || ' ' || m.mapseqno || ' ' || m.mapdict::regdictionary::text
                             ORDER BY m.maptokentype, m.mapseqno)
              FROM pg_ts_config_map AS m WHERE m.mapcfg = c.oid),
           pg_get_userbyid(c.cfgowner),
           d.description
       )::text AS definition
  FROM pg_ts_config AS c
  JOIN nsp ON nsp.oid = c.cfgnamespace
  LEFT JOIN pg_description AS d ON d.objoid = c.oid AND d.classoid = 'pg_ts_config'::regclass AND d.objsubid = 0
 WHERE NOT EXISTS (SELECT FROM ext WHERE ext.classid = 'pg_ts_config'::regclass AND ext.objid = c.oid)
UNION ALL
SELECT nsp.qname || '.' || quote_ident(t.dictname) || '(dictionary)',
       ROW(
           (SELECT quote_ident(tn.nspname) || '.' || quote_ident(tt.tmplname)
              FROM pg_ts_template AS tt JOIN pg_namespace AS tn ON tn.oid = tt.tmplnamespace WHERE tt.oid = t.dicttemplate),
           t.dictinitoption,
           pg_get_userbyid(t.dictowner),
           d.description
       )::text
  FROM pg_ts_dict AS t
  JOIN nsp ON nsp.oid = t.dictnamespace
  LEFT JOIN pg_description AS d ON d.objoid = t.oid AND d.classoid = 'pg_ts_dict'::regclass AND d.objsubid = 0
 WHERE NOT EXISTS (SELECT FROM ext WHERE ext.classid = 'pg_ts_dict'::regclass AND ext.objid = t.oid)
UNION ALL
SELECT nsp.qname || '.' || quote_ident(p.prsname) || '(parser)',
       ROW(
           p.prsstart::regproc::text,
           p.prstoken::regproc::text,
           p.prsend::regproc::text,
           nullif(p.prsheadline, 0)::regproc::text,
           p.prslextype::regproc::text,
           d.description
       )::text
  FROM pg_ts_parser AS p
  JOIN nsp ON nsp.oid = p.prsnamespace
  LEFT JOIN pg_description AS d ON d.objoid = p.oid AND d.classoid = 'pg_ts_parser'::regclass AND d.objsubid = 0
 WHERE NOT EXISTS (SELECT FROM ext WHERE ext.classid = 'pg_ts_parser'::regclass AND ext.objid = p.oid)
UNION ALL
SELECT nsp.qname || '.' || quote_ident(t.tmplname) || '(template)',
       ROW(
           nullif(t.tmplinit, 0)::regproc::text,
           t.tmpllexize::regproc::text,
           d.description
       )::text
  FROM pg_ts_template AS t
  JOIN nsp ON nsp.oid = t.tmplnamespace
  LEFT JOIN pg_description AS d ON d.objoid = t.oid AND d.classoid = 'pg_ts_template'::regclass AND d.objsubid = 0
 WHERE NOT EXISTS (SELECT FROM ext WHERE ext.classid = 'pg_ts_template'::regclass AND ext.objid = t.oid)
