-- gcos schema version 9: the kernel's judgement, in the database (issue 9 items 2 and 4).
--
-- Building blocks the kernel's rehearse and commit functions use to decide, inside the database, what a
-- step's SQL did; nothing here trusts the client:
--
--   gcos.check_value(sql)        one value of a check query, read in a READ ONLY subtransaction that is
--                                always rolled back (a check can write nothing: DDL, DML, nextval and
--                                setval fail with 25006);
--   gcos.expect_holds(v, e)      a check's `expect:` against that value, with gcos's typing (1 never
--                                equals true; gt/gte/lt/lte/between need a number);
--   gcos.evaluate_check(check)   both, for a spec check {name, sql, expect};
--   gcos.stop_holds(stop, n)     one stop item {name?, sql | forbid_columns | forbid_objects | max_new_tables};
--   gcos.footprint_probe()       what the fingerprint does not say about a change: per-transaction row
--                                counters, which table each index/constraint/trigger/sequence belongs to,
--                                relation kinds, storage files (a TRUNCATE or rewrite changes them) and
--                                the comments of relations and columns;
--   gcos.footprint(...)          from two fingerprints (gcos.fingerprint / fingerprint.take, same shape)
--                                and two probes: objects added, removed and changed, rows inserted,
--                                updated and deleted per table, tables rewritten or truncated;
--   gcos.allow_violations(a, f)  everything in footprint f that the spec's `allow` list a does not name:
--                                the allow list enforced on what actually changed, not on parsed SQL.
--
-- Search path: check_value, evaluate_check and stop_holds run spec SQL, so they keep the CALLER's
-- search_path (unqualified names in a check mean what they mean to the step); the kernel pins it before it
-- calls them. Everything they name themselves is schema-qualified. The other functions pin
-- pg_catalog, pg_temp.
--
-- Names: an allow or forbid name is an identifier as a spec writes it (`t` or `s.t`, unquoted, folded to
-- lower case as PostgreSQL folds it); an unqualified name matches the object of that name in any schema,
-- as gcos's static check (sqlcheck.py) does. Identities are the fingerprint's: quote_ident parts joined
-- by dots (`public.t`, `public.t.col`, `public.f(integer)`), split with parse_ident.
--
-- Known limit: the fingerprint hashes a relation's (or column's) whole definition, comment included, so
-- a `comment: t` allow item accepts a changed t when t's comment changed, without proving that nothing
-- else about t changed in the same step. The static check still refuses such SQL before it runs.
SET LOCAL ROLE gcos_owner;

-- ----------------------------------------------------------------------------------- checks

CREATE FUNCTION gcos.check_value(p_sql text, OUT value jsonb, OUT rows integer, OUT columns integer,
                                 OUT error_state text, OUT error text)
    LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v_row record;
BEGIN
    IF p_sql IS NULL OR p_sql !~ E'\\S' THEN
        PERFORM gcos._invalid('gcos: a check needs SQL');
    END IF;
    rows := 0;
    BEGIN
        PERFORM pg_catalog.set_config('transaction_read_only', 'on', true);
        -- One statement only: a string of several "cannot open multi-query plan as cursor" (42P11).
        FOR v_row IN EXECUTE p_sql LOOP
            rows := rows + 1;
            IF rows = 1 THEN
                SELECT pg_catalog.count(*)::integer, pg_catalog.min(e.value::text)::jsonb
                  INTO columns, value FROM pg_catalog.json_each(pg_catalog.to_json(v_row)) AS e;
            END IF;
        END LOOP;
        RAISE EXCEPTION 'gcos: check rolled back' USING ERRCODE = 'GC100';
    EXCEPTION
        WHEN SQLSTATE 'GC100' THEN
            NULL;  -- always: the subtransaction (and its READ ONLY) is undone
        WHEN undefined_table OR undefined_column OR undefined_function OR undefined_object
             OR invalid_schema_name THEN
            -- The world lacks what the check names: a mismatch of the world, not a bad spec.
            error_state := SQLSTATE;
            error := SQLERRM;
            value := NULL;
    END;
    IF error_state IS NULL AND (rows <> 1 OR columns <> 1) THEN
        RAISE EXCEPTION 'gcos: a check must return one row of one column, this one returned % row(s) of % column(s)',
            rows, COALESCE(columns, 0) USING ERRCODE = '22023';
    END IF;
