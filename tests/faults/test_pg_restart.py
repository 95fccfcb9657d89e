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

import time
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


# A range's evaluation hangs, inside its transaction, just before the range is marked done, for
# as long as test_stall holds a row for it (for its attempt number, or any attempt if NULL).
# (The loop reads test_stall afresh at each turn: a row the test deletes releases the range.)
STALL_RANGES = """
CREATE TABLE public.test_stall (batch_no int NOT NULL, attempts int);
CREATE FUNCTION public.test_stall_range() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WHILE NEW.state = 'done' AND EXISTS (
        SELECT 1 FROM public.test_stall s
        WHERE s.batch_no = NEW.batch_no AND coalesce(s.attempts, NEW.attempts) = NEW.attempts
    ) LOOP
        PERFORM pg_sleep(0.05);
    END LOOP;
    RETURN NEW;
END $$;
CREATE TRIGGER test_stall_range BEFORE UPDATE ON scenario_engine.scenario_sweep_range
FOR EACH ROW EXECUTE FUNCTION public.test_stall_range();
"""
MID_SWEEP_LEASE = 120.0  # far above the test's wait: waiting the lease out fails it, deterministically
MID_SWEEP_MENTORS = 600  # 6 ranges of 100


async def test_a_restart_mid_shared_sweep_leaves_the_daemon_ready_well_within_the_lease(
    own_cluster: LocalCluster, tmp_path: Path, rules_path: Path
) -> None:
    """Postgres restarted while the leader evaluates a range of a shared full sweep: the range
    is left claimed, its lease running (120 s). The reconnected daemon takes its own range back
    at once, and its commit clears the scheduler's condition: /readyz is 200 again within
    seconds — not after the lease, and not only once the period ends (the next range is held
    up here, so the period stays open meanwhile). The range is evaluated once, by the same
    instance, and the period counted once."""
    cluster = own_cluster
    pool = await create_pool(cluster.dsn, min_size=1, max_size=2, application_name="fault-test")
    d = DaemonProcess(
        cluster.dsn,
        tmp_path,
        "mid-sweep",
        rules_file=rules_path,
        # One range in flight (this test's premise: range 3 must not be claimed while range 2
        # stalls); two ranges in flight at once: tests/faults/test_pg_restart_lanes.py.
        sweep_lanes=1,
        sweep_interval_seconds=86_400,
        sweep_batch_size=100,
        sweep_lease_seconds=MID_SWEEP_LEASE,
        leader_retry_seconds=0.2,
        poll_interval_seconds=0.2,
    )
    try:
        await add_population(pool, MID_SWEEP_MENTORS)
        await pool.execute(STALL_RANGES)
        # range 2 hangs on its first attempt (the restart comes then); range 3 until released
        await pool.execute("INSERT INTO public.test_stall VALUES (2, 1), (3, NULL)")
        d.start()

        def ranges() -> Any:
            return pool.fetch("SELECT * FROM scenario_engine.scenario_sweep_range ORDER BY batch_no")

        async def stalled_at(batch_no: int) -> bool:
            sleeping = await pool.fetchval(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE query LIKE '%scenario_sweep_range%' AND application_name LIKE 'scenario-engine%' "
                "AND state = 'active'"
            )
            claimed = [r["batch_no"] for r in await ranges() if r["state"] == "claimed"]
            return bool(sleeping) and claimed == [batch_no]

        await eventually(lambda: stalled_at(2), 60, "the evaluation of range 2 stalled", d)
        await d.wait_ready(timeout=10)
        before = {r["batch_no"]: r for r in await ranges()}
        assert len(before) == MID_SWEEP_MENTORS // 100
        assert [b for b, r in before.items() if r["state"] == "done"] == [0, 1], before  # mid sweep
        lost = before[2]
        assert lost["state"] == "claimed" and lost["attempts"] == 1
        await pool.close()

        await anyio.to_thread.run_sync(cluster.stop)  # -m fast: the stalled transaction dies
        await d.wait_http("/readyz", 503, timeout=30)
        await anyio.sleep(1)  # an outage, not a blip
        assert alive(d), d.logs()[-3000:]
        await anyio.to_thread.run_sync(cluster.start)
        restarted = time.monotonic()
        await d.wait_ready(timeout=MID_SWEEP_LEASE / 4)
        to_ready = time.monotonic() - restarted

        pool = await create_pool(cluster.dsn, min_size=1, max_size=2, application_name="fault-test")
        ready_in_lease = await pool.fetchval("SELECT now() < $1::timestamptz", lost["lease_until"])
        assert ready_in_lease, "ready again before the lost range's lease ran out"
        # Ready while the period is still open: range 2 is done, range 3 held up.
        await eventually(lambda: stalled_at(3), 30, "the evaluation of range 3 stalled", d)
        period = await pool.fetchrow(
            "SELECT * FROM scenario_engine.scenario_sweep WHERE sweep_key = $1", lost["sweep_key"]
        )
        assert period is not None
        assert period["finished_at"] is None
        assert (await d.http("/readyz"))[0] == 200
        await pool.execute("DELETE FROM public.test_stall")

        async def closed() -> bool:
            return bool(
                await pool.fetchval(
                    "SELECT finished_at IS NOT NULL FROM scenario_engine.scenario_sweep WHERE sweep_key = $1",
                    lost["sweep_key"],
                )
            )

        await eventually(closed, 60, "the period closed", d)
        again = await pool.fetchrow(
            "SELECT * FROM scenario_engine.scenario_sweep_range WHERE sweep_key = $1 AND batch_no = 2",
            lost["sweep_key"],
        )
        assert again is not None
        # Taken back by the same instance, long before its first claim's lease ran out.
        assert again["state"] == "done" and again["attempts"] == 2, dict(again)
        assert again["claimed_by"] == lost["claimed_by"] == d.env["SCENARIO_INSTANCE_ID"]
        assert again["claim_token"] != lost["claim_token"]
        assert again["claimed_at"] < lost["lease_until"]
        # Each range evaluated once (one ledger row each), the period counted once.
        per_batch = await pool.fetch(
            "SELECT batch_no, count(*) AS n FROM scenario_engine.scenario_sweep_batch "
            "WHERE sweep_key = $1 GROUP BY batch_no ORDER BY batch_no",
            lost["sweep_key"],
        )
        assert [(r["batch_no"], r["n"]) for r in per_batch] == [(b, 1) for b in range(len(before))]
        stats = await pool.fetchval(
            "SELECT stats FROM scenario_engine.scenario_sweep WHERE sweep_key = $1", lost["sweep_key"]
        )
        assert stats["shared"]["mentors"] == MID_SWEEP_MENTORS, stats
        notified = await pool.fetchrow(
            "SELECT count(*) AS n, count(DISTINCT mentor_id) AS mentors "
            "FROM scenario_engine.scenario_notification WHERE rule_name = 'inactive_21d'"
        )
        assert notified is not None
        assert notified["n"] == notified["mentors"] > 0, dict(notified)  # nobody notified twice
        decided = await pool.fetchrow(
            "SELECT count(*) AS n, count(DISTINCT mentor_id) AS mentors "
            "FROM scenario_engine.scenario_decision"
        )
        assert decided is not None
        assert decided["n"] == decided["mentors"] == MID_SWEEP_MENTORS, dict(decided)  # nor decided twice
        assert d.log_events() and [e for e in d.log_events() if e.get("event") == "sweep_range_reclaimed"]
        assert alive(d)
        assert await d.stop() == 0, d.logs()[-3000:]
    finally:
        d.kill()
        await pool.close()
    print(f"\nrestart mid shared sweep: /readyz 200 {to_ready:.2f} s after it (lease {MID_SWEEP_LEASE:g} s)")
