-- The read side of outcomes and holdouts: `scenario-engine report` (docs/OUTCOMES.md).
-- Set-based: each query is one pass over the period's rows, whatever the number of
-- organisations, rules or experiments; Python only pivots the few grouped rows it returns.

-- name: report_decision_counts
-- $1 since, $2 until (decisions with as_of in [since, until)), $3 organisation or NULL,
-- $4 rule name or NULL.
-- A candidate is one dedup key of a rule, counted once with its final decision in the period:
-- sent before holdout before any suppression (of those, the latest). The organisation and the
-- experiment are the final decision's. 'baseline' rows are no-flood bookkeeping, not candidates.
-- One pass over the period's decisions, no sort: a sent row is always final ((dedup_key,
-- outcome) is unique); only the few others look for a better row of their candidate, through
-- the unique index. Delivered: the push gateway accepted a push of the notification.
-- One row per (organisation, rule, scenario type, experiment, final outcome).
SELECT d.organization_id, d.rule_name, d.scenario_type, d.experiment_id, d.outcome,
       count(*)::bigint AS candidates,
       count(p.notification_id)::bigint AS delivered
FROM scenario_engine.scenario_decision d
LEFT JOIN (
    SELECT DISTINCT p.notification_id
    FROM scenario_engine.push_notification p
    WHERE p.status = 'sent' AND p.notification_id IS NOT NULL
) p ON d.outcome = 'sent' AND p.notification_id = d.notification_id
WHERE d.as_of >= $1::timestamptz AND d.as_of < $2::timestamptz
  AND d.outcome <> 'baseline'
  AND ($3::uuid IS NULL OR d.organization_id = $3::uuid)
  AND ($4::text IS NULL OR d.rule_name = $4::text)
  AND (d.outcome = 'sent' OR NOT EXISTS (
        SELECT 1 FROM scenario_engine.scenario_decision b
        WHERE b.dedup_key = d.dedup_key AND b.rule_name = d.rule_name
          AND b.as_of >= $1::timestamptz AND b.as_of < $2::timestamptz
          AND b.outcome <> 'baseline' AND b.id <> d.id
          AND (b.outcome = 'sent'
               OR (b.outcome = 'holdout' AND d.outcome <> 'holdout')
               OR (b.outcome <> 'holdout' AND d.outcome <> 'holdout' AND (b.as_of, b.id) > (d.as_of, d.id)))))
GROUP BY d.organization_id, d.rule_name, d.scenario_type, d.experiment_id, d.outcome;

-- name: report_outcome_counts
-- $1 since, $2 until, $3 organisation or NULL, $4 rule name or NULL.
-- Outcomes of the sent and held-out decisions of the period. Each row copies its decision's
-- instant (decided_at), organisation, rule and experiment, so this needs no join: the
-- decision of an outcome row is sent or holdout, and so always its candidate's final one.
SELECT o.organization_id, o.rule_name, o.scenario_type, o.experiment_id, o.arm,
       count(*) FILTER (WHERE o.status = 'achieved')::bigint AS achieved,
       count(*) FILTER (WHERE o.status = 'missed')::bigint AS missed,
       count(*) FILTER (WHERE o.status = 'pending')::bigint AS pending
FROM scenario_engine.scenario_outcome o
WHERE o.decided_at >= $1::timestamptz AND o.decided_at < $2::timestamptz
  AND ($3::uuid IS NULL OR o.organization_id = $3::uuid)
  AND ($4::text IS NULL OR o.rule_name = $4::text)
GROUP BY o.organization_id, o.rule_name, o.scenario_type, o.experiment_id, o.arm;

-- name: report_experiments
-- $1 experiment ids. The salts are left out: with them and a mentor id anyone could tell who
-- is held out, and the report needs only the shares.
SELECT e.id, e.rule_name, e.scenario_type, e.holdout_percent::float8 AS holdout_percent,
       e.global_holdout_percent::float8 AS global_holdout_percent, e.started_at
FROM scenario_engine.scenario_experiment e
WHERE e.id = ANY($1::bigint[]);

-- name: report_certifications
-- $1 start of the previous period, $2 since (= end of the previous period), $3 until, $4 as_of,
-- $5 organisation or NULL. From the platform's own data, per the mentor's organisation now.
-- A certification "expires in" a period when its expires_at lies in [start, end); revoked ones
-- are not counted. Renewed in time: a newer unrevoked certification of the same type for the
-- same mentor, issued before the old one expires (and by as_of). Of the rest, those expired by
-- as_of have lapsed; the others are still open.
WITH expiring AS MATERIALIZED (  -- the renewal check runs once per certification
    SELECT c.mentor_id, c.expires_at, c.expires_at >= $2::timestamptz AS this_period,
           EXISTS (
               SELECT 1 FROM public.certification n
               WHERE n.mentor_id = c.mentor_id AND n.type = c.type AND n.revoked_at IS NULL
                 AND (n.issued_at, n.id) > (c.issued_at, c.id)
                 AND n.issued_at < c.expires_at
                 AND n.issued_at <= $4::timestamptz
           ) AS renewed
    FROM public.certification c
    WHERE c.revoked_at IS NULL
      AND c.expires_at >= $1::timestamptz AND c.expires_at < $3::timestamptz
)
SELECT m.organization_id, e.this_period,
       count(*)::bigint AS expiring,
       count(*) FILTER (WHERE e.renewed)::bigint AS renewed_in_time,
       count(*) FILTER (WHERE NOT e.renewed AND e.expires_at <= $4::timestamptz)::bigint AS lapsed,
       count(*) FILTER (WHERE NOT e.renewed AND e.expires_at > $4::timestamptz)::bigint AS still_open
FROM expiring e
JOIN public.peer_mentor m ON m.id = e.mentor_id
WHERE $5::uuid IS NULL OR m.organization_id = $5::uuid
GROUP BY m.organization_id, e.this_period;