END
$$;

-- `expect:` semantics (spec.Expectation.holds): a scalar means eq; eq/ne/in compare type and value
-- (numbers numerically); gt/gte/lt/lte/between hold only for a number.
CREATE FUNCTION gcos.expect_holds(p_actual jsonb, p_expect jsonb) RETURNS boolean
    LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_op text := 'eq';
    v_want jsonb := p_expect;
    v_actual jsonb := COALESCE(p_actual, 'null'::jsonb);
    v_number boolean;
BEGIN
    IF pg_catalog.jsonb_typeof(p_expect) = 'object' THEN
        IF (SELECT pg_catalog.count(*) FROM pg_catalog.jsonb_object_keys(p_expect)) <> 1 THEN
            PERFORM gcos._invalid('gcos: an expect object has exactly one operator');
        END IF;
        SELECT e.key, e.value INTO v_op, v_want FROM pg_catalog.jsonb_each(p_expect) AS e;
    END IF;
    v_number := pg_catalog.jsonb_typeof(v_actual) = 'number';
    CASE v_op
        WHEN 'eq' THEN RETURN gcos._same(v_actual, v_want);
        WHEN 'ne' THEN RETURN NOT gcos._same(v_actual, v_want);
        WHEN 'in' THEN
            RETURN EXISTS (SELECT FROM pg_catalog.jsonb_array_elements(v_want) AS w(v) WHERE gcos._same(v_actual, w.v));
        WHEN 'gt' THEN RETURN v_number AND v_actual::numeric > v_want::numeric;
        WHEN 'gte' THEN RETURN v_number AND v_actual::numeric >= v_want::numeric;
        WHEN 'lt' THEN RETURN v_number AND v_actual::numeric < v_want::numeric;
        WHEN 'lte' THEN RETURN v_number AND v_actual::numeric <= v_want::numeric;
        WHEN 'between' THEN
            RETURN v_number AND v_actual::numeric BETWEEN (v_want -> 0)::numeric AND (v_want -> 1)::numeric;
        ELSE
            PERFORM gcos._invalid(pg_catalog.format('gcos: expect operator %L is not one of eq ne gt gte lt lte in between', v_op));
    END CASE;
    RETURN false;
END
$$;

CREATE FUNCTION gcos._same(p_a jsonb, p_b jsonb) RETURNS boolean
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT pg_catalog.jsonb_typeof(p_a) = pg_catalog.jsonb_typeof(p_b) AND p_a = p_b $$;

-- One spec check {name, sql, expect} -> {name, expected, actual, ok, error}.
CREATE FUNCTION gcos.evaluate_check(p_check jsonb) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v record;
BEGIN
    IF p_check IS NULL OR pg_catalog.jsonb_typeof(p_check -> 'sql') IS DISTINCT FROM 'string'
       OR NOT p_check ? 'expect' THEN
        PERFORM gcos._invalid('gcos: a check is an object with sql and expect');
    END IF;
    SELECT * INTO v FROM gcos.check_value(p_check ->> 'sql');
    RETURN pg_catalog.jsonb_build_object(
        'name', p_check -> 'name', 'expected', p_check -> 'expect', 'actual', v.value,
        'ok', v.error_state IS NULL AND gcos.expect_holds(v.value, p_check -> 'expect'),
        'error', v.error);
END
$$;

-- ----------------------------------------------------------------------------------- stop conditions

CREATE FUNCTION gcos._user_schema(p_name name) RETURNS boolean
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT p_name NOT IN ('information_schema', 'gcos') AND p_name !~ '^pg_' $$;

CREATE FUNCTION gcos._names(p_list jsonb) RETURNS text[]
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT COALESCE(pg_catalog.array_agg(pg_catalog.lower(x)), '{}')
      FROM pg_catalog.jsonb_array_elements_text(
               CASE pg_catalog.jsonb_typeof(p_list) WHEN 'array' THEN p_list
                    WHEN 'string' THEN pg_catalog.jsonb_build_array(p_list) ELSE '[]'::jsonb END) AS e(x)
$$;

