"""The milestone rule: which count, over which period, celebrated at which thresholds."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, field_validator

from scenario_engine.domain.rule import MAX_DAYS, RuleBase, context_keys, distinct_sorted
from scenario_engine.scenarios.milestone.context import MilestoneContext


class MilestoneRule(RuleBase):
    CONTEXT_KEYS: ClassVar[frozenset[str]] = context_keys(MilestoneContext)

    scenario_type: Literal["milestone"] = "milestone"
    metric: Literal["sessions", "hours", "contacts"]
    period: Literal["year", "all_time"] = "year"
    # A billion sessions or hours is beyond any mentor; the bound keeps labels exact.
    thresholds: list[Annotated[float, Field(gt=0, le=1e9)]] = Field(min_length=1, max_length=100)
    backfill: bool = False
    cooldown_days: float = Field(default=0.0, ge=0, le=MAX_DAYS)
    title: str = "Milestone reached!"
    body: str = "You reached {threshold_text} {metric} this {period_label}. Thank you!"

    @field_validator("thresholds")
    @classmethod
    def _ascending(cls, value: list[float]) -> list[float]:
        # Rounded to the 15 significant digits that survive PostgreSQL's float8 → numeric
        # conversion, so the achievement ledger (numeric) compares equal on every path.
        return distinct_sorted([float(f"{v:.15g}") for v in value], "thresholds")
