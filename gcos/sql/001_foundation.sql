-- gcos schema version 1: roles, the gcos schema, the RFC 8785 canonicalizer, principals and the
-- hash-chained ledger. Applied by gcos.install inside one transaction (with an advisory lock) by a
-- superuser; everything after the role bootstrap is created as the NOLOGIN owner role gcos_owner.
--
-- Conventions (CONTRACT.md "Authority", "Ledger"):
--   * every function pins `SET search_path = pg_catalog, pg_temp` and schema-qualifies every object;
--   * SECURITY DEFINER functions are the only write aperture; EXECUTE is never granted to PUBLIC;
--   * identity is always session_user, resolved by role OID in gcos.principals;
--   * SQLSTATE 42501 = authority refused, 22023 = invalid input, GC001 = append-only violation.

DO $$
BEGIN
    IF pg_catalog.current_setting('server_version_num')::integer < 130000 THEN
        RAISE EXCEPTION 'gcos needs PostgreSQL 13 or newer, this server is %',
            pg_catalog.current_setting('server_version') USING ERRCODE = '0A000';
    END IF;
    IF pg_catalog.current_setting('server_encoding') <> 'UTF8' THEN
        RAISE EXCEPTION 'gcos needs a UTF8 database, database % is %', pg_catalog.current_database(),
            pg_catalog.current_setting('server_encoding') USING ERRCODE = '22023';
    END IF;
END
$$;

-- Cluster-wide roles: idempotent and safe against a concurrent install into another database of the
-- same cluster (the loser of the race sees unique_violation on pg_authid, not duplicate_object).
DO $$
DECLARE
    r text;
    v record;
BEGIN
    FOREACH r IN ARRAY ARRAY['gcos_owner', 'gcos_admin', 'gcos_operator', 'gcos_sovereign', 'gcos_council',
                             'gcos_auditor']
    LOOP
        BEGIN
            EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', r);
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
        SELECT a.rolcanlogin, a.rolsuper, a.rolbypassrls INTO v FROM pg_catalog.pg_roles a WHERE a.rolname = r;
        IF v.rolcanlogin OR v.rolsuper OR v.rolbypassrls THEN
            RAISE EXCEPTION 'role % exists but is LOGIN, SUPERUSER or BYPASSRLS; gcos needs it NOLOGIN and unprivileged', r
                USING ERRCODE = '42501';
        END IF;
    END LOOP;
END
$$;

CREATE SCHEMA gcos AUTHORIZATION gcos_owner;
SET LOCAL ROLE gcos_owner;

-- Nothing gcos_owner creates in this database is executable by PUBLIC unless granted below.
ALTER DEFAULT PRIVILEGES FOR ROLE gcos_owner REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
GRANT USAGE ON SCHEMA gcos TO PUBLIC;  -- names only; every table and function has its own grants

-- ----------------------------------------------------------------------------------- versions

CREATE TABLE gcos.schema_version (
    version integer PRIMARY KEY CHECK (version > 0),
    name text NOT NULL,
    sha256 text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    applied_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    applied_by name NOT NULL DEFAULT session_user
);

CREATE FUNCTION gcos.installed_version() RETURNS integer
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT pg_catalog.max(v.version) FROM gcos.schema_version AS v $$;

-- ----------------------------------------------------------------------------------- append-only guard

CREATE FUNCTION gcos.forbid_change() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION 'gcos: % on %.% is forbidden: the table is append-only', TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
        USING ERRCODE = 'GC001',
              HINT = 'gcos records are never updated or deleted; append a revocation or a new record instead.';
END
$$;

-- Row (UPDATE, DELETE, optionally INSERT) and statement (TRUNCATE) guards, ENABLE ALWAYS so that
-- session_replication_role = replica cannot switch them off. Install-time helper, no grants.
CREATE FUNCTION gcos._protect(p_table regclass, p_forbid_update boolean, p_forbid_insert boolean) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_ops text := 'DELETE';
BEGIN
    IF p_forbid_update THEN v_ops := 'UPDATE OR ' || v_ops; END IF;
    IF p_forbid_insert THEN v_ops := 'INSERT OR ' || v_ops; END IF;
    EXECUTE pg_catalog.format('CREATE TRIGGER gcos_append_only_row BEFORE %s ON %s FOR EACH ROW '
                              'EXECUTE FUNCTION gcos.forbid_change()', v_ops, p_table);
    EXECUTE pg_catalog.format('CREATE TRIGGER gcos_append_only_truncate BEFORE TRUNCATE ON %s '
                              'FOR EACH STATEMENT EXECUTE FUNCTION gcos.forbid_change()', p_table);
    EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ALWAYS TRIGGER gcos_append_only_row', p_table);
    EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ALWAYS TRIGGER gcos_append_only_truncate', p_table);