-- Whether one stop item holds now, in the caller's transaction. p_new_tables: the footprint's count of
-- new tables (for max_new_tables). An SQL stop holds when it returns true or names what is not there.
CREATE FUNCTION gcos.stop_holds(p_stop jsonb, p_new_tables integer,
                                OUT name text, OUT kind text, OUT holds boolean, OUT detail text)
    LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v record;
    v_names text[];
    v_found text;
    v_limit integer;
BEGIN
    IF p_stop ? 'sql' THEN
        kind := 'sql';
        name := p_stop ->> 'name';
        SELECT * INTO v FROM gcos.check_value(p_stop ->> 'sql');
        holds := v.error_state IS NOT NULL OR v.value = 'true'::jsonb;
        detail := CASE WHEN v.error IS NOT NULL THEN 'error: ' || v.error ELSE 'returned ' || v.value::text END;
    ELSIF p_stop ? 'forbid_columns' THEN
        kind := 'forbid_columns';
        v_names := gcos._names(p_stop -> 'forbid_columns');
        name := COALESCE(p_stop ->> 'name', 'no column named ' || pg_catalog.array_to_string(v_names, ', '));
        SELECT pg_catalog.string_agg(DISTINCT c.relname || '.' || a.attname, ', ') INTO v_found
          FROM pg_catalog.pg_attribute AS a
          JOIN pg_catalog.pg_class AS c ON c.oid = a.attrelid
          JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
         WHERE a.attnum > 0 AND NOT a.attisdropped AND gcos._user_schema(n.nspname)
           AND a.attname = ANY (v_names);
    ELSIF p_stop ? 'forbid_objects' THEN
        kind := 'forbid_objects';
        v_names := gcos._names(p_stop -> 'forbid_objects');
        name := COALESCE(p_stop ->> 'name', 'no object named ' || pg_catalog.array_to_string(v_names, ', '));
        SELECT pg_catalog.string_agg(DISTINCT o.name, ', ') INTO v_found FROM (
            SELECT c.relname::text AS name FROM pg_catalog.pg_class AS c
              JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
             WHERE gcos._user_schema(n.nspname) AND c.relname = ANY (v_names)
            UNION ALL
            SELECT p.proname FROM pg_catalog.pg_proc AS p JOIN pg_catalog.pg_namespace AS n ON n.oid = p.pronamespace
             WHERE gcos._user_schema(n.nspname) AND p.proname = ANY (v_names)
            UNION ALL
            SELECT t.typname FROM pg_catalog.pg_type AS t JOIN pg_catalog.pg_namespace AS n ON n.oid = t.typnamespace
             WHERE gcos._user_schema(n.nspname) AND t.typname = ANY (v_names) AND t.typtype <> 'c'
            UNION ALL
            SELECT tg.tgname FROM pg_catalog.pg_trigger AS tg WHERE NOT tg.tgisinternal AND tg.tgname = ANY (v_names)
        ) AS o;
    ELSIF p_stop ? 'max_new_tables' THEN
        kind := 'max_new_tables';
        v_limit := (p_stop ->> 'max_new_tables')::integer;
        name := COALESCE(p_stop ->> 'name', pg_catalog.format('at most %s new tables', v_limit));
        holds := COALESCE(p_new_tables, 0) > v_limit;
        detail := pg_catalog.format('%s new table(s), limit %s', COALESCE(p_new_tables, 0), v_limit);
        RETURN;
    ELSE
        PERFORM gcos._invalid('gcos: a stop item has sql, forbid_columns, forbid_objects or max_new_tables');
    END IF;
    IF kind <> 'sql' THEN
        holds := v_found IS NOT NULL;
        detail := COALESCE('found ' || v_found, 'none present');
    END IF;
END
$$;

-- ----------------------------------------------------------------------------------- footprint

