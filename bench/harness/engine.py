"""The engine internals the benchmarks use, in one place.

The benchmarks measure the engine's own code paths (``Engine.run_scheduled_evaluation``,
``evaluate_mentor``, the named queries with the arguments each scenario gives them), so they
cannot stay behind the CLI. Everything below the engine's public surface that ``bench/``
touches is imported here and nowhere else (``bench.baseline`` takes its rule classes from
here too): when the engine moves a rule class or a helper, this file is the one to fix.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

from scenario_engine.db.queries import all_queries, bind, query
from scenario_engine.engine import Engine, SweepResult
from scenario_engine.evaluate import SeenRules
from scenario_engine.evaluate import ensure_rules_seen as _ensure_rules_seen
from scenario_engine.notifications import decision_params
from scenario_engine.scenarios.base import SweepHints
from scenario_engine.scenarios.certification import CertificationExpiryRule
from scenario_engine.scenarios.inactivity import InactivityRule
from scenario_engine.scenarios.milestone import MilestoneRule
from scenario_engine.scenarios.registry import scenario_of
from scenario_engine.scenarios.rules import Rule, Rules, default_rules
from scenario_engine.sweep import due_statements

__all__ = [
    "CertificationExpiryRule",
    "Engine",
    "InactivityRule",
    "MilestoneRule",
    "Rule",
    "Rules",
    "SweepResult",
    "all_queries",
    "benchmark_rules",
    "bound_args",
    "candidate_query",
    "default_rules",
    "due_queries",
    "ensure_rules_seen",
    "one_rule_each",
    "query",
]


def bound_args(name: str, **params: Any) -> tuple[Any, ...]:
    """A named query's arguments in ``$n`` order, from its declared parameter names: the
    benchmarks run the engine's SQL (or a variant of it, EXPLAIN-prefixed) positionally."""
    _, args = bind(name, params)
    return tuple(args)


def candidate_query(rule: Rule, mentors: list[uuid.UUID], as_of: dt.datetime) -> tuple[str, tuple[Any, ...]]:
    """The named candidate query of ``rule``'s scenario and its arguments for one batch, with a
    scheduled sweep's hint to leave out opted-out decisions on record (scenarios/base.py); the
    zones are read by the statement itself (an id array, not a sweep's range)."""
    scenario = scenario_of(rule)
    params = scenario.candidate_params(rule, mentors, as_of, SweepHints(skip_logged_opt_outs=True))
    _, args = bind(scenario.candidate_query, params)
    return scenario.candidate_query, tuple(args)


def due_queries(rules: Rules, since: dt.datetime, as_of: dt.datetime) -> list[tuple[str, tuple[Any, ...]]]:
    """The incremental sweep's due-window statements with their arguments, as
    ``sweep.due_mentors`` runs them."""
    return [(name, tuple(bind(name, params)[1])) for name, params in due_statements(rules, since, as_of)]


def benchmark_rules() -> Rules:
    """The default rules of the scenarios the yardstick covers (anniversary has no hand-written
    counterpart; its cost is measured on its own)."""
    rules = default_rules()
    return Rules(
        daily_cap=rules.daily_cap,
        inactivity=rules.of_type("inactivity"),
        milestone=rules.of_type("milestone"),
        certification_expiry=rules.of_type("certification_expiry"),
    )


def decision_record(rules: Rules, rule: Rule) -> tuple[str, str]:
    """What the engine adds to a decision of ``rule`` for a mentor of no programme of its own and
    no locale (the benchmark's population): the chosen text's locale and the effective
    parameters, as JSON text (the yardstick writes them as literals)."""
    chosen, _ = rules.message(rule, None, None)
    return chosen.locale, json.dumps(decision_params(rule, rules.organization(None)))


async def ensure_rules_seen(conn: Any, rules: Rules, as_of: dt.datetime) -> None:
    """Record the rules as first seen at ``as_of`` (with their no-flood baselines)."""
    await _ensure_rules_seen(conn, rules, as_of, SeenRules())


def one_rule_each(rules: Rules) -> tuple[InactivityRule, MilestoneRule, CertificationExpiryRule]:
    """The enabled rule of each scenario type (the default rules have exactly one each)."""
    enabled = rules.enabled()
    [irule] = [r for r in enabled if isinstance(r, InactivityRule)]
    [mrule] = [r for r in enabled if isinstance(r, MilestoneRule)]
    [crule] = [r for r in enabled if isinstance(r, CertificationExpiryRule)]
    return irule, mrule, crule
