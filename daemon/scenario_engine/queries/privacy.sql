-- Personal data: retention pruning and `scenario-engine forget` (scenario_engine/privacy.py).
-- Pruning runs off the hot path in small batches; each batch locks only rows that no one else
-- holds (SKIP LOCKED), so a drain batch or a push being sent is never waited for.

-- name: privacy_redact_notifications
-- params: cutoff, batch_size
-- Keeps what dedup and the policy read (dedup_key, mentor, rule, subject, seq, as_of); drops the
-- message context (display name, activity facts).
WITH batch AS (
    SELECT id FROM scenario_engine.scenario_notification
    WHERE context <> '{}'::jsonb AND created_at < $1::timestamptz  -- scenario_notification_unredacted_idx
    ORDER BY created_at
    LIMIT $2::int
    FOR UPDATE SKIP LOCKED
)
UPDATE scenario_engine.scenario_notification n SET context = '{}'::jsonb
FROM batch WHERE n.id = batch.id;

-- name: privacy_redact_decisions
-- params: cutoff, batch_size
-- Keeps the (dedup_key, outcome) key that makes the decision log write-once, the outcome and
-- the reason; drops the inputs.
WITH batch AS (
    SELECT id FROM scenario_engine.scenario_decision
    WHERE inputs <> '{}'::jsonb AND created_at < $1::timestamptz  -- scenario_decision_unredacted_idx
    ORDER BY created_at
    LIMIT $2::int
    FOR UPDATE SKIP LOCKED
)
UPDATE scenario_engine.scenario_decision d SET inputs = '{}'::jsonb
FROM batch WHERE d.id = batch.id;

-- name: privacy_delete_finished_pushes
-- params: cutoff, batch_size
-- Finished pushes only: pending and sending ones are never touched. A push is created only
-- with its (kept) scenario_notification, so deleting it can never let it be enqueued again.
WITH batch AS (
    SELECT id FROM scenario_engine.push_notification
    WHERE status IN ('sent', 'failed', 'dead', 'cancelled', 'abandoned')  -- push_notification_finished_idx
      AND created_at < $1::timestamptz
    ORDER BY created_at
    LIMIT $2::int
    FOR UPDATE SKIP LOCKED
)
DELETE FROM scenario_engine.push_notification p
USING batch WHERE p.id = batch.id;

-- name: privacy_engine_columns
-- params: schema
-- Every table of the engine's schema and each column that could hold a mentor id: uuid
-- (compared), uuid[] (searched), and anything textual — text, varchar, json, jsonb, arrays —
-- (searched as text). A table with none of these still appears once (column NULL), so that
-- `forget` reports, and the tests check, every table.
SELECT c.relname AS table_name, a.attname AS column_name,
       CASE
           WHEN a.atttypid = 'pg_catalog.uuid'::regtype THEN 'uuid'
           WHEN a.atttypid = 'pg_catalog.uuid[]'::regtype THEN 'uuid_array'
           WHEN a.atttypid IS NOT NULL THEN 'text'
       END AS kind
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN LATERAL (
    SELECT a.attname, a.atttypid
    FROM pg_catalog.pg_attribute a
    JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
    WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
      AND (a.atttypid IN ('pg_catalog.uuid'::regtype, 'pg_catalog.uuid[]'::regtype,
                          'pg_catalog.json'::regtype, 'pg_catalog.jsonb'::regtype)
           OR t.typcategory IN ('S', 'A'))
) a ON true
WHERE n.nspname = $1::text AND c.relkind IN ('r', 'p') AND NOT c.relispartition
-- Tables that others reference come last, so that `forget` counts each row in its own table
-- (scenario_outcome before the scenario_decision rows it cascades from).
ORDER BY EXISTS (SELECT 1 FROM pg_catalog.pg_constraint f
                 WHERE f.confrelid = c.oid AND f.contype = 'f' AND f.conrelid <> c.oid),
         c.relname, a.attname;

-- name: privacy_mentor_exists
-- params: mentor_id
-- Whether the platform still has the mentor (privacy.py says "unknown" if it cannot tell).
SELECT EXISTS (SELECT 1 FROM public.peer_mentor WHERE id = $1::uuid);