-- What a fingerprint does not hold, taken before and after a step's SQL in the same transaction.
CREATE FUNCTION gcos.footprint_probe() RETURNS jsonb
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    WITH rel AS (
        SELECT c.oid, c.relkind, c.relfilenode,
               pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname) AS identity
          FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
         WHERE gcos._user_schema(n.nspname)
    ), owner AS (
        -- indexes and extended statistics -> their table; sequences -> the table owning them
        SELECT i.identity, t.identity AS owner FROM pg_catalog.pg_index AS x
          JOIN rel AS i ON i.oid = x.indexrelid JOIN rel AS t ON t.oid = x.indrelid
        UNION ALL
        SELECT s.identity, t.identity FROM pg_catalog.pg_depend AS d
          JOIN rel AS s ON s.oid = d.objid AND s.relkind = 'S' JOIN rel AS t ON t.oid = d.refobjid
         WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.refclassid = 'pg_catalog.pg_class'::regclass
           AND d.deptype IN ('a', 'i')
        UNION ALL
        SELECT pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(s.stxname), t.identity
          FROM pg_catalog.pg_statistic_ext AS s JOIN pg_catalog.pg_namespace AS n ON n.oid = s.stxnamespace
          JOIN rel AS t ON t.oid = s.stxrelid
    )
    SELECT pg_catalog.jsonb_build_object(
        'rows', (SELECT COALESCE(pg_catalog.jsonb_object_agg(
                            pg_catalog.quote_ident(s.schemaname) || '.' || pg_catalog.quote_ident(s.relname),
                            pg_catalog.jsonb_build_array(s.n_tup_ins, s.n_tup_upd, s.n_tup_del)), '{}')
                   FROM pg_catalog.pg_stat_xact_user_tables AS s
                  WHERE gcos._user_schema(s.schemaname) AND s.n_tup_ins + s.n_tup_upd + s.n_tup_del > 0),
        'owners', (SELECT COALESCE(pg_catalog.jsonb_object_agg(o.identity, o.owner), '{}') FROM owner AS o),
        'kinds', (SELECT COALESCE(pg_catalog.jsonb_object_agg(r.identity, r.relkind), '{}') FROM rel AS r),
        'files', (SELECT COALESCE(pg_catalog.jsonb_object_agg(r.identity, r.relfilenode::bigint), '{}')
                    FROM rel AS r WHERE r.relkind IN ('r', 'm', 't') AND r.relfilenode <> 0),
        'comments', (SELECT COALESCE(pg_catalog.jsonb_object_agg(
                                r.identity || CASE WHEN d.objsubid = 0 THEN ''
                                                   ELSE '.' || pg_catalog.quote_ident(a.attname) END,
                                d.description), '{}')
                       FROM pg_catalog.pg_description AS d
                       JOIN rel AS r ON r.oid = d.objoid
                       LEFT JOIN pg_catalog.pg_attribute AS a ON a.attrelid = d.objoid AND a.attnum = d.objsubid
                      WHERE d.classoid = 'pg_catalog.pg_class'::regclass))
$$;

