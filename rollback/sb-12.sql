-- Rollback evidence of SB-12 (seed 002 §70.1 step 1):
-- "DROP TABLE governance_ruleset; DELETE evolution_snapshots WHERE scope LIKE 'governance.%'
--  → back to baseline (proven entry==exit R-2/R-8)."
DROP TABLE IF EXISTS governance_ruleset;
DELETE FROM evolution_snapshots WHERE scope LIKE 'governance.%';
