"""The engine internals the benchmarks use, in one place.

The benchmarks measure the engine's own code paths (``Engine.run_scheduled_evaluation``,
``evaluate_mentor``, the named queries with the arguments each scenario gives them), so they
cannot stay behind the CLI. Everything below the engine's public surface that ``bench/``
touches is imported here and nowhere else (``bench.baseline`` takes its rule classes from
here too): when the engine moves a rule class or a helper, this file is the one to fix.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from scenario_engine.config import (
    CertificationExpiryRule,
    InactivityRule,
    MilestoneRule,
    Rule,
    Rules,
    default_rules,
)
from scenario_engine.db.queries import all_queries, query
from scenario_engine.engine import Engine, SweepResult, due_mentors_args
from scenario_engine.evaluate import ensure_rules_seen
from scenario_engine.scenarios import certification, inactivity, milestone

__all__ = [
    "CertificationExpiryRule",
    "Engine",
    "InactivityRule",
    "MilestoneRule",
    "Rule",
    "Rules",
    "SweepResult",
    "all_queries",
    "candidate_query",
    "default_rules",
    "due_mentors_args",
    "ensure_rules_seen",
    "one_rule_each",
    "query",
]


def candidate_query(rule: Rule, mentors: list[uuid.UUID], as_of: dt.datetime) -> tuple[str, tuple[Any, ...]]:
    """The named candidate query of ``rule``'s scenario and its arguments for one batch."""
    if isinstance(rule, InactivityRule):
        return "inactivity_candidates", inactivity.query_args(rule, mentors, as_of)
    if isinstance(rule, MilestoneRule):
        return "milestone_candidates", milestone.query_args(rule, mentors, as_of)
    return "certification_candidates", certification.query_args(rule, mentors, as_of)


def one_rule_each(rules: Rules) -> tuple[InactivityRule, MilestoneRule, CertificationExpiryRule]:
    """The enabled rule of each scenario type (the default rules have exactly one each)."""
    enabled = rules.enabled()
    [irule] = [r for r in enabled if isinstance(r, InactivityRule)]
    [mrule] = [r for r in enabled if isinstance(r, MilestoneRule)]
    [crule] = [r for r in enabled if isinstance(r, CertificationExpiryRule)]
    return irule, mrule, crule
