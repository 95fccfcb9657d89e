"""A quiet window, ``"HH:MM-HH:MM"``: the one parser that the rules file's ``quiet_hours`` and
``SCENARIO_QUIET_HOURS`` both use (the dispatcher holds a push due inside it, runtime/quiet.py)."""

from __future__ import annotations

import datetime as dt


def parse_quiet_hours(text: str) -> tuple[dt.time, dt.time]:
    """'21:00-08:00' → (21:00, 08:00). Equal ends would be a window of nothing or of all day."""
    try:
        start_s, end_s = text.split("-")
        start, end = dt.time.fromisoformat(start_s.strip()), dt.time.fromisoformat(end_s.strip())
    except ValueError:
        raise ValueError("must look like HH:MM-HH:MM, e.g. 21:00-08:00") from None
    if start == end:
        raise ValueError("start and end must differ")
    return start, end
