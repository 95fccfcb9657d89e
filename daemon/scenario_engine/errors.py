"""Errors shared by the process configuration (config.py) and the rules (domain/rules.py)."""

from __future__ import annotations


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
