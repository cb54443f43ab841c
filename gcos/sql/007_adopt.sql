-- gcos schema version 7: the kernel role and adopted schemas: the single write aperture (issue 9 item 1).
--
-- gcos_kernel is the NOLOGIN role that owns every adopted schema and its objects. Nobody logs in as it
-- and no role may be a lasting member of it; the kernel's SECURITY DEFINER functions act as it.
--
-- API
--   gcos.adopt(p_schemas text[]) -> TABLE (schema_name text, status text, ledger_seq bigint, payload jsonb)
--       SECURITY INVOKER, EXECUTE to gcos_admin (and superusers). In the CALLER's transaction, for each
--       named schema (exact names, no identifier parsing): the schema and every object in it (tables,
--       partitions, views, materialized views, foreign tables, sequences (owned ones follow their table),
--       functions, procedures, aggregates, types, domains, collations, conversions, operators, operator
--       classes and families, text search configurations and dictionaries, statistics objects) are given
--       to gcos_kernel by ALTER ... OWNER, which PostgreSQL authorizes: the caller must be a superuser, or
--       a member of each object's owner who can become gcos_kernel. A non-superuser caller grants itself
--       gcos_kernel (needs ADMIN OPTION on it; before PostgreSQL 16, CREATEROLE) and, if gcos_kernel
--       lacks it, CREATE on the database (needs the database owner) INSIDE this transaction and revokes
--       both before the record is written, so no one is ever a lasting member of gcos_kernel.
--       Then every role but gcos_kernel (PUBLIC included) loses: CREATE on the schema; INSERT, UPDATE,
--       DELETE, TRUNCATE, REFERENCES, TRIGGER, MAINTAIN on relations and INSERT, UPDATE, REFERENCES on
--       columns; USAGE and UPDATE on sequences; EXECUTE on SECURITY DEFINER routines (they would run as
--       the kernel); and every GRANT OPTION (a reader could otherwise grant on). Read privileges stay:
--       SELECT, USAGE on the schema and on types, EXECUTE on other routines; a read privilege that a
--       grant-option holder had granted is re-granted by gcos_kernel so that it survives the cascade; the
--       previous owners (superusers aside) are granted the read privileges they held as owners (listed
--       under "granted" like the others, taken back on release).
--       Default privileges: ALTER DEFAULT PRIVILEGES FOR ROLE gcos_kernel IN SCHEMA s GRANT SELECT ON
--       TABLES (resp. SEQUENCES) TO each role (or PUBLIC) that held SELECT on EVERY table (resp. sequence,
--       those of serial and identity columns aside) of the schema, so that what the kernel creates later is
--       readable by whom could read everything before.
--       Routines the kernel creates are executable by nobody but the kernel (global default privilege
--       below) until a step grants EXECUTE: a new SECURITY DEFINER routine must not open an aperture.
--       Refused (22023), changing nothing: a schema that does not exist or belongs to PostgreSQL or gcos;
--       objects of a kind gcos does not handle (listed); a view or materialized view that reads a relation
--       (or calls a routine) gcos_kernel could not read after the adoption; every link through which others
--       could change the schemas (_adopt_links, each listed): an object (or a column, default, trigger,
--       constraint, index, rule...) of the schemas that depends on an object outside the adopted set (these
--       schemas and those adopted) whose owner, or whose extension's owner, is neither a superuser nor
--       gcos_kernel (a type, domain, enum, relation, sequence, routine, operator, text search configuration,
--       foreign server... that they could ALTER, replace or DROP ... CASCADE), and, whoever owns the other
--       end, every partition, inheritance or foreign key across the set's edge. Adopt them together. Refused
--       (42501): a lasting member of gcos_kernel; a role (not a superuser) in pg_write_all_data or
--       pg_maintain, which write around every ACL. Extension members, and the extension objects themselves,
--       are left alone and listed. A schema already adopted is a no-op (status already_adopted, the seq of
--       its adopt record, payload {"violations": [...]}: what no longer holds, e.g. a superuser's GRANT,
--       a link, an object the adoption took that is gone, an extension put in the schema since). Status
--       adopted: one `adopt` record each; its payload also names the roles that could make themselves
--       gcos_kernel ("kernel_admins": ADMIN OPTION on it; before PostgreSQL 16, CREATEROLE) and those
--       holding CREATE on the database ("database_creators").
--   gcos.release(p_schemas text[]) -> same columns, status released
--       Hands everything back: each object the adoption took to its previous owner (objects the kernel
--       created since then to the schema's previous owner), the revoked privileges and grant options
--       re-granted (by their original grantor where the caller may SET ROLE to it, else by the owner),
--       the privileges the adoption granted instead taken back, the kernel's default privileges in the
--       schema removed; one `release` record each. A schema that is not adopted: 22023.
--   gcos._adopt_begin(p_nsp oid, p_action text) / gcos._adopt_record(p_nsp oid, p_action text)
--       SECURITY DEFINER, EXECUTE to gcos_admin; called by gcos.adopt and gcos.release, p_action 'adopt' or
--       'release'. _adopt_begin (superuser or human admin principal only) snapshots the schema from the
--       catalog into gcos.adopt_staging for this transaction. _adopt_record verifies the present from the
--       catalog (adopt: the schema and every object it handles ARE owned by gcos_kernel, no other role holds
--       a write privilege or a grant option, no SECURITY DEFINER routine is executable by anyone else, no
--       role is a member of gcos_kernel nor (superusers aside) of pg_write_all_data or pg_maintain, no link
--       crosses the edge of the adopted set (with the schemas this transaction adopts once they are locked
--       down too), the set of objects is the snapshot's; release: nothing in the schema is owned by
--       gcos_kernel, it holds no default privileges there) and writes the record from the two
--       catalog readings alone: previous owners, every revoked privilege (grantee, privilege, object,
--       grantor) and every privilege granted instead. Called without a snapshot of this transaction, or
--       when a fact does not hold, it refuses (42501): no call can make the ledger claim an adoption (or a
--       release) that did not happen.
--   gcos.adopted_schemas: one row per adoption (schema oid and name, adopted_at, ledger_seq, released_at,
--       release_seq), written only by _adopt_record; SELECT for the gcos group roles.
--   Ledger kinds `adopt` and `release` are reserved (gcos.ledger_append refuses them).
--   Event trigger gcos_adopted_extensions (ENABLE ALWAYS): CREATE EXTENSION and ALTER EXTENSION whose
--       extension is (or lands) in a schema gcos_kernel owns are refused (42501) unless run by a superuser
--       or the kernel: a trusted extension skips the schema's CREATE check, and its owner could DROP it
--       ... CASCADE into adopted objects. This also stops the owner (not a superuser) of an extension that
--       was in the schema when it was adopted from updating it.
--
-- Not handled here: changes a superuser makes to an adopted schema afterwards (that is drift); GRANT by a
-- role that still holds a read privilege is, as PostgreSQL specifies, a no-op with a WARNING ("no
-- privileges were granted"), not an error; routines the kernel's own routines call by name (function
-- bodies are not in pg_depend) and operators' functions reached through other schemas; an object created
-- concurrently, by a role that still held CREATE when the adoption began, and committed after it (re-run
-- gcos adopt: it names what no longer holds); dependencies PostgreSQL does not record (function bodies,
-- casts, which have no owner); releasing one schema of a linked set (the others' re-check names the links).

-- ----------------------------------------------------------------------------------- the kernel role

DO $$
DECLARE
    v record;
BEGIN
    BEGIN
        CREATE ROLE gcos_kernel NOLOGIN NOINHERIT;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN
        NULL;
    END;
    SELECT a.rolcanlogin, a.rolsuper, a.rolbypassrls, a.rolcreaterole, a.rolcreatedb INTO v
      FROM pg_catalog.pg_roles AS a WHERE a.rolname = 'gcos_kernel';
    IF v.rolcanlogin OR v.rolsuper OR v.rolbypassrls OR v.rolcreaterole OR v.rolcreatedb THEN
        RAISE EXCEPTION 'role gcos_kernel exists but is LOGIN, SUPERUSER, BYPASSRLS, CREATEROLE or CREATEDB; gcos needs it NOLOGIN and unprivileged'
            USING ERRCODE = '42501';
    END IF;
END
$$;

-- Routines the kernel creates in this database are executable by nobody else until granted.
ALTER DEFAULT PRIVILEGES FOR ROLE gcos_kernel REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;

SET LOCAL ROLE gcos_owner;

-- ----------------------------------------------------------------------------------- tables

CREATE TABLE gcos.adopted_schemas (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    schema_oid oid NOT NULL,
    schema_name name NOT NULL,
    adopted_at timestamptz NOT NULL,
    ledger_seq bigint NOT NULL UNIQUE REFERENCES gcos.ledger (seq),
    released_at timestamptz,
    release_seq bigint UNIQUE REFERENCES gcos.ledger (seq),
    CHECK ((released_at IS NULL) = (release_seq IS NULL))
);
CREATE UNIQUE INDEX adopted_schemas_current_idx ON gcos.adopted_schemas (schema_oid) WHERE released_at IS NULL;

-- A row only ever gains its release, once.
CREATE FUNCTION gcos._adopted_schemas_guard() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF OLD.released_at IS NOT NULL OR NEW.id IS DISTINCT FROM OLD.id OR NEW.schema_oid IS DISTINCT FROM OLD.schema_oid
       OR NEW.schema_name IS DISTINCT FROM OLD.schema_name OR NEW.adopted_at IS DISTINCT FROM OLD.adopted_at
       OR NEW.ledger_seq IS DISTINCT FROM OLD.ledger_seq THEN
        RAISE EXCEPTION 'gcos: an adoption is only ever released, once' USING ERRCODE = 'GC001';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER gcos_adopted_schemas_update BEFORE UPDATE ON gcos.adopted_schemas
    FOR EACH ROW EXECUTE FUNCTION gcos._adopted_schemas_guard();
ALTER TABLE gcos.adopted_schemas ENABLE ALWAYS TRIGGER gcos_adopted_schemas_update;
SELECT gcos._protect('gcos.adopted_schemas', false, false);

-- The catalog snapshot _adopt_begin takes, per transaction; rows of finished transactions are ignored
-- and cleared by the next _adopt_begin.
CREATE TABLE gcos.adopt_staging (
    xact xid8 NOT NULL,
    schema_oid oid NOT NULL,
    action text NOT NULL CHECK (action IN ('adopt', 'release')),
    state jsonb NOT NULL,
    PRIMARY KEY (xact, schema_oid, action)
);

-- ----------------------------------------------------------------------------------- catalog readers

CREATE FUNCTION gcos._kernel_oid() RETURNS oid
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT r.oid FROM pg_catalog.pg_roles AS r WHERE r.rolname = 'gcos_kernel' $$;

-- 'PUBLIC' for 0, the role's name, or '#oid' for a role that no longer exists.
CREATE FUNCTION gcos._role_label(p_oid bigint) RETURNS text
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN p_oid = 0 THEN 'PUBLIC'
                ELSE COALESCE((SELECT r.rolname::text FROM pg_catalog.pg_roles AS r WHERE r.oid = p_oid::oid),
                              '#' || p_oid::text) END
$$;

-- A grantee as GRANT/REVOKE spell it.
CREATE FUNCTION gcos._grantee_sql(p_oid bigint) RETURNS text
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT CASE WHEN p_oid = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(gcos._role_label(p_oid)) END $$;

-- The owner of an object of a class gcos adopts (NULL for any other class).
CREATE FUNCTION gcos._object_owner(p_classid oid, p_objid oid) RETURNS oid
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE p_classid
        WHEN 'pg_catalog.pg_namespace'::pg_catalog.regclass THEN (SELECT x.nspowner FROM pg_catalog.pg_namespace AS x WHERE x.oid = p_objid)
        WHEN 'pg_catalog.pg_class'::pg_catalog.regclass THEN (SELECT x.relowner FROM pg_catalog.pg_class AS x WHERE x.oid = p_objid)
        WHEN 'pg_catalog.pg_proc'::pg_catalog.regclass THEN (SELECT x.proowner FROM pg_catalog.pg_proc AS x WHERE x.oid = p_objid)
        WHEN 'pg_catalog.pg_type'::pg_catalog.regclass THEN (SELECT x.typowner FROM pg_catalog.pg_type AS x WHERE x.oid = p_objid)
        WHEN 'pg_catalog.pg_collation'::pg_catalog.regclass THEN (SELECT x.collowner FROM pg_catalog.pg_collation AS x WHERE x.oid = p_objid)
        WHEN 'pg_catalog.pg_conversion'::pg_catalog.regclass THEN (SELECT x.conowner FROM pg_catalog.pg_conversion AS x WHERE x.oid = p_objid)
        WHEN 'pg_catalog.pg_operator'::pg_catalog.regclass THEN (SELECT x.oprowner FROM pg_catalog.pg_operator AS x WHERE x.oid = p_objid)
        WHEN 'pg_catalog.pg_opclass'::pg_catalog.regclass THEN (SELECT x.opcowner FROM pg_catalog.pg_opclass AS x WHERE x.oid = p_objid)
        WHEN 'pg_catalog.pg_opfamily'::pg_catalog.regclass THEN (SELECT x.opfowner FROM pg_catalog.pg_opfamily AS x WHERE x.oid = p_objid)
        WHEN 'pg_catalog.pg_ts_config'::pg_catalog.regclass THEN (SELECT x.cfgowner FROM pg_catalog.pg_ts_config AS x WHERE x.oid = p_objid)
        WHEN 'pg_catalog.pg_ts_dict'::pg_catalog.regclass THEN (SELECT x.dictowner FROM pg_catalog.pg_ts_dict AS x WHERE x.oid = p_objid)
        WHEN 'pg_catalog.pg_statistic_ext'::pg_catalog.regclass THEN (SELECT x.stxowner FROM pg_catalog.pg_statistic_ext AS x WHERE x.oid = p_objid)
        WHEN 'pg_catalog.pg_extension'::pg_catalog.regclass THEN (SELECT x.extowner FROM pg_catalog.pg_extension AS x WHERE x.oid = p_objid)
    END
$$;

-- The ALTER keyword that changes the owner of an object of pg_identify_object type p_type; '-' for the
-- kinds that have no owner (text search parsers and templates), NULL for kinds gcos does not handle.
CREATE FUNCTION gcos._alter_keyword(p_classid oid, p_objid oid, p_type text) RETURNS text
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN p_type = 'type' AND (SELECT t.typtype FROM pg_catalog.pg_type AS t WHERE t.oid = p_objid) = 'd' THEN 'DOMAIN'
        WHEN p_type IN ('schema', 'table', 'view', 'materialized view', 'foreign table', 'sequence', 'function',
                        'procedure', 'aggregate', 'type', 'domain', 'collation', 'conversion', 'operator',
                        'operator class', 'operator family', 'text search configuration',
                        'text search dictionary') THEN pg_catalog.upper(p_type)
        WHEN p_type = 'statistics object' THEN 'STATISTICS'
        WHEN p_type IN ('text search parser', 'text search template') THEN '-'
    END
$$;

-- Every object in schema p_nsp (the schema itself first): what pg_depend records as depending on it.
-- follows: it depends internally or automatically on another object (an identity or serial sequence, a
-- partition, a range's constructors...), so it may have followed that one's owner already.
-- extension: the extension it belongs to (or is), which gcos leaves alone.
CREATE FUNCTION gcos._schema_objects(p_nsp oid)
    RETURNS TABLE (classid oid, objid oid, objtype text, identity text, owner oid, keyword text, follows boolean,
                   extension text)
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'pg_catalog.pg_namespace'::pg_catalog.regclass::oid, n.oid, 'schema', pg_catalog.quote_ident(n.nspname),
           n.nspowner, 'SCHEMA', false, NULL::text
      FROM pg_catalog.pg_namespace AS n WHERE n.oid = p_nsp
    UNION ALL
    SELECT o.classid, o.objid,
           CASE WHEN i.type = 'type' AND gcos._alter_keyword(o.classid, o.objid, i.type) = 'DOMAIN' THEN 'domain' ELSE i.type END,
           i.identity, gcos._object_owner(o.classid, o.objid),
           gcos._alter_keyword(o.classid, o.objid, i.type),
           EXISTS (SELECT 1 FROM pg_catalog.pg_depend AS f
                    WHERE f.classid = o.classid AND f.objid = o.objid AND f.objsubid = 0 AND f.deptype IN ('a', 'i')),
           CASE WHEN o.classid = 'pg_catalog.pg_extension'::pg_catalog.regclass
                THEN (SELECT e.extname::text FROM pg_catalog.pg_extension AS e WHERE e.oid = o.objid)
                ELSE (SELECT e.extname::text FROM pg_catalog.pg_depend AS x
                        JOIN pg_catalog.pg_extension AS e ON e.oid = x.refobjid
                       WHERE x.classid = o.classid AND x.objid = o.objid AND x.deptype = 'e'
                         AND x.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass LIMIT 1) END
      FROM (SELECT DISTINCT d.classid, d.objid FROM pg_catalog.pg_depend AS d
             WHERE d.refclassid = 'pg_catalog.pg_namespace'::pg_catalog.regclass AND d.refobjid = p_nsp
               AND d.deptype = 'n') AS o,
           LATERAL pg_catalog.pg_identify_object(o.classid, o.objid, 0) AS i
$$;

-- The effective ACL of an object (the owner's default when it has none), or of one column (subid > 0;
-- NULL when it has none).
CREATE FUNCTION gcos._acl_of(p_classid oid, p_objid oid, p_subid integer) RETURNS aclitem[]
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN p_classid = 'pg_catalog.pg_namespace'::pg_catalog.regclass THEN
            (SELECT COALESCE(x.nspacl, pg_catalog.acldefault('n', x.nspowner)) FROM pg_catalog.pg_namespace AS x WHERE x.oid = p_objid)
        WHEN p_classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND p_subid = 0 THEN
            (SELECT COALESCE(x.relacl, pg_catalog.acldefault(CASE WHEN x.relkind = 'S' THEN 's' ELSE 'r' END::"char", x.relowner))
               FROM pg_catalog.pg_class AS x WHERE x.oid = p_objid)
        WHEN p_classid = 'pg_catalog.pg_class'::pg_catalog.regclass THEN
            (SELECT x.attacl FROM pg_catalog.pg_attribute AS x WHERE x.attrelid = p_objid AND x.attnum = p_subid)
        WHEN p_classid = 'pg_catalog.pg_proc'::pg_catalog.regclass THEN
            (SELECT COALESCE(x.proacl, pg_catalog.acldefault('f', x.proowner)) FROM pg_catalog.pg_proc AS x WHERE x.oid = p_objid)
        WHEN p_classid = 'pg_catalog.pg_type'::pg_catalog.regclass THEN
            (SELECT COALESCE(x.typacl, pg_catalog.acldefault('T', x.typowner)) FROM pg_catalog.pg_type AS x WHERE x.oid = p_objid)
    END
$$;

-- An ACL as a sorted JSON array of {grantor, grantee, privilege, grantable} (grantee 0 is PUBLIC).
CREATE FUNCTION gcos._acl_items(p_classid oid, p_objid oid, p_subid integer) RETURNS jsonb
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'grantor', a.grantor::bigint, 'grantee', a.grantee::bigint, 'privilege', a.privilege_type,
               'grantable', a.is_grantable) ORDER BY a.grantee, a.privilege_type, a.grantor, a.is_grantable), '[]')
      FROM (SELECT gcos._acl_of(p_classid, p_objid, p_subid) AS acl) AS o,
           pg_catalog.aclexplode(CASE WHEN pg_catalog.cardinality(o.acl) > 0 THEN o.acl END) AS a
