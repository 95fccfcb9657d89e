-- The anniversary scenario's set-based statements (scenarios/anniversary/scenario.py).
-- "Today" and the join date are calendar days in the mentor's zone. date + interval 'N years'
-- keeps the day of the month, and a 29 February moves to the 28th in a year without one —
-- exactly oracle.anniversary_on. Join instants outside the evaluable range (scenarios/base.py)
-- have no calendar day and are never celebrated.

-- name: anniversary_candidates
-- params: mentors, as_of, rule_name, years, zones
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
    SELECT m.id, m.joined_on, m.today,
           (extract(year FROM m.today) - extract(year FROM m.joined_on))::int AS years
    FROM m WHERE m.zone_ok
)
SELECT a.id AS mentor_id, a.years, a.joined_on, a.today, NULL::text AS problem
FROM a
WHERE a.years >= 1
  AND (a.joined_on + make_interval(years => a.years))::date = a.today
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
-- params: as_of, rule_name, years, zones
-- The no-flood baseline when a rule is first seen: today's anniversaries (in each mentor's zone)
-- are recorded as 'baseline' decisions, without a push. Whole population, one statement.
WITH a AS (
    SELECT p.id, (p.joined_at AT TIME ZONE p.timezone)::date AS joined_on,
           ($1::timestamptz AT TIME ZONE p.timezone)::date AS today
    FROM public.peer_mentor p
    WHERE p.status = 'active' AND p.timezone = ANY($4::text[])
      AND p.joined_at >= '0001-01-02 00:00:00+00'::timestamptz AND p.joined_at <= '9999-12-30 00:00:00+00'::timestamptz
), y AS (
    SELECT a.*, (extract(year FROM a.today) - extract(year FROM a.joined_on))::int AS years FROM a
)
INSERT INTO scenario_engine.scenario_decision (mentor_id, scenario_type, rule_name, dedup_key, outcome, reason, inputs, as_of)
SELECT y.id, 'anniversary', $2::text, concat_ws(':', 'anniversary', $2::text, y.id, y.years, 0), 'baseline',
       'the rule was first seen on this anniversary (no-flood baseline)', jsonb_build_object('years', y.years),
       $1::timestamptz
FROM y
WHERE y.years >= 1 AND (y.joined_on + make_interval(years => y.years))::date = y.today
  AND (cardinality($3::int[]) = 0 OR y.years = ANY($3::int[]))
ON CONFLICT ON CONSTRAINT scenario_decision_once DO NOTHING;

-- name: anniversary_baselines
-- params: mentor_id, rule_name
-- The year numbers baselined for one mentor and rule (the single-mentor path).
SELECT split_part(d.dedup_key, ':', 4)::int AS years FROM scenario_engine.scenario_decision d
WHERE d.mentor_id = $1::uuid AND d.rule_name = $2::text AND d.outcome = 'baseline';

-- name: anniversary_due
-- params: since, as_of, zones
-- The incremental sweep's anniversary work list: mentors whose anniversary is the local day
-- that contains as_of, if that day began after the previous sweep (since). Earlier in the day
-- the previous sweep saw it already; data changes since then are events.
SELECT p.id AS mentor_id
FROM public.peer_mentor p
CROSS JOIN LATERAL (
    SELECT (p.joined_at AT TIME ZONE p.timezone)::date AS joined_on,
           ($2::timestamptz AT TIME ZONE p.timezone)::date AS today
) d
WHERE p.status = 'active' AND p.timezone = ANY($3::text[])
  AND p.joined_at >= '0001-01-02 00:00:00+00'::timestamptz AND p.joined_at <= '9999-12-30 00:00:00+00'::timestamptz
  AND d.today::timestamp AT TIME ZONE p.timezone > $1::timestamptz
  AND d.today > d.joined_on
  AND (d.joined_on + make_interval(years => (extract(year FROM d.today) - extract(year FROM d.joined_on))::int))::date = d.today;
