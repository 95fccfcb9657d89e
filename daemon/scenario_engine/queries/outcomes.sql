-- Outcomes of treated and held-out decisions (docs/OUTCOMES.md). Each scenario names the
-- statement that resolves its pending outcomes (scenarios/<type>/scenario.py, OutcomeSpec);
-- all of them touch only pending rows (scenario_outcome_pending_idx), so each run costs what
-- is still open, not the history.

-- name: outcome_activity_after
-- params: scenario_types, as_of
-- Achieved when the mentor logged an activity after the decision and within its window
-- (inactivity: re-activated; milestone and anniversary: kept going). Activities dated after
-- as_of do not count yet. One statement for every scenario type that resolves so
-- (scenario_types; resolve.py).
WITH done AS (
    UPDATE scenario_engine.scenario_outcome o SET status = 'achieved', resolved_at = $2::timestamptz
    WHERE o.status = 'pending' AND o.scenario_type = ANY($1::text[])
      AND EXISTS (
          SELECT 1 FROM public.activity a
          WHERE a.mentor_id = o.mentor_id AND a.occurred_at > o.decided_at
            AND a.occurred_at <= least(o.window_ends_at, $2::timestamptz))
    RETURNING o.rule_name, o.arm, o.status
)
SELECT rule_name, arm, status, count(*)::bigint AS n FROM done GROUP BY rule_name, arm, status;

-- name: outcome_activity_after_since
-- params: scenario_types, as_of, since, after_decision, up_to_decision
-- outcome_activity_after, judging only the pending outcomes that may have changed since the
-- previous resolution (at `since`, having seen decisions up to `after_decision`; resolve.py):
-- those decided since (decision id above it), those whose window has closed (judged in full
-- once more before outcome_close makes them final), and those of a mentor with an activity dated
-- in (since, as_of] (activity_occurred_idx, index-only). Any other pending outcome had no
-- activity in its window up to `since` and has none after it, so its status cannot change —
-- but for an activity inserted after the previous resolution yet dated before it, which this
-- sees when the outcome's window closes (docs/OUTCOMES.md). One statement for all the types
-- that resolve so (issue 18: one per type read the activities of (since, as_of] three times).
-- "Decided since" is read on the primary key alone, bounded on both sides: (after_decision,
-- up_to_decision], the newest decision this resolution saw, which the next one starts after.
-- With the outcome table's statistics stale — right after a first sweep wrote its outcomes,
-- before autovacuum's ANALYZE — the planner took the pending index (its statistics said it
-- was nearly empty) and scanned every pending outcome of these types for the few decided
-- since (6,540 buffers, 25 ms at 1M, docs/BENCHMARKS.md). Behind OFFSET 0 the status and type
-- filters cannot reach the scan, and a two-sided range is estimated small without statistics.
WITH touched AS (
    SELECT DISTINCT a.mentor_id FROM public.activity a
    WHERE a.occurred_at > $3::timestamptz AND a.occurred_at <= $2::timestamptz
), todo AS (
    SELECT o.decision_id FROM (  -- on the primary key, whatever the statistics say (outcomes.sql)
        SELECT d.decision_id, d.status, d.scenario_type FROM scenario_engine.scenario_outcome d
        WHERE d.decision_id > $4::bigint AND d.decision_id <= $5::bigint
        OFFSET 0
    ) o
    WHERE o.status = 'pending' AND o.scenario_type = ANY($1::text[])
    UNION
    SELECT o.decision_id FROM scenario_engine.scenario_outcome o
    WHERE o.status = 'pending' AND o.scenario_type = ANY($1::text[]) AND o.window_ends_at <= $2::timestamptz
    UNION
    SELECT o.decision_id FROM touched t
    JOIN scenario_engine.scenario_outcome o ON o.mentor_id = t.mentor_id
    WHERE o.status = 'pending' AND o.scenario_type = ANY($1::text[])
), done AS (
    UPDATE scenario_engine.scenario_outcome o SET status = 'achieved', resolved_at = $2::timestamptz
    FROM todo
    WHERE o.decision_id = todo.decision_id AND o.status = 'pending'
      AND EXISTS (
          SELECT 1 FROM public.activity a
          WHERE a.mentor_id = o.mentor_id AND a.occurred_at > o.decided_at
            AND a.occurred_at <= least(o.window_ends_at, $2::timestamptz))
    RETURNING o.rule_name, o.arm, o.status
)
SELECT rule_name, arm, status, count(*)::bigint AS n FROM done GROUP BY rule_name, arm, status;

