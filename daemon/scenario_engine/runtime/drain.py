"""The event drain: claim pending event rows, evaluate the mentors they touch, mark them.

Claiming, evaluating, enqueueing and marking happen in one transaction, so a crash at
any point leaves the events pending and the notifications unwritten: they are simply
done again. A batch is evaluated set-based, with a mentor whose rows the engine cannot
evaluate isolated and quarantined (isolation.py).

Any error from the database fails the batch whole and leaves its events pending, with no
attempt counted and nothing quarantined: a condition of the database (db/errors.py: lost,
read-only, a lock or statement timeout, out of disk, a missing column …) as itself, any
other rejected statement as the condition ``evaluation_failed``; the work loop backs off,
/readyz names the condition, and the batch is done once it clears. Only a failure of the
engine's own code (a Python exception that the mentor isolation could not pin on a few rows)
falls back to the events one by one, each in a savepoint, so that a poison event is
retried a bounded number of times and dead-lettered with its error, never blocking the rest;
that fallback quarantines no more than ``MAX_BISECTED`` mentors of a batch in all, like the
isolation itself, and beyond that the error is raised as the bug it is.

Between batches the drain polls, because in the default ``poll`` notify mode (sql/0025) no
NOTIFY tells it that an event arrived. The poll is a cheap probe — one index-only look at the
partial index of pending events, outside any transaction — and it adapts (``AdaptivePoll``):
every few milliseconds while events flow, doubling on each empty probe up to the idle
interval, so an idle daemon costs the database a few trivial queries a second. In ``notify``
mode a NOTIFY still cuts the wait short.
"""

from __future__ import annotations

import datetime as dt
import uuid
from functools import partial
from typing import Any, NoReturn

import anyio
import asyncpg

from scenario_engine.db.clock import database_now
from scenario_engine.db.connect import Conn
from scenario_engine.db.errors import Condition, ConditionError, condition_of, is_database_error, sqlstate_of
from scenario_engine.db.queries import execute, fetch, fetchval, query
from scenario_engine.engine import Engine
from scenario_engine.events import EventError, Routes, ScenarioEvent, route
from scenario_engine.isolation import MAX_BISECTED, reason_for
from scenario_engine.logs import get_logger
from scenario_engine.runtime.state import LoopHealth, RuntimeState, Wakeup
from scenario_engine.runtime.worker import Worker

log = get_logger("scenario_engine.drain")

HELPER_IDLE_WAIT = 3600.0
# A claimed event: its ``scenario_event`` row as claimed (id, table_name, operation, mentor_id,
# old_mentor_id, row_id, attempts, created_at), checked and routed by ``Routes.add_row``; a
# ``ScenarioEvent`` is built only for an event evaluated alone (``_one_by_one``).
Claimed = asyncpg.Record


class AdaptivePoll:
    """The wait before the drain's next probe: ``fastest`` right after a probe or batch that
    found events, doubled on each empty probe up to ``slowest``.

    While events flow (even one every few hundred milliseconds) the drain looks every
    ``fastest`` seconds, so an event waits about half that; once events stop, the probes thin
    out geometrically to one per ``slowest``.
    """

    def __init__(self, fastest: float, slowest: float, factor: float = 2.0):
        self.slowest = slowest
        self.fastest = min(fastest, slowest)
        self.factor = factor
        self.current = self.fastest

    def found(self) -> None:
        self.current = self.fastest

    def empty(self) -> None:
        self.current = min(self.slowest, self.current * self.factor)

    def __call__(self) -> float:
        return self.current


