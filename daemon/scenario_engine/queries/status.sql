-- Queries of the status page (GET / on the status port).

-- name: status_decisions_by_day
-- Sent vs suppressed decisions per scenario type and UTC day, from $1 (the first day shown)
-- onwards. Every outcome other than 'sent' (opted_out, cooldown, daily_cap, baseline, …)
-- counts as suppressed.
SELECT scenario_type,
       (created_at AT TIME ZONE 'UTC')::date AS day,
       count(*) FILTER (WHERE outcome = 'sent') AS sent,
       count(*) FILTER (WHERE outcome <> 'sent') AS suppressed
FROM scenario_engine.scenario_decision
WHERE created_at >= ($1::date)::timestamp AT TIME ZONE 'UTC'
GROUP BY scenario_type, day
ORDER BY scenario_type, day;
