"""A Postgres restart in the middle of a laned full sweep that uses the sweep's hints (logged
opt-outs left out, zone suspects read once): the sweep fails with the connection's error, and the
next sweep finishes the job — every inactive mentor reminded exactly once, every mentor with an
unloadable zone quarantined, every opted-out mentor's decision logged once (issue 18)."""

from __future__ import annotations

import asyncio
import datetime as dt

import anyio
import asyncpg
import pytest

from scenario_engine.db.connect import create_pool
from scenario_engine.db.errors import is_database_error
from scenario_engine.dev.embedded import LocalCluster
from scenario_engine.engine import Engine
from scenario_engine.scenarios.inactivity import InactivityRule
from scenario_engine.scenarios.milestone import MilestoneRule
from scenario_engine.scenarios.rules import Rules
from tests.support.cluster import pg_ctl

pytestmark = [pytest.mark.faults]

AS_OF = dt.datetime(2026, 6, 15, 12, tzinfo=dt.UTC)
RULES = Rules(
    inactivity=[InactivityRule(name="inactive_21d", threshold_days=21, cooldown_days=7)],
    milestone=[MilestoneRule(name="sessions_year", metric="sessions", thresholds=[2, 3])],
)
MENTORS = 3000


async def test_a_restart_mid_sweep_is_finished_by_the_next_sweep(own_cluster: LocalCluster) -> None:
    pool = await create_pool(own_cluster.dsn, min_size=1, max_size=4)
    try:
        await pool.execute("ALTER TABLE peer_mentor DROP CONSTRAINT IF EXISTS peer_mentor_timezone_valid")
        await pool.execute(
            "INSERT INTO peer_mentor (organization_id, joined_at, timezone) "
            "SELECT gen_random_uuid(), $1::timestamptz - interval '400 days', "
            "       CASE WHEN i % 100 = 0 THEN 'utc' ELSE 'Europe/Oslo' END "
            "FROM generate_series(1, $2) AS i",
            AS_OF,
            MENTORS,
        )
        await pool.execute(
            "INSERT INTO notification_preference (mentor_id, scenario_type, opted_out) "
            "SELECT id, 'all', true FROM peer_mentor WHERE timezone <> 'utc' ORDER BY id LIMIT 50"
        )
        await pool.execute("ANALYZE")
        engine = Engine(pool, RULES, sweep_batch=50)
        sweep = asyncio.create_task(engine.run_scheduled_evaluation(AS_OF))
        while await pool.fetchval("SELECT count(*) FROM scenario_notification") < MENTORS // 4:
            assert not sweep.done(), "the sweep ended before the restart"
            await asyncio.sleep(0.01)
        await anyio.to_thread.run_sync(pg_ctl, own_cluster, "-m", "immediate", "-w", "stop")
        with pytest.raises((asyncpg.InterfaceError, asyncpg.PostgresError, OSError)) as failed:
            await sweep
        assert is_database_error(failed.value) or isinstance(failed.value, OSError), repr(failed.value)
        await anyio.to_thread.run_sync(own_cluster.start)
        await pool.expire_connections()
        for _ in range(50):  # the pool's connections come back once the server accepts them
            try:
                await engine.run_scheduled_evaluation(AS_OF)
                break
            except (OSError, asyncpg.PostgresError):
                await asyncio.sleep(0.1)
        else:
            raise AssertionError("no sweep after the restart")
        bad = MENTORS // 100
        sent = await pool.fetchval(
            "SELECT count(*) FROM scenario_notification WHERE rule_name = 'inactive_21d'"
        )
        keys = await pool.fetchval("SELECT count(DISTINCT dedup_key) FROM scenario_notification")
        quarantined = await pool.fetchval("SELECT count(*) FROM scenario_quarantine")
        opted = await pool.fetch(
            "SELECT dedup_key, count(*) AS n FROM scenario_decision WHERE outcome = 'opted_out' GROUP BY 1"
        )
        # a mentor with an unloadable zone is quarantined for every rule, so never reminded
        assert sent == keys == MENTORS - bad - 50
        assert quarantined == bad
        assert len(opted) == 50 and all(r["n"] == 1 for r in opted)
    finally:
        await pool.close()
