-- The platform's writes come first (issue 18, item 1): the row capture loses its SET clause.
--
-- Measured (docs/BENCHMARKS.md, "Platform inserts"): in poll mode the trigger cost a single-row
-- INSERT into activity about as much as the INSERT itself, and half of the trigger's CPU was
-- the function's `SET search_path = pg_catalog, pg_temp` clause. A function with a SET clause
-- is called through fmgr_security_definer with a new GUC nesting level: every call saves the
-- search_path, sets it (recomputing the namespace path, which also makes each cached SPI plan
-- check it against the path it was planned under), and restores it at exit. Per row.
--
-- The clause was there for the classic SECURITY DEFINER risk: a name in the function body
-- resolved through the *caller's* search_path, so that a caller who can create objects
-- somewhere on its path (pg_temp included: relations and types are looked up there first)
-- runs its own operator, function, type or table with the owner's rights. Without the
-- clause, the function is safe only if no name in it is looked up through the search_path.
-- So every name below is qualified:
--   * tables:     scenario_engine.scenario_event, scenario_engine.scenario_engine_setting;
--   * functions:  pg_catalog.current_setting, pg_catalog.left, pg_catalog.pg_notify,
--                 pg_catalog.pg_notification_queue_usage;
--   * operators:  OPERATOR(pg_catalog.=), OPERATOR(pg_catalog.<) — an unqualified `=` is an
--                 operator lookup through the search_path like any function's; IS DISTINCT FROM
--                 (which looks up `=` unqualified) is written as `(a OPERATOR(pg_catalog.=) b)
--                 IS NOT TRUE`, which gives the same old_mentor_id (NULL when both are NULL);
--   * types:      pg_catalog.uuid, pg_catalog.text in DECLARE and in casts (pg_temp is searched
--                 first for types, so an unqualified `text` could be a caller's temp type);
--   * literals are of type unknown and resolved against the qualified operator's argument
--     types; coalesce, IS NOT TRUE, IF and := are grammar, not catalogue lookups; the trigger
--     variables (TG_OP, NEW, …) are plpgsql's own.
-- tests/test_security.py checks it: the functions have no SET clause and are SECURITY DEFINER
-- owned by the engine; a caller whose search_path puts its own schema (with `=`, `<`, `left`,
-- `current_setting`, a `text` type, a scenario_event table) before pg_catalog, or that shadows
-- them in pg_temp, still gets the engine's event row and nothing of its own runs.
-- tests/test_sql_qualified.py's rule for the engine's queries, applied to the trigger bodies.
--
-- What is unchanged: SECURITY DEFINER (the platform's roles get no privilege on the event
-- table: a narrowly granted INSERT would let any platform session forge events), the
-- engine-origin skip, the row written, the notify_mode lookup (one index probe on a table of a
-- few rows; NOTIFY only in 'notify' mode). CREATE OR REPLACE keeps the functions' OIDs, owner
-- and privileges, so the `_v1` triggers need no change. ALTER FUNCTION … RESET ALL drops the
-- clause (CREATE OR REPLACE alone keeps no SET clause either, but says so less plainly).

CREATE OR REPLACE FUNCTION scenario_engine.scenario_capture_event_v1() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    rec          record;
    v_mentor     pg_catalog.uuid;
    v_old_mentor pg_catalog.uuid;
    v_row_id     pg_catalog.text;
    v_mode       pg_catalog.text;
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

    SELECT s.value INTO v_mode FROM scenario_engine.scenario_engine_setting s
    WHERE s.key OPERATOR(pg_catalog.=) 'notify_mode';
    IF coalesce(v_mode, 'poll') OPERATOR(pg_catalog.=) 'notify'
       AND pg_catalog.pg_notification_queue_usage() OPERATOR(pg_catalog.<) 0.5 THEN
        PERFORM pg_catalog.pg_notify('scenario_events', '');  -- a wake-up: no table, no mentor, no id
    END IF;
    RETURN NULL;
END;
$$;
ALTER FUNCTION scenario_engine.scenario_capture_event_v1() RESET ALL;

CREATE OR REPLACE FUNCTION scenario_engine.scenario_capture_mentor_event_v1() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    v_mode pg_catalog.text;
BEGIN
    IF pg_catalog.current_setting('scenario_engine.origin', true) OPERATOR(pg_catalog.=) 'engine' THEN
        RETURN NULL;
    END IF;
    INSERT INTO scenario_engine.scenario_event (table_name, operation, mentor_id, row_id)
    VALUES (TG_TABLE_NAME, TG_OP, NEW.id, NEW.id::pg_catalog.text);
    SELECT s.value INTO v_mode FROM scenario_engine.scenario_engine_setting s
    WHERE s.key OPERATOR(pg_catalog.=) 'notify_mode';
    IF coalesce(v_mode, 'poll') OPERATOR(pg_catalog.=) 'notify'
       AND pg_catalog.pg_notification_queue_usage() OPERATOR(pg_catalog.<) 0.5 THEN
        PERFORM pg_catalog.pg_notify('scenario_events', '');  -- a wake-up: no table, no mentor, no id
    END IF;
    RETURN NULL;
END;
$$;
ALTER FUNCTION scenario_engine.scenario_capture_mentor_event_v1() RESET ALL;

REVOKE ALL ON FUNCTION scenario_engine.scenario_capture_event_v1() FROM PUBLIC;
REVOKE ALL ON FUNCTION scenario_engine.scenario_capture_mentor_event_v1() FROM PUBLIC;
