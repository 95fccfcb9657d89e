"""bench.harness.statements names a statement from the text pg_stat_statements keeps. When the
server first saw the statement parsed, that text has its constants as ``$n`` (and, from
PostgreSQL 18, a list of constants squashed to one); a first sweep's policy_inputs and
active_mentor_batch used to read as ``other: …`` in ``by_query``."""

from __future__ import annotations

from bench.harness.statements import query_name

from scenario_engine.db.queries import query
from scenario_engine.scenarios.common import range_statement
from scenario_engine.scenarios.registry import SCENARIOS


def test_the_engine_text_is_named() -> None:
    assert query_name(query("policy_inputs")) == "policy_inputs"


def test_a_text_with_its_constants_as_parameters_is_named() -> None:
    stored = (
        query("policy_inputs")
        .replace("->> 'locale'", "->> $4")
        .replace("IN ('all', $2::text)", "IN ($5 /*, ... */)")
        .replace("interval '24 hours'", "interval $6")
        .replace("= 'all' DESC LIMIT 1", "= $7 DESC LIMIT $8")
    )
    assert stored != query("policy_inputs")
    assert query_name(stored) == "policy_inputs"
    batch = query("active_mentor_batch").replace("status = 'active'", "status = $3")
    assert query_name(batch) == "active_mentor_batch"


def test_another_statement_is_not_named() -> None:
    assert query_name("SELECT p.id, p.status FROM public.peer_mentor p WHERE p.id = $1").startswith("other: ")


def test_a_sweep_batch_read_as_its_id_range_is_named() -> None:
    """A full sweep's candidate statements are the named queries with the batch as an id range
    (scenarios/common.py, range_statement): their time is the named query's."""
    for scenario in SCENARIOS:
        name = scenario.candidate_query
        assert query_name(range_statement(name)) == name
