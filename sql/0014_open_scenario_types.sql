-- The scenario types are the engine's registry (scenario_engine/scenarios/registry.py), not a
-- list frozen in a CHECK: only the engine writes scenario_notification, and it writes only the
-- types it knows. (The platform's notification_preference is handled by the unit
-- notification_preference_scope_open in sql/platform/reference.sql.)
ALTER TABLE scenario_engine.scenario_notification DROP CONSTRAINT IF EXISTS scenario_notification_type_known;
