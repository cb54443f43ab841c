-- gcos schema version 25: expiring exceptions (issue 10, item 6; seed 000 P4).
--
-- "`gcos except STEP CHECK --expires-in D --reason T` records a waiver of one named stop, success or re-verify check
-- of one step, approved by a sovereign (not the committer), with `expires_at <= now` expired and no expiry invalid.
-- Rehearsal and commit both honour an unexpired exception and report the check as waived; the commit's
-- PolicyDecisionRecord lists the exceptions it applied."
--
--   gcos.exceptions, gcos.exception_revocations      append-only, written only by the two apertures below
--   gcos.record_exception(step_id, spec_hash, check_kind, check_name, expires_at, reason, trace_id, span_id)
--       -> (exception_id, ledger_seq, ledger_hash)                                       gcos_sovereign
--     The session role must be a registered human principal holding the SOVEREIGN role (council: 42501), called
--     as the statement its client sent (as 008's approvals). Bound to the step, its registered spec hash, the check
--     kind (stop | success | reverify) and a check name that spec has (else 22023), and the database incarnation.
--     An expiry is required and must be in the future (22023). Ledger kind 'exception' (durable: 022's trigger).
--   gcos.revoke_exception(exception_id, reason, trace_id, span_id) -> (revocation_id, ledger_seq, ledger_hash)
--     A sovereign withdraws one. Ledger kind 'exception_revocation'.
--   gcos._exceptions_in_force(spec_hash, actor_oid, actor_name) -> jsonb                 the gcos roles
--     The unrevoked, unexpired exceptions of that spec hash in this database incarnation, each with "applies" and,
--     when it does not, "not_applied" (the recorder is no longer a human sovereign, or is the actor's person: no
--     self-exception at commit). Actor NULL (a rehearsal): every one in force applies.
--   gcos._waive(results, kind, exceptions, own) -> jsonb                                   the gcos roles
--     Marks each failing result (a stop that held, a check not ok) among the first `own` (the spec's own checks;
--     the plan's global stops follow them and are never waived) that an applying exception names with
--     "waived": {exception_id, by, expires_at, reason}; earlier marks are dropped first (a caller cannot bring one).
-- Honoured at the verdict: _rehearse_measured, _commit_apply, _kernel_world, _batch_judged and evaluate_gates mark
-- waived checks; _rehearsal_outcome, _commit_verdict and _gate_reverify skip them. evaluate_gates adds
-- "exceptions" (the ones the decision honours) and "exceptions_not_applied" to the PolicyDecisionRecord; a
-- rehearsal record and a commit's output carry the waived marks, a rehearsal record "exceptions" (those used).
SET LOCAL ROLE gcos_owner;

-- ----------------------------------------------------------------------------------- tables

CREATE SEQUENCE gcos.exceptions_id_seq AS bigint;
CREATE TABLE gcos.exceptions (
    id bigint PRIMARY KEY DEFAULT pg_catalog.nextval('gcos.exceptions_id_seq'),
    step_id text NOT NULL CHECK (step_id ~ '^[A-Za-z][A-Za-z0-9]*(-[A-Za-z0-9]+)*$'),
    spec_hash text NOT NULL CHECK (spec_hash ~ '^[0-9a-f]{64}$'),
    check_kind text NOT NULL CHECK (check_kind IN ('stop', 'success', 'reverify')),
    check_name text NOT NULL,
    reason text NOT NULL CHECK (reason ~ E'\\S'),
    recorder_oid oid NOT NULL,
    recorder text NOT NULL,
    recorder_role name NOT NULL,
    recorder_roles text[] NOT NULL,
    system_identifier text NOT NULL,
    database_name name NOT NULL,
    database_oid oid NOT NULL,
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL,
    ledger_seq bigint NOT NULL UNIQUE REFERENCES gcos.ledger (seq),
    CHECK (expires_at > created_at)
);
ALTER SEQUENCE gcos.exceptions_id_seq OWNED BY gcos.exceptions.id;
CREATE INDEX exceptions_spec_idx ON gcos.exceptions (spec_hash);

CREATE SEQUENCE gcos.exception_revocations_id_seq AS bigint;
CREATE TABLE gcos.exception_revocations (
    id bigint PRIMARY KEY DEFAULT pg_catalog.nextval('gcos.exception_revocations_id_seq'),
    exception_id bigint NOT NULL UNIQUE REFERENCES gcos.exceptions (id),
    revoked_by_oid oid NOT NULL,
    revoked_by text NOT NULL,
    revoked_by_role name NOT NULL,
    reason text,
    revoked_at timestamptz NOT NULL,
    ledger_seq bigint NOT NULL UNIQUE REFERENCES gcos.ledger (seq)
);
ALTER SEQUENCE gcos.exception_revocations_id_seq OWNED BY gcos.exception_revocations.id;

SELECT gcos._protect('gcos.exceptions', true, false);
SELECT gcos._protect('gcos.exception_revocations', true, false);

-- ----------------------------------------------------------------------------------- authority

-- As 008's gcos._require_authority, for exceptions: only a sovereign may waive a check (seed 000 P4).
CREATE FUNCTION gcos._exception_authority(p_action text, OUT role_oid oid, OUT role_name text,
                                          OUT principal text, OUT roles text[])
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a record;
    w record;
    v_conflicts text[];
BEGIN
    SELECT * INTO a FROM gcos._session_actor();
    SELECT * INTO w FROM gcos._session_identity();
    IF w.login_role_oid IS DISTINCT FROM a.role_oid THEN
        PERFORM gcos._refuse(pg_catalog.format(
            'gcos: this connection logged in as %s and acts as %I through SET SESSION AUTHORIZATION, so it cannot %s; %I must connect as themself',
            COALESCE(pg_catalog.quote_ident(w.login_role), 'an unknown role'), a.role_name, p_action, a.role_name));
    ELSIF pg_catalog.pg_trigger_depth() > 0
          OR COALESCE(pg_catalog.current_query(), '') !~* '\m(record_exception|revoke_exception)\M' THEN
        PERFORM gcos._refuse(pg_catalog.format(
            'gcos: %I may %s only by calling the gcos function itself, not from a trigger, policy, view or other function',
            a.role_name, p_action));
    ELSIF a.is_superuser THEN
        PERFORM gcos._refuse(pg_catalog.format(
            'gcos: session role %I is a superuser and cannot %s; connect as your own named role', a.role_name, p_action));
    ELSIF a.principal IS NULL THEN
        PERFORM gcos._refuse(pg_catalog.format(
            'gcos: session role %I is not a registered principal and cannot %s; ask a gcos admin to run gcos principals add %s',
            a.role_name, p_action, a.role_name));
    ELSIF a.kind <> 'human' THEN
        PERFORM gcos._refuse(pg_catalog.format(
            'gcos: principal %s is of kind %s and cannot %s; only human sovereigns can', a.principal, a.kind, p_action));
    ELSIF NOT ('sovereign' = ANY (a.roles)) THEN
        PERFORM gcos._refuse(pg_catalog.format(
            'gcos: principal %s does not hold the sovereign role and cannot %s; only a sovereign waives a check', a.principal, p_action));
    END IF;
    v_conflicts := gcos.principal_conflicts(a.role_oid);
    IF pg_catalog.cardinality(v_conflicts) > 0 THEN
        PERFORM gcos._refuse(pg_catalog.format(
            'gcos: principal %s is %s and cannot %s: separation of duties keeps whoever can change gcos from waiving checks',
            a.principal, gcos._conflicts_text(v_conflicts), p_action));
    END IF;
    role_oid := a.role_oid;
    role_name := a.role_name;
    principal := a.principal;
    roles := a.roles;
END
$$;

-- The names a spec gives its checks of one kind (stop, success, reverify), in order. A stop without a name of
-- its own (max_new_tables, a forbid list) cannot be waived: only a check the spec names can be.
CREATE FUNCTION gcos._check_names(p_spec jsonb, p_kind text) RETURNS text[]
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT COALESCE(pg_catalog.array_agg(e ->> 'name' ORDER BY o), '{}')
      FROM pg_catalog.jsonb_array_elements(COALESCE(p_spec -> p_kind, '[]')) WITH ORDINALITY AS x(e, o)
     WHERE e ->> 'name' IS NOT NULL
$$;

-- ----------------------------------------------------------------------------------- the apertures

CREATE FUNCTION gcos.record_exception(p_step_id text, p_spec_hash text, p_check_kind text, p_check_name text,
                                      p_expires_at timestamptz, p_reason text, p_trace_id text DEFAULT NULL,
                                      p_span_id text DEFAULT NULL)
    RETURNS TABLE (exception_id bigint, ledger_seq bigint, ledger_hash text)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a record;
    v_spec jsonb := (SELECT s.document FROM gcos.specs AS s WHERE s.spec_hash = p_spec_hash);
    v_now timestamptz := pg_catalog.clock_timestamp();
    v_names text[];
    v_id bigint;
    v_db record;
    v_write record;
BEGIN
    SELECT * INTO a FROM gcos._exception_authority('record an exception');
    IF v_spec IS NULL OR v_spec ->> 'id' IS DISTINCT FROM p_step_id THEN
        PERFORM gcos._invalid(pg_catalog.format('gcos: spec hash %s is not a registered spec of step %s; rehearse it first (gcos rehearse registers it)',
                                                COALESCE(p_spec_hash, 'NULL'), COALESCE(p_step_id, 'NULL')));
    ELSIF p_check_kind IS NULL OR p_check_kind NOT IN ('stop', 'success', 'reverify') THEN
        PERFORM gcos._invalid(pg_catalog.format('gcos: check kind %L is not one of stop, success, reverify', p_check_kind));
    END IF;
    v_names := gcos._check_names(v_spec, p_check_kind);
    IF p_check_name IS NULL OR NOT p_check_name = ANY (v_names) THEN
        PERFORM gcos._invalid(pg_catalog.format('gcos: %s has no %s check named %L; its %s checks are: %s', p_step_id,
                              p_check_kind, p_check_name, p_check_kind,
                              COALESCE(NULLIF(pg_catalog.array_to_string(ARRAY(SELECT pg_catalog.quote_literal(n) FROM pg_catalog.unnest(v_names) AS n), ', '), ''), 'none')));
    ELSIF p_reason IS NULL OR p_reason !~ E'\\S' THEN
        PERFORM gcos._invalid('gcos: an exception needs a reason (it is kept with the waiver and shown wherever it applies)');
    END IF;
    PERFORM gcos._check_expiry(p_expires_at, v_now);
    SELECT * INTO v_db FROM gcos.database_incarnation();
    v_id := pg_catalog.nextval('gcos.exceptions_id_seq');
    SELECT * INTO v_write FROM gcos._ledger_write('exception', p_step_id, p_spec_hash, p_trace_id, p_span_id,
        pg_catalog.jsonb_build_object(
            'exception_id', v_id, 'check_kind', p_check_kind, 'check', p_check_name, 'reason', p_reason,
            'expires_at', gcos._utc(p_expires_at), 'recorder_roles', pg_catalog.to_jsonb(a.roles),
            'target', pg_catalog.jsonb_build_object('system_identifier', v_db.system_identifier,
                                                    'database', v_db.database_name,
                                                    'database_oid', v_db.database_oid::bigint)));
    INSERT INTO gcos.exceptions (id, step_id, spec_hash, check_kind, check_name, reason, recorder_oid, recorder,
                                 recorder_role, recorder_roles, system_identifier, database_name, database_oid,
                                 expires_at, created_at, ledger_seq)
    VALUES (v_id, p_step_id, p_spec_hash, p_check_kind, p_check_name, p_reason, a.role_oid, a.principal, a.role_name,
            a.roles, v_db.system_identifier, v_db.database_name, v_db.database_oid, p_expires_at, v_now, v_write.seq);
    RETURN QUERY SELECT v_id, v_write.seq, v_write.hash;
END
$$;

CREATE FUNCTION gcos.revoke_exception(p_exception_id bigint, p_reason text, p_trace_id text DEFAULT NULL,
                                      p_span_id text DEFAULT NULL)
    RETURNS TABLE (revocation_id bigint, ledger_seq bigint, ledger_hash text)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a record;
    v_exc record;
    v_id bigint;
    v_write record;
BEGIN
    SELECT * INTO a FROM gcos._exception_authority('revoke an exception');
    SELECT x.id, x.step_id, x.spec_hash, x.check_kind, x.check_name INTO v_exc
      FROM gcos.exceptions AS x WHERE x.id = p_exception_id FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM gcos._invalid(pg_catalog.format('gcos: exception %s does not exist', p_exception_id));
    ELSIF EXISTS (SELECT FROM gcos.exception_revocations AS r WHERE r.exception_id = p_exception_id) THEN
        PERFORM gcos._invalid(pg_catalog.format('gcos: exception %s is already revoked', p_exception_id));
    END IF;
    v_id := pg_catalog.nextval('gcos.exception_revocations_id_seq');
    SELECT * INTO v_write FROM gcos._ledger_write('exception_revocation', v_exc.step_id, v_exc.spec_hash, p_trace_id, p_span_id,
        pg_catalog.jsonb_build_object('revocation_id', v_id, 'exception_id', p_exception_id, 'check_kind', v_exc.check_kind,
                                      'check', v_exc.check_name, 'reason', p_reason));
    INSERT INTO gcos.exception_revocations (id, exception_id, revoked_by_oid, revoked_by, revoked_by_role, reason,
                                            revoked_at, ledger_seq)
    VALUES (v_id, p_exception_id, a.role_oid, a.principal, a.role_name, p_reason, pg_catalog.clock_timestamp(), v_write.seq);
    RETURN QUERY SELECT v_id, v_write.seq, v_write.hash;
END
$$;

-- ----------------------------------------------------------------------------------- which apply

CREATE FUNCTION gcos._exceptions_in_force(p_spec_hash text, p_actor_oid bigint, p_actor_name text) RETURNS jsonb
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    WITH db AS (SELECT * FROM gcos.database_incarnation()),
    x AS (
        SELECT e.*, p.kind AS now_kind, p.roles AS now_roles, p.person AS recorder_person,
               CASE
                   WHEN p.kind IS DISTINCT FROM 'human' OR NOT ('sovereign' = ANY (COALESCE(p.roles, '{}'))) THEN
                       pg_catalog.format('recorded by %s, who is no longer a human sovereign principal', e.recorder)
                   WHEN p_actor_oid IS NOT NULL
                        AND gcos._one_person(e.recorder_oid::bigint, p.person, e.recorder, p_actor_oid,
                                             gcos._person_of(p_actor_oid, p_actor_name), p_actor_name) THEN
                       pg_catalog.format('recorded by %s, the committer (a sovereign does not waive checks of a step they commit)', e.recorder)
               END AS not_applied
          FROM gcos.exceptions AS e
          CROSS JOIN db
          LEFT JOIN gcos.principals AS p ON p.role_oid = e.recorder_oid
         WHERE e.spec_hash = p_spec_hash AND e.expires_at > pg_catalog.clock_timestamp()
           AND e.system_identifier = db.system_identifier AND e.database_oid = db.database_oid
           AND NOT EXISTS (SELECT FROM gcos.exception_revocations AS r WHERE r.exception_id = e.id))
    SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
               'exception_id', x.id, 'step_id', x.step_id, 'check_kind', x.check_kind, 'check', x.check_name,
               'by', x.recorder, 'expires_at', gcos._utc(x.expires_at), 'reason', x.reason, 'ledger_seq', x.ledger_seq,
               'applies', x.not_applied IS NULL, 'not_applied', x.not_applied)) ORDER BY x.id), '[]')
      FROM x
