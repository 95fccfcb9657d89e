"""A shared full sweep (runtime/shared_sweep.py) worked by one instance in lanes
(``SCENARIO_SWEEP_LANES``; runtime/scheduler.py ``_work_shared_lanes``): several ranges at once,
each on its own pool connection, each its own transaction under its own claim. What it writes
is what one lane writes, every mentor decided once; a range that fails in one lane leaves the
other lanes' ranges to commit, no connection checked out, and the failed range remembered and
taken back at the next try — every lost range, not one.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from typing import Any

import asyncpg
import pytest

from scenario_engine.config import Settings
from scenario_engine.db.connect import connect, create_pool
from scenario_engine.db.errors import is_database_error
from scenario_engine.engine import Engine
from scenario_engine.runtime.scheduler import LEADER_LOCK_KEY, Scheduler
from scenario_engine.runtime.shared_sweep import ClosedPeriod, RangeClaim, SharedSweeper
from scenario_engine.runtime.state import RuntimeState
from scenario_engine.scenarios.rules import Rules
from tests.db.test_equivalence import SNAPSHOT_QUERIES, assert_same
from tests.db.test_sweep_lanes import AS_OF, BATCH, ROLLUPS, _once_per_key, _rows, _same, databases

__all__ = ["databases"]  # the fixture: two databases with the same population


class CountingScheduler(Scheduler):
    """Counts the shared ranges it works at once."""

    running = 0
    peak = 0

    async def _work_shared(self, rules: Rules) -> bool:
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            return await super()._work_shared(rules)
        finally:
            self.running -= 1


class FailingSweeper(SharedSweeper):
    """The first attempt at each range in ``fail`` dies of a statement timeout inside its
    transaction (a database error: the range stays claimed under this instance's token)."""

    fail: frozenset[int] = frozenset()

    async def evaluate(self, claim: RangeClaim, rules: Rules, lane: Any | None = None) -> ClosedPeriod | None:
        if claim.batch_no in self.fail and claim.attempts == 1:
            async with self._conn(lane) as conn, conn.transaction():
                await conn.execute("SET LOCAL statement_timeout = '20ms'")
                await conn.execute("SELECT pg_sleep(1)")
        return await super().evaluate(claim, rules, lane)


def _scheduler(url: str, pool: asyncpg.Pool[Any], rules: Rules, lanes: int, name: str) -> CountingScheduler:
    engine = Engine(pool, rules, sweep_batch=BATCH, sweep_lanes=lanes)
    settings = Settings(
        full_sweep_interval_hours=24, sweep_batch_size=BATCH, sweep_shared=True, sweep_lanes=lanes
    )
    return CountingScheduler(url, pool, engine, RuntimeState(instance_id=name), settings)


async def _period(pool: asyncpg.Pool[Any], key: str) -> Any:
    return await pool.fetchrow("SELECT stats, finished_at FROM scenario_sweep WHERE sweep_key = $1", key)


async def test_one_instance_works_a_shared_period_in_two_lanes_as_one_lane_does(
    databases: tuple[str, str], rules: Rules
) -> None:
    many_url, one_url = databases
    many_pool = await create_pool(many_url, min_size=1, max_size=4)
    one_pool = await create_pool(one_url, min_size=1, max_size=4)
    locks = [await connect(many_url), await connect(one_url)]
    try:
        many = _scheduler(many_url, many_pool, rules, 2, "two-lanes")
        one = _scheduler(one_url, one_pool, rules, 1, "one-lane")
        active = await many_pool.fetchval("SELECT count(*) FROM peer_mentor WHERE status = 'active'")
        for lock in locks:
            assert await lock.fetchval("SELECT pg_try_advisory_lock($1)", LEADER_LOCK_KEY)
        for day in range(2):  # the first sweep, then the next day's (cooldowns, the next tiers)
            key, as_of = f"day{day}", AS_OF + dt.timedelta(days=day)
            await many._sweep_period(key, locks[0], as_of)
            await one._sweep_period(key, locks[1], as_of)
            assert one.peak == 1
            got, want = await _period(many_pool, key), await _period(one_pool, key)
            assert got["finished_at"] is not None and want["finished_at"] is not None
            assert got["stats"]["per_rule"] == want["stats"]["per_rule"]
            assert got["stats"]["shared"]["mentors"] == want["stats"]["shared"]["mentors"] == active
            ranges = await many_pool.fetch(
                "SELECT state, attempts, mentors FROM scenario_sweep_range WHERE sweep_key = $1", key
            )
            assert len(ranges) > 2 and {(r["state"], r["attempts"]) for r in ranges} == {("done", 1)}
            assert sum(r["mentors"] for r in ranges) == active  # every mentor in one range, once
            # decided once each: one final decision per mentor and rule at this sweep's instant
            twice = await many_pool.fetch(
                "SELECT mentor_id, rule_name FROM scenario_decision WHERE as_of = $1 AND final "
                "GROUP BY 1, 2 HAVING count(*) > 1",
                as_of,
            )
            assert twice == []
            _same(await _rows(many_pool), await _rows(one_pool), key)
            await _once_per_key(many_pool)
        assert many.peak == 2, "two ranges at once"
        assert many_pool.get_idle_size() == many_pool.get_size(), "every lane's connection back"
        assert many.state.metrics.sweeps.labels("completed")._value.get() == 2
    finally:
        for lock in locks:
            await lock.close()
        await many_pool.close()
        await one_pool.close()


async def test_a_range_failing_in_one_lane_is_taken_back_and_the_other_lanes_commit(
    databases: tuple[str, str], rules: Rules
) -> None:
    many_url, one_url = databases
    many_pool = await create_pool(many_url, min_size=1, max_size=4)
    one_pool = await create_pool(one_url, min_size=1, max_size=4)
    lock = await connect(many_url)
    try:
        many = _scheduler(many_url, many_pool, rules, 2, "two-lanes")
        failing = FailingSweeper(many_pool, many.engine, "two-lanes", 60.0, dt.timedelta(days=7))
        failing.fail = frozenset({3, 5})
        many.shared = failing
        assert await lock.fetchval("SELECT pg_try_advisory_lock($1)", LEADER_LOCK_KEY)
        failures = 0
        for _ in range(4):  # as the scheduler's loop retries after a database error
            try:
                await many._sweep_period("first", lock, AS_OF)
            except Exception as exc:  # a range's statement timeout, raised once the lanes ended
                assert is_database_error(exc), exc  # noqa: PT017 (the loop goes on after it)
                failures += 1
                assert many_pool.get_idle_size() == many_pool.get_size(), "no lane's connection kept"
                claimed = await many_pool.fetch(
                    "SELECT batch_no, attempts FROM scenario_sweep_range "
                    "WHERE sweep_key = 'first' AND state = 'claimed' ORDER BY batch_no"
                )
                # the other lane's range in hand committed; the failed ones are remembered, each
                assert [r["batch_no"] for r in claimed] == sorted(c.batch_no for c in failing.lost)
                assert {r["batch_no"] for r in claimed} <= {3, 5} and failing.unsettled == len(claimed)
                continue
            break
        assert failures >= 1
        period = await _period(many_pool, "first")
        assert period["finished_at"] is not None
        ranges = await many_pool.fetch("SELECT * FROM scenario_sweep_range WHERE sweep_key = 'first'")
        assert {r["state"] for r in ranges} == {"done"}
        assert {r["batch_no"]: r["attempts"] for r in ranges if r["attempts"] > 1} == {3: 2, 5: 2}
        assert failing.lost == [] and failing.unsettled == 0
        want = await Engine(one_pool, rules, sweep_batch=BATCH, sweep_lanes=1).run_scheduled_evaluation(AS_OF)
        assert period["stats"]["per_rule"] == {r: dict(c) for r, c in want.per_rule.items()}
        _same(await _rows(many_pool), await _rows(one_pool), "after a lane's range was taken back")
        await _once_per_key(many_pool)
        assert many_pool.get_idle_size() == many_pool.get_size()
        assert many.state.metrics.sweeps.labels("completed")._value.get() == 1
    finally:
        await lock.close()
        await many_pool.close()
        await one_pool.close()


# A range's completion (its ``done`` update) raises or hangs while public.test_range_trap holds
# its batch number: after its rules' first sighting and experiment were written, before commit.
RANGE_TRAP = """
CREATE TABLE public.test_range_trap (batch_no int PRIMARY KEY, fail boolean NOT NULL);
CREATE FUNCTION public.test_range_trap() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state = 'done' AND EXISTS (
        SELECT 1 FROM public.test_range_trap t WHERE t.batch_no = NEW.batch_no AND t.fail
    ) AND NEW.attempts = 1 THEN
        RAISE EXCEPTION 'trapped range %', NEW.batch_no USING ERRCODE = 'query_canceled';
    END IF;
    WHILE NEW.state = 'done' AND EXISTS (
        SELECT 1 FROM public.test_range_trap t WHERE t.batch_no = NEW.batch_no AND NOT t.fail
    ) LOOP
        PERFORM pg_sleep(0.02);
    END LOOP;
    RETURN NEW;
END $$;
CREATE TRIGGER test_range_trap BEFORE UPDATE ON scenario_engine.scenario_sweep_range
FOR EACH ROW EXECUTE FUNCTION public.test_range_trap();
"""


async def _rollup(pool: asyncpg.Pool[Any], table: str) -> set[str]:
    rows = await pool.fetch(
        f"SELECT (to_jsonb(r) - 'experiment_id')::text AS row FROM scenario_engine.{table} r WHERE n <> 0"
    )
    return {r["row"] for r in rows}


async def _release(pool: asyncpg.Pool[Any], sweep: asyncio.Future[None]) -> None:
    """A failed test lets its held ranges go, so that the pools can close."""
    await pool.execute("DELETE FROM public.test_range_trap")
    sweep.cancel()
    await asyncio.wait([sweep], timeout=30)


async def _unseen(pool: asyncpg.Pool[Any]) -> None:
    assert await pool.fetchval("SELECT count(*) FROM scenario_rule_state") == 0, "the rules are new here"
    assert await pool.fetchval("SELECT count(*) FROM scenario_experiment") == 0


async def test_a_lane_waits_for_the_range_that_records_a_new_rules_experiment_to_commit(
    databases: tuple[str, str], rules: Rules
) -> None:
    """The rules are new: the first range's transaction records their first sighting and their
    experiments. While it has not committed (held here), the other lane's range must not write
    decisions under those experiments (a foreign-key violation that failed CI once): it waits for
    the commit on their unique keys, then goes on. The period ends as one lane's does."""
    many_url, one_url = databases
    many_pool = await create_pool(many_url, min_size=1, max_size=4)
    one_pool = await create_pool(one_url, min_size=1, max_size=4)
    lock = await connect(many_url)
    stack = contextlib.AsyncExitStack()
    try:
        await _unseen(many_pool)
        await many_pool.execute(RANGE_TRAP)
        await many_pool.execute("INSERT INTO public.test_range_trap VALUES (0, false), (1, false)")
        many = _scheduler(many_url, many_pool, rules, 2, "two-lanes")
        assert await lock.fetchval("SELECT pg_try_advisory_lock($1)", LEADER_LOCK_KEY)
        sweep = asyncio.ensure_future(many._sweep_period("first", lock, AS_OF))
        stack.push_async_callback(_release, many_pool, sweep)

        async def one_held_one_waiting() -> bool:
            waits = await many_pool.fetch(
                "SELECT wait_event_type, wait_event FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() AND state = 'active'"
            )
            kinds = sorted(str(w["wait_event_type"]) for w in waits)
            return kinds == ["Lock", "Timeout"]  # one range in the trap's pg_sleep, one on its row

        deadline = asyncio.get_running_loop().time() + 30
        while not await one_held_one_waiting():
            assert not sweep.done(), sweep.exception() if sweep.done() else None
            assert asyncio.get_running_loop().time() < deadline, "the second lane never waited"
            await asyncio.sleep(0.02)
        await many_pool.execute("DELETE FROM public.test_range_trap")
        await asyncio.wait_for(sweep, 60)  # no foreign-key violation: raised here if it happened
        period = await _period(many_pool, "first")
        assert period["finished_at"] is not None
        want = await Engine(one_pool, rules, sweep_batch=BATCH, sweep_lanes=1).run_scheduled_evaluation(AS_OF)
        assert period["stats"]["per_rule"] == {r: dict(c) for r, c in want.per_rule.items()}
        _same(await _rows(many_pool), await _rows(one_pool), "a new rule's first ranges in two lanes")
        await _once_per_key(many_pool)
    finally:
        await stack.aclose()
        await lock.close()
        await many_pool.close()
        await one_pool.close()


async def test_a_rolled_back_range_leaves_no_experiment_behind_in_the_engines_cache(
    databases: tuple[str, str], rules: Rules
) -> None:
    """The range that recorded the new rules' first sighting and experiments rolls back (a
    statement cancelled at its completion): nothing of it was committed, so the engine must not
    remember it either. Taken back, the range records them again — the no-flood baseline
    included — instead of writing under an experiment id that never existed."""
    many_url, one_url = databases
    many_pool = await create_pool(many_url, min_size=1, max_size=4)
    one_pool = await create_pool(one_url, min_size=1, max_size=4)
    lock = await connect(many_url)
    try:
        await _unseen(many_pool)
        await many_pool.execute(RANGE_TRAP)
        await many_pool.execute("INSERT INTO public.test_range_trap VALUES (0, true)")
        many = _scheduler(many_url, many_pool, rules, 1, "one-lane")
        assert await lock.fetchval("SELECT pg_try_advisory_lock($1)", LEADER_LOCK_KEY)
        with pytest.raises(asyncpg.QueryCanceledError, match="trapped range 0"):
            await many._sweep_period("first", lock, AS_OF)
        await _unseen(many_pool)  # the rollback took the experiments with it
        await many._sweep_period("first", lock, AS_OF)  # as the scheduler's loop retries
        period = await _period(many_pool, "first")
        assert period["finished_at"] is not None
        retaken = await many_pool.fetchval(
            "SELECT attempts FROM scenario_sweep_range WHERE sweep_key = 'first' AND batch_no = 0"
        )
        assert retaken == 2
        want = await Engine(one_pool, rules, sweep_batch=BATCH, sweep_lanes=1).run_scheduled_evaluation(AS_OF)
        assert period["stats"]["per_rule"] == {r: dict(c) for r, c in want.per_rule.items()}
        got, want_rows = await _rows(many_pool), await _rows(one_pool)
        assert_same(
            {t: got[t] for t in SNAPSHOT_QUERIES}, {t: want_rows[t] for t in SNAPSHOT_QUERIES}, "retaken"
        )
        for table in ROLLUPS:  # the rolled-back attempt used up experiment ids: compare without them
            assert await _rollup(many_pool, table) == await _rollup(one_pool, table), table
        await _once_per_key(many_pool)
    finally:
        await lock.close()
        await many_pool.close()
        await one_pool.close()
