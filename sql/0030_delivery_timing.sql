-- Delivery timing and its experiment (issue 21, docs/CHANNELS.md).
--
-- held_until / hold_reason: a push held for the mentor's usual hour (a rule's send_at =
-- "usual_hour"): next_attempt_at is the hold's end, and the reason says why, for explain and
-- the mentor view ("held until 19:00 Europe/Oslo: 14 of the last 20 activities ...").
ALTER TABLE scenario_engine.push_notification ADD COLUMN IF NOT EXISTS held_until timestamptz;
ALTER TABLE scenario_engine.push_notification ADD COLUMN IF NOT EXISTS hold_reason text;

-- timing_arm: the experiment arm of a sent decision of a rule with send_at = "usual_hour":
-- 'usual_hour' (the new behaviour) or 'immediate' (the old), drawn by a salted hash of the
-- mentor like the holdout (outcomes/holdout.py); NULL when the rule runs no timing experiment,
-- and for held-out decisions (they get no push at all). The report compares the two arms'
-- outcome rates over the mature cohort (docs/OUTCOMES.md, "Experiment arms").
ALTER TABLE scenario_engine.scenario_outcome ADD COLUMN IF NOT EXISTS timing_arm text;
ALTER TABLE scenario_engine.scenario_outcome DROP CONSTRAINT IF EXISTS scenario_outcome_timing_arm_known;
ALTER TABLE scenario_engine.scenario_outcome ADD CONSTRAINT scenario_outcome_timing_arm_known
    CHECK (timing_arm IN ('usual_hour', 'immediate'));

-- Digests (rules file: digest_minutes > 0). digest: this push waits for the mentor's open
-- digest window (its next_attempt_at is the window's end, shared by every push of the mentor
-- that joins it); the dispatcher sends the digest pushes of one mentor claimed together as one
-- message. digest_of: the push whose message carried this one (the leader's own id for the
-- leader), set when a digest of two or more is sent; each push keeps its row, status and outcome.
ALTER TABLE scenario_engine.push_notification ADD COLUMN IF NOT EXISTS digest boolean NOT NULL DEFAULT false;
ALTER TABLE scenario_engine.push_notification ADD COLUMN IF NOT EXISTS digest_of bigint;
-- digest_window: the end of the digest window the push joined (the same for every push of it);
-- the daily cap counts one digest once (queries/evaluate.sql, policy_inputs).
ALTER TABLE scenario_engine.push_notification ADD COLUMN IF NOT EXISTS digest_window timestamptz;

-- digest_arm: the digest experiment's arm of a sent decision ('digest' or 'separate'), NULL
-- when the programme runs no digests or the decision is not in the experiment.
ALTER TABLE scenario_engine.scenario_outcome ADD COLUMN IF NOT EXISTS digest_arm text;
ALTER TABLE scenario_engine.scenario_outcome DROP CONSTRAINT IF EXISTS scenario_outcome_digest_arm_known;
ALTER TABLE scenario_engine.scenario_outcome ADD CONSTRAINT scenario_outcome_digest_arm_known
    CHECK (digest_arm IN ('digest', 'separate'));
