"""events.Routes — a drain batch's mentors per scenario type — gathers mentors per set of types
before spreading them over the types (a per-event saving in the drain): it must give exactly
what updating every type's set for every event gave, types in the same order."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from scenario_engine.events import WATCHED_TABLES, EventError, Routes, ScenarioEvent, scenarios_for


def _naive(routed: list[tuple[ScenarioEvent, frozenset[str]]]) -> dict[str, set[uuid.UUID]]:
    by_type: dict[str, set[uuid.UUID]] = {}
    for event, scenario_types in routed:
        for scenario_type in scenario_types:
            by_type.setdefault(scenario_type, set()).update(event.mentors())
    return by_type


def test_routes_equal_the_per_event_union_in_the_same_order() -> None:
    rnd = random.Random(7)
    mentors = [uuid.UUID(int=rnd.getrandbits(128)) for _ in range(50)]
    tables = sorted(WATCHED_TABLES)
    for _ in range(200):
        events = [
            ScenarioEvent(
                id=i,
                table_name=rnd.choice(tables),
                operation=rnd.choice(("INSERT", "UPDATE", "DELETE")),
                mentor_id=rnd.choice(mentors),
                old_mentor_id=rnd.choice([None, None, rnd.choice(mentors)]),
            )
            for i in range(rnd.randint(0, 40))
        ]
        routed = [(e, scenarios_for(e)) for e in events]
        routes = Routes()
        for event in events:
            routes.add(event)
        got, expected = routes.by_type, _naive(routed)
        assert got == expected
        assert list(got) == list(expected)


def test_routing_a_claimed_row_equals_routing_its_event() -> None:
    """The drain routes the claimed rows themselves (``Routes.add_row``, no pydantic model per
    event): the same routes as the events, and the same rows refused with the same message."""
    rnd = random.Random(11)
    mentors = [uuid.UUID(int=rnd.getrandbits(128)) for _ in range(30)]
    tables = [*sorted(WATCHED_TABLES), "no_such_table"]
    for _ in range(200):
        rows = [
            {
                "id": i,
                "table_name": rnd.choice(tables),
                "operation": rnd.choice(("INSERT", "UPDATE", "DELETE", "TRUNCATE")),
                "mentor_id": rnd.choice([None, *mentors]),
                "old_mentor_id": rnd.choice([None, None, rnd.choice(mentors)]),
                "row_id": None,
                "attempts": 0,
            }
            for i in range(rnd.randint(0, 40))
        ]
        by_event, by_row = Routes(), Routes()
        for row in rows:
            event = ScenarioEvent.from_row(_Row(row))
            refused = [_refusal(by_event.add, event), _refusal(by_row.add_row, row)]
            assert refused[0] == refused[1]
        assert by_row.by_type == by_event.by_type
        assert list(by_row.by_type) == list(by_event.by_type)


def test_a_row_whose_mentor_is_not_a_uuid_is_refused() -> None:
    row = {"id": 1, "table_name": "activity", "operation": "INSERT", "mentor_id": "x", "old_mentor_id": None}
    with pytest.raises(EventError, match="not a uuid"):
        Routes().add_row(row)


def _refusal(add: Callable[[Any], None], item: object) -> str | None:
    try:
        add(item)
    except EventError as exc:
        return str(exc)
    return None


class _Row(dict[str, object]):
    """A dict with a record's ``items`` (ScenarioEvent.from_row reads a row so)."""
