"""A sweep batch's candidate statements run on a second connection, ahead of the rule loop that
decides and writes on the first (evaluate._Prefetch; issue 18: Python and the database never
overlapped). What the reader reads is what the batch decides on; a reader that fails costs
nothing but the overlap — the rule loop reads again on the writing connection.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg

from scenario_engine.db.connect import connect
from scenario_engine.domain.rules import Rules
from scenario_engine.evaluate import SeenRules, ensure_rules_seen, evaluate_set_based
from tests.support.factories import add_activity, add_mentor

AS_OF = dt.datetime(2026, 5, 4, 9, tzinfo=dt.UTC)


async def _inactive_mentor(conn: asyncpg.Connection[Any]) -> Any:
    return await add_mentor(conn, joined_at=AS_OF - dt.timedelta(days=90))


async def test_candidates_are_read_on_the_reader(
    conn: asyncpg.Connection[Any], db_url: str, rules: Rules
) -> None:
    mentor = await _inactive_mentor(conn)
    experiments = await ensure_rules_seen(conn, rules, AS_OF, SeenRules())
    reader = await connect(db_url, application_name="reader")
    try:
        # The reader's snapshot is taken before the mentor's activity: a candidate read on it
        # still sees an inactive mentor, one read on the writing connection would not.
        tx = reader.transaction(isolation="repeatable_read", readonly=True)
        await tx.start()
        await reader.fetchval("SELECT count(*) FROM public.activity")
        await add_activity(conn, mentor, AS_OF - dt.timedelta(days=1))
        outcomes = await evaluate_set_based(
            conn, rules, experiments, AS_OF, lambda _t: [mentor], reader=reader
        )
        await tx.rollback()
    finally:
        await reader.close()
    assert [(o.candidate.rule_name, o.decision.outcome) for o in outcomes] == [("inactive_21d", "sent")]


async def test_a_failing_reader_changes_nothing(
    conn: asyncpg.Connection[Any], db_url: str, rules: Rules
) -> None:
    mentor = await _inactive_mentor(conn)
    active = await add_mentor(conn, joined_at=AS_OF - dt.timedelta(days=90))
    await add_activity(conn, active, AS_OF - dt.timedelta(days=1))
    experiments = await ensure_rules_seen(conn, rules, AS_OF, SeenRules())
    reader = await connect(db_url, application_name="reader")
    await reader.close()  # every read on it fails
    outcomes = await evaluate_set_based(
        conn, rules, experiments, AS_OF, lambda _t: sorted([mentor, active]), reader=reader
    )
    assert [(o.candidate.mentor_id, o.candidate.rule_name, o.decision.outcome) for o in outcomes] == [
        (mentor, "inactive_21d", "sent")
    ]
    assert not outcomes.quarantined
