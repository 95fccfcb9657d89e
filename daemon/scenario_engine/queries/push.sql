-- The push outbox. A claimed push is 'sending' with next_attempt_at as its lease, and
-- attempts doubles as a fencing token: an outcome is recorded only by the claim that
-- made it, so a slow sender whose lease ran out cannot overwrite a newer attempt.
--
-- Claiming a batch is not sending it. Each push is marked in flight on its own right
-- before its HTTP call (push_mark_in_flight, fenced by attempts): only then can the
-- gateway have it. Until then the dispatcher renews its claim (push_renew_claims), so a
-- dead dispatcher's unsent rows are claimable again one claim lease after it died, and a
-- row taken over meanwhile is never sent by the old claim because its mark fails. A row
-- found claimable with in_flight_at still set was interrupted mid-call: the claim makes it
-- delivery_uncertain, which it stays.

-- name: claim_pushes
-- params: batch_size, lease_secs
-- A mentor's due digest pushes are claimed whole, so that no batch boundary can split a digest
-- into two messages: with any of them in the batch, all the others come too (mates; the batch
-- may exceed batch_size by them). Concurrent claimers cannot split them either: a digest push is
-- claimable only by the claimer that holds the mentor's digest lock (a transaction-level
-- advisory lock, key (1684501364 = 'dgst', hashtext(mentor id)), tried, never waited for, and
-- released when this statement commits); the enqueue takes the same lock (lock_digest_windows),
-- so a window is never claimed while a push is joining it.
WITH due AS (
    SELECT id, mentor_id, digest, in_flight_at FROM scenario_engine.push_notification
    WHERE status IN ('pending', 'sending') AND next_attempt_at <= now()
      AND (NOT digest OR pg_try_advisory_xact_lock(1684501364, hashtext(mentor_id::text)))
    ORDER BY next_attempt_at, id
    LIMIT $1::int
    FOR UPDATE SKIP LOCKED
), mates AS (
    SELECT q.id, q.in_flight_at FROM scenario_engine.push_notification q
    WHERE q.digest AND q.status IN ('pending', 'sending') AND q.next_attempt_at <= now()
      AND q.mentor_id IN (SELECT mentor_id FROM due WHERE digest)
    FOR UPDATE SKIP LOCKED
), claimed AS (
    SELECT id, in_flight_at FROM due UNION SELECT id, in_flight_at FROM mates
)
UPDATE scenario_engine.push_notification p
SET status = 'sending', attempts = p.attempts + 1, next_attempt_at = now() + make_interval(secs => $2::float8),
    in_flight_at = NULL, delivery_uncertain = p.delivery_uncertain OR c.in_flight_at IS NOT NULL
FROM claimed c WHERE p.id = c.id
RETURNING p.id, p.mentor_id, p.scenario_type, p.title, p.body, p.data, p.idempotency_key, p.attempts,
          p.created_at, p.delivery_uncertain, c.in_flight_at IS NOT NULL AS interrupted,
          p.channel, p.recipient, p.fallback, p.digest;

-- name: push_renew_claims
-- params: ids, attempts, lease_secs
-- Keeps this dispatcher's claimed, not yet sent rows (ids with their attempts) its own.
UPDATE scenario_engine.push_notification p
SET next_attempt_at = now() + make_interval(secs => $3::float8)
FROM unnest($1::bigint[], $2::int[]) AS c(id, attempts)
WHERE p.id = c.id AND p.attempts = c.attempts AND p.status = 'sending' AND p.in_flight_at IS NULL;

-- name: push_mark_in_flight
-- params: id, attempts, lease_secs
-- The last statement before the HTTP call. No row back: the claim was taken over, do not send.
-- The lease now covers the call itself (send deadline plus time to record the outcome).
UPDATE scenario_engine.push_notification
SET in_flight_at = now(), next_attempt_at = now() + make_interval(secs => $3::float8)
WHERE id = $1::bigint AND status = 'sending' AND attempts = $2::int AND in_flight_at IS NULL
RETURNING id;

-- name: recheck_pushes
-- params: ids
-- Re-check at send time what may have changed since enqueue (docs/SCENARIOS.md): mentor status,
-- opt-out, and what each scenario declares (a renewed certification, a mentor active again).
-- email and locale: read through to_jsonb so that the platform may or may not have the columns
-- (peer_mentor.email is optional, docs/CHANNELS.md); NULL when it has not.
SELECT p.id, m.timezone, m.organization_id,
    nullif(btrim(to_jsonb(m) ->> 'email'), '') AS email,
    nullif(btrim(to_jsonb(m) ->> 'locale'), '') AS locale,
    CASE
        WHEN m.id IS NULL THEN 'mentor no longer exists'
        WHEN m.status <> 'active' THEN 'mentor is ' || m.status
        WHEN EXISTS (
            SELECT 1 FROM public.notification_preference np
            WHERE np.mentor_id = p.mentor_id AND np.opted_out AND np.scenario_type IN ('all', p.scenario_type)
        ) THEN 'mentor opted out'
        -- {scenario rechecks}: one WHEN per scenario that declares one (scenarios/registry.py)
    END AS cancel_reason
