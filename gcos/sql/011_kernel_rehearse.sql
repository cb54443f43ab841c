-- gcos schema version 11: the kernel rehearses (issue 9 item 2, first part).
--
--   gcos.rehearse(spec_hash, plan_hash, trace_id) -> jsonb          gcos_operator, gcos_admin
--
-- rehearses a REGISTERED spec (gcos.specs) under a registered plan (gcos.plans) inside the database: the
-- client passes two hashes, never SQL. In the caller's transaction it runs the spec's re-verify, takes the
-- entry fingerprint (gcos.fingerprint_at), then in a subtransaction that is always rolled back runs the
-- mutation (and, for a batched step, its first two keyset batches), takes the inside fingerprint and the
-- observed footprint, lists what the footprint holds beyond the spec's `allow` list, evaluates the step's
-- and the plan's stop conditions and the success evidence, runs the rollback evidence and fingerprints
-- again. After the rollback it takes the exit fingerprint and looks for what a rollback cannot undo: the
-- sequences that moved (reported residue), session advisory locks (released, and the rehearsal fails)
-- and changed session settings (the rehearsal fails). It appends the `rehearsal` ledger record itself and
-- returns its payload with the record's seq and hash.
--
-- Who runs what:
--   * gcos.rehearse is SECURITY DEFINER, owned by gcos_owner (it writes the ledger). Callers: a superuser or
--     a human or agent principal holding the operator or admin role, logged in as itself.
--   * The step's SQL, its checks and its fingerprints run as gcos_kernel, the owner of the adopted schemas,
--     through gcos._kernel_* functions that gcos_kernel owns and only gcos_owner may execute, with
--     search_path = public, pg_temp (pg_temp last: the caller's temporary tables never shadow a governed
--     one) and pinned TimeZone, DateStyle and IntervalStyle, so an approved spec means the same whoever
--     runs it. gcos_kernel holds no privilege on the gcos schema's tables: the step cannot write the ledger,
--     approvals or the registry, and it can execute only the read-only gcos functions granted below.
--   * Step SQL runs with search_path = public, pg_temp, so public must be adopted (55000 otherwise). A
--     session with temporary objects, in replica mode or in a read-only transaction is refused (22023)
--     before anything runs.
--
-- Outcomes (the client maps them to exit codes): passed; reverify_mismatch (6); stopped (a stop condition
-- held or the footprint left the allow list: 4); success_failed (4); rollback_unproven (5); residue (5);
-- mutation_failed, batch_failed, check_failed, rollback_failed (2: the SQL errored, the message says
-- why; 42501 from a schema that is not adopted says to adopt it); lock_timeout and timeout (8).
--
-- Until the commit path moves into the kernel too (next slice), clients may still append `rehearsal`
-- records through gcos.ledger_append; the kernel's records carry "kernel": true.
SET LOCAL ROLE gcos_owner;

-- ----------------------------------------------------------------------------------- kernel executors

CREATE FUNCTION gcos._kernel_exec(p_sql text) RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = public, pg_temp SET timezone = 'UTC' SET datestyle = 'ISO, YMD' SET intervalstyle = 'postgres'
AS $$ BEGIN EXECUTE p_sql; END $$;

-- One keyset batch: the spec's batch SQL with %(after)s, %(upto)s, %(run_id)s bound as parameters.
CREATE FUNCTION gcos._kernel_batch(p_sql text, p_after bigint, p_upto bigint, p_run_id text) RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = public, pg_temp SET timezone = 'UTC' SET datestyle = 'ISO, YMD' SET intervalstyle = 'postgres'
AS $$
BEGIN
    EXECUTE pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(p_sql, '%(after)s', '$1'), '%(upto)s', '$2'),
                               '%(run_id)s', '$3')
      USING p_after, p_upto, p_run_id;
END
$$;

-- The next keyset range of at most p_size keys after p_after (NULL: from the start).
CREATE FUNCTION gcos._kernel_bounds(p_table text, p_key text, p_after bigint, p_size integer,
                                    OUT lo bigint, OUT hi bigint)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = public, pg_temp SET timezone = 'UTC' SET datestyle = 'ISO, YMD' SET intervalstyle = 'postgres'
AS $$
DECLARE
    v_table text[] := pg_catalog.parse_ident(p_table);
    v_from text;
BEGIN
    v_from := CASE pg_catalog.array_length(v_table, 1) WHEN 1 THEN pg_catalog.format('%I', v_table[1])
                   ELSE pg_catalog.format('%I.%I', v_table[1], v_table[2]) END;
    EXECUTE pg_catalog.format('SELECT pg_catalog.min(k)::bigint, pg_catalog.max(k)::bigint FROM (SELECT %1$I AS k FROM %2$s '
                              'WHERE $1 IS NULL OR %1$I > $1 ORDER BY %1$I LIMIT $2) AS b', p_key, v_from)
      INTO lo, hi USING p_after, p_size;
END
$$;

CREATE FUNCTION gcos._kernel_check(p_check jsonb) RETURNS jsonb
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = public, pg_temp SET timezone = 'UTC' SET datestyle = 'ISO, YMD' SET intervalstyle = 'postgres'
AS $$ SELECT gcos.evaluate_check(p_check) $$;

