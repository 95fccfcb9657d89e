"""What a steady full sweep reads per batch (issue 18: steady sweep ≤ 3 s at 1M, flat per mentor).

Two statements read the whole batch although only a few of its mentors matter in a steady sweep:

* ``inactivity_candidates`` descended the activity index once per batch mentor for the newest
  activity; now only the mentors with no activity inside the threshold window (a third of a
  steady population) get that descent — the others are found by one merge over the window;
* ``milestone_candidates`` read every batch mentor's heap row for the zone check of a yearly
  rule (a batch's random ids touch most of the table's pages); now a full sweep reads the
  mentors whose zone Python cannot load once (``zone_suspects``, a ``SweepHints``) and the
  statement reads the rows of those and of the bound's survivors only.

The decisions must not change: every zone Python cannot load is still found (short, long,
multi-byte, 1 MB, and one that turned bad after the hint was read), in a sweep's id range as in
an id array, with and without the hint, and the inactivity candidates are the oracle's."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import asyncpg
import pytest

from scenario_engine import sweep
from scenario_engine.db.connect import Conn
from scenario_engine.db.queries import bind, fetch
from scenario_engine.engine import Engine
from scenario_engine.evaluate import set_based_candidates, single_mentor_candidates
from scenario_engine.scenarios.base import NO_HINTS, MentorDataError, SweepHints
from scenario_engine.scenarios.common import range_statement
from scenario_engine.scenarios.inactivity import InactivityRule
from scenario_engine.scenarios.milestone import MilestoneRule
from scenario_engine.scenarios.registry import scenario_of
from scenario_engine.scenarios.rules import Rules
from scenario_engine.scenarios.zones import known_zones
from tests.support.factories import ORG, add_activity, add_mentor

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


async def _suspects(conn: Conn) -> SweepHints:
    rows = await fetch(conn, "zone_suspects", zones=list(known_zones()), most=1000)
    return SweepHints(zone_suspects=tuple(r["id"] for r in rows))


async def test_a_yearly_rule_finds_every_unloadable_zone_with_and_without_the_hint(
    pool: asyncpg.Pool[Any],
) -> None:
    await pool.execute("ALTER TABLE peer_mentor DROP CONSTRAINT IF EXISTS peer_mentor_timezone_valid")
    joined = AS_OF - dt.timedelta(days=800)
    bad = {
        label: await add_mentor(pool, joined_at=joined, timezone=zone) for label, zone in BAD_ZONES.items()
    }
    good = await add_mentor(pool, joined_at=joined, timezone="Pacific/Auckland")
    late = await add_mentor(pool, joined_at=joined, timezone="Europe/Oslo")  # turns bad after the hint
    for mentor in (good, late):
        for days in (1, 2):  # crosses the lowest threshold (2): a survivor, its row read for its period
            await add_activity(pool, mentor, AS_OF - dt.timedelta(days=days))
    paused = await add_mentor(pool, joined_at=joined, status="paused", timezone="Mars/Olympus")
    everyone = sorted([*bad.values(), good, late, paused])
    scenario = scenario_of(YEARLY)
    async with pool.acquire() as conn:
        hints = await _suspects(conn)
        assert set(hints.zone_suspects or ()) == set(bad.values())  # active mentors only, in id order
        assert list(hints.zone_suspects or ()) == sorted(bad.values())
        await conn.execute("UPDATE peer_mentor SET timezone = 'Moon/Tycho' WHERE id = $1", late)
        for span, given in ((True, hints), (True, NO_HINTS), (False, hints), (False, NO_HINTS)):
            with pytest.raises(MentorDataError) as caught:
                await scenario.candidates(conn, YEARLY, everyone, AS_OF, span, hints=given)
            # every active mentor with an unloadable zone, named — the one that turned bad after
            # the hint too (a survivor: its row is read); the paused one is not evaluated
            assert set(caught.value.problems) == {*bad.values(), late}, (span, given)
        for mentor in [*bad.values(), late]:  # the single-mentor path fails alike
            with pytest.raises(MentorDataError):
                await single_mentor_candidates(conn, YEARLY, mentor, AS_OF)
        # without them, the survivor is decided as the oracle decides it
        assert await scenario.candidates(conn, YEARLY, [good], AS_OF, True, hints=hints) == (
            await single_mentor_candidates(conn, YEARLY, good, AS_OF)
        )


def _rows_read(plan: Any, relation: str) -> int:
    return sum(
        int(n["Actual Rows"] + n.get("Rows Removed by Filter", 0)) * int(n["Actual Loops"])
        for n in _nodes(plan)
        if n.get("Relation Name") == relation
    )


async def test_with_the_hint_only_the_survivors_rows_are_read(pool: asyncpg.Pool[Any]) -> None:
    """Hash, merge and sequential reads are off so that 2,000 test rows plan as a batch of 20k
    at 1M does (the plans themselves are the benchmark's: docs/BENCHMARKS.md)."""
    joined = AS_OF - dt.timedelta(days=400)
    await pool.execute(
        "INSERT INTO peer_mentor (organization_id, status, timezone, joined_at) "
        "SELECT $1, 'active', 'Europe/Oslo', $2 FROM generate_series(1, 2000)",
        ORG,
        joined,
    )
    await pool.execute("ANALYZE peer_mentor")
    mentors = sorted(r["id"] for r in await pool.fetch("SELECT id FROM peer_mentor"))
    for mentor in mentors[:3]:  # three survivors
        for days in (1, 2):
            await add_activity(pool, mentor, AS_OF - dt.timedelta(days=days))
    scenario = scenario_of(YEARLY)
    sql = range_statement("milestone_candidates")
    read: dict[str, int] = {}
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off; "
            "SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off"
        )
        hints = await _suspects(conn)
        for label, given in (("hint", hints), ("none", NO_HINTS)):
            _, args = bind(
                "milestone_candidates", scenario.candidate_params(YEARLY, mentors, AS_OF, given, True)
            )
            plan = await _explain(conn, sql, [mentors[0], *args[1:], mentors[-1]], True)
            read[label] = _rows_read(plan, "peer_mentor")
    assert hints.zone_suspects == ()
    # the three survivors' rows, for their period and the zone check; without the hint, every
    # batch mentor's row as well
    assert read["hint"] <= 2 * 3 and read["none"] >= len(mentors), read


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


