-- The anniversary scenario's set-based statements (scenarios/anniversary/scenario.py).
-- "Today" and the join date are calendar days in the mentor's zone. date + interval 'N years'
-- keeps the day of the month, and a 29 February moves to the 28th in a year without one —
-- exactly oracle.anniversary_on. Join instants outside the evaluable range (scenarios/base.py)
-- have no calendar day and are never celebrated.
-- The day celebrated is the latest anniversary on or before today (this year's if it has come,
-- else last year's: oracle.latest_anniversary, in closed form, no row per day), and it is due
-- while today is at most grace_days after it (the rule's grace: a day that fell between two
-- sweeps is still greeted).

-- name: anniversary_candidates
-- params: mentors, as_of, rule_name, years, zones, grace_days
-- years: the year numbers the rule celebrates (empty = all); zones: the names Python can load
-- (scenarios/zones.py) — any other zone is a `problem` row, and the mentor is quarantined.
WITH m AS (
    SELECT p.id, p.timezone, p.timezone = ANY($5::text[]) AS zone_ok,
           CASE WHEN p.timezone = ANY($5::text[]) THEN (p.joined_at AT TIME ZONE p.timezone)::date END AS joined_on,
           CASE WHEN p.timezone = ANY($5::text[]) THEN ($2::timestamptz AT TIME ZONE p.timezone)::date END AS today
    FROM public.peer_mentor p
    WHERE p.id = ANY($1::uuid[]) AND p.status = 'active'
      AND p.joined_at >= '0001-01-02 00:00:00+00'::timestamptz AND p.joined_at <= '9999-12-30 00:00:00+00'::timestamptz
), a AS (
    SELECT m.id, m.joined_on, m.today, y.years,
           (m.joined_on + make_interval(years => y.years))::date AS day
    FROM m
    CROSS JOIN LATERAL (SELECT (extract(year FROM m.today) - extract(year FROM m.joined_on))::int AS y0) y0
    CROSS JOIN LATERAL (
        SELECT CASE WHEN (m.joined_on + make_interval(years => y0.y0))::date > m.today
                    THEN y0.y0 - 1 ELSE y0.y0 END AS years) y
    WHERE m.zone_ok
)
SELECT a.id AS mentor_id, a.years, a.joined_on, a.day, NULL::text AS problem
FROM a
WHERE a.years >= 1
  AND a.today - a.day <= $6::int
  AND (cardinality($4::int[]) = 0 OR a.years = ANY($4::int[]))
  AND NOT EXISTS (  -- greeted already, or baselined when the rule was first seen
      SELECT 1 FROM scenario_engine.scenario_notification sn
      WHERE sn.dedup_key = concat_ws(':', 'anniversary', $3::text, a.id, a.years, 0))
  AND NOT EXISTS (
      SELECT 1 FROM scenario_engine.scenario_decision d
      WHERE d.dedup_key = concat_ws(':', 'anniversary', $3::text, a.id, a.years, 0) AND d.outcome = 'baseline')
UNION ALL
SELECT m.id, NULL, NULL, NULL, m.timezone FROM m WHERE NOT m.zone_ok
ORDER BY mentor_id;

-- name: anniversary_baseline
-- params: as_of, rule_name, years, zones, grace_days, mentors
-- mentors: NULL for the whole population, or those an organisation's new variant concerns.
-- The no-flood baseline when a rule is first seen: the anniversaries due now (today's, and those
-- still within the grace, in each mentor's zone) are recorded as 'baseline' decisions, without a
-- push. Whole population, one statement.
WITH a AS (
    SELECT p.id, (p.joined_at AT TIME ZONE p.timezone)::date AS joined_on,
           ($1::timestamptz AT TIME ZONE p.timezone)::date AS today
    FROM public.peer_mentor p
    WHERE p.status = 'active' AND p.timezone = ANY($4::text[])
      AND ($6::uuid[] IS NULL OR p.id = ANY($6::uuid[]))
      AND p.joined_at >= '0001-01-02 00:00:00+00'::timestamptz AND p.joined_at <= '9999-12-30 00:00:00+00'::timestamptz
), y AS (
    SELECT a.id, a.today, y.years, (a.joined_on + make_interval(years => y.years))::date AS day
    FROM a
    CROSS JOIN LATERAL (SELECT (extract(year FROM a.today) - extract(year FROM a.joined_on))::int AS y0) y0
    CROSS JOIN LATERAL (
        SELECT CASE WHEN (a.joined_on + make_interval(years => y0.y0))::date > a.today
                    THEN y0.y0 - 1 ELSE y0.y0 END AS years) y
)
INSERT INTO scenario_engine.scenario_decision (mentor_id, scenario_type, rule_name, dedup_key, outcome, reason, inputs, as_of)
SELECT y.id, 'anniversary', $2::text, concat_ws(':', 'anniversary', $2::text, y.id, y.years, 0), 'baseline',
       'the rule was first seen on this anniversary (no-flood baseline)', jsonb_build_object('years', y.years),
       $1::timestamptz
FROM y
WHERE y.years >= 1 AND y.today - y.day <= $5::int
  AND (cardinality($3::int[]) = 0 OR y.years = ANY($3::int[]))
ON CONFLICT ON CONSTRAINT scenario_decision_once DO NOTHING;

-- name: anniversary_baselines
-- params: mentor_id, rule_name
-- The year numbers baselined for one mentor and rule (the single-mentor path).
SELECT split_part(d.dedup_key, ':', 4)::int AS years FROM scenario_engine.scenario_decision d
WHERE d.mentor_id = $1::uuid AND d.rule_name = $2::text AND d.outcome = 'baseline';

-- name: anniversary_due
-- params: since, as_of, zones, grace_days
-- The incremental sweep's anniversary work list: mentors whose latest anniversary day (on or
-- before the local day that contains as_of) began after the previous sweep (since) and is still
-- within the grace. A day that began at or before `since` was due at the previous sweep already
-- (data changes since then are events); a day that began and ended between the two sweeps (a
-- 23-hour day, a long interval) is found here because its start lies in (since, as_of].
-- "Began after since" is "later than since's local date" (day > since_day), so the first test
-- — a local midnight passed since the previous sweep — is cheap and rules out nearly everyone
-- between two sweeps minutes apart before any anniversary is computed.
-- grace_days is the largest of the enabled rules' (the candidates apply each rule's own).
SELECT p.id AS mentor_id
FROM public.peer_mentor p
CROSS JOIN LATERAL (
    SELECT (p.joined_at AT TIME ZONE p.timezone)::date AS joined_on,
           ($2::timestamptz AT TIME ZONE p.timezone)::date AS today,
           ($1::timestamptz AT TIME ZONE p.timezone)::date AS since_day
) d
CROSS JOIN LATERAL (SELECT (extract(year FROM d.today) - extract(year FROM d.joined_on))::int AS y0) y0
CROSS JOIN LATERAL (
    SELECT CASE WHEN (d.joined_on + make_interval(years => y0.y0))::date > d.today
                THEN y0.y0 - 1 ELSE y0.y0 END AS years) y
CROSS JOIN LATERAL (SELECT (d.joined_on + make_interval(years => y.years))::date AS day) a
WHERE p.status = 'active' AND p.timezone = ANY($3::text[])
  AND p.joined_at >= '0001-01-02 00:00:00+00'::timestamptz AND p.joined_at <= '9999-12-30 00:00:00+00'::timestamptz
  AND d.today > d.since_day
  AND y.years >= 1
  AND a.day > d.since_day
  AND d.today - a.day <= $4::int;