CREATE FUNCTION gcos._kernel_stop(p_stop jsonb, p_new_tables integer) RETURNS jsonb
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = public, pg_temp SET timezone = 'UTC' SET datestyle = 'ISO, YMD' SET intervalstyle = 'postgres'
AS $$
    SELECT pg_catalog.jsonb_build_object('name', s.name, 'kind', s.kind, 'held', s.holds, 'detail', s.detail)
      FROM gcos.stop_holds(p_stop, p_new_tables) AS s
$$;

CREATE FUNCTION gcos._kernel_fingerprint(p_watch text[]) RETURNS jsonb
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT gcos.fingerprint_at(COALESCE(p_watch, '{}'), '{gcos}', 'public, pg_temp') $$;

-- ----------------------------------------------------------------------------------- helpers

-- The session's actor, refusing a session that acts as another role than the one it logged in as (SET
-- SESSION AUTHORIZATION): the kernel acts, and records, only for whoever logged in.
CREATE FUNCTION gcos._kernel_actor(OUT role_oid oid, OUT role_name text, OUT is_superuser boolean,
                                   OUT principal text, OUT kind text, OUT roles text[])
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_login record;
BEGIN
    SELECT * INTO role_oid, role_name, is_superuser, principal, kind, roles FROM gcos._session_actor();
    SELECT * INTO v_login FROM gcos._session_identity();
    IF v_login.login_role_oid IS DISTINCT FROM role_oid THEN
        PERFORM gcos._refuse(pg_catalog.format('gcos: this session logged in as %s but acts as %s; the kernel runs only for the role that logged in',
                                               v_login.login_role, role_name));
    END IF;
END
$$;

-- The caller may rehearse: a superuser, or a human or agent principal with the operator or admin role
-- that logged in as itself.
CREATE FUNCTION gcos._kernel_caller() RETURNS void
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_actor record;
BEGIN
    SELECT * INTO v_actor FROM gcos._kernel_actor();
    IF NOT v_actor.is_superuser AND (v_actor.kind IS NULL OR v_actor.kind NOT IN ('human', 'agent')
            OR NOT (v_actor.roles && ARRAY['operator', 'admin']::text[])) THEN
        PERFORM gcos._refuse(pg_catalog.format('gcos: role %I may not rehearse: it needs a human or agent principal with the operator role',
                                               v_actor.role_name));
    END IF;
END
$$;

-- What would make the kernel's work mean something else or fail half-way: public (where step SQL runs) not
-- adopted, temporary objects that could shadow governed ones, replica mode (triggers off), a read-only
-- transaction.
CREATE FUNCTION gcos._kernel_preflight() RETURNS void
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF pg_catalog.pg_my_temp_schema() <> 0 AND (
           EXISTS (SELECT FROM pg_catalog.pg_class AS c WHERE c.relnamespace = pg_catalog.pg_my_temp_schema())
           OR EXISTS (SELECT FROM pg_catalog.pg_proc AS p WHERE p.pronamespace = pg_catalog.pg_my_temp_schema())
           OR EXISTS (SELECT FROM pg_catalog.pg_type AS t WHERE t.typnamespace = pg_catalog.pg_my_temp_schema())) THEN
        PERFORM gcos._invalid('gcos: this session has temporary objects, which could shadow governed ones; run DISCARD TEMP (or use a new connection) and retry');
    END IF;
    IF NOT EXISTS (SELECT FROM gcos.adopted_schemas AS a WHERE a.schema_name = 'public' AND a.released_at IS NULL) THEN
        RAISE EXCEPTION 'gcos: the kernel runs steps in schema public as gcos_kernel, and public is not adopted'
            USING ERRCODE = '55000', HINT = 'Run gcos adopt public (as a superuser or the database owner), then retry.';
    END IF;
    IF pg_catalog.current_setting('session_replication_role') <> 'origin' THEN
        PERFORM gcos._invalid('gcos: session_replication_role is not origin (triggers would not fire); reset it and retry');
    END IF;
    IF pg_catalog.current_setting('transaction_read_only')::boolean THEN
        PERFORM gcos._invalid('gcos: the kernel needs a read-write transaction; do not start it READ ONLY');
    END IF;
END
$$;

-- What a rollback does not undo: this backend's advisory locks and its session-level settings.
CREATE FUNCTION gcos._session_state() RETURNS jsonb
    LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.jsonb_build_object(
        'locks', (SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.format('advisory lock (%s, %s, %s, %s)',
                                      l.classid, l.objid, l.objsubid, l.mode) ORDER BY l.classid, l.objid, l.objsubid, l.mode), '[]')
                    FROM pg_catalog.pg_locks AS l
                   WHERE l.locktype = 'advisory' AND l.pid = pg_catalog.pg_backend_pid() AND l.granted),
        'settings', (SELECT COALESCE(pg_catalog.jsonb_object_agg(s.name, s.setting), '{}')
                       FROM pg_catalog.pg_settings AS s WHERE s.source = 'session'))
$$;