END
$$;

SELECT gcos._protect('gcos.schema_version', true, false);

-- ----------------------------------------------------------------------------------- helpers

CREATE FUNCTION gcos._utc(p_at timestamptz) RETURNS text
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT pg_catalog.to_char(p_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') $$;

CREATE FUNCTION gcos._refuse(p_message text) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$ BEGIN RAISE EXCEPTION '%', p_message USING ERRCODE = '42501'; END $$;

CREATE FUNCTION gcos._invalid(p_message text) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$ BEGIN RAISE EXCEPTION '%', p_message USING ERRCODE = '22023'; END $$;

-- ----------------------------------------------------------------------------------- RFC 8785 (JCS)

-- A JSON string exactly as RFC 8785 (ECMAScript JSON.stringify) writes it: \" \\ \b \f \n \r \t,
-- other controls as lowercase \u00xx, everything else verbatim.
CREATE FUNCTION gcos._jcs_string(p text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r text;
    i integer;
BEGIN
    IF p !~ E'[\\x01-\\x1f"\\\\]' THEN
        RETURN '"' || p || '"';
    END IF;
    r := pg_catalog.replace(pg_catalog.replace(p, E'\\', E'\\\\'), '"', E'\\"');
    r := pg_catalog.replace(r, E'\b', E'\\b');
    r := pg_catalog.replace(r, E'\f', E'\\f');
    r := pg_catalog.replace(r, E'\n', E'\\n');
    r := pg_catalog.replace(r, E'\r', E'\\r');
    r := pg_catalog.replace(r, E'\t', E'\\t');
    FOR i IN 1..31 LOOP
        IF i NOT IN (8, 9, 10, 12, 13) THEN
            r := pg_catalog.replace(r, pg_catalog.chr(i), E'\\u00' || pg_catalog.lpad(pg_catalog.to_hex(i), 2, '0'));
        END IF;
    END LOOP;
    RETURN '"' || r || '"';
END
$$;

-- RFC 8785 canonical text of the JSON subset gcos writes: objects (keys sorted by code point), arrays,
-- strings, integers with |n| <= 2^53 - 1, true, false, null. Non-integer numbers, larger integers and
-- object keys outside the BMP (where UTF-16 and code point order differ) are refused (22023).
CREATE FUNCTION gcos.jcs(p_value jsonb) RETURNS text
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_type text := pg_catalog.jsonb_typeof(p_value);
    v_num numeric;
    v_out text;
BEGIN
    IF p_value IS NULL THEN
        RAISE EXCEPTION 'gcos.jcs: SQL NULL is not a JSON value' USING ERRCODE = '22023';
    ELSIF v_type = 'object' THEN
        IF EXISTS (SELECT 1 FROM pg_catalog.jsonb_object_keys(p_value) AS k(key)
                   WHERE k.key ~ E'[\\U00010000-\\U0010ffff]') THEN
            RAISE EXCEPTION 'gcos.jcs: object keys outside the Basic Multilingual Plane are not supported'
                USING ERRCODE = '22023';
        END IF;
        SELECT pg_catalog.string_agg(gcos._jcs_string(e.key) || ':' || gcos.jcs(e.value), ','
                                     ORDER BY e.key COLLATE "C")
          INTO v_out FROM pg_catalog.jsonb_each(p_value) AS e;
        RETURN '{' || COALESCE(v_out, '') || '}';
    ELSIF v_type = 'array' THEN
        SELECT pg_catalog.string_agg(gcos.jcs(a.value), ',' ORDER BY a.ord)
          INTO v_out FROM pg_catalog.jsonb_array_elements(p_value) WITH ORDINALITY AS a(value, ord);
        RETURN '[' || COALESCE(v_out, '') || ']';
    ELSIF v_type = 'string' THEN
        RETURN gcos._jcs_string(p_value #>> '{}');
    ELSIF v_type = 'number' THEN
        v_num := p_value::numeric;
        IF v_num <> pg_catalog.trunc(v_num) THEN
            RAISE EXCEPTION 'gcos.jcs: % is not an integer; gcos records hold integers only (e.g. microseconds)', v_num
                USING ERRCODE = '22023';
        END IF;
        IF pg_catalog.abs(v_num) > 9007199254740991 THEN
            RAISE EXCEPTION 'gcos.jcs: % is outside the safe integer range +-(2^53 - 1)', v_num USING ERRCODE = '22023';
        END IF;
        RETURN v_num::bigint::text;
    ELSE  -- boolean, null
        RETURN p_value::text;
    END IF;
END
$$;

-- ----------------------------------------------------------------------------------- principals

CREATE TABLE gcos.principals (
    role_oid oid PRIMARY KEY,
    role_name name NOT NULL,
    display_name text NOT NULL CHECK (display_name ~ E'\\S' AND display_name !~ '[[:cntrl:]]'
                                      AND pg_catalog.length(display_name) <= 200),
    kind text NOT NULL CHECK (kind IN ('human', 'agent', 'service')),
    roles text[] NOT NULL CHECK (roles <@ ARRAY['sovereign', 'council', 'operator', 'auditor', 'admin']
                                 AND pg_catalog.array_position(roles, NULL) IS NULL),
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    ledger_seq bigint NOT NULL
);

CREATE TABLE gcos.principals_history (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    role_oid oid NOT NULL,
    role_name name NOT NULL,
    display_name text NOT NULL,
    kind text NOT NULL,
    roles text[] NOT NULL,
    changed_by_oid oid NOT NULL,
    changed_by name NOT NULL,
    changed_at timestamptz NOT NULL,
    ledger_seq bigint NOT NULL
);

-- The session role, resolved by OID, and its principal (NULLs when it is not one).
CREATE FUNCTION gcos._session_actor(OUT role_oid oid, OUT role_name text, OUT is_superuser boolean,
                                    OUT principal text, OUT kind text, OUT roles text[])
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT r.oid, r.rolname::text, r.rolsuper, p.display_name, p.kind, p.roles
      FROM pg_catalog.pg_roles AS r
      LEFT JOIN gcos.principals AS p ON p.role_oid = r.oid
     WHERE r.rolname = session_user
$$;

-- ----------------------------------------------------------------------------------- ledger

CREATE TABLE gcos.ledger (
    seq bigint PRIMARY KEY CHECK (seq > 0),
    prev_hash text NOT NULL UNIQUE CHECK (prev_hash ~ '^[0-9a-f]{64}$'),
    hash text NOT NULL UNIQUE CHECK (hash ~ '^[0-9a-f]{64}$'),
    canonical text NOT NULL,
    record jsonb GENERATED ALWAYS AS (canonical::jsonb) STORED,
    kind text GENERATED ALWAYS AS (canonical::jsonb ->> 'kind') STORED,
    step_id text GENERATED ALWAYS AS (canonical::jsonb ->> 'step_id') STORED,
    spec_hash text GENERATED ALWAYS AS (canonical::jsonb ->> 'spec_hash') STORED
);
CREATE INDEX ledger_step_idx ON gcos.ledger (step_id, seq);
CREATE INDEX ledger_kind_idx ON gcos.ledger (kind, seq);

-- The chain head: one row, locked FOR UPDATE by every append, so appends are serialized and the
-- chain cannot fork.
CREATE TABLE gcos.ledger_head (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    seq bigint NOT NULL CHECK (seq >= 0),
    hash text NOT NULL CHECK (hash ~ '^[0-9a-f]{64}$')
);
INSERT INTO gcos.ledger_head (singleton, seq, hash) VALUES (true, 0, pg_catalog.repeat('0', 64));

ALTER TABLE gcos.principals ADD FOREIGN KEY (ledger_seq) REFERENCES gcos.ledger (seq);
ALTER TABLE gcos.principals_history ADD FOREIGN KEY (ledger_seq) REFERENCES gcos.ledger (seq);

-- A record enters the ledger only as the successor of the head, with its true hash.
CREATE FUNCTION gcos._ledger_insert_guard() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    h record;
BEGIN
    SELECT x.seq, x.hash INTO h FROM gcos.ledger_head AS x;
    IF NEW.seq IS DISTINCT FROM h.seq + 1 OR NEW.prev_hash IS DISTINCT FROM h.hash
       OR NEW.hash IS DISTINCT FROM pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(NEW.canonical, 'UTF8')), 'hex')
       OR (NEW.canonical::jsonb ->> 'seq') IS DISTINCT FROM NEW.seq::text
       OR (NEW.canonical::jsonb ->> 'prev_hash') IS DISTINCT FROM NEW.prev_hash THEN
        RAISE EXCEPTION 'gcos: ledger records are appended only through gcos.ledger_append'
            USING ERRCODE = 'GC001';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER gcos_ledger_insert BEFORE INSERT ON gcos.ledger
    FOR EACH ROW EXECUTE FUNCTION gcos._ledger_insert_guard();
ALTER TABLE gcos.ledger ENABLE ALWAYS TRIGGER gcos_ledger_insert;

-- The head moves forward by exactly one record, onto a record that exists and links to it.
CREATE FUNCTION gcos._ledger_head_guard() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.singleton IS DISTINCT FROM OLD.singleton OR NEW.seq IS DISTINCT FROM OLD.seq + 1
       OR NOT EXISTS (SELECT 1 FROM gcos.ledger AS l
                       WHERE l.seq = NEW.seq AND l.hash = NEW.hash AND l.prev_hash = OLD.hash) THEN
        RAISE EXCEPTION 'gcos: the ledger head only moves forward through gcos.ledger_append'
            USING ERRCODE = 'GC001';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER gcos_ledger_head_move BEFORE UPDATE ON gcos.ledger_head
    FOR EACH ROW EXECUTE FUNCTION gcos._ledger_head_guard();
ALTER TABLE gcos.ledger_head ENABLE ALWAYS TRIGGER gcos_ledger_head_move;

SELECT gcos._protect('gcos.ledger', true, false);
SELECT gcos._protect('gcos.ledger_head', false, true);
SELECT gcos._protect('gcos.principals_history', true, false);
SELECT gcos._protect('gcos.principals', false, false);  -- updated (never deleted) by gcos.add_principal

-- Kinds written only by their own aperture function, never through gcos.ledger_append.
CREATE FUNCTION gcos._reserved_kinds() RETURNS text[]
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT ARRAY['install', 'principal', 'approval', 'approval_revocation', 'decision', 'decision_revocation'] $$;

-- Append one record: actor, seq, time and hash are stamped here, inside the database. Internal: only
-- the SECURITY DEFINER functions (running as gcos_owner) and install call it.
CREATE FUNCTION gcos._ledger_write(p_kind text, p_step_id text, p_spec_hash text, p_trace_id text,
                                   p_span_id text, p_payload jsonb, OUT seq bigint, OUT hash text)
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_actor record;
    v_head record;
    v_trace text := COALESCE(p_trace_id, pg_catalog.replace(pg_catalog.gen_random_uuid()::text, '-', ''));
    v_span text := COALESCE(p_span_id, pg_catalog.left(pg_catalog.replace(pg_catalog.gen_random_uuid()::text, '-', ''), 16));
    v_seq bigint;
    v_record jsonb;
    v_canonical text;
    v_hash text;
BEGIN
    IF p_kind IS NULL OR p_kind !~ E'^[a-z][a-z0-9_]*(\\.[a-z0-9_]+)*$' OR pg_catalog.length(p_kind) > 63 THEN
        PERFORM gcos._invalid(pg_catalog.format('gcos: ledger kind %L is invalid; use lowercase words such as rehearsal or commit', p_kind));
    END IF;
    IF p_step_id IS NOT NULL AND (p_step_id !~ '^[A-Za-z][A-Za-z0-9]*(-[A-Za-z0-9]+)*$' OR pg_catalog.length(p_step_id) > 63) THEN
        PERFORM gcos._invalid(pg_catalog.format('gcos: step id %L is invalid', p_step_id));
    END IF;
    IF p_spec_hash IS NOT NULL AND p_spec_hash !~ '^[0-9a-f]{64}$' THEN
        PERFORM gcos._invalid('gcos: a spec hash is 64 lowercase hex digits');
    END IF;
    IF v_trace !~ '^[0-9a-f]{32}$' OR v_trace = pg_catalog.repeat('0', 32) THEN
        PERFORM gcos._invalid('gcos: trace_id must be 32 lowercase hex digits, not all zero');
    END IF;
    IF v_span !~ '^[0-9a-f]{16}$' OR v_span = pg_catalog.repeat('0', 16) THEN
        PERFORM gcos._invalid('gcos: span_id must be 16 lowercase hex digits, not all zero');
    END IF;
    IF p_payload IS NULL OR pg_catalog.jsonb_typeof(p_payload) <> 'object' THEN
        PERFORM gcos._invalid('gcos: a ledger payload is a JSON object');
    END IF;

    SELECT * INTO v_actor FROM gcos._session_actor();
    IF v_actor.principal IS NULL AND NOT v_actor.is_superuser THEN
        PERFORM gcos._refuse(pg_catalog.format(
            'gcos: session role %I is not a registered principal; ask a gcos admin to run gcos principals add %s',
            v_actor.role_name, v_actor.role_name));
    END IF;

    SELECT h.seq, h.hash INTO v_head FROM gcos.ledger_head AS h WHERE h.singleton FOR UPDATE;
    v_seq := v_head.seq + 1;
    v_record := pg_catalog.jsonb_build_object(
        'format_version', 1,
        'seq', v_seq,
        'prev_hash', v_head.hash,
        'recorded_at', gcos._utc(pg_catalog.clock_timestamp()),
        'trace_id', v_trace,
        'span_id', v_span,
        'actor', pg_catalog.jsonb_build_object('principal', v_actor.principal, 'role', v_actor.role_name,
                                               'role_oid', v_actor.role_oid::bigint, 'kind', v_actor.kind),
        'kind', p_kind,
        'step_id', p_step_id,
        'spec_hash', p_spec_hash,
        'payload', p_payload);
    v_canonical := gcos.jcs(v_record);
    v_hash := pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(v_canonical, 'UTF8')), 'hex');
    INSERT INTO gcos.ledger (seq, prev_hash, hash, canonical) VALUES (v_seq, v_head.hash, v_hash, v_canonical);
    UPDATE gcos.ledger_head AS h SET seq = v_seq, hash = v_hash WHERE h.singleton;
    seq := v_seq;
    hash := v_hash;
