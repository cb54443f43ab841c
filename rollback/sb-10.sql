-- Rollback evidence of SB-10 (seed 002 §70.1 step 3):
-- "DROP TABLE ×3 in reverse FK order (candidate_scan_run, governance_candidate_object,
--  governance_candidate_state)."
DROP TABLE IF EXISTS candidate_scan_run;
DROP TABLE IF EXISTS governance_candidate_object;
DROP TABLE IF EXISTS governance_candidate_state;
