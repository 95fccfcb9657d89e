-- Queries of the programme-health page (GET /programme on the status port; runtime/programme_view.py).
--
-- Every query takes the same three parameters: since, the start of the window (a Monday 00:00 UTC),
-- until, the end of the window (the page's as_of; inclusive), and organization_id, one organisation
-- or NULL for all.
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

-- name: programme_weekly_outcomes
-- params: since, until, organization_id
-- What happened after the messages sent (arm 'treated') per organisation, scenario type and week
-- of the decision, whatever the experiment: the weekly outcome rate is achieved / final.
SELECT o.organization_id,
       o.scenario_type,
       date_trunc('week', o.decided_at AT TIME ZONE 'UTC')::date AS week,
       count(*) FILTER (WHERE o.status = 'achieved') AS achieved,
       count(*) FILTER (WHERE o.status IN ('achieved', 'missed')) AS final,
       count(*) FILTER (WHERE o.status = 'pending') AS pending
FROM scenario_engine.scenario_outcome o
WHERE o.arm = 'treated'
  AND o.decided_at >= $1::timestamptz AND o.decided_at <= $2::timestamptz
  AND ($3::uuid IS NULL OR o.organization_id = $3::uuid)
GROUP BY o.organization_id, o.scenario_type, week
ORDER BY o.organization_id, o.scenario_type, week;

-- name: programme_current_lift
-- params: since, until, organization_id
-- Treated vs held-out outcomes over the window, per organisation and rule, for the current
-- experiment of each rule only (its newest scenario_experiment row): a lift never mixes two
-- holdout configurations. Rules whose current experiment has no outcome in the window give no row.
WITH current_experiment AS (
    SELECT DISTINCT ON (e.rule_name)
           e.id, e.rule_name, e.scenario_type, e.started_at, e.holdout_percent, e.global_holdout_percent
    FROM scenario_engine.scenario_experiment e
    ORDER BY e.rule_name, e.id DESC
)
SELECT o.organization_id,
       c.scenario_type,
       c.rule_name,
       c.id AS experiment_id,
       c.started_at,
       c.holdout_percent,
       c.global_holdout_percent,
       count(*) FILTER (WHERE o.arm = 'treated' AND o.status = 'achieved') AS treated_achieved,
       count(*) FILTER (WHERE o.arm = 'treated' AND o.status IN ('achieved', 'missed')) AS treated_final,
       count(*) FILTER (WHERE o.arm = 'treated' AND o.status = 'pending') AS treated_pending,
       count(*) FILTER (WHERE o.arm = 'holdout' AND o.status = 'achieved') AS holdout_achieved,
       count(*) FILTER (WHERE o.arm = 'holdout' AND o.status IN ('achieved', 'missed')) AS holdout_final,
       count(*) FILTER (WHERE o.arm = 'holdout' AND o.status = 'pending') AS holdout_pending
FROM current_experiment c
JOIN scenario_engine.scenario_outcome o ON o.experiment_id = c.id
WHERE o.decided_at >= $1::timestamptz AND o.decided_at <= $2::timestamptz
  AND ($3::uuid IS NULL OR o.organization_id = $3::uuid)
GROUP BY o.organization_id, c.scenario_type, c.rule_name, c.id, c.started_at, c.holdout_percent,
         c.global_holdout_percent
ORDER BY o.organization_id, c.scenario_type, c.rule_name;

-- name: programme_weekly_certifications
-- params: since, until, organization_id
-- Certifications that expired in the window, per organisation (the mentor's) and week of expiry:
-- renewed in time when a newer unrevoked certification of the same type was issued to that mentor
-- before it expired, else lapsed. A revoked certification was withdrawn, not left to lapse: it is
-- not counted (and the partial index certification_expiring_idx serves the range).
-- The renewed ones come from one hash join of the window's certifications with the unrevoked
-- ones on (mentor, type), not from a look-up per certification (counted twice, once per FILTER).
SELECT m.organization_id,
       date_trunc('week', c.expires_at AT TIME ZONE 'UTC')::date AS week,
       count(r.id) AS renewed,
       count(*) FILTER (WHERE r.id IS NULL) AS lapsed
FROM public.certification c
JOIN public.peer_mentor m ON m.id = c.mentor_id
LEFT JOIN (
    SELECT DISTINCT e.id
    FROM public.certification e
    JOIN public.certification n ON n.mentor_id = e.mentor_id AND n.type = e.type
    WHERE e.revoked_at IS NULL AND e.expires_at >= $1::timestamptz AND e.expires_at <= $2::timestamptz
      AND n.id <> e.id
      AND n.revoked_at IS NULL
      AND n.issued_at > e.issued_at
      AND n.issued_at < e.expires_at
) r ON r.id = c.id
WHERE c.revoked_at IS NULL
  AND c.expires_at >= $1::timestamptz AND c.expires_at <= $2::timestamptz
  AND ($3::uuid IS NULL OR m.organization_id = $3::uuid)
GROUP BY m.organization_id, week
ORDER BY m.organization_id, week;