END
$$;

CREATE FUNCTION gcos.ledger_append(p_kind text, p_step_id text, p_spec_hash text, p_trace_id text,
                                   p_span_id text, p_payload jsonb)
    RETURNS TABLE (seq bigint, hash text)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_kind = ANY (gcos._reserved_kinds()) THEN
        PERFORM gcos._refuse(pg_catalog.format(
            'gcos: %s records are written only by their own gcos function, not by gcos.ledger_append', p_kind));
    END IF;
    RETURN QUERY SELECT w.seq, w.hash FROM gcos._ledger_write(p_kind, p_step_id, p_spec_hash, p_trace_id,
                                                                p_span_id, p_payload) AS w;
END
$$;

-- ----------------------------------------------------------------------------------- principal aperture

CREATE FUNCTION gcos.whoami()
    RETURNS TABLE (role_oid oid, role_name text, is_superuser boolean, display_name text, kind text,
                   roles text[], created_at timestamptz, updated_at timestamptz)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT r.oid, r.rolname::text, r.rolsuper, p.display_name, p.kind, p.roles, p.created_at, p.updated_at
      FROM pg_catalog.pg_roles AS r
      LEFT JOIN gcos.principals AS p ON p.role_oid = r.oid
     WHERE r.rolname = session_user
$$;

