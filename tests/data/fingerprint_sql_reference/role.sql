-- gcos fingerprint, category "role": every role that owns, or holds a privilege on, an object of this
-- database outside the excluded schemas (pg_shdepend; not the database itself), every member of PostgreSQL's
-- predefined data roles (pg_write_all_data, pg_read_all_data, pg_maintain: they read, write or lock every
-- table around the grants), and every role that is a member of one of those, directly or through other roles
-- (a member acts with its role's rights: DROP, ALTER, every DML), named by role. Roles are the cluster's, so
-- a change to one of them (ALTER ROLE ... SUPERUSER, GRANT r TO role, ALTER ROLE ... SET) changes what the
-- objects it owns or is granted on can do. No password: pg_roles masks it.
-- member_of is the roles this one is a member of, members the roles that are its direct members (each with
-- admin, inherit and set options where the server has them; the members' own flags are their own objects).
-- Memberships in gcos's four principal group roles (gcos_operator, gcos_sovereign, gcos_council,
-- gcos_auditor) are left out: they carry no right on a watched object, only gcos's functions, which act for
-- principals the ledger records. Memberships in gcos_kernel, gcos_owner and gcos_admin are measured: a
-- lasting member of gcos_kernel owns every adopted table. Except the shape an online window lends (16+:
-- gcos_kernel, INHERIT TRUE, SET FALSE, no ADMIN, granted by a superuser, as gcos._online_member does):
-- roles are the cluster's, so a window open in any gcos database of the server would otherwise change every
-- other one's fingerprint mid-rehearsal; such a member writes nothing and runs no DDL outside its ticket
-- (the online guard and the window shield judge it), and the ledger records the window.
-- fields: superuser, inherit, createrole, createdb, login, replication, bypassrls, connection_limit,
-- valid_until, member_of, settings (ALTER ROLE ... SET for every database), database_settings (... IN
-- DATABASE this one), members
WITH RECURSIVE nsp AS (
    SELECT n.oid
      FROM pg_namespace AS n
     WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
       AND n.nspname <> ALL (%(exclude)s::text[])
), lent AS (
    SELECT m.roleid, m.member
      FROM pg_auth_members AS m
      JOIN pg_roles AS k ON k.oid = m.roleid AND k.rolname = 'gcos_kernel'
      JOIN pg_roles AS b ON b.oid = m.grantor AND b.rolsuper
     WHERE m.inherit_option IS TRUE AND m.set_option IS FALSE AND NOT m.admin_option
), db AS (
    SELECT d.oid FROM pg_database AS d WHERE d.datname = current_database()
), dep AS (
    SELECT s.refobjid AS roleid, s.classid, s.objid
      FROM pg_shdepend AS s
      JOIN db ON db.oid = s.dbid
     WHERE s.refclassid = 'pg_authid'::regclass AND s.deptype IN ('o', 'a', 'i')
), owners AS (
    SELECT DISTINCT dep.roleid
      FROM dep
     WHERE CASE dep.classid
               WHEN 'pg_class'::regclass THEN EXISTS (SELECT FROM pg_class AS c JOIN nsp ON nsp.oid = c.relnamespace
                                                      WHERE c.oid = dep.objid)
               WHEN 'pg_proc'::regclass THEN EXISTS (SELECT FROM pg_proc AS p JOIN nsp ON nsp.oid = p.pronamespace
                                                     WHERE p.oid = dep.objid)
               WHEN 'pg_type'::regclass THEN EXISTS (SELECT FROM pg_type AS t JOIN nsp ON nsp.oid = t.typnamespace
                                                     WHERE t.oid = dep.objid)
               WHEN 'pg_namespace'::regclass THEN EXISTS (SELECT FROM nsp WHERE nsp.oid = dep.objid)
               WHEN 'pg_default_acl'::regclass THEN EXISTS (SELECT FROM pg_default_acl AS a
                                                            WHERE a.oid = dep.objid AND (a.defaclnamespace = 0
                                                               OR a.defaclnamespace IN (SELECT nsp.oid FROM nsp)))
               WHEN 'pg_database'::regclass THEN false  -- the database's grants are category database's
               ELSE true END
), roles AS (
    SELECT owners.roleid FROM owners
    UNION
    SELECT g.oid FROM pg_roles AS g
     WHERE g.rolname IN ('pg_write_all_data', 'pg_read_all_data', 'pg_maintain')
       AND EXISTS (SELECT FROM pg_auth_members AS w WHERE w.roleid = g.oid)
    UNION
    SELECT w.member FROM roles JOIN pg_auth_members AS w ON w.roleid = roles.roleid
     WHERE NOT EXISTS (SELECT FROM lent WHERE lent.roleid = w.roleid AND lent.member = w.member)
)
SELECT quote_ident(r.rolname) AS identity,
       ROW(
           r.rolsuper,
           r.rolinherit,
           r.rolcreaterole,
           r.rolcreatedb,
           r.rolcanlogin,
           r.rolreplication,
           r.rolbypassrls,
           r.rolconnlimit::text,
           r.rolvaliduntil::text,
           (SELECT array_agg(quote_ident(g.rolname) || ' ' || m.admin_option::text
                             || ' ' || coalesce(m.inherit_option::text, '-') || ' ' || coalesce(m.set_option::text, '-')
                             ORDER BY g.rolname COLLATE "C", m.admin_option)
              FROM pg_auth_members AS m
              JOIN pg_roles AS g ON g.oid = m.roleid
             WHERE m.member = r.oid
               AND g.rolname NOT IN ('gcos_operator', 'gcos_sovereign', 'gcos_council', 'gcos_auditor')
               AND NOT EXISTS (SELECT FROM lent WHERE lent.roleid = m.roleid AND lent.member = m.member)),
           (SELECT array_agg(x ORDER BY x COLLATE "C") FROM pg_db_role_setting AS s, unnest(s.setconfig) AS x
             WHERE s.setrole = r.oid AND s.setdatabase = 0),
           (SELECT array_agg(x ORDER BY x COLLATE "C") FROM pg_db_role_setting AS s, db, unnest(s.setconfig) AS x
             WHERE s.setrole = r.oid AND s.setdatabase = db.oid),
           (SELECT array_agg(quote_ident(u.rolname) || ' ' || m.admin_option::text
                             || ' ' || coalesce(m.inherit_option::text, '-') || ' ' || coalesce(m.set_option::text, '-')
                             ORDER BY u.rolname COLLATE "C", m.admin_option)
              FROM pg_auth_members AS m
              JOIN pg_roles AS u ON u.oid = m.member
             WHERE m.roleid = r.oid
               AND NOT EXISTS (SELECT FROM lent WHERE lent.roleid = m.roleid AND lent.member = m.member))
       )::text AS definition
  FROM roles
  JOIN pg_roles AS r ON r.oid = roles.roleid
