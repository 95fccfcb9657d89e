-- Queries of the long-running daemon: event drain, leadership, sweep bookkeeping, status.

-- name: claim_events
-- params: batch_size
-- Oldest pending events first; SKIP LOCKED lets several daemons drain side by side.
SELECT id, table_name, operation, mentor_id, old_mentor_id, row_id, attempts, created_at
FROM scenario_engine.scenario_event
WHERE processed_at IS NULL AND dead_at IS NULL
ORDER BY id
LIMIT $1::int
FOR UPDATE SKIP LOCKED;

-- name: claim_events_partition
-- params: batch_size, partitions, partition
-- claim_events restricted to one partition of the mentors (runtime/drain.py, concurrent loops
-- of one process): a mentor's events are always in the same partition, so two loops never
-- evaluate one mentor at once. An event without a mentor (dead-lettered on claim) is in
-- partition 0; one that moved a row to another mentor goes by its new mentor.
SELECT id, table_name, operation, mentor_id, old_mentor_id, row_id, attempts, created_at
FROM scenario_engine.scenario_event
WHERE processed_at IS NULL AND dead_at IS NULL
  AND coalesce((hashtext(mentor_id::text) & 2147483647) % $2::int, 0) = $3::int
ORDER BY id
LIMIT $1::int
FOR UPDATE SKIP LOCKED;

-- name: pending_event_exists
-- The drain's poll between batches (runtime/drain.py): an index-only probe of
-- scenario_event_pending_idx that stops at the first entry; no lock, no transaction.
SELECT EXISTS (
    SELECT 1 FROM scenario_engine.scenario_event WHERE processed_at IS NULL AND dead_at IS NULL
);

-- name: mark_events_processed
-- params: ids
UPDATE scenario_engine.scenario_event SET processed_at = clock_timestamp(), attempts = attempts + 1
WHERE id = ANY($1::bigint[]);

-- name: mark_event_failed
-- params: id, error, max_attempts
-- A failed attempt; after the last allowed attempt the event is dead-lettered.
UPDATE scenario_engine.scenario_event
SET attempts = attempts + 1,
    last_error = left($2::text, 2000),
    dead_at = CASE WHEN attempts + 1 >= $3::int THEN clock_timestamp() END
WHERE id = $1::bigint
RETURNING dead_at IS NOT NULL AS dead;

-- name: dead_letter_event
-- params: id, error
UPDATE scenario_engine.scenario_event SET attempts = attempts + 1, last_error = left($2::text, 2000), dead_at = clock_timestamp()
WHERE id = $1::bigint;

-- name: prune_processed_events
-- params: retention_secs, batch_size
-- Bounded batches so the pruner never holds long locks or bloats one transaction.
DELETE FROM scenario_engine.scenario_event
WHERE id IN (
    SELECT id FROM scenario_engine.scenario_event
    WHERE processed_at IS NOT NULL AND processed_at < now() - make_interval(secs => $1::float8)
    LIMIT $2::int
);

-- name: try_leader_lock
-- params: lock_key
SELECT pg_try_advisory_lock($1::bigint);

-- name: holds_leader_lock
-- params: lock_key
-- The session lock vanishes silently with its connection: ask the server, not memory.
SELECT EXISTS (
    SELECT 1 FROM pg_locks
    WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted
      AND ((classid::bigint << 32) | objid::bigint) = $1::bigint
);

