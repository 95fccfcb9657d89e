"""Outcome resolution costs what changed since the previous one (issue 18, item 3): a
resolution judges only the pending outcomes decided since, those whose window has closed and
those of mentors with platform data dated since (outcomes/resolve.py, sql/0027).

* Over a random history of activities and renewals, each dated after the previous resolution,
  the incremental resolutions give exactly the statuses the definition gives (docs/OUTCOMES.md):
  achieved when an activity (a renewal in time) is known by the instant resolved at, missed once
  the window has closed without one, pending otherwise.
* An activity inserted after a resolution but dated before it is not looked for until the
  outcome's window closes — then the outcome is judged in full once more and is achieved, never
  missed. (A full resolution at every run, as before, would have marked it achieved at once:
  this is what makes the resolution proportional to what changed.)
* A resolution at an instant before the previous one judges everything again.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from typing import Any

import asyncpg

from scenario_engine.outcomes.resolve import resolve_outcomes
from tests.db.test_outcome_windows import DECIDED, WINDOW_ENDS, mentor, outcome, status
from tests.support.factories import add_activity, add_certification

HOUR = dt.timedelta(hours=1)


async def test_incremental_resolutions_follow_the_definition(conn: asyncpg.Connection[Any]) -> None:
    rnd = random.Random(18)
    await resolve_outcomes(conn, DECIDED - HOUR)  # the mark exists: what follows is incremental
    # Activity outcomes with windows ending at various instants, certification outcomes.
    acts: dict[int, tuple[uuid.UUID, dt.datetime]] = {}
    for i in range(30):
        m = await mentor(conn)
        ends = DECIDED + dt.timedelta(hours=rnd.randint(1, 60))
        acts[await outcome(conn, m, "inactivity", f"spell{i}", ends)] = (m, ends)
    certs: dict[int, tuple[uuid.UUID, dt.datetime, int]] = {}
    for _ in range(10):
        m = await mentor(conn)
        expires = DECIDED + dt.timedelta(hours=rnd.randint(5, 60))
        cert = await add_certification(
            conn, m, issued_at=DECIDED - dt.timedelta(days=300), expires_at=expires
        )
        certs[await outcome(conn, m, "certification_expiry", str(cert), expires)] = (m, expires, cert)

    activity_at: dict[uuid.UUID, list[dt.datetime]] = {}
    renewed_at: dict[uuid.UUID, list[tuple[dt.datetime, dt.datetime]]] = {}
    previous = DECIDED
    for step in range(1, 9):
        at = DECIDED + step * 8 * HOUR
        # New platform data, each dated after the previous resolution (some after this one).
        for m, _ in rnd.sample(list(acts.values()), 6):
            when = previous + dt.timedelta(minutes=rnd.randint(1, 16 * 60))
            await add_activity(conn, m, when)
            activity_at.setdefault(m, []).append(when)
        for m, expires, _ in rnd.sample(list(certs.values()), 2):
            when = previous + dt.timedelta(minutes=rnd.randint(1, 16 * 60))
            await add_certification(conn, m, issued_at=when, expires_at=expires + dt.timedelta(days=365))
            renewed_at.setdefault(m, []).append((when, expires))
        await resolve_outcomes(conn, at)
        for decision, (m, ends) in acts.items():
            hit = any(DECIDED < t <= min(ends, at) for t in activity_at.get(m, []))
            want = "achieved" if hit else ("missed" if ends <= at else "pending")
            assert await status(conn, decision) == want, (step, decision)
        for decision, (m, expires, _) in certs.items():
            hit = any(t < e and t <= at for t, e in renewed_at.get(m, []))
            want = "achieved" if hit else ("missed" if expires <= at else "pending")
            assert await status(conn, decision) == want, (step, decision)
        previous = at


async def test_a_backdated_activity_is_judged_when_the_window_closes(conn: asyncpg.Connection[Any]) -> None:
    m = await mentor(conn)
    decision = await outcome(conn, m, "inactivity", "spell", WINDOW_ENDS)
    await resolve_outcomes(conn, DECIDED + 2 * HOUR)
    assert await status(conn, decision) == "pending"
    # Inserted now, dated before the resolution just run: not re-judged while the window is open.
    await add_activity(conn, m, DECIDED + HOUR)
    await resolve_outcomes(conn, DECIDED + 3 * HOUR)
    assert await status(conn, decision) == "pending"
    # The window closes: judged in full once more before it becomes final — achieved, not missed.
    await resolve_outcomes(conn, WINDOW_ENDS + HOUR)
    assert await status(conn, decision) == "achieved"


async def test_a_resolution_back_in_time_judges_everything(conn: asyncpg.Connection[Any]) -> None:
    m = await mentor(conn)
    decision = await outcome(conn, m, "inactivity", "spell", WINDOW_ENDS)
    await resolve_outcomes(conn, DECIDED + 5 * HOUR)
    await add_activity(conn, m, DECIDED + HOUR)  # dated before the resolution just run
    await resolve_outcomes(conn, DECIDED + 4 * HOUR)  # earlier instant: a full resolution
    assert await status(conn, decision) == "achieved"
