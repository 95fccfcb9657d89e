-- Outcomes of treated and held-out decisions (docs/OUTCOMES.md). Each scenario names the
-- statement that resolves its pending outcomes (scenarios/<type>/scenario.py, OutcomeSpec);
-- all of them touch only pending rows (scenario_outcome_pending_idx), so each run costs what
-- is still open, not the history.

-- name: outcome_activity_after
-- params: scenario_type, as_of
-- Achieved when the mentor logged an activity after the decision and within its window
-- (inactivity: re-activated; milestone and anniversary: kept going). Activities dated after
-- as_of do not count yet.
WITH done AS (
    UPDATE scenario_engine.scenario_outcome o SET status = 'achieved', resolved_at = $2::timestamptz
    WHERE o.status = 'pending' AND o.scenario_type = $1::text
      AND EXISTS (
          SELECT 1 FROM public.activity a
          WHERE a.mentor_id = o.mentor_id AND a.occurred_at > o.decided_at
            AND a.occurred_at <= least(o.window_ends_at, $2::timestamptz))
    RETURNING o.rule_name, o.arm, o.status
)
SELECT rule_name, arm, status, count(*)::bigint AS n FROM done GROUP BY rule_name, arm, status;

-- name: outcome_close
-- params: as_of
-- What is still pending once its window has closed is missed; from then on it is final.
WITH done AS (
    UPDATE scenario_engine.scenario_outcome SET status = 'missed', resolved_at = $1::timestamptz
    WHERE status = 'pending' AND window_ends_at <= $1::timestamptz
    RETURNING rule_name, arm, status
)
SELECT rule_name, arm, status, count(*)::bigint AS n FROM done GROUP BY rule_name, arm, status;
