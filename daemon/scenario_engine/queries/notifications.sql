-- Writing decisions. Every statement runs in a transaction marked as the engine's own
-- (scenario_engine.origin = 'engine') so that the triggers do not turn it into events.

-- name: enqueue_batch
-- params: mentor_ids, subjects, seqs, dedup_keys, contexts, organization_ids, shapes, as_of, experiment_id, scenario_types, rule_names, reasons, held_out, window_ends, titles, bodies, fallbacks, hold_untils, hold_reasons, timing_arms, digests, digest_arms, digest_secs, effective_params
-- One scenario_notification per dedup key (a repeat is a no-op), and for each new one: the
-- cooldown state, a 'sent' or 'holdout' decision-log row with its pending outcome, and — unless
-- held out — a pending push. $1–$7 are parallel arrays, one element per candidate; contexts
-- are JSON text. What candidates share comes once per distinct combination (a "shape"):
-- shapes[i] is the 1-based index of candidate i's shape in the parallel arrays $10–$24
-- (issue 18: 21 arrays of one element per candidate cost the client ≈ 33 element checks and
-- encodings per notification, and the server a parse of the same parameters' JSON per row).
-- as_of: the evaluation instant; experiment_id: the rule's experiment. fallbacks: the channels
-- the candidate's programme allows when the push cannot be delivered, comma-separated ('' for
-- none; docs/CHANNELS.md). hold_untils, hold_reasons, timing_arms: the usual-hour hold (NULL:
-- due at once), why, and the timing experiment's arm (timing.py); the reason is appended to the
-- decision's. digests, digest_arms: whether the push waits for the mentor's digest window and
-- the digest experiment's arm; digest_secs: the window of the mentor's programme. A digest push
-- joins the mentor's open window (a pending digest push not yet due: the same
-- next_attempt_at), else opens one. effective_params: the effective parameters of the decision
-- (notifications.decision_params), JSON text, kept in the decision log's inputs only (not in
-- the push's data); parsed once per shape.
WITH shape AS MATERIALIZED (
    SELECT n::int AS shape, scenario_type, rule_name, reason, held_out, window_ends_at, title, body, fallback,
           hold_until, hold_reason, timing_arm, digest, digest_arm, digest_secs, params::jsonb AS params
    FROM unnest($10::text[], $11::text[], $12::text[], $13::boolean[], $14::timestamptz[], $15::text[],
                $16::text[], $17::text[], $18::timestamptz[], $19::text[], $20::text[], $21::boolean[],
                $22::text[], $23::float8[], $24::text[]) WITH ORDINALITY
        AS s(scenario_type, rule_name, reason, held_out, window_ends_at, title, body, fallback, hold_until,
             hold_reason, timing_arm, digest, digest_arm, digest_secs, params, n)
), input AS (
    SELECT t.mentor_id, s.scenario_type, s.rule_name, t.subject, t.seq, t.dedup_key, t.context::jsonb AS context,
           s.title, s.body, s.held_out, t.organization_id, s.window_ends_at, s.reason, s.fallback, s.hold_until,
           s.hold_reason, s.timing_arm, s.digest, s.digest_arm, s.digest_secs, s.params
    FROM unnest($1::uuid[], $2::text[], $3::int[], $4::text[], $5::text[], $6::uuid[], $7::int[]) WITH ORDINALITY
        AS t(mentor_id, subject, seq, dedup_key, context, organization_id, shape, n)
    JOIN shape s USING (shape)
    ORDER BY t.n  -- the candidates' order, whatever the join's: the ledger ids follow it
), ins AS (
    INSERT INTO scenario_engine.scenario_notification (mentor_id, scenario_type, rule_name, subject, seq, dedup_key, context, as_of, held_out)
    SELECT mentor_id, scenario_type, rule_name, subject, seq, dedup_key, context, $8::timestamptz, held_out FROM input
    ON CONFLICT (dedup_key) DO NOTHING
    RETURNING id, mentor_id, scenario_type, rule_name, subject, dedup_key, held_out
), cooldown AS (
    INSERT INTO scenario_engine.scenario_cooldown (mentor_id, scenario_type, last_triggered_at, last_rule_name, last_notification_id)
    SELECT DISTINCT ON (mentor_id, scenario_type) mentor_id, scenario_type, $8::timestamptz, rule_name, id
    FROM ins ORDER BY mentor_id, scenario_type, id DESC
    ON CONFLICT (mentor_id, scenario_type) DO UPDATE
    SET last_triggered_at = excluded.last_triggered_at,
        last_rule_name = excluded.last_rule_name,
        last_notification_id = excluded.last_notification_id
    WHERE scenario_cooldown.last_triggered_at <= excluded.last_triggered_at
), push AS (
    INSERT INTO scenario_engine.push_notification (notification_id, mentor_id, scenario_type, title, body, data, idempotency_key,
                                   organization_id, experiment_id, decided_at, fallback,
                                   next_attempt_at, held_until, hold_reason, digest, digest_window)
    SELECT ins.id, ins.mentor_id, ins.scenario_type, i.title, i.body,
           jsonb_build_object('rule', ins.rule_name, 'notification_id', ins.id, 'context', i.context),
           ins.dedup_key, i.organization_id, $9::bigint, $8::timestamptz,
           coalesce(string_to_array(nullif(i.fallback, ''), ','), '{}'),
           w.due, i.hold_until, i.hold_reason, i.digest, CASE WHEN i.digest THEN w.due END
    FROM ins JOIN input i USING (dedup_key)
    CROSS JOIN LATERAL (
        SELECT CASE WHEN i.digest THEN coalesce(
                   (SELECT min(q.digest_window) FROM scenario_engine.push_notification q
                    WHERE q.mentor_id = ins.mentor_id AND q.digest AND q.status = 'pending'
                      AND q.digest_window > greatest(coalesce(i.hold_until, now()), now())),
                   greatest(coalesce(i.hold_until, now()), now()) + make_interval(secs => i.digest_secs))
               ELSE greatest(coalesce(i.hold_until, now()), now()) END AS due
    ) w
    WHERE NOT ins.held_out
    ON CONFLICT (idempotency_key) DO NOTHING
), superseded AS (  -- the candidate's earlier (suppressed) decisions are no longer its final one
    UPDATE scenario_engine.scenario_decision d SET final = false
    FROM ins WHERE d.dedup_key = ins.dedup_key AND d.final
), log AS (
    INSERT INTO scenario_engine.scenario_decision (mentor_id, scenario_type, rule_name, dedup_key, outcome, reason, inputs, as_of,
                                   notification_id, organization_id, experiment_id)
    SELECT ins.mentor_id, ins.scenario_type, ins.rule_name, ins.dedup_key,
           CASE WHEN ins.held_out THEN 'holdout' ELSE 'sent' END,
           CASE WHEN ins.held_out OR i.hold_reason IS NULL THEN i.reason ELSE i.reason || '; ' || i.hold_reason END,
           i.context || jsonb_build_object('params', i.params), $8::timestamptz, ins.id, i.organization_id, $9::bigint
    FROM ins JOIN input i USING (dedup_key)
    ON CONFLICT ON CONSTRAINT scenario_decision_once DO NOTHING
    RETURNING id, dedup_key
), outcome AS (
    INSERT INTO scenario_engine.scenario_outcome (decision_id, mentor_id, organization_id, scenario_type, rule_name, experiment_id,
                                  arm, subject, decided_at, window_ends_at, timing_arm, digest_arm)
    SELECT log.id, ins.mentor_id, i.organization_id, ins.scenario_type, ins.rule_name, $9::bigint,
           CASE WHEN ins.held_out THEN 'holdout' ELSE 'treated' END, ins.subject, $8::timestamptz, i.window_ends_at,
           CASE WHEN NOT ins.held_out THEN i.timing_arm END, CASE WHEN NOT ins.held_out THEN i.digest_arm END
    FROM log JOIN ins USING (dedup_key) JOIN input i USING (dedup_key)
)
SELECT id, dedup_key FROM ins;

