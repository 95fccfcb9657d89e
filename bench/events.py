"""Events benchmark (DESIGN.md §6): activity insert → trigger → scenario_event → daemon drain.

    .venv/bin/python -m bench.events                       # everything (about 10 minutes)
    .venv/bin/python -m bench.events --parts latency       # one part: throughput, latency, inserts

Setup: a private cluster, a database with ``--mentors`` mentors (``bench.population``: 10
activities and 1 certification per mentor on average, as of now), on which one daemon ran its
first sweep (the pushes it enqueued are cancelled so that the dispatcher is idle at the start).
That database is the template: every measurement runs on a fresh clone of it, against a fresh
``scenario-engine run`` process (the real CLI, ``SCENARIO_*`` environment, the default rules
from a rules file, log push provider, sweep period far in the future: only the event path works).

Parts:

* ``throughput`` — a writer (``--writers`` asyncpg connections, multi-row INSERTs of
  ``--rows-per-insert`` activities for random mentors) inserts at full speed for
  ``--seconds`` while the daemon drains. Reported: insert rate, the daemon's processed rate
  (per second, from ``scenario_event.processed_at``), the backlog over time, the time to drain
  it after the writer stopped, CPU of the daemon / the cluster / the writer. For each
  ``--batch-sizes`` in NOTIFY mode, and in poll-only mode (``--poll-intervals``).
* ``latency`` — a paced writer inserts single-row activities at ``--rate``/s; latency is
  ``processed_at − created_at`` of each event (both clock_timestamp() in the server), and the
  daemon's own ``scenario_event_drain_latency_seconds`` histogram. NOTIFY mode and poll mode.
* ``inserts`` — the raw cost of the triggers: pgbench inserting into ``activity`` (4 clients,
  one row per transaction, and 50 rows per statement) with the triggers in notify mode (with a
  LISTENing connection, as in production), in poll mode, and with ``DISABLE TRIGGER USER``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import hashlib
import json
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

from bench.harness.cluster import (
    RUNTIME_PG_SETTINGS,
    LocalCluster,
    cluster_cpu,
    cpu_delta,
    create_database,
    leftover_postgres,
    private_cluster,
    server_version,
)
from bench.harness.daemon import DaemonProc, histogram, histogram_diff, histogram_quantile, metric_value
from bench.harness.engine import query
from bench.harness.population import Shape, generate
from bench.harness.procfs import load_average
from bench.harness.report import (
    RESULTS_DIR,
    Timings,
    log,
    machine_facts,
    ms,
    run_header,
    scratch_dir,
    write_json,
)

TEMPLATE_DB = "bench_events_tpl"
RUN_DB = "bench_events_run"
THROUGHPUT_BAR = 10_000.0
P50_BAR_MS = 10.0
P99_BAR_MS = 50.0
KINDS = ("session",) * 11 + ("contact",) * 6 + ("training",) * 2 + ("other",)

INSERT_MANY = """
INSERT INTO activity (mentor_id, kind, occurred_at, duration_minutes, contacts)
SELECT m, k, clock_timestamp(), 45, CASE WHEN k IN ('session', 'contact') THEN 1 ELSE 0 END
FROM unnest($1::uuid[], $2::text[]) AS t(m, k)
"""
INSERT_ONE = """
INSERT INTO activity (mentor_id, kind, occurred_at, duration_minutes, contacts)
VALUES ($1::uuid, $2::text, clock_timestamp(), 45, 1)
"""


def mentor_ids(n: int) -> list[uuid.UUID]:
    """The ids bench.population gives its mentors: md5('bench-mentor-' || idx)::uuid."""
    return [uuid.UUID(hashlib.md5(f"bench-mentor-{i}".encode()).hexdigest()) for i in range(1, n + 1)]


# --- setup ------------------------------------------------------------------------------------


async def prepare_template(cluster: LocalCluster, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    timings = Timings()
    url = await create_database(cluster, TEMPLATE_DB)
    conn = await asyncpg.connect(url)
    try:
        if args.pgss:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        shape = Shape(
            mentors=args.mentors, activities_per_mentor=10.0, certifications=args.mentors, as_of=now
        )
        data = await generate(conn, shape, timings)
    finally:
        await conn.close()
    daemon = DaemonProc(url, workdir, name="first-sweep").start()
    try:
        await daemon.wait_ready()
        with timings.step("first sweep (daemon)"):
            sweep = await daemon.wait_first_sweep()
    finally:
        await daemon.stop()
    conn = await asyncpg.connect(url)
    try:
        cancelled = await conn.execute(
            "UPDATE scenario_engine.push_notification "
            "SET status = 'cancelled', cancel_reason = 'bench setup' "
            "WHERE status IN ('pending', 'sending')"
        )
        await conn.execute("DELETE FROM scenario_engine.scenario_engine_instance")
        await conn.execute("VACUUM (ANALYZE)")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()
    return {
        "data": data,
        "first_sweep": sweep,
        "setup_pushes_cancelled": cancelled,
        "timings": timings.steps,
    }


async def fresh_db(cluster: LocalCluster, notify_mode: str) -> str:
    url = await create_database(cluster, RUN_DB, template=TEMPLATE_DB)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "UPDATE scenario_engine.scenario_engine_setting SET value = $1 WHERE key = 'notify_mode'",
            notify_mode,
        )
    finally:
        await conn.close()
    return url


# --- measurements from the database -------------------------------------------------------


async def event_stats(conn: asyncpg.Connection[Any], t0: dt.datetime, t1: dt.datetime) -> dict[str, Any]:
    """Per-second created / processed counts and latency percentiles of events created in [t0, t1]."""
    row = await conn.fetchrow(
        """
        SELECT count(*) AS n,
               count(*) FILTER (WHERE processed_at IS NOT NULL) AS processed,
               count(*) FILTER (WHERE dead_at IS NOT NULL) AS dead,
               min(created_at) AS first_created, max(created_at) AS last_created,
               min(processed_at) AS first_processed, max(processed_at) AS last_processed,
               percentile_cont(ARRAY[0.5, 0.95, 0.99])
                   WITHIN GROUP (ORDER BY extract(epoch FROM processed_at - created_at)::float8) AS pct,
               max(extract(epoch FROM processed_at - created_at)) AS max_latency,
               avg(extract(epoch FROM processed_at - created_at)) AS mean_latency
        FROM scenario_engine.scenario_event
        WHERE created_at BETWEEN $1 AND $2
        """,
        t0,
        t1,
    )
    assert row is not None
    pct = row["pct"] or [None, None, None]
    return {
        "events": row["n"],
        "processed": row["processed"],
        "dead": row["dead"],
        "first_created": row["first_created"],
        "last_created": row["last_created"],
        "first_processed": row["first_processed"],
        "last_processed": row["last_processed"],
        "latency_ms": {
            "p50": ms(pct[0]),
            "p95": ms(pct[1]),
            "p99": ms(pct[2]),
            "max": ms(row["max_latency"]),
            "mean": ms(row["mean_latency"]),
        },
    }


async def per_second(
    conn: asyncpg.Connection[Any], column: str, since: dt.datetime
) -> list[tuple[float, int]]:
    rows = await conn.fetch(
        f"""
        SELECT extract(epoch FROM date_trunc('second', {column}) - date_trunc('second', $1::timestamptz))
                   AS s, count(*) AS n
        FROM scenario_engine.scenario_event WHERE {column} >= $1 GROUP BY 1 ORDER BY 1
        """,
        since,
    )
    return [(float(r["s"]), r["n"]) for r in rows]


async def batch_sizes(conn: asyncpg.Connection[Any], since: dt.datetime) -> dict[str, Any]:
    """Events per drain transaction: the rows one mark_events_processed UPDATE wrote share its xmin."""
    row = await conn.fetchrow(
        """
        SELECT count(*) AS batches, avg(n) AS mean, percentile_cont(0.5) WITHIN GROUP (ORDER BY n) AS p50,
               max(n) AS max
        FROM (SELECT xmin::text, count(*) AS n FROM scenario_engine.scenario_event
              WHERE processed_at >= $1 GROUP BY 1) b
        """,
        since,
    )
    assert row is not None
    return {
        "batches": row["batches"],
        "mean": round(float(row["mean"] or 0), 1),
        "p50": row["p50"],
        "max": row["max"],
    }


async def side_effects(conn: asyncpg.Connection[Any], since: dt.datetime) -> dict[str, Any]:
    notes = await conn.fetch(
        "SELECT scenario_type, count(*) AS n FROM scenario_engine.scenario_notification "
        "WHERE created_at >= $1 GROUP BY 1",
        since,
    )
    decisions = await conn.fetch(
        "SELECT outcome, count(*) AS n FROM scenario_engine.scenario_decision "
        "WHERE created_at >= $1 GROUP BY 1",
        since,
    )
    return {
        "notifications": {r["scenario_type"]: r["n"] for r in notes},
        "decisions": {r["outcome"]: r["n"] for r in decisions},
        "pushes_enqueued": await conn.fetchval(
            "SELECT count(*) FROM scenario_engine.push_notification WHERE created_at >= $1", since
        ),
    }


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
    **settings: object,
) -> dict[str, Any]:
    """One throughput run on a fresh clone: ``daemons`` daemon processes, the writers."""
    url = await fresh_db(cluster, notify_mode)
    monitor = await asyncpg.connect(url)
    fleet = Fleet([DaemonProc(url, workdir, name=f"{label}-{i}", **settings).start() for i in range(daemons)])
    result: dict[str, Any] = {
        "label": label,
        "notify_mode": notify_mode,
        "daemons": daemons,
        "settings": fleet.daemons[0].settings,
        "writer_target_rate_per_s": writer_rate or "full speed",
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


# --- raw insert cost (pgbench) -----------------------------------------------------------------


PGBENCH_ONE = """\\set i random(1, {mentors})
INSERT INTO activity (mentor_id, kind, occurred_at, duration_minutes, contacts)
VALUES (md5('bench-mentor-' || :i)::uuid, 'session', clock_timestamp(), 45, 1);
"""
PGBENCH_MANY = """INSERT INTO activity (mentor_id, kind, occurred_at, duration_minutes, contacts)
SELECT md5('bench-mentor-' || (1 + floor(random() * {mentors}))::int)::uuid,
       'session', clock_timestamp(), 45, 1
