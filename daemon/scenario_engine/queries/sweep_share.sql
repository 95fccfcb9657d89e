-- The shared full sweep (sql/0026, runtime/shared_sweep.py): a period's ranges of mentor ids,
-- claimed by every running instance, each evaluated exactly once.

-- name: open_shared_sweep
-- params: sweep_key, claim_token, batch_size, plan
-- Writes the period's range list, once, by the instance that holds the period's claim: every
-- batch_size-th active mentor id starts a range, the first range is open below and the last
-- open above (a population of none still gets one range, so the period is closed by a range
-- completion like any other). Returns how many ranges the period has, and whether this call
-- wrote them (false: the period was opened already, e.g. by a leader before a takeover).
WITH period AS (
    UPDATE scenario_engine.scenario_sweep
    SET shared = $4::jsonb || jsonb_build_object('opened_at', now())
    WHERE sweep_key = $1::text AND claim_token = $2::uuid AND finished_at IS NULL AND shared IS NULL
    RETURNING sweep_key
), numbered AS (
    SELECT id, row_number() OVER (ORDER BY id) - 1 AS n
    FROM public.peer_mentor WHERE status = 'active'
), starts AS (
    SELECT id, (n / $3::int)::int AS batch_no FROM numbered WHERE n % $3::int = 0
), ranges AS (
    SELECT batch_no, CASE WHEN batch_no = 0 THEN NULL ELSE id END AS lower_mentor,
           lead(id) OVER (ORDER BY id) AS upper_mentor
    FROM starts
    UNION ALL
    SELECT 0, NULL::uuid, NULL::uuid WHERE NOT EXISTS (SELECT 1 FROM starts)
), written AS (
    INSERT INTO scenario_engine.scenario_sweep_range (sweep_key, batch_no, lower_mentor, upper_mentor)
    SELECT period.sweep_key, r.batch_no, r.lower_mentor, r.upper_mentor FROM period, ranges r
    RETURNING 1
)
-- (The outer count reads the snapshot from before the INSERT: the ranges already there.)
SELECT (SELECT count(*) FROM written) AS written,
       (SELECT count(*) FROM written)
       + (SELECT count(*) FROM scenario_engine.scenario_sweep_range WHERE sweep_key = $1::text) AS ranges;

