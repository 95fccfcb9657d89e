-- Indexes for the incremental sweep: between two sweeps, only mentors for whom a
-- time-driven condition may have become true are evaluated (data changes arrive as events).
-- The activity(occurred_at) index is the one that costs the platform something on insert;
-- it is what lets "whose last activity just turned N days old" be a range scan.
CREATE INDEX IF NOT EXISTS activity_occurred_idx ON activity (occurred_at) INCLUDE (mentor_id);
CREATE INDEX IF NOT EXISTS peer_mentor_joined_idx ON peer_mentor (joined_at) WHERE status = 'active';
CREATE INDEX IF NOT EXISTS scenario_notification_as_of_idx ON scenario_notification (as_of) INCLUDE (mentor_id, rule_name);
CREATE INDEX IF NOT EXISTS scenario_cooldown_triggered_idx ON scenario_cooldown (last_triggered_at);

-- Mentor status, time zone and join date decide every scenario: their changes are events
-- too (a mentor back from leave is evaluated at once, not at the next full sweep).
CREATE OR REPLACE FUNCTION scenario_capture_mentor_event_v1() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_event_id bigint;
    v_mode     text;
BEGIN
    IF current_setting('scenario_engine.origin', true) = 'engine' THEN
        RETURN NULL;
    END IF;
    INSERT INTO scenario_event (table_name, operation, mentor_id, row_id)
    VALUES (TG_TABLE_NAME, TG_OP, NEW.id, NEW.id::text)
    RETURNING id INTO v_event_id;
    SELECT value INTO v_mode FROM scenario_engine_setting WHERE key = 'notify_mode';
    IF coalesce(v_mode, 'notify') = 'notify' AND pg_notification_queue_usage() < 0.5 THEN
        PERFORM pg_notify('scenario_events', json_build_object(
            'event_id', v_event_id, 'table', TG_TABLE_NAME, 'op', TG_OP, 'mentor_id', NEW.id)::text);
    END IF;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER peer_mentor_scenario_event_v1
    AFTER UPDATE OF status, timezone, joined_at ON peer_mentor
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.timezone IS DISTINCT FROM NEW.timezone
          OR OLD.joined_at IS DISTINCT FROM NEW.joined_at)
    EXECUTE FUNCTION scenario_capture_mentor_event_v1();

-- Queue health queries run every few seconds: keep them off full-table scans as history
-- grows (processed events are kept for the retention period, sent pushes forever).
CREATE INDEX IF NOT EXISTS scenario_event_dead_idx ON scenario_event (id) WHERE dead_at IS NOT NULL;
-- Claims sort by (next_attempt_at, id): a push backlog written in one statement shares one
-- next_attempt_at, and an index on that column alone made every claim sort the backlog.
CREATE INDEX IF NOT EXISTS push_notification_claim_order_idx
    ON push_notification (next_attempt_at, id) WHERE status IN ('pending', 'sending');
DROP INDEX IF EXISTS push_notification_claimable_idx;
