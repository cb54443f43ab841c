-- gcos reference world, part 1 of 5: the schema.
--
-- The "live baseline" that seed 002 (70 — GCOS Build Order & Stop Conditions) re-verifies before
-- each of its nine steps. Every object and number the seed names is here; where the seed names an
-- object but not its columns, the columns are our choice of what such a system would have, and the
-- comment on the table says so ("chosen:"). Everything is deterministic: no random(), no now(),
-- no clock in any stored value, so two builds give identical content.
--
-- Runs as an ordinary database owner (no superuser-only feature) on PostgreSQL 14 and later
-- (generated columns, gen_random_uuid() in core, sha256()). Loaded by gcos/reference_world.py in
-- ONE transaction together with parts 2-5.

-- ---------------------------------------------------------------- law (seed: "law counts 47/5/12")
-- The seed gives only three numbers. We read them as one charter-style legal corpus:
--   47 = law_articles  (the 47 articles, "Điều 1..47", of the One-Roof charter; the seed's
--                       "Điều-45" metadata rule is article 45 — see step 2, fold-in F-57-1),
--    5 = laws          (five laws; the charter is law 1),
--   12 = law_versions  (every law has at least one version; 3+3+2+2+2 = 12).
-- That order (articles/laws/versions) is the only one in which every law has a version and
-- article 45 exists. No gcos step may write any of the three (seed §70.2 item 2: "law
-- enactment/version/status change").
CREATE TABLE laws (
    law_id          integer PRIMARY KEY,
    law_code        text NOT NULL UNIQUE,
    title           text NOT NULL,
    status          text NOT NULL CHECK (status IN ('draft', 'enacted', 'repealed')),
    current_version integer NOT NULL
);
COMMENT ON TABLE laws IS
    'seed 002 §70.1 step 1 "law counts 47/5/12": the 5. chosen: law_code, title, status, current_version.';

CREATE TABLE law_versions (
    law_id      integer NOT NULL REFERENCES laws (law_id),
    version_no  integer NOT NULL CHECK (version_no > 0),
    status      text NOT NULL CHECK (status IN ('draft', 'enacted', 'superseded')),
    enacted_on  date,
    summary     text NOT NULL,
    PRIMARY KEY (law_id, version_no)
);
COMMENT ON TABLE law_versions IS
    'seed 002 §70.1 step 1 "law counts 47/5/12": the 12. A version bump is a law change: no gcos step may write here.';

CREATE TABLE law_articles (
    law_id      integer NOT NULL REFERENCES laws (law_id),
    article_no  integer NOT NULL CHECK (article_no > 0),
    heading     text NOT NULL,
    body        text NOT NULL,
    PRIMARY KEY (law_id, article_no)
);
COMMENT ON TABLE law_articles IS
    'seed 002 §70.1 step 1 "law counts 47/5/12": the 47 (articles "Điều 1..47" of law 1; article 45 is the metadata rule).';

-- ---------------------------------------------------------------- snapshots and measurements (step 1)
CREATE TABLE evolution_snapshots (
    snapshot_id   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    scope         text NOT NULL,
    subject       text NOT NULL,
    content_hash  text NOT NULL,
    payload       jsonb NOT NULL DEFAULT '{}'::jsonb,
    taken_at      timestamptz NOT NULL
);
COMMENT ON TABLE evolution_snapshots IS
    'seed 002 step 1: baseline (1); step 1 adds one row with scope ''governance.%'' (rollback deletes WHERE scope LIKE ''governance.%''). chosen: a uuid key so steps add rows without touching a sequence.';

CREATE TABLE measurement_registry (
    metric_key    text PRIMARY KEY,
    family        text NOT NULL,
    unit          text NOT NULL,
    source_table  text NOT NULL,
    enabled       boolean NOT NULL DEFAULT true,
    description   text NOT NULL
);
COMMENT ON TABLE measurement_registry IS
    'seed 002 step 1: "measurement_registry 140 enabled (hash input)"; the SSOT of the ruleset hash recipe.';

-- ---------------------------------------------------------------- queue, cursors, watermarks (step 2)
-- Fold-in F-57-1: "queue_heartbeat real cols + Điều-45 metadata safe-check". The real columns are
-- executor_name / executor_kind / metadata (jsonb); metadata may only carry operational keys
-- (version, host, region, build) — data keys are an article-45 violation.
CREATE TABLE queue_heartbeat (
    executor_name  text PRIMARY KEY,
    executor_kind  text NOT NULL CHECK (executor_kind IN ('PG_worker', 'node_service', 'edge_function')),
    queue_name     text NOT NULL,
    status         text NOT NULL CHECK (status IN ('registered', 'running', 'idle', 'stopped')),
    last_beat_at   timestamptz,
    pid            integer,
    metadata       jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(metadata) = 'object')
);
COMMENT ON TABLE queue_heartbeat IS
    'seed 002 step 2: baseline (3). Real columns per fold-in F-57-1; chosen: queue_name, status, last_beat_at, pid.';

