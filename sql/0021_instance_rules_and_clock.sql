-- Each running instance publishes the fingerprint of the rules it evaluates with and the skew
-- of its host's clock against the server's, so that replicas with different rules files (or a
-- host with a wrong clock) are visible in one place (docs/OPERATIONS.md, "Several instances").
ALTER TABLE scenario_engine.scenario_engine_instance ADD COLUMN IF NOT EXISTS rules_fingerprint text;
ALTER TABLE scenario_engine.scenario_engine_instance ADD COLUMN IF NOT EXISTS clock_skew_seconds double precision;
