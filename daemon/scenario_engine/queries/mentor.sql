-- Per-mentor reads for the single-mentor interfaces and `explain`. These deliberately
-- fetch raw rows and leave every decision to the pure Python evaluators, so that the
-- set-based sweep (scenarios/*/queries.sql) and this path are two independent implementations that
-- the test suite checks against each other.
--
-- Instants outside the range the engine evaluates (instants.py: EVALUABLE_FROM and
-- EVALUABLE_UNTIL) come back as ±infinity, which they mean for every decision (before or
-- after anything else); asyncpg could not even decode a date in 4713 BC.

-- name: mentor_row
-- params: mentor_id
SELECT id, organization_id, display_name, status, timezone,
       CASE WHEN joined_at < '0001-01-02 00:00:00+00'::timestamptz THEN '-infinity'::timestamptz WHEN joined_at > '9999-12-30 00:00:00+00'::timestamptz THEN 'infinity'::timestamptz ELSE joined_at END AS joined_at
FROM public.peer_mentor WHERE id = $1;

-- name: mentor_activities
-- params: mentor_id, as_of
SELECT kind, duration_minutes, contacts,
       CASE WHEN occurred_at < '0001-01-02 00:00:00+00'::timestamptz THEN '-infinity'::timestamptz WHEN occurred_at > '9999-12-30 00:00:00+00'::timestamptz THEN 'infinity'::timestamptz ELSE occurred_at END AS occurred_at
FROM public.activity
WHERE mentor_id = $1 AND occurred_at <= $2;

-- name: mentor_certifications
-- params: mentor_id
SELECT id, type,
       CASE WHEN issued_at < '0001-01-02 00:00:00+00'::timestamptz THEN '-infinity'::timestamptz WHEN issued_at > '9999-12-30 00:00:00+00'::timestamptz THEN 'infinity'::timestamptz ELSE issued_at END AS issued_at,
       CASE WHEN expires_at < '0001-01-02 00:00:00+00'::timestamptz THEN '-infinity'::timestamptz WHEN expires_at > '9999-12-30 00:00:00+00'::timestamptz THEN 'infinity'::timestamptz ELSE expires_at END AS expires_at,
       CASE WHEN revoked_at < '0001-01-02 00:00:00+00'::timestamptz THEN '-infinity'::timestamptz WHEN revoked_at > '9999-12-30 00:00:00+00'::timestamptz THEN 'infinity'::timestamptz ELSE revoked_at END AS revoked_at
FROM public.certification WHERE mentor_id = $1;

-- name: mentor_achievements
-- params: mentor_id
SELECT milestone, threshold::float8 AS threshold, period FROM public.achievement WHERE mentor_id = $1;

-- name: mentor_notifications
-- params: mentor_id
SELECT id, scenario_type, rule_name, subject, seq, dedup_key, as_of, created_at, context
FROM scenario_engine.scenario_notification WHERE mentor_id = $1 ORDER BY id;

-- name: mentor_decisions
-- params: mentor_id, limit
-- With the outcome of a sent or held-out decision (pending / achieved / missed, and when its
-- window closes).
SELECT d.scenario_type, d.rule_name, d.dedup_key, d.outcome, d.reason, d.inputs, d.as_of, d.notification_id,
       d.created_at, o.status AS outcome_status, o.window_ends_at AS outcome_window_ends_at
FROM scenario_engine.scenario_decision d
LEFT JOIN scenario_engine.scenario_outcome o ON o.decision_id = d.id
WHERE d.mentor_id = $1 ORDER BY d.id DESC LIMIT $2;

-- name: mentor_pushes
-- params: mentor_id, limit
SELECT id, notification_id, scenario_type, title, status, attempts, created_at, sent_at, last_error
FROM scenario_engine.push_notification WHERE mentor_id = $1 ORDER BY id DESC LIMIT $2;

-- name: mentor_quarantine
-- params: mentor_id
SELECT mentor_id, reason, first_seen_at, last_seen_at, occurrences, cleared_at
FROM scenario_engine.scenario_quarantine WHERE mentor_id = $1;

-- name: mentor_id_prefix
-- params: low, high
-- Mentors whose id starts with a prefix (`explain` accepts the 8 hex digits the demo's feed
-- shows): ids between the prefix padded with 0s and with fs, a range on the primary key rather
-- than a text match; two rows are enough to call it ambiguous.
SELECT id FROM public.peer_mentor WHERE id BETWEEN $1::uuid AND $2::uuid ORDER BY id LIMIT 2;

-- name: mentor_display_names
-- params: mentor_ids
-- The names shown beside the mentors a dry-run sweep would notify (cli/sweep.py, sweep --dry-run).
SELECT id, display_name FROM public.peer_mentor WHERE id = ANY($1::uuid[]);
