"""The push dispatcher: a durable outbox worker.

Claims due ``push_notification`` rows (SKIP LOCKED, with a lease), re-checks each against
what may have changed since enqueue, defers those inside quiet hours, and sends the rest
concurrently (bounded in flight, rate-limited per provider). Outcomes are written with
the claim's attempt number as a fence. A push whose lease ran out because the daemon died
mid-send is claimed again and carries the same idempotency key.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import anyio
from aiolimiter import AsyncLimiter

from scenario_engine.config import Settings
from scenario_engine.db.queries import query
from scenario_engine.logs import get_logger
from scenario_engine.push.base import PushMessage, PushProvider, SendResult
from scenario_engine.runtime.backoff import TRANSIENT_DB_ERRORS, Backoff
from scenario_engine.runtime.metrics import Metrics
from scenario_engine.runtime.quiet import quiet_until
from scenario_engine.runtime.state import Wakeup, wait_for_wakeup

log = get_logger("scenario_engine.dispatcher")


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    max_age: dt.timedelta
    base: float
    maximum: float

    def delay(self, attempts: int, retry_after: float | None) -> float:
        """Exponential backoff with jitter; a gateway's Retry-After wins when it asks for longer."""
        backoff = min(self.maximum, self.base * 2.0 ** max(0, attempts - 1)) * random.uniform(0.5, 1.0)
        return max(backoff, retry_after) if retry_after is not None else backoff

    def gives_up(self, attempts: int, created_at: dt.datetime, delay: float, now: dt.datetime) -> bool:
        return attempts >= self.max_attempts or now + dt.timedelta(seconds=delay) > created_at + self.max_age


@dataclass
class DispatchStats:
    claimed: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    dead: int = 0
    cancelled: int = 0
    deferred: int = 0


class Dispatcher:
    def __init__(self, pool: Any, provider: PushProvider, settings: Settings, metrics: Metrics):
        self.pool = pool
        self.provider = provider
        self.settings = settings
        self.metrics = metrics
        self.retry = RetryPolicy(
            max_attempts=settings.push_max_attempts,
            max_age=dt.timedelta(hours=settings.push_max_age_hours),
            base=settings.push_backoff_base_seconds,
            maximum=settings.push_backoff_max_seconds,
        )
        self.quiet = settings.quiet_window
        self.limiter = anyio.CapacityLimiter(settings.push_concurrency)
        self.rate = AsyncLimiter(settings.push_rate_per_second, 1.0)
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Dispatcher:
        connector = aiohttp.TCPConnector(limit=self.settings.push_concurrency)
        self.session = aiohttp.ClientSession(connector=connector)
        return self

    async def __aexit__(self, *exc: object) -> None:
        with anyio.CancelScope(shield=True):
            if self.session is not None:
                await self.session.close()
            await self.provider.close()

    async def run(self, stopping: anyio.Event, wakeup: Wakeup) -> None:
        """Loop until stopped, waking on NOTIFY from enqueue or on the poll interval."""
        backoff = Backoff()
        while not stopping.is_set():
            event = wakeup.renew()
            try:
                while not stopping.is_set():
                    stats = await self.dispatch_once()
                    if stats.claimed < self.settings.push_batch_size:
                        break
                backoff.reset()
            except TRANSIENT_DB_ERRORS as exc:
                log.warning("dispatch_database_error", error=repr(exc))
                with anyio.move_on_after(backoff.next_delay()):
                    await stopping.wait()
                continue
            await wait_for_wakeup(event, stopping, self.settings.dispatch_poll_interval_seconds)

    async def dispatch_once(self) -> DispatchStats:
        """Claim one batch of due pushes and see each to an outcome."""
        stats = DispatchStats()
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                query("claim_pushes"), self.settings.push_batch_size, self.settings.push_lease_seconds
            )
            if not rows:
                return stats
            checks = {r["id"]: r for r in await conn.fetch(query("recheck_pushes"), [r["id"] for r in rows])}
        stats.claimed = len(rows)
        now = dt.datetime.now(dt.UTC)
        to_send = []
        for row in rows:
            check = checks.get(row["id"])
            reason = check["cancel_reason"] if check else "mentor no longer exists"
            if reason:
                await self._finish(row, "cancelled", reason)
                stats.cancelled += 1
                continue
            until = quiet_until(now, check["timezone"] if check else None, self.quiet)
            if until is not None:
                async with self.pool.acquire() as conn:
                    await conn.execute(query("push_defer"), row["id"], row["attempts"], until)
                self._count(row, "deferred")
                stats.deferred += 1
                continue
            to_send.append(row)
        async with anyio.create_task_group() as tg:
            for row in to_send:
                tg.start_soon(self._send_one, row, stats)
        return stats

    async def _send_one(self, row: Any, stats: DispatchStats) -> None:
        message = PushMessage(
            id=row["id"],
            mentor_id=row["mentor_id"],
            scenario_type=row["scenario_type"],
            title=row["title"],
            body=row["body"],
            data=row["data"] or {},
            idempotency_key=row["idempotency_key"],
            attempts=row["attempts"],
        )
        async with self.limiter:
            await self.rate.acquire()
            assert self.session is not None
            started = time.perf_counter()
            try:
                result = await self.provider.send(message, self.session)
            except Exception as exc:  # a provider bug must not kill the worker: retry, then dead-letter
                log.exception("push_provider_error", push_id=message.id)
                result = SendResult.retry(f"provider error: {exc!r}")
            self.metrics.push_latency.labels(self.provider.name).observe(time.perf_counter() - started)
        await self._record(row, result, stats)

    async def _record(self, row: Any, result: SendResult, stats: DispatchStats) -> None:
        name = self.provider.name
        async with self.pool.acquire() as conn:
            if result.kind == "delivered":
                await conn.execute(
                    query("push_sent"), row["id"], row["attempts"], name, result.provider_message_id
                )
                self._count(row, "sent")
                stats.sent += 1
                return
            if result.kind == "failed":
                await self._finish(row, "failed", result.error or "failed")
                stats.failed += 1
                log.warning("push_failed", push_id=row["id"], error=result.error)
                return
            delay = self.retry.delay(row["attempts"], result.retry_after)
            if self.retry.gives_up(row["attempts"], row["created_at"], delay, dt.datetime.now(dt.UTC)):
                await self._finish(row, "dead", f"gave up after {row['attempts']} attempts: {result.error}")
                stats.dead += 1
                log.error(
                    "push_dead_lettered", push_id=row["id"], attempts=row["attempts"], error=result.error
                )
                return
            await conn.execute(query("push_retry"), row["id"], row["attempts"], delay, name, result.error)
            self._count(row, "retried")
            stats.retried += 1

    async def _finish(self, row: Any, status: str, reason: str) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(
                query("push_finish"), row["id"], row["attempts"], status, self.provider.name, reason
            )
        self._count(row, status)

    def _count(self, row: Any, outcome: str) -> None:
        self.metrics.push_outcomes.labels(self.provider.name, row["scenario_type"], outcome).inc()


async def requeue_dead(pool: Any, since: dt.datetime | None) -> int:
    async with pool.acquire() as conn:
        return len(await conn.fetch(query("requeue_dead_pushes"), since))
