"""Shared by tests/unit/test_config.py and tests/process/test_config.py."""

from __future__ import annotations

GOOD_RULES = """
daily_cap = 2

[[inactivity]]
name = "inactive_21d"
threshold_days = 21
cooldown_days = 7
max_reminders = 2

[[inactivity]]
name = "inactive_60d"
threshold_days = 60

[[milestone]]
name = "hours_all_time"
metric = "hours"
period = "all_time"
thresholds = [100, 10, 50]

[[certification_expiry]]
name = "first_aid"
tiers_days = [7, 30, 1]
certification_types = ["first_aid"]
title = "Renew your {certification_type}"
body = "{days_left} days left"
"""


# --- one validation path: what run would reject, check-config rejects (issue 9, defect 5) -------

URL = "postgresql://app:pw@127.0.0.1:5432/platform"