-- A fingerprint as a rehearsal record keeps it: hashes and watched tables, not the object map.
CREATE FUNCTION gcos._fp_summary(p_fp jsonb) RETURNS jsonb
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN p_fp IS NULL THEN '{}'::jsonb
                ELSE pg_catalog.jsonb_build_object('hash', p_fp -> 'hash', 'schema_hash', p_fp -> 'schema_hash',
                                                   'tables', p_fp -> 'tables') END
$$;

-- Differences between two fingerprints as short lines ("relation public.t added"), residue excluded.
CREATE FUNCTION gcos._fp_differences(p_before jsonb, p_after jsonb) RETURNS jsonb
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT COALESCE(pg_catalog.jsonb_agg(x.line ORDER BY x.line), '[]') FROM (
        SELECT (o ->> 'category') || ' ' || (o ->> 'identity') || ' ' || (o ->> 'change') AS line
          FROM pg_catalog.jsonb_array_elements(gcos.footprint(p_before, p_after, '{}', '{}') -> 'objects') AS o
        UNION ALL
        SELECT 'table_data ' || t.key || ' changed'
          FROM pg_catalog.jsonb_each(COALESCE(p_before -> 'tables', '{}')) AS t
         WHERE t.value IS DISTINCT FROM p_after -> 'tables' -> t.key
    ) AS x
$$;

-- A check result the ledger can hold: numbers that are not safe integers become text.
CREATE FUNCTION gcos._ledger_number(p_value jsonb) RETURNS jsonb
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN pg_catalog.jsonb_typeof(p_value) = 'number'
                 AND (p_value::numeric <> pg_catalog.trunc(p_value::numeric)
                      OR pg_catalog.abs(p_value::numeric) > 9007199254740991)
                THEN pg_catalog.to_jsonb(p_value::text) ELSE p_value END
$$;

CREATE FUNCTION gcos._kernel_checks(p_checks jsonb) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_out jsonb := '[]';
    v_check jsonb;
    v_result jsonb;
BEGIN
    FOR v_check IN SELECT e.value FROM pg_catalog.jsonb_array_elements(COALESCE(p_checks, '[]')) AS e LOOP
        v_result := gcos._kernel_check(v_check);
        v_out := v_out || pg_catalog.jsonb_build_array(v_result || pg_catalog.jsonb_build_object(
            'actual', gcos._ledger_number(v_result -> 'actual'), 'expected', gcos._ledger_number(v_result -> 'expected')));
    END LOOP;
    RETURN v_out;
END
$$;

-- ----------------------------------------------------------------------------------- what no step may leave

-- Objects gcos_kernel owns in this database, counted per catalog (pg_shdepend owner entries): a step that
-- creates one of a kind the fingerprint does not cover (collations, conversions, operators, text search
-- objects, large objects ...) shows here.
CREATE FUNCTION gcos._kernel_owned() RETURNS jsonb
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT COALESCE(pg_catalog.jsonb_object_agg(x.catalog, x.n), '{}') FROM (
        SELECT d.classid::regclass::text AS catalog, pg_catalog.count(*) AS n
          FROM pg_catalog.pg_shdepend AS d
         WHERE d.deptype = 'o' AND d.refclassid = 'pg_catalog.pg_authid'::regclass
           AND d.refobjid = 'gcos_kernel'::regrole
           AND d.dbid = (SELECT db.oid FROM pg_catalog.pg_database AS db WHERE db.datname = pg_catalog.current_database())
         GROUP BY d.classid) AS x
$$;

