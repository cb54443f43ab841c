-- gcos fingerprint, category "database": this database itself, one object named database: its owner (who is
-- pg_database_owner, which owns schema public from PostgreSQL 15, and may grant CREATE to anyone), its
-- grants (CREATE lets a role add schemas the kernel does not govern; normalised like every ACL: NULL, or an
-- explicit ACL equal to the owner's default, renders NULL, so a GRANT taken back leaves no trace) and its own
-- settings (ALTER DATABASE ... SET). The database's name is not part of it: a copy made from a template by the
-- same role fingerprints alike. Settings of one role in this database belong to category role.
-- fields: owner, acl, settings
SELECT 'database' AS identity,
       ROW(
           pg_get_userbyid(d.datdba),
           CASE WHEN d.datacl IS NOT NULL
                 AND NOT (d.datacl @> acldefault('d', d.datdba) AND d.datacl <@ acldefault('d', d.datdba))
                THEN (SELECT array_agg(x::text ORDER BY x::text) FROM unnest(d.datacl) AS x) END,
           (SELECT array_agg(x ORDER BY x COLLATE "C")
              FROM pg_db_role_setting AS s, unnest(s.setconfig) AS x
             WHERE s.setdatabase = d.oid AND s.setrole = 0)
       )::text AS definition
  FROM pg_database AS d
 WHERE d.datname = current_database()