FROM generate_series(1, 50);
"""


def _counting(box: list[int]) -> Any:
    def on_notify(*_args: object) -> None:
        box[0] += 1

    return on_notify


async def pgbench(cluster: LocalCluster, script: Path, seconds: int, clients: int) -> dict[str, Any]:
    cmd = [
        str(cluster.bin_dir / "pgbench"),
        "-n",
        "-h",
        "127.0.0.1",
        "-p",
        str(cluster.port),
        "-U",
        "postgres",
        "-c",
        str(clients),
        "-j",
        "2",
        "-T",
        str(seconds),
        "-f",
        str(script),
        RUN_DB,
    ]
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    raw, _ = await proc.communicate()
    text = raw.decode(errors="replace")
    tps = re.search(r"tps = ([\d.]+)", text)
    lat = re.search(r"latency average = ([\d.]+) ms", text)
    if proc.returncode != 0 or tps is None:
        raise RuntimeError(f"pgbench failed: {text[-2000:]}")
    return {"tps": float(tps.group(1)), "latency_avg_ms": float(lat.group(1)) if lat else None}


STATEMENT_TRIGGER = """
CREATE FUNCTION bench_capture_insert_stmt() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_n    bigint;
    v_mode text;
BEGIN
    IF current_setting('scenario_engine.origin', true) = 'engine' THEN
        RETURN NULL;
    END IF;
    INSERT INTO scenario_engine.scenario_event (table_name, operation, mentor_id, row_id)
    SELECT TG_TABLE_NAME, TG_OP, n.mentor_id, n.id::text FROM new_rows n;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    SELECT value INTO v_mode FROM scenario_engine.scenario_engine_setting WHERE key = 'notify_mode';
    IF v_n > 0 AND coalesce(v_mode, 'notify') = 'notify' AND pg_notification_queue_usage() < 0.5 THEN
        PERFORM pg_notify('scenario_events', json_build_object(
            'event_id', currval(pg_get_serial_sequence('scenario_engine.scenario_event', 'id')),
            'table', TG_TABLE_NAME, 'op', TG_OP, 'rows', v_n)::text);
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER bench_activity_insert_stmt AFTER INSERT ON activity
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION bench_capture_insert_stmt();
"""
INSERT_MODES: dict[str, tuple[str, list[str]]] = {
    # mode: (notify_mode setting, trigger statements)
    "notify": (
        "notify",
        [
            "ALTER TABLE activity ENABLE TRIGGER activity_scenario_event_v1",
            "ALTER TABLE activity DISABLE TRIGGER bench_activity_insert_stmt",
        ],
    ),
    "poll": (
        "poll",
        [
            "ALTER TABLE activity ENABLE TRIGGER activity_scenario_event_v1",
            "ALTER TABLE activity DISABLE TRIGGER bench_activity_insert_stmt",
        ],
    ),
    "disabled": ("notify", ["ALTER TABLE activity DISABLE TRIGGER USER"]),
    # a proposal, not the engine's trigger: one event INSERT … SELECT and one NOTIFY per statement
    "statement_notify": (
        "notify",
        [
            "ALTER TABLE activity DISABLE TRIGGER activity_scenario_event_v1",
            "ALTER TABLE activity ENABLE TRIGGER bench_activity_insert_stmt",
        ],
    ),
}


def paired_ratios(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Per round, each mode's rate over the disabled rate of the same round (they ran back to
    back), then the median over the rounds: robust to load that changes between rounds."""
    base = {(r["round"], r["script"]): r["rows_per_s"] for r in runs if r["mode"] == "disabled"}
    ratios: dict[str, list[float]] = {}
    for r in runs:
        ratios.setdefault(f"{r['mode']}/{r['script']}", []).append(
            r["rows_per_s"] / base[(r["round"], r["script"])]
        )
    return {k: round(statistics.median(v), 2) for k, v in ratios.items()}