-- name: outcome_resolution_mark
-- The previous resolution's instant and the newest decision it had seen (sql/0027), locked for
-- this one's transaction (concurrent resolutions take turns). NULL the first time: the
-- resolution is then a full one.
INSERT INTO scenario_engine.scenario_outcome_resolution AS r (singleton, resolved_at, last_decision_id)
VALUES (true, NULL, 0)
ON CONFLICT (singleton) DO UPDATE SET singleton = r.singleton
RETURNING r.resolved_at, r.last_decision_id, (SELECT max(d.id) FROM scenario_engine.scenario_decision d) AS newest_decision;

-- name: outcome_resolution_save
-- params: as_of, last_decision_id
UPDATE scenario_engine.scenario_outcome_resolution SET resolved_at = $1::timestamptz, last_decision_id = $2::bigint;

-- name: outcome_close
-- params: as_of
-- What is still pending once its window has closed is missed; from then on it is final.
WITH done AS (
    UPDATE scenario_engine.scenario_outcome SET status = 'missed', resolved_at = $1::timestamptz
    WHERE status = 'pending' AND window_ends_at <= $1::timestamptz
    RETURNING rule_name, arm, status
)
SELECT rule_name, arm, status, count(*)::bigint AS n FROM done GROUP BY rule_name, arm, status;

-- name: report_outcome_cutoff
-- The cutoff of the outcome counts (the period's end, or the report's as_of if earlier) and how
-- its day is read: the roll-up's outcomes of the cutoff's day count as closed when the cutoff is
-- in the day's second half, else as open; the base rows of the shorter side (at most 12 hours of
-- windows ending in [w_from, w_to): after the cutoff, or by it) are then moved to their true
-- side. Reads a relation `period` (since, until, as_of) that the including statement defines.
SELECT x.*,
       CASE WHEN x.closed_mode THEN x.cutoff + interval '1 microsecond' ELSE x.day_at END AS w_from,
       CASE WHEN x.closed_mode THEN x.day_at + interval '1 day' ELSE x.cutoff + interval '1 microsecond' END AS w_to
FROM (
    SELECT y.cutoff, y.cutoff_day, y.cutoff_day::timestamp AT TIME ZONE 'UTC' AS day_at,
           y.cutoff - (y.cutoff_day::timestamp AT TIME ZONE 'UTC') > interval '12 hours' AS closed_mode
    FROM (
        SELECT least(p.until, p.as_of) AS cutoff, (least(p.until, p.as_of) AT TIME ZONE 'UTC')::date AS cutoff_day
        FROM period p
    ) y
) x

