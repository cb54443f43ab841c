-- gcos reference world, part 5 of 5: the baseline manifest (and world marker).
-- One row per table of the world with its row count at build time. Step 5 (combined verification)
-- compares live counts with it, and the plans' footprint stop (seed §70.2 item 7) counts new tables
-- as public tables that are not listed here.
INSERT INTO reference_world_baseline (table_name, baseline_rows)
SELECT t.table_name, t.n FROM (VALUES
    ('laws',                  (SELECT count(*) FROM laws)),
    ('law_versions',          (SELECT count(*) FROM law_versions)),
    ('law_articles',          (SELECT count(*) FROM law_articles)),
    ('evolution_snapshots',   (SELECT count(*) FROM evolution_snapshots)),
    ('measurement_registry',  (SELECT count(*) FROM measurement_registry)),
    ('queue_heartbeat',       (SELECT count(*) FROM queue_heartbeat)),
    ('event_pending',         (SELECT count(*) FROM event_pending)),
    ('birth_registry',        (SELECT count(*) FROM birth_registry)),
    ('entity_changelog',      (SELECT count(*) FROM entity_changelog)),
    ('event_type_registry',   (SELECT count(*) FROM event_type_registry)),
    ('event_outbox',          (SELECT count(*) FROM event_outbox)),
    ('event_consumer_cursor', (SELECT count(*) FROM event_consumer_cursor)),
    ('dot_domains',           (SELECT count(*) FROM dot_domains)),
    ('dot_tools',             (SELECT count(*) FROM dot_tools)),
    ('dot_coverage_required', (SELECT count(*) FROM dot_coverage_required)),
    ('apr_action_types',      (SELECT count(*) FROM apr_action_types)),
    ('owner_agencies',        (SELECT count(*) FROM owner_agencies)),
    ('governance_relations',  (SELECT count(*) FROM governance_relations)),
    ('implementation_units',  (SELECT count(*) FROM implementation_units)),
    ('kb_documents',          (SELECT count(*) FROM kb_documents)),
    ('kb_document_revisions', (SELECT count(*) FROM kb_document_revisions)),
    ('finding_type_registry', (SELECT count(*) FROM finding_type_registry)),
    ('os_proposal_approvals', (SELECT count(*) FROM os_proposal_approvals))
) AS t(table_name, n);
