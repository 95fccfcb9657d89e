"""Database errors classified by SQLSTATE (db/errors.py), and what evaluation does with each
(issue 16, items 1 and 2).

The classifier is pure: errors are built the way asyncpg builds them from a server's error
fields. ``evaluate_isolated`` is run against a real Postgres with a real lock held by another
session: a lock timeout on one mentor's row is a condition of the database, not a poison row.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from scenario_engine.db.connect import connect, create_pool
from scenario_engine.db.errors import (
    ConditionError,
    condition_of,
    is_transient,
)
from scenario_engine.isolation import MAX_BISECTED, Outcomes, evaluate_isolated
from scenario_engine.runtime.drain import Drain, TooManyQuarantined
from scenario_engine.runtime.state import RuntimeState
from tests.support.factories import add_activity, add_mentor


async def _lock_one_row(db_url: str, mentors: list[uuid.UUID], locked: uuid.UUID) -> Any:
    """Another session holding a row lock on one mentor's row of a table the evaluation writes."""
    setup = await connect(db_url)
    await setup.execute("CREATE TABLE written (mentor_id uuid PRIMARY KEY, n int NOT NULL DEFAULT 0)")
    await setup.execute("INSERT INTO written (mentor_id) SELECT unnest($1::uuid[])", mentors)
    await setup.execute("BEGIN")
    await setup.execute("SELECT 1 FROM written WHERE mentor_id = $1 FOR UPDATE", locked)
    return setup


@pytest.mark.parametrize("setting", ["lock_timeout", "statement_timeout"])
async def test_a_timeout_on_one_mentors_row_is_not_quarantined(db_url: str, setting: str) -> None:
    """Today's code bisected down to the locked mentor and quarantined it; the error is a
    condition of the database: the batch fails whole, nothing is written or quarantined."""
    mentors = sorted(uuid.uuid4() for _ in range(20))
    locked = mentors[13]
    holder = await _lock_one_row(db_url, mentors, locked)
    conn = await connect(db_url)
    await conn.execute(f"SET {setting} = '150ms'")
    try:

        async def evaluate(group: list[uuid.UUID]) -> list[Any]:
            await conn.execute("UPDATE written SET n = n + 1 WHERE mentor_id = ANY($1::uuid[])", group)
            return []

        expected = asyncpg.LockNotAvailableError if setting == "lock_timeout" else asyncpg.QueryCanceledError
        with pytest.raises(expected):
            await evaluate_isolated(conn, mentors, evaluate)
        assert await conn.fetchval("SELECT count(*) FROM scenario_engine.scenario_quarantine") == 0
        await holder.execute("ROLLBACK")
        # once the lock is gone the same batch goes through whole
        result = await evaluate_isolated(conn, mentors, evaluate)
        assert result.quarantined == ()
        assert await conn.fetchval("SELECT count(*) FROM written WHERE n = 1") == len(mentors)
    finally:
        await conn.close()
        await holder.close()


async def test_a_data_error_is_still_confirmed_on_the_mentor_alone(db_url: str) -> None:
    """The same batch with a class-22 error on one mentor: bisected and quarantined as before."""
    mentors = sorted(uuid.uuid4() for _ in range(20))
    bad = mentors[5]
    conn = await connect(db_url)
    try:

        async def evaluate(group: list[uuid.UUID]) -> list[Any]:
            if bad in group:
                await conn.execute("SELECT 'not a number'::int")
            return []

        result = await evaluate_isolated(conn, mentors, evaluate)
        assert [q.mentor_id for q in result.quarantined] == [bad]
        assert "InvalidTextRepresentationError" in result.quarantined[0].reason
    finally:
        await conn.close()


class _Engine:
    """Stands in for the engine in the drain: evaluates every routed mentor with ``evaluate``
    through the real isolation (so quarantine and bisection are the engine's own)."""

    def __init__(self, evaluate: Callable[[Any, list[uuid.UUID]], Awaitable[list[Any]]]):
        self.evaluate = evaluate

    async def evaluate_routed(self, conn: Any, by_type: Any, as_of: Any = None) -> Outcomes:
        mentors = sorted({m for ms in by_type.values() for m in ms})
        return await evaluate_isolated(conn, mentors, lambda group: self.evaluate(conn, group))


