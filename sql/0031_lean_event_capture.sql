-- The platform's writes come first (issue 18, item 1): the row capture does the least it can.
--
-- Measured (docs/BENCHMARKS.md, "Platform inserts"): in poll mode the capture trigger cost a
-- single-row INSERT into activity about 40 µs of server CPU per transaction on top of ~90 µs,
-- and of that about 8 µs was the function's `SET search_path = pg_catalog, pg_temp` clause and
-- a few µs the per-row lookup of notify_mode in scenario_engine_setting (an SPI query: an
-- executor start and end per row). Both go:
--
-- 1. No SET clause. A function with one is called through fmgr_security_definer with a new
--    GUC nesting level: every call saves the search_path, sets it and restores it at exit.
--    The clause was there for the classic SECURITY DEFINER risk: a name in the body resolved
--    through the *caller's* search_path, so that a caller who can create objects somewhere on
--    its path (pg_temp included: relations and types are looked up there first) runs its own
--    operator, function, type or table with the owner's rights. Without the clause the body is
--    safe only if no name in it is looked up through the search_path, so every name is qualified:
--      * tables:     scenario_engine.scenario_event;
--      * functions:  pg_catalog.current_setting, pg_catalog.left, pg_catalog.pg_notify,
--                    pg_catalog.to_regclass, pg_catalog.pg_notification_queue_usage;
--      * operators:  OPERATOR(pg_catalog.=), OPERATOR(pg_catalog.<) — an unqualified `=` is an
--                    operator lookup through the search_path like any function's; IS DISTINCT
--                    FROM (which looks `=` up unqualified) is written as
--                    `(a OPERATOR(pg_catalog.=) b) IS NOT TRUE`: the same old_mentor_id results
--                    (NULL when both are NULL);
--      * types:      pg_catalog.uuid, pg_catalog.text in DECLARE and in casts (pg_temp is
--                    searched first for types, so an unqualified `text` could be a caller's);
--      * literals are of type unknown, resolved against the qualified operator's argument
--        types; coalesce, IS NOT TRUE, IF and := are grammar, not catalogue lookups; the
--        trigger variables (TG_OP, NEW, …) are plpgsql's own.
--    tests/test_security.py checks it: the capture functions have no SET clause and are
--    SECURITY DEFINER; a caller whose search_path puts its own schema before pg_catalog (or
--    that shadows names in pg_temp) with `=`, `<`, left(), current_setting(), `text`/`uuid`
--    domains still gets the engine's event rows, and none of its code runs with the engine's
--    rights. (The same body with the clause removed but names unqualified fails that test.)
--    SECURITY DEFINER stays: a narrowly granted INSERT on scenario_event instead would let any
--    platform session write (forge) event rows, and the definer call without a SET clause
--    costs about 1 µs.
--
-- 2. No per-row lookup of notify_mode in scenario_engine_setting (an SPI query: an executor
--    start and end per row). The mode is mirrored by the existence of a marker view,
--    scenario_engine.scenario_notify_on_v1, which the capture functions test with
--    pg_catalog.to_regclass — a catalogue-cache lookup in a plpgsql simple expression, no query.
--    A statement trigger on scenario_engine_setting (after INSERT, UPDATE, DELETE, TRUNCATE)
--    creates the view when the table says 'notify' and drops it otherwise (a missing row
--    means 'poll', as since 0025), in the same transaction: the switch is still one UPDATE,
--    transactional (a rolled-back switch leaves the marker as it was), and takes effect at the
--    next platform write. The function bodies do not depend on the mode (an upgraded
--    installation in notify mode has the same functions as a fresh one in poll mode). The
--    trigger function is SECURITY DEFINER (its DDL needs the schema owner; whoever may change
--    a setting may switch the mode, not more) with a fixed search_path: it runs once per
--    settings change, not per row.
--
-- CREATE OR REPLACE keeps the capture functions' OIDs, owner and privileges, so the `_v1`
-- triggers need no change; it also replaces their configuration, dropping the SET clause.


CREATE OR REPLACE FUNCTION scenario_engine.scenario_capture_event_v1() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    rec          record;
    v_mentor     pg_catalog.uuid;
    v_old_mentor pg_catalog.uuid;
    v_row_id     pg_catalog.text;
BEGIN
    IF pg_catalog.current_setting('scenario_engine.origin', true) OPERATOR(pg_catalog.=) 'engine' THEN
        RETURN NULL;
    END IF;
    IF TG_OP OPERATOR(pg_catalog.=) 'DELETE' THEN
        rec := OLD;
    ELSE
        rec := NEW;
    END IF;
    v_mentor := rec.mentor_id;
    IF TG_OP OPERATOR(pg_catalog.=) 'UPDATE'
       AND (OLD.mentor_id OPERATOR(pg_catalog.=) NEW.mentor_id) IS NOT TRUE THEN
        v_old_mentor := OLD.mentor_id;
    END IF;
    -- notification_preference has a composite key; its scope is the row's identity.
    IF TG_TABLE_NAME OPERATOR(pg_catalog.=) 'notification_preference' THEN
        v_row_id := rec.scenario_type;
    ELSE
        v_row_id := rec.id::pg_catalog.text;
    END IF;

    INSERT INTO scenario_engine.scenario_event (table_name, operation, mentor_id, old_mentor_id, row_id)
    VALUES (TG_TABLE_NAME, TG_OP, v_mentor, v_old_mentor, pg_catalog.left(v_row_id, 200));

    -- 'notify' mode: the marker view exists (no query per row; see above)
    IF pg_catalog.to_regclass('scenario_engine.scenario_notify_on_v1') IS NOT NULL
       AND pg_catalog.pg_notification_queue_usage() OPERATOR(pg_catalog.<) 0.5 THEN
        PERFORM pg_catalog.pg_notify('scenario_events', '');  -- a wake-up: no table, no mentor, no id
    END IF;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION scenario_engine.scenario_capture_mentor_event_v1() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    IF pg_catalog.current_setting('scenario_engine.origin', true) OPERATOR(pg_catalog.=) 'engine' THEN
        RETURN NULL;
    END IF;
    INSERT INTO scenario_engine.scenario_event (table_name, operation, mentor_id, row_id)
    VALUES (TG_TABLE_NAME, TG_OP, NEW.id, NEW.id::pg_catalog.text);
    IF pg_catalog.to_regclass('scenario_engine.scenario_notify_on_v1') IS NOT NULL
       AND pg_catalog.pg_notification_queue_usage() OPERATOR(pg_catalog.<) 0.5 THEN
        PERFORM pg_catalog.pg_notify('scenario_events', '');  -- a wake-up: no table, no mentor, no id
    END IF;
    RETURN NULL;
END;
$$;

REVOKE ALL ON FUNCTION scenario_engine.scenario_capture_event_v1() FROM PUBLIC;
REVOKE ALL ON FUNCTION scenario_engine.scenario_capture_mentor_event_v1() FROM PUBLIC;

-- The marker of 'notify' mode: exists exactly when scenario_engine_setting says 'notify'.
CREATE OR REPLACE FUNCTION scenario_engine.scenario_notify_mode_marker_v1() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF coalesce((SELECT s.value = 'notify' FROM scenario_engine.scenario_engine_setting s
                 WHERE s.key = 'notify_mode'), false) THEN
        IF to_regclass('scenario_engine.scenario_notify_on_v1') IS NULL THEN
            CREATE VIEW scenario_engine.scenario_notify_on_v1 AS SELECT true AS notify;
            REVOKE ALL ON scenario_engine.scenario_notify_on_v1 FROM PUBLIC;
        END IF;
    ELSE
        DROP VIEW IF EXISTS scenario_engine.scenario_notify_on_v1;
    END IF;
    RETURN NULL;
END;
$$;
REVOKE ALL ON FUNCTION scenario_engine.scenario_notify_mode_marker_v1() FROM PUBLIC;

CREATE OR REPLACE TRIGGER scenario_engine_setting_notify_marker_v1
AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON scenario_engine.scenario_engine_setting
FOR EACH STATEMENT EXECUTE FUNCTION scenario_engine.scenario_notify_mode_marker_v1();

-- The marker for this installation's mode as it stands: a no-op UPDATE fires the trigger.
UPDATE scenario_engine.scenario_engine_setting SET value = value WHERE false;
