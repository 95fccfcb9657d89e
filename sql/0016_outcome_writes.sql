-- What the write path records for outcome reports (docs/OUTCOMES.md), so that a report is a
-- few grouped scans of the period's rows instead of joins over the whole history.
--
-- final: a candidate (a dedup key) is counted once, with its final decision. Writing a sent or
-- held-out decision, or a later suppression, clears the flag of the key's earlier rows (rare:
-- a candidate suppressed by cooldown or the cap that goes out later).
ALTER TABLE scenario_engine.scenario_decision ADD COLUMN IF NOT EXISTS final boolean NOT NULL DEFAULT true;

-- The organisation and experiment of a push, copied from its decision: "delivered" is then
-- counted from the outbox alone.
ALTER TABLE scenario_engine.push_notification
    ADD COLUMN IF NOT EXISTS organization_id uuid,
    ADD COLUMN IF NOT EXISTS experiment_id bigint;
CREATE INDEX IF NOT EXISTS push_notification_created_idx ON scenario_engine.push_notification (created_at);
