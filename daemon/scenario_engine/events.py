"""Database change events: the NOTIFY payload, the event row, and what each concerns.

The NOTIFY payload is only a wake-up hint; the ``scenario_event`` row is the truth. Both
are parsed with pydantic so a malformed one is a counted, logged error, not a crash.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from scenario_engine.config import ScenarioType

WATCHED_TABLES: dict[str, frozenset[ScenarioType]] = {
    # New, changed or deleted activity ends (or re-opens) an inactivity spell and moves
    # the milestone counts.
    "activity": frozenset({"inactivity", "milestone"}),
    "certification": frozenset({"certification_expiry"}),
    # A coordinator awarding or removing an achievement re-evaluates milestones.
    "achievement": frozenset({"milestone"}),
    # Preferences are read at every decision and again before sending; a change is
    # evaluated at once so that an opt-in is not left waiting for the next full sweep.
    "notification_preference": frozenset({"inactivity", "milestone", "certification_expiry"}),
    # Status, time zone or join date changed (trigger since migration 0006).
    "peer_mentor": frozenset({"inactivity", "milestone", "certification_expiry"}),
}


class EventError(ValueError):
    """An event that can never be handled (dead-letter it with this message)."""


class NotifyPayload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    event_id: int = Field(gt=0)
    table: str
    op: Literal["INSERT", "UPDATE", "DELETE"]
    mentor_id: uuid.UUID | None = None


def parse_payload(raw: str) -> NotifyPayload:
    try:
        return NotifyPayload.model_validate_json(raw)
    except ValidationError as exc:
        raise EventError(f"malformed NOTIFY payload: {exc.errors()[0]['msg']}") from None


class ScenarioEvent(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int
    table_name: str
    operation: str
    mentor_id: uuid.UUID | None = None
    old_mentor_id: uuid.UUID | None = None
    row_id: str | None = None
    attempts: int = 0

    @classmethod
    def from_row(cls, row: Any) -> ScenarioEvent:
        return cls.model_validate(dict(row.items()))

    def mentors(self) -> list[uuid.UUID]:
        return [m for m in (self.mentor_id, self.old_mentor_id) if m is not None]


def scenarios_for(event: ScenarioEvent) -> frozenset[ScenarioType]:
    """Which scenario types an event concerns; raises EventError for one we cannot handle."""
    if event.table_name not in WATCHED_TABLES:
        raise EventError(f"unknown table {event.table_name!r}")
    if event.operation not in ("INSERT", "UPDATE", "DELETE"):
        raise EventError(f"unknown operation {event.operation!r}")
    if event.mentor_id is None:
        raise EventError(f"{event.table_name} event {event.id} has no mentor id")
    return WATCHED_TABLES[event.table_name]
