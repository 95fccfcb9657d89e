-- Set-based scenario queries. Each takes the mentors to look at as an array ($1), so the
-- sweep (batches of ids) and the event drain (the mentors a batch of events touched)
-- run the very same statements. All instants are compared as absolute seconds
-- (make_interval(secs => …)), never as calendar days in the session's time zone.

-- name: active_mentor_batch
-- Keyset pagination over active mentors, for the sweep.
-- coalesce keeps "id > …" an index condition under a generic plan (asyncpg re-executes
-- prepared statements); "$1 IS NULL OR id > $1" became a filter and rescanned the index per batch.
-- (Only a mentor whose id is the nil UUID would be skipped.)
SELECT id FROM public.peer_mentor
WHERE status = 'active' AND id > coalesce($1::uuid, '00000000-0000-0000-0000-000000000000'::uuid)
ORDER BY id
LIMIT $2::int;

-- name: active_mentor_count
SELECT count(*) FROM public.peer_mentor WHERE status = 'active';

-- name: due_mentors
-- The incremental sweep's work list: active mentors for whom a *time-driven* condition may
-- have become true in ($1 = previous sweep, $2 = now]. Data changes (activity, certificates,
-- achievements, preferences, mentor status) are events and evaluated by the event path.
-- $3 inactivity thresholds (s), $4/$5 inactivity rule names and their reminder spacing (s),
-- $6 certification tiers (days), $7 cooldowns (s) of all rules.
SELECT DISTINCT due.mentor_id
FROM (
    -- the last activity (or the join date) just turned a threshold old
    SELECT a.mentor_id FROM unnest($3::float8[]) AS t(secs)
    JOIN public.activity a ON a.occurred_at > $1::timestamptz - make_interval(secs => t.secs)
                   AND a.occurred_at <= $2::timestamptz - make_interval(secs => t.secs)
    UNION ALL
    SELECT p.id FROM unnest($3::float8[]) AS t(secs)
    JOIN public.peer_mentor p ON p.status = 'active'
                      AND p.joined_at > $1::timestamptz - make_interval(secs => t.secs)
                      AND p.joined_at <= $2::timestamptz - make_interval(secs => t.secs)
    UNION ALL
    -- an activity dated after the previous sweep now lies in the past (counts, spells)
    SELECT a.mentor_id FROM public.activity a WHERE a.occurred_at > $1::timestamptz AND a.occurred_at <= $2::timestamptz
    UNION ALL
    -- the next reminder of a spell came due
    SELECT sn.mentor_id FROM unnest($4::text[], $5::float8[]) AS r(rule_name, secs)
    JOIN scenario_engine.scenario_notification sn ON sn.as_of > $1::timestamptz - make_interval(secs => r.secs)
                                 AND sn.as_of <= $2::timestamptz - make_interval(secs => r.secs)
                                 AND sn.rule_name = r.rule_name
    UNION ALL
    -- a certification entered a reminder tier
    SELECT c.mentor_id FROM unnest($6::int[]) AS t(days)
    JOIN public.certification c ON c.revoked_at IS NULL
                        AND c.expires_at > $1::timestamptz + make_interval(secs => t.days * 86400.0)
                        AND c.expires_at <= $2::timestamptz + make_interval(secs => t.days * 86400.0)
    UNION ALL
    -- a cooldown ended: a candidate suppressed by it may go out now
    SELECT cd.mentor_id FROM unnest($7::float8[]) AS k(secs)
    JOIN scenario_engine.scenario_cooldown cd ON cd.last_triggered_at > $1::timestamptz - make_interval(secs => k.secs)
                             AND cd.last_triggered_at <= $2::timestamptz - make_interval(secs => k.secs)
    UNION ALL
    -- a notification left the 24-hour cap window
    SELECT sn.mentor_id FROM scenario_engine.scenario_notification sn
    WHERE sn.as_of > $1::timestamptz - interval '24 hours' AND sn.as_of <= $2::timestamptz - interval '24 hours'
) due
-- A lateral probe per due id: the windows come from parameters the planner cannot estimate,
-- and a plain join hashed all active mentors to keep a few hundred.
JOIN LATERAL (
    SELECT 1 FROM public.peer_mentor p WHERE p.id = due.mentor_id AND p.status = 'active' LIMIT 1
) active ON true
ORDER BY due.mentor_id;