-- name: outcome_counted
-- params: since, until, as_of, organization_id, rule_name
-- The head of outcome_counts and arm_outcome_counts, written once: the period, its days
-- (report_period_days, b), the cutoff (report_outcome_cutoff, c), and `counted`: each group of
-- outcomes with whether its window had closed by the cutoff and its count n (negative where a
-- base row corrects its day's roll-up), from the roll-up for whole days and from the rows for
-- the partial days and the cutoff's day.
WITH period AS (
    SELECT $1::timestamptz AS since, $2::timestamptz AS until, $3::timestamptz AS as_of
), b AS (
    -- include: report_period_days
), c AS (
    -- include: report_outcome_cutoff
), counted AS (
    -- whole days of decisions, windows ending before or after the cutoff's day
    SELECT r.organization_id, r.rule_name, r.scenario_type, r.experiment_id, r.arm, r.timing_arm,
           r.digest_arm, date_trunc('week', r.day::timestamp)::date AS week, r.status,
           CASE WHEN r.window_day = (SELECT cutoff_day FROM c) THEN (SELECT closed_mode FROM c)
                ELSE r.window_day < (SELECT cutoff_day FROM c) END AS closed, r.n
    FROM scenario_engine.report_outcome_day r
    WHERE r.day >= (SELECT lo FROM b) AND r.day < (SELECT hi FROM b)
      AND ($4::uuid IS NULL OR r.organization_id = $4::uuid)
      AND ($5::text IS NULL OR r.rule_name = $5::text)
    UNION ALL
    -- the rows themselves: decided in the partial days at the ends of the period; and those
    -- decided in its whole days whose window ends on the shorter side of the cutoff, moved
    SELECT o.organization_id, o.rule_name, o.scenario_type, o.experiment_id, o.arm, o.timing_arm,
           o.digest_arm, date_trunc('week', o.decided_at AT TIME ZONE 'UTC')::date, o.status,
           o.window_ends_at <= (SELECT cutoff FROM c),
           CASE WHEN o.decided_at < (SELECT r1_to FROM b) THEN (SELECT s1 FROM b) ELSE (SELECT s2 FROM b) END
    FROM scenario_engine.scenario_outcome o
    WHERE (o.decided_at >= (SELECT r1_from FROM b) AND o.decided_at < (SELECT r1_to FROM b)
           OR o.decided_at >= (SELECT r2_from FROM b) AND o.decided_at < (SELECT r2_to FROM b))
      AND ($4::uuid IS NULL OR o.organization_id = $4::uuid)
      AND ($5::text IS NULL OR o.rule_name = $5::text)
    UNION ALL
    SELECT o.organization_id, o.rule_name, o.scenario_type, o.experiment_id, o.arm, o.timing_arm,
           o.digest_arm, date_trunc('week', o.decided_at AT TIME ZONE 'UTC')::date, o.status,
           v.closed, v.n
    FROM scenario_engine.scenario_outcome o
    CROSS JOIN LATERAL (VALUES (o.window_ends_at <= (SELECT cutoff FROM c), 1),
                               ((SELECT closed_mode FROM c), -1)) AS v (closed, n)
    WHERE o.window_ends_at >= (SELECT w_from FROM c) AND o.window_ends_at < (SELECT w_to FROM c)
      AND o.decided_at >= (SELECT lo_at FROM b) AND o.decided_at < (SELECT hi_at FROM b)
      AND ($4::uuid IS NULL OR o.organization_id = $4::uuid)
      AND ($5::text IS NULL OR o.rule_name = $5::text)
)

-- name: outcome_counts
-- params: since, until, as_of, organization_id, rule_name
-- The one count of outcomes behind `report` and the programme page (outcomes/model.py): the
-- outcomes of the sent and held-out decisions with decided_at in [since, until), per
-- organisation, rule, scenario type, experiment, arm and UTC week (Monday) of the decision;
-- organization_id and rule_name may be NULL (all). Each outcome row copies its decision's
-- instant, organisation, rule and experiment. Read from the daily roll-up report_outcome_day
-- (sql/0032) for the whole days of the period and, from the rows, for its partial ends and for
-- the outcomes whose window ends on the cutoff's day on the shorter side of the cutoff (the
-- roll-up cannot tell which of that day's windows had closed by the instant).
-- The mature cohort, judged at the end of the reporting range, never later than now
-- (cutoff = least(until, as_of)), so that a report of a closed range gives the same figures
-- whenever it is taken:
--   achieved, missed: the window closed by the cutoff (window_ends_at <= cutoff) and the
--     outcome is resolved — only these are in a rate or a lift, in both arms alike;
--   measuring: all the others, still being measured: the window is open at the cutoff, or it
--     has closed but no resolution has run since (resolve.py runs after every sweep);
--   measuring_achieved: of those, already achieved (an early success, not yet in a rate:
--     counting it would count early successes without the failures still to come).
-- achieved + missed + measuring is every outcome of the group.
-- include: outcome_counted
SELECT organization_id, rule_name, scenario_type, experiment_id, arm, week,
       coalesce(sum(n) FILTER (WHERE closed AND status = 'achieved'), 0)::bigint AS achieved,
       coalesce(sum(n) FILTER (WHERE closed AND status = 'missed'), 0)::bigint AS missed,
       coalesce(sum(n) FILTER (WHERE NOT closed OR status = 'pending'), 0)::bigint AS measuring,
       coalesce(sum(n) FILTER (WHERE NOT closed AND status = 'achieved'), 0)::bigint AS measuring_achieved
FROM counted
GROUP BY organization_id, rule_name, scenario_type, experiment_id, arm, week
HAVING sum(n) > 0;

-- name: outcome_experiments
-- params: rule_name
-- The experiments of one rule, or of all (NULL): one row per holdout set-up of a rule, a few
-- per rule, with whether it is the rule's current one (its newest). The salts are left out:
-- with them and a mentor id anyone could tell who is held out; the readers need the shares.
SELECT e.id, e.rule_name, e.scenario_type, e.holdout_percent::float8 AS holdout_percent,
       e.global_holdout_percent::float8 AS global_holdout_percent, e.started_at,
       e.id = max(e.id) OVER (PARTITION BY e.rule_name) AS current
FROM scenario_engine.scenario_experiment e
WHERE $1::text IS NULL OR e.rule_name = $1::text;

-- name: certification_renewals
-- params: since, until, split, as_of, organization_id
-- Certifications expiring in [since, until), per organisation (the mentor's, now), UTC week
-- (Monday) of expiry and side of split (expires_at >= split: `report`'s period against the
-- one before it); organization_id may be NULL (all). A revoked certification was withdrawn,
-- not left to lapse: it is not counted. Renewed in time: certification_renewed_in_time, judged
-- at as_of. The mature rule of outcome_counts: a certification is judged once it has expired
-- by as_of (renewed_in_time or lapsed); before that it is still open, even when renewed
-- already (still_open_renewed), as its outcome row is still being measured.
-- The plan (docs/BENCHMARKS.md, report): `judged` reads the period's certifications in mentor
-- order from certification_mentor_expiring_v2_idx and their organisations from
-- peer_mentor_organization_idx, both index-only, in one merge join (no hash of a million
-- mentors). Each gets a look-up of the same index, cheap in that order, for a later
-- unrevoked certification of the mentor, of any type, issued in time — what the definition
-- asks except the type, which is on the heap only. The definition itself then judges only
-- those few (`expiring`, read by their primary key): a certification without such a later
-- one is not renewed in time, so the counts are those of judging every one.
WITH judged AS MATERIALIZED (
    SELECT e.id, e.expires_at, m.organization_id,
           EXISTS (SELECT FROM public.certification n
                   WHERE n.mentor_id = e.mentor_id AND n.revoked_at IS NULL
                     AND (n.issued_at, n.id) > (e.issued_at, e.id)
                     AND n.issued_at < e.expires_at AND n.issued_at <= $4::timestamptz) AS may_be_renewed
    FROM (
        SELECT c.id, c.mentor_id, c.issued_at, c.expires_at
        FROM public.certification c
        WHERE c.revoked_at IS NULL AND c.expires_at >= $1::timestamptz AND c.expires_at < $2::timestamptz
        ORDER BY c.mentor_id
    ) e
    JOIN public.peer_mentor m ON m.id = e.mentor_id
    WHERE $5::uuid IS NULL OR m.organization_id = $5::uuid
), expiring AS (
    -- an array, not a join: the planner expects a few rows and probes for them, where a join
    -- with a boolean column it cannot estimate makes it hash all certifications twice
    SELECT c.id, c.mentor_id, c.type, c.issued_at, c.expires_at, $4::timestamptz AS as_of
    FROM public.certification c
    WHERE c.id = ANY ((SELECT array_agg(j.id) FROM judged j WHERE j.may_be_renewed)::bigint[])
), renewed AS (
    -- include: certification_renewed_in_time
)
SELECT e.organization_id,
       date_trunc('week', e.expires_at AT TIME ZONE 'UTC')::date AS week,
       e.expires_at >= $3::timestamptz AS after_split,
       count(*)::bigint AS expiring,
       count(*) FILTER (WHERE e.expires_at <= $4::timestamptz AND r.id IS NOT NULL)::bigint AS renewed_in_time,
       count(*) FILTER (WHERE e.expires_at <= $4::timestamptz AND r.id IS NULL)::bigint AS lapsed,
       count(*) FILTER (WHERE e.expires_at > $4::timestamptz)::bigint AS still_open,
       count(*) FILTER (WHERE e.expires_at > $4::timestamptz AND r.id IS NOT NULL)::bigint AS still_open_renewed
FROM judged e
LEFT JOIN renewed r ON r.id = e.id
GROUP BY e.organization_id, week, after_split;

-- name: arm_outcome_counts
-- params: since, until, as_of, organization_id, rule_name
-- The delivery experiments (docs/OUTCOMES.md, "Experiment arms"): the outcomes of the sent
-- decisions in [since, until) that were in a timing experiment, per rule and arm ('usual_hour'
-- or 'immediate'), and in the digest experiment ('digest' or 'separate'), with the mature-cohort
-- columns and cutoff of outcome_counts, read as outcome_counts reads them.
-- include: outcome_counted
SELECT rule_name, 'timing'::text AS experiment, timing_arm AS arm,
       coalesce(sum(n) FILTER (WHERE closed AND status = 'achieved'), 0)::bigint AS achieved,
       coalesce(sum(n) FILTER (WHERE closed AND status = 'missed'), 0)::bigint AS missed,
       coalesce(sum(n) FILTER (WHERE NOT closed OR status = 'pending'), 0)::bigint AS measuring,
       coalesce(sum(n) FILTER (WHERE NOT closed AND status = 'achieved'), 0)::bigint AS measuring_achieved
FROM counted
WHERE timing_arm IS NOT NULL
GROUP BY rule_name, timing_arm
HAVING sum(n) > 0
UNION ALL
SELECT rule_name, 'digest'::text, digest_arm,
       coalesce(sum(n) FILTER (WHERE closed AND status = 'achieved'), 0)::bigint,
       coalesce(sum(n) FILTER (WHERE closed AND status = 'missed'), 0)::bigint,
       coalesce(sum(n) FILTER (WHERE NOT closed OR status = 'pending'), 0)::bigint,
       coalesce(sum(n) FILTER (WHERE NOT closed AND status = 'achieved'), 0)::bigint
FROM counted
WHERE digest_arm IS NOT NULL
GROUP BY rule_name, digest_arm
HAVING sum(n) > 0;
