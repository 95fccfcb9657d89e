"""The tables the tests reason about, named once. tests/process/test_security.py checks that every
table the migrations create in the engine's schema is listed here, so the checks that use the
list (schema-qualified SQL, erasure, the fresh-install layout) cannot miss a new one."""

from __future__ import annotations

ENGINE_TABLES = [
    "scenario_engine_setting",
    "scenario_event",
    "scenario_notification",
    "scenario_cooldown",
    "scenario_decision",
    "scenario_rule_state",
    "scenario_sweep_batch",
    "scenario_sweep",
    "scenario_engine_instance",
    "push_notification",
    "scenario_schema_migration",
    "scenario_quarantine",
    "scenario_experiment",
    "scenario_outcome",
    "scenario_erasure_mark",
    "scenario_full_sweep_request",
    "scenario_outcome_resolution",
    "scenario_sweep_range",
    "scenario_programme_seen",
    "scenario_mentor_programme",
    "report_decision_day",
    "report_push_day",
    "report_outcome_day",
]
PLATFORM_TABLES = [
    "peer_mentor",
    "activity",
    "certification",
    "achievement",
    "notification_preference",
    "device_token",
]
