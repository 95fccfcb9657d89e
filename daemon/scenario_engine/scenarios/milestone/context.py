"""What a milestone notification carries (its message placeholders)."""

from __future__ import annotations

from typing import Literal, TypedDict


class MilestoneContext(TypedDict):
    metric: str
    value: float
    threshold: float
    threshold_text: str
    newly_crossed: list[float]
    period: str
    period_label: Literal["year", "time"]
