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
-- accepted (push_notification.status = 'sent'), from the outbox alone, by the week of their
-- decision (decided_at): the push is written in the statement that writes its decision
-- (notifications.sql), with the decision's organisation and instant.
-- The whole UTC days of [since, until] from the daily roll-ups (sql/0032), the partial days at
-- the ends from the base tables (queries/report.sql, report_period_days); the end is included
-- (until + 1 µs, the timestamps' resolution, as the exclusive end).
WITH period AS (
    SELECT $1::timestamptz AS since, $2::timestamptz + interval '1 microsecond' AS until
), b AS (
    -- include: report_period_days
), sent AS (
    SELECT organization_id, scenario_type, week, sum(n)::bigint AS sent
    FROM (
        SELECT r.organization_id, r.scenario_type,
               date_trunc('week', r.day::timestamp)::date AS week, r.n
        FROM scenario_engine.report_decision_day r
        WHERE r.outcome = 'sent'
          AND r.day >= (SELECT lo FROM b) AND r.day < (SELECT hi FROM b)
          AND ($3::uuid IS NULL OR r.organization_id = $3::uuid)
        UNION ALL
        SELECT d.organization_id, d.scenario_type,
               date_trunc('week', d.as_of AT TIME ZONE 'UTC')::date,
               CASE WHEN d.as_of < (SELECT r1_to FROM b) THEN (SELECT s1 FROM b) ELSE (SELECT s2 FROM b) END
        FROM scenario_engine.scenario_decision d
        WHERE d.outcome = 'sent'
          AND (d.as_of >= (SELECT r1_from FROM b) AND d.as_of < (SELECT r1_to FROM b)
               OR d.as_of >= (SELECT r2_from FROM b) AND d.as_of < (SELECT r2_to FROM b))
          AND ($3::uuid IS NULL OR d.organization_id = $3::uuid)
    ) x
    GROUP BY organization_id, scenario_type, week
    HAVING sum(n) > 0
), delivered AS (
    SELECT organization_id, scenario_type, week, sum(n)::bigint AS delivered
    FROM (
        SELECT r.organization_id, r.scenario_type,
               date_trunc('week', r.day::timestamp)::date AS week, r.n
        FROM scenario_engine.report_push_day r
        WHERE r.status = 'sent' AND r.notified
          AND r.day >= (SELECT lo FROM b) AND r.day < (SELECT hi FROM b)
          AND ($3::uuid IS NULL OR r.organization_id = $3::uuid)
        UNION ALL
        SELECT p.organization_id, p.scenario_type,
               date_trunc('week', p.decided_at AT TIME ZONE 'UTC')::date,
               CASE WHEN p.decided_at < (SELECT r1_to FROM b) THEN (SELECT s1 FROM b) ELSE (SELECT s2 FROM b) END
        FROM scenario_engine.push_notification p
        WHERE p.status = 'sent' AND p.notification_id IS NOT NULL
          AND (p.decided_at >= (SELECT r1_from FROM b) AND p.decided_at < (SELECT r1_to FROM b)
               OR p.decided_at >= (SELECT r2_from FROM b) AND p.decided_at < (SELECT r2_to FROM b))
          AND ($3::uuid IS NULL OR p.organization_id = $3::uuid)
    ) x
    GROUP BY organization_id, scenario_type, week
    HAVING sum(n) > 0
)
SELECT s.organization_id, s.scenario_type, s.week, s.sent, coalesce(d.delivered, 0) AS delivered
FROM sent s
LEFT JOIN delivered d ON d.organization_id IS NOT DISTINCT FROM s.organization_id
                     AND d.scenario_type = s.scenario_type AND d.week = s.week
ORDER BY s.organization_id, s.scenario_type, s.week;
