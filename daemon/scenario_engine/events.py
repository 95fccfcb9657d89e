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
    return _scenarios_of(event.table_name, event.operation, event.mentor_id, event.id)


def _scenarios_of(
    table_name: str, operation: str, mentor_id: uuid.UUID | None, event_id: int
) -> frozenset[str]:
    scenario_types = WATCHED_TABLES.get(table_name)
    if scenario_types is None:
        raise EventError(f"unknown table {table_name!r}")
    if operation not in ("INSERT", "UPDATE", "DELETE"):
        raise EventError(f"unknown operation {operation!r}")
    if mentor_id is None:
        raise EventError(f"{table_name} event {event_id} has no mentor id")
    return scenario_types


class Routes:
    """Scenario type → the mentors that events touched for it. ``add`` is the one place an
    event is routed: the engine routes a batch with ``route``, the drain adds each event as it
    checks it (an invalid one raises EventError before anything is added, and is dead-lettered).

    Events of one table share one set of scenario types (the same frozenset), so mentors are
    gathered per set of types — one or two set insertions per event — and spread over the types
    only when ``by_type`` is read: the same result, types in the same order (by first
    appearance), without updating every type's set for every event of a drain batch.
    """

    def __init__(self) -> None:
        self._by_types: dict[frozenset[str], set[uuid.UUID]] = {}

    def add(self, event: ScenarioEvent) -> None:
        self._add(scenarios_for(event), event.mentor_id, event.old_mentor_id)

    def add_row(self, row: Any) -> None:
        """A claimed ``scenario_event`` row as the database returned it, without building a
        ``ScenarioEvent`` (the drain's hot path: the pydantic model cost more per event than
        the routing). The row's columns are typed by the table (bigint, text, uuid), so the
        checks are ``scenarios_for``'s, and the same rows fail them (EventError)."""
        mentor_id, old_mentor_id = row["mentor_id"], row["old_mentor_id"]
        for value in (mentor_id, old_mentor_id):
            if value is not None and not isinstance(value, uuid.UUID):
                raise EventError(f"event {row['id']}: mentor id {value!r} is not a uuid")
        self._add(
            _scenarios_of(row["table_name"], row["operation"], mentor_id, row["id"]), mentor_id, old_mentor_id
        )

    def _add(
        self, scenario_types: frozenset[str], mentor_id: uuid.UUID | None, old_mentor_id: uuid.UUID | None
    ) -> None:
        mentors = self._by_types.get(scenario_types)
        if mentors is None:
            mentors = self._by_types[scenario_types] = set()
        if mentor_id is not None:
            mentors.add(mentor_id)
        if old_mentor_id is not None:
            mentors.add(old_mentor_id)

    @property
    def by_type(self) -> dict[str, set[uuid.UUID]]:
        by_type: dict[str, set[uuid.UUID]] = {}
        for scenario_types, mentors in self._by_types.items():
            for scenario_type in scenario_types:
                by_type.setdefault(scenario_type, set()).update(mentors)
        return by_type


def route(events: Iterable[ScenarioEvent]) -> dict[str, set[uuid.UUID]]:
    """Scenario type → the mentors a batch of events touched for it (EventError as above)."""
    routes = Routes()
    for event in events:
        routes.add(event)
    return routes.by_type
