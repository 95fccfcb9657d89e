-- Personal data (issue 10, item 6): erasure when the platform deletes a mentor, and the
-- indexes that let the retention pruner find its work without rereading what it already did.

-- 1. A peer_mentor DELETE erases the mentor's engine rows (the triggers themselves are units in
--    sql/triggers/hooks.sql: peer_mentor_scenario_erase_v1 and peer_mentor_scenario_erase_late_v1).
--
--    scenario_erase_mentor_v1: statement-level, with a transition table — one pass per DELETE
--    statement whatever its row count. Generic: every uuid (and uuid[]) column of every table in
--    scenario_engine is matched against the deleted ids, so an engine table added later (e.g.
--    scenario_quarantine) is covered without touching this function. Text that merely contains
--    an id (dedup keys, idempotency keys) sits in a row whose mentor_id names the mentor;
--    `scenario-engine forget` also scans text and jsonb. scenario_event has no index on
--    mentor_id (a hot queue table: every platform write pays for its indexes), so a DELETE
--    statement reads it once.
--
--    scenario_erase_mentor_late_events_v1: the platform's own ON DELETE CASCADE runs its
--    child deletes with their trigger events queued *after* this statement's triggers, so the
--    scenario_event rows that the cascaded activity/certification/... deletes write (they name
--    the mentor) appear only after the pass above. A deferred constraint trigger erases them at
--    commit: events of the mentor with an id above the high-water mark that the first pass of
--    the transaction recorded (a primary-key range, normally a handful of rows).
--
--    Neither may make the platform's DELETE (or its COMMIT) fail or wait:
--      * rows locked by a running engine transaction (a drain batch, a push being sent) are
--        skipped (FOR UPDATE SKIP LOCKED), never waited for — so no lock wait, no deadlock;
--        the engine finishes with them and `scenario-engine forget` removes what is left;
--      * each table is erased in its own sub-block: an error there (e.g. a serialization
--        failure of a REPEATABLE READ platform transaction) becomes a WARNING and the rest goes
--        on.
--    SECURITY DEFINER (the engine's owner; a platform role needs no engine grant), fixed
--    search_path, qualified names. The deletes touch engine tables only, which have no
--    triggers: they produce no events.
CREATE OR REPLACE FUNCTION scenario_engine.scenario_erase_mentor_v1() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_ids uuid[];
    r     record;
BEGIN
    SELECT pg_catalog.array_agg(g.id) INTO v_ids FROM scenario_gone g WHERE g.id IS NOT NULL;
    IF v_ids IS NULL THEN
        RETURN NULL;
    END IF;
    -- The late-events pass starts above the newest event before the transaction's first erasure.
    IF coalesce(pg_catalog.current_setting('scenario_engine.erase_events_after', true), '') = '' THEN
        PERFORM pg_catalog.set_config('scenario_engine.erase_events_after',
            (SELECT coalesce(pg_catalog.max(e.id), 0) FROM scenario_engine.scenario_event e)::text,
            true);
    END IF;
    FOR r IN
        SELECT c.oid::regclass AS rel, a.attname,
               a.atttypid = 'pg_catalog.uuid[]'::pg_catalog.regtype AS is_array
        FROM pg_catalog.pg_class c
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid
        WHERE n.nspname = 'scenario_engine' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
          AND a.attnum > 0 AND NOT a.attisdropped
          AND a.atttypid IN ('pg_catalog.uuid'::pg_catalog.regtype, 'pg_catalog.uuid[]'::pg_catalog.regtype)
        ORDER BY c.relname, a.attname
    LOOP
        BEGIN
            -- (tableoid, ctid) identifies a row even in a partitioned table.
            EXECUTE pg_catalog.format(
                'DELETE FROM %1$s WHERE (tableoid, ctid) IN ('
                '  SELECT tableoid, ctid FROM %1$s WHERE %2$s FOR UPDATE SKIP LOCKED)',
                r.rel,
                CASE WHEN r.is_array THEN pg_catalog.format('%I && $1', r.attname)
                     ELSE pg_catalog.format('%I = ANY ($1)', r.attname) END)
            USING v_ids;
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'scenario_engine: mentor rows of % (%) not erased: % (run scenario-engine forget)',
                r.rel, r.attname, SQLERRM;
        END;
    END LOOP;
    RETURN NULL;
END;
$$;
REVOKE ALL ON FUNCTION scenario_engine.scenario_erase_mentor_v1() FROM PUBLIC;

CREATE OR REPLACE FUNCTION scenario_engine.scenario_erase_mentor_late_events_v1() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_after bigint := nullif(
        pg_catalog.current_setting('scenario_engine.erase_events_after', true), '')::bigint;
BEGIN
    IF v_after IS NULL THEN  -- the statement-level pass did not run (its trigger is missing)
        RETURN NULL;
    END IF;
    BEGIN
        DELETE FROM scenario_engine.scenario_event
        WHERE id IN (SELECT e.id FROM scenario_engine.scenario_event e
                     WHERE e.id > v_after AND (e.mentor_id = OLD.id OR e.old_mentor_id = OLD.id)
                     FOR UPDATE SKIP LOCKED);
    EXCEPTION WHEN OTHERS THEN
        RAISE WARNING 'scenario_engine: events of a deleted mentor not erased: % (run scenario-engine forget)',
            SQLERRM;
    END;
    RETURN NULL;
END;
$$;
REVOKE ALL ON FUNCTION scenario_engine.scenario_erase_mentor_late_events_v1() FROM PUBLIC;

-- 2. Retention (scenario_engine/privacy.py). The pruner strips the inputs of decisions and the
--    context of notifications past retention, and deletes finished pushes past retention.
--    Partial indexes hold exactly the rows still to do: a stripped or deleted row leaves the
--    index, so each batch costs its own size, never a walk over years of stripped history.
--    Each is one more index entry per notification, decision and push written (the price of
--    pruning by age: a walk over the stripped history would grow without end).
CREATE INDEX IF NOT EXISTS scenario_notification_unredacted_idx
    ON scenario_engine.scenario_notification (created_at) WHERE context <> '{}'::jsonb;
CREATE INDEX IF NOT EXISTS scenario_decision_unredacted_idx
    ON scenario_engine.scenario_decision (created_at) WHERE inputs <> '{}'::jsonb;
CREATE INDEX IF NOT EXISTS push_notification_finished_idx
    ON scenario_engine.push_notification (created_at)
    WHERE status IN ('sent', 'failed', 'dead', 'cancelled', 'abandoned');
