"""Dispatch benchmark: a push outbox backlog drained by the real daemon through the webhook
provider into a local aiohttp gateway.

    .venv/bin/python -m bench.dispatch     # 100k at 2000/s (push batch 100 and 500), 20k at 500/s
    .venv/bin/python -m bench.dispatch --runs 2000:64:100000:100

Each run (``rate:concurrency:pushes[:batch]``): a fresh database with ``--mentors`` active
mentors, the real ``scenario-engine run`` (``SCENARIO_PUSH_PROVIDER=webhook``,
``SCENARIO_PUSH_RATE_PER_SECOND``, ``SCENARIO_PUSH_CONCURRENCY``, ``SCENARIO_PUSH_BATCH_SIZE``)
and, once it is ready, ``pushes`` pending ``push_notification`` rows inserted in one statement
(milestone pushes, one idempotency key each) followed by ``NOTIFY scenario_push``. The gateway
runs in a separate process (``--serve-gateway``) so that it does not share this process's CPU
or event loop; it answers 200 with an X-Message-Id and counts requests and idempotency keys.

Reported per run: achieved rate (from ``sent_at`` in the database, overall and per second in
the steady state) against the configured rate, the gateway's own count and duplicate keys,
and the daemon's RSS (``VmRSS`` every second: min, max, first, last) and CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from bench.harness.cluster import (
    LocalCluster,
    cluster_cpu,
    cpu_delta,
    create_database,
    free_port,
    leftover_postgres,
    private_cluster,
    server_version,
)
from bench.harness.daemon import DaemonProc, metric_by_label
from bench.harness.procfs import load_average
from bench.harness.report import RESULTS_DIR, log, machine_facts, run_header, scratch_dir, write_json

RUN_DB = "bench_dispatch"

MENTORS_SQL = """
INSERT INTO peer_mentor (id, organization_id, display_name, status, timezone, joined_at)
SELECT md5('bench-mentor-' || i)::uuid, md5('bench-org-' || (i % 1000))::uuid, 'Mentor ' || i, 'active',
       (ARRAY['Europe/Oslo', 'UTC', 'Europe/London', 'America/New_York', 'Asia/Tokyo'])[1 + i % 5],
       now() - interval '1 day'
FROM generate_series(1, $1::int) AS i
"""
PUSHES_SQL = """
INSERT INTO scenario_engine.push_notification (mentor_id, scenario_type, title, body, data,
                                               idempotency_key, status, next_attempt_at, created_at)
SELECT md5('bench-mentor-' || (1 + (n - 1) % $2::int))::uuid, 'milestone', 'Milestone reached!',
       'You reached 10 sessions this year. Thank you!',
       jsonb_build_object('rule', 'sessions_year',
                          'context', jsonb_build_object('metric', 'sessions', 'threshold', 10, 'value', 10)),
       'bench:milestone:' || n, 'pending', now(), now()