-- Objects, rows and storage a step changed, from the entry and inside fingerprints and probes.
CREATE FUNCTION gcos.footprint(p_before jsonb, p_after jsonb, p_probe_before jsonb, p_probe_after jsonb)
    RETURNS jsonb
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    WITH cats AS (
        SELECT c FROM pg_catalog.jsonb_object_keys(COALESCE(p_before -> 'schema', '{}')) AS k(c)
        UNION SELECT c FROM pg_catalog.jsonb_object_keys(COALESCE(p_after -> 'schema', '{}')) AS k(c)
    ), objects AS (
        SELECT cats.c AS category, COALESCE(x.bkey, x.akey) AS identity,
               CASE WHEN x.bkey IS NULL THEN 'added' WHEN x.akey IS NULL THEN 'removed' ELSE 'changed' END AS change
          FROM cats
          CROSS JOIN LATERAL (
              SELECT b.key AS bkey, a.key AS akey, b.value AS bval, a.value AS aval
                FROM pg_catalog.jsonb_each(COALESCE(p_before -> 'schema' -> cats.c, '{}')) AS b
                FULL JOIN pg_catalog.jsonb_each(COALESCE(p_after -> 'schema' -> cats.c, '{}')) AS a ON a.key = b.key
          ) AS x
         WHERE x.bval IS DISTINCT FROM x.aval
    ), counters AS (
        SELECT COALESCE(a.key, b.key) AS identity,
               COALESCE((a.value ->> 0)::bigint, 0) - COALESCE((b.value ->> 0)::bigint, 0) AS inserted,
               COALESCE((a.value ->> 1)::bigint, 0) - COALESCE((b.value ->> 1)::bigint, 0) AS updated,
               COALESCE((a.value ->> 2)::bigint, 0) - COALESCE((b.value ->> 2)::bigint, 0) AS deleted
          FROM pg_catalog.jsonb_each(COALESCE(p_probe_after -> 'rows', '{}')) AS a
          FULL JOIN pg_catalog.jsonb_each(COALESCE(p_probe_before -> 'rows', '{}')) AS b ON b.key = a.key
    )
    SELECT pg_catalog.jsonb_build_object(
        'objects', (SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                                        'category', o.category, 'identity', o.identity, 'change', o.change)
                                    ORDER BY o.category, o.identity COLLATE "C"), '[]') FROM objects AS o),
        'new_tables', (SELECT COALESCE(pg_catalog.jsonb_agg(o.identity ORDER BY o.identity COLLATE "C"), '[]')
                         FROM objects AS o
                        WHERE o.category = 'relation' AND o.change = 'added'
                          AND p_probe_after -> 'kinds' ->> o.identity IN ('r', 'p')),
        'dropped_tables', (SELECT COALESCE(pg_catalog.jsonb_agg(o.identity ORDER BY o.identity COLLATE "C"), '[]')
                             FROM objects AS o
                            WHERE o.category = 'relation' AND o.change = 'removed'
                              AND p_probe_before -> 'kinds' ->> o.identity IN ('r', 'p', 'f')),
        'rows', (SELECT COALESCE(pg_catalog.jsonb_object_agg(c.identity, pg_catalog.jsonb_build_object(
                                     'inserted', c.inserted, 'updated', c.updated, 'deleted', c.deleted)), '{}')
                   FROM counters AS c WHERE c.inserted > 0 OR c.updated > 0 OR c.deleted > 0),
        'rewritten', (SELECT COALESCE(pg_catalog.jsonb_agg(b.key ORDER BY b.key COLLATE "C"), '[]')
                        FROM pg_catalog.jsonb_each(COALESCE(p_probe_before -> 'files', '{}')) AS b
                        JOIN pg_catalog.jsonb_each(COALESCE(p_probe_after -> 'files', '{}')) AS a ON a.key = b.key
                       WHERE a.value <> b.value),
        'comments_changed', (SELECT COALESCE(pg_catalog.jsonb_agg(k ORDER BY k COLLATE "C"), '[]') FROM (
                                 SELECT COALESCE(b.key, a.key) AS k
                                   FROM pg_catalog.jsonb_each(COALESCE(p_probe_before -> 'comments', '{}')) AS b
                                   FULL JOIN pg_catalog.jsonb_each(COALESCE(p_probe_after -> 'comments', '{}')) AS a
                                     ON a.key = b.key
                                  WHERE a.value IS DISTINCT FROM b.value) AS c),
        'owners', COALESCE(p_probe_before -> 'owners', '{}') || COALESCE(p_probe_after -> 'owners', '{}'),
        'kinds', COALESCE(p_probe_before -> 'kinds', '{}') || COALESCE(p_probe_after -> 'kinds', '{}'))
$$;

-- ----------------------------------------------------------------------------------- allow list

-- The parts of a fingerprint identity: `public.t.col` -> {public, t, col}; `s.f(integer, text)` -> {s, f}.
CREATE FUNCTION gcos._ident_parts(p_identity text) RETURNS text[]
    LANGUAGE sql IMMUTABLE STRICT SET search_path = pg_catalog, pg_temp
AS $$ SELECT pg_catalog.parse_ident(p_identity, false) $$;

-- Whether allow item names (lower-cased spec identifiers) name the object `p_schema`.`p_name`.
CREATE FUNCTION gcos._named(p_names text[], p_schema text, p_name text) RETURNS boolean
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT p_name = ANY (p_names) OR (p_schema || '.' || p_name) = ANY (p_names) $$;

-- Everything the footprint shows that the allow list does not name: [{need, identity, change, category}],
-- `need` being the allow kinds that would have permitted it. [] when the footprint is within the list.
CREATE FUNCTION gcos.allow_violations(p_allow jsonb, p_footprint jsonb) RETURNS jsonb
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_allow jsonb := '{}';
    v_item jsonb;
    v_out jsonb := '[]';
    o record;
    v_parts text[];
    v_table text;
    v_tparts text[];
    v_kind text;
    v_need text[];
    v_target text[];
    v_change text;