-- name: lock_digest_windows
-- params: mentor_ids
-- Before enqueue_batch, in its transaction: the digest lock of each mentor whose push waits for
-- a digest window (the key the dispatcher's claim_pushes tries), taken in key order so that two
-- enqueues never wait on each other in a cycle. Held to commit, it makes "join the mentor's open
-- window, else open one" atomic: a second enqueue for the mentor waits here, and its
-- enqueue_batch, a later statement with a later snapshot (READ COMMITTED), sees the window the
-- first one opened. Why a lock and not a unique index: a window is "open" by the clock (its end
-- still ahead of the push's own due time, which a usual-hour hold moves), and one mentor may
-- have several, which no unique constraint can express without a window table of its own.
SELECT pg_advisory_xact_lock(1684501364, k)
FROM (SELECT DISTINCT hashtext(m::text) AS k FROM unnest($1::uuid[]) AS m ORDER BY k) keys;

-- name: existing_notifications
-- params: dedup_keys
SELECT id, dedup_key FROM scenario_engine.scenario_notification WHERE dedup_key = ANY($1::text[]);

-- name: log_suppressed_batch
-- params: mentor_ids, scenario_types, rule_names, dedup_keys, outcomes, reasons, inputs, as_of, organization_ids, experiment_id
-- A suppressed decision is logged once per (dedup key, outcome), however often it recurs; a
-- new one becomes its candidate's final decision (0016: the key's earlier suppressions are
-- not) — unless the candidate was sent or held out already, which stays final.
WITH log AS (
    INSERT INTO scenario_engine.scenario_decision (mentor_id, scenario_type, rule_name, dedup_key, outcome, reason, inputs, as_of,
                                   organization_id, experiment_id, final)
    SELECT mentor_id, scenario_type, rule_name, dedup_key, outcome, reason, inputs, $8::timestamptz, organization_id, $10::bigint,
           NOT EXISTS (SELECT 1 FROM scenario_engine.scenario_decision s
                       WHERE s.dedup_key = t.dedup_key AND s.outcome IN ('sent', 'holdout'))
    FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::jsonb[], $9::uuid[])
        AS t(mentor_id, scenario_type, rule_name, dedup_key, outcome, reason, inputs, organization_id)
    ON CONFLICT ON CONSTRAINT scenario_decision_once DO NOTHING
    RETURNING dedup_key, final
)
UPDATE scenario_engine.scenario_decision d SET final = false
FROM log WHERE log.final AND d.dedup_key = log.dedup_key AND d.final AND d.outcome NOT IN ('sent', 'holdout');

