"""The registry: the scenarios the engine runs, in the order their rules are evaluated.

Order matters once: the daily cap counts earlier rules' notifications in the same batch, so
rules are evaluated scenario by scenario in this order (and in file order within one).
A new scenario is one package under scenarios/ and one line here.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from scenario_engine.db.queries import bind, query
from scenario_engine.domain.rule import RuleBase
from scenario_engine.scenarios import anniversary, certification, inactivity, milestone
from scenario_engine.scenarios.protocol import Scenario

AnyScenario = Scenario[Any, Any]

SCENARIOS: tuple[AnyScenario, ...] = (
    inactivity.SCENARIO,
    milestone.SCENARIO,
    certification.SCENARIO,
    anniversary.SCENARIO,
)

_BY_TYPE: dict[str, AnyScenario] = {s.type: s for s in SCENARIOS}


def scenario_types() -> tuple[str, ...]:
    return tuple(_BY_TYPE)


def scenario(scenario_type: str) -> AnyScenario:
    try:
        return _BY_TYPE[scenario_type]
    except KeyError:
        raise KeyError(f"unknown scenario type {scenario_type!r} (known: {', '.join(_BY_TYPE)})") from None


def scenario_of(rule: RuleBase) -> AnyScenario:
    return scenario(rule.scenario_type)


def watched_tables() -> dict[str, frozenset[str]]:
    """Platform table → the scenario types its changes concern."""
    out: dict[str, set[str]] = {}
    for s in SCENARIOS:
        for table in s.watched_tables:
            out.setdefault(table, set()).add(s.type)
    return {t: frozenset(types) for t, types in out.items()}


RECHECK_MARKER = "-- {scenario rechecks}"


@cache
def recheck_query() -> str:
    """``recheck_pushes`` with one ``WHEN`` per scenario that declares a send-time re-check."""
    clauses = []
    for s in SCENARIOS:
        if s.recheck is not None:
            reason = s.recheck.reason.replace("'", "''")
            condition = query(s.recheck.query)
            clauses.append(f"WHEN p.scenario_type = '{s.type}' AND {condition}\n        THEN '{reason}'")
    base = query("recheck_pushes")
    line = next(ln for ln in base.splitlines() if RECHECK_MARKER in ln)
    return base.replace(line, "\n".join(f"        {c}" for c in clauses))


def bind_recheck(**params: Any) -> tuple[str, list[Any]]:
    """``recheck_query()`` and its arguments in ``$n`` order. The scenarios' conditions add no
    parameter, so the assembled statement takes exactly those ``recheck_pushes`` declares."""
    _, args = bind("recheck_pushes", params)
    return recheck_query(), args
