"""The inactivity rule: how long a mentor may be quiet, and how often to remind them."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from scenario_engine.domain.rule import MAX_DAYS, RuleBase, context_keys
from scenario_engine.scenarios.inactivity.context import InactivityContext


class InactivityRule(RuleBase):
    CONTEXT_KEYS: ClassVar[frozenset[str]] = context_keys(InactivityContext)

    scenario_type: Literal["inactivity"] = "inactivity"
    threshold_days: int = Field(ge=1, le=MAX_DAYS)
    max_reminders: int = Field(default=3, ge=1, le=100)
    title: str = "We miss you"
    body: str = (
        "It has been {days_inactive} days since your last activity. Your mentees would love to hear from you."
    )
