-- The calendar period a milestone rule counts in, for one mentor's zone: 'all_time' from
-- -infinity, or the mentor's local calendar year from its first instant. The candidate query
-- and the no-flood baseline (scenarios/milestone/queries.sql) must agree on it to the letter,
-- or the baseline would record a period the candidates never ask about: one definition here.
--
-- LANGUAGE sql, STABLE, one SELECT, no SET clause and not STRICT: the planner inlines it into
-- the caller's LATERAL join (the plan is that of the expression written in place). The zone is
-- only read for a yearly period (CASE), so an unloadable zone cannot fail an all-time rule.
CREATE OR REPLACE FUNCTION scenario_engine.milestone_period(kind text, as_of timestamptz, zone text)
RETURNS TABLE (period text, period_start timestamptz)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN kind = 'year' THEN extract(year FROM as_of AT TIME ZONE zone)::int::text
                ELSE 'all_time' END,
           CASE WHEN kind = 'year'
                THEN make_timestamptz(extract(year FROM as_of AT TIME ZONE zone)::int, 1, 1, 0, 0, 0, zone)
                ELSE '-infinity'::timestamptz END
$$;