FROM generate_series(1, $1::int) AS n
"""


# --- the gateway (separate process) -----------------------------------------------------------


def serve_gateway(port: int) -> None:
    from aiohttp import web

    stats: dict[str, Any] = {"count": 0, "keys": set(), "first": None, "last": None, "per_second": {}}

    async def push(request: web.Request) -> web.Response:
        await request.read()
        now = time.time()
        stats["count"] += 1
        stats["keys"].add(request.headers.get("Idempotency-Key", ""))
        stats["first"] = stats["first"] or now
        stats["last"] = now
        sec = str(int(now))
        stats["per_second"][sec] = stats["per_second"].get(sec, 0) + 1
        return web.Response(headers={"X-Message-Id": f"m{stats['count']}"}, text='{"ok":true}')

    async def get_stats(_request: web.Request) -> web.Response:
        return web.json_response(
            {
                "count": stats["count"],
                "distinct_keys": len(stats["keys"]),
                "first": stats["first"],
                "last": stats["last"],
                "per_second": stats["per_second"],
            }
        )

    app = web.Application()
    app.router.add_post("/push", push)
    app.router.add_get("/stats", get_stats)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


class GatewayProc:
    def __init__(self) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.dispatch", "--serve-gateway", str(self.port)],
            stdin=subprocess.DEVNULL,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/push"

    async def stats(self) -> dict[str, Any]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{self.port}/stats") as resp,
        ):
            result: dict[str, Any] = await resp.json()
            return result

    async def wait_up(self) -> None:
        for _ in range(200):
            with contextlib.suppress(OSError, aiohttp.ClientError):
                await self.stats()
                return
            await asyncio.sleep(0.05)
        raise RuntimeError("gateway did not start")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# --- a run ------------------------------------------------------------------------------------

FINISHED = ("sent", "failed", "dead", "cancelled")


async def _database(cluster: LocalCluster, args: argparse.Namespace) -> tuple[str, asyncpg.Connection[Any]]:
    """A fresh database with the mentors (and any --extra-sql); its URL and a connection."""
    url = await create_database(cluster, RUN_DB)
    conn = await asyncpg.connect(url)
    await conn.execute(MENTORS_SQL, args.mentors)
    for statement in args.extra_sql:
        await conn.execute(statement)
    await conn.execute("VACUUM (ANALYZE)")
    return url, conn


async def _watch(
    daemon: DaemonProc, label: str, pushes: int, limit_s: float
) -> tuple[float, list[tuple[float, float | None]], list[list[float]]]:
    """Every second until the backlog is done: RSS, and every 10 s the load; returns the
    finished pushes, the RSS samples and the loads."""
    t0 = time.perf_counter()
    done = 0.0
    rss: list[tuple[float, float | None]] = []
    loads: list[list[float]] = []
    while time.perf_counter() - t0 < limit_s:
        await asyncio.sleep(1.0)
        rss.append((round(time.perf_counter() - t0, 1), daemon.rss_mb()))
        outcomes = metric_by_label(await daemon.metrics(), "scenario_push_outcomes_total", "outcome")
        done = sum(v for k, v in outcomes.items() if k in FINISHED)
        if len(rss) % 10 == 0:
            loads.append(load_average())
            log(f"{label}: t={rss[-1][0]} s sent {outcomes.get('sent', 0):,.0f}, RSS {rss[-1][1]} MB")
        if done >= pushes:
            break
    return done, rss, loads


async def _sent_in_db(conn: asyncpg.Connection[Any]) -> tuple[asyncpg.Record, list[asyncpg.Record]]:
    """Status counts and sent_at span of the outbox, and the pushes sent per second."""
    row = await conn.fetchrow(
        """
        SELECT count(*) FILTER (WHERE status = 'sent') AS sent,
               count(*) FILTER (WHERE status IN ('pending', 'sending')) AS open,
               count(*) FILTER (WHERE status NOT IN ('sent', 'pending', 'sending')) AS other,
               min(sent_at) AS first_sent, max(sent_at) AS last_sent, max(attempts) AS max_attempts
        FROM scenario_engine.push_notification
        """
    )
    assert row is not None
    per_sec = await conn.fetch(
        """
        SELECT extract(epoch FROM date_trunc('second', sent_at)
                                  - date_trunc('second', $1::timestamptz))::int AS s,
               count(*) AS n
        FROM scenario_engine.push_notification WHERE sent_at IS NOT NULL GROUP BY 1 ORDER BY 1
        """,
        row["first_sent"],
    )
    return row, per_sec


def _rates(row: asyncpg.Record, per_sec: list[asyncpg.Record], rate: float) -> dict[str, Any]:
    """Achieved rate overall (first to last sent_at) and per second in the steady state."""
    span = (row["last_sent"] - row["first_sent"]).total_seconds() if row["sent"] else 0.0
    counts = [r["n"] for r in per_sec]
    steady = counts[1:-1] if len(counts) > 2 else counts
    return {
        "db": {
            "sent": row["sent"],
            "still_open": row["open"],
            "other_status": row["other"],
            "max_attempts": row["max_attempts"],
            "first_to_last_sent_s": round(span, 2),
        },
        "configured_rate_per_s": rate,
        "achieved_rate_per_s": round(row["sent"] / span, 1) if span else None,
        "achieved_vs_configured": round(row["sent"] / span / rate, 3) if span else None,
        "steady_per_second_median": statistics.median(steady) if steady else None,
        "steady_per_second_max": max(steady) if steady else None,
        "steady_per_second_min": min(steady) if steady else None,
        "sent_per_second": [(r["s"], r["n"]) for r in per_sec],
    }


def _gateway_summary(gw: dict[str, Any]) -> dict[str, Any]:
    gw_span = (gw["last"] - gw["first"]) if gw["first"] else 0.0
    return {
        "requests": gw["count"],
        "distinct_idempotency_keys": gw["distinct_keys"],
        "rate_per_s": round(gw["count"] / gw_span, 1) if gw_span else None,
        "max_per_second": max(gw["per_second"].values()) if gw["per_second"] else None,
    }


def _rss_summary(rss: list[tuple[float, float | None]]) -> dict[str, Any]:
    values = [v for _, v in rss if v is not None]
    return {
        "min": min(values) if values else None,
        "max": max(values) if values else None,
        "first": values[0] if values else None,
        "last": values[-1] if values else None,
        "samples": rss,
    }


async def _drain(
    cluster: LocalCluster,
    conn: asyncpg.Connection[Any],
    daemon: DaemonProc,
    label: str,
    pushes: int,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Insert the backlog, wake the dispatcher, watch it drain; CPU and RSS meanwhile."""
    started = time.perf_counter()
    await conn.execute(PUSHES_SQL, pushes, args.mentors)
    await conn.execute("ANALYZE scenario_engine.push_notification")
    t_inserted = time.perf_counter()
    await conn.execute("NOTIFY scenario_push")
    cpu0 = (daemon.cpu_seconds() or 0.0, cluster_cpu(cluster))
    t0 = time.perf_counter()
    done, rss, loads = await _watch(daemon, label, pushes, args.limit_s)
    elapsed = time.perf_counter() - t0
    cpu1 = (daemon.cpu_seconds() or 0.0, cluster_cpu(cluster))
    return {
        "load_during": loads or [load_average()],
        "insert_backlog_s": round(t_inserted - started, 2),
        "completed": done >= pushes,
        "elapsed_s": round(elapsed, 1),
        "daemon_rss_mb": _rss_summary(rss),
        "daemon_cpu_s": round(cpu1[0] - cpu0[0], 2),
        "daemon_cpu_share_of_one_core": round((cpu1[0] - cpu0[0]) / elapsed, 3),
        "cluster_cpu_s": cpu_delta(cpu0[1], cpu1[1]),
    }


