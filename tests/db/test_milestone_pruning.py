"""The milestone candidate statement prunes a batch by an upper bound (issue 18, item 3): one
index-only scan over the batch's sessions in a loose window bounds every mentor's count, and
only a mentor whose bound reaches the lowest threshold gets the exact per-mentor count.

The pruning must never change a decision: the window has to hold every zone's calendar year
(the extreme offsets, +14 and -12, right at their local new year), and a mentor pruned must be
one the exact count would not have celebrated either. The plan test pins the saving itself."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import asyncpg

from scenario_engine.db.queries import bind
from scenario_engine.evaluate import set_based_candidates, single_mentor_candidates
from scenario_engine.scenarios.milestone import MilestoneRule
from scenario_engine.scenarios.registry import scenario_of
from tests.support.factories import add_activity, add_mentor

UTC = dt.UTC
# 06:00 UTC on New Year's Day: Kiritimati (UTC+14) is at 20:00 on 1 January 2026 (its year began
# at 10:00 UTC the day before), Etc/GMT+12 (UTC-12) still at 18:00 on 31 December 2025.
AS_OF = dt.datetime(2026, 1, 1, 6, tzinfo=UTC)
MID = dt.datetime(2026, 6, 15, 12, tzinfo=UTC)
RULE = MilestoneRule(name="sessions_year", metric="sessions", thresholds=[2, 3])


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


async def test_extreme_zones_at_their_new_year_decide_as_the_oracle(pool: asyncpg.Pool[Any]) -> None:
    joined = AS_OF - dt.timedelta(days=800)
    east = await add_mentor(pool, joined_at=joined, timezone="Pacific/Kiritimati")
    for when in ("2025-12-31T09:30", "2025-12-31T10:30", "2025-12-31T11:00"):  # local 2025, 2026, 2026
        await add_activity(pool, east, at(when))
    west = await add_mentor(pool, joined_at=joined, timezone="Etc/GMT+12")
    for when in ("2025-01-01T11:30", "2025-01-01T12:30", "2025-06-01T12:00"):  # local 2024, 2025, 2025
        await add_activity(pool, west, at(when))
    one = await add_mentor(pool, joined_at=joined)
    await add_activity(pool, one, at("2025-12-01T00:00"))
    none = await add_mentor(pool, joined_at=joined)
    hours = await add_mentor(pool, joined_at=joined)
    await add_activity(pool, hours, at("2026-01-01T01:00"), kind="training", duration_minutes=150)
    mentors = sorted([east, west, one, none, hours])

    async with pool.acquire() as conn:
        for rule in (
            RULE,
            MilestoneRule(name="hours_year", metric="hours", thresholds=[2.5]),
            MilestoneRule(name="contacts_all", metric="contacts", period="all_time", thresholds=[3]),
        ):
            batch = await set_based_candidates(conn, rule, mentors, AS_OF)
            oracle = [c for m in mentors for c in await single_mentor_candidates(conn, rule, m, AS_OF)]
            assert batch == oracle, rule.name
            if rule is RULE:
                found = {(c.mentor_id, c.inputs["period"], c.inputs["threshold"]) for c in batch}
                assert found == {(east, "2026", 2), (west, "2025", 2)}
            if rule.metric == "hours":
                assert [c.mentor_id for c in batch] == [hours]


def _loops(plan: Any, relation: str) -> list[int]:
    """Actual loops of every plan node that scans ``relation``."""
    found: list[int] = []
    if isinstance(plan, dict):
        if plan.get("Relation Name") == relation:
            found.append(int(plan["Actual Loops"]))
        for value in plan.values():
            found += _loops(value, relation)
    elif isinstance(plan, list):
        for item in plan:
            found += _loops(item, relation)
    return found


async def test_exact_counts_only_for_mentors_who_could_cross(pool: asyncpg.Pool[Any]) -> None:
    joined = MID - dt.timedelta(days=800)
    mentors: list[uuid.UUID] = []
    for i in range(60):
        mentor = await add_mentor(pool, joined_at=joined)
        mentors.append(mentor)
        sessions = 2 if i < 3 else 1  # three could cross the lowest threshold (2)
        for k in range(sessions):
            await add_activity(pool, mentor, MID - dt.timedelta(days=1 + k))
    mentors.sort()
    scenario = scenario_of(RULE)
    sql, args = bind("milestone_candidates", scenario.candidate_params(RULE, mentors, MID))
    async with pool.acquire() as conn:
        await conn.execute("ANALYZE activity; ANALYZE peer_mentor")
        raw = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", *args)
        plan = json.loads(raw) if isinstance(raw, str) else raw  # the pool may decode json
        assert len(await set_based_candidates(conn, RULE, mentors, MID)) == 3
    loops = _loops(plan, "activity")
    # One scan for the bound (one loop) and the exact count for the three survivors only;
    # without the pruning the exact count ran once per mentor of the batch (60 loops).
    assert loops and max(loops) <= 3, loops