$$;

-- Every object of schema p_nsp that carries privileges (every column too: PostgreSQL empties a column's
-- ACL to NULL, and a release must find it again), extension members excepted, with how GRANT names it
-- and which of its privileges are writes.
CREATE FUNCTION gcos._acl_objects(p_nsp oid)
    RETURNS TABLE (classid oid, objid oid, subid integer, objtype text, identity text, col name, grant_on text,
                   owner oid, secdef boolean, write_privs text[])
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'pg_catalog.pg_namespace'::pg_catalog.regclass::oid, n.oid, 0, 'schema', pg_catalog.quote_ident(n.nspname),
           NULL::name, 'SCHEMA ' || pg_catalog.quote_ident(n.nspname), n.nspowner, false, ARRAY['CREATE']
      FROM pg_catalog.pg_namespace AS n WHERE n.oid = p_nsp
    UNION ALL
    SELECT 'pg_catalog.pg_class'::pg_catalog.regclass::oid, c.oid, 0, i.type, c.oid::pg_catalog.regclass::text, NULL,
           CASE WHEN c.relkind = 'S' THEN 'SEQUENCE ' ELSE 'TABLE ' END || c.oid::pg_catalog.regclass::text, c.relowner, false,
           CASE WHEN c.relkind = 'S' THEN ARRAY['USAGE', 'UPDATE']
                ELSE ARRAY['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER', 'MAINTAIN'] END
      FROM pg_catalog.pg_class AS c, LATERAL pg_catalog.pg_identify_object('pg_catalog.pg_class'::pg_catalog.regclass, c.oid, 0) AS i
     WHERE c.relnamespace = p_nsp AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend AS x WHERE x.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                          AND x.objid = c.oid AND x.deptype = 'e')
    UNION ALL
    SELECT 'pg_catalog.pg_class'::pg_catalog.regclass::oid, c.oid, a.attnum::integer, 'column',
           c.oid::pg_catalog.regclass::text || '.' || pg_catalog.quote_ident(a.attname), a.attname,
           'TABLE ' || c.oid::pg_catalog.regclass::text, c.relowner, false, ARRAY['INSERT', 'UPDATE', 'REFERENCES']
      FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_attribute AS a ON a.attrelid = c.oid
     WHERE c.relnamespace = p_nsp AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND a.attnum > 0 AND NOT a.attisdropped
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend AS x WHERE x.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                          AND x.objid = c.oid AND x.deptype = 'e')
    UNION ALL
    SELECT 'pg_catalog.pg_proc'::pg_catalog.regclass::oid, p.oid, 0,
           CASE p.prokind WHEN 'p' THEN 'procedure' WHEN 'a' THEN 'aggregate' ELSE 'function' END,
           p.oid::pg_catalog.regprocedure::text, NULL, 'ROUTINE ' || p.oid::pg_catalog.regprocedure::text, p.proowner,
           p.prosecdef, CASE WHEN p.prosecdef THEN ARRAY['EXECUTE'] ELSE '{}'::text[] END
      FROM pg_catalog.pg_proc AS p
     WHERE p.pronamespace = p_nsp
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend AS x WHERE x.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass
                          AND x.objid = p.oid AND x.deptype = 'e')
    UNION ALL
    SELECT 'pg_catalog.pg_type'::pg_catalog.regclass::oid, t.oid, 0, CASE WHEN t.typtype = 'd' THEN 'domain' ELSE 'type' END,
           t.oid::pg_catalog.regtype::text, NULL,
           CASE WHEN t.typtype = 'd' THEN 'DOMAIN ' ELSE 'TYPE ' END || t.oid::pg_catalog.regtype::text, t.typowner, false,
           '{}'::text[]
      FROM pg_catalog.pg_type AS t
     WHERE t.typnamespace = p_nsp
       AND EXISTS (SELECT 1 FROM pg_catalog.pg_depend AS x WHERE x.classid = 'pg_catalog.pg_type'::pg_catalog.regclass
                      AND x.objid = t.oid AND x.deptype = 'n')
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend AS x WHERE x.classid = 'pg_catalog.pg_type'::pg_catalog.regclass
                          AND x.objid = t.oid AND x.deptype IN ('e', 'i'))
$$;

