-- Per-mentor reads for the single-mentor interfaces and `explain`. These deliberately
-- fetch raw rows and leave every decision to the pure Python evaluators, so that the
-- set-based sweep (scenarios.sql) and this path are two independent implementations that
-- the test suite checks against each other.

-- name: mentor_row
SELECT id, organization_id, display_name, status, timezone, joined_at FROM peer_mentor WHERE id = $1;

-- name: mentor_activities
SELECT kind, occurred_at, duration_minutes, contacts FROM activity
WHERE mentor_id = $1 AND occurred_at <= $2;

-- name: mentor_certifications
SELECT id, type, issued_at, expires_at, revoked_at FROM certification WHERE mentor_id = $1;

-- name: mentor_achievements
SELECT milestone, threshold::float8 AS threshold, period FROM achievement WHERE mentor_id = $1;

-- name: mentor_notifications
SELECT id, scenario_type, rule_name, subject, seq, dedup_key, as_of, created_at, context
FROM scenario_notification WHERE mentor_id = $1 ORDER BY id;

-- name: mentor_decisions
SELECT scenario_type, rule_name, dedup_key, outcome, reason, inputs, as_of, notification_id, created_at
FROM scenario_decision WHERE mentor_id = $1 ORDER BY id DESC LIMIT $2;

-- name: mentor_pushes
SELECT id, notification_id, scenario_type, title, status, attempts, created_at, sent_at, last_error
FROM push_notification WHERE mentor_id = $1 ORDER BY id DESC LIMIT $2;
