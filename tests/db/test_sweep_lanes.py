"""A full sweep's concurrent lanes (sweep.py ``_run_lanes``): several batches evaluated at once,
each on its own pool connection, take the next keyset batch from one dispenser. What they
write is what one lane writes; a refused batch stops every lane; an error in one lane is raised
as one lane raises it, and nothing is written twice when the period is swept again; a pool with
no connection to spare sweeps in one lane.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from scenario_engine.config import Settings
from scenario_engine.db.connect import SEARCH_PATH, connect, create_pool
from scenario_engine.db.errors import is_database_error
from scenario_engine.engine import Engine
from scenario_engine.runtime.scheduler import LEADER_LOCK_KEY, Scheduler
from scenario_engine.runtime.state import RuntimeState
from scenario_engine.scenarios.rules import Rules
from tests.db.test_equivalence import SNAPSHOT_QUERIES, assert_same, outcome_set, snapshot
from tests.support import pg
from tests.support.factories import add_activity, add_certification, add_mentor, opt_out

AS_OF = dt.datetime(2026, 5, 4, 9, tzinfo=dt.UTC)
MENTORS = 60
BATCH = 5

ROLLUPS = {
    table: f"SELECT * FROM scenario_engine.{table} WHERE n <> 0"
    for table in ("report_decision_day", "report_push_day", "report_outcome_day")
}


async def _populate(conn: asyncpg.Connection[Any]) -> list[uuid.UUID]:
    """Mentors with something for every rule: inactive ones, some with sessions this year (the
    milestone), certifications expiring within the tiers, a few opted out, one not active."""
    mentors = []
    for i in range(MENTORS):
        mentor = await add_mentor(conn, joined_at=AS_OF - dt.timedelta(days=400 - i))
        mentors.append(mentor)
        if i % 3 == 0:
            await add_activity(conn, mentor, AS_OF - dt.timedelta(days=2 + i % 10))
        if i % 4 == 1:
            for k in range(i % 6):
                await add_activity(conn, mentor, AS_OF - dt.timedelta(days=30 + k))
        if i % 5 == 2:
            await add_certification(conn, mentor, expires_at=AS_OF + dt.timedelta(days=1 + i % 40))
        if i % 11 == 0:
            await opt_out(conn, mentor)
    await conn.execute("UPDATE peer_mentor SET status = 'inactive' WHERE id = $1", mentors[7])
    return mentors


@pytest.fixture
async def databases(pg_server: pg.TestServer, template_db: str) -> AsyncIterator[tuple[str, str]]:
    """Two databases with the same population: one for the lanes, one for one lane."""
    tag = uuid.uuid4().hex[:12]
    names = (f"lanes_{tag}_many", f"lanes_{tag}_one")
    try:
        await pg_server.admin_execute(f'CREATE DATABASE "{names[0]}" TEMPLATE "{template_db}"')
        await pg_server.admin_execute(f'ALTER DATABASE "{names[0]}" SET search_path = {SEARCH_PATH}')
        conn = await asyncpg.connect(pg_server.url(names[0]))
        try:
            await _populate(conn)
        finally:
            await conn.close()  # CREATE DATABASE … TEMPLATE needs the template to be idle
        await pg_server.admin_execute(f'CREATE DATABASE "{names[1]}" TEMPLATE "{names[0]}"')
        await pg_server.admin_execute(f'ALTER DATABASE "{names[1]}" SET search_path = {SEARCH_PATH}')
        yield pg_server.url(names[0]), pg_server.url(names[1])
    finally:
        for name in names:
            await pg_server.admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _rows(pool: asyncpg.Pool[Any]) -> dict[str, set[tuple[Any, ...]]]:
    rows = await snapshot(pool)
    for table, sql in ROLLUPS.items():
        rows[table] = {tuple(r) for r in await pool.fetch(sql)}
    return rows


def _same(many: dict[str, set[tuple[Any, ...]]], one: dict[str, set[tuple[Any, ...]]], when: str) -> None:
    assert_same({t: many[t] for t in SNAPSHOT_QUERIES}, {t: one[t] for t in SNAPSHOT_QUERIES}, when)
    for table in ROLLUPS:
        assert many[table] == one[table], f"{table} differs at {when}"


async def _once_per_key(pool: asyncpg.Pool[Any]) -> None:
    """Every dedup key has one notification, one final decision and at most one push."""
    for sql in (
        "SELECT dedup_key FROM scenario_notification GROUP BY 1 HAVING count(*) > 1",
        "SELECT dedup_key FROM scenario_decision WHERE final GROUP BY 1 HAVING count(*) > 1",
        "SELECT notification_id FROM push_notification WHERE notification_id IS NOT NULL "
        "GROUP BY 1 HAVING count(*) > 1",
    ):
        assert await pool.fetch(sql) == [], sql


async def test_lanes_decide_every_mentor_once_as_one_lane_does(
    databases: tuple[str, str], rules: Rules
) -> None:
    many_url, one_url = databases
    many_pool = await create_pool(many_url, min_size=1, max_size=4)
    one_pool = await create_pool(one_url, min_size=1, max_size=4)
    try:
        many = Engine(many_pool, rules, sweep_batch=BATCH, sweep_lanes=3)
        one = Engine(one_pool, rules, sweep_batch=BATCH, sweep_lanes=1)
        active = await many_pool.fetchval("SELECT count(*) FROM peer_mentor WHERE status = 'active'")
        given: list[list[uuid.UUID]] = []

        async def before_batch(mentors: list[uuid.UUID]) -> bool:
            given.append(mentors)
            await asyncio.sleep(0)  # let another lane run meanwhile, as a lease renewal does
            return True

        progress: list[tuple[int, int]] = []
        for day in range(3):  # the first sweep, then two more days (cooldowns, the next tiers)
            as_of = AS_OF + dt.timedelta(days=day)
            given.clear()
            got = await many.run_scheduled_evaluation(
                as_of, collect=True, before_batch=before_batch, progress=lambda d, t: progress.append((d, t))
            )
            want = await one.run_scheduled_evaluation(as_of, collect=True)
            assert got.lanes == 3 and want.lanes == 1
            assert not got.interrupted
            assert got.mentors == want.mentors == active
            # Every active mentor in exactly one batch, the batches in id order.
            flat = [m for batch in given for m in batch]
            assert len(flat) == len(set(flat)) == active and flat == sorted(flat)
            assert got.per_rule == want.per_rule and got.sent == want.sent
            assert got.per_organization == want.per_organization
            keys = [o.candidate.dedup_key for o in got.outcomes]
            assert keys == [o.candidate.dedup_key for o in want.outcomes], "collected in id order"
            assert outcome_set(got.outcomes) == outcome_set(want.outcomes)
            assert progress[-1] == (active, active)
            _same(await _rows(many_pool), await _rows(one_pool), as_of.isoformat())
            await _once_per_key(many_pool)
        assert sum(c["sent"] for c in (await many.run_scheduled_evaluation(AS_OF)).per_rule.values()) == 0
    finally:
        await many_pool.close()
        await one_pool.close()


async def test_a_refused_batch_stops_every_lane_and_the_period_is_swept_again(
    databases: tuple[str, str], rules: Rules
) -> None:
    many_url, one_url = databases
    many_pool = await create_pool(many_url, min_size=1, max_size=4)
    one_pool = await create_pool(one_url, min_size=1, max_size=4)
    try:
        many = Engine(many_pool, rules, sweep_batch=BATCH, sweep_lanes=3)
        asked: list[list[uuid.UUID]] = []

        async def fence(mentors: list[uuid.UUID]) -> bool:
            asked.append(mentors)
            await asyncio.sleep(0.01)
            return len(asked) < 4  # the fourth batch is refused: lease lost, say

        got = await many.run_scheduled_evaluation(AS_OF, before_batch=fence)
        assert got.interrupted and got.lanes == 3
        assert len(asked) == 4, "no lane asks for a batch once one was refused"
        assert got.mentors == 3 * BATCH
        evaluated = {m for batch in asked[:3] for m in batch}
        decided = {r[0] for r in await many_pool.fetch("SELECT DISTINCT mentor_id FROM scenario_decision")}
        assert decided and decided <= evaluated, "only the batches given were evaluated"
        assert not decided & set(asked[3])

        # The period swept again (at its original instant) finishes the job, once.
        again = await many.run_scheduled_evaluation(AS_OF)
        assert not again.interrupted
        await Engine(one_pool, rules, sweep_batch=BATCH, sweep_lanes=1).run_scheduled_evaluation(AS_OF)
        _same(await _rows(many_pool), await _rows(one_pool), "after the second attempt")
        await _once_per_key(many_pool)
    finally:
        await many_pool.close()
        await one_pool.close()


async def _terminated_mid_sweep(url: str, rules: Rules, lanes: int) -> BaseException:
    """Sweep with every lane held up by a lock on the notification ledger; terminate one lane's
    backend; return what the sweep raised."""
    # One lane: a pool of one connection, so that no reader reads ahead (evaluate._Prefetch)
    # and the backend terminated is the one that decides and writes.
    size = lanes + 1 if lanes > 1 else 1
    pool = await create_pool(url, min_size=1, max_size=size, application_name="lanes-under-test")
    blocker = await asyncpg.connect(url)
    observer = await asyncpg.connect(url)  # outside the blocker's transaction (its stats snapshot)
    try:
        engine = Engine(pool, rules, sweep_batch=BATCH, sweep_lanes=lanes)
        async with pool.acquire() as conn:
            await engine.see_rules(conn, AS_OF)  # rules seen before the lock: the batches block
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute("LOCK TABLE scenario_engine.scenario_notification IN ACCESS EXCLUSIVE MODE")
        sweep = asyncio.create_task(engine.run_scheduled_evaluation(AS_OF))
        waiting: list[int] = []
        for _ in range(500):
            waiting = [
                r["pid"]
                for r in await observer.fetch(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = 'lanes-under-test' "
                    "AND wait_event_type = 'Lock' ORDER BY pid"
                )
            ]
            if len(waiting) == lanes:
                break
            await asyncio.sleep(0.01)
        seen = await observer.fetch(
            "SELECT pid, state, wait_event_type, left(query, 80) AS q FROM pg_stat_activity "
            "WHERE application_name = 'lanes-under-test'"
        )
        assert len(waiting) == lanes, f"every lane waits on the lock: {[dict(r) for r in seen]}"
        await observer.fetchval("SELECT pg_terminate_backend($1)", waiting[-1])
        try:
            await asyncio.wait_for(sweep, 30)
        except BaseException as exc:  # what the scheduler would see
            await tx.rollback()
            return exc
        raise AssertionError("the sweep went on without a lane")
    finally:
        await observer.close()
        await blocker.close()
        await pool.close()


async def test_an_error_in_one_lane_is_raised_as_one_lane_raises_it_and_nothing_is_written_twice(
    databases: tuple[str, str], rules: Rules
) -> None:
    many_url, one_url = databases
    with_lanes = await _terminated_mid_sweep(many_url, rules, lanes=3)
    alone = await _terminated_mid_sweep(one_url, rules, lanes=1)
    assert type(with_lanes) is type(alone), (with_lanes, alone)
    assert not isinstance(with_lanes, BaseExceptionGroup)
    assert is_database_error(with_lanes), with_lanes  # the scheduler's database-condition handling
    many_pool = await create_pool(many_url, min_size=1, max_size=4)
    one_pool = await create_pool(one_url, min_size=1, max_size=4)
    try:
        assert await many_pool.fetchval("SELECT count(*) FROM scenario_notification") == 0
        lanes = Engine(many_pool, rules, sweep_batch=BATCH, sweep_lanes=3)
        again = await lanes.run_scheduled_evaluation(AS_OF)
        assert again.lanes == 3 and not again.interrupted
        await Engine(one_pool, rules, sweep_batch=BATCH, sweep_lanes=1).run_scheduled_evaluation(AS_OF)
        _same(await _rows(many_pool), await _rows(one_pool), "after the failed attempt")
        await _once_per_key(many_pool)
    finally:
        await many_pool.close()
        await one_pool.close()


async def test_a_pool_with_no_spare_connection_sweeps_in_one_lane(
    databases: tuple[str, str], rules: Rules
) -> None:
    many_url, one_url = databases
    tight = await create_pool(many_url, min_size=1, max_size=3)
    one_pool = await create_pool(one_url, min_size=1, max_size=4)
    try:
        engine = Engine(tight, rules, sweep_batch=BATCH, sweep_lanes=3)
        async with tight.acquire():  # the drain holds one connection; one is kept free
            got = await engine.run_scheduled_evaluation(AS_OF)
        assert got.lanes == 1 and not got.interrupted
        # Two free: one lane more, not two (one stays free for the drain, never waited for).
        second = await engine.run_scheduled_evaluation(AS_OF + dt.timedelta(days=1))
        assert second.lanes == 2
        one = Engine(one_pool, rules, sweep_batch=BATCH, sweep_lanes=1)
        await one.run_scheduled_evaluation(AS_OF)
        await one.run_scheduled_evaluation(AS_OF + dt.timedelta(days=1))
        _same(await _rows(tight), await _rows(one_pool), "with a tight pool")
    finally:
        await tight.close()
        await one_pool.close()


async def test_dry_run_and_incremental_sweeps_keep_one_lane(engine: Engine, pool: asyncpg.Pool[Any]) -> None:
    await add_mentor(pool, joined_at=AS_OF - dt.timedelta(days=90))
    assert engine.sweep_lanes == 2
    dry = await engine.run_scheduled_evaluation(AS_OF, dry_run=True)
    assert dry.lanes == 1 and dry.sent == 1
    assert await pool.fetchval("SELECT count(*) FROM scenario_notification") == 0
    full = await engine.run_scheduled_evaluation(AS_OF)
    assert full.lanes == 2 and full.sent == 1
    incremental = await engine.run_scheduled_evaluation(AS_OF + dt.timedelta(hours=1), since=AS_OF)
    assert incremental.lanes == 1


class StoppingScheduler(Scheduler):
    """Asked to stop before the sweep's fourth batch; notes what was written when it let the
    period's lease go."""

    written_at_give_up: int | None = None

    async def _before_batch(
        self, claim: Any, lock_conn: asyncpg.Connection[Any], mentors: list[uuid.UUID]
    ) -> bool:
        if claim.batches == 3:
            self.state.stopping.set()
        await asyncio.sleep(0.01)  # the lanes' batches in hand go on meanwhile
        return await super()._before_batch(claim, lock_conn, mentors)

    async def _give_up(self, claim: Any) -> None:
        self.written_at_give_up = await self.pool.fetchval("SELECT count(*) FROM scenario_decision")
        await super()._give_up(claim)


