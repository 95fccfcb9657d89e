-- The read side of outcomes and holdouts: `scenario-engine report` (docs/OUTCOMES.md).
-- Set-based: each query is one pass over the period's rows, whatever the number of
-- organisations, rules or experiments; Python only pivots the few grouped rows it returns.

-- name: report_period_days
-- The split of a period [since, until) between the daily roll-ups (sql/0032) and the base
-- tables: the whole UTC days [lo, hi) are read from report_decision_day / report_push_day, the
-- instants [since, least(until, lo_at)) and [hi_at, until) — the partial days at its two ends,
-- empty when the period starts or ends at midnight — from the base tables through their index
-- on the instant. Reads a relation `period` (since, until) that the including statement
-- defines; one row. lo is the first midnight at or after since, hi the last at or before until
-- (never before lo: a period inside one day is all ends).
SELECT p.since, p.until, x.lo, greatest(x.lo, x.hi) AS hi,
       x.lo::timestamp AT TIME ZONE 'UTC' AS lo_at,
       greatest(x.lo, x.hi)::timestamp AT TIME ZONE 'UTC' AS hi_at
FROM period p
CROSS JOIN LATERAL (
    SELECT ((p.since AT TIME ZONE 'UTC') - interval '1 microsecond')::date + 1 AS lo,
           (p.until AT TIME ZONE 'UTC')::date AS hi
) x

-- name: report_decision_counts
-- params: since, until, organization_id, rule_name
-- Decisions with as_of in [since, until); organization_id and rule_name may be NULL (all).
-- A candidate is one dedup key of a rule, counted once with its final decision: the write path
-- keeps exactly one row of each key final (notifications.sql, 0016). The organisation and the
-- experiment are the final decision's. 'baseline' rows are no-flood bookkeeping, not
-- candidates. One row per (organisation, rule, scenario type, experiment, final outcome).
-- The whole days from report_decision_day, the partial ones from the log (report_period_days).
WITH period AS (
    SELECT $1::timestamptz AS since, $2::timestamptz AS until
), b AS (
    -- include: report_period_days
), counted AS (
    SELECT r.organization_id, r.rule_name, r.scenario_type, r.experiment_id, r.outcome, r.n
    FROM scenario_engine.report_decision_day r
    WHERE r.final AND r.outcome <> 'baseline'
      AND r.day >= (SELECT lo FROM b) AND r.day < (SELECT hi FROM b)
      AND ($3::uuid IS NULL OR r.organization_id = $3::uuid)
      AND ($4::text IS NULL OR r.rule_name = $4::text)
    UNION ALL
    SELECT d.organization_id, d.rule_name, d.scenario_type, d.experiment_id, d.outcome, 1
    FROM scenario_engine.scenario_decision d
    WHERE d.final AND d.outcome <> 'baseline'
      AND ((d.as_of >= $1::timestamptz AND d.as_of < (SELECT least(until, lo_at) FROM b))
           OR (d.as_of >= (SELECT hi_at FROM b) AND d.as_of < $2::timestamptz))
      AND ($3::uuid IS NULL OR d.organization_id = $3::uuid)
      AND ($4::text IS NULL OR d.rule_name = $4::text)
)
SELECT organization_id, rule_name, scenario_type, experiment_id, outcome, sum(n)::bigint AS candidates
FROM counted
GROUP BY organization_id, rule_name, scenario_type, experiment_id, outcome
HAVING sum(n) > 0;

-- name: report_delivered_counts
-- params: since, until, organization_id, rule_name
-- Delivered: pushes of the period that the push gateway accepted, from the outbox alone. A push
-- is enqueued in the statement that writes its 'sent' decision (one push per notification) and
-- copies the decision's organisation, experiment and instant (decided_at, 0019), so a push is
-- counted in its decision's period. The rule is the experiment's; pushes of decisions taken
-- before experiments were recorded have none, their rule is in data (data ->> 'rule').
-- The whole days from report_push_day, the partial ones from the outbox (report_period_days).
WITH period AS (
    SELECT $1::timestamptz AS since, $2::timestamptz AS until
), b AS (
    -- include: report_period_days
), counted AS (
    SELECT r.organization_id, r.experiment_id, r.scenario_type, r.rule_name, r.n
    FROM scenario_engine.report_push_day r
    WHERE r.status = 'sent' AND r.notified
      AND r.day >= (SELECT lo FROM b) AND r.day < (SELECT hi FROM b)
      AND ($3::uuid IS NULL OR r.organization_id = $3::uuid)
    UNION ALL
    SELECT p.organization_id, p.experiment_id, p.scenario_type, p.data ->> 'rule', 1
    FROM scenario_engine.push_notification p
    WHERE p.status = 'sent' AND p.notification_id IS NOT NULL
      AND ((p.decided_at >= $1::timestamptz AND p.decided_at < (SELECT least(until, lo_at) FROM b))
           OR (p.decided_at >= (SELECT hi_at FROM b) AND p.decided_at < $2::timestamptz))
      AND ($3::uuid IS NULL OR p.organization_id = $3::uuid)
), delivered AS (
    SELECT c.organization_id, c.experiment_id, c.scenario_type,
           CASE WHEN c.experiment_id IS NULL THEN c.rule_name END AS rule_name,
           sum(c.n)::bigint AS delivered
    FROM counted c
    GROUP BY 1, 2, 3, 4
    HAVING sum(c.n) > 0
)
SELECT d.organization_id, coalesce(e.rule_name, d.rule_name) AS rule_name, d.scenario_type,
       d.experiment_id, d.delivered