def _pgbench_scripts(workdir: Path, mentors: int) -> dict[str, tuple[Path, int]]:
    """name → (pgbench script, rows per transaction)."""
    scripts = {}
    for name, text, rows in (("one_row", PGBENCH_ONE, 1), ("fifty_rows", PGBENCH_MANY, 50)):
        path = workdir / f"pgbench-{name}.sql"
        path.write_text(text.format(mentors=mentors), encoding="utf-8")
        path.chmod(0o644)
        scripts[name] = (path, rows)
    return scripts


async def _trigger_mode(conn: asyncpg.Connection[Any], mode: str) -> None:
    setting, statements = INSERT_MODES[mode]
    await conn.execute("ALTER TABLE activity ENABLE TRIGGER USER")
    for sql in statements:
        await conn.execute(sql)
    await conn.execute(
        "UPDATE scenario_engine.scenario_engine_setting SET value = $1 WHERE key = 'notify_mode'", setting
    )


async def _pgbench_run(
    cluster: LocalCluster,
    conn: asyncpg.Connection[Any],
    script: Path,
    rows: int,
    seconds: int,
    received: list[int],
) -> dict[str, Any]:
    """One pgbench run on an empty event table: rows/s, events written, NOTIFYs received."""
    await conn.execute("TRUNCATE scenario_engine.scenario_event")
    await conn.execute("CHECKPOINT")
    received[0] = 0
    load = load_average()
    got = await pgbench(cluster, script, seconds, 4)
    await asyncio.sleep(0.2)
    return {
        "rows_per_transaction": rows,
        **got,
        "rows_per_s": round(got["tps"] * rows),
        "events_written": await conn.fetchval("SELECT count(*) FROM scenario_engine.scenario_event"),
        "notifications_received": received[0],
        "load_before": load,
        "load_after": load_average(),
    }


