"""One source of time: the database's clock decides, the host's clock is only measured.

The platform's triggers stamp events and activity with the server's ``now()``; an engine that
decided with the host's clock would compare those instants with another clock. A host a day
ahead sends "we miss you" to mentors 20.5 days inactive; a host two hours behind sees a mentor
who just logged activity as inactive (docs/RELIABILITY.md, "The clock rule"). So every live
decision takes its ``as_of`` from the server (``database_now``: ``clock_timestamp()``, read
after whatever the decision is about was claimed) and passes it down explicitly; nothing deep
in the engine reads a clock.

The host's clock is still used for waiting (how long to sleep until the next period) and for
ages shown in metrics; there it is corrected by the skew that the health loop measures on
every round trip (server clock − local clock at the midpoint of the round trip). A skew beyond
``SCENARIO_CLOCK_SKEW_WARN_SECONDS`` is reported: a warning when it crosses the threshold (and
an info line when it is back within), the gauge ``scenario_clock_skew_seconds`` and /status.

``SCENARIO_TEST_CLOCK_OFFSET_SECONDS`` (a test-suite variable, never read by configuration)
shifts :func:`local_now` only, which is how the tests put the host ahead of or behind the
database without touching the machine's clock.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from dataclasses import dataclass
from typing import Any

from scenario_engine.db.clock import database_now
from scenario_engine.db.connect import Conn
from scenario_engine.logs import get_logger

log = get_logger("scenario_engine.clock")
TEST_OFFSET_ENV = "SCENARIO_TEST_CLOCK_OFFSET_SECONDS"


def _test_offset() -> dt.timedelta:
    raw = os.environ.get(TEST_OFFSET_ENV)
    return dt.timedelta(seconds=float(raw)) if raw else dt.timedelta(0)


_OFFSET = _test_offset()


def local_now() -> dt.datetime:
    """The host's clock (shifted by the test offset, if any): for measuring and waiting only."""
    return dt.datetime.now(dt.UTC) + _OFFSET


@dataclass(frozen=True)
class ServerTime:
    """One reading of the server's clock, carried forward by the monotonic clock: for a decision
    made a little after the reading (a push's give-up check after its send), without another
    round trip and without the host's wall clock."""

    at: dt.datetime
    monotonic: float

    @classmethod
    async def read(cls, conn: Conn) -> ServerTime:
        return cls(await database_now(conn), time.monotonic())

    def now(self) -> dt.datetime:
        return self.at + dt.timedelta(seconds=time.monotonic() - self.monotonic)


@dataclass
class Clock:
    """The measured skew of this host against the database, as the health loop last saw it."""

    warn_after_seconds: float = 5.0
    skew_seconds: float | None = None  # server − local; None until first measured
    rtt_seconds: float | None = None
    measured_at: dt.datetime | None = None  # server time of the last measurement
    _reported: bool = False

    def observe(self, sent: dt.datetime, server: dt.datetime, received: dt.datetime) -> float:
        """Record one round trip: ``sent``/``received`` on the local clock around a query that
        returned the server's ``clock_timestamp()``; the server read it about half-way."""
        rtt = (received - sent).total_seconds()
        midpoint = sent + (received - sent) / 2
        self.skew_seconds = (server - midpoint).total_seconds()
        self.rtt_seconds = rtt
        self.measured_at = server
        self._report()
        return self.skew_seconds

    @property
    def beyond_threshold(self) -> bool:
        return self.skew_seconds is not None and abs(self.skew_seconds) > self.warn_after_seconds

    def _report(self) -> None:
        """Once per crossing, not at every probe: a steady skew is one warning, not one every 2 s."""
        if self.beyond_threshold and not self._reported:
            self._reported = True
            log.warning(
                "clock_skew",
                skew_seconds=round(self.skew_seconds or 0.0, 3),
                threshold_seconds=self.warn_after_seconds,
                hint="the host's clock differs from the database's; decisions use the database's "
                "clock, but fix the host's time sync (chrony/ntpd)",
            )
        elif self._reported and not self.beyond_threshold:
            self._reported = False
            log.info("clock_skew_resolved", skew_seconds=round(self.skew_seconds or 0.0, 3))

    def server_now(self) -> dt.datetime:
        """The local clock corrected by the last measured skew: for waits and displayed ages,
        never for a decision (those read :func:`database_now`)."""
        return local_now() + dt.timedelta(seconds=self.skew_seconds or 0.0)

    def view(self) -> dict[str, Any]:
        return {
            "skew_seconds": None if self.skew_seconds is None else round(self.skew_seconds, 3),
            "round_trip_seconds": None if self.rtt_seconds is None else round(self.rtt_seconds, 4),
            "measured_at": self.measured_at.isoformat() if self.measured_at else None,
            "warn_after_seconds": self.warn_after_seconds,
            "skewed": self.beyond_threshold,
        }
