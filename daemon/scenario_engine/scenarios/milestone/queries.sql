-- The milestone scenario's set-based statements (scenarios/milestone/scenario.py).

-- name: milestone_candidates
-- params: mentors, as_of, rule_name, metric, period, thresholds, labels, zones, zone_suspects
-- period is 'year' or 'all_time'; thresholds ascend; labels spell them as the dedup key does;
-- zones are the names Python can load (scenarios/zones.py). A yearly rule needs the mentor's calendar: a mentor
-- whose zone Python cannot load gets a row that names the `problem` (and is quarantined),
-- whether or not a threshold would be crossed, exactly as the single-mentor path fails.
-- zone_suspects: a full sweep's hint (scenarios/base.py, SweepHints), the batch's mentors whose
-- zone Python could not load when the sweep began; NULL: the statement reads every batch
-- mentor's zone itself.
WITH zones AS (
    SELECT z.name FROM unnest($8::text[]) AS z(name)
), span AS (
    -- The earliest instant any mentor's period can start, and the lowest threshold. A zone's
    -- local time is within a day of UTC, so its calendar year starts after 00:00 UTC on
    -- 1 January of the UTC year two days before as_of, less two days.
    SELECT CASE WHEN $5::text = 'year'
                THEN date_trunc('year', $2::timestamptz - interval '2 days', 'UTC') - interval '2 days'
                ELSE '-infinity'::timestamptz END AS since,
           (SELECT min(t.v) FROM unnest($6::float8[]) AS t(v)) AS lowest
), bound AS MATERIALIZED (
    -- The mentors who may have crossed a threshold: an upper bound of each mentor's value, from
    -- one index-only scan over the batch's ids in id order (PostgreSQL 17+ walks the leaves of a
    -- dense batch instead of descending once per mentor; a sparse list, as an incremental
    -- sweep's, still descends per mentor; a full sweep's batch is read as its id range,
    -- scenarios/common.py), aggregated in that order. The loose window holds the period, and
    -- negative minutes or contacts (excluded by CHECKs, but a platform may lack them) count as
    -- 0, so the bound is never below the exact value. A mentor whose bound is under the lowest
    -- threshold cannot cross one (nor can a mentor with no row, unless a threshold were not
    -- positive — rules forbid it, `m` allows for it), so only the others are kept (HAVING) and
    -- get the exact per-mentor value below: in a steady
    -- sweep most mentors are pruned here. The window is read from `span` as a value, not
    -- joined: the scan's order then reaches the aggregate (a GroupAggregate, not a hash of
    -- every mentor of the batch; issue 18).
    SELECT a.mentor_id
    FROM public.activity a
    WHERE $4::text = 'sessions' AND a.kind = 'session'
      AND a.mentor_id = ANY($1::uuid[])
      AND a.occurred_at >= (SELECT span.since FROM span) AND a.occurred_at <= $2::timestamptz
    GROUP BY a.mentor_id
    HAVING count(*)::float8 >= (SELECT span.lowest FROM span)
    UNION ALL
    SELECT a.mentor_id
    FROM public.activity a
    WHERE $4::text = 'hours'
      AND a.mentor_id = ANY($1::uuid[])
      AND a.occurred_at >= (SELECT span.since FROM span) AND a.occurred_at <= $2::timestamptz
    GROUP BY a.mentor_id
    HAVING sum(greatest(a.duration_minutes, 0))::float8 / 60 >= (SELECT span.lowest FROM span)
    UNION ALL
    SELECT a.mentor_id
    FROM public.activity a
    WHERE $4::text IS DISTINCT FROM 'sessions' AND $4::text IS DISTINCT FROM 'hours'
      AND a.mentor_id = ANY($1::uuid[])
      AND a.occurred_at >= (SELECT span.since FROM span) AND a.occurred_at <= $2::timestamptz
    GROUP BY a.mentor_id
    HAVING sum(greatest(a.contacts, 0))::float8 >= (SELECT span.lowest FROM span)
), bad_zone AS MATERIALIZED (
    -- A yearly rule's batch mentors whose zone Python cannot load. Without a hint, read from
    -- every batch mentor's row. With a full sweep's hint, only the suspects' rows and the
    -- survivors' (whose rows are read for their period anyway: a zone that turned unloadable
    -- after the hint was read is found there) — a batch's ids are random, so reading every
    -- batch mentor's row touched 10k of 13k heap pages per batch at 1M, half the statement
    -- and a cost per mentor that grew with the table (issue 18).
    SELECT p.id, p.timezone FROM public.peer_mentor p
    WHERE $5::text = 'year' AND $9::uuid[] IS NULL
      AND p.id = ANY($1::uuid[]) AND p.status = 'active'
      AND NOT EXISTS (SELECT 1 FROM zones WHERE zones.name = p.timezone)
    UNION
    SELECT p.id, p.timezone FROM unnest($9::uuid[]) AS s(id)
    JOIN public.peer_mentor p ON p.id = s.id
    WHERE $5::text = 'year' AND p.status = 'active'
      AND NOT EXISTS (SELECT 1 FROM zones WHERE zones.name = p.timezone)
    UNION
    SELECT p.id, p.timezone FROM bound u
    JOIN public.peer_mentor p ON p.id = u.mentor_id
    WHERE $5::text = 'year' AND $9::uuid[] IS NOT NULL AND p.status = 'active'
      AND NOT EXISTS (SELECT 1 FROM zones WHERE zones.name = p.timezone)
), m AS MATERIALIZED (
    -- Materialized: the exact values below are computed for the survivors only, each read
    -- from its own row (its zone names its period). The survivors and the suspects are the
    -- batch's own (the bound reads the batch's activities; SweepHints.suspects_within): the
    -- batch's condition is not repeated on their rows, so that the planner reads each row by
    -- its id rather than the batch's whole range for them.
    SELECT p.id, per.period, per.period_start
    FROM bound u
    JOIN public.peer_mentor p ON p.id = u.mentor_id
    CROSS JOIN LATERAL scenario_engine.milestone_period($5::text, $2::timestamptz, p.timezone) AS per
    WHERE p.status = 'active'
      AND NOT EXISTS (SELECT 1 FROM bad_zone z WHERE z.id = p.id)
    UNION ALL
    -- Every batch mentor when the lowest threshold is not positive (rules forbid it).
    SELECT p.id, per.period, per.period_start
    FROM public.peer_mentor p
    CROSS JOIN LATERAL scenario_engine.milestone_period($5::text, $2::timestamptz, p.timezone) AS per
    WHERE (SELECT span.lowest FROM span) <= 0
      AND p.id = ANY($1::uuid[]) AND p.status = 'active'
      AND NOT EXISTS (SELECT 1 FROM bad_zone z WHERE z.id = p.id)
), agg AS MATERIALIZED (
    -- Materialized: each surviving mentor's exact value is computed once, not per threshold.
    SELECT m.id, m.period, m.period_start, coalesce(v.value, 0)::float8 AS value
    FROM m
    LEFT JOIN LATERAL (
        -- Index-only either way: sessions from the partial activity_mentor_sessions_idx
        -- (kind is its predicate, so no text column is indexed), hours and contacts from
        -- activity_mentor_occurred_v2_idx (sql/platform/indexes.sql).
        SELECT CASE $4::text
                   WHEN 'sessions' THEN (
                       SELECT count(*) FROM public.activity a
                       WHERE a.mentor_id = m.id AND a.kind = 'session'
                         AND a.occurred_at >= m.period_start AND a.occurred_at <= $2::timestamptz)::float8
                   WHEN 'hours' THEN (
                       SELECT sum(a.duration_minutes) FROM public.activity a
                       WHERE a.mentor_id = m.id
                         AND a.occurred_at >= m.period_start AND a.occurred_at <= $2::timestamptz)::float8 / 60
                   ELSE (
                       SELECT sum(a.contacts) FROM public.activity a
                       WHERE a.mentor_id = m.id
                         AND a.occurred_at >= m.period_start AND a.occurred_at <= $2::timestamptz)::float8
               END AS value
    ) v ON true
), crossed AS (
    SELECT agg.id, agg.period, agg.value, t.threshold, t.label
    FROM agg
    CROSS JOIN LATERAL unnest($6::float8[], $7::text[]) AS t(threshold, label)
    WHERE agg.value >= t.threshold
      AND NOT EXISTS (
          -- OFFSET 0: probed per crossed threshold (the achievement key's mentor_id), not
          -- joined — the planner's guess of thousands of crossings made it hash every
          -- achievement of the rule for every batch (a cost growing with the population).
          SELECT 1 FROM public.achievement ac
          WHERE ac.mentor_id = agg.id AND ac.milestone = $3::text
            AND ac.threshold = t.threshold::numeric AND ac.period = agg.period
          OFFSET 0)
)
SELECT id AS mentor_id, period, value,
       array_agg(threshold ORDER BY threshold) AS new_thresholds,
       array_agg(label ORDER BY threshold) AS new_labels, NULL::text AS problem
FROM crossed
GROUP BY id, period, value
UNION ALL
SELECT id, NULL, NULL, NULL, NULL, timezone FROM bad_zone
ORDER BY mentor_id;

-- name: milestone_baseline
-- params: as_of, rule_name, metric, period, thresholds, zones, mentors
-- mentors: NULL for the whole population, or the mentors an organisation's new variant of the
-- rule (or a move to another organisation) concerns (evaluate.py, no flood per organisation).
-- Record, without any push, every threshold already crossed when a rule is first seen,
-- so that enabling a rule on a live population does not flood. Whole population, one
-- statement; the period is the candidates' own (scenario_engine.milestone_period, sql/0018).
-- The zone names are those Python can load: a mentor with any other zone is left out (a
-- yearly period cannot be named; the candidate query quarantines that mentor) rather than
-- failing the whole baseline.
WITH m AS (
    SELECT p.id, per.period, per.period_start
    FROM public.peer_mentor p
    CROSS JOIN LATERAL scenario_engine.milestone_period($4::text, $1::timestamptz, p.timezone) AS per
    WHERE ($4::text <> 'year' OR p.timezone IN (SELECT z.name FROM unnest($6::text[]) AS z(name)))
      AND ($7::uuid[] IS NULL OR p.id = ANY($7::uuid[]))
), agg AS (
    SELECT m.id, m.period,
           CASE $3::text
               WHEN 'sessions' THEN (count(*) FILTER (WHERE a.kind = 'session'))::float8
               WHEN 'hours' THEN coalesce(sum(a.duration_minutes), 0)::float8 / 60
               ELSE coalesce(sum(a.contacts), 0)::float8
           END AS value
    FROM m JOIN public.activity a ON a.mentor_id = m.id AND a.occurred_at >= m.period_start AND a.occurred_at <= $1::timestamptz
    GROUP BY m.id, m.period
)
INSERT INTO public.achievement (mentor_id, milestone, threshold, period, achieved_at, awarded_by)
SELECT agg.id, $2::text, t.threshold::numeric, agg.period, $1::timestamptz, 'engine-baseline'
FROM agg CROSS JOIN unnest($5::float8[]) AS t(threshold)
WHERE agg.value >= t.threshold
ON CONFLICT (mentor_id, md5(milestone), md5(trim_scale(threshold)::text), md5(period)) DO NOTHING;

-- name: milestone_due
-- params: since, as_of
-- The incremental sweep's milestone work list for (since, as_of]: an activity dated after the
-- previous sweep now lies in the past and counts. (Crossing a threshold needs new activity;
-- a new year only resets the counts.) A mentor may be listed more than once (inactivity_due).
SELECT a.mentor_id FROM public.activity a
WHERE a.occurred_at > $1::timestamptz AND a.occurred_at <= $2::timestamptz;