BEGIN
    FOR v_item IN SELECT e.value FROM pg_catalog.jsonb_array_elements(COALESCE(p_allow, '[]')) AS e LOOP
        SELECT v_allow || pg_catalog.jsonb_build_object(k.key,
                   pg_catalog.to_jsonb(gcos._names(COALESCE(v_allow -> k.key, '[]') || k.value)))
          INTO v_allow FROM pg_catalog.jsonb_each(v_item) AS k;
    END LOOP;

    FOR o IN SELECT e.value ->> 'category' AS category, e.value ->> 'identity' AS identity,
                    e.value ->> 'change' AS change
               FROM pg_catalog.jsonb_array_elements(p_footprint -> 'objects') AS e LOOP
        v_parts := gcos._ident_parts(o.identity);
        v_table := NULL;
        v_need := NULL;
        IF o.category IN ('column', 'trigger', 'rule', 'policy') OR (o.category = 'constraint'
                AND p_footprint -> 'kinds' ? (pg_catalog.quote_ident(v_parts[1]) || '.' || pg_catalog.quote_ident(v_parts[2]))) THEN
            v_table := pg_catalog.quote_ident(v_parts[1]) || '.' || pg_catalog.quote_ident(v_parts[2]);
        ELSIF o.category IN ('index', 'statistics', 'sequence') THEN
            v_table := p_footprint -> 'owners' ->> o.identity;
        END IF;
        v_kind := p_footprint -> 'kinds' ->> COALESCE(v_table, o.identity);

        IF o.category IN ('table_data', 'sequence_state') THEN
            CONTINUE;  -- rows are judged from the counters below; sequence state is residue
        ELSIF v_table IS NOT NULL THEN
            -- a part of a table: allowed with the table's creation, its alteration or its drop
            v_need := CASE WHEN v_kind IN ('v', 'm') THEN ARRAY['create_view', 'drop_view']
                           ELSE ARRAY['create_table', 'alter_table', 'drop_table'] END;
            IF o.category = 'index' AND o.change = 'added' THEN
                v_need := v_need || ARRAY['create_index'];
            END IF;
            IF o.category = 'column' AND o.change = 'changed' AND p_footprint -> 'comments_changed' ? o.identity THEN
                v_need := v_need || ARRAY['comment'];
            END IF;
            -- creation only for a table created by this step, drop only for one it dropped
            IF o.change = 'added' AND NOT p_footprint -> 'new_tables' ? v_table AND v_kind NOT IN ('v', 'm') THEN
                v_need := pg_catalog.array_remove(v_need, 'create_table');
            END IF;
            IF NOT (p_footprint -> 'dropped_tables' ? v_table) THEN
                v_need := pg_catalog.array_remove(pg_catalog.array_remove(v_need, 'drop_table'), 'drop_view');
            END IF;
            v_target := ARRAY[v_table];
            IF o.category = 'index' THEN
                v_target := v_target || o.identity;
            END IF;
        ELSIF o.category = 'relation' THEN
            v_kind := COALESCE(v_kind, 'r');
            v_need := CASE
                WHEN o.change = 'added' AND v_kind IN ('r', 'p', 'f') THEN ARRAY['create_table']
                WHEN o.change = 'added' AND v_kind IN ('v', 'm') THEN ARRAY['create_view']
                WHEN o.change = 'removed' AND v_kind IN ('r', 'p', 'f') THEN ARRAY['drop_table']
                WHEN o.change = 'removed' AND v_kind IN ('v', 'm') THEN ARRAY['drop_view']
                WHEN v_kind IN ('v', 'm') THEN ARRAY['create_view']
                ELSE ARRAY['alter_table'] END;
            IF o.change = 'changed' AND p_footprint -> 'comments_changed' ? o.identity THEN
                v_need := v_need || ARRAY['comment'];
            END IF;
            v_target := ARRAY[o.identity];
        ELSIF o.category = 'function' AND o.change IN ('added', 'changed') THEN
            v_need := ARRAY['create_function'];
            v_target := ARRAY[o.identity];
        ELSIF o.category = 'type' AND o.change IN ('added', 'changed') THEN
            v_need := ARRAY['create_type'];
            v_target := ARRAY[o.identity];
        ELSIF o.category = 'constraint' AND o.change IN ('added', 'changed') THEN  -- a domain's CHECK
            v_need := ARRAY['create_type'];
            v_target := ARRAY[pg_catalog.quote_ident(v_parts[1]) || '.' || pg_catalog.quote_ident(v_parts[2])];
        ELSE
            v_need := '{}';  -- schemas, extensions, standalone sequences, drops of functions and types ...
            v_target := ARRAY[o.identity];
        END IF;

        IF NOT EXISTS (
            SELECT FROM pg_catalog.unnest(v_need) AS k(kind), pg_catalog.unnest(v_target) AS t(identity)
             CROSS JOIN LATERAL (SELECT gcos._ident_parts(t.identity) AS p) AS x
             WHERE gcos._named(ARRAY(SELECT pg_catalog.jsonb_array_elements_text(COALESCE(v_allow -> k.kind, '[]'))),
                               x.p[1], x.p[2])) THEN
            v_out := v_out || pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
                'category', o.category, 'identity', o.identity, 'change', o.change,
                'need', pg_catalog.to_jsonb(v_need)));
        END IF;
    END LOOP;

    -- rows: inserted/updated/deleted need insert/update/delete on the table
    FOR o IN SELECT r.key AS identity, (r.value ->> 'inserted')::bigint AS ins, (r.value ->> 'updated')::bigint AS upd,
                    (r.value ->> 'deleted')::bigint AS del
               FROM pg_catalog.jsonb_each(COALESCE(p_footprint -> 'rows', '{}')) AS r LOOP
        v_tparts := gcos._ident_parts(o.identity);
        FOR v_kind, v_change IN SELECT u.k, u.c FROM (VALUES ('insert', 'inserted', o.ins), ('update', 'updated', o.upd),
                                                           ('delete', 'deleted', o.del)) AS u(k, c, n)
                                 WHERE u.n > 0 LOOP
            IF NOT gcos._named(ARRAY(SELECT pg_catalog.jsonb_array_elements_text(COALESCE(v_allow -> v_kind, '[]'))),
                               v_tparts[1], v_tparts[2]) THEN
                v_out := v_out || pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
                    'category', 'rows', 'identity', o.identity, 'change', v_change,
                    'need', pg_catalog.jsonb_build_array(v_kind)));
            END IF;
        END LOOP;
    END LOOP;

    -- storage rewritten or truncated (not visible in row counters): alter_table or delete on the table
    FOR o IN SELECT x AS identity FROM pg_catalog.jsonb_array_elements_text(COALESCE(p_footprint -> 'rewritten', '[]')) AS e(x) LOOP
        v_tparts := gcos._ident_parts(o.identity);
        IF NOT gcos._named(ARRAY(SELECT pg_catalog.jsonb_array_elements_text(COALESCE(v_allow -> 'alter_table', '[]'))
                                 UNION ALL
                                 SELECT pg_catalog.jsonb_array_elements_text(COALESCE(v_allow -> 'delete', '[]'))),
                           v_tparts[1], v_tparts[2]) THEN
            v_out := v_out || pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
                'category', 'storage', 'identity', o.identity, 'change', 'rewritten',
                'need', pg_catalog.jsonb_build_array('alter_table', 'delete')));
        END IF;
    END LOOP;
    RETURN v_out;