$$;

-- Failing results among the first p_own that an applying exception of p_kind names, marked "waived".
CREATE FUNCTION gcos._waive(p_results jsonb, p_kind text, p_exceptions jsonb, p_own integer) RETURNS jsonb
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT COALESCE(pg_catalog.jsonb_agg(CASE
               WHEN o <= p_own AND x.w IS NOT NULL
                    AND CASE WHEN p_kind = 'stop' THEN (r ->> 'held')::boolean IS TRUE
                             ELSE (r -> 'ok') IS DISTINCT FROM 'true'::jsonb END
               THEN (r - 'waived') || pg_catalog.jsonb_build_object('waived', x.w)
               ELSE r - 'waived' END ORDER BY o), '[]')
      FROM pg_catalog.jsonb_array_elements(COALESCE(p_results, '[]')) WITH ORDINALITY AS t(r, o)
      LEFT JOIN LATERAL (
          SELECT pg_catalog.jsonb_build_object('exception_id', e -> 'exception_id', 'by', e -> 'by',
                                               'expires_at', e -> 'expires_at', 'reason', e -> 'reason') AS w
            FROM pg_catalog.jsonb_array_elements(COALESCE(p_exceptions, '[]')) AS e
           WHERE e ->> 'check_kind' = p_kind AND e ->> 'check' = r ->> 'name' AND (e -> 'applies') = 'true'::jsonb
           ORDER BY (e ->> 'exception_id')::bigint LIMIT 1) AS x ON true
