-- Rollback evidence of step 9, backfill seed (seed 002 §70.1 step 9):
-- "truncate/delete seeded candidate rows by last_run_id; reset gov_worker_cursor watermark;
--  Birth never touched so nothing to restore there."
DELETE FROM governance_candidate_state s
USING candidate_scan_run r
WHERE s.last_run_id = r.run_id AND r.worker_name = 'gov_backfill_sweep';
DELETE FROM candidate_scan_run WHERE worker_name = 'gov_backfill_sweep';
UPDATE gov_worker_cursor
SET watermark = NULL, status = 'idle', started_at = NULL, updated_at = NULL
WHERE worker_name = 'gov_backfill_sweep' AND source = 'birth_registry';
UPDATE queue_heartbeat
SET status = 'registered', last_beat_at = NULL
WHERE executor_name = 'gov_backfill_sweep';