FROM scenario_engine.push_notification p
LEFT JOIN public.peer_mentor m ON m.id = p.mentor_id
WHERE p.id = ANY($1::bigint[]);

-- name: push_sent
-- params: id, attempts, provider, provider_message_id
UPDATE scenario_engine.push_notification
SET status = 'sent', sent_at = now(), provider = $3::text, provider_message_id = $4::text, last_error = NULL,
    in_flight_at = NULL
WHERE id = $1::bigint AND status = 'sending' AND attempts = $2::int;

-- name: push_fall_back
-- params: id, attempts, channel, recipient, reason
-- The push cannot be delivered (no device token, token unregistered): the same delivery goes
-- by another channel instead, due at once. Only a 'push' row switches, so a notification falls
-- back once; the attempt count carries on (max attempts and max age bound the whole delivery).
UPDATE scenario_engine.push_notification
SET status = 'pending', next_attempt_at = now(), channel = $3::text, recipient = $4::text,
    fell_back_from = channel, fallback_reason = left($5::text, 2000), last_error = left($5::text, 2000),
    in_flight_at = NULL
WHERE id = $1::bigint AND status = 'sending' AND attempts = $2::int AND channel = 'push'
RETURNING id;

-- name: push_digest_group
-- params: ids, attempts, leader
-- The pushes one digest message carries (ids with their claim's attempts, the leader among
-- them), marked before the send so that the report counts what was merged.
UPDATE scenario_engine.push_notification p
SET digest_of = $3::bigint
FROM unnest($1::bigint[], $2::int[]) AS c(id, attempts)
WHERE p.id = c.id AND p.attempts = c.attempts AND p.status = 'sending';

-- name: push_retry
-- params: id, attempts, delay_secs, provider, error, maybe_delivered
-- maybe_delivered: this attempt may have reached the gateway (a timeout, a connection lost mid-request).
UPDATE scenario_engine.push_notification
SET status = 'pending', next_attempt_at = now() + make_interval(secs => $3::float8), provider = $4::text,
    last_error = left($5::text, 2000), in_flight_at = NULL, delivery_uncertain = delivery_uncertain OR $6::boolean
WHERE id = $1::bigint AND status = 'sending' AND attempts = $2::int;

-- name: push_finish
-- params: ids, attempts, statuses, provider, reasons
-- Terminal outcomes: 'failed' (permanent error), 'dead' (retries exhausted), 'cancelled'
-- (never sent, no longer wanted) and 'abandoned' (no longer wanted, but an earlier attempt
-- may have been delivered). Parallel arrays of ids, attempts (the fence), statuses and reasons;
-- one provider. One statement for all the re-check cancels of a claim.
UPDATE scenario_engine.push_notification p
SET status = t.status, provider = $4::text, last_error = left(t.reason, 2000), in_flight_at = NULL,
    cancel_reason = CASE WHEN t.status IN ('cancelled', 'abandoned') THEN left(t.reason, 2000) END
FROM unnest($1::bigint[], $2::int[], $3::text[], $5::text[]) AS t(id, attempts, status, reason)
WHERE p.id = t.id AND p.status = 'sending' AND p.attempts = t.attempts;

-- name: push_defer
-- params: ids, attempts, until
-- Quiet hours: not an attempt, so the attempt count goes back down. Parallel arrays: ids,
-- attempts (the fence), until (when each mentor's quiet hours end).
UPDATE scenario_engine.push_notification p
SET status = 'pending', attempts = p.attempts - 1, next_attempt_at = t.until, deferred_until = t.until
FROM unnest($1::bigint[], $2::int[], $3::timestamptz[]) AS t(id, attempts, until)
WHERE p.id = t.id AND p.status = 'sending' AND p.attempts = t.attempts;

-- name: requeue_dead_pushes
-- params: since
UPDATE scenario_engine.push_notification
SET status = 'pending', attempts = 0, next_attempt_at = now(), in_flight_at = NULL,
    last_error = 'requeued after: ' || coalesce(last_error, '')
WHERE status = 'dead' AND created_at >= coalesce($1::timestamptz, '-infinity')
RETURNING id;

-- name: outbox_stats
-- Three lookups on the partial indexes, never a scan of the (ever-growing) sent history.
SELECT (SELECT count(*) FROM scenario_engine.push_notification WHERE status IN ('pending', 'sending')) AS pending,
       (SELECT min(created_at) FROM scenario_engine.push_notification WHERE status IN ('pending', 'sending'))
           AS oldest_pending,
       (SELECT count(*) FROM scenario_engine.push_notification WHERE status = 'dead') AS dead;

-- name: fcm_device_tokens
-- params: mentor_id
-- The fcm provider's targets (push/fcm.py): every active device token of the mentor.
SELECT token FROM public.device_token WHERE mentor_id = $1 AND active ORDER BY id;

-- name: fcm_deactivate_token
-- params: token, error
-- A token FCM answered UNREGISTERED or INVALID_ARGUMENT for is never tried again (push/fcm.py).
UPDATE public.device_token SET active = false, deactivated_at = now(), last_error = $2
WHERE token = $1 AND active;
