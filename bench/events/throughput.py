"""The ``throughput`` part: writers at full speed (or paced) while one or more daemons drain."""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg

from bench.events.db import (
    INSERT_MANY,
    KINDS,
    batch_sizes,
    event_stats,
    fresh_db,
    mentor_ids,
    per_second,
    side_effects,
)
from bench.harness.cluster import LocalCluster, cluster_cpu, cpu_delta
from bench.harness.daemon import DaemonProc, metric_value
from bench.harness.procfs import load_average
from bench.harness.report import log

# --- diagnostics: py-spy on the daemon, pg_stat_statements ------------------------------------


def start_profiler(pid: int, seconds: float, out: Path) -> Any:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        return None
    return subprocess.Popen(
        [
            spy,
            "record",
            "-p",
            str(pid),
            "-d",
            str(int(seconds)),
            "-r",
            "200",
            "-f",
            "raw",
            "--nonblocking",
            "-o",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def summarize_profile(raw: Path, top: int = 25) -> dict[str, Any]:
    """Own and inclusive sample shares per function from py-spy's collapsed stacks."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [
            re.sub(r" \(/.*?/(site-packages|daemon|lib/python3\.\d+)/", " (", f) for f in stack.split(";")
        ]
        frames = [re.sub(r":\d+\)$", ")", f) for f in frames]
        own[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    if not total:
        return {"samples": 0}
    return {
        "samples": total,
        "own": [(f, round(100 * n / total, 1)) for f, n in own.most_common(top)],
        "inclusive": [(f, round(100 * n / total, 1)) for f, n in incl.most_common(top)],
    }


async def pgss_reset(conn: asyncpg.Connection[Any]) -> None:
    await conn.execute("SELECT pg_stat_statements_reset()")


async def pgss_top(conn: asyncpg.Connection[Any], top: int = 15) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """
        SELECT left(regexp_replace(query, '\\s+', ' ', 'g'), 160) AS query, calls,
               round(total_exec_time::numeric, 1) AS total_ms, round(mean_exec_time::numeric, 3) AS mean_ms,
               rows
        FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
        ORDER BY total_exec_time DESC LIMIT $1
        """,
        top,
    )
    return [dict(r) for r in rows]


# --- throughput ---------------------------------------------------------------------------------


async def full_speed_writer(
    conn: asyncpg.Connection[Any],
    mentors: list[uuid.UUID],
    rows: int,
    seconds: float,
    counter: list[int],
    seed: int,
    rate: float = 0.0,
) -> None:
    """Multi-row INSERTs of ``rows`` activities, back to back (or ``rate`` rows/s if set)."""
    rnd = random.Random(seed)
    stmt = await conn.prepare(INSERT_MANY)
    t0 = time.perf_counter()
    deadline = t0 + seconds
    i = 0
    while time.perf_counter() < deadline:
        if rate > 0:
            wait = t0 + i * rows / rate - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
        ids = rnd.choices(mentors, k=rows)
        kinds = rnd.choices(KINDS, k=rows)
        await stmt.fetch(ids, kinds)
        counter[0] += rows
        i += 1


class Fleet:
    """One or more daemon processes on the same database (the bar is about one)."""

    def __init__(self, daemons: list[DaemonProc]):
        self.daemons = daemons

    async def processed(self) -> float:
        return sum([metric_value(await d.metrics(), "scenario_events_processed_total") for d in self.daemons])

    def cpu(self) -> float:
        return sum(d.cpu_seconds() or 0.0 for d in self.daemons)

    def rss(self) -> list[float | None]:
        return [d.rss_mb() for d in self.daemons]

    def errors(self) -> list[str]:
        return [e for d in self.daemons for e in d.log_errors()]

    async def stop(self) -> None:
        for d in self.daemons:
            await d.stop()


CpuSnapshot = tuple[float, dict[int, float], float]  # daemons, cluster processes, this process


def _cpu(fleet: Fleet, cluster: LocalCluster) -> CpuSnapshot:
    return fleet.cpu(), cluster_cpu(cluster), time.process_time()


async def _write_and_sample(
    fleet: Fleet,
    conns: list[asyncpg.Connection[Any]],
    args: argparse.Namespace,
    writer_rate: float,
    base: float,
) -> tuple[int, float, list[dict[str, Any]]]:
    """The writers for ``--seconds``, sampling the backlog every second: (rows, seconds, samples)."""
    mentors = mentor_ids(args.mentors)
    counter = [0]
    per_conn_rate = writer_rate / args.writers if writer_rate else 0.0
    t0 = time.perf_counter()
    writers = [
        asyncio.create_task(
            full_speed_writer(
                c, mentors, args.rows_per_insert, args.seconds, counter, seed=i, rate=per_conn_rate
            )
        )
        for i, c in enumerate(conns)
    ]
    samples = []
    while not all(w.done() for w in writers):
        await asyncio.sleep(1.0)
        processed = int(await fleet.processed() - base)
        samples.append(
            {
                "t": round(time.perf_counter() - t0, 2),
                "inserted": counter[0],
                "processed": processed,
                "backlog": counter[0] - processed,
                "daemon_rss_mb": fleet.rss(),
            }
        )
    await asyncio.gather(*writers)
    writer_s = time.perf_counter() - t0
    for c in conns:
        await c.close()
    return counter[0], writer_s, samples


async def _wait_drained(fleet: Fleet, base: float, inserted: int, limit_s: float) -> tuple[bool, float]:
    """Until the daemons have processed every inserted row: (drained, seconds waited)."""
    t_stop = time.perf_counter()
    while time.perf_counter() - t_stop < limit_s:
        if await fleet.processed() - base >= inserted:
            return True, time.perf_counter() - t_stop
        await asyncio.sleep(0.1)
    return False, time.perf_counter() - t_stop


def _daemon_report(
    fleet: Fleet,
    m: dict[str, Any],
    steady: list[int],
    total_s: float | None,
    cpu: tuple[CpuSnapshot, CpuSnapshot, CpuSnapshot],
) -> dict[str, Any]:
    inserted, at_stop, writer_s, drain_s = m["inserted"], m["processed_at_stop"], m["writer_s"], m["drain_s"]
    return {
        "processed_during_writer": int(at_stop),
        "rate_during_writer_per_s": round(at_stop / writer_s),
        "steady_rate_per_s_median": round(statistics.median(steady)) if steady else None,
        "steady_rate_per_s_mean": round(statistics.mean(steady)) if steady else None,
        "backlog_at_writer_stop": inserted - int(at_stop),
        "backlog_max": max((x["backlog"] for x in m["samples"]), default=0),
        "drained": m["drained"],
        "drain_after_stop_s": round(drain_s, 2),
        "end_to_end_rate_per_s": round(inserted / total_s) if total_s else None,
        "drain_only_rate_per_s": (
            round((inserted - at_stop) / drain_s) if m["drained"] and drain_s > 0.5 else None
        ),
        "cpu_during_writer_s": round(cpu[1][0] - cpu[0][0], 2),
        "cpu_during_drain_s": round(cpu[2][0] - cpu[1][0], 2),
        "rss_mb": fleet.rss(),
        "log_errors": fleet.errors(),
    }


async def _throughput_report(
    monitor: asyncpg.Connection[Any],
    fleet: Fleet,
    args: argparse.Namespace,
    m: dict[str, Any],
    cpu: tuple[CpuSnapshot, CpuSnapshot, CpuSnapshot],
) -> dict[str, Any]:
    """What the database says about the events of the run, with the measurements ``m``."""
    stats = await event_stats(monitor, m["start_db"], m["end_db"])
    created = await per_second(monitor, "created_at", m["start_db"])
    done = await per_second(monitor, "processed_at", m["start_db"])
    steady = [n for s, n in done if 3 <= s < m["writer_s"] - 1]
    total_s = (stats["last_processed"] - stats["first_created"]).total_seconds() if m["drained"] else None
    return {
        "writer": {
            "connections": args.writers,
            "rows_per_insert": args.rows_per_insert,
            "seconds": round(m["writer_s"], 2),
            "rows": m["inserted"],
            "rate_per_s": round(m["inserted"] / m["writer_s"]),
            "cpu_s": round(cpu[1][2] - cpu[0][2], 2),
        },
        "daemon": _daemon_report(fleet, m, steady, total_s, cpu),
        "cluster_cpu_during_writer_s": cpu_delta(cpu[0][1], cpu[1][1]),
        "cluster_cpu_during_drain_s": cpu_delta(cpu[1][1], cpu[2][1]),
        "events": stats,
        "created_per_second": created,
        "processed_per_second": done,
        "samples": m["samples"],
        "drain_batches": await batch_sizes(monitor, m["start_db"]),
        "side_effects": await side_effects(monitor, m["start_db"]),
    }


async def _measure_throughput(
    cluster: LocalCluster,
    url: str,
    monitor: asyncpg.Connection[Any],
    fleet: Fleet,
    args: argparse.Namespace,
    workdir: Path,
    label: str,
    writer_rate: float,
    result: dict[str, Any],
) -> None:
    """Writers at full speed (or paced), then the drain of the backlog; into ``result``."""
    conns = [await asyncpg.connect(url) for _ in range(args.writers)]
    m: dict[str, Any] = {"start_db": await monitor.fetchval("SELECT clock_timestamp()")}
    base = await fleet.processed()
    if args.pgss:
        await pgss_reset(monitor)
    spy = (
        start_profiler(fleet.daemons[0].pid, args.seconds, workdir / f"profile-{label}.raw")
        if args.profile
        else None
    )
    cpu0 = _cpu(fleet, cluster)
    m["inserted"], m["writer_s"], m["samples"] = await _write_and_sample(
        fleet, conns, args, writer_rate, base
    )
    cpu1 = _cpu(fleet, cluster)
    m["processed_at_stop"] = await fleet.processed() - base
    result["load_during"] = load_average()
    log(
        f"{label}: writer {m['inserted']} rows in {m['writer_s']:.1f} s "
        f"({m['inserted'] / m['writer_s']:,.0f}/s), "
        f"processed {m['processed_at_stop']:,.0f} by then; draining …"
    )
    m["drained"], m["drain_s"] = await _wait_drained(fleet, base, m["inserted"], args.drain_timeout)
    cpu2 = _cpu(fleet, cluster)
    m["end_db"] = await monitor.fetchval("SELECT clock_timestamp()")
    if args.pgss:
        result["pg_stat_statements"] = await pgss_top(monitor)
    if spy is not None:
        await asyncio.to_thread(spy.wait)
        result["daemon_profile_during_writer"] = summarize_profile(workdir / f"profile-{label}.raw")
    result.update(await _throughput_report(monitor, fleet, args, m, (cpu0, cpu1, cpu2)))


async def run_throughput(
    cluster: LocalCluster,
    args: argparse.Namespace,
    workdir: Path,
    label: str,
    notify_mode: str,
    daemons: int = 1,
    writer_rate: float = 0.0,
    code: Path | None = None,
    **settings: object,
) -> dict[str, Any]:
    """One throughput run on a fresh clone: ``daemons`` daemon processes (of the package in
    ``code`` if given: bench.harness.daemon.DaemonProc), the writers."""
    url = await fresh_db(cluster, notify_mode)
    monitor = await asyncpg.connect(url)
    fleet = Fleet(
        [DaemonProc(url, workdir, name=f"{label}-{i}", code=code, **settings).start() for i in range(daemons)]
    )
    result: dict[str, Any] = {
        "label": label,
        "notify_mode": notify_mode,
        "daemons": daemons,
        "settings": fleet.daemons[0].settings,
        "writer_target_rate_per_s": writer_rate or "full speed",
        "daemon_code": str(code) if code else "this worktree",
    }
    try:
        result["ready_s"] = [round(await d.wait_ready(), 3) for d in fleet.daemons]
        await asyncio.sleep(1.0)
        result["load_before"] = load_average()
        await _measure_throughput(cluster, url, monitor, fleet, args, workdir, label, writer_rate, result)
    finally:
        await monitor.close()
        await fleet.stop()
    d = result["daemon"]
    log(
        f"{label}: writer {result['writer']['rate_per_s']:,}/s; "
        f"daemon steady {d['steady_rate_per_s_median']}/s, "
        f"end-to-end {d['end_to_end_rate_per_s']}/s, backlog at stop {d['backlog_at_writer_stop']:,} "
        f"(max {d['backlog_max']:,}), drained in {d['drain_after_stop_s']} s "
        f"(drain-only {d['drain_only_rate_per_s']}/s); batches {result['drain_batches']}; "
        f"load {result['load_during']}"
    )
    return result
