-- The certification-expiry scenario's set-based statements (scenarios/certification/scenario.py).

-- name: certification_candidates
-- params: mentors, as_of, rule_name, tiers_days, types, lead_days
-- types: the watched certification types (empty = all). "Superseded" (a newer unrevoked
-- certification of the same type) is also stated in certification_recheck and oracle.py.
-- lead_days: the longest tier (the rule's lead time), a parameter of its own so that the
-- planner knows the reminder window when it plans: with the window's end computed from the
-- tiers in the statement it guessed 5k certifications for it (38k at 1M) and ANDed the whole
-- population's window with each batch's mentors — a read that grew with the population, per
-- batch — instead of reading the batch's own entries (certification_mentor_expiring_v2_idx).
WITH c AS (
    SELECT c.id, c.mentor_id, c.type, c.issued_at, c.expires_at, p.timezone,
           (SELECT min(t) FROM unnest($4::int[]) AS t
            WHERE c.expires_at <= $2::timestamptz + make_interval(secs => t * 86400.0)) AS tier
    FROM public.certification c
    JOIN public.peer_mentor p ON p.id = c.mentor_id AND p.status = 'active'
    WHERE c.mentor_id = ANY($1::uuid[])
      AND c.revoked_at IS NULL
      AND c.expires_at > $2::timestamptz
      AND c.expires_at <= $2::timestamptz + make_interval(secs => $6::int * 86400.0)
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

-- name: certification_due
-- params: since, as_of, tiers_days
-- The incremental sweep's certification work list for (since, as_of]: a certification entered
-- a reminder tier. A mentor may be listed more than once (inactivity_due says why).
SELECT c.mentor_id FROM unnest($3::int[]) AS t(days)
JOIN public.certification c ON c.revoked_at IS NULL
                    AND c.expires_at > $1::timestamptz + make_interval(secs => t.days * 86400.0)
                    AND c.expires_at <= $2::timestamptz + make_interval(secs => t.days * 86400.0);

-- name: certification_recheck
-- The send-time re-check (a condition over the push row p): the reminded certification was
-- renewed (superseded), revoked or has expired meanwhile.
NOT EXISTS (
    SELECT 1 FROM public.certification c
    WHERE c.id = (p.data -> 'context' ->> 'certification_id')::bigint
      AND c.revoked_at IS NULL AND c.expires_at > now()
      AND NOT EXISTS (
          SELECT 1 FROM public.certification n
          WHERE n.mentor_id = c.mentor_id AND n.type = c.type AND n.revoked_at IS NULL
            AND (n.issued_at, n.id) > (c.issued_at, c.id))
)

-- name: certification_renewed_in_time
-- The one definition of "renewed in time" (docs/OUTCOMES.md), included by the statement that
-- resolves certification outcomes (certification_outcomes), by `report` and by the programme
-- page (certification_renewals in queries/outcomes.sql). It reads a relation `expiring` that
-- the including statement defines — (id, mentor_id, type, issued_at, expires_at, as_of): the
-- certifications to judge and the instant each is judged at — and returns the ids of those
-- renewed in time. A certification c is renewed in time when a certification n exists
--   * of the same mentor and type, not revoked (revoked_at IS NULL, whenever it was revoked);
--   * issued after c in the order (issued_at, id): a later instant, or the same instant and a
--     greater id. It is the order in which the scenario calls c superseded (its candidates,
--     re-check and oracle.py), so of two issued at one instant the later id renews the other;
--   * issued strictly before c expires (issued_at < expires_at): a renewal issued at the
--     expiry instant is too late, c has lapsed;
--   * issued by the instant judged at (issued_at <= as_of): a later one is not known yet.
-- A join, so the planner chooses: one hash join with all certifications on (mentor, type) when
-- many are judged, a look-up per certification when few are (certification_renewals passes
-- only those a later certification of the mentor could renew; docs/BENCHMARKS.md, report).
SELECT DISTINCT e.id
FROM expiring e
JOIN public.certification n ON n.mentor_id = e.mentor_id AND n.type = e.type
WHERE n.revoked_at IS NULL
  AND (n.issued_at, n.id) > (e.issued_at, e.id)
  AND n.issued_at < e.expires_at
  AND n.issued_at <= e.as_of

-- name: certification_outcomes
-- params: scenario_types, as_of
-- Achieved: the reminded certification (the outcome's subject) was renewed in time
-- (certification_renewed_in_time), judged at as_of. The window of a certification outcome ends
-- at its expiry, so outcome_close makes the rest lapsed ('missed') once that has passed.
WITH expiring AS (
    SELECT c.id, c.mentor_id, c.type, c.issued_at, c.expires_at, $2::timestamptz AS as_of
    FROM scenario_engine.scenario_outcome o
    JOIN public.certification c ON c.id = o.subject::bigint
    WHERE o.status = 'pending' AND o.scenario_type = ANY($1::text[])
), renewed AS (
    -- include: certification_renewed_in_time
), done AS (
    UPDATE scenario_engine.scenario_outcome o SET status = 'achieved', resolved_at = $2::timestamptz
    FROM renewed r
    WHERE o.status = 'pending' AND o.scenario_type = ANY($1::text[]) AND o.subject = r.id::text
    RETURNING o.rule_name, o.arm, o.status
)
SELECT rule_name, arm, status, count(*)::bigint AS n FROM done GROUP BY rule_name, arm, status;

-- name: certification_outcomes_since
-- params: scenario_types, as_of, since, after_decision, up_to_decision
-- certification_outcomes, judging only the pending outcomes that may have changed since the
-- previous resolution (outcome_activity_after_since says which and why): decided since, window
-- (the expiry) closed, or the mentor has a certification issued in (since, as_of]
-- (certification_issued_idx, index-only).
WITH touched AS (
    SELECT DISTINCT n.mentor_id FROM public.certification n
    WHERE n.issued_at > $3::timestamptz AND n.issued_at <= $2::timestamptz
), todo AS (
    SELECT o.subject FROM (  -- on the primary key, whatever the statistics say (outcomes.sql)
        SELECT d.subject, d.status, d.scenario_type FROM scenario_engine.scenario_outcome d
        WHERE d.decision_id > $4::bigint AND d.decision_id <= $5::bigint
        OFFSET 0
    ) o
    WHERE o.status = 'pending' AND o.scenario_type = ANY($1::text[])
    UNION
    SELECT o.subject FROM scenario_engine.scenario_outcome o
    WHERE o.status = 'pending' AND o.scenario_type = ANY($1::text[]) AND o.window_ends_at <= $2::timestamptz
    UNION
    SELECT o.subject FROM touched t
    JOIN scenario_engine.scenario_outcome o ON o.mentor_id = t.mentor_id
    WHERE o.status = 'pending' AND o.scenario_type = ANY($1::text[])
), expiring AS (
    SELECT c.id, c.mentor_id, c.type, c.issued_at, c.expires_at, $2::timestamptz AS as_of
    FROM public.certification c
    WHERE c.id IN (SELECT todo.subject::bigint FROM todo)
), renewed AS (
    -- include: certification_renewed_in_time
), done AS (
    UPDATE scenario_engine.scenario_outcome o SET status = 'achieved', resolved_at = $2::timestamptz
    FROM renewed r
    WHERE o.status = 'pending' AND o.scenario_type = ANY($1::text[]) AND o.subject = r.id::text
    RETURNING o.rule_name, o.arm, o.status
)
SELECT rule_name, arm, status, count(*)::bigint AS n FROM done GROUP BY rule_name, arm, status;
