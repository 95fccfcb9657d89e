-- Queries of the status page (GET / on the status port).

-- name: status_decisions_by_day
-- params: first_day
-- Sent vs suppressed decisions per scenario type and UTC day, from first_day (the first day
-- shown) onwards. Every outcome other than 'sent' (opted_out, cooldown, daily_cap, baseline, …)
-- counts as suppressed.
SELECT scenario_type,
       (created_at AT TIME ZONE 'UTC')::date AS day,
       count(*) FILTER (WHERE outcome = 'sent') AS sent,
       count(*) FILTER (WHERE outcome <> 'sent') AS suppressed
FROM scenario_engine.scenario_decision
WHERE created_at >= ($1::date)::timestamp AT TIME ZONE 'UTC'
GROUP BY scenario_type, day
ORDER BY scenario_type, day;

-- name: status_last_sweep
-- The last finished sweep period, whichever instance ran it: the page shows it when this
-- process has not finished one itself (after a restart, on a follower). ``mentors`` sums the
-- batch ledger of the claim that finished it (NULL once the ledger has been pruned).
SELECT s.sweep_key, s.as_of, s.instance_id, s.started_at, s.finished_at, s.stats,
       (SELECT sum(b.mentors) FROM scenario_engine.scenario_sweep_batch b
        WHERE b.sweep_key = s.sweep_key AND b.claim_token = s.claim_token)::bigint AS mentors
FROM scenario_engine.scenario_sweep s
WHERE s.finished_at IS NOT NULL
ORDER BY s.finished_at DESC
LIMIT 1;

-- name: status_deliveries_since
-- params: first_day
-- What became of the pushes queued from first_day (the first day shown) onwards, per scenario type and
-- push status. Two range scans: push_notification_finished_idx for finished pushes,
-- push_notification_claim_order_idx (a short queue) for those still waiting.
SELECT scenario_type, status, count(*) AS n
FROM (
    SELECT scenario_type, status FROM scenario_engine.push_notification
    WHERE status IN ('sent', 'failed', 'dead', 'cancelled', 'abandoned')
      AND created_at >= ($1::date)::timestamp AT TIME ZONE 'UTC'
    UNION ALL
    SELECT scenario_type, status FROM scenario_engine.push_notification
    WHERE status IN ('pending', 'sending')
      AND created_at >= ($1::date)::timestamp AT TIME ZONE 'UTC'
) AS p
GROUP BY scenario_type, status
ORDER BY scenario_type, status;