-- name: claim_sweep_range
-- params: instance_id, lease_secs, rules_fingerprint
-- One range of an open shared period run under these rules: pending, or claimed by an owner
-- whose lease lapsed (it died between its claim and its evaluation's commit). SKIP LOCKED: a
-- range whose evaluation is running (its row is locked by that transaction) is never taken,
-- however late; nor is one another instance is claiming this instant. Only the latest period
-- is worked: a period left unfinished when a newer one began (its leader died, the fleet was
-- down) is abandoned, as a leader-only sweep abandons it — one catch-up, not one per period.
WITH next AS (
    SELECT r.sweep_key, r.batch_no, s.as_of, s.shared
    FROM scenario_engine.scenario_sweep_range r
    JOIN scenario_engine.scenario_sweep s ON s.sweep_key = r.sweep_key
    WHERE r.state <> 'done' AND (r.state = 'pending' OR r.lease_until <= now())
      AND s.finished_at IS NULL AND s.shared ->> 'rules' = $3::text
      AND NOT EXISTS (SELECT 1 FROM scenario_engine.scenario_sweep n WHERE n.as_of > s.as_of)
    ORDER BY r.batch_no
    LIMIT 1
    FOR UPDATE OF r SKIP LOCKED
)
UPDATE scenario_engine.scenario_sweep_range r
SET state = 'claimed', claimed_by = $1::text, claim_token = gen_random_uuid(),
    lease_until = now() + make_interval(secs => $2::float8), attempts = r.attempts + 1,
    claimed_at = now()
FROM next
WHERE r.sweep_key = next.sweep_key AND r.batch_no = next.batch_no
RETURNING r.sweep_key, r.batch_no, r.lower_mentor, r.upper_mentor, r.claim_token, r.attempts,
          next.as_of, next.shared;

-- name: reclaim_sweep_range
-- params: sweep_key, batch_no, claim_token, lease_secs, rules_fingerprint
-- This instance takes back at once a range whose evaluation it lost to a database error (its
-- connection died in a restart, say), instead of waiting out its own lease. Only the holder of
-- the claim's token can: another instance's claim, even under the same instance id, still
-- waits for the lease (claim_sweep_range). SKIP LOCKED: if the lost transaction is somehow
-- still alive on the server, holding the row (lock_sweep_range), the range is not taken; and
-- the fresh token fences that transaction should it reach lock_sweep_range later. Nothing when
-- the claim is no longer ours, the range is done, the period closed or no longer the latest,
-- or run under other rules: the range is then claimed as any other.
WITH mine AS (
    SELECT r.sweep_key, r.batch_no, s.as_of, s.shared
    FROM scenario_engine.scenario_sweep_range r
    JOIN scenario_engine.scenario_sweep s ON s.sweep_key = r.sweep_key
    WHERE r.sweep_key = $1::text AND r.batch_no = $2::int AND r.claim_token = $3::uuid
      AND r.state = 'claimed'
      AND s.finished_at IS NULL AND s.shared ->> 'rules' = $5::text
      AND NOT EXISTS (SELECT 1 FROM scenario_engine.scenario_sweep n WHERE n.as_of > s.as_of)
    FOR UPDATE OF r SKIP LOCKED
)
UPDATE scenario_engine.scenario_sweep_range r
SET claim_token = gen_random_uuid(), lease_until = now() + make_interval(secs => $4::float8),
    attempts = r.attempts + 1, claimed_at = now()
FROM mine
WHERE r.sweep_key = mine.sweep_key AND r.batch_no = mine.batch_no
RETURNING r.sweep_key, r.batch_no, r.lower_mentor, r.upper_mentor, r.claim_token, r.attempts,
          mine.as_of, mine.shared;

-- name: lock_sweep_range
-- params: sweep_key, batch_no, claim_token
-- First statement of a range's evaluation transaction: holds the range row until commit (so
-- the range cannot be taken over while it is evaluated) and checks that the claim is still
-- ours. No row: another instance took the range over after our lease lapsed; evaluate nothing.
SELECT batch_no FROM scenario_engine.scenario_sweep_range
WHERE sweep_key = $1::text AND batch_no = $2::int AND claim_token = $3::uuid AND state = 'claimed'
FOR UPDATE;

-- name: active_mentor_range
-- params: lower_mentor, upper_mentor
-- The active mentors of one range, in id order (the keyset of active_mentor_batch, bounded).
SELECT id FROM public.peer_mentor
WHERE status = 'active'
  AND id >= coalesce($1::uuid, '00000000-0000-0000-0000-000000000000'::uuid)
  AND ($2::uuid IS NULL OR id < $2::uuid)
ORDER BY id;

-- name: complete_sweep_range
-- params: sweep_key, batch_no, claim_token, mentors, stats, instance_id, first_mentor, last_mentor
-- In the evaluation's transaction, after its decisions: the range is done, with its counts,
-- only if the claim is still ours (lock_sweep_range made sure it is). Also the per-batch
-- ledger row (scenario_sweep_batch, sql/0010) for a range that had mentors.
WITH done AS (
    UPDATE scenario_engine.scenario_sweep_range
    SET state = 'done', finished_at = now(), mentors = $4::int, stats = $5::jsonb
    WHERE sweep_key = $1::text AND batch_no = $2::int AND claim_token = $3::uuid AND state = 'claimed'
    RETURNING claimed_at
), ledger AS (
    INSERT INTO scenario_engine.scenario_sweep_batch
        (sweep_key, claim_token, batch_no, instance_id, first_mentor, last_mentor, mentors, started_at, finished_at)
    SELECT $1::text, $3::uuid, $2::int, $6::text, $7::uuid, $8::uuid, $4::int, done.claimed_at, now()
    FROM done WHERE $7::uuid IS NOT NULL
)
SELECT EXISTS (SELECT 1 FROM done);

