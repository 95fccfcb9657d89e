"""Quiet hours: a push due inside the window waits for the window's end (mentor's zone)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def quiet_until(
    now: dt.datetime, timezone: str | None, window: tuple[dt.time, dt.time] | None
) -> dt.datetime | None:
    """The instant the quiet window ends if ``now`` falls inside it, else None."""
    if window is None:
        return None
    try:
        zone = ZoneInfo(timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    start, end = window
    local = now.astimezone(zone)
    t = local.time().replace(tzinfo=None)
    if start < end:  # same-day window, e.g. 12:00-14:00
        inside = start <= t < end
        end_date = local.date()
    else:  # wraps midnight, e.g. 21:00-08:00
        inside = t >= start or t < end
        end_date = local.date() if t < end else local.date() + dt.timedelta(days=1)
    if not inside:
        return None
    return dt.datetime.combine(end_date, end, tzinfo=zone).astimezone(dt.UTC)
