-- Erasure that no session setting can steer (issue 16, item 11).
--
-- 0012's late pass (the deferred peer_mentor_scenario_erase_late_v1) read its high-water mark
-- from a custom setting, scenario_engine.erase_events_after, which the statement-level pass set
-- only when it was empty. Any session may preset a custom setting, so a platform session that
-- set it to 'garbage' made its own delete of a mentor fail at COMMIT (the cast, outside
-- any EXCEPTION block), and one that set it to a huge number left the cascaded scenario_event
-- rows naming the erased mentor in place.
--
-- Now the mark is a row of an engine table, keyed by the top-level transaction id
-- (pg_current_xact_id(), the same inside savepoints and EXCEPTION blocks). Only the engine's
-- SECURITY DEFINER functions write it: no platform role has any privilege on the table, and no
-- setting is read. The late pass also runs entirely inside an EXCEPTION block, so nothing it
-- meets can fail the platform's COMMIT; without a mark (the statement-level trigger missing) it
-- does nothing, as before.
--
-- Marks of finished transactions (txid below the oldest running one: committed or rolled back)
-- are deleted by the next erasing statement, skipping rows another eraser holds — the table
-- holds a handful of rows at most, and no DELETE ever waits on another.
CREATE TABLE IF NOT EXISTS scenario_engine.scenario_erasure_mark (
    txid         xid8 PRIMARY KEY,
    events_after bigint NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE scenario_engine.scenario_erasure_mark ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON scenario_engine.scenario_erasure_mark FROM PUBLIC;

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
    BEGIN
        DELETE FROM scenario_engine.scenario_erasure_mark
        WHERE txid IN (SELECT m.txid FROM scenario_engine.scenario_erasure_mark m
                       WHERE m.txid < pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot())
                       FOR UPDATE SKIP LOCKED);
        INSERT INTO scenario_engine.scenario_erasure_mark (txid, events_after)
        SELECT pg_catalog.pg_current_xact_id(), coalesce(pg_catalog.max(e.id), 0)
        FROM scenario_engine.scenario_event e
        ON CONFLICT (txid) DO NOTHING;
    EXCEPTION WHEN OTHERS THEN
        RAISE WARNING 'scenario_engine: erasure mark not recorded: % (run scenario-engine forget)', SQLERRM;
    END;
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
    v_after bigint;
BEGIN
    BEGIN
        SELECT m.events_after INTO v_after FROM scenario_engine.scenario_erasure_mark m
        WHERE m.txid = pg_catalog.pg_current_xact_id();
        IF v_after IS NULL THEN  -- the statement-level pass did not run (its trigger is missing)
            RETURN NULL;
        END IF;
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
