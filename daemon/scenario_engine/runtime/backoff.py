"""Jittered exponential backoff, and which errors mean "the database went away".

Losing the database is never fatal to the daemon: every loop that talks to it retries
the errors classified here, with backoff. Anything else is a bug and ends the process.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import asyncpg
from asyncpg.exceptions import InternalClientError

# Errors that mean "the database is (temporarily) unreachable", not "our code is wrong".
# InternalClientError ("another operation is in progress", "protocol in an unexpected
# state") is what asyncpg raises on a connection whose socket died mid-operation, e.g. a
# pool connection handed out once more after the server was restarted under it.
TRANSIENT_DB_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    InternalClientError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
)


# Any database failure, transient or not: for best-effort side queries (status page, goodbye,
# rule bookkeeping) that must never take a loop down.
DB_ERRORS: tuple[type[BaseException], ...] = (*TRANSIENT_DB_ERRORS, asyncpg.PostgresError)


def is_transient(exc: BaseException) -> bool:
    """True if ``exc`` only says the database was lost: a transient error, or an exception
    group (from a task group) every leaf of which is one. A group that also holds a bug is
    not transient, so the bug is not retried away."""
    if isinstance(exc, BaseExceptionGroup):
        return all(is_transient(inner) for inner in exc.exceptions)
    return isinstance(exc, TRANSIENT_DB_ERRORS)


def first_leaf(exc: BaseException) -> BaseException:
    """The first non-group exception inside ``exc``, for a log line that says what happened."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


@dataclass
class Backoff:
    initial: float = 0.2
    maximum: float = 10.0
    factor: float = 2.0
    attempt: int = 0

    def next_delay(self) -> float:
        """Jitter in [ceiling/2, ceiling], ceiling = min(max, initial * factor**attempt), so that
        instances that lost the database together do not reconnect in lock step."""
        ceiling = min(self.maximum, self.initial * self.factor**self.attempt)
        self.attempt += 1
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0
