-- gcos reference world, part 4 of 5: birth_registry's keys and indexes (built after the fill,
-- which is much faster than maintaining them row by row), its identity moved past the last id,
-- the changelog derived from it, and fresh planner statistics.
SET LOCAL maintenance_work_mem = '256MB';

ALTER TABLE birth_registry ADD CONSTRAINT birth_registry_pkey PRIMARY KEY (id);
ALTER TABLE birth_registry
    ADD CONSTRAINT birth_registry_collection_entity_key UNIQUE (collection_name, entity_code);
CREATE INDEX birth_registry_born_at_idx ON birth_registry (born_at);

SELECT setval(pg_get_serial_sequence('birth_registry', 'id'), (SELECT max(id) FROM birth_registry));

-- The changelog: one entry per 499th birth (integer ids, its own identity).
INSERT INTO entity_changelog (birth_id, collection_name, entity_code, change_kind, changed_at, payload)
SELECT b.id, b.collection_name, b.entity_code,
       (ARRAY['create', 'update', 'update', 'retire'])[1 + (b.id % 4)::int],
       b.born_at + INTERVAL '1 day',
       jsonb_build_object('field', 'canonical_address', 'had_address', b.canonical_address IS NOT NULL)
FROM birth_registry b
WHERE b.id % 499 = 1
ORDER BY b.id;

ANALYZE birth_registry;
ANALYZE entity_changelog;