-- The scheduler (seed 002 step 2 stops on "cron scheduled at build time": the seed's system schedules
-- with pg_cron). pg_cron is a server extension (shared_preload_libraries, one database per cluster) that an
-- ordinary database owner cannot load, so where it is not installed the world carries a stand-in of its
-- table cron.job (pg_cron's columns, readable by every role as pg_cron's is). No job is scheduled.
DO $cron$
BEGIN
    IF to_regclass('cron.job') IS NULL THEN
        CREATE SCHEMA IF NOT EXISTS cron;
        CREATE TABLE cron.job (
            jobid     bigserial PRIMARY KEY,
            schedule  text NOT NULL,
            command   text NOT NULL,
            nodename  text NOT NULL DEFAULT 'localhost',
            nodeport  integer NOT NULL DEFAULT 5432,
            database  text NOT NULL DEFAULT current_database(),
            username  text NOT NULL DEFAULT current_user,
            active    boolean NOT NULL DEFAULT true,
            jobname   text
        );
        COMMENT ON TABLE cron.job IS 'seed 002 step 2: the scheduler (a stand-in of pg_cron''s cron.job); no job at build time.';
        GRANT USAGE ON SCHEMA cron TO PUBLIC;
        GRANT SELECT ON cron.job TO PUBLIC;
    END IF;
END
$cron$;

CREATE TABLE event_pending (
    pending_id   uuid PRIMARY KEY,
    event_type   text NOT NULL,
    payload      jsonb NOT NULL DEFAULT '{}'::jsonb,
    enqueued_at  timestamptz NOT NULL
);
COMMENT ON TABLE event_pending IS 'seed 002 step 2: "event_pending 0". chosen columns.';

-- Watermark types (seed step 2): int for birth/changelog, uuid for cursor/outbox.
CREATE TABLE birth_registry (
    id                 bigint GENERATED BY DEFAULT AS IDENTITY,
    collection_name    text NOT NULL,
    entity_code        text NOT NULL,
    canonical_address  text,
    born_at            timestamptz NOT NULL,
    source_system      text NOT NULL
);
COMMENT ON TABLE birth_registry IS
    'seed 002 steps 3 and 9 ("Birth"): ~1.043M rows, integer watermark on id, canonical_address sometimes NULL (C-2), idempotency key collection_name:entity_code. No gcos step writes here. chosen: source_system.';

CREATE TABLE entity_changelog (
    id               bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    birth_id         bigint NOT NULL,
    collection_name  text NOT NULL,
    entity_code      text NOT NULL,
    change_kind      text NOT NULL CHECK (change_kind IN ('create', 'update', 'retire')),
    changed_at       timestamptz NOT NULL,
    payload          jsonb NOT NULL DEFAULT '{}'::jsonb
);
COMMENT ON TABLE entity_changelog IS
    'seed 002 step 2: the "changelog" source, integer watermark. chosen name and columns.';

