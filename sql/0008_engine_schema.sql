-- The engine's own schema (issue 10). Everything the engine owns — its tables, sequences,
-- trigger functions and the push outbox — lives in `scenario_engine`, a schema that no API
-- layer exposes (Supabase's PostgREST exposes `public` to `anon` and `authenticated`, which get
-- ALL on new tables there by default). PUBLIC has no USAGE on it and every table has row-level
-- security on with no policy for client roles, so even a mistaken grant exposes nothing.
--
-- One file, two starting points, one result:
--   * a fresh install (migrate skips the legacy files 0001–0007): every object is created here;
--   * an install migrated by 0001–0007: the objects are moved out of `public` with
--     ALTER … SET SCHEMA, which keeps every row, index, constraint, identity sequence and the
--     OIDs that the existing `_v1` triggers point at — so platform writes never see a gap.
-- tests/test_schema_upgrade.py checks that both paths end in the same catalogue.
--
-- The platform's tables are not touched here: their triggers and the engine's indexes on them
-- are "platform hooks" (sql/platform/hooks.sql), applied statement by statement so that a role
-- that does not own the platform tables can still migrate the engine and is told what a DBA
-- must run for the rest.

CREATE SCHEMA IF NOT EXISTS scenario_engine;
REVOKE ALL ON SCHEMA scenario_engine FROM PUBLIC;

-- Move what 0001–0007 created in public (a no-op on a fresh install).
DO $$
DECLARE
    t text;
    f text;
BEGIN
    FOREACH t IN ARRAY ARRAY['scenario_engine_setting', 'scenario_event', 'scenario_notification',
                             'scenario_cooldown', 'scenario_decision', 'scenario_rule_state',
                             'scenario_sweep', 'scenario_engine_instance', 'push_notification'] LOOP
        IF to_regclass('public.' || t) IS NOT NULL AND to_regclass('scenario_engine.' || t) IS NULL THEN
            EXECUTE format('ALTER TABLE public.%I SET SCHEMA scenario_engine', t);
        END IF;
    END LOOP;
    FOREACH f IN ARRAY ARRAY['scenario_capture_event_v1', 'scenario_capture_mentor_event_v1'] LOOP
        IF to_regprocedure('public.' || f || '()') IS NOT NULL
           AND to_regprocedure('scenario_engine.' || f || '()') IS NULL THEN
            EXECUTE format('ALTER FUNCTION public.%I() SET SCHEMA scenario_engine', f);
        END IF;
    END LOOP;
END;
$$;

-- Operator switches read at run time, e.g. by the event triggers (notify_mode).
CREATE TABLE IF NOT EXISTS scenario_engine.scenario_engine_setting (
    key        text PRIMARY KEY,
    value      text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT scenario_engine_setting_notify_mode_known
        CHECK (key <> 'notify_mode' OR value IN ('notify', 'poll'))
);
INSERT INTO scenario_engine.scenario_engine_setting (key, value) VALUES ('notify_mode', 'notify')
ON CONFLICT (key) DO NOTHING;

