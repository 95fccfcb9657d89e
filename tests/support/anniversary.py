"""Shared by tests/unit/test_anniversary.py and tests/process/test_anniversary.py."""

from __future__ import annotations

import datetime as dt

from scenario_engine.scenarios.anniversary import (
    AnniversaryRule,
)
from scenario_engine.scenarios.zones import load_zone

UTC = dt.UTC
AUCKLAND = load_zone("Pacific/Auckland")
RULE = AnniversaryRule(name="anniversary")