async def run_one(
    cluster: LocalCluster,
    args: argparse.Namespace,
    workdir: Path,
    rate: float,
    conc: int,
    pushes: int,
    batch: int,
) -> dict[str, Any]:
    label = f"rate{rate:g}-conc{conc}-batch{batch}-{pushes}"
    url, conn = await _database(cluster, args)
    gateway = GatewayProc()
    await gateway.wait_up()
    daemon = DaemonProc(
        url,
        workdir,
        name=label,
        push_provider="webhook",
        push_webhook_url=gateway.url,
        push_rate_per_second=rate,
        push_concurrency=conc,
        push_batch_size=batch,
    ).start()
    result: dict[str, Any] = {
        "label": label,
        "settings": daemon.settings,
        "pushes": pushes,
        "extra_sql": args.extra_sql,
    }
    try:
        result["ready_s"] = round(await daemon.wait_ready(), 3)
        await daemon.wait_first_sweep()
        await asyncio.sleep(1.0)
        result["rss_before_backlog_mb"] = daemon.rss_mb()
        result["load_before"] = load_average()
        result.update(await _drain(cluster, conn, daemon, label, pushes, args))
        await asyncio.sleep(0.5)
        row, per_sec = await _sent_in_db(conn)
        result.update(_rates(row, per_sec, rate))
        result["gateway"] = _gateway_summary(await gateway.stats())
        result["log_errors"] = daemon.log_errors()
    finally:
        await daemon.stop()
        gateway.stop()
        await conn.close()
    r = result
    log(
        f"{label}: achieved {r['achieved_rate_per_s']}/s of {rate:g}/s configured "
        f"(steady median {r['steady_per_second_median']}/s, max {r['steady_per_second_max']}/s); "
        f"sent {r['db']['sent']:,}/{pushes:,} in {r['elapsed_s']} s; gateway {r['gateway']}; "
        f"RSS {r['daemon_rss_mb']['min']}–{r['daemon_rss_mb']['max']} MB; "
        f"daemon CPU {r['daemon_cpu_share_of_one_core']} core; load {r['load_during']}"
    )
    return result


