"""Shared by tests/unit/test_short_days.py and tests/db/test_short_days.py."""

from __future__ import annotations

import datetime as dt

from scenario_engine.config import Settings
from scenario_engine.runtime.scheduler import current_period
from scenario_engine.scenarios.zones import load_zone

UTC = dt.UTC
NEW_YORK = load_zone("America/New_York")


def daily_sweeps(first: dt.datetime, n: int) -> list[dt.datetime]:
    """The instants the scheduler starts its daily@04:30 periods at, from ``first`` on."""
    settings = Settings(sweep_daily_at=dt.time(4, 30))
    out: list[dt.datetime] = []
    at = first
    for _ in range(n):
        _key, start, following = current_period(settings, at)
        out.append(start)
        at = following
    return out
