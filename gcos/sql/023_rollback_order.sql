-- gcos schema version 23: a rollback refused because later commits changed the schema names them and the
-- order to undo them in (issue 10 item 10), instead of sending the operator to `gcos drift`, which finds
-- nothing when the change was a governed commit. Only a change no commit explains still points at drift.
-- Gate 4 of a rollback, as 010 defined it, but for that reason.
SET LOCAL ROLE gcos_owner;

CREATE OR REPLACE FUNCTION gcos._gate_rehearsal_rollback(c jsonb) RETURNS jsonb
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_sid text := c ->> 'step_id';
    r jsonb := c -> 'rehearsal';
    v_commit text := c #>> '{history,commit_seq}';
    v_after text := c #>> '{history,commit_schema_hash}';
    v_now text := c #>> '{world,schema_hash}';
    v_later text;
    v_last text;
BEGIN
    IF v_commit IS NULL THEN
        RETURN gcos._gate(4, 'rehearsal', false, v_sid || ' has no commit in force to roll back', 'gcos status ' || v_sid, 'check with');
    ELSIF r IS NULL OR r ->> 'outcome' IS DISTINCT FROM 'passed' OR r ->> 'spec_hash' IS DISTINCT FROM c ->> 'spec_hash' THEN
        RETURN gcos._gate(4, 'rehearsal', false, pg_catalog.format('no passing rehearsal of spec %s preceded %s''s commit (seq '
                          '%s), so its rollback evidence is unproven', gcos._short(c ->> 'spec_hash'), v_sid, v_commit),
                          'gcos status ' || v_sid, 'check with');
    ELSIF v_now IS NULL THEN
        RETURN gcos._gate(4, 'rehearsal', false, pg_catalog.format('rehearsal seq %s proved the rollback evidence; the schema '
                          'is compared with the one after commit seq %s when rolling back', r ->> 'seq', v_commit),
                          'gcos rollback ' || v_sid, 'compared by', false, ARRAY[(r ->> 'seq')::bigint]);
    ELSIF v_after IS NULL OR v_now <> v_after THEN
        -- Commits still in force that came after this one, latest first: the order to undo them in.
        SELECT pg_catalog.string_agg(pg_catalog.format('%s (commit seq %s)', l.step_id, l.seq), ', then ' ORDER BY l.seq DESC),
               (pg_catalog.array_agg(l.step_id ORDER BY l.seq DESC))[1]
          INTO v_later, v_last
          FROM gcos.ledger AS l
         WHERE l.kind = 'commit' AND l.seq > v_commit::bigint
           AND (gcos._step_history(l.step_id) ->> 'commit_seq')::bigint = l.seq;
        IF v_later IS NOT NULL THEN
            RETURN gcos._gate(4, 'rehearsal', false, pg_catalog.format('%s was committed at seq %s and later commits changed '
                              'the schema since; roll them back first, latest first: %s; then %s', v_sid, v_commit,
                              v_later, v_sid), 'gcos rollback ' || v_last, 'start with');
        END IF;
        RETURN gcos._gate(4, 'rehearsal', false, pg_catalog.format('database changed since the commit of %s (seq %s: schema '
                          '%s, now %s) and no later commit did it — its rollback evidence no longer applies', v_sid, v_commit,
                          gcos._short(v_after), gcos._short(v_now)), 'gcos drift', 'find what changed with');
    END IF;
    RETURN gcos._gate(4, 'rehearsal', true, pg_catalog.format('rehearsal seq %s proved the rollback evidence and the '
                      'schema is as commit seq %s left it', r ->> 'seq', v_commit), '', 'nothing to do', true,
                      ARRAY[(r ->> 'seq')::bigint]);
END
$$;
