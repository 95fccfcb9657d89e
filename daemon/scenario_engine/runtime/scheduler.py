"""Leader election and the scheduled sweep.

Leadership is a session advisory lock on a dedicated connection. The lock vanishes
silently with its connection, so the leader asks the server before each sweep whether it
still holds it, and treats any error on that connection as lost leadership. Each period
has a sweep key recorded in ``scenario_sweep``: a finished period is never swept again,
so even two processes that both believed they led could not send twice (the dedup keys
would stop them anyway). After downtime only the current period is swept: one catch-up,
not one per missed period.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from typing import Any

import anyio
import asyncpg

from scenario_engine.config import Rules, Settings
from scenario_engine.db.connect import connect
from scenario_engine.db.queries import query
from scenario_engine.engine import Engine, SweepResult
from scenario_engine.logs import get_logger
from scenario_engine.runtime.backoff import TRANSIENT_DB_ERRORS, Backoff
from scenario_engine.runtime.state import RuntimeState

LEADER_LOCK_KEY = 0x5CE7_1EAD  # any fixed positive bigint shared by all engines
log = get_logger("scenario_engine.scheduler")


def rules_fingerprint(rules: Rules) -> str:
    """Identifies a rule set: a sweep after a rules change must be a full one."""
    return hashlib.sha256(rules.model_dump_json().encode()).hexdigest()[:16]


def current_period(settings: Settings, now: dt.datetime) -> tuple[str, dt.datetime, dt.datetime]:
    """(sweep key, period start, next period start) for the configured schedule."""
    if settings.sweep_daily_at is not None:
        at = settings.sweep_daily_at
        today = dt.datetime.combine(now.date(), at, tzinfo=dt.UTC)
        start = today if now >= today else today - dt.timedelta(days=1)
        return f"daily@{at.strftime('%H:%M')}:{start.date().isoformat()}", start, start + dt.timedelta(days=1)
    interval = settings.sweep_interval_seconds
    index = math.floor(now.timestamp() / interval)
    start = dt.datetime.fromtimestamp(index * interval, dt.UTC)
    return f"every{interval:g}s:{index}", start, start + dt.timedelta(seconds=interval)


class Scheduler:
    def __init__(self, dsn: str, engine: Engine, state: RuntimeState, settings: Settings):
        self.dsn = dsn
        self.engine = engine
        self.state = state
        self.settings = settings

    async def run(self) -> None:
        backoff = Backoff(maximum=self.settings.leader_retry_seconds)
        while not self.state.stopping.is_set():
            conn: asyncpg.Connection[Any] | None = None
            try:
                conn = await connect(self.dsn, application_name="scenario-engine leader")
                backoff.reset()
                await self._follow_or_lead(conn)
            except TRANSIENT_DB_ERRORS as exc:
                if self.state.leader:
                    log.warning("leadership_lost", error=repr(exc))
                else:
                    log.debug("leader_connection_failed", error=repr(exc))
            finally:
                self.state.set_leader(False)
                if conn is not None:
                    await self._release(conn)
            if not self.state.stopping.is_set():
                with anyio.move_on_after(backoff.next_delay()):
                    await self.state.stopping.wait()

    async def _release(self, conn: asyncpg.Connection[Any]) -> None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(2):
            try:
                if not conn.is_closed():
                    await conn.close()  # closing the session releases the lock
            except Exception:
                conn.terminate()

    async def _follow_or_lead(self, conn: asyncpg.Connection[Any]) -> None:
        while not self.state.stopping.is_set():
            if not self.state.leader:
                if await conn.fetchval(query("try_leader_lock"), LEADER_LOCK_KEY):
                    self.state.set_leader(True)
                    log.info("leadership_acquired", instance=self.state.instance_id)
                else:
                    self.state.next_sweep_at = None
                    await self._sleep(self.settings.leader_retry_seconds)
                    continue
            if not await conn.fetchval(query("holds_leader_lock"), LEADER_LOCK_KEY):
                log.warning("leadership_lost", reason="lock no longer held")
                self.state.set_leader(False)
                continue
            key, _start, next_start = current_period(self.settings, dt.datetime.now(dt.UTC))
            await self._sweep_period(key)
            self.state.next_sweep_at = next_start
            # Wake at the next period, but re-check leadership regularly meanwhile.
            wait = (next_start - dt.datetime.now(dt.UTC)).total_seconds()
            await self._sleep(max(0.05, min(wait, self.settings.leader_retry_seconds)))

    async def _sweep_period(self, key: str) -> None:
        as_of = dt.datetime.now(dt.UTC)
        async with self.engine.pool.acquire() as conn:
            claimed = await conn.fetchrow(query("claim_sweep"), key, as_of, self.state.instance_id)
        if claimed is None:
            return  # this period is done
        as_of = claimed["as_of"]  # an unfinished period is completed at its original instant
        since, full_as_of = await self._incremental_start(as_of)
        mode = "full" if since is None else "incremental"
        log.info("sweep_started", sweep_key=key, as_of=as_of.isoformat(), mode=mode)
        result = await self.engine.run_scheduled_evaluation(
            as_of, stop=self.state.stopping.is_set, since=since
        )
        if result.interrupted:
            self.state.metrics.sweeps.labels("interrupted").inc()
            log.info("sweep_interrupted", sweep_key=key, mentors=result.mentors)
            return
        stats = {rule: dict(c) for rule, c in result.per_rule.items()}
        record = {
            "mode": mode,
            "rules": rules_fingerprint(self.engine.rules),
            "full_as_of": (full_as_of or as_of).isoformat(),
            "per_rule": stats,
        }
        async with self.engine.pool.acquire() as conn:
            await conn.execute(query("finish_sweep"), key, record)
        self._record(key, result, stats, mode)

    async def _incremental_start(self, as_of: dt.datetime) -> tuple[dt.datetime | None, dt.datetime | None]:
        """(since, last full sweep) when this sweep may be incremental, else (None, None).

        Incremental needs a completed previous sweep under the same rules, and a full sweep
        within ``full_sweep_interval_hours`` (the safety net for anything the event path
        missed, e.g. an event that was dead-lettered)."""
        interval = dt.timedelta(hours=self.settings.full_sweep_interval_hours)
        if interval <= dt.timedelta(0):
            return None, None
        async with self.engine.pool.acquire() as conn:
            last = await conn.fetchrow(query("last_finished_sweep"), as_of)
        if last is None:
            return None, None
        stats = last["stats"] or {}
        if stats.get("rules") != rules_fingerprint(self.engine.rules) or "full_as_of" not in stats:
            return None, None
        full_as_of = dt.datetime.fromisoformat(stats["full_as_of"])
        if as_of - full_as_of >= interval:
            return None, None
        since: dt.datetime = last["as_of"]
        return since, full_as_of

    def _record(self, key: str, result: SweepResult, stats: dict[str, dict[str, int]], mode: str) -> None:
        m = self.state.metrics
        m.sweeps.labels("completed").inc()
        m.sweeps_by_mode.labels(mode).inc()
        m.sweep_duration.observe(result.seconds)
        for rule, counts in stats.items():
            try:
                scenario: str = self.engine.rules.by_name(rule).scenario_type
            except KeyError:  # the rules were reloaded mid-sweep
                scenario = "unknown"
            for outcome, n in counts.items():
                m.sweep_results.labels(rule, outcome).inc(n)
                m.notifications.labels(scenario, outcome).inc(n)
        self.state.last_sweep = {
            "sweep_key": key,
            "mode": mode,
            "as_of": result.as_of.isoformat(),
            "mentors": result.mentors,
            "seconds": round(result.seconds, 3),
            "per_rule": stats,
            "finished_at": dt.datetime.now(dt.UTC).isoformat(),
        }
        log.info(
            "sweep_finished",
            sweep_key=key,
            mentors=result.mentors,
            seconds=round(result.seconds, 3),
            sent=result.sent,
        )

    async def _sleep(self, seconds: float) -> None:
        with anyio.move_on_after(seconds):
            await self.state.stopping.wait()
