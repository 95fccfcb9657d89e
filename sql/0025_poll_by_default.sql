-- The platform's writes come first (issue 18, item 1): the event path's default becomes 'poll'.
--
-- A transaction that issued a NOTIFY takes a cluster-wide lock at commit (the notification
-- queue's), so with the triggers in 'notify' mode concurrent platform inserts serialise on it
-- and stop scaling with clients (docs/BENCHMARKS.md, "Platform inserts"). In 'poll' mode the
-- triggers only write the event row, and the daemon finds it with a cheap, adaptive probe
-- (runtime/drain.py): a few milliseconds while events flow, up to SCENARIO_POLL_INTERVAL_SECONDS
-- when idle. 'notify' stays available for the lowest latency on a lightly written database.
--
-- What this migration changes:
--   * A missing notify_mode row now means 'poll' (it meant 'notify'): the triggers below.
--   * A new installation gets notify_mode = 'poll'. "New" means no event was ever captured:
--     the event sequence has never been used, so nothing can depend on NOTIFY latency yet.
--     0008 inserted the row as 'notify' on every installation, so a row cannot tell a choice
--     from the old default; an existing installation (one that has captured events) therefore
--     keeps its row as it is — an upgrade never changes how the platform's commits behave.
--     Switching it is one statement (docs/OPERATIONS.md, "Choosing the notify mode"):
--         UPDATE scenario_engine.scenario_engine_setting SET value = 'poll' WHERE key = 'notify_mode';
--
-- The trigger functions are otherwise as in 0020 (SECURITY DEFINER, fixed search_path,
-- qualified names, empty NOTIFY payload, NOTIFY skipped when the queue is half full).
-- CREATE OR REPLACE keeps their OIDs, owner and privileges, so the `_v1` triggers need no change.

UPDATE scenario_engine.scenario_engine_setting SET value = 'poll', updated_at = now()
WHERE key = 'notify_mode' AND value = 'notify'
  AND (SELECT last_value IS NULL FROM pg_catalog.pg_sequences
       WHERE schemaname = 'scenario_engine' AND sequencename = 'scenario_event_id_seq');

CREATE OR REPLACE FUNCTION scenario_engine.scenario_capture_event_v1() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    rec          record;
    v_mentor     uuid;
    v_old_mentor uuid;
    v_row_id     text;
    v_mode       text;
BEGIN
    IF current_setting('scenario_engine.origin', true) = 'engine' THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'DELETE' THEN
        rec := OLD;
    ELSE
        rec := NEW;
    END IF;
    v_mentor := rec.mentor_id;
    IF TG_OP = 'UPDATE' AND OLD.mentor_id IS DISTINCT FROM NEW.mentor_id THEN
        v_old_mentor := OLD.mentor_id;
    END IF;
    -- notification_preference has a composite key; its scope is the row's identity.
    IF TG_TABLE_NAME = 'notification_preference' THEN
        v_row_id := rec.scenario_type;
    ELSE
        v_row_id := rec.id::text;
    END IF;

    INSERT INTO scenario_engine.scenario_event (table_name, operation, mentor_id, old_mentor_id, row_id)
    VALUES (TG_TABLE_NAME, TG_OP, v_mentor, v_old_mentor, left(v_row_id, 200));

    SELECT value INTO v_mode FROM scenario_engine.scenario_engine_setting WHERE key = 'notify_mode';
    IF coalesce(v_mode, 'poll') = 'notify' AND pg_notification_queue_usage() < 0.5 THEN
        PERFORM pg_notify('scenario_events', '');  -- a wake-up: no table, no mentor, no id
    END IF;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION scenario_engine.scenario_capture_mentor_event_v1() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_mode text;
BEGIN
    IF current_setting('scenario_engine.origin', true) = 'engine' THEN
        RETURN NULL;
    END IF;
    INSERT INTO scenario_engine.scenario_event (table_name, operation, mentor_id, row_id)
    VALUES (TG_TABLE_NAME, TG_OP, NEW.id, NEW.id::text);
    SELECT value INTO v_mode FROM scenario_engine.scenario_engine_setting WHERE key = 'notify_mode';
    IF coalesce(v_mode, 'poll') = 'notify' AND pg_notification_queue_usage() < 0.5 THEN
        PERFORM pg_notify('scenario_events', '');  -- a wake-up: no table, no mentor, no id
    END IF;
    RETURN NULL;
END;
$$;

REVOKE ALL ON FUNCTION scenario_engine.scenario_capture_event_v1() FROM PUBLIC;
REVOKE ALL ON FUNCTION scenario_engine.scenario_capture_mentor_event_v1() FROM PUBLIC;
