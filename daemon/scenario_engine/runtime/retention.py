"""The daemon's personal-data retention loop: privacy.py's pruner on an interval.

The data operation (what is stripped, what is deleted, in batches) is ``prune_personal_data``
in privacy.py; this is only when and where it runs: on the shared work loop
(runtime/worker.py), so an outage of the database is waited out with backoff. docs/PRIVACY.md
is the user-facing account.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg

from scenario_engine.config import Settings
from scenario_engine.db.clock import database_now
from scenario_engine.logs import get_logger
from scenario_engine.privacy import prune_personal_data
from scenario_engine.runtime.state import LoopHealth, RuntimeState
from scenario_engine.runtime.worker import Worker

# The logger's name as before the loop left privacy.py: log queries and dashboards keep working.
log = get_logger("scenario_engine.privacy")


async def personal_data_loop(
    pool: asyncpg.Pool[Any], state: RuntimeState, settings: Settings, health: LoopHealth | None = None
) -> None:
    """The daemon's retention pruner: every ``personal_data_prune_interval_seconds``, on a
    pooled connection of its own (never the drain's), a bounded number of batches per round.

    Every daemon runs it; batches lock with SKIP LOCKED, so replicas share the work instead of
    waiting for one another."""
    retention = dt.timedelta(days=settings.personal_data_retention_days)

    async def step() -> bool:
        async with pool.acquire() as conn:
            stats = await prune_personal_data(
                conn,
                as_of=await database_now(conn),  # retention by the server's clock
                retention=retention,
                batch_size=settings.personal_data_prune_batch_size,
                max_batches=10,
            )
        if stats.total:
            log.info(
                "personal_data_pruned",
                notifications_redacted=stats.notifications_redacted,
                decisions_redacted=stats.decisions_redacted,
                pushes_deleted=stats.pushes_deleted,
            )
        return stats.more  # more waiting: go again at once (the worker checks for stop between)

    await Worker(
        "personal_data_prune",
        step,
        stopping=state.stopping,
        poll_interval=settings.personal_data_prune_interval_seconds,
        health=health,
    ).run()
