"""A sweep batch's candidate statements run on a second connection, ahead of the rule loop that
decides and writes on the first (evaluate._Prefetch; issue 18: Python and the database never
overlapped). What the reader reads is what the batch decides on; a reader that fails costs
nothing but the overlap — the rule loop reads again on the writing connection.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg
import pytest

from scenario_engine.db.connect import connect
from scenario_engine.evaluate import SeenRules, ensure_rules_seen, evaluate_set_based
from scenario_engine.scenarios.rules import Rules
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


OSLO = uuid.UUID("0b6f0000-0000-4000-8000-000000000001")


def _with_oslo(rules: Rules) -> Rules:
    """``rules`` plus an organisation that runs inactive_21d with its own threshold."""
    oslo = {str(OSLO): {"name": "Oslo", "rules": {"inactive_21d": {"threshold_days": 14}}}}
    return Rules.model_validate({**rules.model_dump(exclude={"organizations"}), "organizations": oslo})


async def _read_on(
    conn: asyncpg.Connection[Any], db_url: str, rules: Rules, mentor: uuid.UUID, ranged: bool
) -> list[tuple[str, str]]:
    """Evaluate ``mentor`` with a reader whose snapshot predates the mentor's activity of
    yesterday: a candidate comes only from a read on the reader. ``ranged``: as a full sweep's
    batch (its id range), whose reads start before the moves statement."""
    experiments = await ensure_rules_seen(conn, rules, AS_OF, SeenRules())
    reader = await connect(db_url, application_name="reader")
    try:
        tx = reader.transaction(isolation="repeatable_read", readonly=True)
        await tx.start()
        await reader.fetchval("SELECT count(*) FROM public.activity")
        await add_activity(conn, mentor, AS_OF - dt.timedelta(days=1))
        outcomes = await evaluate_set_based(
            conn,
            rules,
            experiments,
            AS_OF,
            lambda _t: [mentor],
            reader=reader,
            bounds=(None, mentor) if ranged else None,
        )
        await tx.rollback()
    finally:
        await reader.close()
    return [(o.candidate.rule_name, o.decision.outcome) for o in outcomes]


@pytest.mark.parametrize("ranged", [False, True])
async def test_with_organisations_candidates_are_read_on_the_reader(
    conn: asyncpg.Connection[Any], db_url: str, rules: Rules, ranged: bool
) -> None:
    """Per-organisation programmes keep the prefetch (issue 20: without it their steady sweep
    lost the overlap of reads and writes): the reader reads the organisation's variant."""
    mentor = await _inactive_mentor(conn)
    await conn.execute("UPDATE peer_mentor SET organization_id = $2 WHERE id = $1", mentor, OSLO)
    assert await _read_on(conn, db_url, _with_oslo(rules), mentor, ranged) == [("inactive_21d", "sent")]


@pytest.mark.parametrize("ranged", [False, True])
async def test_a_batch_with_a_move_reads_on_the_writing_connection(
    conn: asyncpg.Connection[Any], db_url: str, rules: Rules, ranged: bool
) -> None:
    """A mentor who moved is baselined in the batch's own transaction, which the reader cannot
    see: then the candidates are read on the writing connection (which sees the activity)."""
    mentor = await _inactive_mentor(conn)
    await conn.execute(
        "INSERT INTO scenario_engine.scenario_mentor_programme (mentor_id, organization_id, seen_at) "
        "SELECT id, organization_id, $2 FROM peer_mentor WHERE id = $1",
        mentor,
        AS_OF - dt.timedelta(days=2),
    )
    await conn.execute("UPDATE peer_mentor SET organization_id = $2 WHERE id = $1", mentor, OSLO)
    assert await _read_on(conn, db_url, _with_oslo(rules), mentor, ranged) == []