async def test_a_leader_only_sweep_lets_its_lease_go_after_the_lanes_batches_in_hand(
    databases: tuple[str, str], rules: Rules
) -> None:
    """Stopping mid-sweep: every lane finishes its batch before the lease is released, so the
    instance that takes the period over never overlaps them; it then completes the period."""
    many_url, one_url = databases
    many_pool = await create_pool(many_url, min_size=1, max_size=5)
    one_pool = await create_pool(one_url, min_size=1, max_size=4)
    lock_conn = await connect(many_url)
    try:
        settings = Settings(
            full_sweep_interval_hours=24, sweep_batch_size=BATCH, sweep_shared=False, sweep_lanes=3
        )
        engine = Engine(many_pool, rules, sweep_batch=BATCH, sweep_lanes=3)
        stopping = StoppingScheduler(many_url, many_pool, engine, RuntimeState(instance_id="a"), settings)
        assert await lock_conn.fetchval("SELECT pg_try_advisory_lock($1)", LEADER_LOCK_KEY)
        await stopping._sweep_period("p", lock_conn, AS_OF)
        written = await many_pool.fetchval("SELECT count(*) FROM scenario_decision")
        assert stopping.written_at_give_up == written > 0, "nothing written after the lease was let go"
        row: Any = await many_pool.fetchrow("SELECT finished_at FROM scenario_sweep WHERE sweep_key = 'p'")
        assert row["finished_at"] is None
        # Another instance claims the period at once (the lease was let go) and completes it.
        other = Scheduler(many_url, many_pool, engine, RuntimeState(instance_id="b"), settings)
        await other._sweep_period("p", lock_conn, AS_OF + dt.timedelta(minutes=1))
        row = await many_pool.fetchrow("SELECT finished_at FROM scenario_sweep WHERE sweep_key = 'p'")
        assert row["finished_at"] is not None
        await Engine(one_pool, rules, sweep_batch=BATCH, sweep_lanes=1).run_scheduled_evaluation(AS_OF)
        _same(await _rows(many_pool), await _rows(one_pool), "after the period was taken over")
        await _once_per_key(many_pool)
    finally:
        await lock_conn.close()
        await many_pool.close()
        await one_pool.close()


