-- Outcomes and holdout groups (docs/OUTCOMES.md).
--
-- An *experiment* is one rule under one holdout configuration: the rule's salt and percentage
-- and the global holdout's. Changing any of them starts a new experiment (a new row here), and
-- every decision names the experiment it was taken under, so a report never mixes two.
CREATE TABLE IF NOT EXISTS scenario_engine.scenario_experiment (
    id                     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rule_name              text NOT NULL,
    scenario_type          text NOT NULL,
    holdout_salt           text NOT NULL,
    holdout_percent        numeric NOT NULL CHECK (holdout_percent >= 0 AND holdout_percent <= 100),
    global_holdout_salt    text NOT NULL,
    global_holdout_percent numeric NOT NULL CHECK (global_holdout_percent >= 0 AND global_holdout_percent <= 100),
    started_at             timestamptz NOT NULL,
    CONSTRAINT scenario_experiment_once
        UNIQUE (rule_name, holdout_salt, holdout_percent, global_holdout_salt, global_holdout_percent)
);

-- The organisation is copied onto each decision when it is taken: a report groups by the
-- organisation the mentor belonged to then, and needs no join with the mentor table.
ALTER TABLE scenario_engine.scenario_decision
    ADD COLUMN IF NOT EXISTS organization_id uuid,
    ADD COLUMN IF NOT EXISTS experiment_id bigint REFERENCES scenario_engine.scenario_experiment (id);

-- 'holdout': policy would have sent it, the holdout assignment kept it back (no push).
ALTER TABLE scenario_engine.scenario_decision DROP CONSTRAINT IF EXISTS scenario_decision_outcome_known;
ALTER TABLE scenario_engine.scenario_decision ADD CONSTRAINT scenario_decision_outcome_known
    CHECK (outcome IN ('sent', 'holdout', 'opted_out', 'cooldown', 'daily_cap', 'mentor_not_active',
                       'baseline', 'cancelled'));

-- Reports read decisions by the instant they were taken.
CREATE INDEX IF NOT EXISTS scenario_decision_as_of_idx ON scenario_engine.scenario_decision (as_of);

-- A held-out notification keeps its ledger row (the reminder schedule, the dedup key, the
-- cooldown and the cap treat it as sent) but never gets a push.
ALTER TABLE scenario_engine.scenario_notification
    ADD COLUMN IF NOT EXISTS held_out boolean NOT NULL DEFAULT false;

-- One row per treated ('sent') or held-out decision: what happened afterwards, from the
-- platform's own data. 'pending' until the scenario's outcome is seen or its window closes;
-- then 'achieved' or 'missed', final. Resolved set-based and incrementally (only pending rows).
CREATE TABLE IF NOT EXISTS scenario_engine.scenario_outcome (
    decision_id     bigint PRIMARY KEY REFERENCES scenario_engine.scenario_decision (id) ON DELETE CASCADE,
    mentor_id       uuid NOT NULL,
    organization_id uuid,
    scenario_type   text NOT NULL,
    rule_name       text NOT NULL,
    experiment_id   bigint NOT NULL REFERENCES scenario_engine.scenario_experiment (id),
    arm             text NOT NULL CHECK (arm IN ('treated', 'holdout')),
    subject         text NOT NULL,
    decided_at      timestamptz NOT NULL,
    window_ends_at  timestamptz NOT NULL,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'achieved', 'missed')),
    resolved_at     timestamptz
);
CREATE INDEX IF NOT EXISTS scenario_outcome_pending_idx
    ON scenario_engine.scenario_outcome (scenario_type, window_ends_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS scenario_outcome_decided_idx ON scenario_engine.scenario_outcome (decided_at);
CREATE INDEX IF NOT EXISTS scenario_outcome_mentor_idx ON scenario_engine.scenario_outcome (mentor_id);

ALTER TABLE scenario_engine.scenario_experiment ENABLE ROW LEVEL SECURITY;
ALTER TABLE scenario_engine.scenario_outcome ENABLE ROW LEVEL SECURITY;
