"""Calendar days that fall between two sweeps (issue 16, item 8).

A local day can be 23 hours long: New York's 14 March 2027 runs from 05:00 UTC to 04:00 UTC next
day, so with ``SCENARIO_SWEEP_DAILY_AT=04:30`` (UTC) no sweep instant falls inside it — and any
sweep interval of 23 hours or more can step over a whole day somewhere on Earth. Before the fix a
mentor who joined on 14 March was never greeted. Now an anniversary stays due for the rule's
``grace_days`` local days after it (default 1): greeted at the first sweep after the day, up to
that many days late, alike by the incremental sweep, the full sweep and the single-mentor path.

Every instant below is computed by hand (and the scheduler's own period arithmetic is asked
where the sweep instants come from).
"""

from __future__ import annotations

import datetime as dt

from tests.support.short_days import NEW_YORK, UTC, daily_sweeps


def test_no_daily_0430_utc_sweep_falls_on_new_yorks_14_march_2027() -> None:
    day_start = dt.datetime(2027, 3, 14, tzinfo=NEW_YORK)
    day_end = dt.datetime(2027, 3, 15, tzinfo=NEW_YORK)
    assert day_start == dt.datetime(2027, 3, 14, 5, tzinfo=UTC)  # EST, UTC-5
    assert day_end == dt.datetime(2027, 3, 15, 4, tzinfo=UTC)  # EDT, UTC-4: a 23-hour day
    sweeps = daily_sweeps(dt.datetime(2027, 3, 13, 5, tzinfo=UTC), 3)
    assert sweeps == [dt.datetime(2027, 3, d, 4, 30, tzinfo=UTC) for d in (13, 14, 15)]
    assert not any(day_start <= s < day_end for s in sweeps)
    # in New York: 12 March 23:30, 13 March 23:30, 15 March 00:30
    assert [s.astimezone(NEW_YORK).date().day for s in sweeps] == [12, 13, 15]
