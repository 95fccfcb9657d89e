-- The engine's own tables. Everything the daemon must not lose in a crash is a row here.

-- Operator switches read at run time, e.g. by the event triggers (notify_mode).
CREATE TABLE IF NOT EXISTS scenario_engine_setting (
    key        text PRIMARY KEY,
    value      text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT scenario_engine_setting_notify_mode_known
        CHECK (key <> 'notify_mode' OR value IN ('notify', 'poll'))
);
INSERT INTO scenario_engine_setting (key, value) VALUES ('notify_mode', 'notify')
ON CONFLICT (key) DO NOTHING;

-- Durable change queue written by the triggers. Hot queue table: no foreign keys, a partial
-- index on the pending rows, aggressive autovacuum because rows are updated then pruned.
CREATE TABLE IF NOT EXISTS scenario_event (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    table_name    text NOT NULL,
    operation     text NOT NULL,
    mentor_id     uuid,
    old_mentor_id uuid,
    row_id        text,
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    attempts      integer NOT NULL DEFAULT 0,
    processed_at  timestamptz,
    dead_at       timestamptz,
    last_error    text
) WITH (autovacuum_vacuum_scale_factor = 0.01, autovacuum_analyze_scale_factor = 0.02);
CREATE INDEX IF NOT EXISTS scenario_event_pending_idx
    ON scenario_event (id) WHERE processed_at IS NULL AND dead_at IS NULL;
CREATE INDEX IF NOT EXISTS scenario_event_processed_idx
    ON scenario_event (processed_at) WHERE processed_at IS NOT NULL;

-- The scenario-notification repository: one row per notification decided to be sent.
-- dedup_key makes enqueue idempotent (scenario, rule, mentor, subject, sequence).
CREATE TABLE IF NOT EXISTS scenario_notification (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    mentor_id     uuid NOT NULL,
    scenario_type text NOT NULL
                  CONSTRAINT scenario_notification_type_known
                  CHECK (scenario_type IN ('inactivity', 'milestone', 'certification_expiry')),
    rule_name     text NOT NULL,
    subject       text NOT NULL,
    seq           integer NOT NULL,
    dedup_key     text NOT NULL CONSTRAINT scenario_notification_dedup_key_unique UNIQUE,
    context       jsonb NOT NULL DEFAULT '{}',
    as_of         timestamptz NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS scenario_notification_mentor_created_idx
    ON scenario_notification (mentor_id, created_at);
CREATE INDEX IF NOT EXISTS scenario_notification_subject_idx
    ON scenario_notification (mentor_id, rule_name, subject, seq);

-- Cooldown state per (mentor, scenario type), written with the notification.
CREATE TABLE IF NOT EXISTS scenario_cooldown (
    mentor_id            uuid NOT NULL,
    scenario_type        text NOT NULL,
    last_triggered_at    timestamptz NOT NULL,
    last_rule_name       text NOT NULL,
    last_notification_id bigint,
    PRIMARY KEY (mentor_id, scenario_type)
);

-- Why each notification was sent or suppressed, with its inputs. One row per
-- (dedup key, outcome), so a decision repeated by every sweep is logged once.
CREATE TABLE IF NOT EXISTS scenario_decision (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    mentor_id       uuid NOT NULL,
    scenario_type   text NOT NULL,
    rule_name       text NOT NULL,
    dedup_key       text NOT NULL,
    outcome         text NOT NULL
                    CONSTRAINT scenario_decision_outcome_known
                    CHECK (outcome IN ('sent', 'opted_out', 'cooldown', 'daily_cap', 'mentor_not_active',
                                       'baseline', 'cancelled')),
    reason          text NOT NULL,
    inputs          jsonb NOT NULL DEFAULT '{}',
    as_of           timestamptz NOT NULL,
    notification_id bigint,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT scenario_decision_once UNIQUE (dedup_key, outcome)
);
CREATE INDEX IF NOT EXISTS scenario_decision_mentor_idx ON scenario_decision (mentor_id, created_at);

-- When the engine first saw each rule: milestone rules enabled on a live population
-- record what is already achieved without a push (unless backfill was asked for).
CREATE TABLE IF NOT EXISTS scenario_rule_state (
    rule_name     text PRIMARY KEY,
    scenario_type text NOT NULL,
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    baseline_at   timestamptz,
    backfill      boolean NOT NULL DEFAULT false
);

-- One row per sweep period: the sweep key makes a period's sweep happen once, whoever leads.
CREATE TABLE IF NOT EXISTS scenario_sweep (
    sweep_key   text PRIMARY KEY,
    as_of       timestamptz NOT NULL,
    instance_id text NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    stats       jsonb NOT NULL DEFAULT '{}'
);

-- Running daemons and their role, for /status and for operators.
CREATE TABLE IF NOT EXISTS scenario_engine_instance (
    instance_id  text PRIMARY KEY,
    hostname     text NOT NULL,
    pid          integer NOT NULL,
    role         text NOT NULL DEFAULT 'follower',
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);