-- name: claim_sweep
-- params: sweep_key, as_of, instance_id, lease_secs
-- Returns the row only if this instance may sweep the period now: it is new, or unfinished
-- and either this instance owned it (a restart under the same instance id) or its owner's
-- lease has lapsed (the owner died, was fenced, or gave the period up). A live owner's
-- period is never taken. The fresh claim token fences the previous owner: its renewals
-- stop matching. Rows from before sql/0010 have no lease and count as lapsed.
WITH claimed AS (
INSERT INTO scenario_engine.scenario_sweep (sweep_key, as_of, instance_id, started_at, claim_token, lease_until)
VALUES ($1::text, $2::timestamptz, $3::text, now(), gen_random_uuid(),
        now() + make_interval(secs => $4::float8))
ON CONFLICT (sweep_key) DO UPDATE
SET instance_id = excluded.instance_id, started_at = excluded.started_at,
    claim_token = excluded.claim_token, lease_until = excluded.lease_until
WHERE scenario_sweep.finished_at IS NULL
  AND (scenario_sweep.instance_id = excluded.instance_id
       OR scenario_sweep.lease_until IS NULL OR scenario_sweep.lease_until <= now())
RETURNING sweep_key, as_of, claim_token
), closed AS (
    -- This instance's earlier claim of the period is over: it sweeps one period at a time, so
    -- the evaluation that failed (or the process that died) has stopped. Its last batch stays
    -- open in the ledger otherwise, as if still running; it ended no later than now.
    UPDATE scenario_engine.scenario_sweep_batch b SET finished_at = now()
    FROM claimed
    WHERE b.sweep_key = claimed.sweep_key AND b.claim_token <> claimed.claim_token
      AND b.instance_id = $3::text AND b.finished_at IS NULL
)
SELECT sweep_key, as_of, claim_token FROM claimed;

-- name: sweep_claim_state
-- params: sweep_key
-- Why a claim was refused: the period is finished, or another owner's lease is still running.
SELECT instance_id, finished_at IS NOT NULL AS finished, lease_until
FROM scenario_engine.scenario_sweep WHERE sweep_key = $1::text;

-- name: renew_sweep_lease
-- params: sweep_key, claim_token, lease_secs, batch_no, instance_id, first_mentor, last_mentor, mentor_count
-- Before each batch: renew the lease only if the claim is still ours and the lease has not
-- lapsed (otherwise another instance may own the period: stop). Closes the previous batch of
-- this claim in the ledger and, when renewed, opens this one. True when renewed.
WITH closed AS (
    UPDATE scenario_engine.scenario_sweep_batch SET finished_at = now()
    WHERE sweep_key = $1::text AND claim_token = $2::uuid AND finished_at IS NULL
), renewed AS (
    UPDATE scenario_engine.scenario_sweep SET lease_until = now() + make_interval(secs => $3::float8)
    WHERE sweep_key = $1::text AND claim_token = $2::uuid AND finished_at IS NULL
      AND lease_until > now()
    RETURNING sweep_key
), opened AS (
    INSERT INTO scenario_engine.scenario_sweep_batch
        (sweep_key, claim_token, batch_no, instance_id, first_mentor, last_mentor, mentors, started_at)
    SELECT $1::text, $2::uuid, $4::int, $5::text, $6::uuid, $7::uuid, $8::int, now() FROM renewed
)
SELECT EXISTS (SELECT 1 FROM renewed);

-- name: release_sweep_lease
-- params: sweep_key, claim_token
-- A sweep that stops early (shutdown, lost lock, lost lease) closes its open batch and lets
-- the lease lapse at once, so the next leader need not wait for it. No-op if no longer ours.
WITH closed AS (
    UPDATE scenario_engine.scenario_sweep_batch SET finished_at = now()
    WHERE sweep_key = $1::text AND claim_token = $2::uuid AND finished_at IS NULL
)
UPDATE scenario_engine.scenario_sweep SET lease_until = now()
WHERE sweep_key = $1::text AND claim_token = $2::uuid AND finished_at IS NULL;

