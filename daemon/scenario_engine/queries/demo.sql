-- The demo (dev/demo.py, dev/demo_history.py): its history's helpers, the live generator and the feed.

-- name: demo_insert_organizations
-- params: ids, names
-- The organisations' names (the optional platform table public.organization).
INSERT INTO public.organization (id, name)
SELECT * FROM unnest($1::uuid[], $2::text[])
ON CONFLICT (id) DO UPDATE SET name = excluded.name;

-- name: demo_certification_sequence
-- The history's certifications carry their ids (the simulation refers to them); the identity
-- continues after the largest, for rows the platform adds later.
SELECT setval(pg_get_serial_sequence('public.certification', 'id'),
              greatest((SELECT max(id) FROM public.certification), 1));

-- name: demo_analyze_platform
-- Statistics for the bulk-loaded tables before the first sweep plans its queries.
ANALYZE public.peer_mentor, public.activity, public.certification, public.notification_preference;

-- name: demo_deliver_history
-- params: until, undelivered_percent
-- The simulated push gateway of the history: the dispatcher sends only now, so the pushes of
-- past decisions are accepted (a few rejected) a minute after their decision.
UPDATE scenario_engine.push_notification p
SET status = d.status,
    attempts = 1,
    sent_at = CASE WHEN d.status = 'sent' THEN p.decided_at + interval '1 minute' END,
    provider = 'log',
    last_error = CASE WHEN d.status = 'dead' THEN 'the device token is no longer registered (demo)' END
FROM (
    SELECT id, CASE WHEN abs(hashtext(idempotency_key)) % 10000 < $2::float8 * 100 THEN 'dead' ELSE 'sent' END
               AS status
    FROM scenario_engine.push_notification
    WHERE status = 'pending' AND decided_at < $1::timestamptz
) d
WHERE p.id = d.id;

-- name: demo_near_milestone
-- params: thresholds
-- Active mentors one to three sessions short of a threshold this year, the nearest first: the
-- generator's targets, so that the event path visibly fires, and keeps firing (random activity
-- brings more mentors within reach as the demo runs).
WITH counts AS (
    SELECT a.mentor_id, count(*) AS n
    FROM public.activity a JOIN public.peer_mentor p ON p.id = a.mentor_id AND p.status = 'active'
    WHERE a.kind = 'session' AND a.occurred_at >= date_trunc('year', now())
    GROUP BY a.mentor_id
)
SELECT c.mentor_id
FROM counts c
CROSS JOIN LATERAL (SELECT min(t - c.n) AS short FROM unnest($1::int[]) AS t WHERE t > c.n) s
WHERE s.short BETWEEN 1 AND 3
ORDER BY s.short, random()
LIMIT 50;

-- name: demo_random_mentors
-- params: limit
SELECT id FROM public.peer_mentor WHERE status = 'active' ORDER BY random() LIMIT $1::int;

-- name: demo_add_activity
-- params: mentor_id, kind, duration_minutes, contacts
INSERT INTO public.activity (mentor_id, kind, occurred_at, duration_minutes, contacts)
VALUES ($1::uuid, $2::text, now(), $3::int, $4::int);

-- name: demo_last_decision
-- Where the live feed starts: decisions up to here were taken before this run of the demo
-- (its history, or a previous run) and are not news.
SELECT coalesce(max(id), 0) FROM scenario_engine.scenario_decision;

-- name: demo_new_decisions
-- params: after_id
SELECT d.id, d.created_at, d.mentor_id, d.scenario_type, d.rule_name, d.outcome, d.reason, p.display_name, pn.title, pn.body
FROM scenario_engine.scenario_decision d
JOIN public.peer_mentor p ON p.id = d.mentor_id
LEFT JOIN scenario_engine.push_notification pn ON pn.notification_id = d.notification_id
WHERE d.id > $1::bigint
ORDER BY d.id
LIMIT 200;

-- name: demo_counts
SELECT (SELECT count(*) FROM public.peer_mentor) AS mentors,
       to_regclass('public.organization') IS NOT NULL AS has_organisations,
       (SELECT count(*) FROM public.activity) AS activities,
       (SELECT count(*) FROM public.certification) AS certifications;
