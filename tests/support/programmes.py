"""Shared by tests/unit/test_programmes.py and tests/process/test_programmes.py."""

from __future__ import annotations

import tomllib
import uuid

from scenario_engine.scenarios.rules import Rules

OSLO = uuid.UUID("0b6f0000-0000-4000-8000-000000000001")

TWO_ORGS = f"""
default_locale = "en"
daily_cap = 3

[[inactivity]]
name = "inactive_21d"
threshold_days = 21
cooldown_days = 7

[[milestone]]
name = "sessions_year"
metric = "sessions"
period = "year"
thresholds = [10, 25]

[[certification_expiry]]
name = "certification_expiry"
tiers_days = [30, 7, 1]

[organizations."{OSLO}"]
name = "Oslo peer mentors"
locale = "nb"
daily_cap = 1
quiet_hours = "21:00-08:00"

[organizations."{OSLO}".rules.inactive_21d]
threshold_days = 14
cooldown_days = 10

[organizations."{OSLO}".rules.sessions_year]
enabled = false

[organizations."{OSLO}".rules.certification_expiry]
tiers_days = [60, 14]
"""


def two_orgs(extra: str = "") -> Rules:
    return Rules.model_validate(tomllib.loads(TWO_ORGS + extra))
