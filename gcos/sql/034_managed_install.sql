-- gcos schema version 34 (issue 11 item 4): installing without a superuser, as the role a managed service hands
-- out (CREATEROLE, owner of the database). Numbered 033 on its branch until the coordinator renumbers it 034;
-- nothing refers to its number.
--
--   gcos._bootstrap_admin(p_trace_id text) -> bigint                                        no grants
--       Called by gcos install (gcos/managed.py) as gcos_owner, in a non-superuser install's transaction:
--       registers the session role as a human principal with the admin role, when it is not a principal yet
--       and no human admin exists, and writes the 'principal' ledger record (payload as gcos.add_principal's,
--       plus "bootstrap": true); the ledger seq, or NULL when nothing was done. Without it nobody could
--       register the first principal there: gcos.add_principal needs a superuser or a human admin.
--       Refuses (42501) a session role that is a superuser (it needs no bootstrap), lacks CREATEROLE or does
--       not own the database, and any caller but gcos_owner.
--       gcos._ledger_write refuses a session role that is no principal, so the principal row comes first,
--       naming the record about to be written: the two ledger_seq foreign keys below become DEFERRABLE
--       (INITIALLY IMMEDIATE: unchanged for every other writer), deferred here only until that record exists.
SET LOCAL ROLE gcos_owner;

ALTER TABLE gcos.principals ALTER CONSTRAINT principals_ledger_seq_fkey DEFERRABLE INITIALLY IMMEDIATE;
ALTER TABLE gcos.principals_history ALTER CONSTRAINT principals_history_ledger_seq_fkey DEFERRABLE INITIALLY IMMEDIATE;

CREATE FUNCTION gcos._bootstrap_admin(p_trace_id text) RETURNS bigint
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_role record;
    v_write record;
    v_next record;
    v_now timestamptz := pg_catalog.clock_timestamp();
BEGIN
    IF current_user <> 'gcos_owner' THEN
        PERFORM gcos._refuse('gcos: only gcos install registers its installing role');
    END IF;
    SELECT r.oid, r.rolname::text AS rolname, r.rolsuper, r.rolcreaterole,
           r.oid = (SELECT d.datdba FROM pg_catalog.pg_database AS d WHERE d.datname = pg_catalog.current_database())
               AS owns
      INTO v_role FROM pg_catalog.pg_roles AS r WHERE r.rolname = session_user;
    IF v_role.rolsuper OR NOT v_role.rolcreaterole OR NOT v_role.owns THEN
        PERFORM gcos._refuse(pg_catalog.format(
            'gcos: role %I is not a non-superuser database owner with CREATEROLE; only such an installer is registered by install',
            v_role.rolname));
    END IF;
    IF EXISTS (SELECT 1 FROM gcos.principals AS p WHERE p.role_oid = v_role.oid)
       OR EXISTS (SELECT 1 FROM gcos.principals AS p WHERE p.kind = 'human' AND 'admin' = ANY (p.roles)) THEN
        RETURN NULL;
    END IF;
    SELECT h.seq + 1 AS seq INTO v_next FROM gcos.ledger_head AS h WHERE h.singleton FOR UPDATE;
    SET CONSTRAINTS gcos.principals_ledger_seq_fkey, gcos.principals_history_ledger_seq_fkey DEFERRED;
    INSERT INTO gcos.principals (role_oid, role_name, display_name, kind, roles, created_at, updated_at, ledger_seq, person)
    VALUES (v_role.oid, v_role.rolname, v_role.rolname, 'human', ARRAY['admin'], v_now, v_now, v_next.seq, v_role.rolname);
    INSERT INTO gcos.principals_history (role_oid, role_name, display_name, kind, roles, changed_by_oid, changed_by,
                                         changed_at, ledger_seq, person)
    VALUES (v_role.oid, v_role.rolname, v_role.rolname, 'human', ARRAY['admin'], v_role.oid, v_role.rolname, v_now,
            v_next.seq, v_role.rolname);
    SELECT * INTO v_write FROM gcos._ledger_write('principal', NULL, NULL, p_trace_id, NULL,
        pg_catalog.jsonb_build_object('change', 'added', 'role', v_role.rolname, 'role_oid', v_role.oid::bigint,
                                      'display_name', v_role.rolname, 'person', v_role.rolname, 'kind', 'human',
                                      'roles', pg_catalog.jsonb_build_array('admin'), 'bootstrap', true));
    IF v_write.seq <> v_next.seq THEN
        RAISE EXCEPTION 'gcos: the ledger moved during the bootstrap of its first admin; retry gcos install' USING ERRCODE = '40001';
    END IF;
    SET CONSTRAINTS gcos.principals_ledger_seq_fkey, gcos.principals_history_ledger_seq_fkey IMMEDIATE;
    RETURN v_write.seq;
END
$$;

REVOKE ALL ON FUNCTION gcos._bootstrap_admin(text) FROM PUBLIC;

RESET ROLE;
