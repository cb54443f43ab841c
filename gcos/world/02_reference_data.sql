-- gcos reference world, part 2 of 5: the small reference tables, with the seed's exact counts.
-- Deterministic: every value is a literal or a pure function of generate_series; timestamps carry
-- an explicit +00 offset so the session TimeZone does not matter.

-- ---------------------------------------------------------------- law: 47 articles / 5 laws / 12 versions
INSERT INTO laws (law_id, law_code, title, status, current_version) VALUES
    (1, 'LAW-1-ONE-ROOF-CHARTER',     'One-Roof charter',                 'enacted', 3),
    (2, 'LAW-2-DATA-STEWARDSHIP',     'Data stewardship law',             'enacted', 3),
    (3, 'LAW-3-KNOWLEDGE-PUBLISHING', 'Knowledge publishing law',         'enacted', 2),
    (4, 'LAW-4-AUTOMATION-LIMITS',    'Automation and agent limits law',  'enacted', 2),
    (5, 'LAW-5-EMERGENCY-POWERS',     'Emergency powers law',             'enacted', 2);

INSERT INTO law_versions (law_id, version_no, status, enacted_on, summary)
SELECT l.law_id, v.version_no,
       CASE WHEN v.version_no = l.current_version THEN 'enacted' ELSE 'superseded' END,
       DATE '2024-01-15' + (l.law_id * 40 + v.version_no * 120),
       format('%s, version %s', l.title, v.version_no)
FROM laws l
CROSS JOIN LATERAL generate_series(1, l.current_version) AS v(version_no);

INSERT INTO law_articles (law_id, article_no, heading, body)
SELECT 1, a,
       CASE a
           WHEN 45 THEN 'Metadata carries no data'
           WHEN 46 THEN 'No self-approval'
           WHEN 47 THEN 'Silence is not approval'
           ELSE format('Article %s', a)
       END,
       CASE a
           WHEN 45 THEN 'Operational metadata (heartbeats, registries) may carry only operational keys '
                        '(version, host, region, build); a data key in metadata is a violation.'
           WHEN 46 THEN 'No proposer approves their own proposal.'
           WHEN 47 THEN 'A decision not explicitly recorded by a named human is not taken.'
           ELSE format('Điều %s of the One-Roof charter.', a)
       END
FROM generate_series(1, 47) AS a;

-- ---------------------------------------------------------------- measurement_registry: 140 enabled
INSERT INTO measurement_registry (metric_key, family, unit, source_table, enabled, description)
SELECT format('%s.m%s', f.family, lpad(m::text, 2, '0')),
       f.family,
       (ARRAY['count', 'ratio', 'seconds', 'bytes', 'percent'])[1 + (m % 5)],
       f.source_table,
       true,
       format('%s metric %s', f.family, m)
FROM (VALUES ('birth', 'birth_registry'), ('changelog', 'entity_changelog'), ('event', 'event_outbox'),
             ('queue', 'queue_heartbeat'), ('kb', 'kb_documents'), ('law', 'law_versions'),
             ('dot', 'dot_tools'), ('apr', 'apr_action_types'), ('relation', 'governance_relations'),
             ('snapshot', 'evolution_snapshots'), ('coverage', 'dot_coverage_required'),
             ('finding', 'finding_type_registry'), ('owner', 'owner_agencies'),
             ('pending', 'event_pending')) AS f(family, source_table)
CROSS JOIN generate_series(1, 10) AS m;

-- The one baseline snapshot: the same hash recipe step 1 records for the ruleset (sha256 over the
-- enabled measurement_registry rows, "metric_key|unit" ordered by metric_key).
INSERT INTO evolution_snapshots (snapshot_id, scope, subject, content_hash, payload, taken_at)
SELECT '5eed0002-0000-4000-8000-000000000001'::uuid,
       'platform.baseline',
       'pre-build baseline (seed 002, 2026-06-01)',
       encode(sha256(convert_to(string_agg(metric_key || '|' || unit, E'\n' ORDER BY metric_key), 'UTF8')), 'hex'),
       jsonb_build_object('source', 'measurement_registry', 'enabled_metrics', count(*)),
       TIMESTAMPTZ '2026-06-01 00:00:00+00'
FROM measurement_registry
WHERE enabled;