async def test_too_many_zone_suspects_fall_back_to_each_batch_reading_its_zones(
    pool: asyncpg.Pool[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A platform whose mentors mostly have zones Python cannot load ('utc' from before the
    reference CHECK) must not make a sweep hold a million ids: past ZONE_SUSPECTS_MAX the hint
    is dropped, and every bad zone is still found — by each batch, as before."""
    monkeypatch.setattr(sweep, "ZONE_SUSPECTS_MAX", 2)
    await pool.execute("ALTER TABLE peer_mentor DROP CONSTRAINT IF EXISTS peer_mentor_timezone_valid")
    joined = AS_OF - dt.timedelta(days=400)
    bad = {await add_mentor(pool, joined_at=joined, timezone=zone) for zone in ("utc", "gmt", "Mars/Olympus")}
    await add_mentor(pool, joined_at=joined, timezone="Europe/Oslo")
    async with pool.acquire() as conn:
        plan = sweep.SweepPlan(AS_OF, 2)
        assert (await sweep.sweep_hints(conn, Rules(milestone=[YEARLY]), plan)).zone_suspects is None
        monkeypatch.setattr(sweep, "ZONE_SUSPECTS_MAX", 3)
        assert (
            set((await sweep.sweep_hints(conn, Rules(milestone=[YEARLY]), plan)).zone_suspects or ()) == bad
        )
    monkeypatch.setattr(sweep, "ZONE_SUSPECTS_MAX", 2)
    await Engine(pool, Rules(milestone=[YEARLY]), sweep_batch=2).run_scheduled_evaluation(AS_OF)
    quarantined = {r["mentor_id"] for r in await pool.fetch("SELECT mentor_id FROM scenario_quarantine")}
    assert quarantined == bad
