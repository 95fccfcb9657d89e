"""Instants as the engine evaluates them: aware, in a bounded range, ±infinity kept.

Every decoded timestamptz passes through ``instant``; the bounds are why a row dated
4713 BC or at 'infinity' never crashes a conversion (docs/SCENARIOS.md, "Time bounds").
"""

from __future__ import annotations

import datetime as dt

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

# The finite range the engine evaluates (docs/SCENARIOS.md, "Time bounds"): Python's datetime
# range less a day at each end, so that no zone conversion of an instant inside it can overflow.
# asyncpg hands Postgres's ±infinity over as naive datetime.min/max; ``instant`` turns those
# into the aware bounds below, which keep their meaning (a certification expiring at +infinity
# never expires, an activity at -infinity is older than any other). The single-mentor queries
# map instants outside the range to ±infinity too (Python could not even decode 4713 BC).
NEGATIVE_INFINITY = dt.datetime.min.replace(tzinfo=dt.UTC)
POSITIVE_INFINITY = dt.datetime.max.replace(tzinfo=dt.UTC)
EVALUABLE_FROM = dt.datetime(1, 1, 2, tzinfo=dt.UTC)
EVALUABLE_UNTIL = dt.datetime(9999, 12, 30, tzinfo=dt.UTC)


def epoch_micros(value: dt.datetime) -> int:
    """Exact microseconds since the epoch: the same integer SQL computes for the spell key."""
    return (value - EPOCH) // dt.timedelta(microseconds=1)


def instant(value: dt.datetime) -> dt.datetime:
    """An aware instant from a decoded timestamptz (naive datetime.min/max mean ±infinity)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


def optional_instant(value: dt.datetime | None) -> dt.datetime | None:
    return None if value is None else instant(value)


def is_evaluable(value: dt.datetime) -> bool:
    return EVALUABLE_FROM <= value <= EVALUABLE_UNTIL


def describe_instant(value: dt.datetime) -> str:
    if value <= NEGATIVE_INFINITY:
        return "-infinity"
    if value >= POSITIVE_INFINITY:
        return "infinity"
    return value.isoformat()


def iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    value = instant(value)
    if not is_evaluable(value):
        return describe_instant(value)  # astimezone() could overflow at the edges
    return value.astimezone(dt.UTC).isoformat()