-- Roles that are lasting members of gcos_kernel: any membership before PostgreSQL 16; from 16 on, one with
-- INHERIT or SET (an ADMIN OPTION alone lets a managed-service administrator adopt, but is no membership).
CREATE FUNCTION gcos._kernel_members() RETURNS text[]
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_out text[];
BEGIN
    IF pg_catalog.current_setting('server_version_num')::integer >= 160000 THEN
        EXECUTE 'SELECT COALESCE(pg_catalog.array_agg(DISTINCT m.member::pg_catalog.regrole::text), ''{}'')
                   FROM pg_catalog.pg_auth_members AS m
                  WHERE m.roleid = gcos._kernel_oid() AND (m.inherit_option OR m.set_option)' INTO v_out;
    ELSE
        SELECT COALESCE(pg_catalog.array_agg(DISTINCT m.member::pg_catalog.regrole::text), '{}') INTO v_out
          FROM pg_catalog.pg_auth_members AS m WHERE m.roleid = gcos._kernel_oid();
    END IF;
    RETURN v_out;
END
$$;

-- Roles (superusers aside) that write around any ACL: members of pg_write_all_data (PostgreSQL 14+) and of
-- pg_maintain (17+: REFRESH MATERIALIZED VIEW, LOCK, VACUUM ...), as 'role (predefined role)'.
CREATE FUNCTION gcos._bypass_writers() RETURNS text[]
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT COALESCE(pg_catalog.array_agg(pg_catalog.format('%s (%s)', r.rolname, g.rolname) ORDER BY r.rolname, g.rolname), '{}')
      FROM pg_catalog.pg_roles AS g, pg_catalog.pg_roles AS r
     WHERE g.rolname IN ('pg_write_all_data', 'pg_maintain') AND r.oid <> g.oid AND NOT r.rolsuper
       AND pg_catalog.pg_has_role(r.oid, g.oid, 'MEMBER')
$$;

-- Roles (superusers aside) that could make themselves gcos_kernel: those holding ADMIN OPTION on it and,
-- before PostgreSQL 16, every CREATEROLE role. Recorded, not refused: the managed-service adopter is one.
CREATE FUNCTION gcos._kernel_admins() RETURNS text[]
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT COALESCE(pg_catalog.array_agg(DISTINCT r.rolname::text), '{}')
      FROM pg_catalog.pg_roles AS r
     WHERE NOT r.rolsuper
       AND (EXISTS (SELECT 1 FROM pg_catalog.pg_auth_members AS m
                     WHERE m.roleid = gcos._kernel_oid() AND m.member = r.oid AND m.admin_option)
            OR (r.rolcreaterole AND pg_catalog.current_setting('server_version_num')::integer < 160000))
$$;

-- Objects that are parts of another, and that object: the table of a trigger, default, rule, policy,
-- index or table constraint, the domain of a domain constraint, the family of an operator family member,
-- the table of a row type, the type of a composite type's relation, the element's of an array type, the
-- range of a multirange.
CREATE FUNCTION gcos._object_parts() RETURNS TABLE (classid oid, objid oid, top_class oid, top_obj oid)
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'pg_catalog.pg_trigger'::pg_catalog.regclass::oid, x.oid, 'pg_catalog.pg_class'::pg_catalog.regclass::oid, x.tgrelid FROM pg_catalog.pg_trigger AS x
    UNION ALL SELECT 'pg_catalog.pg_attrdef'::pg_catalog.regclass, x.oid, 'pg_catalog.pg_class'::pg_catalog.regclass, x.adrelid FROM pg_catalog.pg_attrdef AS x
    UNION ALL SELECT 'pg_catalog.pg_rewrite'::pg_catalog.regclass, x.oid, 'pg_catalog.pg_class'::pg_catalog.regclass, x.ev_class FROM pg_catalog.pg_rewrite AS x
    UNION ALL SELECT 'pg_catalog.pg_policy'::pg_catalog.regclass, x.oid, 'pg_catalog.pg_class'::pg_catalog.regclass, x.polrelid FROM pg_catalog.pg_policy AS x
    UNION ALL SELECT 'pg_catalog.pg_class'::pg_catalog.regclass, x.indexrelid, 'pg_catalog.pg_class'::pg_catalog.regclass, x.indrelid FROM pg_catalog.pg_index AS x
    UNION ALL SELECT 'pg_catalog.pg_constraint'::pg_catalog.regclass, x.oid,
                     (CASE WHEN x.conrelid <> 0 THEN 'pg_catalog.pg_class' ELSE 'pg_catalog.pg_type' END)::pg_catalog.regclass,
                     CASE WHEN x.conrelid <> 0 THEN x.conrelid ELSE x.contypid END FROM pg_catalog.pg_constraint AS x
    UNION ALL SELECT 'pg_catalog.pg_amop'::pg_catalog.regclass, x.oid, 'pg_catalog.pg_opfamily'::pg_catalog.regclass, x.amopfamily FROM pg_catalog.pg_amop AS x
    UNION ALL SELECT 'pg_catalog.pg_amproc'::pg_catalog.regclass, x.oid, 'pg_catalog.pg_opfamily'::pg_catalog.regclass, x.amprocfamily FROM pg_catalog.pg_amproc AS x
    UNION ALL SELECT 'pg_catalog.pg_type'::pg_catalog.regclass, x.oid, 'pg_catalog.pg_class'::pg_catalog.regclass, c.oid
                FROM pg_catalog.pg_type AS x JOIN pg_catalog.pg_class AS c ON c.oid = x.typrelid AND c.relkind <> 'c'
    UNION ALL SELECT 'pg_catalog.pg_type'::pg_catalog.regclass, x.oid,
                     (CASE WHEN c.relkind <> 'c' THEN 'pg_catalog.pg_class' ELSE 'pg_catalog.pg_type' END)::pg_catalog.regclass,
                     CASE WHEN c.relkind <> 'c' THEN c.oid ELSE e.oid END
                FROM pg_catalog.pg_type AS x JOIN pg_catalog.pg_type AS e ON e.typarray = x.oid LEFT JOIN pg_catalog.pg_class AS c ON c.oid = e.typrelid
    UNION ALL SELECT 'pg_catalog.pg_type'::pg_catalog.regclass, x.rngmultitypid, 'pg_catalog.pg_type'::pg_catalog.regclass, x.rngtypid FROM pg_catalog.pg_range AS x
    UNION ALL SELECT 'pg_catalog.pg_class'::pg_catalog.regclass, x.oid, 'pg_catalog.pg_type'::pg_catalog.regclass, x.reltype
                FROM pg_catalog.pg_class AS x WHERE x.relkind = 'c'
$$;

-- Links through which others could change the set of schemas p_nsps and every adopted schema, one row per
-- link with the schema of its end in the set: an object of the set (extension members aside) that depends,
-- normally, automatically or on an extension, on an object outside it whose owner, or whose extension's
-- owner, is neither a superuser nor gcos_kernel (ALTER, CREATE OR REPLACE, DROP ... CASCADE); and,
-- whoever owns the other end, every partition, inheritance or foreign key across the set's edge (rows
-- written through a parent, or deleted by a cascade). A sub-object (column, default, rule, trigger,
-- policy, constraint, index, row type...) counts as the object it is part of (_object_parts).
CREATE FUNCTION gcos._adopt_links(p_nsps oid[]) RETURNS TABLE (schema_oid oid, link text)
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    WITH sets AS (
        SELECT n.nsp FROM pg_catalog.unnest(p_nsps) AS n(nsp)
        UNION SELECT s.schema_oid FROM gcos.adopted_schemas AS s WHERE s.released_at IS NULL
    ), inside AS (
        SELECT s.nsp, d.classid, d.objid FROM sets AS s JOIN pg_catalog.pg_depend AS d ON d.refobjid = s.nsp
         WHERE d.refclassid = 'pg_catalog.pg_namespace'::pg_catalog.regclass AND d.deptype = 'n'
           AND d.classid <> 'pg_catalog.pg_extension'::pg_catalog.regclass
           AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend AS e WHERE e.classid = d.classid AND e.objid = d.objid AND e.deptype = 'e')
        UNION ALL SELECT s.nsp, 'pg_catalog.pg_namespace'::pg_catalog.regclass, s.nsp FROM sets AS s
    ), parts AS (SELECT * FROM gcos._object_parts()), deps AS (
        SELECT DISTINCT i.nsp, i.classid AS a_class, i.objid AS a_obj, COALESCE(b.top_class, d.refclassid) AS b_class,
               COALESCE(b.top_obj, d.refobjid) AS b_obj
          FROM pg_catalog.pg_depend AS d
          LEFT JOIN parts AS a ON (a.classid, a.objid) = (d.classid, d.objid)
          LEFT JOIN parts AS b ON (b.classid, b.objid) = (d.refclassid, d.refobjid)
          JOIN inside AS i ON (i.classid, i.objid) = (COALESCE(a.top_class, d.classid), COALESCE(a.top_obj, d.objid))
         WHERE d.deptype IN ('n', 'a', 'x')
    ), rels AS (SELECT i.nsp, i.objid FROM inside AS i WHERE i.classid = 'pg_catalog.pg_class'::pg_catalog.regclass)
    SELECT x.nsp, pg_catalog.format('%s %s depends on %s %s (owner %s)', a.type, a.identity, b.type, b.identity, w.rolname)
      FROM deps AS x, pg_catalog.pg_identify_object(x.a_class, x.a_obj, 0) AS a, pg_catalog.pg_identify_object(x.b_class, x.b_obj, 0) AS b,
           LATERAL (SELECT r.rolname FROM pg_catalog.pg_roles AS r
                     WHERE NOT r.rolsuper AND r.oid <> gcos._kernel_oid()
                       AND r.oid IN (gcos._object_owner(x.b_class, x.b_obj),
                                     (SELECT s.refobjid FROM pg_catalog.pg_shdepend AS s JOIN pg_catalog.pg_database AS db ON db.oid = s.dbid
                                       WHERE db.datname = pg_catalog.current_database() AND s.classid = x.b_class
                                         AND s.objid = x.b_obj AND s.objsubid = 0 AND s.deptype = 'o'),
                                     (SELECT e.extowner FROM pg_catalog.pg_depend AS m JOIN pg_catalog.pg_extension AS e ON e.oid = m.refobjid
                                       WHERE m.classid = x.b_class AND m.objid = x.b_obj AND m.deptype = 'e'))
                     ORDER BY r.rolname LIMIT 1) AS w
     WHERE NOT EXISTS (SELECT 1 FROM inside AS o WHERE (o.classid, o.objid) = (x.b_class, x.b_obj))
    UNION
    SELECT r.nsp, pg_catalog.format('%s %s %s', h.inhrelid::pg_catalog.regclass,
                                    CASE WHEN p.relkind = 'p' THEN 'is a partition of' ELSE 'inherits from' END, h.inhparent::pg_catalog.regclass)
      FROM pg_catalog.pg_inherits AS h JOIN pg_catalog.pg_class AS p ON p.oid = h.inhparent JOIN rels AS r ON r.objid IN (h.inhrelid, h.inhparent)
     WHERE EXISTS (SELECT 1 FROM rels AS o WHERE o.objid = h.inhrelid) <> EXISTS (SELECT 1 FROM rels AS o WHERE o.objid = h.inhparent)
    UNION
    SELECT r.nsp, pg_catalog.format('foreign key %I of %s references %s', c.conname, c.conrelid::pg_catalog.regclass,
                                    c.confrelid::pg_catalog.regclass)
      FROM pg_catalog.pg_constraint AS c JOIN rels AS r ON r.objid IN (c.conrelid, c.confrelid)
     WHERE c.contype = 'f'
       AND EXISTS (SELECT 1 FROM rels AS o WHERE o.objid = c.conrelid) <> EXISTS (SELECT 1 FROM rels AS o WHERE o.objid = c.confrelid)
$$;