async def _events_for(pool: asyncpg.Pool[Any], n: int) -> None:
    """n mentors, each with one activity row: n pending events, one mentor each."""
    for _ in range(n):
        mentor = await add_mentor(pool)
        await add_activity(pool, mentor, dt.datetime.now(dt.UTC))


def _drain(pool: asyncpg.Pool[Any], engine: _Engine) -> Drain:
    return Drain(pool, engine, RuntimeState("test"), batch_size=100, poll_interval=1, max_attempts=3)  # type: ignore[arg-type]


async def _untouched(pool: asyncpg.Pool[Any]) -> bool:
    """Every event still pending with no attempt counted, nobody quarantined."""
    row = await pool.fetchrow(
        "SELECT count(*) FILTER (WHERE processed_at IS NULL AND dead_at IS NULL AND attempts = 0 "
        "AND last_error IS NULL) AS pending, count(*) AS n FROM scenario_engine.scenario_event"
    )
    quarantined = await pool.fetchval("SELECT count(*) FROM scenario_engine.scenario_quarantine")
    assert row is not None
    return bool(row["n"] > 0 and row["pending"] == row["n"] and quarantined == 0)


async def test_the_drains_fallback_obeys_max_bisected(pool: asyncpg.Pool[Any]) -> None:
    """A bug that fails every mentor: today's one-by-one fallback quarantined each event's mentor
    in turn (its own bisection budget per event) and marked the events processed. Now the
    fallback shares one MAX_BISECTED for the batch: past it, everything is undone and raised."""
    await _events_for(pool, MAX_BISECTED + 8)

    async def broken(conn: Any, group: list[uuid.UUID]) -> list[Any]:
        raise ValueError("a bug, not a poison row")

    with pytest.raises(TooManyQuarantined):
        await _drain(pool, _Engine(broken)).drain_once()
    assert await _untouched(pool)


async def test_a_rejected_statement_fails_the_drain_batch_and_burns_no_attempt(
    pool: asyncpg.Pool[Any],
) -> None:
    """Not a condition, not a data error (here an internal error, XX000): the batch fails
    whole as the condition ``evaluation_failed``, backed off by the work loop; today each event
    was retried alone and an attempt counted against it."""
    await _events_for(pool, 5)

    async def rejected(conn: Any, group: list[uuid.UUID]) -> list[Any]:
        await conn.execute("DO $$ BEGIN RAISE EXCEPTION 'broken' USING ERRCODE = 'XX000'; END $$")
        return []

    with pytest.raises(ConditionError) as caught:
        await _drain(pool, _Engine(rejected)).drain_once()
    assert caught.value.condition.name == "evaluation_failed"
    assert caught.value.condition.sqlstate == "XX000"
    assert is_transient(caught.value)
    assert await _untouched(pool)


async def test_a_lock_timeout_in_the_drain_keeps_the_events_pending(db_url: str) -> None:
    """The drain with a real lock timeout on one mentor's row: the events stay pending, with no
    attempt counted, nobody quarantined; the error reaches the work loop as ``lock_timeout``."""
    pool = await create_pool(db_url, min_size=1, max_size=2)
    holder: Any = None
    try:
        await _events_for(pool, 6)
        mentors = [
            r["mentor_id"] for r in await pool.fetch("SELECT mentor_id FROM scenario_engine.scenario_event")
        ]
        holder = await _lock_one_row(db_url, sorted(mentors), sorted(mentors)[2])

        async def evaluate(conn: Any, group: list[uuid.UUID]) -> list[Any]:
            await conn.execute("SET LOCAL lock_timeout = '150ms'")
            await conn.execute("UPDATE written SET n = n + 1 WHERE mentor_id = ANY($1::uuid[])", group)
            return []

        with pytest.raises(asyncpg.LockNotAvailableError) as caught:
            await _drain(pool, _Engine(evaluate)).drain_once()
        condition = condition_of(caught.value)
        assert condition is not None and condition.name == "lock_timeout"
        assert await _untouched(pool)
    finally:
        if holder is not None:
            await holder.close()
        await pool.close()