-- What the adoption of a schema promised and no step may undo, checked on the catalog after a step's SQL:
-- nobody but gcos_kernel may write an adopted relation or sequence (grants to others, grant options), no
-- SECURITY DEFINER routine of an adopted schema may be executable by anyone but gcos_kernel, nothing in an
-- adopted schema may reach into schema gcos (a policy, view, default or trigger that calls a gcos function
-- runs as whoever reads the table: an approver could sign without knowing), and no kernel-owned object of
-- a kind the fingerprint does not cover may appear. [{category, identity, change, need: []}] like
-- gcos.allow_violations: no allow item permits any of it.
CREATE FUNCTION gcos._kernel_invariants(p_owned_before jsonb) RETURNS jsonb
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    WITH adopted AS (
        SELECT a.schema_oid AS oid FROM gcos.adopted_schemas AS a WHERE a.released_at IS NULL
    ), kernel AS (
        SELECT 'gcos_kernel'::regrole::oid AS oid
    ), gcos_refs AS (  -- dependencies on a function, relation or type of schema gcos (few: none, normally)
        SELECT d.* FROM pg_catalog.pg_depend AS d
          JOIN pg_catalog.pg_proc AS p ON d.refclassid = 'pg_catalog.pg_proc'::regclass AND p.oid = d.refobjid
         WHERE p.pronamespace = 'gcos'::regnamespace AND d.deptype IN ('n', 'a')
        UNION ALL
        SELECT d.* FROM pg_catalog.pg_depend AS d
          JOIN pg_catalog.pg_class AS c ON d.refclassid = 'pg_catalog.pg_class'::regclass AND c.oid = d.refobjid
         WHERE c.relnamespace = 'gcos'::regnamespace AND d.deptype IN ('n', 'a')
        UNION ALL
        SELECT d.* FROM pg_catalog.pg_depend AS d
          JOIN pg_catalog.pg_type AS t ON d.refclassid = 'pg_catalog.pg_type'::regclass AND t.oid = d.refobjid
         WHERE t.typnamespace = 'gcos'::regnamespace AND d.deptype IN ('n', 'a')
    ), found AS (
        SELECT 'privilege' AS category, c.oid::regclass::text AS identity,
               pg_catalog.format('%s granted to %s', x.privilege_type,
                                 CASE x.grantee WHEN 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(x.grantee) END) AS change
          FROM pg_catalog.pg_class AS c, pg_catalog.aclexplode(c.relacl) AS x
         WHERE c.relnamespace IN (SELECT oid FROM adopted) AND x.grantee <> (SELECT oid FROM kernel)
           AND (x.privilege_type IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER', 'MAINTAIN', 'USAGE')
                OR x.is_grantable)
        UNION ALL
        SELECT 'privilege', c.oid::regclass::text || '.' || pg_catalog.quote_ident(a.attname),
               pg_catalog.format('%s granted to %s', x.privilege_type,
                                 CASE x.grantee WHEN 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(x.grantee) END)
          FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_attribute AS a ON a.attrelid = c.oid AND a.attacl IS NOT NULL,
               pg_catalog.aclexplode(a.attacl) AS x
         WHERE c.relnamespace IN (SELECT oid FROM adopted) AND x.grantee <> (SELECT oid FROM kernel)
           AND (x.privilege_type <> 'SELECT' OR x.is_grantable)
        UNION ALL
        SELECT 'privilege', p.oid::regprocedure::text, 'SECURITY DEFINER routine executable by '
               || CASE x.grantee WHEN 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(x.grantee) END
          FROM pg_catalog.pg_proc AS p,
               pg_catalog.aclexplode(COALESCE(p.proacl, pg_catalog.acldefault('f', p.proowner))) AS x
         WHERE p.pronamespace IN (SELECT oid FROM adopted) AND p.prosecdef AND x.privilege_type = 'EXECUTE'
           AND x.grantee <> (SELECT oid FROM kernel)
        UNION ALL
        SELECT 'reaches_gcos', pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid),
               'depends on ' || pg_catalog.pg_describe_object(d.refclassid, d.refobjid, d.refobjsubid)
          FROM gcos_refs AS d
         WHERE CASE d.classid
                   WHEN 'pg_catalog.pg_proc'::regclass THEN (SELECT p.pronamespace FROM pg_catalog.pg_proc AS p WHERE p.oid = d.objid)
                   WHEN 'pg_catalog.pg_class'::regclass THEN (SELECT c.relnamespace FROM pg_catalog.pg_class AS c WHERE c.oid = d.objid)
                   WHEN 'pg_catalog.pg_type'::regclass THEN (SELECT t.typnamespace FROM pg_catalog.pg_type AS t WHERE t.oid = d.objid)
                   WHEN 'pg_catalog.pg_attrdef'::regclass THEN (SELECT c.relnamespace FROM pg_catalog.pg_attrdef AS ad
                       JOIN pg_catalog.pg_class AS c ON c.oid = ad.adrelid WHERE ad.oid = d.objid)
                   WHEN 'pg_catalog.pg_rewrite'::regclass THEN (SELECT c.relnamespace FROM pg_catalog.pg_rewrite AS r
                       JOIN pg_catalog.pg_class AS c ON c.oid = r.ev_class WHERE r.oid = d.objid)
                   WHEN 'pg_catalog.pg_policy'::regclass THEN (SELECT c.relnamespace FROM pg_catalog.pg_policy AS pol
                       JOIN pg_catalog.pg_class AS c ON c.oid = pol.polrelid WHERE pol.oid = d.objid)
                   WHEN 'pg_catalog.pg_trigger'::regclass THEN (SELECT c.relnamespace FROM pg_catalog.pg_trigger AS tg
                       JOIN pg_catalog.pg_class AS c ON c.oid = tg.tgrelid WHERE tg.oid = d.objid)
                   WHEN 'pg_catalog.pg_constraint'::regclass THEN (SELECT co.connamespace FROM pg_catalog.pg_constraint AS co
                       WHERE co.oid = d.objid)
               END IN (SELECT oid FROM adopted)
        UNION ALL
        SELECT 'kernel_object', o.key, pg_catalog.format('%s more owned by gcos_kernel',
                                                         o.value::bigint - COALESCE((p_owned_before ->> o.key)::bigint, 0))
          FROM pg_catalog.jsonb_each(gcos._kernel_owned()) AS o
         WHERE o.key NOT IN ('pg_class', 'pg_proc', 'pg_type', 'pg_namespace', 'pg_statistic_ext')
           AND o.value::bigint > COALESCE((p_owned_before ->> o.key)::bigint, 0)
    )
    SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'category', f.category, 'identity', f.identity, 'change', f.change, 'need', '[]'::jsonb)
               ORDER BY f.category, f.identity, f.change), '[]')
      FROM found AS f
$$;

