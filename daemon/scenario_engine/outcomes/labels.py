"""What "achieved" and "missed" mean for each scenario type, in the words a programme lead uses.

One small table on purpose: the report, its docs and (later) the scenario registry must say the
same thing, and a new scenario type adds one line here until the registry owns the mapping.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OutcomeLabels:
    achieved: str
    missed: str


_LABELS: dict[str, OutcomeLabels] = {
    "inactivity": OutcomeLabels(achieved="re-activated", missed="still inactive"),
    "certification_expiry": OutcomeLabels(achieved="renewed in time", missed="lapsed"),
    "milestone": OutcomeLabels(achieved="kept going", missed="no activity after"),
    "anniversary": OutcomeLabels(achieved="kept going", missed="no activity after"),
}

# A scenario type added without a line above still gets an honest, if plain, wording.
_GENERIC = OutcomeLabels(achieved="achieved", missed="missed")


def outcome_labels(scenario_type: str) -> OutcomeLabels:
    return _LABELS.get(scenario_type, _GENERIC)
