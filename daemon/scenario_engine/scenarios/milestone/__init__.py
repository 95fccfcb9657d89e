"""Milestones: the first time a period's count reaches a threshold, celebrate once."""

from scenario_engine.scenarios.milestone.oracle import (
    ActivityRow,
    MilestoneState,
    build_candidate,
    decide_milestone,
    metric_value,
    period_of,
)
from scenario_engine.scenarios.milestone.rule import MilestoneRule
from scenario_engine.scenarios.milestone.scenario import SCENARIO

__all__ = [
    "SCENARIO",
    "ActivityRow",
    "MilestoneRule",
    "MilestoneState",
    "build_candidate",
    "decide_milestone",
    "metric_value",
    "period_of",
]