$$;

-- The exceptions a committing session may rely on for the spec document it runs (its hash, as 006 computes it).
CREATE FUNCTION gcos._spec_exceptions(p_spec jsonb) RETURNS jsonb
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT gcos._exceptions_in_force(pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(gcos.jcs(p_spec), 'UTF8')), 'hex'),
                                     r.oid::bigint, COALESCE(p.display_name, r.rolname::text))
      FROM pg_catalog.pg_roles AS r LEFT JOIN gcos.principals AS p ON p.role_oid = r.oid
     WHERE r.rolname = session_user
$$;

-- Every waived mark in some results of one kind, one per exception: what a record says it relied on.
CREATE FUNCTION gcos._waivers(p_results jsonb, p_kind text) RETURNS jsonb
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT COALESCE(pg_catalog.jsonb_agg(w ORDER BY (w ->> 'exception_id')::bigint), '[]')
      FROM (SELECT DISTINCT (r -> 'waived') || pg_catalog.jsonb_build_object('check_kind', p_kind, 'check', r -> 'name') AS w
              FROM pg_catalog.jsonb_array_elements(COALESCE(p_results, '[]')) AS t(r) WHERE r ? 'waived') AS d
$$;

-- '; waived by exception: stop 'x' (exception 3 by Ann, until ...), ...' for a verdict's sentence ('' when none).
CREATE FUNCTION gcos._waived_text(v jsonb) RETURNS text
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT COALESCE('; waived by exception: ' || NULLIF(pg_catalog.array_to_string(ARRAY(
               SELECT pg_catalog.format('%s %L (exception %s by %s, until %s)', k.kind, e ->> 'name', e #>> '{waived,exception_id}',
                                        e #>> '{waived,by}', e #>> '{waived,expires_at}')
                 FROM (VALUES (1, 'reverify', v -> 'reverify'), (2, 'stop', v -> 'stops'), (3, 'success', v -> 'success')) AS k(n, kind, arr),
                      pg_catalog.jsonb_array_elements(CASE WHEN pg_catalog.jsonb_typeof(k.arr) = 'array' THEN k.arr ELSE '[]' END)
                          WITH ORDINALITY AS x(e, o)
                WHERE e ? 'waived' ORDER BY k.n, o), ', '), ''), '')
$$;

-- ----------------------------------------------------------------------------------- honoured at the verdict
-- FROM 011_kernel_rehearse.sql
CREATE OR REPLACE FUNCTION gcos._rehearsal_outcome(p_step text, v jsonb, OUT outcome text, OUT message text)
    LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_held jsonb := (SELECT e.value FROM pg_catalog.jsonb_array_elements(COALESCE(v -> 'stops', '[]')) AS e
                      WHERE (e.value ->> 'held')::boolean AND NOT e.value ? 'waived' LIMIT 1);
    v_failed jsonb := (SELECT e.value FROM pg_catalog.jsonb_array_elements(COALESCE(v -> 'success', '[]')) AS e
                        WHERE NOT (e.value ->> 'ok')::boolean AND NOT e.value ? 'waived' LIMIT 1);
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
        message := pg_catalog.format('rehearsal of %s passed in the kernel: entry == exit', p_step) || gcos._waived_text(v);
    END IF;
END
$$;

-- FROM 012_kernel_commit.sql
CREATE OR REPLACE FUNCTION gcos._commit_verdict(p_step text, v jsonb, OUT outcome text, OUT message text)
    LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    IF pg_catalog.jsonb_array_length(COALESCE(v -> 'violations', '[]')) > 0 OR EXISTS (
           SELECT FROM pg_catalog.jsonb_array_elements(COALESCE(v -> 'stops', '[]') || COALESCE(v -> 'success', '[]')) AS e
            WHERE NOT e.value ? 'waived' AND ((e.value ->> 'held')::boolean OR NOT COALESCE((e.value ->> 'ok')::boolean, true))) THEN
        SELECT * INTO r FROM gcos._rehearsal_outcome(p_step, v || '{"after_rollback": null}');
        outcome := r.outcome;
        message := pg_catalog.replace(r.message, 'the step was rolled back', 'nothing was committed');
    ELSIF pg_catalog.jsonb_array_length(COALESCE(v -> 'session_residue', '[]')) > 0 THEN
        outcome := 'residue';
        message := pg_catalog.format('%s left %s in the session, which outlives a commit; nothing was committed', p_step,
                                     pg_catalog.array_to_string(ARRAY(SELECT pg_catalog.jsonb_array_elements_text(v -> 'session_residue')), ', '));
    ELSIF v ? 'prove' AND (v -> 'after' ->> 'hash') IS DISTINCT FROM (v ->> 'prove') THEN
        outcome := 'rollback_unproven';
        message := pg_catalog.format('the rollback evidence of %s does not return the world to the fingerprint before its commit; nothing was rolled back', p_step);
    END IF;
END
$$;

-- FROM 012_kernel_commit.sql
CREATE OR REPLACE FUNCTION gcos._commit_apply(p_spec jsonb, p_plan jsonb, p_action text, p_before jsonb, p_prove text) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_watch text[] := ARRAY(SELECT pg_catalog.jsonb_array_elements_text(COALESCE(p_spec -> 'watch', '[]')));
    v_state jsonb := gcos._session_state();
    v_probe jsonb := gcos.footprint_probe();
    v_owned jsonb := gcos._kernel_owned();
    v jsonb := CASE WHEN p_prove IS NULL THEN '{}'::jsonb ELSE pg_catalog.jsonb_build_object('prove', p_prove) END;
    v_now jsonb;
    v_stop jsonb;
    v_exc jsonb;
    r record;
BEGIN
    BEGIN
        IF p_action = 'rollback' OR p_spec ? 'mutation' THEN  -- a verification-only step applies nothing
            PERFORM gcos._kernel_exec(CASE p_action WHEN 'commit' THEN p_spec -> 'mutation' ->> 'sql'
                                                    ELSE p_spec -> 'rollback' ->> 'sql' END);
        END IF;
        v_now := gcos._session_state();
        v := v || pg_catalog.jsonb_build_object('after', gcos._kernel_fingerprint(v_watch), 'session_residue', (
            SELECT COALESCE(pg_catalog.jsonb_agg(x), '[]') FROM (
                SELECT l AS x FROM pg_catalog.jsonb_array_elements_text(v_now -> 'locks') AS l WHERE NOT (v_state -> 'locks') ? l
                UNION ALL
                SELECT 'setting ' || e.key FROM pg_catalog.jsonb_each(v_now -> 'settings') AS e
                 WHERE e.value IS DISTINCT FROM v_state -> 'settings' -> e.key) AS d));
        IF p_action = 'commit' THEN
            v := v || pg_catalog.jsonb_build_object('footprint', gcos.footprint(p_before, v -> 'after', v_probe, gcos.footprint_probe()));
            v := v || pg_catalog.jsonb_build_object(
                'violations', gcos.allow_violations(p_spec -> 'mutation' -> 'allow', v -> 'footprint')
                              || gcos._kernel_invariants(v_owned) || gcos._sequences_back(p_before, v -> 'after'),
                'stops', '[]'::jsonb, 'success', gcos._kernel_checks(p_spec -> 'success'));
            FOR v_stop IN SELECT e.value FROM pg_catalog.jsonb_array_elements(
                              COALESCE(p_spec -> 'stop', '[]') || COALESCE(p_plan -> 'global_stop', '[]')) AS e LOOP
                v := pg_catalog.jsonb_set(v, '{stops}', (v -> 'stops') || pg_catalog.jsonb_build_array(
                    gcos._kernel_stop(v_stop, pg_catalog.jsonb_array_length(v -> 'footprint' -> 'new_tables'))));
            END LOOP;
            v_exc := gcos._spec_exceptions(p_spec);  -- waived checks stay in the results, marked (025)
            v := v || pg_catalog.jsonb_build_object(
                'stops', gcos._waive(v -> 'stops', 'stop', v_exc, pg_catalog.jsonb_array_length(COALESCE(p_spec -> 'stop', '[]'))),
                'success', gcos._waive(v -> 'success', 'success', v_exc, pg_catalog.jsonb_array_length(COALESCE(p_spec -> 'success', '[]'))));
        END IF;
        IF p_action = 'rollback' THEN
            v := v || pg_catalog.jsonb_build_object('violations',
                gcos._rollback_violations(p_spec -> 'mutation' -> 'allow', v_probe, gcos.footprint_probe())
                || gcos._kernel_invariants(v_owned) || gcos._sequences_back(p_before, v -> 'after'));
        END IF;
        SELECT * INTO r FROM gcos._commit_verdict(p_spec ->> 'id', v);
        IF r.outcome IS NOT NULL THEN
            v := v || pg_catalog.jsonb_build_object('outcome', r.outcome, 'message', r.message);
            RAISE EXCEPTION 'gcos: not applied' USING ERRCODE = 'GC100';
        END IF;
    EXCEPTION
        WHEN SQLSTATE 'GC100' THEN
            NULL;
        WHEN lock_not_available THEN
            v := v || pg_catalog.jsonb_build_object('outcome', 'lock_timeout', 'message',
                pg_catalog.format('%s of %s could not get a lock within lock_timeout: %s; nothing was applied, retry when the other session is done',
                                  p_action, p_spec ->> 'id', SQLERRM));
        WHEN query_canceled THEN
            v := v || pg_catalog.jsonb_build_object('outcome', 'timeout', 'message',
                pg_catalog.format('%s of %s hit statement_timeout; nothing was applied', p_action, p_spec ->> 'id'));
        WHEN OTHERS THEN
            v := v || pg_catalog.jsonb_build_object('outcome', p_action || '_failed', 'message',
                pg_catalog.format('%s of %s failed in the database: %s; nothing was applied', p_action, p_spec ->> 'id', SQLERRM));
    END;
    IF pg_catalog.jsonb_array_length(COALESCE(v -> 'session_residue', '[]')) > 0 THEN
        PERFORM pg_catalog.pg_advisory_unlock_all();  -- the kernel holds none of its own (its lock is xact-level)
    END IF;
    RETURN v;
END
$$;

-- FROM 012_kernel_commit.sql
CREATE OR REPLACE FUNCTION gcos._kernel_world(p_spec jsonb, p_plan jsonb) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_fp jsonb := gcos._kernel_fingerprint(ARRAY(SELECT pg_catalog.jsonb_array_elements_text(COALESCE(p_spec -> 'watch', '[]'))));
    v_stops jsonb := '[]';
    v_stop jsonb;
    v_held jsonb;
BEGIN
    FOR v_stop IN SELECT e.value FROM pg_catalog.jsonb_array_elements(COALESCE(p_plan -> 'global_stop', '[]')) AS e
                   WHERE NOT e.value ? 'max_new_tables' LOOP
        v_held := gcos._kernel_stop(v_stop, 0);
        v_stops := v_stops || pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
            'name', v_held -> 'name', 'holds', v_held -> 'held', 'detail', v_held -> 'detail'));
    END LOOP;
    RETURN pg_catalog.jsonb_build_object('fingerprint', v_fp, 'world', pg_catalog.jsonb_build_object(
        'schema_hash', v_fp -> 'schema_hash',
        'reverify', gcos._waive(gcos._kernel_checks(p_spec -> 'reverify'), 'reverify', gcos._spec_exceptions(p_spec),
                                pg_catalog.jsonb_array_length(COALESCE(p_spec -> 'reverify', '[]'))),
        'global_stops', v_stops));