-- name: finish_sweep
-- params: sweep_key, stats, claim_token, retention_secs
-- Only the current claim finishes a period (a fenced owner's late finish changes nothing).
-- Also closes the last batch and prunes the batch ledger of sweeps older than retention_secs.
WITH closed AS (
    UPDATE scenario_engine.scenario_sweep_batch SET finished_at = now()
    WHERE sweep_key = $1::text AND claim_token = $3::uuid AND finished_at IS NULL
), pruned AS (
    DELETE FROM scenario_engine.scenario_sweep_batch
    WHERE started_at < now() - make_interval(secs => $4::float8) AND sweep_key <> $1::text
)
UPDATE scenario_engine.scenario_sweep SET finished_at = now(), stats = $2::jsonb
WHERE sweep_key = $1::text AND claim_token = $3::uuid AND finished_at IS NULL
RETURNING sweep_key;

-- name: last_finished_sweep
-- params: as_of
-- The previous completed sweep: an incremental sweep starts where it ended.
SELECT sweep_key, as_of, stats FROM scenario_engine.scenario_sweep
WHERE finished_at IS NOT NULL AND as_of < $1::timestamptz
ORDER BY as_of DESC LIMIT 1;

-- name: backlogs
SELECT
    (SELECT count(*) FROM scenario_engine.scenario_event WHERE processed_at IS NULL AND dead_at IS NULL) AS events_pending,
    (SELECT count(*) FROM scenario_engine.scenario_event WHERE dead_at IS NOT NULL) AS events_dead,  -- scenario_event_dead_idx
    (SELECT created_at FROM scenario_engine.scenario_event WHERE processed_at IS NULL AND dead_at IS NULL
     ORDER BY id LIMIT 1) AS oldest_event;

-- name: heartbeat_instance
-- params: instance_id, hostname, pid, role, rules_fingerprint, clock_skew_secs, fresh_secs
-- This instance's heartbeat (its role, rules fingerprint and measured clock skew), answered with
-- the server's clock (for the skew; read at the end of the statement) and the fingerprint of the
-- leader as another instance last published it within fresh_secs (runtime/fleet.py).
WITH beat AS (
    INSERT INTO scenario_engine.scenario_engine_instance
        (instance_id, hostname, pid, role, heartbeat_at, rules_fingerprint, clock_skew_seconds)
    VALUES ($1::text, $2::text, $3::int, $4::text, now(), $5::text, $6::float8)
    ON CONFLICT (instance_id) DO UPDATE
    SET role = excluded.role, heartbeat_at = now(), rules_fingerprint = excluded.rules_fingerprint,
        clock_skew_seconds = excluded.clock_skew_seconds
    RETURNING 1
), leader AS (
    SELECT i.instance_id, i.rules_fingerprint
    FROM scenario_engine.scenario_engine_instance i
    WHERE i.role = 'leader' AND i.instance_id <> $1::text
      AND i.heartbeat_at > now() - make_interval(secs => $7::float8)
    ORDER BY i.heartbeat_at DESC
    LIMIT 1
)
SELECT clock_timestamp() AS server_now,
       (SELECT instance_id FROM leader) AS leader_instance,
       (SELECT rules_fingerprint FROM leader) AS leader_fingerprint
FROM beat;

-- name: database_now
-- The server's clock: the as_of of live decisions (runtime/clock.py).
SELECT clock_timestamp();

-- name: remove_instance
-- params: instance_id
DELETE FROM scenario_engine.scenario_engine_instance WHERE instance_id = $1::text;

-- name: full_sweep_requests
-- Requests for a full sweep not yet answered (sql/0023: a watched table was truncated). Read
-- when a sweep starts; a handful of rows at most.
SELECT id, table_name, operation FROM scenario_engine.scenario_full_sweep_request ORDER BY id;

-- name: full_sweep_requests_answered
-- params: ids
-- The requests a completed full sweep saw when it started (later ones wait for the next).
DELETE FROM scenario_engine.scenario_full_sweep_request WHERE id = ANY($1::bigint[]);

-- name: request_full_sweep
-- params: table_name, operation
-- A full sweep asked for by the daemon itself: a missing platform hook came back, and what
-- changed meanwhile was never captured (runtime/hooks.py).
INSERT INTO scenario_engine.scenario_full_sweep_request (table_name, operation) VALUES ($1::text, $2::text);

-- name: listen_ping
-- The LISTEN connection proves itself alive (runtime/listener.py): asyncpg does not notice a
-- dead socket by itself.
SELECT 1;
