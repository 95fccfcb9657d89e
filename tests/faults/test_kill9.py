"""``kill -9`` of the real ``scenario-engine run`` at random moments of drain, sweep and
dispatch, with a writer inserting platform rows throughout, then a restart and a ledger check.

Twelve seeds; ``random.Random(seed)`` picks how long after the phase is seen under way the
kill lands. Each phase is recognised from outside, as an operator could: a drain holds the
row locks of its claimed ``scenario_event`` batch, a sweep holds an unexpired lease on an
unfinished ``scenario_sweep`` period, a dispatch has a request open at the gateway. Batches
are small (drain 25, sweep 100, push 20) so that the kills land mid-batch.

What is proved afterwards, from the database and the gateway's own record: every event was
processed (none dead-lettered: they were all valid), every dedup key is in
``scenario_notification`` once and has one push, every push is terminal (here: sent, and
received by the gateway, or withdrawn by the send-time re-check with a reason — and
never "cancelled" once it reached the gateway), a dry-run sweep finds nothing left to send, and the deliveries
repeated after the kills carry the same Idempotency-Key, are flagged ``delivery_uncertain``
and number at most ``push_concurrency`` per kill.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import anyio
import pytest

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
    writer,
)
from tests.support.figures import Figures

pytestmark = [pytest.mark.faults, pytest.mark.acceptance]

SEEDS = range(12)
PHASES = ("drain", "sweep", "dispatch")
MENTORS = 2000
CONCURRENCY = 8
DAEMON: dict[str, Any] = {
    "instance_id": "kill9",  # a restart on the same host resumes its own sweep claim
    "push_provider": "webhook",
    "push_concurrency": CONCURRENCY,
    "push_batch_size": 20,
    "push_rate_per_second": 10_000,
    "push_timeout_seconds": 1,  # an in-flight push of a killed process is retaken after 2 × 1 + 5 s
    "push_lease_seconds": 2,
    "push_backoff_base_seconds": 0.1,
    "push_backoff_max_seconds": 0.5,
    "poll_interval_seconds": 0.2,
    "dispatch_poll_interval_seconds": 0.2,
    "drain_batch_size": 25,
    "sweep_interval_seconds": 2,
    "sweep_batch_size": 100,
    "full_sweep_interval_hours": 0,  # every sweep is a full one: many batches to land in
    "sweep_lease_seconds": 3,
    "leader_retry_seconds": 0.2,
}
# Upper end of the random delay after a phase is seen under way (drain batches are short).
MAX_DELAY = {"drain": 0.05, "sweep": 0.4, "dispatch": 0.05}


def in_phase(pool: Any, gw: FaultGateway, phase: str) -> Any:
    async def check() -> bool:
        if phase == "dispatch":
            return bool(gw.open_requests)
        if phase == "sweep":
            return bool(
                await pool.fetchval(
                    "SELECT EXISTS (SELECT 1 FROM scenario_engine.scenario_sweep "
                    "WHERE finished_at IS NULL AND lease_until > now())"
                )
            )
        return bool(  # a drain transaction holds FOR UPDATE row locks on its claimed batch
            await pool.fetchval(
                "SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                "WHERE l.relation = 'scenario_engine.scenario_event'::regclass "
                "AND l.mode = 'RowShareLock' AND a.application_name = 'scenario-engine')"
            )
        )

    return check


async def test_kill_9_at_random_moments_loses_nothing_and_repeats_a_bounded_few(
    db_url: str, pool: Any, tmp_path: Path, rules_path: Path, fault_rules: Rules, figures: Figures
) -> None:
    gw = FaultGateway(delay=0.03)
    await gw.start()
    settings = {**DAEMON, "rules_file": rules_path, "push_webhook_url": gw.url}
    mentors = await add_population(pool, MENTORS)
    stop = anyio.Event()
    bursts = [0]
    kills = 0
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: writer(pool, mentors, stop, seed=99, counter=bursts))
            for seed in SEEDS:
                rng = random.Random(seed)
                phase = PHASES[seed % len(PHASES)]
                d = DaemonProcess(db_url, tmp_path, f"kill-{seed}", **settings).start()
                try:
                    await d.wait_ready(timeout=30)
                    await eventually(in_phase(pool, gw, phase), 30, f"seed {seed}: {phase} under way", d)
                    await anyio.sleep(rng.uniform(0, MAX_DELAY[phase]))
                    assert alive(d), d.logs()[-3000:]
                finally:
                    d.kill()
                kills += 1
                figures.fault(f"kill -9 during {phase}")
            stop.set()
        final = DaemonProcess(db_url, tmp_path, "kill-final", **settings).start()
        try:
            await final.wait_ready(timeout=30)
            await eventually(lambda: caught_up(pool), 120, "caught up after the kills", final)
            assert await final.stop() == 0, final.logs()[-3000:]
        finally:
            final.kill()
        await anyio.sleep(0.2)  # answers to the killed senders' last requests land
    finally:
        await gw.stop()

    ledger = await read_ledger(pool, gw, fault_rules)
    record(figures, ledger)
    figures.duplicate_bound = CONCURRENCY * kills
    figures.notes = {"mentors": MENTORS, "writer_transactions": bursts[0], "seeds": len(SEEDS)}
    print(f"\n{kills} kills: {ledger}")
    assert_ledger(ledger)
    # The gateway was healthy: every push was delivered, or withdrawn by the send-time
    # re-check (the writer's new activity ended an inactivity spell) with its reason.
    assert set(ledger.statuses) <= {"sent", "cancelled", "abandoned"}, ledger.statuses
    assert ledger.notifications > MENTORS  # the sweep's reminders and the writer's events
    assert bursts[0] > 0
    assert ledger.duplicates <= CONCURRENCY * kills
