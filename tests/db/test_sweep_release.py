"""A sweep's reader and lanes are acquired with a short wait (engine.READER_WAIT_S: a sweep never
queues behind the pool's other users), and asyncpg bounds the reset that gives a connection back
by the wait it was acquired with unless told otherwise. On a loaded machine that reset took more
than 50 ms, and a sweep that had finished raised TimeoutError (tests/db/test_equivalence.py
failed so beside a 1M benchmark). The release has a bound of its own (engine.RELEASE_WAIT_S)."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import asyncpg
import pytest

from scenario_engine import engine as engine_module
from scenario_engine.engine import Engine
from tests.support.factories import add_mentor

AS_OF = dt.datetime(2026, 5, 4, 9, tzinfo=dt.UTC)


@pytest.fixture
def slow_reset(monkeypatch: pytest.MonkeyPatch) -> list[float | None]:
    """Every reset of a released connection takes 0.2 s (twice READER_WAIT_S), within the
    timeout it is given, as asyncpg's own reset is; records each timeout."""
    seen: list[float | None] = []
    real = asyncpg.Connection.reset

    async def reset(self: asyncpg.Connection[Any], *, timeout: float | None = None) -> None:
        seen.append(timeout)
        async with asyncio.timeout(timeout):
            await asyncio.sleep(4 * engine_module.READER_WAIT_S)
            await real(self, timeout=timeout)

    monkeypatch.setattr(asyncpg.Connection, "reset", reset)
    return seen


async def test_a_slow_reset_of_the_reader_or_a_lane_does_not_fail_the_sweep(
    engine: Engine, pool: asyncpg.Pool[Any], slow_reset: list[float | None]
) -> None:
    await add_mentor(pool, joined_at=AS_OF - dt.timedelta(days=90))
    full = await engine.run_scheduled_evaluation(AS_OF)
    assert full.lanes == 2 and full.sent == 1
    incremental = await engine.run_scheduled_evaluation(AS_OF + dt.timedelta(hours=1), since=AS_OF)
    assert incremental.lanes == 1 and not incremental.interrupted
    assert engine_module.READER_WAIT_S not in slow_reset  # the lane's and the reader's releases
    assert slow_reset.count(engine_module.RELEASE_WAIT_S) >= 2
