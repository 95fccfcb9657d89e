-- The NOTIFY on 'scenario_events' becomes an empty wake-up (issue 16, item 3).
--
-- Postgres has no privilege on LISTEN: any role that can connect to the database, even one
-- denied every table, can LISTEN on any channel. Until now the payload named the table, the
-- operation and the mentor ({"table":"notification_preference","op":"INSERT","mentor_id":…}),
-- so such a role learnt who opted out and who was active. The payload now carries nothing:
-- the daemon only needs to know *that* something changed, and reads what from the
-- scenario_event table, which no client role can read. An empty payload also lets Postgres
-- merge the notifications of one transaction into one (identical payloads are collapsed),
-- so a bulk platform write wakes the daemon once instead of once per row.
--
-- Everything else is as in 0008: SECURITY DEFINER, fixed search_path, qualified names, no
-- EXCEPTION block, NOTIFY skipped when the queue is half full, a missing setting means
-- 'notify'. CREATE OR REPLACE keeps the functions' OIDs, so the `_v1` triggers (which point
-- at them by OID) need no change, and keeps their owner and privileges.

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
    IF coalesce(v_mode, 'notify') = 'notify' AND pg_notification_queue_usage() < 0.5 THEN
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
    IF coalesce(v_mode, 'notify') = 'notify' AND pg_notification_queue_usage() < 0.5 THEN
        PERFORM pg_notify('scenario_events', '');  -- a wake-up: no table, no mentor, no id
    END IF;
    RETURN NULL;
END;
$$;

REVOKE ALL ON FUNCTION scenario_engine.scenario_capture_event_v1() FROM PUBLIC;
REVOKE ALL ON FUNCTION scenario_engine.scenario_capture_mentor_event_v1() FROM PUBLIC;
