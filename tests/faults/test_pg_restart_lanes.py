"""Postgres restarted while ONE instance has TWO ranges of a shared full sweep in flight (its
lanes, ``SCENARIO_SWEEP_LANES=2``; runtime/scheduler.py ``_work_shared_lanes``).

The instance remembers every range it lost to the database (runtime/shared_sweep.py
``SharedSweeper._lost``) and takes each back at once; its scheduler condition (/readyz) clears
only once *both* have committed — not when the first does — and well within their lease, while
the period is still open. Each mentor is decided once and notified once.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from scenario_engine.db.connect import create_pool
from scenario_engine.dev.embedded import LocalCluster
from tests.faults.test_pg_restart import STALL_RANGES
from tests.support.daemon import DaemonProcess
from tests.support.faults import add_population, alive, eventually

pytestmark = [pytest.mark.faults, pytest.mark.acceptance]

LEASE = 120.0  # far above the test's waits: waiting a lease out fails it, deterministically
MENTORS = 800  # 8 ranges of 100


async def test_a_restart_with_two_ranges_in_flight_takes_both_back_and_is_ready_once_both_commit(
    own_cluster: LocalCluster, tmp_path: Path, rules_path: Path
) -> None:
    cluster = own_cluster
    pool = await create_pool(cluster.dsn, min_size=1, max_size=2, application_name="fault-test")
    d = DaemonProcess(
        cluster.dsn,
        tmp_path,
        "two-lost",
        rules_file=rules_path,
        sweep_lanes=2,
        sweep_interval_seconds=86_400,
        sweep_batch_size=100,
        sweep_lease_seconds=LEASE,
        leader_retry_seconds=0.2,
        poll_interval_seconds=0.2,
    )
    try:
        await add_population(pool, MENTORS)
        await pool.execute(STALL_RANGES)
        # Ranges 2 and 3 hang on their first attempt (the two lanes' ranges when the restart
        # comes); range 3 on its second too, until released (so that /readyz is seen to wait for
        # it after range 2 committed); range 7, the last, until the end (the period stays open).
        await pool.execute("INSERT INTO public.test_stall VALUES (2, 1), (3, 1), (3, 2), (7, NULL)")
        d.start()

        def ranges() -> Any:
            return pool.fetch("SELECT * FROM scenario_engine.scenario_sweep_range ORDER BY batch_no")

        async def stalled_at(*batch_nos: int) -> bool:
            sleeping = await pool.fetchval(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE query LIKE '%scenario_sweep_range%' AND application_name LIKE 'scenario-engine%' "
                "AND state = 'active'"
            )
            claimed = [r["batch_no"] for r in await ranges() if r["state"] == "claimed"]
            return sleeping >= len(batch_nos) and claimed == list(batch_nos)

        await eventually(lambda: stalled_at(2, 3), 60, "ranges 2 and 3 stalled at once", d)
        await d.wait_ready(timeout=10)
        before = {r["batch_no"]: r for r in await ranges()}
        assert len(before) == MENTORS // 100
        assert [b for b, r in before.items() if r["state"] == "done"] == [0, 1], before
        lost = [before[2], before[3]]
        assert all(r["state"] == "claimed" and r["attempts"] == 1 for r in lost), lost
        assert lost[0]["claimed_by"] == lost[1]["claimed_by"] == d.env["SCENARIO_INSTANCE_ID"]
        await pool.close()

        await anyio.to_thread.run_sync(cluster.stop)  # -m fast: both stalled transactions die
        await d.wait_http("/readyz", 503, timeout=30)
        await anyio.sleep(1)  # an outage, not a blip
        assert alive(d), d.logs()[-3000:]
        await anyio.to_thread.run_sync(cluster.start)
        restarted = time.monotonic()
        pool = await create_pool(cluster.dsn, min_size=1, max_size=2, application_name="fault-test")

        async def state(batch_no: int) -> Any:
            return await pool.fetchrow(
                "SELECT * FROM scenario_engine.scenario_sweep_range WHERE sweep_key = $1 AND batch_no = $2",
                lost[0]["sweep_key"],
                batch_no,
            )

        # Both taken back at once: range 2 commits on its second attempt, range 3 hangs on its.
        async def range_3_retaken() -> bool:
            two, three = await state(2), await state(3)
            return bool(two["state"] == "done" and three["state"] == "claimed" and three["attempts"] == 2)

        await eventually(range_3_retaken, LEASE / 4, "both lost ranges taken back", d)
        for _ in range(10):  # one of two lost ranges committed: not ready yet
            assert (await d.http("/readyz"))[0] == 503, "ready before every lost range committed"
            await anyio.sleep(0.1)
        await pool.execute("DELETE FROM public.test_stall WHERE batch_no = 3")
        await d.wait_ready(timeout=LEASE / 4)
        to_ready = time.monotonic() - restarted
        ready_in_lease = await pool.fetchval(
            "SELECT now() < least($1::timestamptz, $2::timestamptz)",
            lost[0]["lease_until"],
            lost[1]["lease_until"],
        )
        assert ready_in_lease, "ready again before the lost ranges' leases ran out"
        assert (await state(3))["state"] == "done"
        period = await pool.fetchrow(
            "SELECT * FROM scenario_engine.scenario_sweep WHERE sweep_key = $1", lost[0]["sweep_key"]
        )
        assert period is not None and period["finished_at"] is None  # ready while the period runs on
        await pool.execute("DELETE FROM public.test_stall")

        async def closed() -> bool:
            return bool(
                await pool.fetchval(
                    "SELECT finished_at IS NOT NULL FROM scenario_engine.scenario_sweep WHERE sweep_key = $1",
                    lost[0]["sweep_key"],
                )
            )

        await eventually(closed, 60, "the period closed", d)
        for first in lost:
            again = await state(first["batch_no"])
            # Taken back by the same instance under a fresh token, long before its lease ran out.
            assert again["state"] == "done" and again["attempts"] == 2, dict(again)
            assert again["claimed_by"] == first["claimed_by"]
            assert again["claim_token"] != first["claim_token"]
            assert again["claimed_at"] < first["lease_until"]
        per_batch = await pool.fetch(
            "SELECT batch_no, count(*) AS n FROM scenario_engine.scenario_sweep_batch "
            "WHERE sweep_key = $1 GROUP BY batch_no ORDER BY batch_no",
            lost[0]["sweep_key"],
        )
        assert [(r["batch_no"], r["n"]) for r in per_batch] == [(b, 1) for b in range(len(before))]
        stats = await pool.fetchval(
            "SELECT stats FROM scenario_engine.scenario_sweep WHERE sweep_key = $1", lost[0]["sweep_key"]
        )
        assert stats["shared"]["mentors"] == MENTORS, stats
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
        assert decided["n"] == decided["mentors"] == MENTORS, dict(decided)  # nor decided twice
        retaken = [e for e in d.log_events() if e.get("event") == "sweep_range_reclaimed"]
        assert sorted(e["batch_no"] for e in retaken) == [2, 3], retaken
        assert alive(d)
        assert await d.stop() == 0, d.logs()[-3000:]
    finally:
        d.kill()
        await pool.close()
    print(f"\nrestart with two ranges in flight: /readyz 200 {to_ready:.2f} s after it (lease {LEASE:g} s)")
