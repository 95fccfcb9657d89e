"""The ``latency`` part: a paced single-row writer; insert → processed per event."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg

from bench.events.db import INSERT_ONE, KINDS, batch_sizes, event_stats, fresh_db, mentor_ids, side_effects
from bench.harness.cluster import LocalCluster, cluster_cpu, cpu_delta
from bench.harness.daemon import DaemonProc, histogram, histogram_diff, histogram_quantile
from bench.harness.procfs import load_average
from bench.harness.report import log, ms

# --- latency ------------------------------------------------------------------------------------


async def paced_writer(
    url: str,
    mentors: list[uuid.UUID],
    rate: float,
    seconds: float,
    slot: int,
    slots: int,
    out: dict[str, Any],
) -> None:
    """Inserts i = slot, slot + slots, … at t0 + i / rate, one row and one transaction each."""
    conn = await asyncpg.connect(url)
    rnd = random.Random(slot)
    late = 0
    try:
        stmt = await conn.prepare(INSERT_ONE)
        t0 = out["t0"]
        total = int(rate * seconds)
        for i in range(slot, total, slots):
            due = t0 + i / rate
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            elif wait < -0.005:
                late += 1
            await stmt.fetch(rnd.choice(mentors), rnd.choice(KINDS))
            out["sent"] += 1
    finally:
        out["late"] += late
        await conn.close()


async def _wait_processed(monitor: asyncpg.Connection[Any], limit_s: float = 30) -> None:
    deadline = time.perf_counter() + limit_s
    while time.perf_counter() < deadline:
        pending = await monitor.fetchval(
            "SELECT count(*) FROM scenario_engine.scenario_event "
            "WHERE processed_at IS NULL AND dead_at IS NULL"
        )
        if pending == 0:
            return
        await asyncio.sleep(0.1)


async def _paced_run(
    cluster: LocalCluster, url: str, daemon: DaemonProc, args: argparse.Namespace
) -> tuple[dict[str, Any], float, tuple[float, dict[int, float]], tuple[float, dict[int, float]]]:
    """Two paced writer connections for ``--seconds``: (their counters, seconds, CPU before, after)."""
    mentors = mentor_ids(args.mentors)
    cpu0 = (daemon.cpu_seconds() or 0.0, cluster_cpu(cluster))
    out: dict[str, Any] = {"t0": time.perf_counter() + 0.05, "sent": 0, "late": 0}
    slots = 2
    await asyncio.gather(
        *(paced_writer(url, mentors, args.rate, args.seconds, s, slots, out) for s in range(slots))
    )
    writer_s = time.perf_counter() - out["t0"]
    cpu1 = (daemon.cpu_seconds() or 0.0, cluster_cpu(cluster))
    return out, writer_s, cpu0, cpu1


async def _measure_latency(
    cluster: LocalCluster,
    url: str,
    monitor: asyncpg.Connection[Any],
    daemon: DaemonProc,
    args: argparse.Namespace,
) -> dict[str, Any]:
    hist0 = histogram(await daemon.metrics(), "scenario_event_drain_latency_seconds")
    start_db = await monitor.fetchval("SELECT clock_timestamp()")
    out, writer_s, cpu0, cpu1 = await _paced_run(cluster, url, daemon, args)
    load = load_average()
    await _wait_processed(monitor)
    await asyncio.sleep(0.2)
    hist1 = histogram(await daemon.metrics(), "scenario_event_drain_latency_seconds")
    end_db = await monitor.fetchval("SELECT clock_timestamp()")
    hist = histogram_diff(hist0, hist1)
    return {
        "load_during": load,
        "writer": {
            "target_rate_per_s": args.rate,
            "rows": out["sent"],
            "seconds": round(writer_s, 2),
            "achieved_rate_per_s": round(out["sent"] / writer_s),
            "inserts_late_over_5ms": out["late"],
        },
        # skip the first second (connections warming up, first batch after idle)
        "events_after_first_second": await event_stats(monitor, start_db + dt.timedelta(seconds=1), end_db),
        "events_all": await event_stats(monitor, start_db, end_db),
        "daemon_histogram": hist,
        "daemon_histogram_quantiles_ms": {
            q: ms(histogram_quantile(hist, float(q))) for q in ("0.5", "0.95", "0.99")
        },
        "daemon_cpu_s": round(cpu1[0] - cpu0[0], 2),
        "daemon_cpu_share_of_one_core": round((cpu1[0] - cpu0[0]) / writer_s, 3),
        "cluster_cpu_s": cpu_delta(cpu0[1], cpu1[1]),
        "drain_batches": await batch_sizes(monitor, start_db),
        "side_effects": await side_effects(monitor, start_db),
        "log_errors": daemon.log_errors(),
    }


async def run_latency(
    cluster: LocalCluster,
    args: argparse.Namespace,
    workdir: Path,
    label: str,
    notify_mode: str,
    **settings: object,
) -> dict[str, Any]:
    """One latency run on a fresh clone: a paced writer, insert → processed per event."""
    url = await fresh_db(cluster, notify_mode)
    monitor = await asyncpg.connect(url)
    daemon = DaemonProc(url, workdir, name=label, **settings).start()
    result: dict[str, Any] = {"label": label, "notify_mode": notify_mode, "settings": daemon.settings}
    try:
        result["ready_s"] = round(await daemon.wait_ready(), 3)
        await asyncio.sleep(1.0)
        result["load_before"] = load_average()
        result.update(await _measure_latency(cluster, url, monitor, daemon, args))
    finally:
        await monitor.close()
        await daemon.stop()
    lat = result["events_after_first_second"]["latency_ms"]
    log(
        f"{label}: {result['writer']['achieved_rate_per_s']}/s paced; latency p50 {lat['p50']} ms, "
        f"p95 {lat['p95']}, p99 {lat['p99']}, max {lat['max']}; daemon histogram "
        f"{result['daemon_histogram_quantiles_ms']}; batches {result['drain_batches']}; "
        f"daemon CPU {result['daemon_cpu_share_of_one_core']} core; load {result['load_during']}"
    )
    return result
