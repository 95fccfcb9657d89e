-- The read side of outcomes and holdouts: `scenario-engine report` (docs/OUTCOMES.md).
-- Set-based: each query is one pass over the period's rows, whatever the number of
-- organisations, rules or experiments; Python only pivots the few grouped rows it returns.

-- name: report_period_days
-- How a period [since, until) is counted from the daily roll-ups (sql/0032) and the base
-- tables: the roll-ups' whole UTC days [lo, hi), plus (s = +1) or minus (s = -1) the base rows
-- of two intervals [r1_from, r1_to) and [r2_from, r2_to) that correct for the partial days at
-- the ends. A partial first day whose part before since is at most 12 hours is taken whole
-- from its roll-up and those hours subtracted; otherwise the hours from since to midnight are
-- added. Likewise at the end. So a partial day costs at most 12 hours of base rows, whatever
-- instant the period starts at (a sweep writes its decisions at one instant: the shorter side
-- of a boundary is usually empty). A period within one day is all base rows. r1 ends before
-- r2 starts, so a base row's sign is s1 below r1_to and s2 above. Reads a relation `period`
-- (since, until) that the including statement defines; one row.
SELECT lo, hi,
       lo::timestamp AT TIME ZONE 'UTC' AS lo_at, hi::timestamp AT TIME ZONE 'UTC' AS hi_at,
       CASE WHEN same_day OR since_part <= interval '12 hours' THEN d0_at ELSE since END AS r1_from,
       CASE WHEN same_day THEN until WHEN since_part <= interval '12 hours' THEN since ELSE d0_at + interval '1 day' END AS r1_to,
       CASE WHEN same_day OR since_part > interval '12 hours' THEN 1 ELSE -1 END AS s1,
       CASE WHEN same_day THEN until WHEN until_part <= interval '12 hours' THEN d1_at ELSE until END AS r2_from,
       CASE WHEN same_day THEN until WHEN until_part <= interval '12 hours' THEN until ELSE d1_at + interval '1 day' END AS r2_to,
       CASE WHEN same_day OR until_part <= interval '12 hours' THEN 1 ELSE -1 END AS s2
FROM (
    SELECT x.*,
           CASE WHEN x.same_day THEN x.d0 WHEN x.since_part <= interval '12 hours' THEN x.d0 ELSE x.d0 + 1 END AS lo,
           CASE WHEN x.same_day THEN x.d0 WHEN x.until_part <= interval '12 hours' THEN x.d1 ELSE x.d1 + 1 END AS hi
    FROM (
        SELECT p.since, p.until, t.d0, t.d1, t.d0_at, t.d1_at,
               t.d0 >= t.d1 AS same_day,  -- one day (or an empty period): no roll-up
               p.since - t.d0_at AS since_part, p.until - t.d1_at AS until_part
        FROM period p
        CROSS JOIN LATERAL (
            SELECT (p.since AT TIME ZONE 'UTC')::date AS d0, (p.until AT TIME ZONE 'UTC')::date AS d1,
                   (p.since AT TIME ZONE 'UTC')::date::timestamp AT TIME ZONE 'UTC' AS d0_at,
                   (p.until AT TIME ZONE 'UTC')::date::timestamp AT TIME ZONE 'UTC' AS d1_at
        ) t
    ) x
) y

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
    SELECT d.organization_id, d.rule_name, d.scenario_type, d.experiment_id, d.outcome,
           CASE WHEN d.as_of < (SELECT r1_to FROM b) THEN (SELECT s1 FROM b) ELSE (SELECT s2 FROM b) END
    FROM scenario_engine.scenario_decision d
    WHERE d.final AND d.outcome <> 'baseline'
      AND (d.as_of >= (SELECT r1_from FROM b) AND d.as_of < (SELECT r1_to FROM b)
           OR d.as_of >= (SELECT r2_from FROM b) AND d.as_of < (SELECT r2_to FROM b))
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
    SELECT p.organization_id, p.experiment_id, p.scenario_type, p.data ->> 'rule',
           CASE WHEN p.decided_at < (SELECT r1_to FROM b) THEN (SELECT s1 FROM b) ELSE (SELECT s2 FROM b) END
    FROM scenario_engine.push_notification p
    WHERE p.status = 'sent' AND p.notification_id IS NOT NULL
      AND (p.decided_at >= (SELECT r1_from FROM b) AND p.decided_at < (SELECT r1_to FROM b)
           OR p.decided_at >= (SELECT r2_from FROM b) AND p.decided_at < (SELECT r2_to FROM b))
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
    SELECT p.channel, p.status, p.fell_back_from IS NOT NULL,
           CASE WHEN p.decided_at < (SELECT r1_to FROM b) THEN (SELECT s1 FROM b) ELSE (SELECT s2 FROM b) END
    FROM scenario_engine.push_notification p
    WHERE p.notification_id IS NOT NULL
      AND (p.decided_at >= (SELECT r1_from FROM b) AND p.decided_at < (SELECT r1_to FROM b)
           OR p.decided_at >= (SELECT r2_from FROM b) AND p.decided_at < (SELECT r2_to FROM b))
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
        SELECT p.data ->> 'rule',
               CASE WHEN p.decided_at < (SELECT r1_to FROM b) THEN (SELECT s1 FROM b) ELSE (SELECT s2 FROM b) END
        FROM scenario_engine.push_notification p
        WHERE p.status = 'sent' AND p.digest_of IS NOT NULL AND p.digest_of <> p.id
          AND (p.decided_at >= (SELECT r1_from FROM b) AND p.decided_at < (SELECT r1_to FROM b)
               OR p.decided_at >= (SELECT r2_from FROM b) AND p.decided_at < (SELECT r2_to FROM b))
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
        SELECT d.rule_name,
               CASE WHEN d.as_of < (SELECT r1_to FROM b) THEN (SELECT s1 FROM b) ELSE (SELECT s2 FROM b) END
        FROM scenario_engine.scenario_decision d
        WHERE d.final AND d.outcome = 'daily_cap'
          AND (d.as_of >= (SELECT r1_from FROM b) AND d.as_of < (SELECT r1_to FROM b)
               OR d.as_of >= (SELECT r2_from FROM b) AND d.as_of < (SELECT r2_to FROM b))
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
