-- Outcome resolution proportional to what changed (issue 18): the instant of the last
-- resolution and the newest decision it had seen. The next resolution (outcomes/resolve.py)
-- re-judges only the pending outcomes that may have changed since: outcomes decided after that
-- decision, outcomes whose window has closed (each is judged in full once more before it is
-- final), and outcomes of mentors with an activity (or a certification) dated since. One row.
CREATE TABLE IF NOT EXISTS scenario_engine.scenario_outcome_resolution (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    resolved_at timestamptz,  -- NULL: never resolved (the next resolution is a full one)
    last_decision_id bigint NOT NULL
);