-- What gcos reads of a schema, as JSON: its objects and owners, the ACL of everything that carries one,
-- the kernel's default privileges there, the members of gcos_kernel, the roles (superusers aside) holding
-- CREATE on the database and, when p_set is given (the schemas adopted with it), its links (_adopt_links).
CREATE FUNCTION gcos._adopt_state(p_nsp oid, p_set oid[] DEFAULT NULL) RETURNS jsonb
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.jsonb_build_object(
        'schema', (SELECT n.nspname::text FROM pg_catalog.pg_namespace AS n WHERE n.oid = p_nsp),
        'schema_oid', p_nsp::bigint,
        'kernel', gcos._kernel_oid()::bigint,
        'objects', (SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                        'classid', o.classid::pg_catalog.regclass::text, 'objid', o.objid::bigint, 'type', o.objtype,
                        'object', o.identity, 'owner', o.owner::bigint, 'keyword', o.keyword, 'follows', o.follows,
                        'extension', o.extension) ORDER BY o.classid, o.objid), '[]')
                      FROM gcos._schema_objects(p_nsp) AS o),
        'acls', (SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                     'classid', a.classid::pg_catalog.regclass::text, 'objid', a.objid::bigint, 'subid', a.subid,
                     'type', a.objtype, 'object', a.identity, 'column', a.col, 'owner', a.owner::bigint,
                     'secdef', a.secdef, 'write', pg_catalog.to_jsonb(a.write_privs),
                     'items', gcos._acl_items(a.classid, a.objid, a.subid)) ORDER BY a.classid, a.objid, a.subid), '[]')
                   FROM gcos._acl_objects(p_nsp) AS a),
        'default_acl', (SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                            'on', CASE d.defaclobjtype WHEN 'r' THEN 'TABLES' WHEN 'S' THEN 'SEQUENCES'
                                  WHEN 'f' THEN 'FUNCTIONS' WHEN 'T' THEN 'TYPES' ELSE 'SCHEMAS' END,
                            'grantee', gcos._role_label(x.grantee::bigint), 'grantee_oid', x.grantee::bigint,
                            'privilege', x.privilege_type, 'grantable', x.is_grantable)
                            ORDER BY d.defaclobjtype, x.grantee, x.privilege_type), '[]')
                          FROM pg_catalog.pg_default_acl AS d, pg_catalog.aclexplode(d.defaclacl) AS x
                         WHERE d.defaclrole = gcos._kernel_oid() AND d.defaclnamespace = p_nsp),
        'kernel_members', pg_catalog.to_jsonb(gcos._kernel_members()),
        'bypass_writers', pg_catalog.to_jsonb(gcos._bypass_writers()),
        'kernel_admins', pg_catalog.to_jsonb(gcos._kernel_admins()),
        'database_creators', (SELECT COALESCE(pg_catalog.jsonb_agg(r.rolname::text ORDER BY r.rolname), '[]')
                                FROM pg_catalog.pg_roles AS r
                               WHERE NOT r.rolsuper AND r.oid <> gcos._kernel_oid()
                                 AND pg_catalog.has_database_privilege(r.oid, pg_catalog.current_database(), 'CREATE')))
        || CASE WHEN p_set IS NULL THEN '{}' ELSE pg_catalog.jsonb_build_object('links', (
               SELECT COALESCE(pg_catalog.jsonb_agg(DISTINCT l.link), '[]') FROM gcos._adopt_links(p_nsp || p_set) AS l
                WHERE l.schema_oid = p_nsp)) END
$$;

-- ----------------------------------------------------------------------------------- verification and records

-- What does not hold for a schema in state p_state to count as adopted (p_action 'adopt') or released;
-- given p_record, the payload of its adopt record, also what the adoption took that is gone now and the
-- extensions put in the schema since.
CREATE FUNCTION gcos._adopt_violations(p_state jsonb, p_action text, p_record jsonb DEFAULT NULL) RETURNS text[]
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    WITH objects AS (
        SELECT o.* FROM pg_catalog.jsonb_to_recordset(p_state -> 'objects')
                        AS o(type text, object text, owner bigint, keyword text, extension text)
         WHERE o.extension IS NULL
    ), items AS (
        SELECT a.type, a.object, a.write, i.*
          FROM pg_catalog.jsonb_to_recordset(p_state -> 'acls') AS a(type text, object text, write jsonb, items jsonb),
               pg_catalog.jsonb_to_recordset(a.items) AS i(grantor bigint, grantee bigint, privilege text, grantable boolean)
    ), kernel AS (SELECT (p_state ->> 'kernel')::bigint AS oid)
    SELECT COALESCE(pg_catalog.array_agg(v.what ORDER BY v.what), '{}') FROM (
        SELECT pg_catalog.format('%s %s is owned by %s', o.type, o.object, gcos._role_label(o.owner)) AS what
          FROM objects AS o, kernel AS k
         WHERE p_action = 'adopt' AND o.keyword <> '-' AND o.owner IS DISTINCT FROM k.oid
        UNION ALL
        SELECT pg_catalog.format('%s %s is still owned by gcos_kernel', o.type, o.object)
          FROM objects AS o, kernel AS k WHERE p_action = 'release' AND o.owner = k.oid
        UNION ALL
        SELECT pg_catalog.format('%s holds %s%s on %s %s', gcos._role_label(i.grantee), i.privilege,
                                 CASE WHEN i.grantable THEN ' WITH GRANT OPTION' ELSE '' END, i.type, i.object)
          FROM items AS i, kernel AS k
         WHERE p_action = 'adopt' AND i.grantee <> k.oid AND (i.grantable OR i.write ? i.privilege)
        UNION ALL
        SELECT pg_catalog.format('gcos_kernel holds default privileges on %s in schema %s', d.value ->> 'on',
                                 p_state ->> 'schema')
          FROM pg_catalog.jsonb_array_elements(p_state -> 'default_acl') AS d(value) WHERE p_action = 'release'
        UNION ALL
        SELECT pg_catalog.format('role %s is a member of gcos_kernel', m.value #>> '{}')
          FROM pg_catalog.jsonb_array_elements(p_state -> 'kernel_members') AS m(value)
        UNION ALL
        SELECT pg_catalog.format('role %s writes to every table whatever its privileges', m.value #>> '{}')
          FROM pg_catalog.jsonb_array_elements(p_state -> 'bypass_writers') AS m(value) WHERE p_action = 'adopt'
        UNION ALL
        SELECT l.value FROM pg_catalog.jsonb_array_elements_text(COALESCE(p_state -> 'links', '[]')) AS l(value)
         WHERE p_action = 'adopt'
        UNION ALL
        SELECT pg_catalog.format('%s %s, adopted from %s, no longer exists', r.type, r.object, r.previous_owner)
          FROM pg_catalog.jsonb_to_recordset(p_record -> 'owners') AS r(classid text, objid bigint, type text, object text, previous_owner text)
         WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.jsonb_to_recordset(p_state -> 'objects') AS o(classid text, objid bigint)
                            WHERE (o.classid, o.objid) = (r.classid, r.objid))
        UNION ALL
        SELECT DISTINCT pg_catalog.format('extension %s was put in schema %s after its adoption', o.extension, p_state ->> 'schema')
          FROM pg_catalog.jsonb_to_recordset(p_state -> 'objects') AS o(extension text)
         WHERE p_record IS NOT NULL AND o.extension IS NOT NULL
           AND NOT (COALESCE(p_record -> 'extension_members', '[]') @> pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object('extension', o.extension)))
    ) AS v
$$;

-- Privileges that went away (as they were) and came (as they are) between two states of one schema,
-- each object's old owner read as its new owner (what ALTER ... OWNER does to an ACL).
CREATE FUNCTION gcos._adopt_acl_change(p_before jsonb, p_after jsonb) RETURNS jsonb
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    WITH b AS (
        SELECT * FROM pg_catalog.jsonb_to_recordset(p_before -> 'acls')
                 AS x(classid text, objid bigint, subid integer, type text, object text, "column" text, owner bigint,
                      secdef boolean, items jsonb)
    ), a AS (
        SELECT * FROM pg_catalog.jsonb_to_recordset(p_after -> 'acls')
                 AS x(classid text, objid bigint, subid integer, type text, object text, "column" text, owner bigint,
                      secdef boolean, items jsonb)
    ), objs AS (
        SELECT classid, objid, subid, COALESCE(a.type, b.type) AS type, COALESCE(a.object, b.object) AS object,
               COALESCE(a."column", b."column") AS col, COALESCE(a.secdef, b.secdef) AS secdef,
               b.owner AS old_owner, a.owner AS new_owner,
               COALESCE(b.items, '[]') AS old_items, COALESCE(a.items, '[]') AS new_items
          FROM b FULL JOIN a USING (classid, objid, subid)
    ), old AS (
        SELECT o.*, i.*, CASE WHEN i.grantor = o.old_owner THEN o.new_owner ELSE i.grantor END AS t_grantor,
               CASE WHEN i.grantee = o.old_owner THEN o.new_owner ELSE i.grantee END AS t_grantee
          FROM objs AS o, pg_catalog.jsonb_to_recordset(o.old_items) AS i(grantor bigint, grantee bigint, privilege text, grantable boolean)
    ), new AS (
        SELECT o.*, i.*
          FROM objs AS o, pg_catalog.jsonb_to_recordset(o.new_items) AS i(grantor bigint, grantee bigint, privilege text, grantable boolean)
    ), changed AS (
        SELECT 'revoked' AS side, x.* FROM old AS x
         WHERE NOT EXISTS (SELECT 1 FROM new AS y WHERE (y.classid, y.objid, y.subid, y.grantor, y.grantee, y.privilege, y.grantable)
                                                      = (x.classid, x.objid, x.subid, x.t_grantor, x.t_grantee, x.privilege, x.grantable))
        UNION ALL
        SELECT 'granted', y.*, y.grantor, y.grantee FROM new AS y
         WHERE NOT EXISTS (SELECT 1 FROM old AS x WHERE (y.classid, y.objid, y.subid, y.grantor, y.grantee, y.privilege, y.grantable)
                                                      = (x.classid, x.objid, x.subid, x.t_grantor, x.t_grantee, x.privilege, x.grantable))
    )
    SELECT pg_catalog.jsonb_build_object(
        'revoked', COALESCE(pg_catalog.jsonb_agg(c.item ORDER BY c.classid, c.objid, c.subid, c.grantee, c.privilege)
                            FILTER (WHERE c.side = 'revoked' AND NOT c.execute), '[]'),
        'revoked_execute', COALESCE(pg_catalog.jsonb_agg(c.item ORDER BY c.classid, c.objid, c.grantee)
                                    FILTER (WHERE c.side = 'revoked' AND c.execute), '[]'),
        'granted', COALESCE(pg_catalog.jsonb_agg(c.item ORDER BY c.classid, c.objid, c.subid, c.grantee, c.privilege)
                            FILTER (WHERE c.side = 'granted'), '[]'))
      FROM (SELECT x.side, x.classid, x.objid, x.subid, x.grantee, x.privilege,
                   COALESCE(x.secdef, false) AND x.privilege = 'EXECUTE' AS execute,
                   pg_catalog.jsonb_build_object(
                       'object', x.object, 'type', x.type, 'column', x.col, 'classid', x.classid, 'objid', x.objid,
                       'subid', x.subid, 'grantee', gcos._role_label(x.grantee), 'grantee_oid', x.grantee,
                       'grantor', gcos._role_label(x.grantor), 'grantor_oid', x.grantor, 'privilege', x.privilege,
                       'grantable', x.grantable) AS item
              FROM changed AS x) AS c
$$;

-- The record's payload from the two catalog readings (before: _adopt_begin's, after: now).
CREATE FUNCTION gcos._adopt_payload(p_before jsonb, p_after jsonb) RETURNS jsonb
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    WITH b AS (SELECT * FROM pg_catalog.jsonb_to_recordset(p_before -> 'objects')
                        AS x(classid text, objid bigint, type text, object text, owner bigint, keyword text, extension text)),
         a AS (SELECT * FROM pg_catalog.jsonb_to_recordset(p_after -> 'objects')
                        AS x(classid text, objid bigint, type text, object text, owner bigint, keyword text, extension text))
    SELECT pg_catalog.jsonb_build_object(
        'format_version', 1,
        'schema', p_after ->> 'schema',
        'schema_oid', (p_after ->> 'schema_oid')::bigint,
        'kernel', 'gcos_kernel',
        'owners', (SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                       'object', a.object, 'type', a.type, 'classid', a.classid, 'objid', a.objid,
                       'previous_owner', gcos._role_label(b.owner), 'previous_owner_oid', b.owner,
                       'owner', gcos._role_label(a.owner), 'owner_oid', a.owner) ORDER BY a.classid, a.objid), '[]')
                     FROM a JOIN b USING (classid, objid) WHERE a.owner IS DISTINCT FROM b.owner),
        'default_privileges', CASE WHEN p_after -> 'default_acl' = '[]' THEN p_before -> 'default_acl'
                                   ELSE p_after -> 'default_acl' END,
        'extension_members', (SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                                  'object', a.object, 'type', a.type, 'extension', a.extension) ORDER BY a.classid, a.objid), '[]')
                                FROM a WHERE a.extension IS NOT NULL),
        'ownerless', (SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object('object', a.object, 'type', a.type)
                                                          ORDER BY a.classid, a.objid), '[]')
                        FROM a WHERE a.keyword = '-' AND a.extension IS NULL),
        'kernel_admins', p_after -> 'kernel_admins',
        'database_creators', p_after -> 'database_creators')
        || gcos._adopt_acl_change(p_before, p_after)
