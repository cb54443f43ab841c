-- gcos fingerprint, category "database": this database's own settings (ALTER DATABASE ... SET), one
-- object named database when there are any (the database's name is not part of it: a copy made from
-- a template fingerprints alike). Settings of one role in this database belong to category role.
-- fields: settings
SELECT 'database' AS identity,
       ROW(
           (SELECT array_agg(x ORDER BY x COLLATE "C") FROM unnest(s.setconfig) AS x)
       )::text AS definition
  FROM pg_db_role_setting AS s
  JOIN pg_database AS d ON d.oid = s.setdatabase
 WHERE d.datname = current_database() AND s.setrole = 0
   AND cardinality(s.setconfig) > 0
