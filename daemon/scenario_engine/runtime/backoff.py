"""Jittered exponential backoff, and which errors a work loop backs off on.

A condition of the database (db/errors.py: the server away, read-only, out of disk, a lock or
statement timeout, a schema mismatch …) is never fatal to the daemon: every loop that talks to
it retries, with backoff. Anything else is a bug and ends the process.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from scenario_engine.db.errors import (
    CONNECTION_ERRORS,
    DB_ERRORS,
    Condition,
    condition_of,
    first_leaf,
)

# The connection-loss errors, under the name the runtime used before conditions were
# classified by SQLSTATE (db/errors.py). Prefer ``is_transient`` / ``condition_of``.
TRANSIENT_DB_ERRORS = CONNECTION_ERRORS

__all__ = [
    "DB_ERRORS",
    "TRANSIENT_DB_ERRORS",
    "Backoff",
    "Condition",
    "condition_of",
    "first_leaf",
    "is_transient",
]


def is_transient(exc: BaseException) -> bool:
    """True if ``exc`` is a condition of the database (db/errors.py), not a bug: retried with
    backoff. An exception group is transient only if every leaf is."""
    return condition_of(exc) is not None


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