async def run(cluster: LocalCluster, args: argparse.Namespace, result: dict[str, Any], workdir: Path) -> None:
    runs = result.setdefault("runs", [])
    for spec in args.runs:
        parts = [float(x) for x in spec.split(":")]
        rate, conc, pushes = parts[0], int(parts[1]), int(parts[2])
        batch = int(parts[3]) if len(parts) > 3 else 100
        runs.append(await run_one(cluster, args, workdir, rate, conc, pushes, batch))


def summarize(result: dict[str, Any]) -> str:
    lines = [f"dispatch benchmark; load at start {result['load_before']}"]
    for r in result.get("runs", []):
        ratio = r["achieved_vs_configured"]
        rss = r["daemon_rss_mb"]
        lines.append(
            f"  {r['label']:<34} achieved {r['achieved_rate_per_s']}/s of {r['configured_rate_per_s']:g}/s "
            f"({ratio}); steady median {r['steady_per_second_median']}/s, "
            f"max {r['steady_per_second_max']}/s; "
            f"sent {r['db']['sent']:,}/{r['pushes']:,}; dup keys "
            f"{r['gateway']['requests'] - r['gateway']['distinct_idempotency_keys']}; "
            f"RSS {rss['min']}–{rss['max']} MB (first {rss['first']}, last {rss['last']}); "
            f"CPU {r['daemon_cpu_share_of_one_core']} core; load {r['load_during'][-1]}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--serve-gateway", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument(
        "--runs",
        default="2000:64:100000,2000:64:100000:500,500:64:20000",
        type=lambda s: s.split(","),
        help="rate:concurrency:pushes[:push batch size], comma-separated",
    )
    p.add_argument("--mentors", type=int, default=100_000)
    p.add_argument("--limit-s", type=float, default=300.0, help="give up on a run after this long")
    p.add_argument(
        "--extra-sql",
        action="append",
        default=[],
        help="SQL run on each database after migrate (to measure a proposed schema change)",
    )
    p.add_argument("--output", type=Path, default=RESULTS_DIR / "dispatch.json")
    args = p.parse_args(argv)
    if args.serve_gateway is not None:
        serve_gateway(args.serve_gateway)
        return 0
    result = run_header(
        "dispatch", {k: v for k, v in vars(args).items() if k not in ("output", "serve_gateway")}
    )
    workdir = scratch_dir("dispatch")
    started = time.perf_counter()
    ok = False
    with private_cluster() as cluster:
        result["machine"] = machine_facts(server_version(cluster.bin_dir))
        try:
            asyncio.run(run(cluster, args, result, workdir))
            ok = True
        finally:
            result["load_after"] = load_average()
            result["total_seconds"] = round(time.perf_counter() - started, 1)
    result["orphan_postgres_processes"] = leftover_postgres(cluster)
    write_json(args.output, json.loads(json.dumps(result, default=str)))
    if ok:
        with contextlib.suppress(OSError):
            shutil.rmtree(workdir)
    print()
    print(summarize(result))
    print(f"total {result['total_seconds']} s; written to {args.output}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