-- ---------------------------------------------------------------- queue_heartbeat: 3 (none governance)
INSERT INTO queue_heartbeat (executor_name, executor_kind, queue_name, status, last_beat_at, pid, metadata) VALUES
    ('birth_ingest_worker', 'node_service', 'birth_registry', 'running',
     TIMESTAMPTZ '2026-06-01 00:00:05+00', 4101, '{"version": "3.4.1", "host": "ingest-01"}'),
    ('changelog_projector', 'PG_worker', 'entity_changelog', 'running',
     TIMESTAMPTZ '2026-06-01 00:00:07+00', 4102, '{"version": "1.9.0", "host": "db-01"}'),
    ('outbox_relay', 'node_service', 'event_outbox', 'idle',
     TIMESTAMPTZ '2026-06-01 00:00:03+00', 4103, '{"version": "2.2.7", "host": "relay-01", "region": "hn"}');

-- ---------------------------------------------------------------- event_type_registry: 40 (governance 0)
INSERT INTO event_type_registry
    (event_type, event_domain, severity, delivery, payload_schema_version, active, registered_at, activated_at, description)
SELECT e.event_type, split_part(e.event_type, '.', 1), e.severity, 'outbox', 1, e.active,
       TIMESTAMPTZ '2025-01-01 00:00:00+00' + (e.ord * INTERVAL '1 day'),
       CASE WHEN e.active THEN TIMESTAMPTZ '2025-01-01 00:00:00+00' + (e.ord * INTERVAL '1 day') + INTERVAL '1 hour' END,
       format('%s event', e.event_type)
FROM (VALUES
    (1, 'birth.entity.registered', 'info', true),   (2, 'birth.entity.merged', 'notice', true),
    (3, 'birth.entity.retired', 'notice', true),    (4, 'birth.address.assigned', 'info', true),
    (5, 'birth.address.cleared', 'warning', true),  (6, 'birth.collection.created', 'info', true),
    (7, 'birth.collection.renamed', 'notice', true), (8, 'birth.import.failed', 'critical', true),
    (9, 'changelog.entry.appended', 'info', true),  (10, 'changelog.entry.corrected', 'notice', true),
    (11, 'changelog.batch.sealed', 'info', true),   (12, 'changelog.gap.detected', 'warning', true),
    (13, 'changelog.replay.requested', 'notice', false),
    (14, 'kb.document.published', 'info', true),    (15, 'kb.document.revised', 'info', true),
    (16, 'kb.document.archived', 'notice', false),  (17, 'kb.addendum.applied', 'info', true),
    (18, 'kb.link.broken', 'warning', true),        (19, 'kb.review.requested', 'notice', true),
    (20, 'law.version.proposed', 'notice', true),   (21, 'law.version.enacted', 'critical', true),
    (22, 'law.article.cited', 'info', true),        (23, 'law.conflict.detected', 'warning', true),
    (24, 'dot.tool.registered', 'info', true),      (25, 'dot.tool.enabled', 'notice', true),
    (26, 'dot.tool.disabled', 'notice', true),      (27, 'dot.run.completed', 'info', true),
    (28, 'dot.run.failed', 'warning', true),        (29, 'dot.coverage.gap', 'warning', true),
    (30, 'apr.request.opened', 'info', true),       (31, 'apr.request.approved', 'notice', true),
    (32, 'apr.request.rejected', 'notice', true),   (33, 'apr.quorum.failed', 'warning', true),
    (34, 'apr.request.expired', 'info', true),
    (35, 'queue.worker.started', 'info', true),     (36, 'queue.worker.stalled', 'warning', true),
    (37, 'queue.job.dead', 'critical', true),
    (38, 'measurement.value.recorded', 'info', true), (39, 'measurement.threshold.crossed', 'warning', true),
    (40, 'measurement.metric.disabled', 'notice', true)
) AS e(ord, event_type, severity, active);

-- ---------------------------------------------------------------- event_outbox: 250 rows, 0 governance
-- ids are time-ordered uuids; the first is 00004a74-0000-4000-8000-000000000001 (the seed's
-- "uuid (00004a74-…)" watermark example of step 2).
INSERT INTO event_outbox (id, event_type, event_domain, payload, created_at, published_at)
SELECT (lpad(to_hex(g * 19060), 8, '0') || '-0000-4000-8000-' || lpad(to_hex(g), 12, '0'))::uuid,
       t.event_type, t.event_domain,
       jsonb_build_object('seq', g),
       TIMESTAMPTZ '2026-05-01 00:00:00+00' + g * INTERVAL '7 minutes',
       CASE WHEN g <= 240 THEN TIMESTAMPTZ '2026-05-01 00:00:02+00' + g * INTERVAL '7 minutes' END
