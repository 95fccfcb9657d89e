"""What the running daemon knows about itself, for /readyz, /status and sd_notify."""

from __future__ import annotations

import datetime as dt
import os
import socket
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from scenario_engine.db.errors import Condition
from scenario_engine.runtime.clock import Clock
from scenario_engine.runtime.fleet import Fleet
from scenario_engine.runtime.metrics import Metrics


class Wakeup:
    """A re-armable wake-up: anyio events cannot be cleared, so each round takes a new one.

    Renew *before* doing the work, so that a poke arriving during the work wakes the next
    round instead of being lost.
    """

    def __init__(self) -> None:
        self._event = anyio.Event()

    def poke(self) -> None:
        self._event.set()

    def renew(self) -> anyio.Event:
        self._event = anyio.Event()
        return self._event


async def wait_for_wakeup(event: anyio.Event, stopping: anyio.Event, poll: float) -> None:
    """Return on the wake-up, on stop, or after ``poll`` seconds, whichever is first."""
    with anyio.move_on_after(poll):
        async with anyio.create_task_group() as tg:

            async def on_stop() -> None:
                await stopping.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(on_stop)
            await event.wait()
            tg.cancel_scope.cancel()


Phase = Literal["starting", "step", "idle", "backoff", "stopped"]


@dataclass
class LoopHealth:
    """Liveness of one work loop, for /healthz and the systemd watchdog.

    A process can be alive while its work is not: a step blocked on a lock, a send that
    never returns, a wait that never ends. The loop records which phase it is in and
    since when; ``stuck`` judges that against bounds, so that "alive" means "working".
    """

    name: str
    stuck_after: float  # a step (or a start) longer than this is stuck
    phase: Phase = "starting"
    since: float = field(default_factory=time.monotonic)
    expected: float = 0.0  # how long the current wait should last at most
    steps: int = 0
    errors: int = 0
    last_error: str | None = None
    # The database condition its last step failed on (db/errors.py); None once a step succeeds.
    condition: Condition | None = None

    def enter(self, phase: Phase, expected: float = 0.0) -> None:
        self.phase = phase
        self.expected = expected
        self.since = time.monotonic()

    def stuck(self, now: float) -> str | None:
        """Why this loop counts as stuck at ``now`` (monotonic seconds), or None."""
        elapsed = now - self.since
        if self.phase == "stopped":
            return None
        if self.phase in ("step", "starting"):
            if elapsed > self.stuck_after:
                return f"{self.phase} running for {elapsed:.0f} s (bound {self.stuck_after:g} s)"
            return None
        if elapsed > self.expected + self.stuck_after:
            return f"{self.phase} for {elapsed:.0f} s, expected at most {self.expected:g} s"
        return None

    def view(self, now: float) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "for_seconds": round(now - self.since, 3),
            "steps": self.steps,
            "errors": self.errors,
            "last_error": self.last_error,
            "condition": self.condition.name if self.condition else None,
            "stuck": self.stuck(now),
        }