-- Map a database role to a principal (or change the mapping). Callers: a superuser (the bootstrap,
-- CONTRACT "Authority") or a human principal holding the admin role, never for itself.
CREATE FUNCTION gcos.add_principal(p_role text, p_display_name text, p_kind text, p_roles text[],
                                   p_trace_id text DEFAULT NULL, p_span_id text DEFAULT NULL)
    RETURNS TABLE (role_oid oid, changed boolean, ledger_seq bigint)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_actor record;
    v_target record;
    v_old record;
    v_roles text[];
    v_now timestamptz := pg_catalog.clock_timestamp();
    v_write record;
BEGIN
    SELECT * INTO v_actor FROM gcos._session_actor();
    IF NOT v_actor.is_superuser THEN
        IF v_actor.principal IS NULL THEN
            PERFORM gcos._refuse(pg_catalog.format('gcos: session role %I is not a registered principal and cannot add principals', v_actor.role_name));
        ELSIF v_actor.kind <> 'human' OR NOT ('admin' = ANY (v_actor.roles)) THEN
            PERFORM gcos._refuse(pg_catalog.format('gcos: principal %s (%s) is not a human admin and cannot add principals', v_actor.principal, v_actor.kind));
        END IF;
    END IF;

    SELECT r.oid, r.rolname::text AS rolname INTO v_target FROM pg_catalog.pg_roles AS r WHERE r.rolname = p_role;
    IF v_target.oid IS NULL THEN
        PERFORM gcos._invalid(pg_catalog.format('gcos: database role %L does not exist; create it first', p_role));
    END IF;
    IF v_target.rolname IN ('gcos_owner', 'gcos_admin', 'gcos_operator', 'gcos_sovereign', 'gcos_council', 'gcos_auditor') THEN
        PERFORM gcos._invalid(pg_catalog.format('gcos: %s is a gcos group role, not a person or service', v_target.rolname));
    END IF;
    IF v_target.oid = v_actor.role_oid AND NOT v_actor.is_superuser THEN
        PERFORM gcos._refuse('gcos: an admin cannot change their own principal; ask another admin');
    END IF;
    IF p_kind IS NULL OR p_kind NOT IN ('human', 'agent', 'service') THEN
        PERFORM gcos._invalid(pg_catalog.format('gcos: principal kind %L is not one of human, agent, service', p_kind));
    END IF;
    IF p_display_name IS NULL OR p_display_name !~ E'\\S' OR p_display_name ~ '[[:cntrl:]]'
       OR pg_catalog.length(p_display_name) > 200 THEN
        PERFORM gcos._invalid('gcos: a principal name is 1 to 200 printable characters');
    END IF;
    IF p_roles IS NULL OR pg_catalog.array_position(p_roles, NULL) IS NOT NULL
       OR NOT (p_roles <@ ARRAY['sovereign', 'council', 'operator', 'auditor', 'admin']) THEN
        PERFORM gcos._invalid('gcos: principal roles are among sovereign, council, operator, auditor, admin');
    END IF;
    v_roles := ARRAY(SELECT DISTINCT x FROM pg_catalog.unnest(p_roles) AS u(x) ORDER BY x);

    SELECT p.* INTO v_old FROM gcos.principals AS p WHERE p.role_oid = v_target.oid FOR UPDATE;
    IF FOUND AND v_old.display_name = p_display_name AND v_old.kind = p_kind AND v_old.roles = v_roles
       AND v_old.role_name = v_target.rolname THEN
        RETURN QUERY SELECT v_target.oid::oid, false, NULL::bigint;
        RETURN;
    END IF;

    SELECT * INTO v_write FROM gcos._ledger_write('principal', NULL, NULL, p_trace_id, p_span_id,
        pg_catalog.jsonb_build_object('change', CASE WHEN v_old.role_oid IS NULL THEN 'added' ELSE 'changed' END,
                                      'role', v_target.rolname, 'role_oid', v_target.oid::bigint,
                                      'display_name', p_display_name, 'kind', p_kind,
                                      'roles', pg_catalog.to_jsonb(v_roles)));
    INSERT INTO gcos.principals AS p (role_oid, role_name, display_name, kind, roles, created_at, updated_at, ledger_seq)
    VALUES (v_target.oid, v_target.rolname, p_display_name, p_kind, v_roles, v_now, v_now, v_write.seq)
    ON CONFLICT ON CONSTRAINT principals_pkey DO UPDATE
       SET role_name = EXCLUDED.role_name, display_name = EXCLUDED.display_name, kind = EXCLUDED.kind,
           roles = EXCLUDED.roles, updated_at = EXCLUDED.updated_at, ledger_seq = EXCLUDED.ledger_seq;
    INSERT INTO gcos.principals_history (role_oid, role_name, display_name, kind, roles, changed_by_oid,
                                         changed_by, changed_at, ledger_seq)
    VALUES (v_target.oid, v_target.rolname, p_display_name, p_kind, v_roles, v_actor.role_oid,
            v_actor.role_name, v_now, v_write.seq);
    RETURN QUERY SELECT v_target.oid::oid, true, v_write.seq;
END
$$;

-- ----------------------------------------------------------------------------------- privileges

REVOKE ALL ON ALL TABLES IN SCHEMA gcos FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA gcos FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA gcos FROM PUBLIC;
GRANT SELECT ON gcos.schema_version, gcos.principals, gcos.principals_history, gcos.ledger, gcos.ledger_head
    TO gcos_admin, gcos_operator, gcos_sovereign, gcos_council, gcos_auditor;
GRANT EXECUTE ON FUNCTION gcos.installed_version(), gcos.whoami(), gcos.jcs(jsonb), gcos._jcs_string(text) TO PUBLIC;
GRANT EXECUTE ON FUNCTION gcos.ledger_append(text, text, text, text, text, jsonb)
    TO gcos_admin, gcos_operator, gcos_sovereign, gcos_council;
GRANT EXECUTE ON FUNCTION gcos.add_principal(text, text, text, text[], text, text) TO gcos_admin;
