-- Demo population: generated in SQL so that a few thousand mentors take a second.

-- name: demo_seed_mentors
-- params: mentor_count, now
-- Five organisations, mentors across time zones, some paused.
INSERT INTO public.peer_mentor (organization_id, display_name, status, timezone, joined_at)
SELECT ('00000000-0000-4000-8000-00000000000' || (g % 5 + 1))::uuid,
       (ARRAY['Ada','Bea','Cai','Dev','Eli','Fay','Gus','Hana','Ivo','Jun','Kim','Lea','Max','Noa','Oli',
              'Pia','Quin','Rae','Sam','Tove'])[g % 20 + 1] || ' ' ||
       (ARRAY['Berg','Okafor','Larsen','Nakamura','Silva','Haddad','Novak','Reyes','Moreau','Lindqvist',
              'Dubois','Kowalski'])[(g / 20) % 12 + 1],
       CASE WHEN g % 19 = 0 THEN 'paused' ELSE 'active' END,
       (ARRAY['Europe/Oslo','Europe/London','America/New_York','America/Los_Angeles','Asia/Tokyo',
              'Australia/Sydney','Pacific/Auckland','UTC'])[g % 8 + 1],
       $2::timestamptz - make_interval(days => 30 + (g * 7919) % 700)
FROM generate_series(1, $1::int) AS g;

-- name: demo_seed_activities
-- params: now
-- A year of activity: most mentors active recently, a tail inactive for weeks or months.
INSERT INTO public.activity (mentor_id, kind, occurred_at, duration_minutes, contacts)
SELECT m.id,
       (ARRAY['session','session','session','contact','training'])[1 + abs(hashtext(m.id::text || g)) % 5],
       $1::timestamptz - make_interval(days => m.quiet_days + (abs(hashtext(m.id::text || g || 'd')) % 330),
                                       mins => abs(hashtext(m.id::text || g || 'm')) % 1440),
       30 + abs(hashtext(m.id::text || g || 'h')) % 90,
       abs(hashtext(m.id::text || g || 'c')) % 4
FROM (
    SELECT id, CASE WHEN abs(hashtext(id::text)) % 10 < 7 THEN 0 ELSE 18 + abs(hashtext(id::text)) % 80 END
               AS quiet_days,
           10 + abs(hashtext(id::text || 'n')) % 60 AS n
    FROM public.peer_mentor
) m
CROSS JOIN LATERAL generate_series(1, m.n) AS g;

-- name: demo_seed_certifications
-- params: now
-- First aid and safeguarding; expiries from last month to next year, some revoked.
INSERT INTO public.certification (mentor_id, type, issued_at, expires_at, revoked_at)
SELECT p.id, t.type,
       $1::timestamptz - make_interval(days => 365 - d.offset_days),
       $1::timestamptz + make_interval(days => d.offset_days),
       CASE WHEN abs(hashtext(p.id::text || t.type || 'r')) % 40 = 0 THEN $1::timestamptz - interval '3 days' END
FROM public.peer_mentor p
CROSS JOIN (VALUES ('first_aid'), ('safeguarding')) AS t(type)
CROSS JOIN LATERAL (SELECT -20 + abs(hashtext(p.id::text || t.type)) % 380 AS offset_days) d
WHERE abs(hashtext(p.id::text || t.type || 'has')) % 3 <> 0;

-- name: demo_seed_preferences
INSERT INTO public.notification_preference (mentor_id, scenario_type, opted_out)
SELECT id, (ARRAY['all','inactivity','milestone','certification_expiry'])[1 + abs(hashtext(id::text)) % 4], true
FROM public.peer_mentor
WHERE abs(hashtext(id::text || 'opt')) % 100 < 6;

-- name: demo_near_milestone
-- params: thresholds
-- Active mentors one session short of a threshold this year: the generator's targets,
-- so that the event path visibly fires.
SELECT a.mentor_id
FROM public.activity a JOIN public.peer_mentor p ON p.id = a.mentor_id AND p.status = 'active'
WHERE a.kind = 'session' AND a.occurred_at >= date_trunc('year', now())
GROUP BY a.mentor_id
HAVING count(*) + 1 = ANY($1::int[])
LIMIT 50;

-- name: demo_random_mentors
-- params: limit
SELECT id FROM public.peer_mentor WHERE status = 'active' ORDER BY random() LIMIT $1::int;

-- name: demo_add_activity
-- params: mentor_id, kind, duration_minutes, contacts
INSERT INTO public.activity (mentor_id, kind, occurred_at, duration_minutes, contacts)
VALUES ($1::uuid, $2::text, now(), $3::int, $4::int);

-- name: demo_new_decisions
-- params: after_id
SELECT d.id, d.created_at, d.scenario_type, d.rule_name, d.outcome, d.reason, p.display_name, pn.title, pn.body
FROM scenario_engine.scenario_decision d
JOIN public.peer_mentor p ON p.id = d.mentor_id
LEFT JOIN scenario_engine.push_notification pn ON pn.notification_id = d.notification_id
WHERE d.id > $1::bigint
ORDER BY d.id
LIMIT 200;

-- name: demo_counts
SELECT (SELECT count(*) FROM public.peer_mentor) AS mentors,
       (SELECT count(*) FROM public.activity) AS activities,
       (SELECT count(*) FROM public.certification) AS certifications;