-- name: lock_shared_sweep
-- params: sweep_key
-- Before asking whether this was the last range: one range completion at a time per period,
-- so the next statement's snapshot sees every other completion that committed before it.
SELECT finished_at IS NULL AS open FROM scenario_engine.scenario_sweep
WHERE sweep_key = $1::text
FOR UPDATE;

-- name: shared_sweep_totals
-- params: sweep_key
-- Ranges not done yet, and the period's counts so far (read after lock_shared_sweep).
SELECT count(*) FILTER (WHERE state <> 'done') AS remaining,
       coalesce(sum(mentors) FILTER (WHERE state = 'done'), 0)::bigint AS mentors,
       coalesce(jsonb_agg(stats) FILTER (WHERE state = 'done'), '[]'::jsonb) AS stats,
       count(DISTINCT claimed_by) FILTER (WHERE state = 'done') AS instances
FROM scenario_engine.scenario_sweep_range WHERE sweep_key = $1::text;

-- name: close_shared_sweep
-- params: sweep_key, stats, retention_secs
-- The last range's completion closes the period, once; prunes the range list and the batch
-- ledger of periods older than retention_secs. Returns the period's duration (from opening).
WITH pruned_ranges AS (
    DELETE FROM scenario_engine.scenario_sweep_range r
    USING scenario_engine.scenario_sweep s
    WHERE s.sweep_key = r.sweep_key AND s.finished_at < now() - make_interval(secs => $3::float8)
), pruned_batches AS (
    DELETE FROM scenario_engine.scenario_sweep_batch
    WHERE started_at < now() - make_interval(secs => $3::float8) AND sweep_key <> $1::text
)
UPDATE scenario_engine.scenario_sweep
SET finished_at = now(), stats = $2::jsonb
WHERE sweep_key = $1::text AND finished_at IS NULL
RETURNING as_of,
          extract(epoch FROM now() - coalesce((shared ->> 'opened_at')::timestamptz, started_at))::float8 AS seconds;

-- name: guard_shared_sweep
-- params: sweep_key, claim_token, lease_secs
-- The opener's watch over its shared period: renews its period lease while the period is open
-- and still its claim (another leader takes an unfinished period over only after it lapses).
-- A lease that lapsed while the owner evaluated a long range is renewed all the same if nobody
-- claimed the period meanwhile (the token still matches): the ranges are fenced by their own
-- claims, the period lease only says who watches the period.
WITH renewed AS (
    UPDATE scenario_engine.scenario_sweep SET lease_until = now() + make_interval(secs => $3::float8)
    WHERE sweep_key = $1::text AND claim_token = $2::uuid AND finished_at IS NULL
    RETURNING sweep_key
)
SELECT finished_at IS NOT NULL AS finished, EXISTS (SELECT 1 FROM renewed) AS renewed
FROM scenario_engine.scenario_sweep WHERE sweep_key = $1::text;

-- name: shared_sweep_plan
-- params: sweep_key
-- A claimed period's plan: not NULL when it was opened as a shared sweep already.
SELECT shared FROM scenario_engine.scenario_sweep WHERE sweep_key = $1::text;

-- name: adopt_shared_sweep
-- params: sweep_key, claim_token, rules
-- A new owner whose rules differ from the plan's (its opener died, the rules changed since):
-- the remaining ranges are evaluated under the new owner's rules, and the period records
-- "mixed" rules so that the sweep after it is a full one.
UPDATE scenario_engine.scenario_sweep
SET shared = shared || jsonb_build_object('rules', $3::text,
                                          'adopted_from', coalesce(shared ->> 'adopted_from', shared ->> 'rules'))
WHERE sweep_key = $1::text AND claim_token = $2::uuid AND finished_at IS NULL AND shared IS NOT NULL
RETURNING shared;
