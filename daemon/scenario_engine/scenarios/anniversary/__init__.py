"""Anniversaries: "N years as a peer mentor", on the local calendar day of joining."""

from scenario_engine.scenarios.anniversary.oracle import AnniversaryState, anniversary_on, decide_anniversary
from scenario_engine.scenarios.anniversary.rule import AnniversaryRule
from scenario_engine.scenarios.anniversary.scenario import SCENARIO

__all__ = ["SCENARIO", "AnniversaryRule", "AnniversaryState", "anniversary_on", "decide_anniversary"]
