"""What an inactivity notification carries: its message placeholders, and the keys the
send-time re-check reads back (``last_activity_at``, queries.sql ``inactivity_recheck``)."""

from __future__ import annotations

from typing import Literal, TypedDict


class InactivityContext(TypedDict):
    last_activity_at: str | None  # the spell start, ISO (the re-check compares activity with it)
    since: Literal["joined", "last_activity"]
    days_inactive: int
    threshold_days: int
    reminder: int
    max_reminders: int