FROM generate_series(1, 250) AS g
JOIN (SELECT event_type, event_domain, row_number() OVER (ORDER BY event_type) - 1 AS k,
             count(*) OVER () AS n
      FROM event_type_registry WHERE active) AS t
  ON t.k = g % t.n;

INSERT INTO event_consumer_cursor (id, consumer_name, last_event_id, updated_at)
SELECT ('c0450000-0000-4000-8000-' || lpad(c.k::text, 12, '0'))::uuid, c.consumer_name, o.id,
       TIMESTAMPTZ '2026-05-31 23:00:00+00'
FROM (VALUES (1, 'search_indexer', 240), (2, 'kb_projector', 236), (3, 'audit_sink', 231), (4, 'analytics_sink', 200))
         AS c(k, consumer_name, seq)
JOIN event_outbox o ON (o.payload ->> 'seq')::int = c.seq;

-- ---------------------------------------------------------------- DOTs: 46 domains / 309 tools / 11 coverage
INSERT INTO dot_domains (code, parent_code, title) VALUES ('governance', NULL, 'Governance (GCOS root; subdomains come with step 6)');
INSERT INTO dot_domains (code, parent_code, title)
SELECT r.root, NULL, initcap(r.root)
FROM unnest(ARRAY['apr', 'birth', 'changelog', 'event', 'kb', 'law', 'measurement', 'ops', 'queue']) AS r(root);
INSERT INTO dot_domains (code, parent_code, title)
SELECT r.root || '.' || s.sub, r.root, initcap(r.root) || ' ' || s.sub
FROM unnest(ARRAY['apr', 'birth', 'changelog', 'event', 'kb', 'law', 'measurement', 'ops', 'queue']) AS r(root)
CROSS JOIN unnest(ARRAY['audit', 'catalog', 'report', 'search']) AS s(sub);

INSERT INTO dot_tools (code, domain_code, tier, capability, apr_action, enabled)
SELECT format('dot_%s_t%s_%s', replace(d.code, '.', '_'), lpad(g::text, 3, '0'), c.capability),
       d.code,
       CASE c.capability WHEN 'read' THEN 'A' WHEN 'propose' THEN 'B' ELSE 'C' END,
       c.capability,
       CASE WHEN c.capability = 'read' THEN NULL WHEN g % 2 = 0 THEN 'review' ELSE 'add' END,
       g % 11 <> 0
FROM generate_series(1, 309) AS g
JOIN (SELECT code, row_number() OVER (ORDER BY code) - 1 AS k
      FROM dot_domains WHERE code <> 'governance' AND code NOT LIKE 'governance.%') AS d
  ON d.k = (g - 1) % 45
CROSS JOIN LATERAL (SELECT CASE WHEN g % 7 = 0 THEN 'apply' WHEN g % 7 IN (1, 2, 3) THEN 'read'
                                ELSE 'propose' END AS capability) AS c;

INSERT INTO dot_coverage_required (domain_code, capability, min_tools)
SELECT code, 'read', 1 + (k % 2)
FROM (SELECT code, row_number() OVER (ORDER BY code) - 1 AS k
      FROM dot_domains WHERE parent_code IS NOT NULL) AS d
WHERE k % 4 = 0;   -- 36 subdomains, every 4th: 9 rows
INSERT INTO dot_coverage_required (domain_code, capability, min_tools) VALUES
    ('law', 'read', 2),
    ('apr', 'propose', 1);

-- ---------------------------------------------------------------- APR action types: 6, none governance
INSERT INTO apr_action_types (code, domain, action, handler_ref, phase, requires_quorum) VALUES
    ('publish_kb_document',   'kb',          'review', 'apr.handlers.kb_publish',         'B', true),
    ('register_dot_tool',     'dot',         'add',    'apr.handlers.dot_register',       'B', true),
    ('propose_law_amendment', 'law',         'review', 'apr.handlers.law_amendment',      'B', true),
    ('add_birth_collection',  'birth',       'add',    'apr.handlers.collection_add',     'B', true),
    ('register_event_type',   'event',       'add',    'apr.handlers.event_register',     'B', true),
    ('update_measurement',    'measurement', 'update', 'apr.handlers.measurement_update', 'B', false);