-- Sequences whose next value went BACK between two fingerprints: only setval or RESTART does that (nextval
-- only moves forward), and a governed sequence set back makes later inserts collide.
CREATE FUNCTION gcos._sequences_back(p_before jsonb, p_after jsonb) RETURNS jsonb
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'category', 'sequence_state', 'identity', b.key,
               'change', pg_catalog.format('set back from %s to %s', b.value #>> '{}', p_after -> 'sequences' ->> b.key),
               'need', '[]'::jsonb) ORDER BY b.key), '[]')
      FROM pg_catalog.jsonb_each(COALESCE(p_before -> 'sequences', '{}')) AS b
     WHERE (p_after -> 'sequences' ->> b.key)::numeric < (b.value #>> '{}')::numeric
$$;

-- Rows the rollback evidence wrote in tables the mutation's allow list does not name at all: the rollback
-- undoes the step, it does not reach elsewhere (unwatched tables are not in the fingerprint it must restore).
CREATE FUNCTION gcos._rollback_violations(p_allow jsonb, p_probe_before jsonb, p_probe_after jsonb) RETURNS jsonb
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    WITH named AS (
        SELECT gcos._names(pg_catalog.jsonb_agg(n.value)) AS names
          FROM pg_catalog.jsonb_array_elements(COALESCE(p_allow, '[]')) AS item,
               pg_catalog.jsonb_each(item.value) AS k,
               pg_catalog.jsonb_array_elements(CASE pg_catalog.jsonb_typeof(k.value) WHEN 'array' THEN k.value
                                                    ELSE pg_catalog.jsonb_build_array(k.value) END) AS n
    )
    SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'category', 'rollback_rows', 'identity', r.key, 'change', 'written by the rollback evidence',
               'need', '[]'::jsonb) ORDER BY r.key), '[]')
      FROM pg_catalog.jsonb_each(COALESCE(gcos.footprint('{}', '{}', p_probe_before, p_probe_after) -> 'rows', '{}')) AS r
     CROSS JOIN LATERAL (SELECT gcos._ident_parts(r.key) AS p) AS x
     WHERE NOT gcos._named(COALESCE((SELECT names FROM named), '{}'), x.p[1], x.p[2])
$$;

-- ----------------------------------------------------------------------------------- the rehearsal

-- The mutation, batches, inside checks and rollback evidence, in a subtransaction that is always undone.
-- Returns what was seen; "error" and "failed" are set when a statement raised.
CREATE FUNCTION gcos._rehearse_inside(p_spec jsonb, p_plan jsonb, p_entry jsonb, p_run_id text) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_watch text[] := ARRAY(SELECT pg_catalog.jsonb_array_elements_text(COALESCE(p_spec -> 'watch', '[]')));
    v jsonb := '{}';
    v_phase text := 'mutation';
    v_probe jsonb := gcos.footprint_probe();
    v_state jsonb := gcos._session_state();
    v_owned jsonb := gcos._kernel_owned();
    v_inside jsonb;
    v_fp jsonb;
    v_stop jsonb;
    v_stops jsonb := '[]';
    v_bounds record;
    v_after bigint;
    i integer;
BEGIN
    BEGIN
        IF p_spec ? 'mutation' THEN
            PERFORM gcos._kernel_exec(p_spec -> 'mutation' ->> 'sql');
        END IF;
        v_phase := 'batch';
        FOR i IN 1 .. CASE WHEN p_spec ? 'batch' THEN 2 ELSE 0 END LOOP
            SELECT * INTO v_bounds FROM gcos._kernel_bounds(p_spec -> 'batch' ->> 'table', p_spec -> 'batch' ->> 'key',
                                                             v_after, (p_spec -> 'batch' ->> 'size')::integer);
            EXIT WHEN v_bounds.lo IS NULL;
            PERFORM gcos._kernel_batch(p_spec -> 'batch' ->> 'sql', COALESCE(v_after, v_bounds.lo - 1), v_bounds.hi, p_run_id);
            v_after := v_bounds.hi;
        END LOOP;
        v_phase := 'check';
        v := v || pg_catalog.jsonb_build_object('settings_inside', gcos._session_state() -> 'settings');
        v_inside := gcos._kernel_fingerprint(v_watch);
        v_fp := gcos.footprint(p_entry, v_inside, v_probe, gcos.footprint_probe());
        FOR v_stop IN SELECT e.value FROM pg_catalog.jsonb_array_elements(
                          COALESCE(p_spec -> 'stop', '[]') || COALESCE(p_plan -> 'global_stop', '[]')) AS e LOOP
            v_stops := v_stops || pg_catalog.jsonb_build_array(
                gcos._kernel_stop(v_stop, pg_catalog.jsonb_array_length(v_fp -> 'new_tables')));
        END LOOP;
        v := v || pg_catalog.jsonb_build_object(
            'inside', v_inside, 'footprint', v_fp, 'stops', v_stops,
            'violations', gcos.allow_violations(p_spec -> 'mutation' -> 'allow', v_fp) || gcos._kernel_invariants(v_owned)
                          || gcos._sequences_back(p_entry, v_inside),
            'success', gcos._kernel_checks(p_spec -> 'success'));
        v_phase := 'rollback';
        v_probe := gcos.footprint_probe();
        PERFORM gcos._kernel_exec(p_spec -> 'rollback' ->> 'sql');
        v := pg_catalog.jsonb_set(v, '{violations}', (v -> 'violations')
             || gcos._rollback_violations(p_spec -> 'mutation' -> 'allow', v_probe, gcos.footprint_probe()));
        v := v || pg_catalog.jsonb_build_object('after_rollback', gcos._kernel_fingerprint(v_watch));
        RAISE EXCEPTION 'gcos: rehearsal undone' USING ERRCODE = 'GC100';
    EXCEPTION
        WHEN SQLSTATE 'GC100' THEN
            NULL;
        WHEN lock_not_available THEN
            v := v || pg_catalog.jsonb_build_object('failed', 'lock_timeout', 'error', SQLERRM, 'sqlstate', SQLSTATE);
        WHEN query_canceled THEN
            v := v || pg_catalog.jsonb_build_object('failed', 'timeout', 'error', SQLERRM, 'sqlstate', SQLSTATE);
        WHEN OTHERS THEN
            v := v || pg_catalog.jsonb_build_object('failed', v_phase || '_failed', 'error', SQLERRM, 'sqlstate', SQLSTATE);
    END;
    RETURN v || pg_catalog.jsonb_build_object('state_before', v_state);
