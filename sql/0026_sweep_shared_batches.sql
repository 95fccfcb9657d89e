-- A full sweep shared by every running instance (issue 18, item 5).
--
-- One leader used to evaluate a full period alone, so adding a daemon added no sweep throughput.
-- Now the instance that opens a full period writes its batch list here: consecutive ranges of
-- active mentor ids, each about SCENARIO_SWEEP_BATCH_SIZE mentors at the moment the list is
-- written (a mentor activated later falls into whichever range covers its id, so the ranges
-- together cover every id exactly once). Every instance claims pending ranges with
-- FOR UPDATE SKIP LOCKED (claim_sweep_range), and evaluates a range in ONE transaction that
-- locks the range row, checks its claim token, writes the decisions and marks the range done
-- (complete_sweep_range): a claimant whose claim was taken over can therefore never commit
-- decisions for the range, and a range's counts are added exactly once. A claim whose owner
-- died before its evaluation committed is taken over once its lease has lapsed; the row lock
-- keeps a live evaluation from being taken over at all. The completion of the last range
-- closes the period (close_shared_sweep), under a lock on the period's scenario_sweep row so
-- that two last ranges finishing at once cannot both — or neither — close it.
CREATE TABLE IF NOT EXISTS scenario_engine.scenario_sweep_range (
    sweep_key    text NOT NULL,
    batch_no     integer NOT NULL,
    lower_mentor uuid,              -- inclusive; NULL: from the smallest id
    upper_mentor uuid,              -- exclusive; NULL: to the largest id
    state        text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'claimed', 'done')),
    claimed_by   text,
    claim_token  uuid,
    lease_until  timestamptz,
    attempts     integer NOT NULL DEFAULT 0,
    claimed_at   timestamptz,
    finished_at  timestamptz,
    mentors      integer,
    stats        jsonb,             -- {"per_rule": {rule: {outcome: n}}, "quarantined": n}
    PRIMARY KEY (sweep_key, batch_no)
);
-- The claim's probe: only unfinished ranges are indexed, so it stays tiny between sweeps.
CREATE INDEX IF NOT EXISTS scenario_sweep_range_open_idx
    ON scenario_engine.scenario_sweep_range (sweep_key, batch_no) WHERE state <> 'done';
ALTER TABLE scenario_engine.scenario_sweep_range ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON scenario_engine.scenario_sweep_range FROM PUBLIC;

-- The shared period's plan, written with its range list: the rules fingerprint the ranges must
-- be evaluated under (an instance with other rules loaded does not help), the full sweep's
-- as_of and the full-sweep requests it answers. NULL: the period is swept by its leader alone.
ALTER TABLE scenario_engine.scenario_sweep ADD COLUMN IF NOT EXISTS shared jsonb;
