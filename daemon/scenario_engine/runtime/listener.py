"""The LISTEN connection: a wake-up hint for the drain, never the source of truth.

asyncpg neither reconnects nor notices a dead LISTEN socket by itself, so this loop
pings on an interval (with a timeout), watches for termination, reconnects with jittered
backoff, and pokes the drain after every (re)connect so that whatever was written while
we were deaf is caught up from the event table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import asyncpg
from anyio.abc import TaskStatus

from scenario_engine.db.connect import connect
from scenario_engine.events import EventError, parse_payload
from scenario_engine.logs import get_logger
from scenario_engine.runtime.backoff import TRANSIENT_DB_ERRORS, Backoff
from scenario_engine.runtime.state import RuntimeState

CHANNEL = "scenario_events"
PUSH_CHANNEL = "scenario_push"
log = get_logger("scenario_engine.listener")


def _setter(event: anyio.Event) -> Callable[[object], None]:
    return lambda _conn: event.set()


class Listener:
    def __init__(self, dsn: str, state: RuntimeState, *, ping_interval: float, ping_timeout: float):
        self.dsn = dsn
        self.state = state
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        try:
            parse_payload(str(payload))
        except EventError as exc:
            self.state.metrics.events_malformed.inc()
            log.warning("notify_payload_malformed", error=str(exc), payload=str(payload)[:200])
            # Still a sign that something changed: let the drain look at the table.
        self.state.metrics.events_received.inc()
        self.state.poke_drain()

    def _on_push(self, _conn: object, _pid: int, _channel: str, _payload: object) -> None:
        self.state.dispatch_wakeup.poke()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        backoff = Backoff()
        task_status.started()
        while not self.state.stopping.is_set():
            conn: asyncpg.Connection[Any] | None = None
            try:
                conn = await connect(self.dsn, application_name="scenario-engine listener")
                lost = anyio.Event()
                conn.add_termination_listener(_setter(lost))
                await conn.add_listener(CHANNEL, self._on_notify)
                await conn.add_listener(PUSH_CHANNEL, self._on_push)
                self.state.set_listener(True)
                backoff.reset()
                log.info("listener_connected")
                # catch up on what happened while we were not listening
                self.state.poke_drain()
                self.state.dispatch_wakeup.poke()
                await self._watch(conn, lost)
            except TRANSIENT_DB_ERRORS as exc:
                if self.state.listener_ok:
                    log.warning("listener_lost", error=repr(exc))
                else:
                    log.debug("listener_connect_failed", error=repr(exc))
            finally:
                self.state.set_listener(False)
                if conn is not None:
                    conn.terminate()
            if not self.state.stopping.is_set():
                with anyio.move_on_after(backoff.next_delay()):
                    await self.state.stopping.wait()

    async def _watch(self, conn: asyncpg.Connection[Any], lost: anyio.Event) -> None:
        while not self.state.stopping.is_set():
            with anyio.move_on_after(self.ping_interval):
                await lost.wait()
            if lost.is_set() or conn.is_closed():
                raise ConnectionError("LISTEN connection terminated")
            with anyio.fail_after(self.ping_timeout):
                await conn.execute("SELECT 1")
