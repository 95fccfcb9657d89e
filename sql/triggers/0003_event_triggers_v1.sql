-- Change capture for the platform tables (DESIGN.md §4).
--
-- Every insert/update/delete of a watched row writes one scenario_event row (the truth)
-- and, unless the operator switched notify_mode to 'poll', one pg_notify on
-- 'scenario_events' (a wake-up hint). The engine's own writes set the transaction-local
-- setting scenario_engine.origin = 'engine' and are skipped, so the engine never wakes
-- itself.
--
-- Why there is no EXCEPTION block: it would open a subtransaction per row, and bulk
-- writes with thousands of subtransactions degrade the whole cluster (subxid overflow).
-- Instead every failure the engine could cause is ruled out by construction:
--   * the payload holds only ids and short names, far below the 8000-byte limit;
--   * scenario_event has no foreign keys or constraints that a platform row could violate;
--   * NOTIFY is skipped when the notification queue is more than half full (a stuck
--     listener would otherwise make commits fail with "too many notifications");
--   * a missing setting row means 'notify'.

CREATE OR REPLACE FUNCTION scenario_capture_event_v1() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    rec          record;
    v_mentor     uuid;
    v_old_mentor uuid;
    v_row_id     text;
    v_event_id   bigint;
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

    INSERT INTO scenario_event (table_name, operation, mentor_id, old_mentor_id, row_id)
    VALUES (TG_TABLE_NAME, TG_OP, v_mentor, v_old_mentor, left(v_row_id, 200))
    RETURNING id INTO v_event_id;

    SELECT value INTO v_mode FROM scenario_engine_setting WHERE key = 'notify_mode';
    IF coalesce(v_mode, 'notify') = 'notify' AND pg_notification_queue_usage() < 0.5 THEN
        PERFORM pg_notify('scenario_events', json_build_object(
            'event_id', v_event_id,
            'table', TG_TABLE_NAME,
            'op', TG_OP,
            'mentor_id', v_mentor
        )::text);
    END IF;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER activity_scenario_event_v1
    AFTER INSERT OR UPDATE OR DELETE ON activity
    FOR EACH ROW EXECUTE FUNCTION scenario_capture_event_v1();
CREATE OR REPLACE TRIGGER certification_scenario_event_v1
    AFTER INSERT OR UPDATE OR DELETE ON certification
    FOR EACH ROW EXECUTE FUNCTION scenario_capture_event_v1();
CREATE OR REPLACE TRIGGER achievement_scenario_event_v1
    AFTER INSERT OR UPDATE OR DELETE ON achievement
    FOR EACH ROW EXECUTE FUNCTION scenario_capture_event_v1();
CREATE OR REPLACE TRIGGER notification_preference_scenario_event_v1
    AFTER INSERT OR UPDATE OR DELETE ON notification_preference
    FOR EACH ROW EXECUTE FUNCTION scenario_capture_event_v1();