-- ---------------------------------------------------------------- events (steps 2, 4, 8)
-- Fold-ins F-57-2/3/4 ("CHECK enum values"): the three enum CHECKs below are named so that step 4
-- can re-verify that the values it registers are admitted by the live constraints.
CREATE TABLE event_type_registry (
    event_type              text PRIMARY KEY,
    event_domain            text NOT NULL,
    severity                text NOT NULL,
    delivery                text NOT NULL,
    payload_schema_version  integer NOT NULL DEFAULT 1,
    active                  boolean NOT NULL DEFAULT false,
    registered_at           timestamptz NOT NULL,
    activated_at            timestamptz,
    description             text NOT NULL,
    CONSTRAINT event_type_registry_event_domain_check CHECK (event_domain IN
        ('birth', 'changelog', 'kb', 'law', 'dot', 'apr', 'queue', 'measurement', 'governance')),
    CONSTRAINT event_type_registry_severity_check CHECK (severity IN ('info', 'notice', 'warning', 'critical')),
    CONSTRAINT event_type_registry_delivery_check CHECK (delivery IN ('outbox', 'pending')),
    CONSTRAINT event_type_registry_activation_check CHECK (NOT active OR activated_at IS NOT NULL)
);
COMMENT ON TABLE event_type_registry IS
    'seed 002 step 4: 40 rows, 0 with event_domain=''governance''; register-before-emit. chosen: severity, delivery (the F-57-2/3/4 enum CHECKs), registered_at, activated_at.';

CREATE TABLE event_outbox (
    id            uuid PRIMARY KEY,
    event_type    text NOT NULL REFERENCES event_type_registry (event_type),
    event_domain  text NOT NULL,
    payload       jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at    timestamptz NOT NULL,
    published_at  timestamptz
);
COMMENT ON TABLE event_outbox IS
    'seed 002 steps 2/4/8: the one bus; uuid watermark; 0 governance rows (RE-5). chosen columns; the first id is 00004a74-….';

CREATE TABLE event_consumer_cursor (
    id             uuid PRIMARY KEY,
    consumer_name  text NOT NULL UNIQUE,
    last_event_id  uuid REFERENCES event_outbox (id),
    updated_at     timestamptz NOT NULL
);
COMMENT ON TABLE event_consumer_cursor IS
    'seed 002 step 2: the "cursor" source, uuid watermark. chosen name and columns.';

-- ---------------------------------------------------------------- DOTs (steps 6, 8)
CREATE TABLE dot_domains (
    code         text PRIMARY KEY,
    parent_code  text REFERENCES dot_domains (code),
    title        text NOT NULL
);
COMMENT ON TABLE dot_domains IS
    'seed 002 step 6: 46 domains, GCOS subdomains (governance.*) absent; the root ''governance'' is one of the 46. chosen columns.';

CREATE TABLE dot_tools (
    code         text PRIMARY KEY,
    domain_code  text NOT NULL REFERENCES dot_domains (code),
    tier         text NOT NULL CHECK (tier IN ('A', 'B', 'C')),
    capability   text NOT NULL CHECK (capability IN ('read', 'propose', 'apply')),
    apr_action   text CHECK (apr_action IN ('add', 'review')),
    enabled      boolean NOT NULL DEFAULT false,
    CHECK ((capability = 'read') = (apr_action IS NULL))
);
COMMENT ON TABLE dot_tools IS
    'seed 002 step 6: 309 tools, 0 governance. chosen: tier (baseline: A read, B propose, C apply; the GCOS DOTs of step 6 are tier A read/propose), capability, apr_action (the APR a propose/apply DOT files; RR-11 wants ''review'' for governance), enabled (step 8 activates, its rollback disables, never drops).';

