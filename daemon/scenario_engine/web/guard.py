"""Connection limits for the status server: a slowloris must not starve the probes.

aiohttp bounds the size of a request's headers but neither how many connections are open nor
how long a client may take to send its headers. Before this guard, 1,100 half-sent requests on
a status port under the default 1,024-file limit used every descriptor: /healthz stopped
answering (an orchestrator would restart a working daemon), the database pool could not
reconnect, and asyncio printed a traceback for every failed accept (666k in 95 s).

``ConnectionGuard`` wraps aiohttp's protocol factory (``web.Server``) and
- keeps at most ``limit`` connections open, far below the file limit (``connection_limit``);
- gives each connection ``header_seconds`` to send its request's headers, then closes it;
- closes any connection after ``request_seconds`` (each serves one request: the server answers
  with ``Connection: close``, so an idle keep-alive connection cannot hold a slot);
- when full, makes room for a newcomer by closing the oldest connection that has still not sent
  its headers. A probe sends its request at once and is read within a loop iteration, long
  before ``limit`` newer connections could push it out, so it is served while half-sent
  requests are what gets dropped. Only when every slot is busy serving a request is a
  newcomer turned away.
"""

from __future__ import annotations

import asyncio
import resource
from collections.abc import Callable

MAX_CONNECTIONS = 512  # probes, a scraper and a few people need far fewer
HEADER_SECONDS = 5.0  # a request whose headers are not in by then is closed
REQUEST_SECONDS = 30.0  # the slowest handler (the programme page) gives up after 10 s
_END_OF_HEADERS = (b"\r\n\r\n", b"\n\n")


def connection_limit(maximum: int = MAX_CONNECTIONS) -> int:
    """At most ``maximum``, and at most half the open-file limit: the rest is headroom for the
    database connections, the push client and the process itself (a few dozen)."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return maximum
    return max(4, min(maximum, soft // 2))


class ConnectionGuard:
    """A protocol factory for ``loop.create_server`` wrapping aiohttp's (see module doc)."""

    def __init__(
        self,
        factory: Callable[[], asyncio.Protocol],
        *,
        limit: int,
        header_seconds: float = HEADER_SECONDS,
        request_seconds: float = REQUEST_SECONDS,
        on_drop: Callable[[str], None] | None = None,
    ):
        self.factory = factory
        self.on_drop = on_drop  # called with "evicted", "rejected" or "timed_out" (a metric)
        self.limit = limit
        self.header_seconds = header_seconds
        self.request_seconds = request_seconds
        self.open: dict[GuardedConnection, None] = {}  # insertion order: oldest first
        self.evicted = 0  # closed to make room for a newcomer
        self.rejected = 0  # turned away: every slot busy serving a request
        self.timed_out = 0  # headers or request too slow

    @property
    def backlog(self) -> int:
        """The listen backlog: asyncio accepts up to this many sockets in one go before any of
        them reaches ``connection_made`` (and can be turned away), so ``limit + backlog`` is what
        the server may hold at once; it stays well inside the file limit."""
        return max(8, min(128, self.limit // 4))

    def __call__(self) -> GuardedConnection:
        return GuardedConnection(self)

    def admit(self, conn: GuardedConnection) -> bool:
        """Make room for ``conn`` if needed; False when there is none to make."""
        if len(self.open) >= self.limit and not self._evict_one():
            self.rejected += 1
            self.dropped("rejected")
            return False
        self.open[conn] = None
        return True

    def dropped(self, reason: str) -> None:
        if self.on_drop is not None:
            self.on_drop(reason)

    def _evict_one(self) -> bool:
        for conn in self.open:  # oldest first
            if not conn.headers_done:
                self.evicted += 1
                self.dropped("evicted")
                conn.close()
                return True
        return False


class GuardedConnection(asyncio.Protocol):
    """One connection: aiohttp's protocol inside, a deadline around it."""

    def __init__(self, guard: ConnectionGuard):
        self.guard = guard
        self.inner: asyncio.Protocol | None = None
        self.transport: asyncio.Transport | None = None
        self.headers_done = False
        self._tail = b""
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        if not self.guard.admit(self):
            transport.abort()
            return
        self.transport = transport
        self._arm(self.guard.header_seconds)
        self.inner = self.guard.factory()
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.inner is None:
            return
        if not self.headers_done:
            seen = self._tail + data
            if any(end in seen for end in _END_OF_HEADERS):
                self.headers_done = True
                self._arm(self.guard.request_seconds)
            else:
                self._tail = seen[-3:]
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.guard.open.pop(self, None)
        if self.inner is not None:
            self.inner.connection_lost(exc)

    def close(self) -> None:
        """Drop the connection now (no answer: the client was too slow or is in the way)."""
        self._disarm()
        self.guard.open.pop(self, None)
        if self.transport is not None:
            self.transport.abort()

    def _expire(self) -> None:
        self._timer = None
        self.guard.timed_out += 1
        self.guard.dropped("timed_out")
        self.close()

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._timer = asyncio.get_running_loop().call_later(seconds, self._expire)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
