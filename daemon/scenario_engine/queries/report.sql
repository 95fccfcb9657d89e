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

-- name: report_channel_counts
-- params: since, until, organization_id, rule_name
-- Delivery by channel (docs/CHANNELS.md): the period's pushes (by decided_at, like delivered)
-- per channel and status, and how many of them went by a fallback channel. One grouped scan.
-- A row that fell back from push and was sent by email is a notification only email reached.
SELECT p.channel, p.status, (p.fell_back_from IS NOT NULL) AS fell_back, count(*)::bigint AS pushes
FROM scenario_engine.push_notification p
WHERE p.notification_id IS NOT NULL
  AND p.decided_at >= $1::timestamptz AND p.decided_at < $2::timestamptz
  AND ($3::uuid IS NULL OR p.organization_id = $3::uuid)
  AND ($4::text IS NULL OR p.data ->> 'rule' = $4::text)
GROUP BY p.channel, p.status, (p.fell_back_from IS NOT NULL);

-- name: report_digest_counts
-- params: since, until, organization_id, rule_name
-- Per rule: the period's pushes delivered inside another push's digest message (merged), and
-- its candidates the daily cap dropped (from the decision log), side by side: what the cap
-- used to drop, and what digests deliver instead (docs/CHANNELS.md).
SELECT coalesce(m.rule_name, c.rule_name) AS rule_name, coalesce(m.merged, 0)::bigint AS merged,
       coalesce(c.capped, 0)::bigint AS capped
FROM (
    SELECT p.data ->> 'rule' AS rule_name, count(*) AS merged
    FROM scenario_engine.push_notification p
    WHERE p.status = 'sent' AND p.digest_of IS NOT NULL AND p.digest_of <> p.id
      AND p.decided_at >= $1::timestamptz AND p.decided_at < $2::timestamptz
      AND ($3::uuid IS NULL OR p.organization_id = $3::uuid)
      AND ($4::text IS NULL OR p.data ->> 'rule' = $4::text)
    GROUP BY 1
) m
FULL JOIN (
    SELECT d.rule_name, count(*) AS capped
    FROM scenario_engine.scenario_decision d
    WHERE d.final AND d.outcome = 'daily_cap'
      AND d.as_of >= $1::timestamptz AND d.as_of < $2::timestamptz
      AND ($3::uuid IS NULL OR d.organization_id = $3::uuid)
      AND ($4::text IS NULL OR d.rule_name = $4::text)
    GROUP BY 1
) c ON c.rule_name = m.rule_name;
