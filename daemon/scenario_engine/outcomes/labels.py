"""What "achieved" and "missed" mean for each scenario type, in the words a programme lead uses.

Each scenario package declares them (``OutcomeSpec`` in its scenario.py); the report, its docs
and the programme page read them from the registry, so they always say the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass

from scenario_engine.scenarios.registry import scenario


@dataclass(frozen=True)
class OutcomeLabels:
    achieved: str
    missed: str


# A scenario type no longer registered (decisions from an old version) still gets plain words.
_GENERIC = OutcomeLabels(achieved="achieved", missed="missed")


def outcome_labels(scenario_type: str) -> OutcomeLabels:
    try:
        spec = scenario(scenario_type).outcome
    except KeyError:
        return _GENERIC
    return OutcomeLabels(achieved=spec.achieved, missed=spec.missed)