END
$$;

-- FROM 013_kernel_batched.sql
CREATE OR REPLACE FUNCTION gcos._batch_judged(p_spec jsonb, p_plan jsonb, p_before jsonb) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_after jsonb := gcos._kernel_fingerprint(ARRAY(SELECT pg_catalog.jsonb_array_elements_text(COALESCE(p_spec -> 'watch', '[]'))));
    v_probe jsonb := gcos.footprint_probe();  -- relation kinds for the footprint; this transaction wrote no rows yet
    v_fp jsonb := gcos.footprint(p_before, v_after, v_probe, v_probe);
    v_exc jsonb := gcos._spec_exceptions(p_spec);
BEGIN
    RETURN pg_catalog.jsonb_build_object(
        'after', v_after, 'footprint', v_fp,
        'violations', gcos.allow_violations(p_spec #> '{mutation,allow}', v_fp) || gcos._sequences_back(p_before, v_after),
        'stops', gcos._waive((SELECT COALESCE(pg_catalog.jsonb_agg(gcos._kernel_stop(e, pg_catalog.jsonb_array_length(v_fp -> 'new_tables')) ORDER BY o), '[]')
                    FROM pg_catalog.jsonb_array_elements(COALESCE(p_spec -> 'stop', '[]') || COALESCE(p_plan -> 'global_stop', '[]'))
                         WITH ORDINALITY AS x(e, o)), 'stop', v_exc, pg_catalog.jsonb_array_length(COALESCE(p_spec -> 'stop', '[]'))),
        'success', gcos._waive(gcos._kernel_checks(p_spec -> 'success'), 'success', v_exc,
                               pg_catalog.jsonb_array_length(COALESCE(p_spec -> 'success', '[]'))));
END
$$;

-- FROM 015_closed_ledger.sql
CREATE OR REPLACE FUNCTION gcos._gate_reverify(c jsonb) RETURNS jsonb
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_sid text := c ->> 'step_id';
    v_results jsonb := c #> '{world,reverify}';
    v_checks jsonb := COALESCE(c #> '{spec,reverify}', '[]'::jsonb);
    v_bad jsonb;
BEGIN
    IF c ->> 'action' = 'rollback' THEN
        RETURN gcos._gate(3, 'reverify', true, pg_catalog.format('re-verify describes the world before %s''s commit; a '
                          'rollback is proven by the pre-commit fingerprint instead', v_sid), '', 'nothing to do');
    ELSIF v_results IS NULL OR pg_catalog.jsonb_typeof(v_results) <> 'array' THEN
        RETURN gcos._gate(3, 'reverify', false, pg_catalog.format('re-verify of %s has not been run here', v_sid),
                          'gcos verify ' || v_sid, 'run', false);
    ELSIF ARRAY(SELECT e ->> 'name' FROM pg_catalog.jsonb_array_elements(v_results) WITH ORDINALITY AS x(e, o) ORDER BY o)
          IS DISTINCT FROM ARRAY(SELECT e ->> 'name' FROM pg_catalog.jsonb_array_elements(v_checks) WITH ORDINALITY AS x(e, o) ORDER BY o) THEN
        RETURN gcos._gate(3, 'reverify', false, pg_catalog.format('the re-verify results given are not one per check of '
                          '%s''s spec (%s checks)', v_sid, pg_catalog.jsonb_array_length(v_checks)),
                          'gcos verify ' || v_sid, 'run', false);
    END IF;
    SELECT e INTO v_bad FROM pg_catalog.jsonb_array_elements(v_results) WITH ORDINALITY AS x(e, o)
     WHERE (e -> 'ok') IS DISTINCT FROM 'true'::jsonb AND NOT e ? 'waived' ORDER BY o LIMIT 1;
    IF v_bad IS NOT NULL THEN
        RETURN gcos._gate(3, 'reverify', false, pg_catalog.format('re-verify of %s does not hold: re-verify check %L expected %s, got %s',
                          v_sid, v_bad ->> 'name', COALESCE(gcos._expect_text(v_bad -> 'expected'), '?'),
                          COALESCE('an error: ' || (v_bad ->> 'error'), v_bad ->> 'actual', 'null')),
                          'gcos verify ' || v_sid, 'fix the world or the spec, then check with');
    END IF;
    RETURN gcos._gate(3, 'reverify', true, pg_catalog.format('re-verify of %s holds: all re-verify checks hold', v_sid)
                      || gcos._waived_text(pg_catalog.jsonb_build_object('reverify', v_results)), '', 'nothing to do');
END
$$;

-- FROM 010_gates.sql
CREATE OR REPLACE FUNCTION gcos.evaluate_gates(p_spec_hash text, p_plan_hash text, p_action text, p_world jsonb) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c jsonb;
    v_gates jsonb;
    v_first jsonb;
    v_exc jsonb := '[]';
BEGIN
    IF p_action IS NULL OR p_action NOT IN ('commit', 'rollback') THEN
        RAISE EXCEPTION 'gcos: action must be commit or rollback, not %', COALESCE(p_action, 'NULL') USING ERRCODE = '22023';
    ELSIF p_spec_hash IS NULL OR p_spec_hash !~ '^[0-9a-f]{64}$' OR p_plan_hash !~ '^[0-9a-f]{64}$' THEN
        RAISE EXCEPTION 'gcos: a spec hash and a plan hash are 64 lowercase hex digits' USING ERRCODE = '22023';
    ELSIF p_world IS NOT NULL AND pg_catalog.jsonb_typeof(p_world) <> 'object' THEN
        RAISE EXCEPTION 'gcos: the measured world is a JSON object (schema_hash, reverify, global_stops)' USING ERRCODE = '22023';
    END IF;
    c := gcos._gates_context(p_spec_hash, p_plan_hash, p_action, p_world);
    IF p_action = 'commit' AND c ->> 'step_id' IS NOT NULL THEN
        -- The exceptions in force for this spec here, judged for the actor (never their own), and the re-verify
        -- results marked by them alone (a mark the caller brought is dropped).
        v_exc := gcos._exceptions_in_force(p_spec_hash, (c ->> 'actor_oid')::bigint, c ->> 'actor_name');
        IF pg_catalog.jsonb_typeof(c #> '{world,reverify}') = 'array' THEN
            c := pg_catalog.jsonb_set(c, '{world,reverify}', gcos._waive(c #> '{world,reverify}', 'reverify', v_exc,
                 pg_catalog.jsonb_array_length(COALESCE(c #> '{spec,reverify}', '[]'))));
        END IF;
    END IF;
    IF c ->> 'step_id' IS NULL THEN
        v_gates := gcos._gates_unregistered(c);
    ELSE
        PERFORM gcos._gates_cross_check(c ->> 'step_id', gcos._jarray_text(c #> '{spec,decisions}'));
        v_gates := pg_catalog.jsonb_build_array(gcos._gate_spec(c), gcos._gate_dependencies(c), gcos._gate_reverify(c),
                                                gcos._gate_rehearsal(c), gcos._gate_approvals(c), gcos._gate_decisions(c),
                                                gcos._gate_state(c));
    END IF;
    SELECT e INTO v_first FROM pg_catalog.jsonb_array_elements(v_gates) WITH ORDINALITY AS x(e, o)
     WHERE (e -> 'allow') = 'false'::jsonb ORDER BY (e -> 'decisive') = 'true'::jsonb DESC, o LIMIT 1;
    RETURN pg_catalog.jsonb_build_object(
        'format_version', 1, 'allow', v_first IS NULL, 'action', p_action, 'step_id', c -> 'step_id',
        'spec_hash', p_spec_hash, 'plan_hash', c -> 'plan_hash', 'evaluated_at', gcos._utc((c ->> 'now')::timestamptz),
        'gates', v_gates,
        'exceptions', (SELECT COALESCE(pg_catalog.jsonb_agg(e - 'applies' ORDER BY o), '[]')
                         FROM pg_catalog.jsonb_array_elements(v_exc) WITH ORDINALITY AS x(e, o) WHERE (e -> 'applies') = 'true'::jsonb),
        'exceptions_not_applied', (SELECT COALESCE(pg_catalog.jsonb_agg(e - 'applies' ORDER BY o), '[]')
                         FROM pg_catalog.jsonb_array_elements(v_exc) WITH ORDINALITY AS x(e, o) WHERE (e -> 'applies') = 'false'::jsonb),
        'failed', (SELECT COALESCE(pg_catalog.jsonb_agg(e -> 'gate' ORDER BY o), '[]')
                     FROM pg_catalog.jsonb_array_elements(v_gates) WITH ORDINALITY AS x(e, o) WHERE (e -> 'allow') = 'false'::jsonb),
        'refusal', CASE WHEN v_first IS NOT NULL THEN pg_catalog.upper(pg_catalog.left(v_first ->> 'reason', 1))
                        || pg_catalog.substr(v_first ->> 'reason', 2)
                        || COALESCE('; ' || NULLIF(v_first ->> 'remedy', ''), '') END);
END
$$;

-- FROM 022_durable_records_and_run_ids.sql
CREATE OR REPLACE FUNCTION gcos._rehearse_measured(p_spec_hash text, p_plan_hash text, p_trace_id text DEFAULT NULL) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_started timestamptz := pg_catalog.clock_timestamp();
    v_spec jsonb := (SELECT s.document FROM gcos.specs AS s WHERE s.spec_hash = p_spec_hash);
    v_plan jsonb := (SELECT p.document FROM gcos.plans AS p WHERE p.plan_hash = p_plan_hash);
    v_step text;
    v_watch text[];
    v_run text;
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
    v_exc jsonb := gcos._exceptions_in_force(p_spec_hash, NULL, NULL);
BEGIN
    PERFORM gcos._kernel_caller();
    IF v_spec IS NULL OR v_plan IS NULL THEN
        PERFORM gcos._invalid('gcos: the kernel rehearses registered specs and plans only; register them first (gcos rehearse does)');
    END IF;
    v_run := gcos.run_id(p_spec_hash, p_plan_hash, 'rehearse', (SELECT h.seq FROM gcos.ledger_head AS h WHERE h.singleton));
    v_step := v_spec ->> 'id';
    IF NOT v_plan -> 'steps' ? v_step THEN
        PERFORM gcos._invalid(pg_catalog.format('gcos: step %s is not in plan %s', v_step, v_plan ->> 'id'));
    END IF;
    PERFORM gcos._kernel_preflight();
    v_watch := ARRAY(SELECT pg_catalog.jsonb_array_elements_text(COALESCE(v_spec -> 'watch', '[]')));
    v := pg_catalog.jsonb_build_object('reverify', gcos._waive(gcos._kernel_checks(v_spec -> 'reverify'), 'reverify', v_exc,
                                                               pg_catalog.jsonb_array_length(COALESCE(v_spec -> 'reverify', '[]'))));
    v_first := (SELECT e.value FROM pg_catalog.jsonb_array_elements(v -> 'reverify') AS e
                 WHERE NOT (e.value ->> 'ok')::boolean AND NOT e.value ? 'waived' LIMIT 1);
    IF v_first IS NOT NULL THEN
        v_outcome := 'reverify_mismatch';
        v_message := pg_catalog.format('re-verify of %s failed: %L expected %s, got %s; the live world is not what the spec expects',
                                       v_step, v_first ->> 'name', v_first -> 'expected',
                                       COALESCE('error: ' || (v_first ->> 'error'), (v_first -> 'actual')::text));
    ELSE
        v := v || pg_catalog.jsonb_build_object('entry', gcos._kernel_fingerprint(v_watch));
        v := v || gcos._rehearse_inside(v_spec, v_plan, v -> 'entry', v_run);
        IF v ? 'success' THEN  -- the checks ran (a failed mutation has none)
            v := v || pg_catalog.jsonb_build_object(
                'stops', gcos._waive(v -> 'stops', 'stop', v_exc, pg_catalog.jsonb_array_length(COALESCE(v_spec -> 'stop', '[]'))),
                'success', gcos._waive(v -> 'success', 'success', v_exc, pg_catalog.jsonb_array_length(COALESCE(v_spec -> 'success', '[]'))));
        END IF;
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
        'exceptions', gcos._waivers(v -> 'reverify', 'reverify') || gcos._waivers(v -> 'stops', 'stop')
                      || gcos._waivers(v -> 'success', 'success'),
        'duration_us', (EXTRACT(epoch FROM pg_catalog.clock_timestamp() - v_started) * 1000000)::bigint);
    SELECT * INTO v_write FROM gcos._ledger_write('rehearsal', v_step, p_spec_hash, p_trace_id, NULL, v_payload);
    RETURN v_payload || pg_catalog.jsonb_build_object('ledger_seq', v_write.seq, 'ledger_hash', v_write.hash);
END
$$;

-- ----------------------------------------------------------------------------------- privileges

RESET ROLE;
SELECT gcos._guard_table('gcos.exceptions', 'gcos.record_exception (gcos except)');
SELECT gcos._guard_table('gcos.exception_revocations', 'gcos.revoke_exception (gcos except --revoke)');
REVOKE ALL ON gcos.exceptions, gcos.exception_revocations FROM PUBLIC;
REVOKE ALL ON SEQUENCE gcos.exceptions_id_seq, gcos.exception_revocations_id_seq FROM PUBLIC;
GRANT SELECT ON gcos.exceptions, gcos.exception_revocations
    TO gcos_admin, gcos_operator, gcos_sovereign, gcos_council, gcos_auditor;
REVOKE ALL ON FUNCTION gcos._exception_authority(text), gcos._check_names(jsonb, text),
    gcos.record_exception(text, text, text, text, timestamptz, text, text, text), gcos.revoke_exception(bigint, text, text, text),
    gcos._exceptions_in_force(text, bigint, text), gcos._waive(jsonb, text, jsonb, integer), gcos._spec_exceptions(jsonb),
    gcos._waivers(jsonb, text), gcos._waived_text(jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gcos.record_exception(text, text, text, text, timestamptz, text, text, text),
    gcos.revoke_exception(bigint, text, text, text) TO gcos_sovereign;
-- Invoker helpers of gcos.evaluate_gates (010): every gcos role that may evaluate the gates needs them.
GRANT EXECUTE ON FUNCTION gcos._exceptions_in_force(text, bigint, text), gcos._waive(jsonb, text, jsonb, integer),
    gcos._waived_text(jsonb) TO gcos_admin, gcos_operator, gcos_sovereign, gcos_council, gcos_auditor;