$$;

-- Who may adopt or release: a superuser, or a human principal holding the admin role.
CREATE FUNCTION gcos._require_adopter(p_action text) RETURNS void
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a record;
BEGIN
    SELECT * INTO a FROM gcos._session_actor();
    IF NOT a.is_superuser AND (a.principal IS NULL OR a.kind <> 'human' OR NOT ('admin' = ANY (a.roles))) THEN
        PERFORM gcos._refuse(pg_catalog.format(
            'gcos: session role %I is not a superuser nor a human gcos admin and cannot %s schemas; ask a gcos admin',
            a.role_name, p_action));
    END IF;
END
$$;

-- Snapshot schema p_nsp for an adoption or release in this transaction; returns, for a release, the
-- payload of the adopt record being undone (else NULL).
CREATE FUNCTION gcos._adopt_begin(p_nsp oid, p_action text) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_seq bigint;
    v_name text := (SELECT n.nspname::text FROM pg_catalog.pg_namespace AS n WHERE n.oid = p_nsp);
BEGIN
    PERFORM gcos._require_adopter(p_action);
    IF p_action IS NULL OR p_action NOT IN ('adopt', 'release') THEN
        PERFORM gcos._invalid('gcos: the action is adopt or release');
    ELSIF v_name IS NULL OR v_name IN ('gcos', 'pg_catalog', 'information_schema') OR v_name ~ '^pg_(toast|temp_|toast_temp_)' THEN
        PERFORM gcos._invalid(pg_catalog.format('gcos: schema oid %s is not a schema gcos can %s', p_nsp, p_action));
    END IF;
    SELECT s.ledger_seq INTO v_seq FROM gcos.adopted_schemas AS s WHERE s.schema_oid = p_nsp AND s.released_at IS NULL;
    IF p_action = 'adopt' AND v_seq IS NOT NULL THEN
        PERFORM gcos._invalid(pg_catalog.format('gcos: schema %I is already adopted (ledger seq %s)', v_name, v_seq));
    ELSIF p_action = 'release' AND v_seq IS NULL THEN
        PERFORM gcos._invalid(pg_catalog.format('gcos: schema %I is not adopted; there is nothing to release', v_name));
    END IF;
    DELETE FROM gcos.adopt_staging AS s WHERE pg_catalog.pg_xact_status(s.xact) IS DISTINCT FROM 'in progress';
    INSERT INTO gcos.adopt_staging AS s (xact, schema_oid, action, state)
    VALUES (pg_catalog.pg_current_xact_id(), p_nsp, p_action, gcos._adopt_state(p_nsp))
    ON CONFLICT (xact, schema_oid, action) DO UPDATE SET state = EXCLUDED.state;
    RETURN (SELECT l.record -> 'payload' FROM gcos.ledger AS l WHERE l.seq = v_seq AND p_action = 'release');
END
$$;

-- Verify from the catalog that schema p_nsp is now adopted (or released) as this transaction's snapshot
-- began it, and record that: the `adopt` (`release`) ledger record and gcos.adopted_schemas.
CREATE FUNCTION gcos._adopt_record(p_nsp oid, p_action text)
    RETURNS TABLE (ledger_seq bigint, payload jsonb)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_before jsonb;
    v_after jsonb;
    v_bad text[];
    v_payload jsonb;
    v_adoption record;
    v_write record;
BEGIN
    PERFORM gcos._require_adopter(p_action);
    SELECT s.state INTO v_before FROM gcos.adopt_staging AS s
     WHERE s.xact = pg_catalog.pg_current_xact_id() AND s.schema_oid = p_nsp AND s.action = p_action;
    IF v_before IS NULL THEN
        PERFORM gcos._refuse(pg_catalog.format(
            'gcos: no %s of schema oid %s was begun in this transaction; use gcos.%s (gcos adopt%s)', p_action,
            p_nsp, p_action, CASE WHEN p_action = 'release' THEN ' --release' ELSE '' END));
    END IF;
    -- links may end in the other schemas this transaction adopts, once they are locked down as well
    v_after := gcos._adopt_state(p_nsp, CASE WHEN p_action = 'adopt' THEN ARRAY(
        SELECT s.schema_oid FROM gcos.adopt_staging AS s
         WHERE s.xact = pg_catalog.pg_current_xact_id() AND s.action = 'adopt' AND s.schema_oid <> p_nsp
           AND pg_catalog.cardinality(gcos._adopt_violations(gcos._adopt_state(s.schema_oid), 'adopt')) = 0) END);
    IF (SELECT pg_catalog.array_agg(o.value - 'owner' ORDER BY o.value ->> 'classid', o.value ->> 'objid')
          FROM pg_catalog.jsonb_array_elements(v_before -> 'objects') AS o(value))
       IS DISTINCT FROM (SELECT pg_catalog.array_agg(o.value - 'owner' ORDER BY o.value ->> 'classid', o.value ->> 'objid')
                           FROM pg_catalog.jsonb_array_elements(v_after -> 'objects') AS o(value)) THEN
        PERFORM gcos._refuse(pg_catalog.format('gcos: the objects of schema %I changed during the %s; nothing is recorded',
                                               v_after ->> 'schema', p_action));
    END IF;
    v_bad := gcos._adopt_violations(v_after, p_action);
    IF pg_catalog.cardinality(v_bad) > 0 THEN
        PERFORM gcos._refuse(pg_catalog.format('gcos: schema %I is not %s: %s%s', v_after ->> 'schema',
            CASE WHEN p_action = 'adopt' THEN 'adopted' ELSE 'released' END,
            pg_catalog.array_to_string(v_bad[1:5], '; '),
            CASE WHEN pg_catalog.cardinality(v_bad) > 5 THEN pg_catalog.format(' (and %s more)', pg_catalog.cardinality(v_bad) - 5) ELSE '' END));
    END IF;
    SELECT s.id, s.ledger_seq INTO v_adoption FROM gcos.adopted_schemas AS s
     WHERE s.schema_oid = p_nsp AND s.released_at IS NULL FOR UPDATE;
    IF (p_action = 'adopt') = (v_adoption.id IS NOT NULL) THEN
        PERFORM gcos._refuse(pg_catalog.format('gcos: schema %I is %s', v_after ->> 'schema',
            CASE WHEN p_action = 'adopt' THEN 'already adopted' ELSE 'not adopted' END));
    END IF;
    v_payload := gcos._adopt_payload(v_before, v_after);
    IF p_action = 'release' THEN
        v_payload := v_payload || pg_catalog.jsonb_build_object('adopt_seq', v_adoption.ledger_seq);
    END IF;
    SELECT * INTO v_write FROM gcos._ledger_write(p_action, NULL, NULL, NULL, NULL, v_payload);
    IF p_action = 'adopt' THEN
        INSERT INTO gcos.adopted_schemas (schema_oid, schema_name, adopted_at, ledger_seq)
        VALUES (p_nsp, v_after ->> 'schema', pg_catalog.clock_timestamp(), v_write.seq);
    ELSE
        UPDATE gcos.adopted_schemas AS s SET released_at = pg_catalog.clock_timestamp(), release_seq = v_write.seq
         WHERE s.id = v_adoption.id;
    END IF;
    DELETE FROM gcos.adopt_staging AS s
     WHERE s.xact = pg_catalog.pg_current_xact_id() AND s.schema_oid = p_nsp AND s.action = p_action;
    RETURN QUERY SELECT v_write.seq, v_payload;
END
$$;

