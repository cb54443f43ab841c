-- Rollback evidence of SB-1/SB-2 (seed 002 §70.1 step 7):
-- "DROP VIEW v_object_effective_owner; DROP TABLE owner + scope; DELETE the 4 action-type rows."
DROP VIEW IF EXISTS v_object_effective_owner;
DROP TABLE IF EXISTS governance_object_ownership;
DROP TABLE IF EXISTS governance_responsibility_scope;
DELETE FROM apr_action_types
WHERE code IN ('assign_governance_owner', 'grant_governance_exception', 'delegate_authority', 'assign_axis_owner');
