-- gcos schema version 6: the content-addressed registry of step specs and plans (issue 9 item 2).
--
-- The kernel rehearses, commits and rolls back only specs registered here, and executes the SQL stored in
-- the registered row, never SQL passed at call time. So the DATABASE computes the identity of a document:
--
--     hash = sha256(gcos.jcs(document))       (RFC 8785 canonical JSON; the same value as gcos.spec's hash)
--
-- API (SECURITY DEFINER, search_path pinned):
--   gcos.register_spec(p_document jsonb) RETURNS text   the spec hash
--   gcos.register_plan(p_document jsonb) RETURNS text   the plan hash
-- `document` is the parsed spec with every referenced SQL file inlined (`file:` replaced by `sql:`), exactly
-- what gcos.spec hashes; the client compares the returned hash with its own and refuses on a difference.
-- Registering content that is already registered is a no-op returning the same hash (no new record).
-- Otherwise one row is appended to gcos.specs / gcos.plans together with a `spec_registered` /
-- `plan_registered` ledger record (kinds reserved: gcos.ledger_append refuses them).
--
-- Validated here (22023, the message names the key): a JSON object; `id` a step id; for a spec, every SQL
-- field the kernel will execute is a non-empty string with no `file:` key left beside it (mutation.sql,
-- rollback.sql, batch.sql, reverify[].sql, success[].sql, stop[].sql); for a plan, `steps` a non-empty list
-- of step ids and global_stop[].sql strings. Everything else is the client's JSON Schema's job.
-- The canonicalizer refuses non-integer numbers, integers beyond 2^53 and keys outside the BMP (22023).
--
-- Callers (42501 otherwise): a superuser, or a human or agent principal (session_user) whose gcos roles
-- include operator or admin and who holds EXECUTE through gcos_operator / gcos_admin. Agents may register
-- and rehearse; they never approve. The tables are append-only for every role (superusers included):
-- SELECT for the gcos group roles, UPDATE/DELETE/TRUNCATE refused by ENABLE ALWAYS triggers, and an INSERT
-- is accepted only when its row is self-consistent (hash of its canonical text, canonical text of itself)
-- and was announced by the ledger head record of the right kind, i.e. only through the functions above.
SET LOCAL ROLE gcos_owner;

-- ----------------------------------------------------------------------------------- tables

CREATE TABLE gcos.specs (
    spec_hash text PRIMARY KEY CHECK (spec_hash ~ '^[0-9a-f]{64}$'),
    canonical text NOT NULL,
    document jsonb GENERATED ALWAYS AS (canonical::jsonb) STORED,
    step_id text GENERATED ALWAYS AS (canonical::jsonb ->> 'id') STORED
        CHECK (step_id ~ '^[A-Za-z][A-Za-z0-9]*(-[A-Za-z0-9]+)*$' AND pg_catalog.length(step_id) <= 63),
    registered_at timestamptz NOT NULL,
    registered_by_oid oid NOT NULL,
    registered_by name NOT NULL,
    ledger_seq bigint NOT NULL UNIQUE REFERENCES gcos.ledger (seq)
);
CREATE INDEX specs_step_idx ON gcos.specs (step_id, registered_at);

CREATE TABLE gcos.plans (
    plan_hash text PRIMARY KEY CHECK (plan_hash ~ '^[0-9a-f]{64}$'),
    canonical text NOT NULL,
    document jsonb GENERATED ALWAYS AS (canonical::jsonb) STORED,
    plan_id text GENERATED ALWAYS AS (canonical::jsonb ->> 'id') STORED
        CHECK (plan_id ~ '^[A-Za-z][A-Za-z0-9]*(-[A-Za-z0-9]+)*$' AND pg_catalog.length(plan_id) <= 63),
    registered_at timestamptz NOT NULL,
    registered_by_oid oid NOT NULL,
    registered_by name NOT NULL,
    ledger_seq bigint NOT NULL UNIQUE REFERENCES gcos.ledger (seq)
);
CREATE INDEX plans_plan_idx ON gcos.plans (plan_id, registered_at);

-- A registry row enters only as the one the ledger head just announced, self-consistent, for the session
-- role: a row forged by a member of gcos_owner would need a forged ledger record as well.
CREATE FUNCTION gcos._registry_insert_guard() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_hash text := pg_catalog.to_jsonb(NEW) ->> TG_ARGV[0];  -- the hash column
    v_kind text := TG_ARGV[1];                                -- the ledger kind that announces the row
BEGIN
    IF v_hash IS DISTINCT FROM pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(NEW.canonical, 'UTF8')), 'hex')
       OR NEW.canonical IS DISTINCT FROM gcos.jcs(NEW.canonical::jsonb)
       OR NEW.registered_by_oid IS DISTINCT FROM (SELECT r.oid FROM pg_catalog.pg_roles AS r WHERE r.rolname = session_user)
       OR NOT EXISTS (SELECT 1 FROM gcos.ledger AS l JOIN gcos.ledger_head AS h ON h.seq = l.seq
                       WHERE l.seq = NEW.ledger_seq AND l.kind = v_kind
                         AND (l.record -> 'payload' ->> 'hash') = v_hash) THEN
        RAISE EXCEPTION 'gcos: %.% rows are written only by gcos.register_spec and gcos.register_plan',
            TG_TABLE_SCHEMA, TG_TABLE_NAME USING ERRCODE = 'GC001';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER gcos_registry_insert BEFORE INSERT ON gcos.specs
    FOR EACH ROW EXECUTE FUNCTION gcos._registry_insert_guard('spec_hash', 'spec_registered');