-- Kinds written only by their own aperture function, never through gcos.ledger_append (001's list, the
-- registry's (006) and these).
CREATE OR REPLACE FUNCTION gcos._reserved_kinds() RETURNS text[]
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT ARRAY['install', 'principal', 'approval', 'approval_revocation', 'decision', 'decision_revocation',
                   'spec_registered', 'plan_registered', 'adopt', 'release'] $$;

-- ----------------------------------------------------------------------------------- acting (caller's rights)

-- Run one statement, as role p_as when given (SET LOCAL ROLE, put back afterwards).
CREATE FUNCTION gcos._adopt_exec(p_sql text, p_as text DEFAULT NULL) RETURNS void
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_role text := pg_catalog.current_setting('role');
BEGIN
    IF p_as IS NOT NULL THEN
        PERFORM pg_catalog.set_config('role', p_as, true);
    END IF;
    EXECUTE p_sql;
    IF p_as IS NOT NULL THEN
        PERFORM pg_catalog.set_config('role', v_role, true);
    END IF;
END
$$;

-- Items of p_have and p_want (ACL JSON arrays) that differ, the owner's own items aside.
CREATE FUNCTION gcos._acl_delta(p_have jsonb, p_want jsonb, p_owner bigint)
    RETURNS TABLE (side text, grantor bigint, grantee bigint, privilege text, grantable boolean)
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
    (SELECT 'extra', h.* FROM pg_catalog.jsonb_to_recordset(p_have) AS h(grantor bigint, grantee bigint, privilege text, grantable boolean)
      WHERE h.grantee <> p_owner
     EXCEPT
     SELECT 'extra', w.* FROM pg_catalog.jsonb_to_recordset(p_want) AS w(grantor bigint, grantee bigint, privilege text, grantable boolean))
    UNION ALL
    (SELECT 'missing', w.* FROM pg_catalog.jsonb_to_recordset(p_want) AS w(grantor bigint, grantee bigint, privilege text, grantable boolean)
      WHERE w.grantee <> p_owner
     EXCEPT
     SELECT 'missing', h.* FROM pg_catalog.jsonb_to_recordset(p_have) AS h(grantor bigint, grantee bigint, privilege text, grantable boolean))
$$;

-- p_want with every grant by a role this session may not SET ROLE to (or that no longer exists) made by
-- the owner instead, and items for roles that no longer exist dropped.
CREATE FUNCTION gcos._acl_grantable_by_us(p_want jsonb, p_owner bigint) RETURNS jsonb
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT COALESCE(pg_catalog.jsonb_agg(DISTINCT pg_catalog.jsonb_build_object(
               'grantor', CASE WHEN w.grantor = p_owner OR (r.oid IS NOT NULL AND pg_catalog.pg_has_role(r.oid, 'MEMBER'))
                               THEN w.grantor ELSE p_owner END,
               'grantee', w.grantee, 'privilege', w.privilege, 'grantable', w.grantable)), '[]')
      FROM pg_catalog.jsonb_to_recordset(p_want) AS w(grantor bigint, grantee bigint, privilege text, grantable boolean)
      LEFT JOIN pg_catalog.pg_roles AS r ON r.oid = w.grantor::oid
     WHERE w.grantee = 0 OR EXISTS (SELECT 1 FROM pg_catalog.pg_roles AS g WHERE g.oid = w.grantee::oid)
$$;

-- Make the ACL of one object (or column) equal p_want, the owner's own privileges aside, by REVOKE ...
-- CASCADE and GRANT, a grant by another grantor made as that grantor (SET ROLE) where this session may,
-- else by the owner. Refuses (55000) when the ACL cannot be made so.
CREATE FUNCTION gcos._acl_realize(p_classid oid, p_objid oid, p_subid integer, p_grant_on text, p_col name, p_want jsonb)
    RETURNS void
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_cols text := CASE WHEN p_col IS NULL THEN '' ELSE pg_catalog.format(' (%I)', p_col) END;
    v_owner bigint := gcos._object_owner(p_classid, p_objid);
    v_want jsonb := gcos._acl_grantable_by_us(p_want, v_owner);
    r record;
    i integer;
BEGIN
    FOR i IN 1 .. 8 LOOP
        EXIT WHEN NOT EXISTS (SELECT 1 FROM gcos._acl_delta(gcos._acl_items(p_classid, p_objid, p_subid), v_want, v_owner));
        -- what the owner granted (or this session, as the owner), then what other grantors granted
        FOR r IN SELECT DISTINCT d.grantee, CASE WHEN d.grantor = v_owner THEN NULL ELSE d.grantor END AS grantor
                   FROM gcos._acl_delta(gcos._acl_items(p_classid, p_objid, p_subid), v_want, v_owner) AS d
                  WHERE d.side = 'extra' LOOP
            CONTINUE WHEN r.grantor IS NOT NULL AND NOT pg_catalog.pg_has_role(r.grantor::oid, 'MEMBER');
            CONTINUE WHEN NOT EXISTS (  -- gone already, by the CASCADE of a revoke from its grantor
                SELECT 1 FROM gcos._acl_delta(gcos._acl_items(p_classid, p_objid, p_subid), v_want, v_owner) AS d
                 WHERE d.side = 'extra' AND d.grantee = r.grantee
                   AND d.grantor = COALESCE(r.grantor, v_owner));
            PERFORM gcos._adopt_exec(pg_catalog.format('REVOKE ALL%s ON %s FROM %s CASCADE', v_cols, p_grant_on,
                                                       gcos._grantee_sql(r.grantee)), gcos._role_label(r.grantor));
        END LOOP;
        FOR r IN SELECT d.grantor, d.grantee, d.grantable,
                        pg_catalog.string_agg(d.privilege || v_cols, ', ' ORDER BY d.privilege) AS privs
                   FROM gcos._acl_delta(gcos._acl_items(p_classid, p_objid, p_subid), v_want, v_owner) AS d
                  WHERE d.side = 'missing'
                  GROUP BY d.grantor, d.grantee, d.grantable ORDER BY d.grantor <> v_owner, d.grantor, d.grantee LOOP
            PERFORM gcos._adopt_exec(pg_catalog.format('GRANT %s ON %s TO %s%s', r.privs, p_grant_on,
                                                       gcos._grantee_sql(r.grantee),
                                                       CASE WHEN r.grantable THEN ' WITH GRANT OPTION' ELSE '' END),
                                     CASE WHEN r.grantor <> v_owner THEN gcos._role_label(r.grantor) END);
        END LOOP;
    END LOOP;
    IF EXISTS (SELECT 1 FROM gcos._acl_delta(gcos._acl_items(p_classid, p_objid, p_subid), v_want, v_owner)) THEN
        RAISE EXCEPTION 'gcos: could not set the privileges on % as gcos needs them; nothing was changed', p_grant_on
            USING ERRCODE = '55000',
                  HINT = 'Privileges granted by roles this session cannot SET ROLE to must be revoked by them first.';
    END IF;
END
$$;

-- The ACL an adopted object keeps: the kernel's own items; for everyone else the read privileges only,
-- without grant option, granted by the kernel.
CREATE FUNCTION gcos._acl_lockdown(p_items jsonb, p_kernel bigint, p_write jsonb) RETURNS jsonb
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT COALESCE(pg_catalog.jsonb_agg(DISTINCT pg_catalog.jsonb_build_object(
               'grantor', CASE WHEN i.grantee = p_kernel THEN i.grantor ELSE p_kernel END, 'grantee', i.grantee,
               'privilege', i.privilege, 'grantable', i.grantable AND i.grantee = p_kernel)), '[]')
      FROM pg_catalog.jsonb_to_recordset(p_items) AS i(grantor bigint, grantee bigint, privilege text, grantable boolean)
     WHERE i.grantee = p_kernel OR NOT p_write ? i.privilege
$$;

-- The ACL a released object gets back: what it has now, less what the adoption granted instead (the
-- kernel read as the owner), plus what the adoption revoked.
CREATE FUNCTION gcos._acl_release_want(p_have jsonb, p_owner bigint, p_kernel bigint, p_granted jsonb, p_revoked jsonb)
    RETURNS jsonb
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT COALESCE(pg_catalog.jsonb_agg(DISTINCT s.item), '[]') FROM (
        (SELECT pg_catalog.jsonb_build_object('grantor', h.grantor, 'grantee', h.grantee, 'privilege', h.privilege,
                                              'grantable', h.grantable) AS item
           FROM pg_catalog.jsonb_to_recordset(p_have) AS h(grantor bigint, grantee bigint, privilege text, grantable boolean)
         EXCEPT
         SELECT pg_catalog.jsonb_build_object(
                    'grantor', CASE WHEN g.grantor_oid = p_kernel THEN p_owner ELSE g.grantor_oid END,
                    'grantee', CASE WHEN g.grantee_oid = p_kernel THEN p_owner ELSE g.grantee_oid END,
                    'privilege', g.privilege, 'grantable', g.grantable)
           FROM pg_catalog.jsonb_to_recordset(COALESCE(p_granted, '[]'))
                AS g(grantor_oid bigint, grantee_oid bigint, privilege text, grantable boolean))
        UNION
        SELECT pg_catalog.jsonb_build_object('grantor', r.grantor_oid, 'grantee', r.grantee_oid, 'privilege', r.privilege,
                                             'grantable', r.grantable)
          FROM pg_catalog.jsonb_to_recordset(COALESCE(p_revoked, '[]'))
               AS r(grantor_oid bigint, grantee_oid bigint, privilege text, grantable boolean)
    ) AS s
$$;

-- Schema names as oids, in order, each once; refuses (22023) names that are not schemas gcos may adopt.
CREATE FUNCTION gcos._adopt_schemas(p_schemas text[]) RETURNS oid[]
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_name text;
    v_oid oid;
    v_out oid[] := '{}';
BEGIN
    IF p_schemas IS NULL OR pg_catalog.cardinality(p_schemas) = 0 OR pg_catalog.array_position(p_schemas, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'gcos: name at least one schema (and no NULLs)' USING ERRCODE = '22023';
    END IF;
    FOREACH v_name IN ARRAY p_schemas LOOP
        SELECT n.oid INTO v_oid FROM pg_catalog.pg_namespace AS n WHERE n.nspname = v_name;
        IF v_oid IS NULL THEN
            RAISE EXCEPTION 'gcos: schema % does not exist in database %', pg_catalog.quote_ident(v_name),
                pg_catalog.current_database() USING ERRCODE = '22023';
        ELSIF v_name IN ('gcos', 'pg_catalog', 'information_schema') OR v_name ~ '^pg_(toast|temp_|toast_temp_)' THEN
            RAISE EXCEPTION 'gcos: schema % belongs to PostgreSQL or gcos and cannot be adopted', pg_catalog.quote_ident(v_name)
                USING ERRCODE = '22023';
        ELSIF NOT v_oid = ANY (v_out) THEN
            v_out := v_out || v_oid;
        END IF;
    END LOOP;
    RETURN v_out;
END
$$;

-- Refuses (42501) while any role is a lasting member of gcos_kernel.
CREATE FUNCTION gcos._adopt_no_members() RETURNS void
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_members text[] := gcos._kernel_members();
BEGIN
    IF pg_catalog.cardinality(v_members) > 0 THEN
        RAISE EXCEPTION 'gcos: % a member of gcos_kernel; nobody may hold the kernel role: REVOKE gcos_kernel FROM %, then retry',
            pg_catalog.array_to_string(v_members, ', ') || CASE WHEN pg_catalog.cardinality(v_members) = 1 THEN ' is' ELSE ' are' END,
            pg_catalog.array_to_string(v_members, ', ') USING ERRCODE = '42501';
    END IF;
END
$$;

-- Refuses what cannot be adopted: objects of kinds gcos does not handle and links through which others
-- could change the schemas (_adopt_links) (22023), and, for a session that is not a superuser, objects
-- whose owner it is not a member of (42501), so PostgreSQL would refuse anyway.
CREATE FUNCTION gcos._adopt_check_objects(p_nsps oid[]) RETURNS void
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_bad text[];
BEGIN
    SELECT pg_catalog.array_agg(pg_catalog.format('%s %s', o.objtype, o.identity) ORDER BY o.identity) INTO v_bad
      FROM pg_catalog.unnest(p_nsps) AS n(oid), gcos._schema_objects(n.oid) AS o
     WHERE o.keyword IS NULL AND o.extension IS NULL;
    IF v_bad IS NOT NULL THEN
        RAISE EXCEPTION 'gcos: gcos does not know how to adopt %; move them out of the schema or drop them, then retry',
            pg_catalog.array_to_string(v_bad, ', ') USING ERRCODE = '22023';
    END IF;
    SELECT pg_catalog.array_agg(DISTINCT l.link) INTO v_bad FROM gcos._adopt_links(p_nsps) AS l WHERE l.schema_oid = ANY (p_nsps);
    IF v_bad IS NOT NULL THEN
        RAISE EXCEPTION 'gcos: others could change these schemas through what lies outside them: %; adopt those schemas too, or give those objects to a superuser (a partition, inheritance or foreign key must stay inside), then retry',
            pg_catalog.array_to_string(v_bad, '; ') USING ERRCODE = '22023';
    END IF;
    IF (SELECT r.rolsuper FROM pg_catalog.pg_roles AS r WHERE r.rolname = current_user) THEN
        RETURN;
    END IF;
    SELECT pg_catalog.array_agg(pg_catalog.format('%s %s (owner %s)', o.objtype, o.identity, gcos._role_label(o.owner::bigint))
                                ORDER BY o.identity) INTO v_bad
      FROM pg_catalog.unnest(p_nsps) AS n(oid), gcos._schema_objects(n.oid) AS o
     WHERE o.extension IS NULL AND o.keyword <> '-' AND o.owner <> gcos._kernel_oid()
       AND NOT pg_catalog.pg_has_role(o.owner, 'USAGE');
    IF v_bad IS NOT NULL THEN
        RAISE EXCEPTION 'gcos: role % neither owns nor is a member of the owner of %; run gcos adopt as a superuser or as a member of those owners',
            current_user, pg_catalog.array_to_string(v_bad[1:10], ', ')
                || CASE WHEN pg_catalog.cardinality(v_bad) > 10 THEN pg_catalog.format(' (and %s more)', pg_catalog.cardinality(v_bad) - 10) ELSE '' END
            USING ERRCODE = '42501';
    END IF;
END
$$;

-- Lets a session that is not a superuser act as gcos_kernel until _kernel_session_end, in this transaction
-- only, and gives the roles p_schema_owners (about to own schemas) CREATE on the database if they lack it;
-- returns what it granted.
CREATE FUNCTION gcos._kernel_session_begin(p_schema_owners oid[]) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_done jsonb := '{"member": false, "db_create": []}';
    v_role oid;
BEGIN
    IF (SELECT r.rolsuper FROM pg_catalog.pg_roles AS r WHERE r.rolname = current_user) THEN
        RETURN v_done;
    END IF;
    BEGIN
        EXECUTE pg_catalog.format('GRANT gcos_kernel TO %I%s', current_user,
            CASE WHEN pg_catalog.current_setting('server_version_num')::integer >= 160000 THEN ' WITH INHERIT TRUE, SET TRUE' ELSE '' END);
    EXCEPTION WHEN insufficient_privilege OR invalid_grant_operation THEN
        RAISE EXCEPTION 'gcos: role % may not act as gcos_kernel; run gcos adopt as a superuser or as a role holding ADMIN OPTION on gcos_kernel (before PostgreSQL 16: CREATEROLE)',
            current_user USING ERRCODE = '42501';
    END;
    v_done := pg_catalog.jsonb_set(v_done, '{member}', 'true');
    FOREACH v_role IN ARRAY COALESCE(p_schema_owners, '{}') LOOP
        CONTINUE WHEN pg_catalog.has_database_privilege(v_role, pg_catalog.current_database(), 'CREATE');
        BEGIN
            EXECUTE pg_catalog.format('GRANT CREATE ON DATABASE %I TO %I', pg_catalog.current_database(), gcos._role_label(v_role::bigint));
        EXCEPTION WHEN insufficient_privilege THEN
            NULL;  -- checked below
        END;
        IF NOT pg_catalog.has_database_privilege(v_role, pg_catalog.current_database(), 'CREATE') THEN
            RAISE EXCEPTION 'gcos: role % needs CREATE on database % to own a schema, and role % may not grant it; run this as a superuser or as the database owner',
                gcos._role_label(v_role::bigint), pg_catalog.current_database(), current_user USING ERRCODE = '42501';
        END IF;
        v_done := pg_catalog.jsonb_set(v_done, '{db_create}', (v_done -> 'db_create') || pg_catalog.to_jsonb(v_role::bigint));
    END LOOP;
    RETURN v_done;
END
$$;

-- Takes back what _kernel_session_begin granted, and checks that nobody is a member of gcos_kernel.
CREATE FUNCTION gcos._kernel_session_end(p_done jsonb) RETURNS void
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_role bigint;
BEGIN
    FOR v_role IN SELECT e.value::bigint FROM pg_catalog.jsonb_array_elements_text(p_done -> 'db_create') AS e(value) LOOP
        EXECUTE pg_catalog.format('REVOKE CREATE ON DATABASE %I FROM %I', pg_catalog.current_database(), gcos._role_label(v_role));
    END LOOP;
    IF (p_done ->> 'member')::boolean THEN
        EXECUTE pg_catalog.format('REVOKE gcos_kernel FROM %I', current_user);
    END IF;
    PERFORM gcos._adopt_no_members();
END
$$;

-- Every object of the schema that is not the kernel's yet becomes the kernel's: the schema first, then
-- what does not depend on another object, then what did not follow its owner already. Returns the read
-- privileges the previous owners (superusers aside) held as owners, for _adopt_lockdown to grant back.
CREATE FUNCTION gcos._adopt_take(p_nsp oid) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_reads jsonb;
    r record;
BEGIN
    SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'classid', a.classid, 'objid', a.objid, 'subid', a.subid, 'grantor', gcos._kernel_oid()::bigint,
               'grantee', i.grantee, 'privilege', i.privilege, 'grantable', false)), '[]') INTO v_reads
      FROM gcos._acl_objects(p_nsp) AS a
      JOIN pg_catalog.pg_roles AS o ON o.oid = a.owner AND NOT o.rolsuper AND o.oid <> gcos._kernel_oid(),
           pg_catalog.jsonb_to_recordset(gcos._acl_items(a.classid, a.objid, a.subid)) AS i(grantee bigint, privilege text)
     WHERE i.grantee = a.owner AND NOT i.privilege = ANY (a.write_privs);
    FOR r IN SELECT o.* FROM gcos._schema_objects(p_nsp) AS o
              WHERE o.extension IS NULL AND o.keyword <> '-'
              ORDER BY o.classid <> 'pg_catalog.pg_namespace'::pg_catalog.regclass, o.follows, o.classid, o.objid LOOP
        CONTINUE WHEN gcos._object_owner(r.classid, r.objid) = gcos._kernel_oid();
        EXECUTE pg_catalog.format('ALTER %s %s OWNER TO gcos_kernel', r.keyword, r.identity);
    END LOOP;
    RETURN v_reads;
