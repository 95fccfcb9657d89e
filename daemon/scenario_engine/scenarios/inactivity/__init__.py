"""Inactivity: a mentor who has logged nothing for the threshold gets a reminder."""

from scenario_engine.scenarios.inactivity.oracle import (
    InactivityState,
    build_candidate,
    decide_inactivity,
    spell_problem,
    spell_start,
)
from scenario_engine.scenarios.inactivity.oracle import context as inactivity_inputs
from scenario_engine.scenarios.inactivity.rule import InactivityRule
from scenario_engine.scenarios.inactivity.scenario import SCENARIO

__all__ = [
    "SCENARIO",
    "InactivityRule",
    "InactivityState",
    "build_candidate",
    "decide_inactivity",
    "inactivity_inputs",
    "spell_problem",
    "spell_start",
]
