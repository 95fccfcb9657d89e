"""Time zones: the one place the engine turns a mentor's zone name into a ZoneInfo.

What counts as a valid zone is decided once, by Postgres: migration 0011 makes the reference
CHECK (``public.scenario_is_valid_timezone``) accept exactly the IANA names listed in
``pg_timezone_names``, and the test suite checks that each of those loads here. A row that
got past a looser CHECK (or a platform schema without one) — ``'utc'``, ``'XYZ-167'`` — is
not guessed at: it raises ``UnknownTimezone`` and the mentor is quarantined until it is fixed.
"""

from __future__ import annotations

import functools
import zoneinfo


class UnknownTimezone(ValueError):
    """A zone name Python's zoneinfo cannot load (so no calendar date can be computed)."""

    def __init__(self, name: str):
        super().__init__(f"unknown time zone {name!r} (expected an IANA name such as 'Europe/Oslo')")


@functools.lru_cache(maxsize=1024)
def load_zone(name: str) -> zoneinfo.ZoneInfo:
    """The ZoneInfo for an IANA name in its exact case, or ``UnknownTimezone``."""
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError, TypeError):
        # ValueError: malformed keys ('../x', ''); OSError/TypeError: unreadable files.
        raise UnknownTimezone(name) from None


@functools.cache
def known_zones() -> tuple[str, ...]:
    """Every name this machine's zoneinfo can load (sorted): the set-based queries use it to
    find, in SQL, the mentors that ``load_zone`` would reject."""
    names: list[str] = []
    for name in sorted(zoneinfo.available_timezones()):
        try:
            load_zone(name)
        except UnknownTimezone:
            continue
        names.append(name)
    return tuple(names)
