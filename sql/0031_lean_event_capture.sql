-- The platform's writes come first (issue 18, item 1): the row capture does the least it can.
--
-- Measured (docs/BENCHMARKS.md, "Platform inserts"): in poll mode the capture trigger cost a
-- single-row INSERT into activity about 40 µs of server CPU per transaction on top of ~90 µs,
-- and of that about 8 µs was the function's `SET search_path = pg_catalog, pg_temp` clause and
-- about 6 µs the per-row lookup of notify_mode in scenario_engine_setting (an SPI query: an
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
--                    pg_catalog.pg_notification_queue_usage;
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
-- 2. No per-row lookup of notify_mode. The mode is compiled into the function body instead:
--    scenario_capture_install_v1(notify) writes the two capture functions, with the NOTIFY
--    block in 'notify' mode and without it in 'poll' mode, and a statement trigger on
--    scenario_engine_setting calls it after every change of that table (INSERT, UPDATE,
--    DELETE, TRUNCATE), with the mode the table then says (a missing row means 'poll', as
--    since 0025). So the switch is still one UPDATE and takes effect at the next platform
--    write (a session recompiles a plpgsql function whose pg_proc row changed), and the
--    platform's row trigger reads nothing. The install function is SECURITY DEFINER (whoever
--    may change a setting may switch the mode, not more: its only input is a boolean, its
--    DDL fixed text), with a fixed search_path: it runs once per settings change, not per row.
--
-- CREATE OR REPLACE keeps the capture functions' OIDs, owner and privileges, so the `_v1`
-- triggers need no change; it also replaces their configuration, dropping the SET clause.

CREATE OR REPLACE FUNCTION scenario_engine.scenario_capture_install_v1(p_notify boolean) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $install$
DECLARE
    -- 'notify' mode only: a wake-up with an empty payload, skipped while the notification
    -- queue is half full (a stuck listener), as since 0020
    v_wake text := CASE WHEN p_notify THEN $wake$
    IF pg_catalog.pg_notification_queue_usage() OPERATOR(pg_catalog.<) 0.5 THEN
        PERFORM pg_catalog.pg_notify('scenario_events', '');  -- a wake-up: no table, no mentor, no id
    END IF;$wake$ ELSE '' END;
BEGIN
    EXECUTE format($fn$
CREATE OR REPLACE FUNCTION scenario_engine.scenario_capture_event_v1() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $body$
-- Written by scenario_engine.scenario_capture_install_v1 (sql/0031) for notify_mode '%s':
-- every name qualified, no SET clause, no lookup per row.
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
    VALUES (TG_TABLE_NAME, TG_OP, v_mentor, v_old_mentor, pg_catalog.left(v_row_id, 200));%s
    RETURN NULL;
END;
$body$$fn$, CASE WHEN p_notify THEN 'notify' ELSE 'poll' END, v_wake);
    EXECUTE format($fn$
CREATE OR REPLACE FUNCTION scenario_engine.scenario_capture_mentor_event_v1() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $body$
-- Written by scenario_engine.scenario_capture_install_v1 (sql/0031) for notify_mode '%s'.
BEGIN
    IF pg_catalog.current_setting('scenario_engine.origin', true) OPERATOR(pg_catalog.=) 'engine' THEN
        RETURN NULL;
    END IF;
    INSERT INTO scenario_engine.scenario_event (table_name, operation, mentor_id, row_id)
    VALUES (TG_TABLE_NAME, TG_OP, NEW.id, NEW.id::pg_catalog.text);%s
    RETURN NULL;
END;
$body$$fn$, CASE WHEN p_notify THEN 'notify' ELSE 'poll' END, v_wake);
END;
$install$;
REVOKE ALL ON FUNCTION scenario_engine.scenario_capture_install_v1(boolean) FROM PUBLIC;

-- After any change to the settings table: the capture functions for the mode it now says.
CREATE OR REPLACE FUNCTION scenario_engine.scenario_notify_mode_changed_v1() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM scenario_engine.scenario_capture_install_v1(coalesce(
        (SELECT s.value = 'notify' FROM scenario_engine.scenario_engine_setting s
         WHERE s.key = 'notify_mode'),
        false));
    RETURN NULL;
END;
$$;
REVOKE ALL ON FUNCTION scenario_engine.scenario_notify_mode_changed_v1() FROM PUBLIC;

CREATE TRIGGER scenario_engine_setting_notify_mode_v1
AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON scenario_engine.scenario_engine_setting
FOR EACH STATEMENT EXECUTE FUNCTION scenario_engine.scenario_notify_mode_changed_v1();

-- The capture functions for the mode of this installation (a missing row means 'poll').
SELECT scenario_engine.scenario_capture_install_v1(coalesce(
    (SELECT s.value = 'notify' FROM scenario_engine.scenario_engine_setting s WHERE s.key = 'notify_mode'),
    false));

REVOKE ALL ON FUNCTION scenario_engine.scenario_capture_event_v1() FROM PUBLIC;
REVOKE ALL ON FUNCTION scenario_engine.scenario_capture_mentor_event_v1() FROM PUBLIC;