-- name: record_achievements
-- params: mentor_ids, milestones, thresholds, periods, achieved_at
INSERT INTO public.achievement (mentor_id, milestone, threshold, period, achieved_at, awarded_by)
SELECT mentor_id, milestone, threshold::numeric, period, $5::timestamptz, 'engine'
FROM unnest($1::uuid[], $2::text[], $3::float8[], $4::text[]) AS t(mentor_id, milestone, threshold, period)
ON CONFLICT (mentor_id, md5(milestone), md5(trim_scale(threshold)::text), md5(period)) DO NOTHING;

-- name: record_last_triggered
-- params: mentor_id, scenario_type, triggered_at, rule_name, notification_id
INSERT INTO scenario_engine.scenario_cooldown (mentor_id, scenario_type, last_triggered_at, last_rule_name, last_notification_id)
VALUES ($1::uuid, $2::text, $3::timestamptz, $4::text, $5::bigint)
ON CONFLICT (mentor_id, scenario_type) DO UPDATE
SET last_triggered_at = excluded.last_triggered_at,
    last_rule_name = excluded.last_rule_name,
    last_notification_id = coalesce(excluded.last_notification_id, scenario_cooldown.last_notification_id)
WHERE scenario_cooldown.last_triggered_at <= excluded.last_triggered_at;

-- name: wake_dispatchers
-- Wakes the dispatchers once the enqueueing transaction commits. Any role that can connect may
-- LISTEN on any channel, so the payload is empty: it tells a listener nothing but "new pushes".
SELECT pg_notify('scenario_push', '')
