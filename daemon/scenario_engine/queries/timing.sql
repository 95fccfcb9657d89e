-- Delivery timing (docs/CHANNELS.md): the mentor's usual hour, for a batch at once.

-- name: usual_hours
-- params: mentor_ids, activities, as_of
-- Per mentor: the local hour (their time zone) in which most of their last `activities`
-- activities up to as_of fell, how many fell in it, and how many activities that history
-- holds. One row per mentor asked for (hour NULL without any activity). Ties go to the hour
-- of the most recent activity, then the earlier hour, so the answer is deterministic. One
-- index range scan per mentor (activity_mentor_occurred_idx, newest first, LIMIT).
SELECT m.id AS mentor_id, m.timezone, h.hour, coalesce(h.in_hour, 0)::int AS in_hour,
       coalesce(h.total, 0)::int AS activities
FROM public.peer_mentor m
LEFT JOIN LATERAL (
    SELECT g.hour, g.in_hour, g.total
    FROM (
        SELECT extract(hour FROM r.occurred_at AT TIME ZONE m.timezone)::int AS hour,
               count(*) AS in_hour, sum(count(*)) OVER () AS total, max(r.occurred_at) AS latest
        FROM (
            SELECT a.occurred_at FROM public.activity a
            WHERE a.mentor_id = m.id AND a.occurred_at <= $3::timestamptz
            ORDER BY a.occurred_at DESC
            LIMIT $2::int
        ) r
        GROUP BY 1
    ) g
    ORDER BY g.in_hour DESC, g.latest DESC, g.hour
    LIMIT 1
) h ON true
WHERE m.id = ANY($1::uuid[]);
