-- gcos fingerprint, category "publication": every publication of this database, named by publication,
-- with the tables (row filter, columns) and schemas it publishes.
-- fields: the catalog row as JSON without OIDs, owner, tables, schemas, comment
SELECT quote_ident(p.pubname) AS identity,
       ROW(
           (to_jsonb(p) - '{oid,pubowner}'::text[])::text,
           pg_get_userbyid(p.pubowner),
           (SELECT array_agg(r.prrelid::regclass::text || ' ' || (to_jsonb(r) - '{oid,prpubid,prrelid}'::text[])::text
                             ORDER BY r.prrelid::regclass::text COLLATE "C")
              FROM pg_publication_rel AS r WHERE r.prpubid = p.oid),
           (SELECT array_agg(pn.pnnspid::regnamespace::text ORDER BY pn.pnnspid::regnamespace::text COLLATE "C") FROM pg_publication_namespace AS pn WHERE pn.pnpubid = p.oid),
           d.description
       )::text AS definition
  FROM pg_publication AS p
  LEFT JOIN pg_description AS d
         ON d.objoid = p.oid AND d.classoid = 'pg_publication'::regclass AND d.objsubid = 0