END
$$;

REVOKE ALL ON FUNCTION gcos.check_value(text), gcos.expect_holds(jsonb, jsonb), gcos._same(jsonb, jsonb),
    gcos.evaluate_check(jsonb), gcos._user_schema(name), gcos._names(jsonb), gcos.stop_holds(jsonb, integer),
    gcos.footprint_probe(), gcos.footprint(jsonb, jsonb, jsonb, jsonb), gcos._ident_parts(text),
    gcos._named(text[], text, text), gcos.allow_violations(jsonb, jsonb) FROM PUBLIC;
-- Pure functions of their arguments or read-only, running with the caller's rights: harmless to share.
GRANT EXECUTE ON FUNCTION gcos.check_value(text), gcos.expect_holds(jsonb, jsonb), gcos._same(jsonb, jsonb),
    gcos.evaluate_check(jsonb), gcos._user_schema(name), gcos._names(jsonb), gcos.stop_holds(jsonb, integer),
    gcos.footprint_probe(), gcos.footprint(jsonb, jsonb, jsonb, jsonb), gcos._ident_parts(text),
    gcos._named(text[], text, text), gcos.allow_violations(jsonb, jsonb)
    TO gcos_admin, gcos_operator, gcos_sovereign, gcos_council, gcos_auditor;
