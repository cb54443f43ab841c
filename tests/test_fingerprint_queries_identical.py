"""The fingerprint's catalog queries are tuned for speed only: on a world holding every object kind the
fingerprint describes (and identities that need JSON escaping or UTF-16 ordering), every category's rows
(identity, definition) are those of the reference texts (tests/data/fingerprint_sql_reference: the queries
as they were when ledgers recorded their hashes), and ``gcos.fingerprint_digests`` gives the schema hash and
per-category digests that 005's aggregation of those reference rows gives. Any changed definition fails."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from gcos import fingerprint
from gcos.install import fingerprint_queries

Conn = psycopg.Connection[Any]
REFERENCE = Path(__file__).parent / "data" / "fingerprint_sql_reference"
SETTINGS = (
    "SET search_path = pg_catalog, pg_temp; SET datestyle = 'ISO, YMD'; SET intervalstyle = 'postgres';"
    " SET timezone = 'UTC'; SET extra_float_digits = 1; SET bytea_output = 'hex'; SET lc_monetary = 'C';"
    " SET quote_all_identifiers = off; SET standard_conforming_strings = on; SET row_security = off"
)
# 005's head as it was (gcos._fp_json_sql and gcos._fp_order_sql of 005, expanded): the reference aggregation.
_KEY = (
    """(CASE WHEN q.identity !~ E'[\\\\x01-\\\\x1f"\\\\\\\\]' THEN '"' || q.identity || '"'"""
    """ WHEN q.identity !~ E'[\\\\x01-\\\\x1f]'"""
    """ THEN '"' || replace(replace(q.identity, E'\\\\', E'\\\\\\\\'), '"', E'\\\\"') || '"'"""
    " ELSE gcos._jcs_string(q.identity) END)"
)
_UTF16 = (
    "(CASE WHEN q.identity ~ E'[\\\\uE000-\\\\U0010FFFF]' THEN regexp_replace(replace(q.identity, chr(1114111),"
    " chr(1114111) || chr(1)), E'([\\\\uE000-\\\\uFFFF])', chr(1114111) || E'\\\\1', 'g') ELSE q.identity END)"
    ' COLLATE "C"'
)

RICH_WORLD = r"""
CREATE SCHEMA s2;
CREATE SCHEMA "we""ird\sch";
CREATE TYPE s2.mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN s2.posint AS int NOT NULL DEFAULT 1 CONSTRAINT posint_pos CHECK (VALUE > 0);
CREATE TYPE s2.pair AS (a int, b text COLLATE "C");
CREATE TYPE s2.floatr AS RANGE (subtype = float8);
CREATE COLLATION s2.nat (provider = libc, locale = 'C');
CREATE SEQUENCE s2.seq AS int START 5 INCREMENT 3 MINVALUE 2 MAXVALUE 1000 CACHE 2 CYCLE;
CREATE TABLE s2.parent (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text COLLATE s2.nat NOT NULL DEFAULT 'x',
    mood s2.mood, g int GENERATED ALWAYS AS (length(name)) STORED, p s2.posint, r s2.floatr,
    note text COMPRESSION pglz, dropme int, serial_col serial, nums numeric(10, 2)[] DEFAULT '{1.5}');
ALTER TABLE s2.parent DROP COLUMN dropme;
ALTER TABLE s2.parent ALTER COLUMN note SET STATISTICS 50, ALTER COLUMN note SET (n_distinct = 5),
    ALTER COLUMN name SET STORAGE external, REPLICA IDENTITY FULL;
ALTER SEQUENCE s2.seq OWNED BY s2.parent.note;
CREATE TABLE s2.child (extra int DEFAULT nextval('s2.seq')) INHERITS (s2.parent);
CREATE TABLE s2.part (id int, k date, v text, CONSTRAINT part_pk PRIMARY KEY (id, k)) PARTITION BY RANGE (k);
CREATE TABLE s2.part_2024 PARTITION OF s2.part FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE s2.part_def PARTITION OF s2.part DEFAULT;
CREATE TABLE s2.lp (a text COLLATE "C", b int) PARTITION BY LIST (a);
CREATE TABLE s2.lp_ab PARTITION OF s2.lp FOR VALUES IN ('a', 'b', NULL);
CREATE TABLE s2.hp (a int, b int) PARTITION BY HASH (a, (b + 1));
CREATE TABLE s2.hp_0 PARTITION OF s2.hp FOR VALUES WITH (modulus 2, remainder 0);
CREATE TABLE s2.rp (a int, b timestamptz) PARTITION BY RANGE (a, b);
CREATE TABLE s2.rp_1 PARTITION OF s2.rp FOR VALUES FROM (MINVALUE, MINVALUE) TO (10, '2024-01-01 00:00+02');
CREATE TABLE s2.base2 (z int);
CREATE TABLE s2.child2 (more int) INHERITS (s2.child, s2.base2);
CREATE TABLE s2.ref (id int PRIMARY KEY, pid bigint REFERENCES s2.parent (id) ON DELETE CASCADE
    DEFERRABLE INITIALLY DEFERRED, during tsrange, room int, UNIQUE NULLS NOT DISTINCT (room),
    EXCLUDE USING gist (during WITH &&));
ALTER TABLE s2.ref ADD CONSTRAINT ref_chk CHECK (id < 1000000) NOT VALID, DISABLE TRIGGER ALL;
CREATE UNIQUE INDEX ref_expr ON s2.ref (lower(room::text)) WHERE id > 10;
ALTER INDEX s2.ref_expr ALTER COLUMN 1 SET STATISTICS 100;
CREATE INDEX ref_incl ON s2.ref (room DESC NULLS LAST) INCLUDE (during) WITH (fillfactor = 70);
CREATE INDEX ref_coll ON s2.ref ((room::text) COLLATE "C" text_pattern_ops);
CLUSTER s2.ref USING ref_incl;
CREATE TABLE s2.docs (t tsvector, n int);
CREATE INDEX docs_t ON s2.docs USING gist (t tsvector_ops (siglen = 100)) WITH (buffering = off);
CREATE INDEX docs_e ON s2.docs USING gist (t tsvector_ops (siglen = 8), (to_tsvector('simple', n::text)));
ALTER INDEX s2.docs_e ALTER COLUMN 2 SET STATISTICS 10;
CREATE VIEW s2.v AS SELECT id, name FROM s2.parent WHERE id > 1 WITH CHECK OPTION;
CREATE MATERIALIZED VIEW s2.mv AS SELECT count(*) AS n FROM s2.parent WITH NO DATA;
CREATE FOREIGN DATA WRAPPER w;
CREATE SERVER srv FOREIGN DATA WRAPPER w OPTIONS (host 'x');
CREATE FOREIGN TABLE s2.ft (a int OPTIONS (column_name 'b') NOT NULL) SERVER srv OPTIONS (t 'y');
CREATE POLICY p1 ON s2.parent USING (id > 0);
ALTER TABLE s2.parent ENABLE ROW LEVEL SECURITY;
CREATE RULE r1 AS ON INSERT TO s2.v DO INSTEAD NOTHING;
CREATE FUNCTION s2.trg() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;
CREATE TRIGGER t1 BEFORE INSERT ON s2.parent FOR EACH ROW EXECUTE FUNCTION s2.trg();
CREATE PUBLICATION pub FOR TABLE s2.ref;
CREATE STATISTICS s2.st ON id, name FROM s2.parent;
CREATE TEXT SEARCH CONFIGURATION s2.cfg (COPY = english);
CREATE UNLOGGED TABLE s2.u (a int, b int);
CREATE TABLE s2.typed OF s2.pair;
CREATE TABLE "we""ird\sch"."tab""le" ("col""umn" int DEFAULT 7, U&"ctl\0001x" text, U&"tab\0009x" int);
CREATE TABLE "we""ird\sch"."t😀" ("c😀" int);
CREATE TABLE "we""ird\sch".U&"t\E000" ("c" int);
CREATE TABLE "we""ird\sch".U&"t\FFFDz" ("c" int);
CREATE INDEX "we""ird\sch_idx" ON "we""ird\sch"."tab""le" ("col""umn");
GRANT SELECT ON s2.parent TO PUBLIC;
GRANT UPDATE (name) ON s2.parent TO PUBLIC;
GRANT USAGE ON TYPE s2.mood TO PUBLIC;
GRANT USAGE ON SEQUENCE s2.seq TO PUBLIC;
ALTER DEFAULT PRIVILEGES IN SCHEMA s2 GRANT SELECT ON TABLES TO PUBLIC;
COMMENT ON SCHEMA s2 IS 'schema';
COMMENT ON TABLE s2.parent IS 'parent "quoted" \ table';
COMMENT ON COLUMN s2.parent.name IS E'multi\nline';
COMMENT ON INDEX s2.ref_expr IS 'index';
COMMENT ON CONSTRAINT ref_chk ON s2.ref IS 'check';
COMMENT ON CONSTRAINT posint_pos ON DOMAIN s2.posint IS 'domain check';
COMMENT ON TYPE s2.mood IS 'enum';
COMMENT ON SEQUENCE s2.seq IS 'sequence';
COMMENT ON VIEW s2.v IS 'view';
COMMENT ON FUNCTION s2.trg() IS 'function';
COMMENT ON POLICY p1 ON s2.parent IS 'policy';
"""
PG18_WORLD = r"""
ALTER TABLE s2.u ADD CONSTRAINT u_nn NOT NULL a;
ALTER TABLE s2.u ADD CONSTRAINT u_nn_b NOT NULL b NOT VALID;
COMMENT ON CONSTRAINT u_nn ON s2.u IS 'not null';
"""


def adapted(text: str, version: int) -> str:
    """A reference text as install loads it: newer columns for this server, parameters $1 and $2."""
    for since, column, replacement in fingerprint._NEWER_COLUMNS:
        if version < since:
            text = text.replace(column, replacement)
    return text.replace("%(exclude)s", "$1").replace("%(no_extensions)s", "$2")


def rows(conn: Conn, query: str, no_extensions: bool) -> list[tuple[str, ...]]:
    stmt = f"SELECT * FROM ({query}\n) AS q"
    with conn.cursor() as cur:
        cur.execute(SETTINGS)
        found = cur.execute(
            stmt.replace("$1", "%(x)s").replace("$2", "%(n)s"), {"x": ["gcos"], "n": no_extensions}
        ).fetchall()
    return sorted(tuple(str(v) for v in r) for r in found)


def reference_aggregate(conn: Conn, query: str, no_extensions: bool, utf16: bool) -> str:
    """005's aggregation of one category's reference rows: "identity":"sha256(definition)" by identity."""
    order = _UTF16 if utf16 else 'q.identity COLLATE "C"'
    stmt = (
        f"SELECT string_agg({_KEY} || ':\"' || encode(sha256(convert_to(q.definition, 'UTF8')), 'hex') || '\"',"
        f" ',' ORDER BY {order}) FROM ({query}\n) AS q(identity, definition)"
    )
    with conn.cursor() as cur:
        cur.execute(SETTINGS)
        row = cur.execute(
            stmt.replace("$1", "%(x)s").replace("$2", "%(n)s"), {"x": ["gcos"], "n": no_extensions}
        ).fetchone()
    assert row is not None
    return str(row[0] or "")


def check_identical(conn: Conn) -> None:
    version = conn.info.server_version
    row = conn.execute("SELECT NOT EXISTS (SELECT FROM pg_extension AS x WHERE x.extname <> 'plpgsql')").fetchone()
    assert row is not None
    no_extensions = bool(row[0])
    loaded = fingerprint_queries(version)
    references = {name: adapted((REFERENCE / f"{name}.sql").read_text(encoding="utf-8"), version) for name in loaded}
    legacy = "sequence_state" if version < 180000 else "sequence_state_legacy"
    for name in (n for n in loaded if n != legacy):
        assert rows(conn, loaded[name], no_extensions) == rows(conn, references[name], no_extensions), name
    parts = {
        name: reference_aggregate(conn, references[name], no_extensions, utf16=False)
        for name in sorted(fingerprint.CATEGORIES)
    }
    schema = "{" + ",".join(f'"{n}":{{{parts[n]}}}' for n in sorted(parts)) + "}"
    if any(ord(ch) > 0xFFFF for ch in schema):
        parts = {
            name: reference_aggregate(conn, references[name], no_extensions, utf16=True)
            for name in sorted(fingerprint.CATEGORIES)
        }
        schema = "{" + ",".join(f'"{n}":{{{parts[n]}}}' for n in sorted(parts)) + "}"
    got = conn.execute("SELECT gcos.fingerprint_digests()").fetchone()
    assert got is not None
    assert got[0]["schema_hash"] == hashlib.sha256(schema.encode("utf-8")).hexdigest()
    assert got[0]["digests"] == {n: hashlib.sha256(("{" + parts[n] + "}").encode("utf-8")).hexdigest() for n in parts}


def test_rich_world_fingerprints_as_the_reference_queries(conn: Conn, gcos_installed: None) -> None:
    conn.execute(RICH_WORLD)
    if conn.info.server_version >= 180000:
        conn.execute(PG18_WORLD)
    conn.execute(sql.SQL("ALTER DATABASE {} SET work_mem = '5MB'").format(sql.Identifier(conn.info.dbname)))
    row = conn.execute("SELECT gcos.fingerprint_digests()->'digests'").fetchone()
    assert row is not None and len(row[0]) == len(fingerprint.CATEGORIES)
    check_identical(conn)
    # the world holds what the escaping and the UTF-16 order are about
    objects = conn.execute("SELECT identity FROM gcos.fingerprint_objects('relation', '{gcos}')").fetchall()
    names = {str(r[0]) for r in objects}
    index = " ".join(d for _, d in rows(conn, fingerprint_queries(conn.info.server_version)["index"], True))
    assert "siglen=100" in index and "STATISTICS 10" in index and "(expression)" in index
    assert {'"we""ird\\sch"."t😀"', '"we""ird\\sch"."t\ue000"', '"we""ird\\sch"."tab""le"'} <= names


def test_reference_world_fingerprints_as_the_reference_queries(world_dsn: str, gcos_installed: None) -> None:
    with psycopg.connect(world_dsn, autocommit=True) as conn:
        check_identical(conn)


@pytest.mark.parametrize("name", sorted(fingerprint.CATEGORIES))
def test_reference_texts_cover_every_category(name: str) -> None:
    assert (REFERENCE / f"{name}.sql").is_file()
