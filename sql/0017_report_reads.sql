-- What `scenario-engine report` and the programme page read since 0016 (docs/OUTCOMES.md):
-- final decisions, and delivered pushes from the outbox alone.
--
-- Pushes without an experiment are those of decisions taken before experiments were recorded
-- (0015). Their rule is only in data, so the report counts them in a branch of their own; this
-- index, empty on a database that started at 0016, keeps that branch from scanning the outbox.
CREATE INDEX IF NOT EXISTS push_notification_unattributed_idx
    ON scenario_engine.push_notification (created_at) WHERE experiment_id IS NULL;

-- A database that ran before 0016: its pushes lack their decision's organisation and experiment
-- and every decision is final = true. Copy the former from the 'sent' decision (one per push);
-- then keep one final row per candidate, the one the report used to pick (sent, else held out,
-- else the latest suppression). Both match nothing on a fresh database or a second run.
UPDATE scenario_engine.push_notification p
SET organization_id = d.organization_id, experiment_id = d.experiment_id
FROM scenario_engine.scenario_decision d
WHERE p.experiment_id IS NULL AND p.organization_id IS NULL
  AND d.notification_id = p.notification_id AND d.outcome = 'sent'
  AND (d.experiment_id IS NOT NULL OR d.organization_id IS NOT NULL);

UPDATE scenario_engine.scenario_decision d
SET final = false
WHERE d.final AND d.outcome <> 'baseline'
  AND EXISTS (
        SELECT 1 FROM scenario_engine.scenario_decision b
        WHERE b.dedup_key = d.dedup_key AND b.id <> d.id AND b.outcome <> 'baseline'
          AND (b.outcome = 'sent'
               OR (b.outcome = 'holdout' AND d.outcome NOT IN ('sent', 'holdout'))
               OR (b.outcome NOT IN ('sent', 'holdout') AND d.outcome NOT IN ('sent', 'holdout')
                   AND (b.as_of, b.id) > (d.as_of, d.id))));

-- The programme page groups the window's decisions, pushes and outcomes by (organisation,
-- scenario type, UTC week). Without statistics on that week expression the planner expects a group per row and
-- will not aggregate in parallel workers (programme.sql, programme_weekly_sends).
CREATE STATISTICS IF NOT EXISTS scenario_engine.scenario_decision_week_stat (ndistinct)
    ON organization_id, scenario_type, (date_trunc('week', as_of AT TIME ZONE 'UTC')::date)
    FROM scenario_engine.scenario_decision;
CREATE STATISTICS IF NOT EXISTS scenario_engine.push_notification_week_stat (ndistinct)
    ON organization_id, scenario_type, (date_trunc('week', created_at AT TIME ZONE 'UTC')::date)
    FROM scenario_engine.push_notification;
CREATE STATISTICS IF NOT EXISTS scenario_engine.scenario_outcome_week_stat (ndistinct)
    ON organization_id, scenario_type, (date_trunc('week', decided_at AT TIME ZONE 'UTC')::date)
    FROM scenario_engine.scenario_outcome;
ANALYZE scenario_engine.scenario_decision;
ANALYZE scenario_engine.push_notification;
ANALYZE scenario_engine.scenario_outcome;
