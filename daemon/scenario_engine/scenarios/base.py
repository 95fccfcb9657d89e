"""What every evaluator produces: a candidate notification with its explaining inputs.

A candidate says "this scenario's condition holds for this mentor under this rule";
policy (opt-out, cooldown, cap) decides afterwards whether it is sent. Candidates are
plain data so that the set-based sweep and the single-mentor path can be compared.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

from scenario_engine.domain.rule import ScenarioType

# The scenarios' time helpers, importable from here too.
from scenario_engine.instants import (
    EPOCH as EPOCH,
)
from scenario_engine.instants import (
    EVALUABLE_FROM as EVALUABLE_FROM,
)
from scenario_engine.instants import (
    EVALUABLE_UNTIL as EVALUABLE_UNTIL,
)
from scenario_engine.instants import (
    NEGATIVE_INFINITY as NEGATIVE_INFINITY,
)
from scenario_engine.instants import (
    POSITIVE_INFINITY as POSITIVE_INFINITY,
)
from scenario_engine.instants import (
    describe_instant as describe_instant,
)
from scenario_engine.instants import (
    epoch_micros as epoch_micros,
)
from scenario_engine.instants import (
    instant as instant,
)
from scenario_engine.instants import (
    is_evaluable as is_evaluable,
)
from scenario_engine.instants import (
    iso as iso,
)
from scenario_engine.instants import (
    optional_instant as optional_instant,
)


class MentorDataError(ValueError):
    """Rows of these mentors cannot be evaluated (an unknown time zone, an instant outside the
    evaluable range). Raised after a whole batch was looked at, so that every bad mentor of
    it is known at once and quarantined without bisecting."""

    def __init__(self, problems: dict[uuid.UUID, str]):
        super().__init__("; ".join(f"mentor {m}: {why}" for m, why in problems.items()))
        self.problems = problems


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


def threshold_label(value: float) -> str:
    """How a threshold is spelled in a dedup key and a message: exact, never exponent
    notation (10 → '10', 12.5 → '12.5', 1000001 → '1000001')."""
    return format(Decimal(repr(value)).normalize(), "f")


def days_left(expires_at: dt.datetime, as_of: dt.datetime) -> int:
    return math.ceil((expires_at - as_of).total_seconds() / 86400)


def dedup_key(scenario_type: str, rule_name: str, mentor_id: uuid.UUID, subject: str, seq: int | str) -> str:
    return f"{scenario_type}:{rule_name}:{mentor_id}:{subject}:{seq}"


Row = TypeVar("Row")


@dataclass(frozen=True)
class SweepHints:
    """What a scheduled sweep tells the candidate statements that one statement alone does not
    know (issue 18: a steady sweep evaluates every mentor, and most need nothing). A statement
    takes a hint only if it declares the parameter of that name (scenarios/common.py,
    ``SetBased.candidate_params``); without hints (an event, a single mentor, a sweep whose
    decisions are listed) every statement decides everything itself.

    ``skip_logged_opt_outs``: leave out a candidate whose mentor has opted out and whose
    opted-out decision is on record already (deciding it again would write nothing).
    ``zone_suspects``: the active mentors, in id order, whose zone Python cannot load, read
    once for the sweep (sweep.sweep_hints); None: a statement reads the zones of its batch
    itself."""

    skip_logged_opt_outs: bool = False
    zone_suspects: tuple[uuid.UUID, ...] | None = None

    def suspects_within(self, first: uuid.UUID, last: uuid.UUID) -> list[uuid.UUID] | None:
        """The zone suspects in the id range [first, last] (a full sweep's batch)."""
        if self.zone_suspects is None:
            return None
        lo = bisect.bisect_left(self.zone_suspects, first)
        hi = bisect.bisect_right(self.zone_suspects, last)
        return list(self.zone_suspects[lo:hi])


NO_HINTS = SweepHints()


def collect_candidates(rows: Iterable[Row], build: Callable[[Row], Candidate]) -> list[Candidate]:
    """Candidates from a set-based query's rows. Rows the engine cannot evaluate are collected,
    not skipped: the batch then raises one ``MentorDataError`` naming every such mentor, so the
    caller quarantines them all at once and evaluates the rest (isolation.py)."""
    out: list[Candidate] = []
    problems: dict[uuid.UUID, str] = {}
    for row in rows:
        try:
            out.append(build(row))
        except MentorDataError as exc:
            problems.update(exc.problems)
    if problems:
        raise MentorDataError(problems)
    return out
