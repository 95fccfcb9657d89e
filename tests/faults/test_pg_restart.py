"""Postgres stopped ``-m immediate`` and ``-m fast`` under the real daemon, with a writer
running and pushes in flight to a real gateway, then started again.

The cluster is the test's own (``own_cluster`` from tests/process/test_db_outage.py), so it can be
restarted without touching the session's server. The daemon must stay up through each
outage (never exit), say 503 on /readyz while the server is away and 200 once it is back,
and catch up: the same ledger check as after ``kill -9``, and the deliveries repeated
because an outcome could not be recorded while the server was down are bounded by
``push_concurrency`` per restart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from scenario_engine.db.connect import create_pool
from scenario_engine.dev.embedded import LocalCluster
from scenario_engine.scenarios.rules import Rules
from tests.support.cluster import pg_ctl
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
MODES = ("immediate", "fast")
DAEMON: dict[str, Any] = {
    "push_provider": "webhook",
    "push_concurrency": CONCURRENCY,
    "push_batch_size": 20,
    "push_rate_per_second": 10_000,
    "push_timeout_seconds": 1,
    "push_lease_seconds": 2,
    "push_backoff_base_seconds": 0.1,
    "push_backoff_max_seconds": 0.5,
    "poll_interval_seconds": 0.2,
    "dispatch_poll_interval_seconds": 0.2,
    "drain_batch_size": 25,
    "sweep_interval_seconds": 2,
    "sweep_batch_size": 100,
    "full_sweep_interval_hours": 0,
    "sweep_lease_seconds": 3,
    "leader_retry_seconds": 0.2,
}


async def test_postgres_restarts_with_pushes_in_flight_are_survived_and_caught_up(
    own_cluster: LocalCluster, tmp_path: Path, rules_path: Path, fault_rules: Rules, figures: Figures
) -> None:
    cluster = own_cluster
    gw = FaultGateway(delay=0.1)  # slow enough that every restart finds requests open
    await gw.start()
    pool = await create_pool(cluster.dsn, min_size=1, max_size=4, application_name="fault-test")
    # The suite's clusters run with synchronous_commit off for speed; an immediate stop then
    # forgets commits it had acknowledged, which no production server configured for
    # durability does. The guarantees are stated for the default, so test them on it.
    await pool.execute("ALTER SYSTEM SET synchronous_commit = on")
    await pool.execute("SELECT pg_reload_conf()")
    d = DaemonProcess(
        cluster.dsn, tmp_path, "restarts", rules_file=rules_path, push_webhook_url=gw.url, **DAEMON
    ).start()
    stop = anyio.Event()
    bursts = [0]
    try:
        mentors = await add_population(pool, 1200)
        await d.wait_ready(timeout=30)
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: writer(pool, mentors, stop, seed=7, counter=bursts))
            for mode in MODES:
                await eventually(when(lambda: bool(gw.open_requests)), 60, "in flight", d)
                before = bursts[0]
                await anyio.to_thread.run_sync(pg_ctl, cluster, "-m", mode, "-w", "stop")
                figures.fault(f"postgres stop -m {mode} and start")
                await d.wait_http("/readyz", 503, timeout=30)
                await anyio.sleep(1)  # an outage, not a blip
                assert alive(d), d.logs()[-3000:]
                await anyio.to_thread.run_sync(cluster.start)
                await d.wait_ready(timeout=60)
                # the writer's transactions go through again, and so does the daemon's work

                def writer_back(before: int = before) -> bool:
                    return bursts[0] > before + 2

                await eventually(when(writer_back), 30, "writer back")
            stop.set()
        await eventually(lambda: caught_up(pool), 120, "caught up after the restarts", d)
        assert alive(d)
        assert await d.stop() == 0, d.logs()[-3000:]
        await anyio.sleep(0.2)
        ledger = await read_ledger(pool, gw, fault_rules)
    finally:
        stop.set()
        d.kill()
        await pool.close()
        await gw.stop()
    record(figures, ledger)
    figures.duplicate_bound = CONCURRENCY * len(MODES)
    figures.notes = {"mentors": 1200, "writer_transactions": bursts[0]}
    print(f"\nrestarts {MODES}: {ledger}")
    assert_ledger(ledger)
    assert set(ledger.statuses) <= {"sent", "cancelled", "abandoned"}, ledger.statuses
    assert ledger.duplicates <= CONCURRENCY * len(MODES)
