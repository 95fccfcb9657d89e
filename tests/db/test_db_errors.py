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
    SCHEMA_MISMATCH,
    UNREACHABLE,
    ConditionError,
    condition_of,
    is_data_error,
)
from scenario_engine.isolation import MAX_BISECTED, Outcomes, evaluate_isolated, may_quarantine
from scenario_engine.runtime.backoff import is_transient
from scenario_engine.runtime.drain import Drain, TooManyQuarantined
from scenario_engine.runtime.state import RuntimeState
from scenario_engine.scenarios.base import MentorDataError
from tests.support.factories import add_activity, add_mentor


def server_error(sqlstate: str, message: str = "from the server") -> asyncpg.PostgresError:
    """The exception asyncpg raises for an ErrorResponse with this SQLSTATE."""
    error: asyncpg.PostgresError = asyncpg.PostgresError.new({"C": sqlstate, "M": message, "S": "ERROR"})
    return error


CONDITIONS = {
    "25006": "database_read_only",
    "57P01": "database_shutting_down",
    "57P02": "database_shutting_down",
    "57P03": "database_starting",
    "55P03": "lock_timeout",
    "57014": "query_cancelled",
    "40001": "serialization_conflict",
    "40P01": "deadlock_detected",
    "53100": "disk_full",
    "53200": "out_of_memory",
    "53300": "too_many_connections",
    "53999": "insufficient_resources",  # an unlisted code of class 53
    "08006": UNREACHABLE,
    "42703": SCHEMA_MISMATCH,
    "42P01": SCHEMA_MISMATCH,
    "42883": SCHEMA_MISMATCH,
    "42501": "permission_denied",
}


@pytest.mark.parametrize(("sqlstate", "name"), sorted(CONDITIONS.items()))
def test_conditions_are_classified_by_sqlstate(sqlstate: str, name: str) -> None:
    exc = server_error(sqlstate, "the server's words")
    condition = condition_of(exc)
    assert condition is not None and condition.name == name
    assert condition.sqlstate == sqlstate and condition.detail == "the server's words"
    assert is_transient(exc)  # every work loop backs off on it
    assert not may_quarantine(exc)  # and it never quarantines a mentor
    assert condition.reachable == (name != UNREACHABLE)


def test_asyncpg_classes_and_connection_loss() -> None:
    for exc, name in [
        (asyncpg.ReadOnlySQLTransactionError("read-only"), "database_read_only"),
        (asyncpg.LockNotAvailableError("lock"), "lock_timeout"),
        (asyncpg.QueryCanceledError("canceling statement due to statement timeout"), "query_cancelled"),
        (asyncpg.DiskFullError("No space left on device"), "disk_full"),
        (asyncpg.UndefinedColumnError('column "occurred_at" does not exist'), SCHEMA_MISMATCH),
        (ConnectionResetError("reset"), UNREACHABLE),
        (TimeoutError(), UNREACHABLE),
        (asyncpg.InterfaceError("connection is closed"), UNREACHABLE),
    ]:
        condition = condition_of(exc)
        assert condition is not None and condition.name == name, exc


def test_a_schema_mismatch_names_the_object() -> None:
    condition = condition_of(asyncpg.UndefinedColumnError("column a.occurred_at does not exist"))
    assert condition is not None and "occurred_at" in condition.detail


@pytest.mark.parametrize("sqlstate", ["22008", "22003", "22012", "22P02", "22023"])
def test_data_errors_may_quarantine_and_are_no_condition(sqlstate: str) -> None:
    exc = server_error(sqlstate)
    assert is_data_error(exc) and condition_of(exc) is None and may_quarantine(exc)
    assert not is_transient(exc)


def test_other_errors() -> None:
    # a rejected statement that is neither a condition nor the data's fault: no quarantine,
    # and outside a batch a bug (not backed off)
    for sqlstate in ("42601", "23505", "XX000"):
        exc = server_error(sqlstate)
        assert condition_of(exc) is None and not may_quarantine(exc), sqlstate
    # the engine's own: a data error names its mentors; a Python error on a row's values
    assert may_quarantine(MentorDataError({uuid.uuid4(): "unknown time zone"}))
    assert may_quarantine(OverflowError("date value out of range"))
    assert condition_of(ValueError("a bug")) is None
    # a value asyncpg cannot encode is the data's fault, not a lost connection
    assert may_quarantine(asyncpg.exceptions._base.DataError("invalid input"))
    assert condition_of(asyncpg.exceptions._base.DataError("invalid input")) is None


def test_groups_are_conditions_only_when_every_leaf_is() -> None:
    read_only = asyncpg.ReadOnlySQLTransactionError("read-only")
    group = ExceptionGroup("tg", [read_only, ConnectionResetError()])
    condition = condition_of(group)
    assert condition is not None and condition.name == "database_read_only"
    assert condition_of(ExceptionGroup("tg", [read_only, ValueError("bug")])) is None


def test_the_engines_own_condition() -> None:
    inner = condition_of(server_error("XX000", "internal"))
    assert inner is None
    made = ConditionError(condition_of(server_error("53100", "full")))  # type: ignore[arg-type]
    assert condition_of(made) is made.condition


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
