-- The instant of the decision a push belongs to (the sweep's as_of), copied at enqueue: reports
-- count "delivered" in the decision's period, not by the wall clock of enqueueing, which differs
-- for a sweep of a past instant or a period resumed at its original instant (docs/OUTCOMES.md).
ALTER TABLE scenario_engine.push_notification ADD COLUMN IF NOT EXISTS decided_at timestamptz;

-- Existing pushes: their 'sent' decision's instant, else the enqueue time. One hash join.
UPDATE scenario_engine.push_notification p SET decided_at = d.as_of
FROM scenario_engine.scenario_decision d
WHERE p.decided_at IS NULL AND d.notification_id = p.notification_id AND d.outcome = 'sent';
UPDATE scenario_engine.push_notification SET decided_at = created_at WHERE decided_at IS NULL;
ALTER TABLE scenario_engine.push_notification ALTER COLUMN decided_at SET DEFAULT now();
ALTER TABLE scenario_engine.push_notification ALTER COLUMN decided_at SET NOT NULL;

-- What the report and the programme page read by created_at (0017) they now read by decided_at.
DROP INDEX IF EXISTS scenario_engine.push_notification_unattributed_idx;
CREATE INDEX IF NOT EXISTS push_notification_unattributed_v2_idx
    ON scenario_engine.push_notification (decided_at) WHERE experiment_id IS NULL;
DROP STATISTICS IF EXISTS scenario_engine.push_notification_week_stat;
CREATE STATISTICS IF NOT EXISTS scenario_engine.push_notification_decided_week_stat (ndistinct)
    ON organization_id, scenario_type, (date_trunc('week', decided_at AT TIME ZONE 'UTC')::date)
    FROM scenario_engine.push_notification;
ANALYZE scenario_engine.push_notification;
