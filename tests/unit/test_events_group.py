"""events.Routes — a drain batch's mentors per scenario type — gathers mentors per set of types
before spreading them over the types (a per-event saving in the drain): it must give exactly
what updating every type's set for every event gave, types in the same order."""

from __future__ import annotations

import random
import uuid

from scenario_engine.events import WATCHED_TABLES, Routes, ScenarioEvent, scenarios_for


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
