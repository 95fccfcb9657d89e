"""Errors shared by the process configuration (the config package) and the rules (scenarios/rules.py), and
how to look inside the exception groups a task group ends with."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """Configuration is invalid; ``problems`` lists (key, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{key}: {msg}" for key, msg in problems))


def pydantic_loc(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as a user writes the key: ``inactivity[0].threshold_days``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def find_in_group(exc: BaseException, find: Callable[[BaseException], T | None]) -> T | None:
    """What ``find`` names in ``exc`` or, for an exception group (how a task group reports a
    failure), in the first exception inside it, depth first, that it names anything in."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = find_in_group(inner, find)
            if found is not None:
                return found
        return None
    return find(exc)
