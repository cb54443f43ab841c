-- gcos reference world, part 3 of 5: one chunk of birth_registry (run once per chunk, with
-- the query parameters lo and hi: the chunk's inclusive range of row numbers n, 1 <= n <= rows).
--
-- No modulo operator here: this text runs with query parameters, so it uses mod().
-- Deterministic, no random(): row n gets
--   id                = n + floor(n * 12575 / 1043000)  -- ids have gaps, as a live sequence does;
--                       at the default 1,043,000 rows the last id is 1,055,575 (the seed's step-2
--                       integer watermark example "1055575")
--   collection_name   = one of 8 collections, round robin
--   entity_code       = collection prefix + n (so collection_name:entity_code is unique: the
--                       idempotency key of step 9)
--   canonical_address = NULL for every 37th row (the C-2 "NULL correction" of step 3), and shared
--                       with the previous row for every 101st row (two births of one object: the
--                       candidate "group" of step 3)
--   born_at           = 2025-09-01 + 15 s * n
INSERT INTO birth_registry (id, collection_name, entity_code, canonical_address, born_at, source_system)
SELECT n + (n * 12575) / 1043000,
       c.collection_name,
       upper(left(c.collection_name, 3)) || '-' || lpad(n::text, 8, '0'),
       CASE WHEN mod(n, 37) = 0 THEN NULL
            ELSE 'urn:oneroof:' || to_hex(CASE WHEN mod(n, 101) = 0 THEN n - 1 ELSE n END) END,
       TIMESTAMPTZ '2025-09-01 00:00:00+00' + n * INTERVAL '15 seconds',
       (ARRAY['ingest-v3', 'ingest-v3', 'ingest-v3', 'bulk-import', 'manual'])[1 + mod(n, 5)::int]
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS n
CROSS JOIN LATERAL (
    SELECT (ARRAY['persons', 'legal_entities', 'places', 'documents',
                  'artifacts', 'events', 'datasets', 'services'])[1 + mod(n, 8)::int] AS collection_name
) AS c
ORDER BY n
