-- One row per sweep period accumulates (about 35k a year at the default 15-minute interval,
-- 525k at one minute) and is never pruned: the two "latest finished sweep" lookups — the
-- scheduler's before every sweep (last_finished_sweep, by as_of) and the status page's every
-- 30 s (status_last_sweep, by finished_at) — read one index entry instead of sorting the table.
CREATE INDEX IF NOT EXISTS scenario_sweep_finished_as_of_idx
    ON scenario_engine.scenario_sweep (as_of) WHERE finished_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS scenario_sweep_finished_at_idx
    ON scenario_engine.scenario_sweep (finished_at) WHERE finished_at IS NOT NULL;
