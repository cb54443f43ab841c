-- gcos schema version 50: one path for a fingerprint proved unchanged (a review of 047/048).
--
-- 048's gcos._fp_take_proved measures every watched table its mark does not prove; with no table mark at all it
-- is exactly 047's gcos._fp_take_over (the schema part known, every table measured). 047's pair
-- (gcos._fp_take_over, gcos._kernel_digests_over) was then a near-copy reached only by a mark without tables,
-- which no caller makes since 048. gcos._kernel_fingerprint_proved now always takes 048's path, a missing table
-- mark standing for "no table proved", and 047's pair is dropped.
SET LOCAL ROLE gcos_owner;

CREATE OR REPLACE FUNCTION gcos._kernel_fingerprint_proved(p_watch text[], p_against jsonb, p_mark jsonb) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v jsonb;
BEGIN
    IF p_mark IS NOT NULL AND gcos._catalog_unchanged(p_mark) THEN
        v := gcos._kernel_digests_proved(p_watch, p_against, COALESCE(p_mark -> 'tables', '{}'));
        IF (v ->> 'hash') IS NOT DISTINCT FROM (p_against ->> 'hash') THEN
            RETURN v || jsonb_build_object('established', 'proved unchanged');
        END IF;
    END IF;
    RETURN gcos._kernel_fingerprint_vs(p_watch, p_against) || jsonb_build_object('established', 'measured');
END
$$;

RESET ROLE;
DROP FUNCTION gcos._kernel_digests_over(text[], jsonb);
DROP FUNCTION gcos._fp_take_over(text[], text[], text, jsonb);
