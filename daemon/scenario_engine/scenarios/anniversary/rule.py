"""The anniversary rule: which years as a peer mentor are celebrated."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, field_validator

from scenario_engine.domain.rule import MAX_DAYS, RuleBase, context_keys, distinct_sorted
from scenario_engine.scenarios.anniversary.context import AnniversaryContext


class AnniversaryRule(RuleBase):
    CONTEXT_KEYS: ClassVar[frozenset[str]] = context_keys(AnniversaryContext)

    scenario_type: Literal["anniversary"] = "anniversary"
    # The year numbers celebrated; empty means every year.
    years: list[Annotated[int, Field(ge=1, le=200)]] = Field(default_factory=list, max_length=200)
    # A rule first seen on a mentor's anniversary day records that day's greeting without a push,
    # unless backfill is true (the no-flood baseline, as for milestones).
    backfill: bool = False
    # A greeting whose local day passed between two sweeps (a 23-hour DST day, a sweep interval
    # of a day or more, an engine down for a day) is still sent up to this many local days late.
    # Cover the sweep interval: the day and its grace span at least 23 + 24 * G hours (one short
    # day at most), so grace_days = G is enough for any sweep interval up to that: 1 covers 47
    # hours. 0: only on the day itself (then an interval of 23 hours or more can miss a day).
    grace_days: int = Field(default=1, ge=0, le=31)
    cooldown_days: float = Field(default=0.0, ge=0, le=MAX_DAYS)
    title: str = "Happy anniversary!"
    body: str = "{years} years as a peer mentor, {display_name}. Thank you for everything you do!"

    @field_validator("years")
    @classmethod
    def _distinct(cls, value: list[int]) -> list[int]:
        return distinct_sorted(value, "years")
