"""What an anniversary greeting carries (its message placeholders)."""

from __future__ import annotations

from typing import TypedDict


class AnniversaryContext(TypedDict):
    years: int
    joined_on: str  # the join date in the mentor's zone, ISO
    anniversary_on: str  # the day celebrated (28 February for a 29 February join in other years)