@dataclass
class RuntimeState:
    instance_id: str
    metrics: Metrics = field(default_factory=Metrics)
    started_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    stopping: anyio.Event = field(default_factory=anyio.Event)
    drain_wakeup: Wakeup = field(default_factory=Wakeup)
    dispatch_wakeup: Wakeup = field(default_factory=Wakeup)
    database_ok: bool = False
    listener_ok: bool = False
    leader: bool = False
    last_sweep: dict[str, Any] | None = None
    next_sweep_at: dt.datetime | None = None
    backlogs: dict[str, Any] = field(default_factory=dict)
    status_port: int | None = None
    loops: dict[str, LoopHealth] = field(default_factory=dict)
    fleet: Fleet = field(default_factory=Fleet)  # this instance's rules against the leader's
    clock: Clock = field(default_factory=Clock)  # the host's clock against the database's
    # What the periodic installation check (runtime/hooks.py) last found wrong: unready while any.
    installation_problems: list[str] = field(default_factory=list)
    # The rules file's organisation names (issue 20), for the programme page; set at start and
    # at each applied reload.
    organization_names: dict[uuid.UUID, str] = field(default_factory=dict)
    # Conditions reported by loops that are not watched (the scheduler), by loop name.
    other_conditions: dict[str, Condition] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.metrics.registry.register(_ConditionCollector(self))

    def watch(self, name: str, stuck_after: float) -> LoopHealth:
        """Register a work loop whose liveness /healthz and the watchdog depend on."""
        health = LoopHealth(name, stuck_after)
        self.loops[name] = health
        return health

    def stuck_loops(self, now: float | None = None) -> dict[str, str]:
        """The loops that are stuck, with why; empty when every loop is making progress."""
        at = time.monotonic() if now is None else now
        out = {}
        for name, health in self.loops.items():
            reason = health.stuck(at)
            if reason is not None:
                out[name] = reason
        return out

    def conditions(self) -> dict[str, Condition]:
        """The database conditions the loops are backing off on, by loop: each makes the
        daemon unready until that loop's next step succeeds."""
        found = {name: h.condition for name, h in self.loops.items() if h.condition is not None}
        return {**found, **self.other_conditions}

    def set_condition(self, loop: str, condition: Condition | None) -> None:
        """For a loop without a LoopHealth: report (or, with None, clear) its condition."""
        if condition is None:
            self.other_conditions.pop(loop, None)
        else:
            self.other_conditions[loop] = condition

    def readiness(self) -> dict[str, Any]:
        """The /readyz body: ready or not, and which database condition, if any, is why."""
        conditions = self.conditions()
        first = next(iter(conditions.values()), None)
        return {
            "ready": self.ready,
            "database": self.database_ok,
            "listener": self.listener_ok,
            "condition": first.name if first else None,
            # Names only: /readyz is open to anyone who reaches the port, and the server's
            # message can name schema objects or file paths; /status (token) has the detail.
            "conditions": {
                loop: {"condition": c.name, "sqlstate": c.sqlstate} for loop, c in conditions.items()
            },
            "reasons": self.not_ready_because(),
            "installation_problems": self.installation_problems,
        }

    @property
    def started(self) -> bool:
        """Up and connected: what systemd is told once (READY=1). Unlike ``ready`` it ignores a
        rules mismatch, which an operator resolves without restarting the unit."""
        return self.database_ok and self.listener_ok and not self.stopping.is_set()

    @property
    def ready(self) -> bool:
        return (
            self.started
            and not self.evaluation_paused
            and not self.installation_problems
            and not self.conditions()
        )

    @property
    def evaluation_paused(self) -> bool:
        """The drain must claim no event: this follower's rules differ from the leader's
        (runtime/fleet.py). The leader is never paused."""
        return self.fleet.paused(self.leader)

    def not_ready_because(self) -> list[str]:
        """Why /readyz says 503, in words an operator can search for."""
        reasons = []
        if not self.database_ok:
            reasons.append("database_unreachable")
        if not self.listener_ok:
            reasons.append("listener_down")
        if self.stopping.is_set():
            reasons.append("stopping")
        if self.evaluation_paused:
            reasons.append("rules_mismatch" if self.fleet.mismatch else "rules_unchecked")
        if self.installation_problems:  # runtime/hooks.py: e.g. a dropped change-capture trigger
            reasons.append("installation_incomplete")
        reasons += sorted({c.name for c in self.conditions().values()})  # db/errors.py
        return reasons

    def set_leader(self, value: bool) -> None:
        self.leader = value
        self.metrics.leader.set(1 if value else 0)

    def set_database(self, ok: bool) -> None:
        self.database_ok = ok
        self.metrics.database_up.set(1 if ok else 0)

    def set_listener(self, ok: bool) -> None:
        self.listener_ok = ok
        self.metrics.listener_up.set(1 if ok else 0)

    def poke_drain(self) -> None:
        self.drain_wakeup.poke()

    def status(self) -> dict[str, Any]:
        return {
            "instance_id": self.instance_id,
            "role": "leader" if self.leader else "follower",
            "ready": self.ready,
            "database": "up" if self.database_ok else "down",
            "listener": "up" if self.listener_ok else "down",
            "conditions": {loop: c.view() for loop, c in self.conditions().items()},
            "stopping": self.stopping.is_set(),
            "started_at": self.started_at.isoformat(),
            "last_sweep": self.last_sweep,
            "next_sweep_at": self.next_sweep_at.isoformat() if self.next_sweep_at else None,
            "backlogs": self.backlogs,
            "loops": {name: h.view(time.monotonic()) for name, h in self.loops.items()},
            "rules": self.fleet.view(self.leader),
            "clock": self.clock.view(),
            "installation_problems": self.installation_problems,
        }


class _ConditionCollector(Collector):
    """``scenario_database_condition{loop, condition}``: 1 for each loop backing off on a
    condition of the database, read at scrape time from the loops themselves."""

    def __init__(self, state: RuntimeState):
        self.state = state

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "scenario_database_condition",
            "1 per work loop backing off on a condition of the database (what /readyz names).",
            labels=["loop", "condition"],
        )
        for loop, condition in self.state.conditions().items():
            family.add_metric([loop, condition.name], 1.0)
        yield family


def default_instance_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"