async def test_a_cancelled_sweep_waits_for_its_lanes_before_giving_their_connections_back(
    databases: tuple[str, str], rules: Rules
) -> None:
    """A daemon stopping mid-sweep cancels it: every lane ends (its batch rolled back) before
    the sweep's connections go back to the pool, and the cancellation is what the caller sees."""
    many_url, _ = databases
    pool = await create_pool(many_url, min_size=1, max_size=4, application_name="lanes-cancelled")
    blocker = await asyncpg.connect(many_url)
    observer = await asyncpg.connect(many_url)
    try:
        engine = Engine(pool, rules, sweep_batch=BATCH, sweep_lanes=3)
        async with pool.acquire() as conn:
            await engine.see_rules(conn, AS_OF)
        async with blocker.transaction():
            await blocker.execute("LOCK TABLE scenario_engine.scenario_notification IN ACCESS EXCLUSIVE MODE")
            sweep = asyncio.create_task(engine.run_scheduled_evaluation(AS_OF))
            for _ in range(500):
                waiting = await observer.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'lanes-cancelled' "
                    "AND wait_event_type = 'Lock'"
                )
                if waiting == 3:
                    break
                await asyncio.sleep(0.01)
            assert waiting == 3
            sweep.cancel()
            with pytest.raises(asyncio.CancelledError):
                await sweep
            assert pool.get_idle_size() == pool.get_size(), "every connection back, none in use"
        assert await pool.fetchval("SELECT count(*) FROM scenario_decision") == 0
        assert (await engine.run_scheduled_evaluation(AS_OF)).lanes == 3, "the pool is usable after"
    finally:
        await observer.close()
        await blocker.close()
        await pool.close()
