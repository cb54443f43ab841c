-- gcos schema version 3: the commit's TOCTOU lock on approvals and decisions (issue 5 item 3; seed 000
-- "Stage 3: TOCTOU check"; CONTRACT.md "Gates" - re-checked inside the commit transaction).
--
-- A commit locks the step's approval rows (and the rows of the decisions it needs) FOR SHARE inside its
-- own transaction, then reads them again and checks them against clock_timestamp(). gcos.revoke_approval
-- and gcos.revoke_decision lock the row FOR UPDATE, which conflicts with FOR SHARE, so:
--   * a revocation that starts while the commit holds the lock waits until the commit ends (and then
--     revokes an approval that was in force when the step was applied);
--   * a revocation that holds its lock first makes the commit wait until it commits; the commit's next
--     statement (READ COMMITTED: a new snapshot) sees the revocation, and the gate refuses.
--     (Under REPEATABLE READ or SERIALIZABLE the commit's snapshot predates that revocation; there the
--     commit's own ledger append fails with 40001, since the revocation moved gcos.ledger_head after the
--     snapshot, and the whole commit rolls back.)
-- SELECT ... FOR SHARE needs UPDATE privilege, which no gcos role has on these append-only tables; this
-- SECURITY DEFINER function takes the lock on the caller's behalf. The lock belongs to the caller's
-- transaction: called outside one, it is released at once.
SET LOCAL ROLE gcos_owner;

CREATE FUNCTION gcos.lock_approvals(p_step_id text, p_decisions text[] DEFAULT '{}')
    RETURNS TABLE (approvals integer, decisions integer)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_approvals integer;
    v_decisions integer;
BEGIN
    IF p_step_id IS NULL THEN
        PERFORM gcos._invalid('gcos: lock_approvals needs a step id');
    END IF;
    PERFORM 1 FROM gcos.os_proposal_approvals AS a WHERE a.step_id = p_step_id ORDER BY a.id FOR SHARE;
    GET DIAGNOSTICS v_approvals = ROW_COUNT;
    PERFORM 1 FROM gcos.approval_revocations AS r
      JOIN gcos.os_proposal_approvals AS a ON a.id = r.approval_id
     WHERE a.step_id = p_step_id ORDER BY r.id FOR SHARE OF r;
    PERFORM 1 FROM gcos.decisions AS d
     WHERE d.decision = ANY (COALESCE(p_decisions, '{}'::text[])) ORDER BY d.id FOR SHARE;
    GET DIAGNOSTICS v_decisions = ROW_COUNT;
    PERFORM 1 FROM gcos.decision_revocations AS r
      JOIN gcos.decisions AS d ON d.id = r.decision_id
     WHERE d.decision = ANY (COALESCE(p_decisions, '{}'::text[])) ORDER BY r.id FOR SHARE OF r;
    RETURN QUERY SELECT v_approvals, v_decisions;
END
$$;

REVOKE ALL ON FUNCTION gcos.lock_approvals(text, text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gcos.lock_approvals(text, text[]) TO gcos_operator;
