-- gcos schema version 18: only the kernel locks approvals.
--
-- gcos.lock_approvals (003) locks a step's approval and decision rows FOR SHARE, so that no revocation commits
-- between the gate check and COMMIT. Operators called it from the client's own commit; since the kernel is the
-- only way a step runs (gcos.commit and gcos.batch_start call it as gcos_owner), no client needs it, and an
-- operator holding those locks in an open transaction could only delay revocations.
REVOKE EXECUTE ON FUNCTION gcos.lock_approvals(text, text[]) FROM gcos_operator;
