-- Rollback evidence of SB-13 (seed 002 §70.1 step 2):
-- "DROP TABLE gov_worker_cursor; DELETE queue_heartbeat WHERE executor_name LIKE 'gov\_%'."
DROP TABLE IF EXISTS gov_worker_cursor;
DELETE FROM queue_heartbeat WHERE executor_name LIKE 'gov\_%';