-- Durable change queue written by the triggers. Hot queue table: no foreign keys, partial
-- indexes on the pending and dead rows, aggressive autovacuum (rows are updated then pruned).
CREATE TABLE IF NOT EXISTS scenario_engine.scenario_event (
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
    ON scenario_engine.scenario_event (id) WHERE processed_at IS NULL AND dead_at IS NULL;
CREATE INDEX IF NOT EXISTS scenario_event_processed_idx
    ON scenario_engine.scenario_event (processed_at) WHERE processed_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS scenario_event_dead_idx
    ON scenario_engine.scenario_event (id) WHERE dead_at IS NOT NULL;

-- The scenario-notification repository; dedup_key makes enqueue idempotent.
CREATE TABLE IF NOT EXISTS scenario_engine.scenario_notification (
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
    ON scenario_engine.scenario_notification (mentor_id, created_at);
CREATE INDEX IF NOT EXISTS scenario_notification_subject_idx
    ON scenario_engine.scenario_notification (mentor_id, rule_name, subject, seq);
CREATE INDEX IF NOT EXISTS scenario_notification_as_of_idx
    ON scenario_engine.scenario_notification (as_of) INCLUDE (mentor_id, rule_name);
CREATE INDEX IF NOT EXISTS scenario_notification_mentor_as_of_idx
    ON scenario_engine.scenario_notification (mentor_id, as_of);

-- Cooldown state per (mentor, scenario type), written with the notification.
CREATE TABLE IF NOT EXISTS scenario_engine.scenario_cooldown (
    mentor_id            uuid NOT NULL,
    scenario_type        text NOT NULL,
    last_triggered_at    timestamptz NOT NULL,
    last_rule_name       text NOT NULL,
    last_notification_id bigint,
    PRIMARY KEY (mentor_id, scenario_type)
);
CREATE INDEX IF NOT EXISTS scenario_cooldown_triggered_idx
    ON scenario_engine.scenario_cooldown (last_triggered_at);

-- Why each notification was sent or suppressed, with its inputs; once per (dedup key, outcome).
CREATE TABLE IF NOT EXISTS scenario_engine.scenario_decision (
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
CREATE INDEX IF NOT EXISTS scenario_decision_mentor_idx
    ON scenario_engine.scenario_decision (mentor_id, created_at);
CREATE INDEX IF NOT EXISTS scenario_decision_created_idx
    ON scenario_engine.scenario_decision (created_at);

-- When the engine first saw each rule (milestone baselines).
CREATE TABLE IF NOT EXISTS scenario_engine.scenario_rule_state (
    rule_name     text PRIMARY KEY,
    scenario_type text NOT NULL,
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    baseline_at   timestamptz,
    backfill      boolean NOT NULL DEFAULT false
);

-- One row per sweep period.
CREATE TABLE IF NOT EXISTS scenario_engine.scenario_sweep (
    sweep_key   text PRIMARY KEY,
    as_of       timestamptz NOT NULL,
    instance_id text NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    stats       jsonb NOT NULL DEFAULT '{}'
);

-- Running daemons and their role.
CREATE TABLE IF NOT EXISTS scenario_engine.scenario_engine_instance (
    instance_id  text PRIMARY KEY,
    hostname     text NOT NULL,
    pid          integer NOT NULL,
    role         text NOT NULL DEFAULT 'follower',
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);

-- The push outbox: only what the engine enqueued is ever delivered (it lives here, where no
-- client role can write). Hot queue table: no foreign keys, partial indexes.
CREATE TABLE IF NOT EXISTS scenario_engine.push_notification (
    id                  bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    notification_id     bigint,
    mentor_id           uuid NOT NULL,
    scenario_type       text NOT NULL,
    title               text NOT NULL,
    body                text NOT NULL,
    data                jsonb NOT NULL DEFAULT '{}',
    idempotency_key     text NOT NULL CONSTRAINT push_notification_idempotency_key_unique UNIQUE,
    status              text NOT NULL DEFAULT 'pending'
                        CONSTRAINT push_notification_status_known
                        CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'dead', 'cancelled')),
    attempts            integer NOT NULL DEFAULT 0,
    next_attempt_at     timestamptz NOT NULL DEFAULT now(),
    created_at          timestamptz NOT NULL DEFAULT now(),
    sent_at             timestamptz,
    provider            text,
    provider_message_id text,
    last_error          text,
    cancel_reason       text,
    deferred_until      timestamptz
);
CREATE INDEX IF NOT EXISTS push_notification_due_idx
    ON scenario_engine.push_notification (next_attempt_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS push_notification_mentor_idx
    ON scenario_engine.push_notification (mentor_id, created_at);
CREATE INDEX IF NOT EXISTS push_notification_dead_idx
    ON scenario_engine.push_notification (created_at) WHERE status = 'dead';
CREATE INDEX IF NOT EXISTS push_notification_claim_order_idx
    ON scenario_engine.push_notification (next_attempt_at, id) WHERE status IN ('pending', 'sending');

-- Change capture (DESIGN.md §4). SECURITY DEFINER with a fixed search_path and qualified names:
-- a platform role with no grant on this schema still writes its tables, and no object it could
-- create anywhere changes what the function does. The function cannot make a platform write
-- fail: the payload holds ids only (row_id bounded to 200 characters), scenario_event has no
-- constraint a platform row could violate, NOTIFY is skipped when the queue is half full, and
-- a missing setting row means 'notify'. No EXCEPTION block: it would cost a subtransaction per
-- row (see 0003). The `_v1` triggers keep their names: they point at these functions by OID.
-- The two functions repeat the event-and-NOTIFY block on purpose: factored into a helper
-- function it cost 16 % of a bulk insert's rows/s (74.5k vs 88.8k, measured in poll mode).
CREATE OR REPLACE FUNCTION scenario_engine.scenario_capture_event_v1() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    rec          record;
    v_mentor     uuid;
    v_old_mentor uuid;
    v_row_id     text;
    v_event_id   bigint;
    v_mode       text;
BEGIN
    IF current_setting('scenario_engine.origin', true) = 'engine' THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'DELETE' THEN
        rec := OLD;
    ELSE
        rec := NEW;
    END IF;
    v_mentor := rec.mentor_id;
    IF TG_OP = 'UPDATE' AND OLD.mentor_id IS DISTINCT FROM NEW.mentor_id THEN
        v_old_mentor := OLD.mentor_id;
    END IF;
    -- notification_preference has a composite key; its scope is the row's identity.
    IF TG_TABLE_NAME = 'notification_preference' THEN
        v_row_id := rec.scenario_type;
    ELSE
        v_row_id := rec.id::text;
    END IF;

    INSERT INTO scenario_engine.scenario_event (table_name, operation, mentor_id, old_mentor_id, row_id)
    VALUES (TG_TABLE_NAME, TG_OP, v_mentor, v_old_mentor, left(v_row_id, 200))
    RETURNING id INTO v_event_id;

    SELECT value INTO v_mode FROM scenario_engine.scenario_engine_setting WHERE key = 'notify_mode';
    IF coalesce(v_mode, 'notify') = 'notify' AND pg_notification_queue_usage() < 0.5 THEN
        PERFORM pg_notify('scenario_events', json_build_object(
            'event_id', v_event_id, 'table', TG_TABLE_NAME, 'op', TG_OP, 'mentor_id', v_mentor)::text);
    END IF;
    RETURN NULL;
END;
$$;

-- Mentor status, time zone and join date changes (trigger since 0006).
CREATE OR REPLACE FUNCTION scenario_engine.scenario_capture_mentor_event_v1() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_event_id bigint;
    v_mode     text;
BEGIN
    IF current_setting('scenario_engine.origin', true) = 'engine' THEN
        RETURN NULL;
    END IF;
    INSERT INTO scenario_engine.scenario_event (table_name, operation, mentor_id, row_id)
    VALUES (TG_TABLE_NAME, TG_OP, NEW.id, NEW.id::text)
    RETURNING id INTO v_event_id;
    SELECT value INTO v_mode FROM scenario_engine.scenario_engine_setting WHERE key = 'notify_mode';
    IF coalesce(v_mode, 'notify') = 'notify' AND pg_notification_queue_usage() < 0.5 THEN
        PERFORM pg_notify('scenario_events', json_build_object(
            'event_id', v_event_id, 'table', TG_TABLE_NAME, 'op', TG_OP, 'mentor_id', NEW.id)::text);
    END IF;
    RETURN NULL;
END;
$$;

REVOKE ALL ON FUNCTION scenario_engine.scenario_capture_event_v1() FROM PUBLIC;
REVOKE ALL ON FUNCTION scenario_engine.scenario_capture_mentor_event_v1() FROM PUBLIC;