-- name: inactivity_candidates
-- $1 mentors, $2 as_of, $3 rule name, $4 threshold seconds, $5 max reminders,
-- $6 reminder spacing seconds (the rule's cooldown).
WITH m AS (
    SELECT p.id, p.joined_at, last.at AS last_activity_at_raw,
           coalesce(last.at, p.joined_at) AS last_activity_at
    FROM public.peer_mentor p
    LEFT JOIN LATERAL (
        SELECT max(a.occurred_at) AS at FROM public.activity a
        WHERE a.mentor_id = p.id AND a.occurred_at <= $2::timestamptz
    ) last ON true
    WHERE p.id = ANY($1::uuid[]) AND p.status = 'active'
), due AS (
    -- A spell that starts before the evaluable range (joined_at = '-infinity', 4713 BC) has no
    -- spell key ("cannot convert infinity to bigint") and no instant Python can decode: the row
    -- says so in `problem` and the mentor is quarantined (scenarios/base.py, EVALUABLE_FROM).
    SELECT m.*,
           CASE WHEN m.last_activity_at >= '0001-01-02 00:00:00+00'::timestamptz
                THEN (extract(epoch FROM m.last_activity_at) * 1000000)::bigint::text END AS spell
    FROM m
    WHERE m.last_activity_at <= $2::timestamptz - make_interval(secs => $4::float8)
)
SELECT due.id AS mentor_id,
       CASE WHEN due.spell IS NOT NULL THEN due.last_activity_at END AS last_activity_at,
       due.last_activity_at_raw IS NULL AS never_active,
       due.spell, coalesce(sent.n, 0)::int AS reminders_sent, sent.last_as_of,
       CASE WHEN due.spell IS NULL THEN due.last_activity_at::text END AS problem
FROM due
LEFT JOIN LATERAL (
    SELECT count(*) AS n, max(sn.as_of) AS last_as_of FROM scenario_engine.scenario_notification sn
    WHERE sn.mentor_id = due.id AND sn.rule_name = $3::text AND sn.subject = due.spell
) sent ON true
WHERE coalesce(sent.n, 0) < $5::int
  AND (sent.last_as_of IS NULL OR sent.last_as_of <= $2::timestamptz - make_interval(secs => $6::float8))
ORDER BY due.id;

-- name: milestone_candidates
-- $1 mentors, $2 as_of, $3 rule name, $4 metric, $5 period ('year' | 'all_time'),
-- $6 thresholds (ascending), $7 their labels (as the dedup key spells them), $8 the zone names
-- Python can load (scenarios/zones.py). A yearly rule needs the mentor's calendar: a mentor
-- whose zone Python cannot load gets a row that names the `problem` (and is quarantined),
-- whether or not a threshold would be crossed, exactly as the single-mentor path fails.
WITH zones AS (
    SELECT z.name FROM unnest($8::text[]) AS z(name)
), bad_zone AS (
    SELECT p.id, p.timezone FROM public.peer_mentor p
    WHERE $5::text = 'year' AND p.id = ANY($1::uuid[]) AND p.status = 'active'
      AND NOT EXISTS (SELECT 1 FROM zones WHERE zones.name = p.timezone)
), m AS (
    SELECT p.id,
           CASE WHEN $5::text = 'year' THEN extract(year FROM $2::timestamptz AT TIME ZONE p.timezone)::int::text
                ELSE 'all_time' END AS period,
           CASE WHEN $5::text = 'year'
                THEN make_timestamptz(extract(year FROM $2::timestamptz AT TIME ZONE p.timezone)::int,
                                      1, 1, 0, 0, 0, p.timezone)
                ELSE '-infinity'::timestamptz END AS period_start
    FROM public.peer_mentor p
    WHERE p.id = ANY($1::uuid[]) AND p.status = 'active'
      AND NOT EXISTS (SELECT 1 FROM bad_zone b WHERE b.id = p.id)
), agg AS (
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
          SELECT 1 FROM public.achievement ac
          WHERE ac.mentor_id = agg.id AND ac.milestone = $3::text
            AND ac.threshold = t.threshold::numeric AND ac.period = agg.period)
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
-- Record, without any push, every threshold already crossed when a rule is first seen,
-- so that enabling a rule on a live population does not flood. Whole population, one
-- statement. $1 as_of, $2 rule name, $3 metric, $4 period, $5 thresholds, $6 the zone names
-- Python can load: a mentor with any other zone is left out (a yearly period cannot be named;
-- the candidate query quarantines that mentor) rather than failing the whole baseline.
WITH m AS (
    SELECT p.id,
           CASE WHEN $4::text = 'year' THEN extract(year FROM $1::timestamptz AT TIME ZONE p.timezone)::int::text
                ELSE 'all_time' END AS period,
           CASE WHEN $4::text = 'year'
                THEN make_timestamptz(extract(year FROM $1::timestamptz AT TIME ZONE p.timezone)::int,
                                      1, 1, 0, 0, 0, p.timezone)
                ELSE '-infinity'::timestamptz END AS period_start
    FROM public.peer_mentor p
    WHERE $4::text <> 'year' OR p.timezone IN (SELECT z.name FROM unnest($6::text[]) AS z(name))
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

-- name: claim_rule_first_seen
-- Exactly one engine records a rule as seen; concurrent callers wait for its commit.
INSERT INTO scenario_engine.scenario_rule_state (rule_name, scenario_type, first_seen_at, baseline_at, backfill)
VALUES ($1::text, $2::text, $3::timestamptz, CASE WHEN $4::boolean THEN NULL ELSE $3::timestamptz END, $4::boolean)
ON CONFLICT (rule_name) DO NOTHING
RETURNING rule_name;

-- name: known_rules
SELECT rule_name FROM scenario_engine.scenario_rule_state;

-- name: certification_candidates
-- $1 mentors, $2 as_of, $3 rule name, $4 tiers in days, $5 watched types (empty = all).
WITH c AS (
    SELECT c.id, c.mentor_id, c.type, c.issued_at, c.expires_at, p.timezone,
           (SELECT min(t) FROM unnest($4::int[]) AS t
            WHERE c.expires_at <= $2::timestamptz + make_interval(secs => t * 86400.0)) AS tier
    FROM public.certification c
    JOIN public.peer_mentor p ON p.id = c.mentor_id AND p.status = 'active'
    WHERE c.mentor_id = ANY($1::uuid[])
      AND c.revoked_at IS NULL
      AND c.expires_at > $2::timestamptz
      AND c.expires_at <= $2::timestamptz + make_interval(secs => (SELECT max(t) FROM unnest($4::int[]) AS t) * 86400.0)
      AND (cardinality($5::text[]) = 0 OR c.type = ANY($5::text[]))
      AND NOT EXISTS (
          SELECT 1 FROM public.certification n
          WHERE n.mentor_id = c.mentor_id AND n.type = c.type AND n.revoked_at IS NULL
            AND (n.issued_at, n.id) > (c.issued_at, c.id))
)
-- (issued_at is not returned: it may lie outside what Python can decode, and no reminder needs it.)
SELECT c.id AS certification_id, c.mentor_id, c.type, c.expires_at, c.timezone, c.tier,
       fired.min_tier
FROM c
LEFT JOIN LATERAL (
    SELECT min(sn.seq) AS min_tier FROM scenario_engine.scenario_notification sn
    WHERE sn.mentor_id = c.mentor_id AND sn.rule_name = $3::text AND sn.subject = c.id::text
) fired ON true
WHERE fired.min_tier IS NULL OR c.tier < fired.min_tier
ORDER BY c.mentor_id, c.id;

-- name: policy_inputs
-- What should_notify needs for one scenario type: status, opt-out, cooldown, cap usage.
-- $1 mentors, $2 scenario type, $3 as_of.
SELECT p.id AS mentor_id, p.status, p.timezone, p.display_name,
       (SELECT np.scenario_type FROM public.notification_preference np
        WHERE np.mentor_id = p.id AND np.opted_out AND np.scenario_type IN ('all', $2::text)
        ORDER BY np.scenario_type = 'all' DESC LIMIT 1) AS opted_out_scope,
       cd.last_triggered_at, cd.last_rule_name,
       (SELECT count(*) FROM scenario_engine.scenario_notification sn
        WHERE sn.mentor_id = p.id AND sn.as_of > $3::timestamptz - interval '24 hours' AND sn.as_of <= $3::timestamptz)::int AS sent_24h
FROM public.peer_mentor p
LEFT JOIN scenario_engine.scenario_cooldown cd ON cd.mentor_id = p.id AND cd.scenario_type = $2::text
WHERE p.id = ANY($1::uuid[]);

-- name: quarantine_mentors
-- Record mentors the engine could not evaluate (isolation.py). `news` is true when the entry is
-- new, was cleared before, or has a new reason: the engine logs those once, the rest at debug.
-- $1 mentors (sorted), $2 reasons.
WITH old AS (
    SELECT q.mentor_id, q.reason, q.cleared_at FROM scenario_engine.scenario_quarantine q
    WHERE q.mentor_id = ANY($1::uuid[])
), up AS (
    INSERT INTO scenario_engine.scenario_quarantine AS q (mentor_id, reason, first_seen_at, last_seen_at, occurrences)
    SELECT t.mentor_id, t.reason, now(), now(), 1 FROM unnest($1::uuid[], $2::text[]) AS t(mentor_id, reason)
    ON CONFLICT (mentor_id) DO UPDATE
    SET reason = EXCLUDED.reason, last_seen_at = EXCLUDED.last_seen_at,
        occurrences = q.occurrences + 1, cleared_at = NULL
    RETURNING q.mentor_id
)
SELECT up.mentor_id, (old.mentor_id IS NULL OR old.cleared_at IS NOT NULL OR old.reason <> t.reason) AS news
FROM up
JOIN unnest($1::uuid[], $2::text[]) AS t(mentor_id, reason) ON t.mentor_id = up.mentor_id
LEFT JOIN old ON old.mentor_id = up.mentor_id;

-- name: clear_quarantine
-- After a clean evaluation: its mentors are no longer quarantined (the partial index keeps
-- this to the open entries, normally none). $1 mentors.
UPDATE scenario_engine.scenario_quarantine SET cleared_at = now()
WHERE mentor_id = ANY($1::uuid[]) AND cleared_at IS NULL;
