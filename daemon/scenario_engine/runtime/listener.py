"""The LISTEN connection: a wake-up hint for the drain, never the source of truth.

asyncpg neither reconnects nor notices a dead LISTEN socket by itself, so this loop (the
shared work loop of runtime/worker.py) pings on an interval (with a timeout), wakes on
termination, reconnects with the same jittered backoff and transient-error classification
as the other workers, and pokes the drain after every (re)connect so that whatever was written while
we were deaf is caught up from the event table.

A notification is only "something changed": any role that can connect may LISTEN and NOTIFY on
these channels (Postgres has no privilege for either), so the payload is never read, parsed or
logged. Every notification costs a counter increment; a flood of them is coalesced into at most
one wake-up of the drain (or the dispatcher) per ``WAKE_GAP``, so it costs a few extra polls a
second and nothing else (docs/SECURITY.md), while a real change still wakes the drain at once.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

import anyio
import asyncpg
from anyio.abc import TaskStatus

from scenario_engine.db.connect import connect
from scenario_engine.db.errors import first_leaf
from scenario_engine.db.queries import query
from scenario_engine.logs import get_logger
from scenario_engine.runtime.state import LoopHealth, RuntimeState, Wakeup
from scenario_engine.runtime.worker import Worker

CHANNEL = "scenario_events"
PUSH_CHANNEL = "scenario_push"
CONNECT_TIMEOUT = 10.0  # a connect attempt that hangs (half-open network) is retried
# At most one wake-up per this many seconds from notifications: a flood of NOTIFY costs the
# daemon ~20 extra drain polls a second, and a real change waits at most this long.
WAKE_GAP = 0.05
log = get_logger("scenario_engine.listener")


class Coalesced:
    """Calls ``poke`` for a notification, at most once per ``gap`` seconds: the first one after
    a quiet gap at once, the rest of a burst once at the end of the gap (never dropped, so the
    last change of a burst is still seen). Runs in the event loop (asyncpg's callbacks do)."""

    def __init__(self, poke: Callable[[], None], gap: float = WAKE_GAP):
        self._poke = poke
        self._gap = gap
        self._last = -math.inf
        self._pending: asyncio.TimerHandle | None = None

    def __call__(self) -> None:
        if self._pending is not None:
            return  # a wake-up is already due: this notification rides on it
        loop = asyncio.get_running_loop()
        wait = self._last + self._gap - loop.time()
        if wait <= 0:
            self._fire()
        else:
            self._pending = loop.call_later(wait, self._fire)

    def _fire(self) -> None:
        self._pending = None
        self._last = asyncio.get_running_loop().time()
        self._poke()


class Listener:
    def __init__(
        self,
        dsn: str,
        state: RuntimeState,
        *,
        ping_interval: float,
        ping_timeout: float,
        health: LoopHealth | None = None,
    ):
        self.dsn = dsn
        self.state = state
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.connect_timeout = max(ping_timeout, CONNECT_TIMEOUT)
        self.health = health
        self._conn: asyncpg.Connection[Any] | None = None
        self._lost = Wakeup()
        self._wake_drain = Coalesced(state.poke_drain)
        self._wake_dispatch = Coalesced(state.dispatch_wakeup.poke)

    def _on_notify(self, _conn: object, _pid: int, _channel: str, _payload: object) -> None:
        # The payload is not ours to trust (anyone may NOTIFY): never read, never logged.
        self.state.metrics.events_received.inc()
        self._wake_drain()

    def _on_push(self, _conn: object, _pid: int, _channel: str, _payload: object) -> None:
        self._wake_dispatch()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """(Re)connect and ping on the shared work loop: a ping is one step, the ping interval
        its poll, a termination of the connection its wake-up."""
        task_status.started()
        try:
            await Worker(
                "listener",
                self._step,
                stopping=self.state.stopping,
                poll_interval=self.ping_interval,
                wakeup=self._lost,
                health=self.health,
                on_transient=self._on_lost,
            ).run()
        finally:
            self._drop()

    async def _step(self) -> bool:
        conn = self._conn
        if conn is None or conn.is_closed():
            self._drop()
            await self._connect()
            return False
        with anyio.fail_after(self.ping_timeout):
            await conn.execute(query("listen_ping"))
        return False

    async def _connect(self) -> None:
        with anyio.fail_after(self.connect_timeout):
            conn = await connect(self.dsn, application_name="scenario-engine listener")
        self._conn = conn
        conn.add_termination_listener(lambda _c: self._lost.poke())
        await conn.add_listener(CHANNEL, self._on_notify)
        await conn.add_listener(PUSH_CHANNEL, self._on_push)
        self.state.set_listener(True)
        log.info("listener_connected")
        # catch up on what happened while we were not listening
        self.state.poke_drain()
        self.state.dispatch_wakeup.poke()

    def _on_lost(self, exc: BaseException) -> None:
        if self.state.listener_ok:
            log.warning("listener_lost", error=repr(first_leaf(exc)))
        self._drop()

    def _drop(self) -> None:
        self.state.set_listener(False)
        if self._conn is not None:
            self._conn.terminate()
            self._conn = None