FROM delivered d
LEFT JOIN scenario_engine.scenario_experiment e ON e.id = d.experiment_id
WHERE $4::text IS NULL OR coalesce(e.rule_name, d.rule_name) = $4::text;

-- name: report_channel_counts
-- params: since, until, organization_id, rule_name
-- Delivery by channel (docs/CHANNELS.md): the period's pushes (by decided_at, like delivered)
-- per channel and status, and how many of them went by a fallback channel.
-- A row that fell back from push and was sent by email is a notification only email reached.
-- The whole days from report_push_day, the partial ones from the outbox (report_period_days).
WITH period AS (
    SELECT $1::timestamptz AS since, $2::timestamptz AS until
), b AS (
    -- include: report_period_days
), counted AS (
    SELECT r.channel, r.status, r.fell_back, r.n
    FROM scenario_engine.report_push_day r
    WHERE r.notified
      AND r.day >= (SELECT lo FROM b) AND r.day < (SELECT hi FROM b)
      AND ($3::uuid IS NULL OR r.organization_id = $3::uuid)
      AND ($4::text IS NULL OR r.rule_name = $4::text)
    UNION ALL
    SELECT p.channel, p.status, p.fell_back_from IS NOT NULL, 1
    FROM scenario_engine.push_notification p
    WHERE p.notification_id IS NOT NULL
      AND ((p.decided_at >= $1::timestamptz AND p.decided_at < (SELECT least(until, lo_at) FROM b))
           OR (p.decided_at >= (SELECT hi_at FROM b) AND p.decided_at < $2::timestamptz))
      AND ($3::uuid IS NULL OR p.organization_id = $3::uuid)
      AND ($4::text IS NULL OR p.data ->> 'rule' = $4::text)
)
SELECT channel, status, fell_back, sum(n)::bigint AS pushes
FROM counted
GROUP BY channel, status, fell_back
HAVING sum(n) > 0;

-- name: report_digest_counts
-- params: since, until, organization_id, rule_name
-- Per rule: the period's pushes delivered inside another push's digest message (merged), and
-- its candidates the daily cap dropped (from the decision log), side by side: what the cap
-- used to drop, and what digests deliver instead (docs/CHANNELS.md).
-- The whole days from the roll-ups, the partial ones from the base tables (report_period_days).
WITH period AS (
    SELECT $1::timestamptz AS since, $2::timestamptz AS until
), b AS (
    -- include: report_period_days
), m AS (
    SELECT rule_name, sum(n) AS merged
    FROM (
        SELECT r.rule_name, r.n
        FROM scenario_engine.report_push_day r
        WHERE r.status = 'sent' AND r.merged
          AND r.day >= (SELECT lo FROM b) AND r.day < (SELECT hi FROM b)
          AND ($3::uuid IS NULL OR r.organization_id = $3::uuid)
          AND ($4::text IS NULL OR r.rule_name = $4::text)
        UNION ALL
        SELECT p.data ->> 'rule', 1
        FROM scenario_engine.push_notification p
        WHERE p.status = 'sent' AND p.digest_of IS NOT NULL AND p.digest_of <> p.id
          AND ((p.decided_at >= $1::timestamptz AND p.decided_at < (SELECT least(until, lo_at) FROM b))
               OR (p.decided_at >= (SELECT hi_at FROM b) AND p.decided_at < $2::timestamptz))
          AND ($3::uuid IS NULL OR p.organization_id = $3::uuid)
          AND ($4::text IS NULL OR p.data ->> 'rule' = $4::text)
    ) x
    GROUP BY 1
    HAVING sum(n) > 0
), c AS (
    SELECT rule_name, sum(n) AS capped
    FROM (
        SELECT r.rule_name, r.n
        FROM scenario_engine.report_decision_day r
        WHERE r.final AND r.outcome = 'daily_cap'
          AND r.day >= (SELECT lo FROM b) AND r.day < (SELECT hi FROM b)
          AND ($3::uuid IS NULL OR r.organization_id = $3::uuid)
          AND ($4::text IS NULL OR r.rule_name = $4::text)
        UNION ALL
        SELECT d.rule_name, 1
        FROM scenario_engine.scenario_decision d
        WHERE d.final AND d.outcome = 'daily_cap'
          AND ((d.as_of >= $1::timestamptz AND d.as_of < (SELECT least(until, lo_at) FROM b))
               OR (d.as_of >= (SELECT hi_at FROM b) AND d.as_of < $2::timestamptz))
          AND ($3::uuid IS NULL OR d.organization_id = $3::uuid)
          AND ($4::text IS NULL OR d.rule_name = $4::text)
    ) x
    GROUP BY 1
    HAVING sum(n) > 0
)
SELECT coalesce(m.rule_name, c.rule_name) AS rule_name, coalesce(m.merged, 0)::bigint AS merged,
       coalesce(c.capped, 0)::bigint AS capped
FROM m
FULL JOIN c ON c.rule_name = m.rule_name;
