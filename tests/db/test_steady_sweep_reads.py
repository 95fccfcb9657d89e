"""What a steady full sweep reads per batch (issue 18: steady sweep ≤ 3 s at 1M, flat per mentor).

Two statements read the whole batch although only a few of its mentors matter in a steady sweep:

* ``inactivity_candidates`` descended the activity index once per batch mentor for the newest
  activity; now only the mentors with no activity inside the threshold window (a third of a
  steady population) get that descent — the others are found by one merge over the window;
* ``milestone_candidates`` read every batch mentor's heap row for the zone check of a yearly
  rule (a batch's random ids touch most of the table's pages); now the zone comes from
  ``peer_mentor_active_zone_idx``, and a zone too long for that index from its own small index.

The decisions must not change: every zone Python cannot load is still found (short, exactly at
the index's 200-byte limit, just over it, multi-byte, 1 MB), in a sweep's id range as in an id
array, and the inactivity candidates are the oracle's."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import asyncpg
import pytest

from scenario_engine.db.connect import Conn
from scenario_engine.db.queries import bind
from scenario_engine.evaluate import set_based_candidates, single_mentor_candidates
from scenario_engine.scenarios.base import MentorDataError
from scenario_engine.scenarios.common import range_statement
from scenario_engine.scenarios.inactivity import InactivityRule
from scenario_engine.scenarios.milestone import MilestoneRule
from scenario_engine.scenarios.registry import scenario_of
from tests.support.factories import add_activity, add_mentor

UTC = dt.UTC
AS_OF = dt.datetime(2026, 6, 15, 12, tzinfo=UTC)
YEARLY = MilestoneRule(name="sessions_year", metric="sessions", thresholds=[2, 3])
INACTIVE = InactivityRule(name="inactive_21d", threshold_days=21, cooldown_days=7)

BAD_ZONES = {
    "unknown": "Mars/Olympus",
    "at the index limit": "x" * 200,
    "just over it": "x" * 201,
    "multi-byte, over it in bytes only": "ä" * 101,
    "1 MB": "Z" * 1_000_000,
}


def _nodes(plan: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(plan, dict):
        if "Node Type" in plan:
            found.append(plan)
        for value in plan.values():
            found += _nodes(value)
    elif isinstance(plan, list):
        for item in plan:
            found += _nodes(item)
    return found


async def _explain(conn: Conn, sql: str, args: list[Any], analyze: bool) -> Any:
    raw = await conn.fetchval(f"EXPLAIN ({'ANALYZE, ' if analyze else ''}FORMAT JSON) {sql}", *args)
    return json.loads(raw) if isinstance(raw, str) else raw  # the pool may decode json


async def test_a_yearly_rule_finds_every_unloadable_zone_in_a_range_and_an_array(
    pool: asyncpg.Pool[Any],
) -> None:
    await pool.execute("ALTER TABLE peer_mentor DROP CONSTRAINT IF EXISTS peer_mentor_timezone_valid")
    joined = AS_OF - dt.timedelta(days=800)
    bad = {
        label: await add_mentor(pool, joined_at=joined, timezone=zone) for label, zone in BAD_ZONES.items()
    }
    good = await add_mentor(pool, joined_at=joined, timezone="Pacific/Auckland")
    for days in (1, 2):  # crosses the lowest threshold (2): a survivor, read for its period
        await add_activity(pool, good, AS_OF - dt.timedelta(days=days))
    paused = await add_mentor(pool, joined_at=joined, status="paused", timezone="Mars/Olympus")
    everyone = sorted([*bad.values(), good, paused])
    scenario = scenario_of(YEARLY)
    async with pool.acquire() as conn:
        for span in (True, False):
            with pytest.raises(MentorDataError) as caught:
                await scenario.candidates(conn, YEARLY, everyone, AS_OF, span)
            # every active mentor with an unloadable zone, named; the paused one is not evaluated
            assert set(caught.value.problems) == set(bad.values()), span
        for mentor in bad.values():  # the single-mentor path fails alike
            with pytest.raises(MentorDataError):
                await single_mentor_candidates(conn, YEARLY, mentor, AS_OF)
        # without them, the survivor is decided as the oracle decides it
        rest = [good]
        assert await set_based_candidates(conn, YEARLY, rest, AS_OF) == await single_mentor_candidates(
            conn, YEARLY, good, AS_OF
        )
        assert len(await scenario.candidates(conn, YEARLY, rest, AS_OF, True)) == 1


async def test_the_batch_zones_are_read_from_the_zone_index(pool: asyncpg.Pool[Any]) -> None:
    """The statement states the zone index's predicate exactly (else PostgreSQL cannot prove the
    partial index applies and reads the heap rows again). Sequential and bitmap scans are off
    so that a few test rows plan as a batch of 20k does."""
    mentors = sorted([await add_mentor(pool, joined_at=AS_OF - dt.timedelta(days=400)) for _ in range(20)])
    scenario = scenario_of(YEARLY)
    _, args = bind("milestone_candidates", scenario.candidate_params(YEARLY, mentors, AS_OF))
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off")
        plan = await _explain(
            conn, range_statement("milestone_candidates"), [mentors[0], *args[1:], mentors[-1]], False
        )
    on_peer_mentor = {
        (n["Node Type"], n.get("Index Name")) for n in _nodes(plan) if n.get("Relation Name") == "peer_mentor"
    }
    assert ("Index Only Scan", "peer_mentor_active_zone_idx") in on_peer_mentor, on_peer_mentor
    assert any(name == "peer_mentor_active_odd_zone_idx" for _, name in on_peer_mentor), on_peer_mentor


async def test_inactivity_descends_only_for_mentors_quiet_inside_the_window(pool: asyncpg.Pool[Any]) -> None:
    joined = AS_OF - dt.timedelta(days=400)
    mentors: list[uuid.UUID] = []
    quiet = 0
    for i in range(30):
        mentor = await add_mentor(pool, joined_at=joined)
        mentors.append(mentor)
        if i % 3 == 0:  # quiet: an old activity, or none at all
            quiet += 1
            if i % 2 == 0:
                await add_activity(pool, mentor, AS_OF - dt.timedelta(days=40 + i))
        else:  # active inside the 21 days, and long before
            await add_activity(pool, mentor, AS_OF - dt.timedelta(days=300))
            await add_activity(pool, mentor, AS_OF - dt.timedelta(days=1 + i % 20))
    # the window's edges: exactly 21 days ago is outside it (inactive), a microsecond later inside
    edge = await add_mentor(pool, joined_at=joined)
    await add_activity(pool, edge, AS_OF - dt.timedelta(days=21))
    inside = await add_mentor(pool, joined_at=joined)
    await add_activity(pool, inside, AS_OF - dt.timedelta(days=21) + dt.timedelta(microseconds=1))
    future = await add_mentor(pool, joined_at=joined)  # only an activity after as_of: quiet
    await add_activity(pool, future, AS_OF + dt.timedelta(days=1))
    mentors += [edge, inside, future]
    quiet += 2
    mentors.sort()
    scenario = scenario_of(INACTIVE)
    _, args = bind("inactivity_candidates", scenario.candidate_params(INACTIVE, mentors, AS_OF))
    async with pool.acquire() as conn:
        await conn.execute("ANALYZE activity; ANALYZE peer_mentor")
        plan = await _explain(
            conn, range_statement("inactivity_candidates"), [mentors[0], *args[1:], mentors[-1]], True
        )
        spanned = await scenario.candidates(conn, INACTIVE, mentors, AS_OF, True)
        listed = await set_based_candidates(conn, INACTIVE, mentors, AS_OF)
        oracle = [c for m in mentors for c in await single_mentor_candidates(conn, INACTIVE, m, AS_OF)]
    assert spanned == listed == oracle
    assert len(oracle) == quiet
    assert edge in {c.mentor_id for c in oracle} and inside not in {c.mentor_id for c in oracle}
    loops = [int(n["Actual Loops"]) for n in _nodes(plan) if n.get("Relation Name") == "activity"]
    # The newest activity is looked up once per quiet mentor (it was once per batch mentor, 33);
    # the window is read once for the whole batch.
    assert max(loops) == quiet and min(loops) == 1, loops
