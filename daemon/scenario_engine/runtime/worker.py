"""One work loop for every long-running worker: drain, dispatcher, listener, pruner, health.

Each round: wait for a wake-up (NOTIFY), the poll timeout or stop; run one step; repeat
at once while the step says there is more. The poll timeout is a number, or a callable asked
before each wait (the drain's adaptive poll: short while events flow, long when idle). A step
that fails because the database went away — including when the error arrives wrapped in an
``ExceptionGroup`` from a task group — is retried after a jittered backoff, never fatal: the
process stays up, /readyz says 503, and the next successful step catches up from the tables.
Any other error is a bug and propagates (the task group ends the process; systemd restarts it).

The loop reports its phase to a ``LoopHealth`` so that /healthz and the systemd watchdog
can tell a working process from one whose loop is blocked.

Loops with a shape of their own (the scheduler) reuse the pieces: ``condition_of`` to
classify, ``Backoff`` to wait and ``sleep_or_stop``; ``retry_transient`` runs a single
database call that must survive an outage (the start-up checks).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

from scenario_engine.db.errors import Condition, condition_of, first_leaf
from scenario_engine.logs import get_logger
from scenario_engine.runtime.backoff import Backoff
from scenario_engine.runtime.state import LoopHealth, Wakeup, wait_for_wakeup

log = get_logger("scenario_engine.worker")
T = TypeVar("T")

# A step returns True when it should run again at once (a full batch), False to wait.
Step = Callable[[], Awaitable[bool]]
# Seconds to wait for a wake-up before the next step: fixed, or asked anew before each wait.
PollInterval = float | Callable[[], float]
ErrorHook = Callable[[BaseException], Awaitable[None] | None]
DEFAULT_STUCK_AFTER = 300.0


async def sleep_or_stop(stopping: anyio.Event, seconds: float) -> None:
    """Sleep ``seconds`` unless stop is asked first."""
    with anyio.move_on_after(seconds):
        await stopping.wait()


class Worker:
    def __init__(
        self,
        name: str,
        step: Step,
        *,
        stopping: anyio.Event,
        poll_interval: PollInterval,
        wakeup: Wakeup | None = None,
        health: LoopHealth | None = None,
        backoff: Backoff | None = None,
        on_transient: ErrorHook | None = None,
    ):
        self.name = name
        self.step = step
        self.stopping = stopping
        self.poll_interval = poll_interval
        self.wakeup = wakeup
        self.health = health or LoopHealth(name, DEFAULT_STUCK_AFTER)
        self.backoff = backoff or Backoff()
        self.on_transient = on_transient

    async def run(self) -> None:
        try:
            while not self.stopping.is_set():
                event = self.wakeup.renew() if self.wakeup is not None else anyio.Event()
                self.health.enter("step")
                try:
                    more = await self.step()
                except Exception as exc:
                    condition = condition_of(exc)
                    if condition is None:
                        raise
                    await self._failed(exc, condition)
                    continue
                self.health.steps += 1
                self.health.condition = None
                if self.backoff.attempt:  # the step failed before this success
                    log.info("worker_recovered", worker=self.name, after_errors=self.backoff.attempt)
                self.backoff.reset()
                if more:
                    continue
                wait = self.poll_interval() if callable(self.poll_interval) else self.poll_interval
                self.health.enter("idle", wait)
                await wait_for_wakeup(event, self.stopping, wait)
        finally:
            self.health.enter("stopped")

    async def _failed(self, exc: BaseException, condition: Condition) -> None:
        self.health.errors += 1
        self.health.last_error = repr(first_leaf(exc))
        self.health.condition = condition
        if self.on_transient is not None:
            result = self.on_transient(exc)
            if result is not None:
                await result
        await _back_off(
            exc,
            condition,
            self.backoff,
            self.stopping,
            self.health,
            "worker_database_error",
            worker=self.name,
        )


async def _back_off(
    exc: BaseException,
    condition: Condition,
    backoff: Backoff,
    stopping: anyio.Event,
    health: LoopHealth | None,
    event: str,
    **fields: object,
) -> None:
    """Log the condition, then wait the next backoff delay (or until stop)."""
    delay = backoff.next_delay()
    log.warning(
        event,
        condition=condition.name,
        error=repr(first_leaf(exc)),
        attempt=backoff.attempt,
        retry_in=round(delay, 3),
        **fields,
    )
    if health is not None:
        health.enter("backoff", delay)
    await sleep_or_stop(stopping, delay)


async def retry_transient(call: Callable[[], Awaitable[T]], *, stopping: anyio.Event, what: str) -> T | None:
    """Run ``call`` until it succeeds or stop is asked (then None), backing off on
    conditions of the database and re-raising anything else."""
    backoff = Backoff()
    while not stopping.is_set():
        try:
            return await call()
        except Exception as exc:
            condition = condition_of(exc)
            if condition is None:
                raise
            await _back_off(exc, condition, backoff, stopping, None, "database_unavailable", what=what)
    return None
