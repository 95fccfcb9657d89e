-- Truncation of a watched platform table is a change too (issue 16, item 11).
--
-- Row triggers do not fire when a table is truncated, so truncating activity (or certification,
-- achievement, notification_preference) used to reach the engine as nothing at all: mentors whose activity
-- vanished were never found inactive by the incremental sweep, opt-outs wiped that way
-- were never acted on, until the next periodic full sweep. A truncation concerns every mentor,
-- and evaluating a million mentors in the event drain would stall it; so the statement-level
-- trigger (units *_scenario_truncate_v1 in sql/triggers/hooks.sql) records a request for a full
-- sweep, and the scheduler's next sweep is a full one (runtime/scheduler.py). The scheduler
-- deletes the requests it saw when that full sweep completes: a request committed while it ran
-- was not seen, and makes the sweep after it full too.
--
-- Like the row capture (0008): SECURITY DEFINER with a fixed search_path, qualified names, no
-- EXCEPTION block needed — the insert has no constraint a platform statement could violate
-- (table_name is a catalogue name, bounded). The engine's own writes (origin = 'engine') are
-- skipped as everywhere. No NOTIFY: nobody waits for it; the scheduler reads the table when a
-- sweep starts.
CREATE TABLE IF NOT EXISTS scenario_engine.scenario_full_sweep_request (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    table_name   text NOT NULL,
    operation    text NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
ALTER TABLE scenario_engine.scenario_full_sweep_request ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON scenario_engine.scenario_full_sweep_request FROM PUBLIC;

CREATE OR REPLACE FUNCTION scenario_engine.scenario_capture_truncate_v1() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF current_setting('scenario_engine.origin', true) = 'engine' THEN
        RETURN NULL;
    END IF;
    INSERT INTO scenario_engine.scenario_full_sweep_request (table_name, operation)
    VALUES (left(TG_TABLE_NAME, 200), TG_OP);
    RETURN NULL;
END;
$$;
REVOKE ALL ON FUNCTION scenario_engine.scenario_capture_truncate_v1() FROM PUBLIC;