-- ---------------------------------------------------------------- the 6 owner agencies
INSERT INTO owner_agencies (agency_code, name, kind) VALUES
    ('SOVEREIGN_OFFICE',     'Office of the Sovereign',       'sovereign'),
    ('GOVERNANCE_COUNCIL',   'Governance Council',            'council'),
    ('DATA_STEWARDSHIP',     'Data Stewardship Office',       'office'),
    ('PLATFORM_ENGINEERING', 'Platform Engineering Office',   'office'),
    ('KNOWLEDGE_OFFICE',     'Knowledge Office',              'office'),
    ('SECURITY_OFFICE',      'Security Office',               'office');

-- ---------------------------------------------------------------- governance_relations: 36 rows
INSERT INTO governance_relations (relation_id, from_ref, to_ref, relation_type)
SELECT g,
       format('kb:doc/%s', 40 + (g % 12)),
       format('kb:doc/%s', 20 + (g % 9)),
       (ARRAY['depends_on', 'derived_from', 'supersedes', 'references', 'implements'])[1 + (g % 5)]
FROM generate_series(1, 36) AS g;

-- ---------------------------------------------------------------- implementation units (no GOV-IU)
INSERT INTO implementation_units (iu_code, title, status, authority) VALUES
    ('IU_PROD_REVIEW_DECISION_BUILDER_COUNCIL_AUTHORED_400000X', 'Production review_decision builder (seed 004)', 'planned', 'council'),
    ('IU_BIRTH_INGEST_V3',        'Birth ingest v3',              'live',     'PLATFORM_ENGINEERING'),
    ('IU_KB_PUBLISHING_PIPELINE', 'KB publishing pipeline',       'live',     'KNOWLEDGE_OFFICE'),
    ('IU_OUTBOX_RELAY',           'Outbox relay',                 'live',     'PLATFORM_ENGINEERING');

-- ---------------------------------------------------------------- KB documents and revisions
-- Doc 24 has 3 revisions, doc 25 has 2, the other docs of the packet 1; a document's body is the
-- body of its current revision.
INSERT INTO kb_documents (doc_no, slug, title, current_revision, body, updated_at)
SELECT d.doc_no, format('doc-%s', d.doc_no), d.title, d.revisions,
       format(E'# %s\n\nRevision %s of doc %s.\n', d.title, d.revisions, d.doc_no),
       TIMESTAMPTZ '2026-03-01 00:00:00+00' + (d.doc_no * INTERVAL '1 day') + (d.revisions * INTERVAL '7 days')
FROM (VALUES (24, 'Governance candidate model', 3), (25, 'Governance findings and verdicts', 2),
             (42, 'Gate table', 1), (45, 'Build index', 1), (48, 'Pre-flight', 1), (49, 'Gate checklist', 1),
             (62, 'Footprint claim', 1), (69, 'Drift fold-in', 1), (70, 'GCOS build order and stop conditions', 1),
             (71, 'Rollback', 1), (72, 'Authorization template', 1)) AS d(doc_no, title, revisions);

INSERT INTO kb_document_revisions (doc_no, revision, body, change_note, addenda, created_at)
SELECT d.doc_no, r,
       format(E'# %s\n\nRevision %s of doc %s.\n', d.title, r, d.doc_no),
       CASE WHEN r = 1 THEN 'initial' ELSE format('revision %s', r) END,
       '[]'::jsonb,
       TIMESTAMPTZ '2026-03-01 00:00:00+00' + (d.doc_no * INTERVAL '1 day') + (r * INTERVAL '7 days')
FROM kb_documents d
CROSS JOIN LATERAL generate_series(1, d.current_revision) AS r;

-- ---------------------------------------------------------------- finding types: 14, none governance
INSERT INTO finding_type_registry (code, domain, severity, escalation, description)
SELECT format('%s.%s', d.domain, k.kind), d.domain, k.severity, k.escalation, format('%s: %s', d.domain, k.kind)
FROM unnest(ARRAY['birth', 'changelog', 'dot', 'kb', 'law', 'measurement', 'queue']) AS d(domain)
CROSS JOIN (VALUES ('stale', 'notice', 'finding_only'), ('inconsistent', 'warning', 'auto_remediate'))
         AS k(kind, severity, escalation);
