-- gcos fingerprint, category "default_privileges": ALTER DEFAULT PRIVILEGES entries, named
-- role:schema:object-type (schema * = every schema): the privileges future objects get.
-- fields: acl
SELECT quote_ident(pg_get_userbyid(a.defaclrole)) || ':' || coalesce(quote_ident(n.nspname), '*') || ':'
           || a.defaclobjtype::text AS identity,
       ROW(
           (SELECT array_agg(x::text ORDER BY x::text) FROM unnest(a.defaclacl) AS x)
       )::text AS definition
  FROM pg_default_acl AS a
  LEFT JOIN pg_namespace AS n ON n.oid = a.defaclnamespace
 WHERE n.nspname IS NULL OR n.nspname <> ALL (%(exclude)s::text[])
