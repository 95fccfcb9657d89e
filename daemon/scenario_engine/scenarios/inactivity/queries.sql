-- The inactivity scenario's set-based statements (scenarios/inactivity/scenario.py).

-- name: inactivity_candidates
-- params: mentors, as_of, rule_name, threshold_secs, max_reminders, spacing_secs, skip_logged_opt_outs
-- The spacing between reminders of a spell is the rule's cooldown. skip_logged_opt_outs: leave
-- out a reminder whose mentor has opted out and whose opted-out decision is on record already
-- (deciding it again logs nothing and changes nothing: policy.py decides an active mentor who
-- opted out 'opted_out', and log_suppressed_batch logs a dedup key's outcome once). A scheduled
-- sweep passes true: otherwise every steady full sweep re-decided every opted-out inactive
-- mentor (9,116 at 1M, a fifth of its time; issue 18). The key is scenarios/base.py's dedup_key.
WITH quiet AS MATERIALIZED (
    -- The batch's active mentors with no activity inside the threshold window: only they can
    -- be inactive, and only they get the descent for their newest activity below (a descent
    -- per batch mentor was most of the statement; two thirds of a steady population were
    -- active inside the window, issue 18). The window's condition repeats the batch's, so that a
    -- full sweep's batch (an id range) is one merge of two index-only scans in id order, and
    -- the quiet mentors come out in id order, as the descents read best.
    SELECT p.id, p.joined_at FROM public.peer_mentor p
    WHERE p.id = ANY($1::uuid[]) AND p.status = 'active'
      AND NOT EXISTS (
          SELECT 1 FROM public.activity r
          WHERE r.mentor_id = ANY($1::uuid[]) AND r.mentor_id = p.id
            AND r.occurred_at > $2::timestamptz - make_interval(secs => $4::float8)
            AND r.occurred_at <= $2::timestamptz)
    ORDER BY p.id
), m AS (
    SELECT p.id, p.joined_at, last.at AS last_activity_at_raw,
           coalesce(last.at, p.joined_at) AS last_activity_at
    FROM quiet p
    LEFT JOIN LATERAL (
        SELECT max(a.occurred_at) AS at FROM public.activity a
        WHERE a.mentor_id = p.id AND a.occurred_at <= $2::timestamptz
    ) last ON true
), due AS (
    -- A spell that starts before the evaluable range (joined_at = '-infinity', 4713 BC) has no
    -- spell key ("cannot convert infinity to bigint") and no instant Python can decode: the row
    -- says so in `problem` and the mentor is quarantined (instants.py, EVALUABLE_FROM).
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
  AND NOT ($7::boolean AND EXISTS (
      SELECT 1 FROM public.notification_preference np
      WHERE np.mentor_id = due.id AND np.opted_out AND np.scenario_type IN ('all', 'inactivity')
        AND EXISTS (
            SELECT 1 FROM scenario_engine.scenario_decision d
            WHERE d.dedup_key = 'inactivity:' || $3::text || ':' || due.id::text || ':' || due.spell
                                || ':' || (coalesce(sent.n, 0) + 1)::text
              AND d.outcome = 'opted_out')))
ORDER BY due.id;

-- name: inactivity_due
-- params: since, as_of, threshold_secs, rule_names, spacing_secs
-- The incremental sweep's inactivity work list for (since, as_of]: the last activity (or the
-- join date) just turned a threshold old; an activity dated after the previous sweep now lies
-- in the past (it starts a new spell); the next reminder of a spell came due. A mentor may be
-- listed more than once (sweep.due_mentors takes each once): deduplicating the lists here sized a
-- hash table for the planner's guess of a million rows per list (≈ 20 ms at 1M, issue 18).
SELECT a.mentor_id FROM unnest($3::float8[]) AS t(secs)
JOIN public.activity a ON a.occurred_at > $1::timestamptz - make_interval(secs => t.secs)
               AND a.occurred_at <= $2::timestamptz - make_interval(secs => t.secs)
UNION ALL
SELECT p.id FROM unnest($3::float8[]) AS t(secs)
JOIN public.peer_mentor p ON p.status = 'active'
                  AND p.joined_at > $1::timestamptz - make_interval(secs => t.secs)
                  AND p.joined_at <= $2::timestamptz - make_interval(secs => t.secs)
UNION ALL
SELECT a.mentor_id FROM public.activity a WHERE a.occurred_at > $1::timestamptz AND a.occurred_at <= $2::timestamptz
UNION ALL
SELECT sn.mentor_id FROM unnest($4::text[], $5::float8[]) AS r(rule_name, secs)
JOIN scenario_engine.scenario_notification sn ON sn.as_of > $1::timestamptz - make_interval(secs => r.secs)
                             AND sn.as_of <= $2::timestamptz - make_interval(secs => r.secs)
                             AND sn.rule_name = r.rule_name;

-- name: inactivity_recheck
-- The send-time re-check (a condition over the push row p): the mentor logged an activity
-- after the spell this reminder is about began, so they are no longer inactive.
EXISTS (
    SELECT 1 FROM public.activity a
    WHERE a.mentor_id = p.mentor_id
      AND a.occurred_at > (p.data -> 'context' ->> 'last_activity_at')::timestamptz
)

