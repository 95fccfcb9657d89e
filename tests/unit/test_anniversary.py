"""The anniversary scenario: "N years as a peer mentor", on the local day of joining.

The pure rule on its own, then on a real Postgres through the sweep (full, incremental and
dry run), the single-mentor path, events, `explain` and the CLI, with policy (opt-out of its
own type and of all, cooldown, cap) and the no-flood baseline.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from scenario_engine.scenarios.anniversary import (
    AnniversaryRule,
    AnniversaryState,
    anniversary_on,
    decide_anniversary,
)
from scenario_engine.scenarios.zones import load_zone
from tests.support.anniversary import AUCKLAND, RULE, UTC

LOS_ANGELES = load_zone("America/Los_Angeles")


def state(joined_at: dt.datetime, timezone: str = "UTC", **kw: Any) -> AnniversaryState:
    return AnniversaryState(
        mentor_id=uuid.uuid4(),
        status=kw.get("status", "active"),
        timezone=timezone,
        joined_at=joined_at,
        celebrated=frozenset(kw.get("celebrated", ())),
    )


# --- the pure rule --------------------------------------------------------------------------


def test_a_29_february_join_is_celebrated_on_28_february_in_other_years() -> None:
    joined = dt.date(2024, 2, 29)
    assert [anniversary_on(joined, y) for y in (2025, 2026, 2027, 2028)] == [
        dt.date(2025, 2, 28),
        dt.date(2026, 2, 28),
        dt.date(2027, 2, 28),
        dt.date(2028, 2, 29),
    ]
    leap_joiner = state(dt.datetime(2024, 2, 29, 9, tzinfo=UTC))
    assert decide_anniversary(leap_joiner, RULE, dt.datetime(2025, 2, 28, 8, tzinfo=UTC)) is not None
    assert decide_anniversary(leap_joiner, RULE, dt.datetime(2025, 3, 2, 8, tzinfo=UTC)) is None
    on_the_day = AnniversaryRule(name="anniversary", grace_days=0)
    assert decide_anniversary(leap_joiner, on_the_day, dt.datetime(2025, 3, 1, 8, tzinfo=UTC)) is None
    assert decide_anniversary(leap_joiner, RULE, dt.datetime(2028, 2, 28, 8, tzinfo=UTC)) is None
    found = decide_anniversary(leap_joiner, RULE, dt.datetime(2028, 2, 29, 8, tzinfo=UTC))
    assert found is not None and found.inputs["years"] == 4


def test_the_day_is_the_mentors_local_calendar_day() -> None:
    # Joined 2025-03-01 09:00 in Auckland, which is 2025-02-28 20:00 UTC.
    joined = dt.datetime(2025, 3, 1, 9, tzinfo=AUCKLAND)
    mentor = state(joined, "Pacific/Auckland")
    start = dt.datetime(2026, 3, 1, 0, 0, tzinfo=AUCKLAND)  # local midnight
    assert decide_anniversary(mentor, RULE, start - dt.timedelta(microseconds=1)) is None
    found = decide_anniversary(mentor, RULE, start)
    assert found is not None
    assert found.inputs == {"years": 1, "joined_on": "2025-03-01", "anniversary_on": "2026-03-01"}
    assert found.dedup_key == f"anniversary:anniversary:{mentor.mentor_id}:1:0"
    assert decide_anniversary(mentor, RULE, start + dt.timedelta(hours=23, minutes=59)) is not None
    # the next local day is the default one-day grace (a day that fell between two sweeps)
    late = decide_anniversary(mentor, RULE, start + dt.timedelta(days=1))
    assert late is not None and late.inputs["anniversary_on"] == "2026-03-01"
    assert decide_anniversary(mentor, RULE, start + dt.timedelta(days=2)) is None
    on_the_day = AnniversaryRule(name="anniversary", grace_days=0)
    assert decide_anniversary(mentor, on_the_day, start + dt.timedelta(days=1)) is None
    # The same instant is still 28 February in Los Angeles: not that mentor's day.
    la = state(dt.datetime(2025, 3, 1, 9, tzinfo=LOS_ANGELES), "America/Los_Angeles")
    assert decide_anniversary(la, RULE, start) is None


def test_year_numbers_status_and_what_was_already_celebrated() -> None:
    joined = dt.datetime(2020, 6, 15, 12, tzinfo=UTC)
    day = dt.datetime(2026, 6, 15, 12, tzinfo=UTC)
    assert decide_anniversary(state(joined), RULE, day) is not None  # year 6
    assert decide_anniversary(state(joined), AnniversaryRule(name="big", years=[1, 5, 10]), day) is None
    assert decide_anniversary(state(joined, celebrated={6}), RULE, day) is None
    assert decide_anniversary(state(joined, status="paused"), RULE, day) is None
    # the day of joining itself is not an anniversary (year 0)
    assert decide_anniversary(state(day), RULE, day) is None
    # a join at -infinity has no calendar day: never celebrated, nothing to quarantine
    assert decide_anniversary(state(dt.datetime.min.replace(tzinfo=UTC)), RULE, day) is None