class Drain:
    def __init__(
        self,
        pool: asyncpg.Pool[Any],
        engine: Engine,
        state: RuntimeState,
        *,
        batch_size: int,
        poll_interval: float,
        max_attempts: int,
        min_poll_interval: float | None = None,
        concurrency: int = 1,
        health: LoopHealth | None = None,
    ):
        self.health = health
        self.pool = pool
        self.engine = engine
        self.state = state
        self.batch_size = batch_size
        self.poll = AdaptivePoll(min_poll_interval or poll_interval, poll_interval)
        self.max_attempts = max_attempts
        self.concurrency = concurrency
        self._idle = True  # the last look found nothing: probe before claiming
        # Helpers draining a backlog now (helper k claims partition k of ``concurrency``), and
        # the wake-up of each helper.
        self._helping: set[int] = set()
        self._wake = {k: Wakeup() for k in range(1, concurrency)}

    async def run(self) -> None:
        """One polling loop, and ``concurrency - 1`` helpers that claim only while a backlog
        lasts, so that one batch's Python work overlaps another's queries.

        The helpers sleep until the polling loop claims a full batch; then every loop claims
        its own partition of the pending events (by a hash of the mentor), so no two batches
        of this process evaluate the same mentor at once. A helper whose claim comes back
        short goes back to sleep; once all are asleep the polling loop claims every partition
        again. An idle daemon thus makes one probe per poll interval, not one per loop."""
        async with anyio.create_task_group() as tg:
            for k in range(1, self.concurrency):
                tg.start_soon(
                    Worker(
                        f"drain-{k}",
                        partial(self._help, k),
                        stopping=self.state.stopping,
                        poll_interval=HELPER_IDLE_WAIT,  # only a backlog wakes a helper
                        wakeup=self._wake[k],
                    ).run
                )
            await Worker(
                "drain",
                self._step,
                stopping=self.state.stopping,
                poll_interval=self.poll,
                wakeup=self.state.drain_wakeup,
                health=self.health,
            ).run()

    async def _help(self, k: int) -> bool:
        if k not in self._helping:  # not woken by a backlog
            return False
        claimed = 0
        try:
            if not self.state.evaluation_paused:
                claimed = await self.drain_once((self.concurrency, k))
        finally:
            if claimed < self.batch_size:
                self._helping.discard(k)
        return claimed >= self.batch_size

    async def _step(self) -> bool:
        if self.state.evaluation_paused:  # rules differ from the leader's: leave events to it
            return False
        # While helpers drain, this loop keeps to partition 0; otherwise it claims everything.
        partition = (self.concurrency, 0) if self._helping else None
        # After a look that found nothing, probe before claiming: the probe takes no lock and
        # no transaction, so the idle poll costs one index-only lookup, not a claim.
        found = not self._idle or await self.pending()
        claimed = await self.drain_once(partition) if found else 0
        self._idle = claimed == 0 and not self._helping
        if self._idle:
            self.poll.empty()
        else:
            self.poll.found()
        self.state.metrics.drain_poll_interval.set(self.poll())
        if claimed >= self.batch_size:
            for k, wakeup in self._wake.items():
                if k not in self._helping:
                    self._helping.add(k)
                    wakeup.poke()
            return True
        return False

    async def pending(self) -> bool:
        """Whether any event is pending: an index-only probe of the partial index of pending
        rows, in autocommit, that locks nothing (claiming is ``drain_once``'s job)."""
        async with self.pool.acquire() as conn:
            found = bool(await conn.fetchval(query("pending_event_exists")))
        self.state.metrics.drain_polls.labels("pending" if found else "empty").inc()
        return found

    async def drain_once(self, partition: tuple[int, int] | None = None) -> int:
        """Claim and process one batch — of partition ``(partitions, k)`` only, if given;
        returns how many rows were claimed."""
        async with self.pool.acquire() as conn, conn.transaction():
            if partition is None:
                rows = await fetch(conn, "claim_events", batch_size=self.batch_size)
            else:
                rows = await fetch(
                    conn,
                    "claim_events_partition",
                    batch_size=self.batch_size,
                    partitions=partition[0],
                    partition=partition[1],
                )
            if not rows:
                return 0
            good: list[Claimed] = []
            routes = Routes()  # each event routed once, as it is checked
            for row in rows:
                try:
                    routes.add_row(row)
                except EventError as exc:
                    await self._dead_letter(conn, row["id"], str(exc), "invalid")
                    continue
                good.append(row)
            if good:
                # The server's clock, read after the claim: at or after every instant the claimed
                # events' transactions stamped (runtime/clock.py).
                as_of = await database_now(conn)
                await self._process(conn, good, routes.by_type, as_of)
            return len(rows)

    async def _process(
        self, conn: Conn, batch: list[Claimed], by_type: dict[str, set[uuid.UUID]], as_of: dt.datetime
    ) -> None:
        try:
            async with conn.transaction():
                outcomes = await self.engine.evaluate_routed(conn, by_type, as_of)
        except Exception as exc:
            if is_database_error(exc):  # not the events' fault: all stay pending, retried
                raise_batch_failure(exc)
            log.warning("drain_batch_failed", error=repr(exc), events=len(batch))
            await self._one_by_one(conn, batch, as_of, exc)
            return
        await execute(conn, "mark_events_processed", ids=[row["id"] for row in batch])
        self.state.metrics.count_outcomes(outcomes)
        self._observe(batch)

    async def _one_by_one(
        self, conn: Conn, batch: list[Claimed], as_of: dt.datetime, first: Exception
    ) -> None:
        """Each event in its own savepoint, after the batch failed in the engine's own code.
        An error from the database here fails the whole batch as in ``_process`` (no attempt
        burnt); the mentors quarantined on the way count against one ``MAX_BISECTED`` for the
        batch, as one evaluation would, so that a bug cannot quarantine a population one event
        at a time."""
        quarantined = 0
        for row in batch:
            event = ScenarioEvent.from_row(row)  # checked by Routes.add_row: a valid event
            try:
                async with conn.transaction():
                    outcomes = await self.engine.evaluate_routed(conn, route([event]), as_of)
                    quarantined += len(outcomes.quarantined)
                    if quarantined > MAX_BISECTED:
                        raise TooManyQuarantined(quarantined, first) from first
            except TooManyQuarantined:
                raise
            except Exception as exc:
                if is_database_error(exc):  # never burn an attempt on a condition of the database
                    raise_batch_failure(exc)
                self.state.metrics.events_failed.inc()
                dead = await fetchval(
                    conn, "mark_event_failed", id=event.id, error=repr(exc), max_attempts=self.max_attempts
                )
                if dead:
                    self.state.metrics.events_dead.labels("failed").inc()
                    log.error(
                        "event_dead_lettered", event_id=event.id, error=repr(exc), attempts=self.max_attempts
                    )
                else:
                    log.warning("event_failed", event_id=event.id, error=repr(exc))
                continue
            await execute(conn, "mark_events_processed", ids=[event.id])
            self.state.metrics.count_outcomes(outcomes)
            self._observe([row])

    async def _dead_letter(self, conn: Conn, event_id: int, error: str, reason: str) -> None:
        await execute(conn, "dead_letter_event", id=event_id, error=error)
        self.state.metrics.events_dead.labels(reason).inc()
        log.warning("event_dead_lettered", event_id=event_id, error=error)

    def _observe(self, batch: list[Claimed]) -> None:
        now = self.state.clock.server_now().timestamp()  # the rows were stamped by the server
        self.state.metrics.drain_latency.observe_many(
            [max(0.0, now - row["created_at"].timestamp()) for row in batch]
        )
        self.state.metrics.events_processed.inc(len(batch))