CREATE TABLE dot_coverage_required (
    domain_code  text NOT NULL REFERENCES dot_domains (code),
    capability   text NOT NULL CHECK (capability IN ('read', 'propose', 'apply')),
    min_tools    integer NOT NULL CHECK (min_tools > 0),
    PRIMARY KEY (domain_code, capability)
);
COMMENT ON TABLE dot_coverage_required IS
    'seed 002 step 6: 11 rows, FK to dot_domains (fold-in F-R7-1: domains first). chosen columns.';

-- ---------------------------------------------------------------- APR, owners, relations (step 7)
CREATE TABLE apr_action_types (
    code            text PRIMARY KEY,
    domain          text NOT NULL,
    action          text NOT NULL CHECK (action IN ('add', 'review', 'update', 'retire')),
    handler_ref     text NOT NULL,
    phase           text NOT NULL CHECK (phase IN ('A', 'B')),
    requires_quorum boolean NOT NULL DEFAULT true
);
COMMENT ON TABLE apr_action_types IS
    'seed 002 step 7: 6 rows, no governance types; governance types must use action=''review'' (never ''add'') and Phase-A handler_ref=''unimplemented''. chosen columns.';

CREATE TABLE owner_agencies (
    agency_code  text PRIMARY KEY,
    name         text NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('sovereign', 'council', 'office'))
);
COMMENT ON TABLE owner_agencies IS 'seed 002 step 7: "the 6 owner agencies". chosen name and columns.';

-- The CHECK below is the one step 7 must NOT widen (stop condition: "widening governance_relations CHECK").
CREATE TABLE governance_relations (
    relation_id    integer PRIMARY KEY,
    from_ref       text NOT NULL,
    to_ref         text NOT NULL,
    relation_type  text NOT NULL,
    CONSTRAINT governance_relations_relation_type_check
        CHECK (relation_type IN ('depends_on', 'derived_from', 'supersedes', 'references', 'implements')),
    UNIQUE (from_ref, to_ref, relation_type)
);
COMMENT ON TABLE governance_relations IS
    'seed 002 step 7: its relation_type CHECK must not be widened (migration risk). chosen columns and rows.';

CREATE TABLE implementation_units (
    iu_code    text PRIMARY KEY,
    title      text NOT NULL,
    status     text NOT NULL CHECK (status IN ('planned', 'authored', 'live')),
    authority  text NOT NULL
);
COMMENT ON TABLE implementation_units IS
    'seed 002 step 7 "no GOV-IU": the registry of implementation units (IU, cf. seed 004); none is a governance IU. chosen name and columns.';

-- seed 002 step 7: "fn_apr_quorum_check enforces proposer≠approver"; NULL on either side is no quorum.
CREATE FUNCTION fn_apr_quorum_check(p_proposer text, p_approver text)
RETURNS boolean
LANGUAGE sql IMMUTABLE
AS $$ SELECT COALESCE(p_proposer <> p_approver, false) $$;
COMMENT ON FUNCTION fn_apr_quorum_check(text, text) IS
    'seed 002 step 7: an APR quorum needs an approver other than the proposer (no self-approval).';

-- ---------------------------------------------------------------- KB documents (step 6)
CREATE TABLE kb_documents (
    doc_no            integer PRIMARY KEY,
    slug              text NOT NULL UNIQUE,
    title             text NOT NULL,
    current_revision  integer NOT NULL,
    body              text NOT NULL,
    updated_at        timestamptz NOT NULL
);
COMMENT ON TABLE kb_documents IS
    'seed 002 step 6: docs 24/25 receive the 10 T6/T7 addenda as a new, recorded revision. chosen columns.';

CREATE TABLE kb_document_revisions (
    doc_no       integer NOT NULL REFERENCES kb_documents (doc_no),
    revision     integer NOT NULL CHECK (revision > 0),
    body         text NOT NULL,
    change_note  text NOT NULL,
    addenda      jsonb NOT NULL DEFAULT '[]'::jsonb CHECK (jsonb_typeof(addenda) = 'array'),
    created_at   timestamptz NOT NULL,
    PRIMARY KEY (doc_no, revision)
);
COMMENT ON TABLE kb_document_revisions IS
    'seed 002 step 6: "KB revision rollback" restores the previous revision. chosen columns.';