END
$$;

-- Realizes p_plan, a JSON array of {classid, objid, subid, grant_on, col, want}, in its order.
CREATE FUNCTION gcos._acl_apply(p_plan jsonb) RETURNS void
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT (e.value ->> 'classid')::oid AS classid, (e.value ->> 'objid')::oid AS objid,
                    (e.value ->> 'subid')::integer AS subid, e.value ->> 'grant_on' AS grant_on,
                    (e.value ->> 'col')::name AS col, e.value -> 'want' AS want
               FROM pg_catalog.jsonb_array_elements(COALESCE(p_plan, '[]')) WITH ORDINALITY AS e(value, ord)
              ORDER BY e.ord LOOP
        PERFORM gcos._acl_realize(r.classid, r.objid, r.subid, r.grant_on, r.col, r.want);
    END LOOP;
END
$$;

-- Every role but the kernel keeps only its read privileges, without grant option, and the previous owners
-- get theirs (p_reads, from _adopt_take); then the kernel's default privileges give what it creates later
-- to whom could read every table (every sequence but those of serial and identity columns) of the schema.
CREATE FUNCTION gcos._adopt_lockdown(p_nsp oid, p_reads jsonb) RETURNS void
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_kernel bigint := gcos._kernel_oid();
    v_plan jsonb;
    r record;
BEGIN
    -- every wanted ACL first: a table-level REVOKE takes column privileges too, their entries restore them
    SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'classid', a.classid, 'objid', a.objid, 'subid', a.subid, 'grant_on', a.grant_on, 'col', a.col,
               'want', gcos._acl_lockdown(gcos._acl_items(a.classid, a.objid, a.subid), v_kernel, pg_catalog.to_jsonb(a.write_privs))
                       || COALESCE((SELECT pg_catalog.jsonb_agg(x.value - 'classid' - 'objid' - 'subid')
                                      FROM pg_catalog.jsonb_array_elements(p_reads) AS x(value)
                                     WHERE ((x.value ->> 'classid')::oid, (x.value ->> 'objid')::oid, (x.value ->> 'subid')::integer)
                                         = (a.classid, a.objid, a.subid)), '[]'))
               ORDER BY a.classid, a.objid, a.subid) INTO v_plan
      FROM gcos._acl_objects(p_nsp) AS a;
    PERFORM gcos._acl_apply(v_plan);
    FOR r IN WITH rels AS (
                 SELECT CASE WHEN a.objtype = 'sequence' THEN 'SEQUENCES' ELSE 'TABLES' END AS objtype, a.objid
                   FROM gcos._acl_objects(p_nsp) AS a
                  WHERE a.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND a.subid = 0
                    AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend AS d  -- a serial or identity column's own
                                     WHERE d.classid = a.classid AND d.objid = a.objid AND d.deptype IN ('a', 'i')
                                       AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass))
             SELECT k.objtype, i.grantee
               FROM rels AS k,
                    pg_catalog.jsonb_to_recordset(gcos._acl_items('pg_catalog.pg_class'::pg_catalog.regclass, k.objid, 0))
                    AS i(grantee bigint, privilege text)
              WHERE i.privilege = 'SELECT' AND i.grantee <> v_kernel
              GROUP BY k.objtype, i.grantee
             HAVING pg_catalog.count(DISTINCT k.objid) = (SELECT pg_catalog.count(*) FROM rels AS x WHERE x.objtype = k.objtype)
    LOOP
        EXECUTE pg_catalog.format('ALTER DEFAULT PRIVILEGES FOR ROLE gcos_kernel IN SCHEMA %I GRANT SELECT ON %s TO %s',
                                  (SELECT n.nspname FROM pg_catalog.pg_namespace AS n WHERE n.oid = p_nsp), r.objtype,
                                  gcos._grantee_sql(r.grantee));
    END LOOP;
END
$$;

-- Refuses (22023) views and materialized views of the schemas that read a relation, or call a routine,
-- that gcos_kernel (now their owner) may not: their readers would lose them.
CREATE FUNCTION gcos._adopt_check_views(p_nsps oid[]) RETURNS void
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_bad text[];
BEGIN
    SELECT pg_catalog.array_agg(DISTINCT pg_catalog.format('%s reads %s', v.oid::pg_catalog.regclass,
                                                           (pg_catalog.pg_identify_object(d.refclassid, d.refobjid, 0)).identity))
      INTO v_bad
      FROM pg_catalog.pg_class AS v
      JOIN pg_catalog.pg_rewrite AS w ON w.ev_class = v.oid
      JOIN pg_catalog.pg_depend AS d ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND d.objid = w.oid
     WHERE v.relnamespace = ANY (p_nsps) AND v.relkind IN ('v', 'm')
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.unnest(v.reloptions) AS o(opt) WHERE o.opt ~* '^security_invoker=(true|on|yes|1)$')
       AND ((d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjid <> v.oid
             AND (SELECT c.relkind FROM pg_catalog.pg_class AS c WHERE c.oid = d.refobjid) IN ('r', 'p', 'v', 'm', 'f')
             AND NOT pg_catalog.has_any_column_privilege(gcos._kernel_oid(), d.refobjid, 'SELECT'))
         OR (d.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass
             AND NOT pg_catalog.has_function_privilege(gcos._kernel_oid(), d.refobjid, 'EXECUTE')));
    IF v_bad IS NOT NULL THEN
        RAISE EXCEPTION 'gcos: owned by gcos_kernel, these views could no longer be read: %; adopt those schemas too, or GRANT SELECT (EXECUTE) on them TO gcos_kernel, then retry',
            pg_catalog.array_to_string(v_bad, ', ') USING ERRCODE = '22023';
    END IF;
END
$$;

CREATE FUNCTION gcos.adopt(p_schemas text[])
    RETURNS TABLE (schema_name text, status text, ledger_seq bigint, payload jsonb)
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_nsps oid[] := gcos._adopt_schemas(p_schemas);
    v_todo oid[] := '{}';
    v_nsp oid;
    v_seq bigint;
    v_session jsonb;
    v_reads jsonb := '{}';
BEGIN
    PERFORM pg_catalog.pg_advisory_xact_lock(7449920749946826608);  -- 'gcosadop'
    FOREACH v_nsp IN ARRAY v_nsps LOOP
        SELECT s.ledger_seq INTO v_seq FROM gcos.adopted_schemas AS s WHERE s.schema_oid = v_nsp AND s.released_at IS NULL;
        IF v_seq IS NULL THEN
            v_todo := v_todo || v_nsp;
        ELSE
            RETURN QUERY SELECT n.nspname::text, 'already_adopted'::text, v_seq,
                                pg_catalog.jsonb_build_object('violations', pg_catalog.to_jsonb(gcos._adopt_violations(
                                    gcos._adopt_state(v_nsp, v_nsps), 'adopt', l.record -> 'payload')))
                           FROM pg_catalog.pg_namespace AS n, gcos.ledger AS l WHERE n.oid = v_nsp AND l.seq = v_seq;
        END IF;
    END LOOP;
    IF pg_catalog.cardinality(v_todo) = 0 THEN
        RETURN;
    END IF;
    PERFORM gcos._adopt_no_members();
    FOREACH v_nsp IN ARRAY v_todo LOOP
        PERFORM gcos._adopt_begin(v_nsp, 'adopt');
    END LOOP;
    PERFORM gcos._adopt_check_objects(v_todo);
    v_session := gcos._kernel_session_begin(ARRAY[gcos._kernel_oid()]);
    FOREACH v_nsp IN ARRAY v_todo LOOP
        v_reads := v_reads || pg_catalog.jsonb_build_object(v_nsp::text, gcos._adopt_take(v_nsp));
    END LOOP;
    FOREACH v_nsp IN ARRAY v_todo LOOP
        PERFORM gcos._adopt_lockdown(v_nsp, v_reads -> v_nsp::text);
    END LOOP;
    PERFORM gcos._adopt_check_views(v_todo);
    PERFORM gcos._kernel_session_end(v_session);
    FOREACH v_nsp IN ARRAY v_todo LOOP
        RETURN QUERY SELECT n.nspname::text, 'adopted'::text, r.ledger_seq, r.payload
                       FROM gcos._adopt_record(v_nsp, 'adopt') AS r, pg_catalog.pg_namespace AS n WHERE n.oid = v_nsp;
    END LOOP;
END
$$;

-- Who gets each kernel-owned object of an adopted schema back: its owner before the adoption, else (the
-- kernel created it since) the schema's; as a JSON array in the order to hand them back.
CREATE FUNCTION gcos._release_owners(p_nsp oid, p_adopt jsonb) RETURNS jsonb
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    WITH prev AS (
        SELECT p.classid::pg_catalog.regclass::oid AS classid, p.objid::oid AS objid, p.previous_owner_oid::oid AS owner
          FROM pg_catalog.jsonb_to_recordset(p_adopt -> 'owners') AS p(classid text, objid bigint, previous_owner_oid bigint)
    )
    SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'classid', o.classid, 'objid', o.objid, 'keyword', o.keyword, 'object', o.identity, 'type', o.objtype,
               'owner', COALESCE((SELECT p.owner FROM prev AS p WHERE p.classid = o.classid AND p.objid = o.objid),
                                 (SELECT p.owner FROM prev AS p WHERE p.classid = 'pg_catalog.pg_namespace'::pg_catalog.regclass)))
               ORDER BY o.classid <> 'pg_catalog.pg_namespace'::pg_catalog.regclass, o.follows, o.classid, o.objid), '[]')
      FROM gcos._schema_objects(p_nsp) AS o
     WHERE o.extension IS NULL AND o.keyword <> '-' AND o.owner = gcos._kernel_oid()
