-- Writing decisions. Every statement runs in a transaction marked as the engine's own
-- (scenario_engine.origin = 'engine') so that the triggers do not turn it into events.

-- name: enqueue_batch
-- One scenario_notification per dedup key (a repeat is a no-op), and for each new one:
-- the cooldown state, a pending push and a 'sent' decision-log row. $1..$9 are parallel
-- arrays, $10 the evaluation instant.
WITH input AS (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::int[], $6::text[],
                         $7::jsonb[], $8::text[], $9::text[])
        AS t(mentor_id, scenario_type, rule_name, subject, seq, dedup_key, context, title, body)
), ins AS (
    INSERT INTO scenario_engine.scenario_notification (mentor_id, scenario_type, rule_name, subject, seq, dedup_key, context, as_of)
    SELECT mentor_id, scenario_type, rule_name, subject, seq, dedup_key, context, $10::timestamptz FROM input
    ON CONFLICT (dedup_key) DO NOTHING
    RETURNING id, mentor_id, scenario_type, rule_name, dedup_key
), cooldown AS (
    INSERT INTO scenario_engine.scenario_cooldown (mentor_id, scenario_type, last_triggered_at, last_rule_name, last_notification_id)
    SELECT DISTINCT ON (mentor_id, scenario_type) mentor_id, scenario_type, $10::timestamptz, rule_name, id
    FROM ins ORDER BY mentor_id, scenario_type, id DESC
    ON CONFLICT (mentor_id, scenario_type) DO UPDATE
    SET last_triggered_at = excluded.last_triggered_at,
        last_rule_name = excluded.last_rule_name,
        last_notification_id = excluded.last_notification_id
    WHERE scenario_cooldown.last_triggered_at <= excluded.last_triggered_at
), push AS (
    INSERT INTO scenario_engine.push_notification (notification_id, mentor_id, scenario_type, title, body, data, idempotency_key)
    SELECT ins.id, ins.mentor_id, ins.scenario_type, i.title, i.body,
           jsonb_build_object('rule', ins.rule_name, 'notification_id', ins.id, 'context', i.context),
           ins.dedup_key
    FROM ins JOIN input i USING (dedup_key)
    ON CONFLICT (idempotency_key) DO NOTHING
), log AS (
    INSERT INTO scenario_engine.scenario_decision (mentor_id, scenario_type, rule_name, dedup_key, outcome, reason, inputs, as_of,
                                   notification_id)
    SELECT ins.mentor_id, ins.scenario_type, ins.rule_name, ins.dedup_key, 'sent', 'all checks passed',
           i.context, $10::timestamptz, ins.id
    FROM ins JOIN input i USING (dedup_key)
    ON CONFLICT ON CONSTRAINT scenario_decision_once DO NOTHING
)
SELECT id, dedup_key FROM ins;

-- name: existing_notifications
SELECT id, dedup_key FROM scenario_engine.scenario_notification WHERE dedup_key = ANY($1::text[]);

-- name: log_suppressed_batch
-- A suppressed decision is logged once per (dedup key, outcome), however often it recurs.
INSERT INTO scenario_engine.scenario_decision (mentor_id, scenario_type, rule_name, dedup_key, outcome, reason, inputs, as_of)
SELECT mentor_id, scenario_type, rule_name, dedup_key, outcome, reason, inputs, $8::timestamptz
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::jsonb[])
    AS t(mentor_id, scenario_type, rule_name, dedup_key, outcome, reason, inputs)
ON CONFLICT ON CONSTRAINT scenario_decision_once DO NOTHING;

-- name: record_achievements
INSERT INTO public.achievement (mentor_id, milestone, threshold, period, achieved_at, awarded_by)
SELECT mentor_id, milestone, threshold::numeric, period, $5::timestamptz, 'engine'
FROM unnest($1::uuid[], $2::text[], $3::float8[], $4::text[]) AS t(mentor_id, milestone, threshold, period)
ON CONFLICT (mentor_id, md5(milestone), md5(trim_scale(threshold)::text), md5(period)) DO NOTHING;

-- name: record_last_triggered
INSERT INTO scenario_engine.scenario_cooldown (mentor_id, scenario_type, last_triggered_at, last_rule_name, last_notification_id)
VALUES ($1::uuid, $2::text, $3::timestamptz, $4::text, $5::bigint)
ON CONFLICT (mentor_id, scenario_type) DO UPDATE
SET last_triggered_at = excluded.last_triggered_at,
    last_rule_name = excluded.last_rule_name,
    last_notification_id = coalesce(excluded.last_notification_id, scenario_cooldown.last_notification_id)
WHERE scenario_cooldown.last_triggered_at <= excluded.last_triggered_at;