-- T7 finding types (seed step 6 "register T7 finding types", step 8 "full T7 finding taxonomy").
CREATE TABLE finding_type_registry (
    code         text PRIMARY KEY,
    domain       text NOT NULL,
    severity     text NOT NULL CHECK (severity IN ('info', 'notice', 'warning', 'critical')),
    escalation   text NOT NULL CHECK (escalation IN ('finding_only', 'auto_remediate')),
    description  text NOT NULL
);
COMMENT ON TABLE finding_type_registry IS
    'seed 002 steps 6/8/9: where T7 finding types are registered; governance types escalate to findings only (C-7.4 forbids auto-remediation). chosen name and columns.';

-- ---------------------------------------------------------------- approvals (§70.0 M-1)
-- One os_proposal_approvals (issue 10 item 2): gcos records approvals in gcos.os_proposal_approvals
-- through `gcos approve`, and this name is a VIEW of the ones valid now (those commit gate 5 counts; see
-- gcos/sql/021_os_proposal_approvals.sql), so "os_proposal_approvals>0" for a step means it may be
-- committed as far as approvals go. Built where gcos is installed, it is that view at once; built without
-- gcos, it reads 0 rows ("Live: os_proposal_approvals=0 → COMMIT_FORBIDDEN"), and `gcos install` turns
-- it into the view (same columns). Nobody writes it: approvals go only through gcos approve.
DO $$
BEGIN
    IF to_regprocedure('gcos.proposal_approvals()') IS NOT NULL THEN
        CREATE VIEW os_proposal_approvals AS
        SELECT approval_id, step_id, spec_hash, plan_hash, verdict, approver, approver_roles, note,
               created_at, expires_at, ledger_seq
          FROM gcos.proposal_approvals();
    ELSE
        CREATE VIEW os_proposal_approvals AS
        SELECT NULL::bigint AS approval_id, NULL::text AS step_id, NULL::text AS spec_hash,
               NULL::text AS plan_hash, NULL::text AS verdict, NULL::text AS approver,
               NULL::text[] AS approver_roles, NULL::text AS note, NULL::timestamptz AS created_at,
               NULL::timestamptz AS expires_at, NULL::bigint AS ledger_seq
         WHERE false;
    END IF;
END
$$;
-- Written by nobody: INSERT, UPDATE and DELETE are permission denied for every role but the owner (the kernel,
-- once public is adopted), and even the owner or a superuser meets this refusal.
CREATE FUNCTION os_proposal_approvals_refuse() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION 'os_proposal_approvals lists the approvals gcos records; approve with gcos approve, withdraw with gcos revoke'
        USING ERRCODE = '42501';
END
$$;
CREATE TRIGGER os_proposal_approvals_refuse INSTEAD OF INSERT OR UPDATE OR DELETE ON os_proposal_approvals
    FOR EACH ROW EXECUTE FUNCTION os_proposal_approvals_refuse();
-- Readable by every role (executing the gcos function behind it takes a gcos role: agents, operators,
-- sovereigns, council members, auditors and the kernel); writable by none.
GRANT SELECT ON os_proposal_approvals TO PUBLIC;
COMMENT ON VIEW os_proposal_approvals IS
    'seed 002 §70.0 M-1 "os_proposal_approvals>0": the approvals valid now (those gate 5 counts), one row each, of gcos.os_proposal_approvals (gcos approve writes them; nobody writes this view).';

-- ---------------------------------------------------------------- the world's own marker
CREATE TABLE reference_world_baseline (
    table_name     text PRIMARY KEY,
    baseline_rows  bigint NOT NULL CHECK (baseline_rows >= 0)
);
COMMENT ON TABLE reference_world_baseline IS
    'gcos reference world (seed 002) v1: every baseline table and its row count at build time. Step 5 and the plans'' footprint stop read it to tell new tables from reused ones.';
