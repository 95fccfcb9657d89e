"""The registry and the database boundary hold together: named parameters match their SQL,
each scenario's SQL reads only context keys its context type declares, and every scenario
brings what orchestration asks of it."""

from __future__ import annotations

import pathlib
import re
import sys
import typing

import pytest

from scenario_engine.db.queries import all_queries, bind, query, query_params
from scenario_engine.events import WATCHED_TABLES
from scenario_engine.scenarios.registry import SCENARIOS, bind_recheck, recheck_query, scenario_types
from scenario_engine.scenarios.rules import Rules


def test_every_declared_parameter_list_matches_the_placeholders_of_its_query() -> None:
    declared = {name: query_params(name) for name in all_queries()}
    checked = 0
    for name, params in declared.items():
        if params is None:
            continue
        used = {int(n) for n in re.findall(r"\$(\d+)", query(name))}
        assert used == set(range(1, len(params) + 1)), (name, params, sorted(used))
        assert len(set(params)) == len(params), name
        assert query(name).startswith("-- params:"), f"{name}: '-- params:' goes right after '-- name:'"
        checked += 1
    assert checked >= 80  # every query that takes parameters (test below)


def test_every_query_with_a_placeholder_declares_its_parameters() -> None:
    """A positional caller silently shifts every later argument when a parameter is added or
    reordered; a declared list makes a wrong call fail, naming the query. So no query may take
    a ``$n`` without a ``-- params:`` line, and the product calls none of them positionally."""
    undeclared = sorted(
        name for name, sql in all_queries().items() if re.search(r"\$\d", sql) and query_params(name) is None
    )
    assert undeclared == [], f"add a '-- params:' line (right after '-- name:') to {undeclared}"

    package = pathlib.Path(str(sys.modules["scenario_engine"].__file__)).parent
    positional = []
    for source in sorted(package.rglob("*.py")):
        for name in re.findall(r"\bquery\(\s*\"([a-z_][a-z0-9_]*)\"\s*\)", source.read_text("utf-8")):
            # recheck_query() assembles recheck_pushes; bind_recheck binds its arguments.
            if query_params(name) and not (source.name == "registry.py" and name == "recheck_pushes"):
                positional.append(f"{source.relative_to(package)}: {name}")
    assert positional == [], "call these through fetch/fetchrow/fetchval/execute or bind(name, params)"


def test_the_assembled_recheck_takes_the_parameters_recheck_pushes_declares() -> None:
    sql, args = bind_recheck(ids=[3, 5])
    assert sql == recheck_query()
    assert args == [[3, 5]]
    used = {int(n) for n in re.findall(r"\$(\d+)", sql)}
    assert used == set(range(1, len(query_params("recheck_pushes") or ()) + 1))  # the scenarios add none
    with pytest.raises(TypeError, match=r"recheck_pushes.*unexpected.*push_ids"):
        bind_recheck(push_ids=[3])


def test_a_misspelt_or_missing_parameter_names_the_query() -> None:
    with pytest.raises(TypeError, match=r"inactivity_candidates.*missing.*spacing_secs.*unexpected.*spacing"):
        bind(
            "inactivity_candidates",
            {
                "mentors": [],
                "as_of": None,
                "rule_name": "r",
                "threshold_secs": 1.0,
                "max_reminders": 1,
                "spacing": 1.0,
            },
        )


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.type)
def test_sql_of_a_scenario_reads_only_context_keys_its_context_type_declares(scenario: typing.Any) -> None:
    context = scenario.context
    assert typing.is_typeddict(context)
    keys = context.__required_keys__ | context.__optional_keys__
    package = pathlib.Path(str(sys.modules[type(scenario).__module__].__file__)).parent
    sql = (package / "queries.sql").read_text()
    read = set(re.findall(r"'context'\s*->>\s*'([a-z_]+)'", sql))
    assert read <= keys, f"{scenario.type} SQL reads {read - keys} that no candidate carries"
    assert keys <= scenario.rule_model.CONTEXT_KEYS  # every key is usable in a message


def test_every_scenario_is_wired_through_the_registry() -> None:
    assert len(set(scenario_types())) == len(SCENARIOS)
    rules = Rules()
    for s in SCENARIOS:
        assert rules.of_type(s.type) == []  # the rules file has a key per scenario type
        assert any(s.type in types for types in WATCHED_TABLES.values())
        assert s.outcome.resolve_query in all_queries()
        assert s.label and s.title
        if s.recheck is not None:
            assert f"p.scenario_type = '{s.type}'" in recheck_query()
    assert "{scenario rechecks}" not in recheck_query()


def test_unknown_scenario_type_in_the_rules_file_is_named() -> None:
    with pytest.raises(ValueError, match="inactivty"):
        Rules.model_validate({"inactivty": [{"name": "x", "threshold_days": 3}]})
