-- gcos schema version 16: the kernel's rehearsal runs READ COMMITTED under the commit lock, shared.
--
-- A rehearsal appends its record at the end (gcos._ledger_write locks the ledger head). In a REPEATABLE READ
-- transaction that append fails ("could not serialize access") whenever anything else was appended since the
-- rehearsal began: another rehearsal, an approval, a registration. Rehearsals of one team overlap all the time,
-- so gcos.rehearse now refuses any isolation but READ COMMITTED, and keeps the world it measures still by
-- holding the database's commit lock in SHARE mode for its transaction: rehearsals run side by side, while a
-- commit, rollback or batched start or close (which hold that lock exclusively) waits for them, and they for it.
-- Inside an adopted schema nothing else writes (a superuser's change is drift, and a batched run's batches
-- write only the rows their allow list names); a rehearsal that sees such a change between its entry and exit
-- fingerprints fails, as it should.
--
--   gcos.rehearse(spec_hash, plan_hash, trace_id) -> jsonb       gcos_operator, gcos_admin (as before)
--   gcos._rehearse_measured(...)                                  nobody: the rehearsal itself (was gcos.rehearse)
SET LOCAL ROLE gcos_owner;

ALTER FUNCTION gcos.rehearse(text, text, text) RENAME TO _rehearse_measured;

CREATE FUNCTION gcos.rehearse(p_spec_hash text, p_plan_hash text, p_trace_id text DEFAULT NULL) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF pg_catalog.current_setting('transaction_isolation') <> 'read committed' THEN
        PERFORM gcos._invalid('gcos: the kernel rehearses in a READ COMMITTED transaction (its record follows whatever the ledger received meanwhile); start the transaction READ COMMITTED');
    END IF;
    PERFORM pg_catalog.pg_advisory_xact_lock_shared(pg_catalog.hashtextextended('gcos:commit', 0));
    RETURN gcos._rehearse_measured(p_spec_hash, p_plan_hash, p_trace_id);
END
$$;

RESET ROLE;
REVOKE ALL ON FUNCTION gcos._rehearse_measured(text, text, text) FROM PUBLIC, gcos_operator, gcos_admin;
REVOKE ALL ON FUNCTION gcos.rehearse(text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gcos.rehearse(text, text, text) TO gcos_operator, gcos_admin;