END
$$;

-- The outcome and its sentence, from what was seen (first match wins, as the client's rehearsal decides).
CREATE FUNCTION gcos._rehearsal_outcome(p_step text, v jsonb, OUT outcome text, OUT message text)
    LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_held jsonb := (SELECT e.value FROM pg_catalog.jsonb_array_elements(COALESCE(v -> 'stops', '[]')) AS e
                      WHERE (e.value ->> 'held')::boolean LIMIT 1);
    v_failed jsonb := (SELECT e.value FROM pg_catalog.jsonb_array_elements(COALESCE(v -> 'success', '[]')) AS e
                        WHERE NOT (e.value ->> 'ok')::boolean LIMIT 1);
    v_violation jsonb := v -> 'violations' -> 0;
BEGIN
    IF v ? 'failed' THEN
        outcome := v ->> 'failed';
        message := pg_catalog.format('%s of %s failed: %s', pg_catalog.replace(outcome, '_failed', ''), p_step, v ->> 'error')
                   || CASE WHEN v ->> 'sqlstate' = '42501' THEN '; the kernel runs steps as gcos_kernel: adopt the schemas the step changes (gcos adopt SCHEMA)' ELSE '' END;
    ELSIF v_violation IS NOT NULL THEN
        outcome := 'stopped';
        message := pg_catalog.format('%s changed what its allow list does not name: %s %s %s (allowed by %s); the step was rolled back',
                                     p_step, v_violation ->> 'category', v_violation ->> 'identity', v_violation ->> 'change',
                                     COALESCE(NULLIF(pg_catalog.array_to_string(ARRAY(SELECT pg_catalog.jsonb_array_elements_text(v_violation -> 'need')), ' or '), ''), 'no allow kind'));
    ELSIF v_held IS NOT NULL THEN
        outcome := 'stopped';
        message := pg_catalog.format('stop condition %L of %s held (%s); the step was rolled back', v_held ->> 'name', p_step, v_held ->> 'detail');
    ELSIF v_failed IS NOT NULL THEN
        outcome := 'success_failed';
        message := pg_catalog.format('success check %L of %s expected %s, got %s; the step was rolled back',
                                     v_failed ->> 'name', p_step, v_failed -> 'expected', COALESCE(v_failed ->> 'error', (v_failed -> 'actual')::text));
    ELSIF (v -> 'after_rollback' ->> 'hash') IS DISTINCT FROM (v -> 'entry' ->> 'hash') THEN
        outcome := 'rollback_unproven';
        message := pg_catalog.format('the rollback evidence of %s does not return the world to its entry fingerprint: %s; fix its rollback SQL',
                                     p_step, gcos._fp_differences(v -> 'entry', v -> 'after_rollback'));
    ELSE
        outcome := 'passed';
        message := pg_catalog.format('rehearsal of %s passed in the kernel: entry == exit', p_step);
    END IF;
END
$$;

-- What the rollback did not undo. Sequences that moved are reported residue only; a changed fingerprint, a
-- session advisory lock (released here) or a session setting changed by the step fail the rehearsal.
CREATE FUNCTION gcos._rehearsal_residue(p_step text, v jsonb, p_exit jsonb, INOUT outcome text, INOUT message text,
                                        OUT sequences jsonb, OUT session jsonb)
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_now jsonb := gcos._session_state();
    r record;
BEGIN
    sequences := (SELECT COALESCE(pg_catalog.jsonb_agg(e.key ORDER BY e.key), '[]')
                    FROM pg_catalog.jsonb_each(COALESCE(v -> 'entry' -> 'sequences', '{}')) AS e
                   WHERE e.value IS DISTINCT FROM p_exit -> 'sequences' -> e.key);
    session := (SELECT COALESCE(pg_catalog.jsonb_agg(x ORDER BY x), '[]') FROM (
        SELECT l AS x FROM pg_catalog.jsonb_array_elements_text(v_now -> 'locks') AS l
         WHERE NOT (v -> 'state_before' -> 'locks') ? l
        UNION ALL
        SELECT 'setting ' || e.key FROM pg_catalog.jsonb_each(COALESCE(v -> 'settings_inside', '{}')) AS e
         WHERE e.value IS DISTINCT FROM v -> 'state_before' -> 'settings' -> e.key
        UNION ALL
        SELECT 'setting ' || e.key FROM pg_catalog.jsonb_each(COALESCE(v -> 'state_before' -> 'settings', '{}')) AS e
         WHERE v ? 'settings_inside' AND NOT (v -> 'settings_inside') ? e.key) AS d);
    IF pg_catalog.jsonb_array_length(session) > 0 THEN
        PERFORM pg_catalog.pg_advisory_unlock_all();  -- the kernel takes none; the step's must not outlive it
    END IF;
    -- A sequence set back (setval is not transactional) is put back where it was, and fails the rehearsal.
    FOR r IN SELECT e.value ->> 'identity' AS identity FROM pg_catalog.jsonb_array_elements(gcos._sequences_back(v -> 'entry', p_exit)) AS e LOOP
        PERFORM gcos._kernel_exec(pg_catalog.format('SELECT pg_catalog.setval(%L::regclass, %s, false)', r.identity,
                                                    v -> 'entry' -> 'sequences' ->> r.identity));
        session := session || pg_catalog.jsonb_build_array('sequence ' || r.identity || ' set back (restored)');
    END LOOP;
    IF (p_exit ->> 'hash') IS DISTINCT FROM (v -> 'entry' ->> 'hash') AND outcome NOT IN ('lock_timeout', 'timeout') THEN
        message := pg_catalog.format('entry != exit after rehearsing %s: %s; the database was changed outside the rolled-back transaction',
                                     p_step, gcos._fp_differences(v -> 'entry', p_exit)) || ' (after: ' || message || ')';
        outcome := 'residue';
    ELSIF pg_catalog.jsonb_array_length(session) > 0 THEN
        message := pg_catalog.format('%s left %s in the session, which a rollback does not undo; the step must not (released or reset now)',
                                     p_step, pg_catalog.array_to_string(ARRAY(SELECT pg_catalog.jsonb_array_elements_text(session)), ', '))
                   || ' (after: ' || message || ')';
        outcome := 'residue';
    END IF;
END
$$;

CREATE FUNCTION gcos.rehearse(p_spec_hash text, p_plan_hash text, p_trace_id text DEFAULT NULL) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_started timestamptz := pg_catalog.clock_timestamp();
    v_spec jsonb := (SELECT s.document FROM gcos.specs AS s WHERE s.spec_hash = p_spec_hash);
    v_plan jsonb := (SELECT p.document FROM gcos.plans AS p WHERE p.plan_hash = p_plan_hash);
    v_step text;
    v_watch text[];
    v_run text := pg_catalog.replace(pg_catalog.gen_random_uuid()::text, '-', '');
    v jsonb := '{}';
    v_exit jsonb;
    r record;
    v_outcome text;
    v_message text;
    v_residue record;
    v_sequences jsonb := '[]';
    v_first jsonb;
    v_session jsonb := '[]';
    v_write record;
    v_payload jsonb;
BEGIN
    PERFORM gcos._kernel_caller();
    IF v_spec IS NULL OR v_plan IS NULL THEN
        PERFORM gcos._invalid('gcos: the kernel rehearses registered specs and plans only; register them first (gcos rehearse does)');
    END IF;
    v_step := v_spec ->> 'id';
    IF NOT v_plan -> 'steps' ? v_step THEN
        PERFORM gcos._invalid(pg_catalog.format('gcos: step %s is not in plan %s', v_step, v_plan ->> 'id'));
    END IF;
    PERFORM gcos._kernel_preflight();
    v_watch := ARRAY(SELECT pg_catalog.jsonb_array_elements_text(COALESCE(v_spec -> 'watch', '[]')));
    v := pg_catalog.jsonb_build_object('reverify', gcos._kernel_checks(v_spec -> 'reverify'));
    v_first := (SELECT e.value FROM pg_catalog.jsonb_array_elements(v -> 'reverify') AS e
                 WHERE NOT (e.value ->> 'ok')::boolean LIMIT 1);
    IF v_first IS NOT NULL THEN
        v_outcome := 'reverify_mismatch';
        v_message := pg_catalog.format('re-verify of %s failed: %L expected %s, got %s; the live world is not what the spec expects',
                                       v_step, v_first ->> 'name', v_first -> 'expected',
                                       COALESCE('error: ' || (v_first ->> 'error'), (v_first -> 'actual')::text));
    ELSE
        v := v || pg_catalog.jsonb_build_object('entry', gcos._kernel_fingerprint(v_watch));
        v := v || gcos._rehearse_inside(v_spec, v_plan, v -> 'entry', v_run);
        SELECT * INTO r FROM gcos._rehearsal_outcome(v_step, v);
        v_exit := gcos._kernel_fingerprint(v_watch);
        SELECT * INTO v_residue FROM gcos._rehearsal_residue(v_step, v, v_exit, r.outcome, r.message);
        v_outcome := v_residue.outcome;
        v_message := v_residue.message;
        v_sequences := v_residue.sequences;
        v_session := v_residue.session;
    END IF;
    v_payload := pg_catalog.jsonb_build_object(
        'format_version', 1, 'kernel', true, 'run_id', v_run, 'step', v_step, 'ref', 'step-' || (v_spec ->> 'order'),
        'plan_id', v_plan ->> 'id', 'plan_hash', p_plan_hash, 'outcome', v_outcome, 'message', v_message,
        'fingerprints', pg_catalog.jsonb_build_object(
            'entry', gcos._fp_summary(v -> 'entry'), 'inside', gcos._fp_summary(v -> 'inside'),
            'after_rollback', gcos._fp_summary(v -> 'after_rollback'), 'exit', gcos._fp_summary(v_exit)),
        'footprint', CASE WHEN v ? 'footprint' THEN pg_catalog.jsonb_build_object(
            'new_tables', v -> 'footprint' -> 'new_tables', 'dropped_tables', v -> 'footprint' -> 'dropped_tables',
            'row_deltas', v -> 'footprint' -> 'rows') END,
        'allow_violations', COALESCE(v -> 'violations', '[]'),
        'checks', pg_catalog.jsonb_build_object('reverify', v -> 'reverify', 'stop', COALESCE(v -> 'stops', '[]'),
                                                'success', COALESCE(v -> 'success', '[]')),
        'differences', CASE WHEN v_exit IS NULL THEN '[]'::jsonb ELSE gcos._fp_differences(v -> 'entry', v_exit) END,
        'residue', pg_catalog.jsonb_build_object('sequences', v_sequences, 'session', v_session),
        'duration_us', (EXTRACT(epoch FROM pg_catalog.clock_timestamp() - v_started) * 1000000)::bigint);
    SELECT * INTO v_write FROM gcos._ledger_write('rehearsal', v_step, p_spec_hash, p_trace_id, NULL, v_payload);
    RETURN v_payload || pg_catalog.jsonb_build_object('ledger_seq', v_write.seq, 'ledger_hash', v_write.hash);
END
$$;

-- ----------------------------------------------------------------------------------- ownership and grants

RESET ROLE;
-- The executors act as gcos_kernel (a superuser may give a function to a role without CREATE on the schema).
ALTER FUNCTION gcos._kernel_exec(text) OWNER TO gcos_kernel;
ALTER FUNCTION gcos._kernel_batch(text, bigint, bigint, text) OWNER TO gcos_kernel;
ALTER FUNCTION gcos._kernel_bounds(text, text, bigint, integer) OWNER TO gcos_kernel;
ALTER FUNCTION gcos._kernel_check(jsonb) OWNER TO gcos_kernel;
ALTER FUNCTION gcos._kernel_stop(jsonb, integer) OWNER TO gcos_kernel;
ALTER FUNCTION gcos._kernel_fingerprint(text[]) OWNER TO gcos_kernel;
REVOKE ALL ON FUNCTION gcos._kernel_exec(text), gcos._kernel_batch(text, bigint, bigint, text),
    gcos._kernel_bounds(text, text, bigint, integer), gcos._kernel_check(jsonb), gcos._kernel_stop(jsonb, integer),
    gcos._kernel_fingerprint(text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gcos._kernel_exec(text), gcos._kernel_batch(text, bigint, bigint, text),
    gcos._kernel_bounds(text, text, bigint, integer), gcos._kernel_check(jsonb), gcos._kernel_stop(jsonb, integer),
    gcos._kernel_fingerprint(text[]) TO gcos_owner;
SET LOCAL ROLE gcos_owner;
-- What the kernel role may call from a step's SQL or its checks: read-only and pure functions only.
GRANT EXECUTE ON FUNCTION gcos.check_value(text), gcos.evaluate_check(jsonb), gcos.expect_holds(jsonb, jsonb),
    gcos._same(jsonb, jsonb), gcos.stop_holds(jsonb, integer), gcos._user_schema(name), gcos._names(jsonb),
    gcos._invalid(text), gcos.fingerprint_at(text[], text[], text) TO gcos_kernel;
GRANT EXECUTE ON FUNCTION gcos._fp_json_sql, gcos._fp_order_sql, gcos._fp_query, gcos._fp_resolve, gcos._fp_schema,
    gcos._fp_schema_head, gcos._fp_schema_text, gcos._fp_sequences, gcos._fp_tables TO gcos_kernel;

REVOKE ALL ON FUNCTION gcos._kernel_owned(), gcos._kernel_invariants(jsonb), gcos._rollback_violations(jsonb, jsonb, jsonb),
    gcos._sequences_back(jsonb, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION gcos._kernel_actor(), gcos._kernel_caller(), gcos._kernel_preflight(), gcos._session_state(), gcos._fp_summary(jsonb),
    gcos._fp_differences(jsonb, jsonb), gcos._ledger_number(jsonb), gcos._kernel_checks(jsonb),
    gcos._rehearse_inside(jsonb, jsonb, jsonb, text), gcos._rehearsal_outcome(text, jsonb),
    gcos._rehearsal_residue(text, jsonb, jsonb, text, text), gcos.rehearse(text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gcos.rehearse(text, text, text) TO gcos_operator, gcos_admin;
