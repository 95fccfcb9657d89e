"""Business code reads typed rows (db/records.py): each record names columns its statement really
returns, so a renamed column fails here, naming it, rather than deep in a sweep or a send.

Real Postgres: each statement is prepared on a migrated database and the columns it describes
are compared with the fields of the record built from its rows.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import asyncpg
import pytest

from scenario_engine.db.queries import query
from scenario_engine.db.records import ClaimedPush, Column, PushCheck, TypedRow
from scenario_engine.scenarios.programmes import programme_statement
from scenario_engine.scenarios.registry import SCENARIOS, recheck_query
from scenario_engine.scenarios.rules import default_rules


def columns_of(row_class: type[TypedRow]) -> set[str]:
    return {name for name, value in vars(row_class).items() if isinstance(value, Column)}


async def described(conn: asyncpg.Connection[Any], sql: str) -> set[str]:
    statement = await conn.prepare(sql)
    return {a.name for a in statement.get_attributes()}


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.type for s in SCENARIOS])
async def test_each_scenario_reads_its_candidate_rows_as_its_typed_row(
    conn: asyncpg.Connection[Any], scenario: Any
) -> None:
    row_class = scenario.row_class
    assert issubclass(row_class, TypedRow)
    wanted = columns_of(row_class)
    assert "mentor_id" in wanted
    # The per-rule statement and the per-organisation one (scenarios/programmes.py) alike.
    assert wanted <= await described(conn, query(scenario.candidate_query))
    rule_params = tuple(scenario.rule_params(_a_rule(scenario)))
    sql, _ = programme_statement(scenario.candidate_query, rule_params)
    assert wanted <= await described(conn, sql)


async def test_the_dispatcher_reads_its_claims_and_rechecks_as_records(conn: asyncpg.Connection[Any]) -> None:
    for record, sql in ((ClaimedPush, query("claim_pushes")), (PushCheck, recheck_query())):
        fields = {f.name for f in dataclasses.fields(record)}
        assert fields <= await described(conn, sql), record.__name__


def _a_rule(scenario: Any) -> Any:
    rules = default_rules().of_type(scenario.type)
    assert rules, f"no default {scenario.type} rule"
    return rules[0]
