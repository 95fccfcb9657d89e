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


def iso(instant: dt.datetime | None) -> str | None:
    return None if instant is None else instant.astimezone(dt.UTC).isoformat()
