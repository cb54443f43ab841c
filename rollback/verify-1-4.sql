-- Rollback evidence of step 5, combined verification (seed 002 §70.1 step 5):
-- "the staged DROP/DELETE set from steps 1–4 (doc 71)".
-- This step mutates nothing, so it has nothing of its own to undo: rolling it back is a no-op.
-- The staged set is each step's own rollback, in reverse build order:
--   rollback/sb-11.sql   DELETE FROM event_type_registry WHERE event_domain = 'governance';
--   rollback/sb-10.sql   DROP TABLE candidate_scan_run, governance_candidate_object, governance_candidate_state;
--   rollback/sb-13.sql   DROP TABLE gov_worker_cursor; DELETE FROM queue_heartbeat WHERE executor_name LIKE 'gov\_%';
--   rollback/sb-12.sql   DROP TABLE governance_ruleset; DELETE FROM evolution_snapshots WHERE scope LIKE 'governance.%';
-- applied with `gcos rollback SB-11`, `SB-10`, `SB-13`, `SB-12` (each proves its own entry==exit).
SELECT 'verification-only step: nothing to undo' AS rollback_note;