def _best_rates(runs: list[dict[str, Any]]) -> tuple[dict[str, int], dict[str, float]]:
    """Best rows/s per mode and script, and each relative to triggers disabled."""
    best: dict[str, int] = {}
    for r in runs:
        key = f"{r['mode']}/{r['script']}"
        best[key] = max(best.get(key, 0), r["rows_per_s"])
    relative = {k: round(v / best[f"disabled/{k.split('/')[1]}"], 3) for k, v in best.items()}
    return best, relative


async def run_inserts(cluster: LocalCluster, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """pgbench into ``activity`` with the triggers in each mode; modes interleaved over
    ``--pgbench-rounds`` rounds on one database so that a change in machine load hits all alike."""
    scripts = _pgbench_scripts(workdir, args.mentors)
    out: dict[str, Any] = {
        "clients": 4,
        "seconds": args.pgbench_seconds,
        "rounds": args.pgbench_rounds,
        "listener": "one asyncpg connection LISTENs on scenario_events during every run",
        "runs": [],
    }
    url = await fresh_db(cluster, "notify")
    conn = await asyncpg.connect(url)
    listener = await asyncpg.connect(url)
    received = [0]
    await listener.add_listener("scenario_events", _counting(received))
    try:
        await conn.execute(STATEMENT_TRIGGER)
        for round_no in range(args.pgbench_rounds):
            for mode in INSERT_MODES:
                await _trigger_mode(conn, mode)
                for name, (path, rows) in scripts.items():
                    got = await _pgbench_run(cluster, conn, path, rows, args.pgbench_seconds, received)
                    run = {"round": round_no, "mode": mode, "script": name, **got}
                    out["runs"].append(run)
                    log(
                        f"pgbench r{round_no} {mode:<16} {name:<10} {run['rows_per_s']:>8,} rows/s "
                        f"(tps {got['tps']:.0f}, {got['latency_avg_ms']} ms), "
                        f"events {run['events_written']}, "
                        f"notifications {run['notifications_received']}, load {run['load_after']}"
                    )
    finally:
        await listener.close()
        await conn.close()
    out["relative_to_disabled_median_of_rounds"] = paired_ratios(out["runs"])
    out["best_rows_per_s"], out["relative_to_disabled"] = _best_rates(out["runs"])
    return out


# --- health-loop queries against a retained event history ----------------------------------------

BACKLOGS_PROPOSED = """
SELECT
    (SELECT count(*) FROM scenario_engine.scenario_event
     WHERE processed_at IS NULL AND dead_at IS NULL) AS events_pending,
    (SELECT count(*) FROM scenario_engine.scenario_event WHERE dead_at IS NOT NULL) AS events_dead,
    (SELECT created_at FROM scenario_engine.scenario_event WHERE processed_at IS NULL AND dead_at IS NULL
     ORDER BY id LIMIT 1) AS oldest_event
"""
DEAD_INDEX = (
    "CREATE INDEX scenario_event_dead_idx ON scenario_engine.scenario_event (id) WHERE dead_at IS NOT NULL"
)
FILL_EVENTS = """
INSERT INTO scenario_engine.scenario_event (table_name, operation, mentor_id, row_id, created_at,
                                            processed_at, attempts)
SELECT 'activity', 'INSERT', md5('bench-mentor-' || (1 + g % $2::int))::uuid, g::text, at, at, 1
FROM generate_series(1, $1::int) AS g,
     LATERAL (SELECT now() - make_interval(secs => ($1::int - g) * 0.1) AS at) t
"""


OUTBOX_PROPOSED = """
SELECT (SELECT count(*) FROM scenario_engine.push_notification
        WHERE status IN ('pending', 'sending')) AS pending,
       (SELECT min(created_at) FROM scenario_engine.push_notification
        WHERE status IN ('pending', 'sending')) AS oldest_pending,
       (SELECT count(*) FROM scenario_engine.push_notification WHERE status = 'dead') AS dead
"""
FILL_PUSHES = """
INSERT INTO scenario_engine.push_notification (mentor_id, scenario_type, title, body, idempotency_key, status,
                                               sent_at)
SELECT md5('bench-mentor-' || (1 + g % $2::int))::uuid, 'milestone', 'Milestone reached!', 'You reached 10.',
       'bench:health:' || g, CASE WHEN g <= 990 THEN 'pending' WHEN g <= 1000 THEN 'dead' ELSE 'sent' END,
       CASE WHEN g > 1000 THEN now() END
FROM generate_series(1, $1::int) AS g
"""


async def timed(conn: asyncpg.Connection[Any], sql: str, repeat: int = 5) -> float:
    """Median wall time of a statement, in ms."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        await conn.fetch(sql)
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 2)


async def _plan(conn: asyncpg.Connection[Any], sql: str) -> list[str]:
    return [r[0] for r in await conn.fetch("EXPLAIN (ANALYZE, COSTS OFF) " + sql)]


async def _retained(conn: asyncpg.Connection[Any], size: int, have: int, mentors: int) -> dict[str, Any]:
    """Grow the processed history to ``size`` rows, with a small pending backlog and a few
    dead letters on top; time ``backlogs`` as it is and as proposed."""
    await conn.execute(FILL_EVENTS, size - have, mentors)
    for sql in (
        "UPDATE scenario_engine.scenario_event SET processed_at = now() "
        "WHERE processed_at IS NULL AND dead_at IS NULL",
        "UPDATE scenario_engine.scenario_event SET processed_at = NULL "
        "WHERE id > (SELECT max(id) - 1000 FROM scenario_engine.scenario_event)",
        "UPDATE scenario_engine.scenario_event SET processed_at = NULL, dead_at = now() "
        "WHERE id <= 10 AND dead_at IS NULL",
    ):
        await conn.execute(sql)
    await conn.execute("VACUUM (ANALYZE) scenario_engine.scenario_event")
    row: dict[str, Any] = {
        "rows": size,
        "table_size": await conn.fetchval(
            "SELECT pg_size_pretty(pg_total_relation_size('scenario_engine.scenario_event'))"
        ),
        "backlogs_ms": await timed(conn, query("backlogs")),
        "load": load_average(),
    }
    if await conn.fetchval("SELECT to_regclass('scenario_engine.scenario_event_dead_idx') IS NOT NULL"):
        # the engine ships the proposal (index and query): time its query without the index
        tx = conn.transaction()
        await tx.start()
        try:
            await conn.execute("DROP INDEX scenario_engine.scenario_event_dead_idx")
            row["without_dead_index_ms"] = await timed(conn, query("backlogs"))
            row["without_dead_index_plan"] = await _plan(conn, query("backlogs"))
        finally:
            await tx.rollback()
    else:
        await conn.execute(DEAD_INDEX)
        row["proposed_backlogs_ms"] = await timed(conn, BACKLOGS_PROPOSED)
        row["proposed_plan"] = await _plan(conn, BACKLOGS_PROPOSED)
        await conn.execute("DROP INDEX scenario_engine.scenario_event_dead_idx")
    row["current_plan"] = await _plan(conn, query("backlogs"))
    other = row.get("proposed_backlogs_ms", row.get("without_dead_index_ms"))
    log(
        f"health: {size:,} retained events ({row['table_size']}): "
        f"backlogs {row['backlogs_ms']} ms, other {other} ms"
    )
    return row


async def _outbox(conn: asyncpg.Connection[Any], rows: int, mentors: int) -> dict[str, Any]:
    await conn.execute(FILL_PUSHES, rows, mentors)
    await conn.execute("VACUUM (ANALYZE) scenario_engine.push_notification")
    out = {
        "rows": await conn.fetchval("SELECT count(*) FROM scenario_engine.push_notification"),
        "outbox_stats_ms": await timed(conn, query("outbox_stats")),
        "proposed_ms": await timed(conn, OUTBOX_PROPOSED),
        "current_plan": await _plan(conn, query("outbox_stats")),
        "load": load_average(),
    }
    log(
        f"health: outbox_stats over {out['rows']:,} pushes: "
        f"{out['outbox_stats_ms']} ms, proposed {out['proposed_ms']} ms"
    )
    return out


async def run_health(cluster: LocalCluster, args: argparse.Namespace) -> dict[str, Any]:
    """The health loop runs ``backlogs`` every 2 s under a 5 s timeout; processed events are
    kept for ``event_retention_hours`` (168 h). How does it scale with the retained rows?"""
    url = await fresh_db(cluster, "notify")
    conn = await asyncpg.connect(url)
    out: dict[str, Any] = {"retained_events": [], "pending": 1000, "dead": 10}
    try:
        have = 0
        for size in args.health_sizes:
            out["retained_events"].append(await _retained(conn, size, have, args.mentors))
            have = size
        out["outbox"] = await _outbox(conn, args.health_push_rows, args.mentors)
    finally:
        await conn.close()
    per_million = out["retained_events"][-1]["backlogs_ms"] / (args.health_sizes[-1] / 1e6)
    out["backlogs_ms_per_million_rows"] = round(per_million, 1)
    out["retention_168h_rows_at"] = {
        f"{r}/s": {"rows": r * 168 * 3600, "backlogs_s_estimate": round(per_million * r * 0.6048 / 1000, 1)}
        for r in (10, 100, 1000)
    }
    return out


# --- main -----------------------------------------------------------------------------------------


def throughput_runs(args: argparse.Namespace) -> list[tuple[str, str, dict[str, Any]]]:
    """(label, notify mode, keyword arguments of ``run_throughput``) of the throughput part:
    NOTIFY at each batch size, poll-only, a paced writer, several daemons."""
    batch = args.poll_batch_size
    runs: list[tuple[str, str, dict[str, Any]]] = [
        (f"notify-batch{size}", "notify", {"drain_batch_size": size}) for size in args.batch_sizes
    ]
    runs += [
        (f"poll{i:g}s-batch{batch}", "poll", {"drain_batch_size": batch, "poll_interval_seconds": i})
        for i in args.poll_intervals
    ]
    runs += [
        (f"notify-batch{batch}-writer{rate:g}", "notify", {"writer_rate": rate, "drain_batch_size": batch})
        for rate in args.writer_rates
    ]
    runs += [
        (f"notify-batch{batch}-{n}daemons", "notify", {"daemons": n, "drain_batch_size": batch})
        for n in args.extra_daemons
    ]
    return runs


async def run(cluster: LocalCluster, args: argparse.Namespace, result: dict[str, Any], workdir: Path) -> None:
    log(f"population: {args.mentors} mentors …")
    result["setup"] = await prepare_template(cluster, args, workdir)
    log(
        f"setup done: {result['setup']['timings']}; first sweep {result['setup']['first_sweep']['seconds']} s"
    )
    if "throughput" in args.parts:
        runs = result.setdefault("throughput", [])
        for label, mode, kwargs in throughput_runs(args):
            runs.append(await run_throughput(cluster, args, workdir, label, mode, **kwargs))
    if "latency" in args.parts:
        runs = result.setdefault("latency", [])
        runs.append(await run_latency(cluster, args, workdir, "notify", "notify"))
        for interval in args.poll_intervals:
            runs.append(
                await run_latency(
                    cluster, args, workdir, f"poll{interval:g}s", "poll", poll_interval_seconds=interval
                )
            )
    if "inserts" in args.parts:
        result["inserts"] = await run_inserts(cluster, args, workdir)
    if "health" in args.parts:
        result["health"] = await run_health(cluster, args)


def _throughput_line(r: dict[str, Any]) -> str:
    d, w = r["daemon"], r["writer"]
    kept_up = d["backlog_at_writer_stop"] <= max(w["rate_per_s"], 1)  # at most ~1 s behind
    # met: the drain processed ≥ 10k/s (mean of the steady seconds) while the writer ran, or it
    # kept up with a writer paced at ≥ 10k/s (2 % slack for the pacing of the writer)
    ok = (d["steady_rate_per_s_mean"] or 0) >= THROUGHPUT_BAR or (
        kept_up and w["rate_per_s"] >= 0.98 * THROUGHPUT_BAR
    )
    return (
        f"  throughput {r['label']:<30} writer {w['rate_per_s']:>7,}/s  daemon steady "
        f"{d['steady_rate_per_s_mean'] or 0:>7,}/s (mean; median "
        f"{d['steady_rate_per_s_median'] or 0:,})  end-to-end {d['end_to_end_rate_per_s'] or 0:>7,}/s  "
        f"backlog@stop {d['backlog_at_writer_stop']:>7,}  kept up: {'yes' if kept_up else 'no'}  "
        f"drain {d['drain_after_stop_s']:>6} s ({d['drain_only_rate_per_s'] or '-'}/s)  "
        f"bar ≥{THROUGHPUT_BAR:,.0f}/s: {'met' if ok else 'MISSED'}  load {r['load_during']}"
    )


def _latency_line(r: dict[str, Any]) -> str:
    lat = r["events_after_first_second"]["latency_ms"]
    ok = (lat["p50"] or 1e9) <= P50_BAR_MS and (lat["p99"] or 1e9) <= P99_BAR_MS
    return (
        f"  latency {r['label']:<10} {r['writer']['achieved_rate_per_s']}/s  p50 {lat['p50']} ms  "
        f"p95 {lat['p95']}  p99 {lat['p99']}  max {lat['max']}  (daemon histogram "
        f"{r['daemon_histogram_quantiles_ms']})  bar p50≤{P50_BAR_MS:g}/p99≤{P99_BAR_MS:g} ms: "
        f"{'met' if ok else 'MISSED'}  load {r['load_during']}"
    )


def _inserts_lines(ins: dict[str, Any]) -> list[str]:
    paired = ins.get("relative_to_disabled_median_of_rounds") or paired_ratios(ins["runs"])
    return [
        f"  pgbench {key:<28} {rate:>8,} rows/s (best of {ins['rounds']}); "
        f"{paired[key]:.2f} of triggers disabled (median over rounds of the paired ratio)"
        for key, rate in ins["best_rows_per_s"].items()
    ]


def _health_lines(health: dict[str, Any]) -> list[str]:
    lines = [
        f"  health query `backlogs` with {r['rows']:,} retained events ({r['table_size']}): "
        f"{r['backlogs_ms']} ms "
        + (
            f"(with a dead-letter index and ORDER BY id LIMIT 1: {r['proposed_backlogs_ms']} ms)"
            if "proposed_backlogs_ms" in r
            else f"(without the engine's dead-letter index: {r['without_dead_index_ms']} ms)"
        )
        for r in health["retained_events"]
    ]
    o = health["outbox"]
    lines.append(
        f"  health query `outbox_stats` with {o['rows']:,} pushes: {o['outbox_stats_ms']} ms "
        f"(split per partial index: {o['proposed_ms']} ms)"
    )
    return lines


def summarize(result: dict[str, Any]) -> str:
    lines = [
        f"events benchmark, {result['params']['mentors']:,} mentors; load at start {result['load_before']}"
    ]
    lines += [_throughput_line(r) for r in result.get("throughput", [])]
    lines += [_latency_line(r) for r in result.get("latency", [])]
    if "inserts" in result:
        lines += _inserts_lines(result["inserts"])
    if "health" in result:
        lines += _health_lines(result["health"])
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", default="throughput,latency,inserts,health", type=lambda s: s.split(","))
    p.add_argument("--mentors", type=int, default=100_000)
    p.add_argument("--seconds", type=float, default=20.0, help="writer duration per run")
    p.add_argument("--writers", type=int, default=4)
    p.add_argument("--rows-per-insert", type=int, default=50)
    p.add_argument(
        "--batch-sizes", type=lambda s: [int(x) for x in s.split(",") if x], default=[500, 2000, 5000]
    )
    p.add_argument(
        "--poll-intervals", type=lambda s: [float(x) for x in s.split(",") if x], default=[0.05, 1.0]
    )
    p.add_argument(
        "--poll-batch-size", type=int, default=2000, help="drain batch of the poll, paced and fleet runs"
    )
    p.add_argument(
        "--writer-rates",
        type=lambda s: [float(x) for x in s.split(",") if x],
        default=[10_000.0, 15_000.0, 20_000.0],
        help="extra throughput runs with the writer paced at these rows/s (NOTIFY mode)",
    )
    p.add_argument(
        "--extra-daemons",
        type=lambda s: [int(x) for x in s.split(",") if x],
        default=[2],
        help="extra full-speed runs with this many daemon processes (what drain concurrency would give)",
    )
    p.add_argument("--drain-timeout", type=float, default=180.0)
    p.add_argument("--rate", type=float, default=1000.0, help="paced writer rate (latency part)")
    p.add_argument("--pgbench-seconds", type=int, default=10)
    p.add_argument("--pgbench-rounds", type=int, default=2)
    p.add_argument(
        "--health-sizes",
        type=lambda s: [int(x) for x in s.split(",") if x],
        default=[1_000_000, 4_000_000],
        help="retained processed events for the health part",
    )
    p.add_argument("--health-push-rows", type=int, default=1_000_000, help="sent pushes for the health part")
    p.add_argument("--profile", action="store_true", help="py-spy the daemon during each throughput writer")
    p.add_argument("--pgss", action="store_true", help="pg_stat_statements top queries per throughput run")
    p.add_argument("--output", type=Path, default=None)
    p.add_argument(
        "--merge",
        action="store_true",
        help="keep the other parts already in the output file (run parts apart)",
    )
    return p.parse_args(argv)


def merge_into(output: Path, result: dict[str, Any], parts: list[str]) -> dict[str, Any]:
    """``result`` merged into the results already in ``output`` (``--merge``: parts run apart)."""
    previous: dict[str, Any] = json.loads(output.read_text())
    runs = previous.setdefault("runs_by_part", {})
    for part in parts:
        runs[part] = {k: result[k] for k in ("started_at", "load_before", "load_after", "other_benchmarks")}
    for key in ("throughput", "latency", "inserts", "health"):
        if key in result and isinstance(result[key], list) and isinstance(previous.get(key), list):
            # runs are merged by label: a rerun replaces the earlier run of that label
            mine = {r["label"] for r in result[key]}
            previous[key] = [r for r in previous[key] if r["label"] not in mine] + result[key]
        elif key in result:
            previous[key] = result[key]
    return previous


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    output = args.output or RESULTS_DIR / "events.json"
    result = run_header("events", {k: v for k, v in vars(args).items() if k != "output"})
    workdir = scratch_dir("events")
    started = time.perf_counter()
    ok = False
    settings = dict(RUNTIME_PG_SETTINGS)
    if args.pgss:
        settings.update({"shared_preload_libraries": "pg_stat_statements", "pg_stat_statements.track": "top"})
    result["pg_settings"] = settings
    with private_cluster(settings) as cluster:
        result["machine"] = machine_facts(server_version(cluster.bin_dir))
        try:
            asyncio.run(run(cluster, args, result, workdir))
            ok = True
        finally:
            result["load_after"] = load_average()
            result["total_seconds"] = round(time.perf_counter() - started, 1)
    result["orphan_postgres_processes"] = leftover_postgres(cluster)
    this_run_s = result["total_seconds"]
    if args.merge and output.exists():
        result = merge_into(output, result, args.parts)
    else:
        keys = ("started_at", "load_before", "load_after", "other_benchmarks", "total_seconds")
        result["runs_by_part"] = {part: {k: result[k] for k in keys} for part in args.parts}
    write_json(output, result)
    if ok:
        with contextlib.suppress(OSError):
            shutil.rmtree(workdir)
    print()
    print(summarize(result))
    print(f"this run {this_run_s} s; written to {output}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
