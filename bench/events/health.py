"""The ``health`` part: the health loop's queries against a retained event history."""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import asyncpg

from bench.events.db import fresh_db
from bench.harness.cluster import LocalCluster
from bench.harness.engine import query
from bench.harness.procfs import load_average
from bench.harness.report import log

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
