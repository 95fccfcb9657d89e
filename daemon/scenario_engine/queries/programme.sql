-- Queries of the programme-health page (GET /programme on the status port; web/programme_view.py).
--
-- The page's own query takes three parameters: since, the start of the window (a Monday 00:00
-- UTC), until, the end of the window (the page's as_of; inclusive), and organization_id, one
-- organisation or NULL for all. Outcomes and certifications it reads with the queries `report`
-- uses (queries/outcomes.sql: outcome_counts, outcome_experiments, certification_renewals), so
-- that both say the same.
-- Weeks are UTC weeks starting Monday 00:00: date_trunc('week', …) of the instant in UTC.

-- name: programme_weekly_sends
-- params: since, until, organization_id
-- Messages sent and delivered per organisation, scenario type and week. Sent: 'sent' decisions
-- by the week of the decision (held-out ones send nothing). Delivered: pushes the gateway
-- accepted (push_notification.status = 'sent'), from the outbox alone, by the week they were
-- enqueued: the push is written in the statement that writes its decision (notifications.sql),
-- with the decision's organisation, so both weeks are the decision's up to the sweep's duration.
-- Two grouped scans of the window's rows (the outbox's through push_notification_created_idx
-- or in parallel), joined on their few groups: no per-decision look-up of its push.
WITH sent AS (
    SELECT d.organization_id, d.scenario_type,
           date_trunc('week', d.as_of AT TIME ZONE 'UTC')::date AS week,
           count(*) AS sent
    FROM scenario_engine.scenario_decision d
    WHERE d.outcome = 'sent'
      AND d.as_of >= $1::timestamptz AND d.as_of <= $2::timestamptz
      AND ($3::uuid IS NULL OR d.organization_id = $3::uuid)
    GROUP BY d.organization_id, d.scenario_type, week
), delivered AS (
    SELECT p.organization_id, p.scenario_type,
           date_trunc('week', p.decided_at AT TIME ZONE 'UTC')::date AS week,
           count(*) AS delivered
    FROM scenario_engine.push_notification p
    WHERE p.status = 'sent' AND p.notification_id IS NOT NULL
      AND p.decided_at >= $1::timestamptz AND p.decided_at <= $2::timestamptz
      AND ($3::uuid IS NULL OR p.organization_id = $3::uuid)
    GROUP BY p.organization_id, p.scenario_type, week
)
SELECT s.organization_id, s.scenario_type, s.week, s.sent, coalesce(d.delivered, 0) AS delivered
FROM sent s
LEFT JOIN delivered d ON d.organization_id IS NOT DISTINCT FROM s.organization_id
                     AND d.scenario_type = s.scenario_type AND d.week = s.week
ORDER BY s.organization_id, s.scenario_type, s.week;