class TooManyQuarantined(Exception):
    """The one-by-one fallback would quarantine more than ``MAX_BISECTED`` mentors of one
    batch: the error is the engine's, not the rows'. Raised (a bug) with everything undone."""

    def __init__(self, n: int, error: Exception):
        super().__init__(f"more than {MAX_BISECTED} mentors of one batch failed ({n}): {reason_for(error)}")


def raise_batch_failure(exc: Exception) -> NoReturn:
    """Fail the batch as the work loop should see it: a condition of the database as itself;
    any other error from the database as the condition ``evaluation_failed`` (retried with
    backoff, named on /readyz with the server's message), not as a bug."""
    if condition_of(exc) is not None:
        raise exc
    raise ConditionError(Condition("evaluation_failed", sqlstate_of(exc), reason_for(exc))) from exc


async def prune_loop(
    pool: asyncpg.Pool[Any],
    state: RuntimeState,
    *,
    retention_seconds: float,
    every: float = 60.0,
    health: LoopHealth | None = None,
) -> None:
    """Delete processed events past retention, in small batches, off the hot path."""

    async def step() -> bool:
        async with pool.acquire() as conn:
            while not state.stopping.is_set():
                status = await execute(
                    conn, "prune_processed_events", retention_secs=retention_seconds, batch_size=5000
                )
                if int(status.split()[-1]) < 5000:
                    break
        return False

    await Worker("prune", step, stopping=state.stopping, poll_interval=every, health=health).run()
