"""``pg_terminate_backend`` of the daemon's connections, as a DBA (or a failover) would:
(a) the LISTEN connection, (c) every pool connection, then every engine connection at once,
with a writer running and pushes in flight; and (b) the leader's lock connection in the
middle of a sweep that lasts seconds, with a second daemon ready to take over.

Each time: the process stays up, /readyz returns to 200, everything is caught up, no dedup
key is written twice, and no period is swept twice — read from ``scenario_sweep`` (one row
per period, finished once) and ``scenario_sweep_batch`` (no two claims of one period
evaluating batches at the same time).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import anyio
import pytest

from scenario_engine.db.connect import create_pool
from scenario_engine.runtime.scheduler import LEADER_LOCK_KEY
from scenario_engine.scenarios.rules import Rules
from tests.support.daemon import DaemonProcess
from tests.support.faults import (
    FaultGateway,
    add_population,
    alive,
    assert_ledger,
    caught_up,
    eventually,
    read_ledger,
    record,
    when,
    writer,
)
from tests.support.figures import Figures

pytestmark = [pytest.mark.faults, pytest.mark.acceptance]

CONCURRENCY = 8
DAEMON: dict[str, Any] = {
    "push_provider": "webhook",
    "push_concurrency": CONCURRENCY,
    "push_batch_size": 20,
    "push_rate_per_second": 10_000,
    "push_timeout_seconds": 1,
    "push_lease_seconds": 2,
    "push_backoff_base_seconds": 0.1,
    "push_backoff_max_seconds": 0.5,
    # The drain sleeps 30 s without a NOTIFY: catching up sooner shows the LISTEN path is back.
    "poll_interval_seconds": 30,
    "poll_min_interval_seconds": 30,  # a fixed poll: no adaptive probe finds the events first
    "dispatch_poll_interval_seconds": 0.2,
    "drain_batch_size": 25,
    "sweep_interval_seconds": 2,
    "sweep_batch_size": 100,
    "full_sweep_interval_hours": 0,
    "sweep_lease_seconds": 3,
    "leader_retry_seconds": 0.2,
}
LISTENER = "application_name = 'scenario-engine listener'"
POOL = "application_name = 'scenario-engine'"
EVERY = "application_name LIKE 'scenario-engine%'"


async def terminate(pool: Any, where: str) -> int:
    n: int = await pool.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        f"WHERE datname = current_database() AND {where}"
    )
    return n


async def pids(pool: Any, where: str) -> set[int]:
    rows = await pool.fetch(
        f"SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND {where}"
    )
    return {r["pid"] for r in rows}


async def assert_no_period_swept_twice(pool: Any) -> int:
    """Returns the number of periods; fails if two claims of one period overlapped."""
    periods = await pool.fetch("SELECT sweep_key, finished_at FROM scenario_engine.scenario_sweep")
    overlaps = await pool.fetch(
        """
        SELECT a.sweep_key, a.claim_token AS a, b.claim_token AS b
        FROM scenario_engine.scenario_sweep_batch a JOIN scenario_engine.scenario_sweep_batch b
          ON a.sweep_key = b.sweep_key AND a.claim_token < b.claim_token
         AND a.first_mentor <= b.last_mentor AND b.first_mentor <= a.last_mentor
         AND a.started_at < coalesce(b.finished_at, 'infinity')
         AND b.started_at < coalesce(a.finished_at, 'infinity')
        """
    )
    assert overlaps == [], f"batches of one period evaluated concurrently by two claims: {overlaps}"
    return len(periods)


async def test_terminated_listener_and_pool_connections_are_survived(
    db_url: str, tmp_path: Path, rules_path: Path, fault_rules: Rules, figures: Figures
) -> None:
    # The test's own connections carry another name, so that they survive the terminations.
    pool = await create_pool(db_url, min_size=1, max_size=4, application_name="fault-test")
    # notify mode (a new installation polls since sql/0025): this test is about the LISTEN path
    await pool.execute(
        "UPDATE scenario_engine.scenario_engine_setting SET value = 'notify' WHERE key = 'notify_mode'"
    )
    gw = FaultGateway(delay=0.05)
    await gw.start()
    d = DaemonProcess(db_url, tmp_path, "terminate", rules_file=rules_path, push_webhook_url=gw.url, **DAEMON)
    d.start()
    stop = anyio.Event()
    bursts = [0]
    try:
        mentors = await add_population(pool, 1000)
        await d.wait_ready(timeout=30)
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: writer(pool, mentors, stop, seed=3, counter=bursts))
            for what, where in (("listener", LISTENER), ("pool", POOL), ("every connection", EVERY)):
                await eventually(when(lambda: bool(gw.open_requests)), 60, "pushes in flight", d)
                old = await pids(pool, LISTENER)
                assert old, "the daemon listens"
                killed = await terminate(pool, where)
                assert killed >= 1
                figures.fault(f"pg_terminate_backend: {what}", killed)
                if where != POOL:  # a new LISTEN connection replaces the terminated one
                    await eventually(
                        functools.partial(_new_listener, pool, old), 30, "a new LISTEN connection", d
                    )
                await d.wait_ready(timeout=30)
                assert alive(d), d.logs()[-3000:]
                before = bursts[0]

                def writer_goes_on(before: int = before) -> bool:
                    return bursts[0] > before + 2

                await eventually(when(writer_goes_on), 30, "writer goes on")
                # written after the fault, drained long before the 30 s poll: NOTIFY works again
                await eventually(lambda: _events_drained(pool), 20, f"events drained after {what}", d)
            stop.set()
        await eventually(lambda: caught_up(pool), 90, "caught up", d)
        assert alive(d)
        assert await d.stop() == 0, d.logs()[-3000:]
        await anyio.sleep(0.2)
    finally:
        stop.set()
        d.kill()
        await gw.stop()
    try:
        ledger = await read_ledger(pool, gw, fault_rules)
        periods = await assert_no_period_swept_twice(pool)
    finally:
        await pool.close()
    record(figures, ledger)
    figures.duplicate_bound = CONCURRENCY * 2  # the two faults that cut pool connections
    figures.notes = {"periods": periods, "writer_transactions": bursts[0]}
    print(f"\nterminations: {ledger}")
    assert_ledger(ledger)
    assert set(ledger.statuses) <= {"sent", "cancelled", "abandoned"}, ledger.statuses
    assert ledger.duplicates <= CONCURRENCY * 2


async def _new_listener(pool: Any, old: set[int]) -> bool:
    now = await pids(pool, LISTENER)
    return bool(now) and not (now & old)


async def _events_drained(pool: Any) -> bool:
    return not await pool.fetchval(
        "SELECT count(*) FROM scenario_engine.scenario_event WHERE processed_at IS NULL AND dead_at IS NULL"
    )


SWEEP_MENTORS = 30_000
SWEEP_DAEMON: dict[str, Any] = {
    "sweep_interval_seconds": 86400,  # one period for the whole test
    "sweep_batch_size": 100,  # 300 batches: a sweep of seconds, many chances to be fenced
    "push_rate_per_second": 1,  # keep the dispatcher nearly idle: the cores are for the sweep
    # The leader-only sweep, whose claim and takeover this test asserts (two claims of the
    # period); a shared full sweep fences each range instead (tests/process/test_sweep_shared.py).
    "sweep_shared": False,
}


async def test_leader_lock_connection_terminated_mid_sweep_is_fenced(
    daemons: Any, pool: Any, rules_path: Path, figures: Figures
) -> None:
    await add_population(pool, SWEEP_MENTORS, days_ago=60)
    a = daemons("a", rules_file=rules_path, **SWEEP_DAEMON)
    await a.wait_ready(timeout=30)
    await eventually(lambda: _role(a, "leader"), 20, "a leads", a)
    b = daemons("b", rules_file=rules_path, leader_retry_seconds=0.1, **SWEEP_DAEMON)
    await b.wait_ready(timeout=30)
    await eventually(
        lambda: pool.fetchval("SELECT count(*) >= 600 FROM scenario_engine.scenario_notification"),
        60,
        "a sweeping",
        a,
    )
    lock_pid = await pool.fetchval(
        """
        SELECT l.pid FROM pg_locks l JOIN pg_stat_activity s USING (pid)
        WHERE l.locktype = 'advisory' AND l.granted AND s.datname = current_database()
          AND s.application_name = 'scenario-engine leader'
          AND ((l.classid::bigint << 32) | l.objid::bigint) = $1
        """,
        LEADER_LOCK_KEY,
    )
    assert lock_pid is not None
    assert await pool.fetchval("SELECT pg_terminate_backend($1)", lock_pid)
    figures.fault("pg_terminate_backend: leader lock connection mid-sweep")
    done = await pool.fetchval("SELECT count(*) FROM scenario_engine.scenario_notification")
    assert done < SWEEP_MENTORS, "the termination landed mid-sweep"
    await eventually(
        lambda: pool.fetchval("SELECT finished_at IS NOT NULL FROM scenario_engine.scenario_sweep"),
        120,
        "the period completed",
        a,
    )
    assert alive(a) and alive(b)
    assert (await a.http("/readyz"))[0] == 200 and (await b.http("/readyz"))[0] == 200
    assert await assert_no_period_swept_twice(pool) == 1
    fenced = [e for e in a.log_events() if e.get("event") == "sweep_fenced"]
    assert [e["reason"] for e in fenced] == ["leadership_lost"], a.logs()[-3000:]
    finished = [e for d in (a, b) for e in d.log_events() if e.get("event") == "sweep_finished"]
    assert len(finished) == 1
    row = await pool.fetchrow(
        "SELECT count(*) AS n, count(DISTINCT dedup_key) AS keys, count(DISTINCT mentor_id) AS mentors "
        "FROM scenario_engine.scenario_notification"
    )
    assert row["n"] == row["keys"] == row["mentors"] == SWEEP_MENTORS
    claims = await pool.fetchval(
        "SELECT count(DISTINCT claim_token) FROM scenario_engine.scenario_sweep_batch"
    )
    seconds = await pool.fetchval(
        "SELECT extract(epoch FROM max(finished_at) - min(started_at))::float8 "
        "FROM scenario_engine.scenario_sweep_batch"
    )
    print(f"\nperiod swept in {seconds:.1f} s by {claims} claims; {done} mentors done before the fault")
    figures.notifications = row["n"]
    figures.pushes = await pool.fetchval("SELECT count(*) FROM scenario_engine.push_notification")
    figures.events = await pool.fetchval("SELECT count(*) FROM scenario_engine.scenario_event")
    figures.notes = {
        "mentors": SWEEP_MENTORS,
        "done_before_fault": done,
        "claims": claims,
        "periods": 1,
        "period_seconds": round(seconds, 1),
    }
    assert figures.pushes == SWEEP_MENTORS
    assert claims == 2  # the fenced claim and the one that completed the period


async def _role(d: DaemonProcess, role: str) -> bool:
    return bool((await d.status())["role"] == role)
