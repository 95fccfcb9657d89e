-- Sweep fencing. A leader learns that it lost its advisory lock only when it next asks, so
-- leadership alone cannot keep two processes from sweeping one period at once. A claim of a
-- period therefore carries an owner, a claim token and a lease: the owner renews the lease
-- before every batch with a conditional UPDATE (token matches, lease not expired) and stops
-- when that fails; another instance takes an unfinished period over only once its lease has
-- expired (or its owner released it). Rows written before this migration have no lease and
-- count as expired.
ALTER TABLE scenario_sweep ADD COLUMN IF NOT EXISTS claim_token uuid;
ALTER TABLE scenario_sweep ADD COLUMN IF NOT EXISTS lease_until timestamptz;

-- Who evaluated which batch of a period, and when (database clock): the evidence that no
-- mentor range was evaluated by two instances at once, for operators and for the tests.
-- One row per batch; rows of sweeps older than the event retention are pruned when a sweep
-- finishes.
CREATE TABLE IF NOT EXISTS scenario_sweep_batch (
    sweep_key    text NOT NULL,
    claim_token  uuid NOT NULL,
    batch_no     integer NOT NULL,
    instance_id  text NOT NULL,
    first_mentor uuid NOT NULL,
    last_mentor  uuid NOT NULL,
    mentors      integer NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    PRIMARY KEY (sweep_key, claim_token, batch_no)
);
CREATE INDEX IF NOT EXISTS scenario_sweep_batch_started_idx ON scenario_sweep_batch (started_at);
-- Like every engine table: row-level security on, no policy for client roles.
ALTER TABLE scenario_sweep_batch ENABLE ROW LEVEL SECURITY;
