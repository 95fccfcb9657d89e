-- The read side of outcomes and holdouts: `scenario-engine report` (docs/OUTCOMES.md).
-- Set-based: each query is one pass over the period's rows, whatever the number of
-- organisations, rules or experiments; Python only pivots the few grouped rows it returns.

-- name: report_decision_counts
-- $1 since, $2 until (decisions with as_of in [since, until)), $3 organisation or NULL,
-- $4 rule name or NULL.
-- A candidate is one dedup key of a rule, counted once with its final decision: the write path
-- keeps exactly one row of each key final (notifications.sql, 0016), so this is one grouped
-- scan of the period's decisions, no join and no sub-query (a parallel plan). The organisation
-- and the experiment are the final decision's. 'baseline' rows are no-flood bookkeeping, not
-- candidates. One row per (organisation, rule, scenario type, experiment, final outcome).
SELECT d.organization_id, d.rule_name, d.scenario_type, d.experiment_id, d.outcome,
       count(*)::bigint AS candidates
FROM scenario_engine.scenario_decision d
WHERE d.final
  AND d.as_of >= $1::timestamptz AND d.as_of < $2::timestamptz
  AND d.outcome <> 'baseline'
  AND ($3::uuid IS NULL OR d.organization_id = $3::uuid)
  AND ($4::text IS NULL OR d.rule_name = $4::text)
GROUP BY d.organization_id, d.rule_name, d.scenario_type, d.experiment_id, d.outcome;

-- name: report_delivered_counts
-- $1 since, $2 until, $3 organisation or NULL, $4 rule name or NULL.
-- Delivered: pushes of the period that the push gateway accepted, from the outbox alone. A push
-- is enqueued in the statement that writes its 'sent' decision (one push per notification) and
-- copies the decision's organisation and experiment; its created_at is that statement's clock,
-- the decision's as_of the sweep's instant (the same moment, up to the sweep's duration). The
-- rule is the experiment's (pushes enqueued before 0016 have none: their rule is in data).
-- Grouped first (one parallel scan of the period's pushes), named after (a few rows).
WITH delivered AS (
    SELECT p.organization_id, p.experiment_id, p.scenario_type,
           CASE WHEN p.experiment_id IS NULL THEN p.data ->> 'rule' END AS rule_name,
           count(*)::bigint AS delivered
    FROM scenario_engine.push_notification p
    WHERE p.status = 'sent' AND p.notification_id IS NOT NULL
      AND p.created_at >= $1::timestamptz AND p.created_at < $2::timestamptz
      AND ($3::uuid IS NULL OR p.organization_id = $3::uuid)
    GROUP BY p.organization_id, p.experiment_id, p.scenario_type, 4
)
SELECT d.organization_id, coalesce(e.rule_name, d.rule_name) AS rule_name, d.scenario_type,
       d.experiment_id, sum(d.delivered)::bigint AS delivered
FROM delivered d
LEFT JOIN scenario_engine.scenario_experiment e ON e.id = d.experiment_id
WHERE $4::text IS NULL OR coalesce(e.rule_name, d.rule_name) = $4::text
GROUP BY d.organization_id, coalesce(e.rule_name, d.rule_name), d.scenario_type, d.experiment_id;

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
-- Newer is later in (issued_at, id). If any newer one qualifies, the next one does (it is issued
-- no later), so the check is on the next unrevoked certification of the (mentor, type) alone:
-- lead() over one sorted pass, instead of a sub-query per certification.
WITH chain AS (
    SELECT c.mentor_id, c.expires_at,
           lead(c.issued_at) OVER (PARTITION BY c.mentor_id, c.type ORDER BY c.issued_at, c.id) AS next_issued_at
    FROM public.certification c
    WHERE c.revoked_at IS NULL
), expiring AS (
    SELECT c.mentor_id, c.expires_at, c.expires_at >= $2::timestamptz AS this_period,
           coalesce(c.next_issued_at < c.expires_at AND c.next_issued_at <= $4::timestamptz, false) AS renewed
    FROM chain c
    WHERE c.expires_at >= $1::timestamptz AND c.expires_at < $3::timestamptz
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
