"""Jittered exponential backoff for the work loops.

Which errors a loop backs off on is the database's business (db/errors.py: ``condition_of``,
``is_transient``): a condition of the database (the server away, read-only, out of disk, a lock
or statement timeout, a schema mismatch …) is never fatal to the daemon; anything else is a bug
and ends the process.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


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
