-- The status page charts the last 30 days of decisions; keep that a range scan.
CREATE INDEX IF NOT EXISTS scenario_decision_created_idx ON scenario_decision (created_at);
