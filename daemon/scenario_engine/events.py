"""Database change events: the event row and what it concerns.

The ``scenario_event`` row is the truth; the NOTIFY that accompanies it is an empty wake-up
(runtime/listener.py never reads a payload). A row is parsed with pydantic, so a malformed one
is a dead-lettered event, not a crash.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict

from scenario_engine.scenarios.registry import watched_tables

# Platform table → the scenario types its changes concern (each scenario declares its tables).
WATCHED_TABLES: dict[str, frozenset[str]] = watched_tables()


class EventError(ValueError):
    """An event that can never be handled (dead-letter it with this message)."""


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


def scenarios_for(event: ScenarioEvent) -> frozenset[str]:
    """Which scenario types an event concerns; raises EventError for one we cannot handle."""
    if event.table_name not in WATCHED_TABLES:
        raise EventError(f"unknown table {event.table_name!r}")
    if event.operation not in ("INSERT", "UPDATE", "DELETE"):
        raise EventError(f"unknown operation {event.operation!r}")
    if event.mentor_id is None:
        raise EventError(f"{event.table_name} event {event.id} has no mentor id")
    return WATCHED_TABLES[event.table_name]


# An event with the scenario types it concerns (checked once, by ``scenarios_for``).
Routed = tuple[ScenarioEvent, frozenset[str]]


def route(events: Iterable[ScenarioEvent]) -> dict[str, set[uuid.UUID]]:
    """Scenario type → the mentors a batch of events touched for it (EventError as above)."""
    return group((event, scenarios_for(event)) for event in events)


def group(routed: Iterable[Routed]) -> dict[str, set[uuid.UUID]]:
    """Scenario type → the mentors of events already routed.

    Events of one table share one set of scenario types (the same frozenset), so the mentors
    are first gathered per set of types — one or two set insertions per event — and only then
    spread over the types: the same result, with the types in the same order (by first
    appearance), without updating every type's set for every event of a drain batch.
    """
    by_types: dict[frozenset[str], set[uuid.UUID]] = {}
    for event, scenario_types in routed:
        mentors = by_types.get(scenario_types)
        if mentors is None:
            mentors = by_types[scenario_types] = set()
        if event.mentor_id is not None:
            mentors.add(event.mentor_id)
        if event.old_mentor_id is not None:
            mentors.add(event.old_mentor_id)
    by_type: dict[str, set[uuid.UUID]] = {}
    for scenario_types, mentors in by_types.items():
        for scenario_type in scenario_types:
            by_type.setdefault(scenario_type, set()).update(mentors)
    return by_type
