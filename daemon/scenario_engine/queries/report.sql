-- The read side of outcomes and holdouts: `scenario-engine report` (docs/OUTCOMES.md).
-- Set-based: each query is one pass over the period's rows, whatever the number of
-- organisations, rules or experiments; Python only pivots the few grouped rows it returns.

-- name: report_decision_counts
-- params: since, until, organization_id, rule_name
-- Decisions with as_of in [since, until); organization_id and rule_name may be NULL (all).
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
-- params: since, until, organization_id, rule_name
-- Delivered: pushes of the period that the push gateway accepted, from the outbox alone. A push
-- is enqueued in the statement that writes its 'sent' decision (one push per notification) and
-- copies the decision's organisation, experiment and instant (decided_at, 0019), so a push is
-- counted in its decision's period.
-- The rule is the experiment's: one parallel grouped scan of the period's pushes, named after.
-- Pushes of decisions taken before experiments were recorded have none; their rule is in data,
-- counted apart (push_notification_unattributed_v2_idx, 0019: empty since then, so no scan).
WITH delivered AS (
    SELECT p.organization_id, p.experiment_id, p.scenario_type, NULL::text AS rule_name,
           count(*)::bigint AS delivered
    FROM scenario_engine.push_notification p
    WHERE p.status = 'sent' AND p.notification_id IS NOT NULL AND p.experiment_id IS NOT NULL
      AND p.decided_at >= $1::timestamptz AND p.decided_at < $2::timestamptz
      AND ($3::uuid IS NULL OR p.organization_id = $3::uuid)
    GROUP BY p.organization_id, p.experiment_id, p.scenario_type
    UNION ALL
    SELECT p.organization_id, NULL, p.scenario_type, p.data ->> 'rule', count(*)::bigint
    FROM scenario_engine.push_notification p
    WHERE p.experiment_id IS NULL AND p.status = 'sent' AND p.notification_id IS NOT NULL
      AND p.decided_at >= $1::timestamptz AND p.decided_at < $2::timestamptz
      AND ($3::uuid IS NULL OR p.organization_id = $3::uuid)
    GROUP BY p.organization_id, p.scenario_type, p.data ->> 'rule'
)
SELECT d.organization_id, coalesce(e.rule_name, d.rule_name) AS rule_name, d.scenario_type,
       d.experiment_id, d.delivered
FROM delivered d
LEFT JOIN scenario_engine.scenario_experiment e ON e.id = d.experiment_id
WHERE $4::text IS NULL OR coalesce(e.rule_name, d.rule_name) = $4::text;

-- name: report_outcome_counts
-- params: since, until, organization_id, rule_name
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
-- params: experiment_ids
-- The salts are left out: with them and a mentor id anyone could tell who
-- is held out, and the report needs only the shares.
SELECT e.id, e.rule_name, e.scenario_type, e.holdout_percent::float8 AS holdout_percent,
       e.global_holdout_percent::float8 AS global_holdout_percent, e.started_at
FROM scenario_engine.scenario_experiment e
WHERE e.id = ANY($1::bigint[]);

-- name: report_certifications
-- params: previous_since, since, until, as_of, organization_id
-- previous_since starts the previous period, since ends it; organization_id may be NULL (all).
-- From the platform's own data, per the mentor's organisation now.
-- A certification "expires in" a period when its expires_at lies in [start, end); revoked ones
-- are not counted. Renewed in time: a newer unrevoked certification of the same type for the
-- same mentor, issued before the old one expires (and by as_of). Of the rest, those expired by
-- as_of have lapsed; the others are still open.
-- The renewed ones are found set-based, in one (parallel) hash join of the expiring
-- certifications with all the unrevoked ones on (mentor, type), instead of a sub-query per
-- certification; a window (lead() over (mentor, type) by (issued_at, id)) gives the same
-- answer but sorts the whole table, and measured slower (docs/BENCHMARKS.md, report).
SELECT m.organization_id, c.expires_at >= $2::timestamptz AS this_period,
       count(*)::bigint AS expiring,
       count(r.id)::bigint AS renewed_in_time,
       count(*) FILTER (WHERE r.id IS NULL AND c.expires_at <= $4::timestamptz)::bigint AS lapsed,
       count(*) FILTER (WHERE r.id IS NULL AND c.expires_at > $4::timestamptz)::bigint AS still_open
FROM public.certification c
JOIN public.peer_mentor m ON m.id = c.mentor_id
LEFT JOIN (
    SELECT DISTINCT e.id
    FROM public.certification e
    JOIN public.certification n ON n.mentor_id = e.mentor_id AND n.type = e.type
    WHERE e.revoked_at IS NULL AND e.expires_at >= $1::timestamptz AND e.expires_at < $3::timestamptz
      AND n.revoked_at IS NULL
      AND (n.issued_at, n.id) > (e.issued_at, e.id)
      AND n.issued_at < e.expires_at
      AND n.issued_at <= $4::timestamptz
) r ON r.id = c.id
WHERE c.revoked_at IS NULL AND c.expires_at >= $1::timestamptz AND c.expires_at < $3::timestamptz
  AND ($5::uuid IS NULL OR m.organization_id = $5::uuid)
GROUP BY m.organization_id, this_period;
