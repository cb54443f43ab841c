-- Rollback evidence of step 8, DOT/event activation (seed 002 §70.1 step 8):
-- "set active=false; disable DOTs (DOT disable, not drop)."
-- The step's first governance emit goes first (the outbox names the event type).
DELETE FROM event_outbox WHERE event_domain = 'governance';

UPDATE event_type_registry
SET active = false, activated_at = NULL
WHERE event_domain = 'governance' AND active;

UPDATE dot_tools
SET enabled = false
WHERE domain_code LIKE 'governance.%' AND enabled;