CREATE TRIGGER gcos_registry_insert BEFORE INSERT ON gcos.plans
    FOR EACH ROW EXECUTE FUNCTION gcos._registry_insert_guard('plan_hash', 'plan_registered');
ALTER TABLE gcos.specs ENABLE ALWAYS TRIGGER gcos_registry_insert;
ALTER TABLE gcos.plans ENABLE ALWAYS TRIGGER gcos_registry_insert;
SELECT gcos._protect('gcos.specs', true, false);
SELECT gcos._protect('gcos.plans', true, false);

-- Kinds written only by their own aperture function, never through gcos.ledger_append (001's list plus
-- the registry's).
CREATE OR REPLACE FUNCTION gcos._reserved_kinds() RETURNS text[]
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT ARRAY['install', 'principal', 'approval', 'approval_revocation', 'decision', 'decision_revocation',
                   'spec_registered', 'plan_registered'] $$;

-- ----------------------------------------------------------------------------------- validation

-- A section holding SQL the kernel will execute: an object whose `sql` is a non-empty string, no `file:`.
CREATE FUNCTION gcos._registry_sql(p_holder jsonb, p_where text) RETURNS void
    LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_holder IS NULL OR pg_catalog.jsonb_typeof(p_holder) <> 'object' THEN
        PERFORM gcos._invalid(pg_catalog.format('gcos: key %s must be an object holding sql', p_where));
    ELSIF p_holder ? 'file' THEN
        PERFORM gcos._invalid(pg_catalog.format(
            'gcos: key %s still has a file: key; register the document with the file''s text inlined as sql (gcos does so on load)',
            p_where));
    ELSIF pg_catalog.jsonb_typeof(p_holder -> 'sql') IS DISTINCT FROM 'string' OR (p_holder ->> 'sql') = '' THEN
        PERFORM gcos._invalid(pg_catalog.format('gcos: key %s.sql must be a non-empty string of SQL', p_where));
    END IF;
END
$$;

-- An optional list of checks or stop items; each item's sql (required when p_sql_required) is validated.
CREATE FUNCTION gcos._registry_checks(p_doc jsonb, p_key text, p_sql_required boolean) RETURNS void
    LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_item jsonb;
    v_at bigint;
BEGIN
    IF NOT p_doc ? p_key THEN
        RETURN;
    ELSIF pg_catalog.jsonb_typeof(p_doc -> p_key) <> 'array' THEN
        PERFORM gcos._invalid(pg_catalog.format('gcos: key %s must be a list', p_key));
    END IF;
    FOR v_item, v_at IN SELECT e.value, e.ord - 1 FROM pg_catalog.jsonb_array_elements(p_doc -> p_key)
                                                       WITH ORDINALITY AS e(value, ord) LOOP
        IF pg_catalog.jsonb_typeof(v_item) <> 'object' THEN
            PERFORM gcos._invalid(pg_catalog.format('gcos: key %s[%s] must be an object', p_key, v_at));
        ELSIF p_sql_required OR v_item ? 'sql' OR v_item ? 'file' THEN
            PERFORM gcos._registry_sql(v_item, pg_catalog.format('%s[%s]', p_key, v_at));
        END IF;
    END LOOP;
END
$$;

-- What every registered document needs: a JSON object whose `id` is a step id (plans use the same form).
CREATE FUNCTION gcos._registry_id(p_doc jsonb, p_what text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_doc IS NULL OR pg_catalog.jsonb_typeof(p_doc) <> 'object' THEN
        PERFORM gcos._invalid(pg_catalog.format('gcos: a %s document is a JSON object, got %s', p_what,
                                                COALESCE(pg_catalog.jsonb_typeof(p_doc), 'SQL NULL')));
    ELSIF pg_catalog.jsonb_typeof(p_doc -> 'id') IS DISTINCT FROM 'string'
          OR (p_doc ->> 'id') !~ '^[A-Za-z][A-Za-z0-9]*(-[A-Za-z0-9]+)*$' OR pg_catalog.length(p_doc ->> 'id') > 63 THEN
        PERFORM gcos._invalid(pg_catalog.format(
            'gcos: key id of a %s document must be an id such as SB-12 (letters, digits, single hyphens; at most 63), got %s',
            p_what, COALESCE(pg_catalog.left((p_doc -> 'id')::text, 80), 'nothing')));
    END IF;
    RETURN p_doc ->> 'id';
END
$$;

CREATE FUNCTION gcos._validate_spec(p_doc jsonb) RETURNS text
    LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_id text := gcos._registry_id(p_doc, 'spec');
BEGIN
    IF p_doc ? 'mutation' THEN
        PERFORM gcos._registry_sql(p_doc -> 'mutation', 'mutation');
    END IF;
    PERFORM gcos._registry_sql(p_doc -> 'rollback', 'rollback');
    IF p_doc ? 'batch' THEN
        PERFORM gcos._registry_sql(p_doc -> 'batch', 'batch');
    END IF;
    PERFORM gcos._registry_checks(p_doc, 'reverify', true);
    PERFORM gcos._registry_checks(p_doc, 'success', true);
    PERFORM gcos._registry_checks(p_doc, 'stop', false);
    RETURN v_id;
END
$$;

CREATE FUNCTION gcos._validate_plan(p_doc jsonb) RETURNS text
    LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_id text := gcos._registry_id(p_doc, 'plan');
BEGIN
    IF pg_catalog.jsonb_typeof(p_doc -> 'steps') IS DISTINCT FROM 'array' THEN
        PERFORM gcos._invalid(pg_catalog.format('gcos: key steps of plan %s must be a non-empty list of step ids', v_id));
    ELSIF pg_catalog.jsonb_array_length(p_doc -> 'steps') = 0 THEN
        PERFORM gcos._invalid(pg_catalog.format('gcos: key steps of plan %s must be a non-empty list of step ids', v_id));
    ELSIF EXISTS (SELECT 1 FROM pg_catalog.jsonb_array_elements(p_doc -> 'steps') AS s(value)
                WHERE pg_catalog.jsonb_typeof(s.value) <> 'string'
                   OR (s.value #>> '{}') !~ '^[A-Za-z][A-Za-z0-9]*(-[A-Za-z0-9]+)*$'
                   OR pg_catalog.length(s.value #>> '{}') > 63) THEN
        PERFORM gcos._invalid(pg_catalog.format('gcos: key steps of plan %s must hold step ids such as SB-12 only', v_id));
    END IF;
    PERFORM gcos._registry_checks(p_doc, 'global_stop', false);
    RETURN v_id;
END
$$;

-- ----------------------------------------------------------------------------------- authority

-- A superuser, or a human or agent principal whose gcos roles include operator or admin.
CREATE FUNCTION gcos._require_registrar(p_what text, OUT role_oid oid, OUT role_name text)
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a record;
BEGIN
    SELECT * INTO a FROM gcos._session_actor();
    IF NOT a.is_superuser THEN
        IF a.principal IS NULL THEN
            PERFORM gcos._refuse(pg_catalog.format(
                'gcos: session role %I is not a registered principal and cannot register %s; ask a gcos admin to run gcos principals add %s',
                a.role_name, p_what, a.role_name));
        ELSIF a.kind NOT IN ('human', 'agent') THEN
            PERFORM gcos._refuse(pg_catalog.format(
                'gcos: principal %s is of kind %s and cannot register %s; only human and agent principals can',
                a.principal, a.kind, p_what));
        ELSIF NOT (a.roles && ARRAY['operator', 'admin']::text[]) THEN
            PERFORM gcos._refuse(pg_catalog.format(
                'gcos: principal %s holds neither the operator nor the admin role and cannot register %s',
                a.principal, p_what));
        END IF;
    END IF;
    role_oid := a.role_oid;
    role_name := a.role_name;
END
$$;

-- ----------------------------------------------------------------------------------- the aperture

-- Append one canonical document to gcos.specs or gcos.plans (p_table) for the registrar, with its ledger
-- record; returns its hash. Serialized on the ledger head, so two sessions registering the same content
-- append one record between them. Internal: the caller has checked authority and validated the document.
CREATE FUNCTION gcos._register(p_table text, p_id text, p_document jsonb, p_payload jsonb, p_role_oid oid,
                               p_role_name text) RETURNS text
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_spec boolean := p_table = 'specs';
    v_canonical text := gcos.jcs(p_document);
    v_hash text := pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(v_canonical, 'UTF8')), 'hex');
    v_exists text := pg_catalog.format('SELECT EXISTS (SELECT 1 FROM gcos.%I AS t WHERE t.%I = $1)', p_table,
                                       CASE WHEN v_spec THEN 'spec_hash' ELSE 'plan_hash' END);
    v_found boolean;
    v_write record;
BEGIN
    IF p_table IS NULL OR p_table NOT IN ('specs', 'plans') THEN
        PERFORM gcos._invalid('gcos: the registry holds specs and plans only');
    END IF;
    EXECUTE v_exists INTO v_found USING v_hash;
    IF v_found THEN
        RETURN v_hash;
    END IF;
    PERFORM 1 FROM gcos.ledger_head AS h WHERE h.singleton FOR UPDATE;
    EXECUTE v_exists INTO v_found USING v_hash;  -- a concurrent registration may have committed meanwhile
    IF v_found THEN
        RETURN v_hash;
    END IF;
    SELECT * INTO v_write FROM gcos._ledger_write(
        CASE WHEN v_spec THEN 'spec_registered' ELSE 'plan_registered' END,
        CASE WHEN v_spec THEN p_id END, CASE WHEN v_spec THEN v_hash END, NULL, NULL,
        p_payload || pg_catalog.jsonb_build_object(
            'hash', v_hash, 'bytes', pg_catalog.octet_length(pg_catalog.convert_to(v_canonical, 'UTF8'))));
    EXECUTE pg_catalog.format('INSERT INTO gcos.%I (%I, canonical, registered_at, registered_by_oid, registered_by, '
                              'ledger_seq) VALUES ($1, $2, $3, $4, $5, $6)',
                              p_table, CASE WHEN v_spec THEN 'spec_hash' ELSE 'plan_hash' END)
        USING v_hash, v_canonical, pg_catalog.clock_timestamp(), p_role_oid, p_role_name, v_write.seq;
    RETURN v_hash;
END
$$;

CREATE FUNCTION gcos.register_spec(p_document jsonb) RETURNS text
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a record;
    v_id text;
BEGIN
    SELECT * INTO a FROM gcos._require_registrar('specs');
    v_id := gcos._validate_spec(p_document);
    RETURN gcos._register('specs', v_id, p_document, pg_catalog.jsonb_build_object('format_version', 1, 'step_id', v_id),
                          a.role_oid, a.role_name);
END
$$;

CREATE FUNCTION gcos.register_plan(p_document jsonb) RETURNS text
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a record;
    v_id text;
BEGIN
    SELECT * INTO a FROM gcos._require_registrar('plans');
    v_id := gcos._validate_plan(p_document);
    RETURN gcos._register('plans', v_id, p_document,
                          pg_catalog.jsonb_build_object('format_version', 1, 'plan_id', v_id, 'steps', p_document -> 'steps'),
                          a.role_oid, a.role_name);
END
$$;

-- ----------------------------------------------------------------------------------- privileges

REVOKE ALL ON gcos.specs, gcos.plans FROM PUBLIC;
GRANT SELECT ON gcos.specs, gcos.plans TO gcos_admin, gcos_operator, gcos_sovereign, gcos_council, gcos_auditor;
REVOKE ALL ON FUNCTION gcos._registry_insert_guard(), gcos._registry_sql(jsonb, text),
                       gcos._registry_checks(jsonb, text, boolean), gcos._registry_id(jsonb, text),
                       gcos._validate_spec(jsonb), gcos._validate_plan(jsonb), gcos._require_registrar(text),
                       gcos._register(text, text, jsonb, jsonb, oid, text), gcos._reserved_kinds(),
                       gcos.register_spec(jsonb), gcos.register_plan(jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gcos.register_spec(jsonb), gcos.register_plan(jsonb) TO gcos_admin, gcos_operator;
