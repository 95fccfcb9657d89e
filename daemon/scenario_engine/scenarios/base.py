"""What every evaluator produces: a candidate notification with its explaining inputs.

A candidate says "this scenario's condition holds for this mentor under this rule";
policy (opt-out, cooldown, cap) decides afterwards whether it is sent. Candidates are
plain data so that the set-based sweep and the single-mentor path can be compared.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from scenario_engine.config import ScenarioType

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


class MentorDataError(ValueError):
    """Rows of these mentors cannot be evaluated (an unknown time zone, an instant outside the
    evaluable range). Raised after a whole batch was looked at, so that every bad mentor of
    it is known at once and quarantined without bisecting."""

    def __init__(self, problems: dict[uuid.UUID, str]):
        super().__init__("; ".join(f"mentor {m}: {why}" for m, why in problems.items()))
        self.problems = problems


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


@dataclass(frozen=True)
class Achievement:
    milestone: str
    threshold: float
    period: str


@dataclass(frozen=True)
class Candidate:
    mentor_id: uuid.UUID
    scenario_type: ScenarioType
    rule_name: str
    subject: str
    seq: int
    dedup_key: str
    inputs: dict[str, Any]
    achievements: tuple[Achievement, ...] = field(default=())


def epoch_micros(instant: dt.datetime) -> int:
    """Exact microseconds since the epoch: the same integer SQL computes for the spell key."""
    return (instant - EPOCH) // dt.timedelta(microseconds=1)


def threshold_label(value: float) -> str:
    """How a threshold is spelled in a dedup key and a message: exact, never exponent
    notation (10 → '10', 12.5 → '12.5', 1000001 → '1000001')."""
    return format(Decimal(repr(value)).normalize(), "f")


def days_left(expires_at: dt.datetime, as_of: dt.datetime) -> int:
    return math.ceil((expires_at - as_of).total_seconds() / 86400)


def dedup_key(scenario_type: str, rule_name: str, mentor_id: uuid.UUID, subject: str, seq: int | str) -> str:
    return f"{scenario_type}:{rule_name}:{mentor_id}:{subject}:{seq}"


def iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    value = instant(value)
    if not is_evaluable(value):
        return describe_instant(value)  # astimezone() could overflow at the edges
    return value.astimezone(dt.UTC).isoformat()
