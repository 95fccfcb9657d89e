"""The events benchmark's database: a populated template on which the daemon ran its first
sweep, a fresh clone per measurement, and what ``scenario_event`` says about a run."""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import uuid
from pathlib import Path
from typing import Any

import asyncpg

from bench.harness.cluster import LocalCluster, create_database
from bench.harness.daemon import DaemonProc
from bench.harness.population import Shape, generate
from bench.harness.report import Timings, ms

TEMPLATE_DB = "bench_events_tpl"
RUN_DB = "bench_events_run"

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
