-- Rollback evidence of SB-11 (seed 002 §70.1 step 4):
-- "DELETE FROM event_type_registry WHERE event_domain='governance'. No emit to unwind."
DELETE FROM event_type_registry WHERE event_domain = 'governance';