$$;

-- Refuses handing objects back to roles that no longer exist (22023) and, for a session that is not a
-- superuser, to roles it may not SET ROLE to (42501), so PostgreSQL would refuse anyway.
CREATE FUNCTION gcos._release_check_owners(p_owners jsonb) RETURNS void
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_gone text[];
    v_denied text[];
BEGIN
    SELECT pg_catalog.array_agg(pg_catalog.format('%s %s (previous owner %s)', x.type, x.object,
                                                  COALESCE(gcos._role_label(x.owner), 'unknown')) ORDER BY x.object)
               FILTER (WHERE r.oid IS NULL),
           pg_catalog.array_agg(pg_catalog.format('%s %s (previous owner %s)', x.type, x.object, r.rolname) ORDER BY x.object)
               FILTER (WHERE r.oid IS NOT NULL AND NOT pg_catalog.pg_has_role(r.oid, 'MEMBER'))
      INTO v_gone, v_denied
      FROM pg_catalog.jsonb_to_recordset(p_owners) AS x(type text, object text, owner bigint)
      LEFT JOIN pg_catalog.pg_roles AS r ON r.oid = x.owner::oid;
    IF v_gone IS NOT NULL THEN
        RAISE EXCEPTION 'gcos: cannot hand back %: that role no longer exists; give the objects to another role as a superuser (ALTER ... OWNER TO), then retry',
            pg_catalog.array_to_string(v_gone, ', ') USING ERRCODE = '22023';
    ELSIF v_denied IS NOT NULL THEN
        RAISE EXCEPTION 'gcos: role % may not hand back % (it is not a member of those roles); run gcos adopt --release as a superuser',
            current_user, pg_catalog.array_to_string(v_denied[1:10], ', ') USING ERRCODE = '42501';
    END IF;
END
$$;

-- Every object's privileges as before the adoption (and as the kernel changed them since), the kernel's
-- default privileges in the schema removed.
CREATE FUNCTION gcos._release_acls(p_nsp oid, p_adopt jsonb) RETURNS void
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_kernel bigint := gcos._kernel_oid();
    v_plan jsonb;
    r record;
BEGIN
    WITH changes AS (
        SELECT c.side, c.item, (c.item ->> 'classid')::pg_catalog.regclass::oid AS classid, (c.item ->> 'objid')::oid AS objid,
               (c.item ->> 'subid')::integer AS subid
          FROM (SELECT 'revoked' AS side, e.value AS item
                  FROM pg_catalog.jsonb_array_elements(COALESCE(p_adopt -> 'revoked', '[]') || COALESCE(p_adopt -> 'revoked_execute', '[]')) AS e
                UNION ALL
                SELECT 'granted', e.value FROM pg_catalog.jsonb_array_elements(COALESCE(p_adopt -> 'granted', '[]')) AS e) AS c
    )
    SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'classid', a.classid, 'objid', a.objid, 'subid', a.subid, 'grant_on', a.grant_on, 'col', a.col,
               'want', gcos._acl_release_want(gcos._acl_items(a.classid, a.objid, a.subid), a.owner::bigint, v_kernel,
                   (SELECT pg_catalog.jsonb_agg(c.item) FROM changes AS c WHERE c.side = 'granted'
                       AND (c.classid, c.objid, c.subid) = (a.classid, a.objid, a.subid)),
                   (SELECT pg_catalog.jsonb_agg(c.item) FROM changes AS c WHERE c.side = 'revoked'
                       AND (c.classid, c.objid, c.subid) = (a.classid, a.objid, a.subid))))
               ORDER BY a.classid, a.objid, a.subid) INTO v_plan
      FROM gcos._acl_objects(p_nsp) AS a;
    PERFORM gcos._acl_apply(v_plan);
    FOR r IN SELECT CASE d.defaclobjtype WHEN 'r' THEN 'TABLES' WHEN 'S' THEN 'SEQUENCES' WHEN 'f' THEN 'FUNCTIONS'
                    WHEN 'T' THEN 'TYPES' ELSE 'SCHEMAS' END AS objtype, x.grantee::bigint AS grantee
               FROM pg_catalog.pg_default_acl AS d, pg_catalog.aclexplode(d.defaclacl) AS x
              WHERE d.defaclrole = v_kernel AND d.defaclnamespace = p_nsp LOOP
        EXECUTE pg_catalog.format('ALTER DEFAULT PRIVILEGES FOR ROLE gcos_kernel IN SCHEMA %I REVOKE ALL ON %s FROM %s',
                                  (SELECT n.nspname FROM pg_catalog.pg_namespace AS n WHERE n.oid = p_nsp), r.objtype,
                                  gcos._grantee_sql(r.grantee));
    END LOOP;
END
$$;

CREATE FUNCTION gcos.release(p_schemas text[])
    RETURNS TABLE (schema_name text, status text, ledger_seq bigint, payload jsonb)
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_nsps oid[] := gcos._adopt_schemas(p_schemas);
    v_nsp oid;
    v_adopt jsonb := '{}';
    v_owners jsonb := '{}';
    v_session jsonb;
    r record;
BEGIN
    PERFORM pg_catalog.pg_advisory_xact_lock(7449920749946826608);  -- 'gcosadop'
    FOREACH v_nsp IN ARRAY v_nsps LOOP
        IF NOT EXISTS (SELECT 1 FROM gcos.adopted_schemas AS s WHERE s.schema_oid = v_nsp AND s.released_at IS NULL) THEN
            RAISE EXCEPTION 'gcos: schema % is not adopted; there is nothing to release',
                (SELECT pg_catalog.quote_ident(n.nspname) FROM pg_catalog.pg_namespace AS n WHERE n.oid = v_nsp) USING ERRCODE = '22023';
        END IF;
    END LOOP;
    PERFORM gcos._adopt_no_members();
    FOREACH v_nsp IN ARRAY v_nsps LOOP
        v_adopt := v_adopt || pg_catalog.jsonb_build_object(v_nsp::text, gcos._adopt_begin(v_nsp, 'release'));
        v_owners := v_owners || pg_catalog.jsonb_build_object(v_nsp::text, gcos._release_owners(v_nsp, v_adopt -> v_nsp::text));
        PERFORM gcos._release_check_owners(v_owners -> v_nsp::text);
    END LOOP;
    v_session := gcos._kernel_session_begin(ARRAY(
        SELECT (o.value ->> 'owner')::oid FROM pg_catalog.jsonb_each(v_owners) AS s(key, value),
               pg_catalog.jsonb_array_elements(s.value) AS o(value)
         WHERE (o.value ->> 'classid')::oid = 'pg_catalog.pg_namespace'::pg_catalog.regclass));
    FOR r IN SELECT o.value AS item FROM pg_catalog.jsonb_each(v_owners) AS s(key, value),
                    pg_catalog.jsonb_array_elements(s.value) WITH ORDINALITY AS o(value, ord) ORDER BY s.key, o.ord LOOP
        CONTINUE WHEN gcos._object_owner((r.item ->> 'classid')::oid, (r.item ->> 'objid')::oid) <> gcos._kernel_oid();
        EXECUTE pg_catalog.format('ALTER %s %s OWNER TO %I', r.item ->> 'keyword', r.item ->> 'object',
                                  gcos._role_label((r.item ->> 'owner')::bigint));
    END LOOP;
    FOREACH v_nsp IN ARRAY v_nsps LOOP
        PERFORM gcos._release_acls(v_nsp, v_adopt -> v_nsp::text);
    END LOOP;
    PERFORM gcos._kernel_session_end(v_session);
    FOREACH v_nsp IN ARRAY v_nsps LOOP
        RETURN QUERY SELECT n.nspname::text, 'released'::text, x.ledger_seq, x.payload
                       FROM gcos._adopt_record(v_nsp, 'release') AS x, pg_catalog.pg_namespace AS n WHERE n.oid = v_nsp;
    END LOOP;
END
$$;

-- ----------------------------------------------------------------------------------- extensions

-- Refuses (42501) CREATE EXTENSION and ALTER EXTENSION by a role that is neither a superuser nor
-- gcos_kernel when the extension is (or lands) in a schema gcos_kernel owns: a trusted extension skips the
-- schema's CREATE check, and its owner could later DROP EXTENSION ... CASCADE into adopted objects.
CREATE FUNCTION gcos._adopted_extension_guard() RETURNS event_trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_bad text;
BEGIN
    IF current_user = 'gcos_kernel' OR (SELECT r.rolsuper FROM pg_catalog.pg_roles AS r WHERE r.rolname = current_user) THEN
        RETURN;
    END IF;
    SELECT pg_catalog.string_agg(pg_catalog.format('%I in schema %I', e.extname, n.nspname), ', ') INTO v_bad
      FROM pg_catalog.pg_event_trigger_ddl_commands() AS c
      JOIN pg_catalog.pg_extension AS e ON e.oid = c.objid
      JOIN pg_catalog.pg_namespace AS n ON n.oid = e.extnamespace
      JOIN pg_catalog.pg_roles AS k ON k.oid = n.nspowner AND k.rolname = 'gcos_kernel'
     WHERE c.classid = 'pg_catalog.pg_extension'::pg_catalog.regclass;
    IF v_bad IS NOT NULL THEN
        RAISE EXCEPTION 'gcos: only a superuser may create or change extension % in a schema gcos has adopted; ask one, or release the schema first',
            v_bad USING ERRCODE = '42501';
    END IF;
END
$$;

-- ----------------------------------------------------------------------------------- privileges

REVOKE ALL ON gcos.adopted_schemas, gcos.adopt_staging FROM PUBLIC;
GRANT SELECT ON gcos.adopted_schemas TO gcos_admin, gcos_operator, gcos_sovereign, gcos_council, gcos_auditor;
-- (functions: PUBLIC EXECUTE is revoked by gcos_owner's default privileges, see 001)
-- gcos.adopt and gcos.release run with the caller's rights, and so do their helpers: the caller needs them.
GRANT EXECUTE ON FUNCTION
    gcos.adopt(text[]), gcos.release(text[]), gcos._adopt_begin(oid, text), gcos._adopt_record(oid, text),
    gcos._kernel_oid(), gcos._role_label(bigint), gcos._grantee_sql(bigint), gcos._object_owner(oid, oid),
    gcos._alter_keyword(oid, oid, text), gcos._schema_objects(oid), gcos._acl_of(oid, oid, integer),
    gcos._acl_items(oid, oid, integer), gcos._acl_objects(oid), gcos._kernel_members(), gcos._bypass_writers(), gcos._kernel_admins(),
    gcos._adopt_state(oid, oid[]), gcos._adopt_violations(jsonb, text, jsonb), gcos._adopt_links(oid[]), gcos._object_parts(), gcos._adopt_exec(text, text),
    gcos._acl_delta(jsonb, jsonb, bigint), gcos._acl_grantable_by_us(jsonb, bigint),
    gcos._acl_realize(oid, oid, integer, text, name, jsonb), gcos._acl_lockdown(jsonb, bigint, jsonb),
    gcos._acl_release_want(jsonb, bigint, bigint, jsonb, jsonb), gcos._adopt_schemas(text[]), gcos._adopt_no_members(),
    gcos._adopt_check_objects(oid[]), gcos._kernel_session_begin(oid[]), gcos._kernel_session_end(jsonb),
    gcos._adopt_take(oid), gcos._acl_apply(jsonb), gcos._adopt_lockdown(oid, jsonb), gcos._adopt_check_views(oid[]),
    gcos._release_owners(oid, jsonb), gcos._release_check_owners(jsonb), gcos._release_acls(oid, jsonb)
    TO gcos_admin;

-- Event triggers are a superuser's (install runs as one); ENABLE ALWAYS: session_replication_role does not
-- switch it off.
RESET ROLE;
CREATE EVENT TRIGGER gcos_adopted_extensions ON ddl_command_end WHEN TAG IN ('CREATE EXTENSION', 'ALTER EXTENSION')
    EXECUTE FUNCTION gcos._adopted_extension_guard();
ALTER EVENT TRIGGER gcos_adopted_extensions ENABLE ALWAYS;
