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
import json
import uuid
from collections import Counter
from typing import Any

import asyncpg

from scenario_engine.engine import Engine
from scenario_engine.scenarios.anniversary import AnniversaryRule
from scenario_engine.scenarios.rules import Rules
from scenario_engine.scenarios.zones import load_zone
from tests.support.factories import add_mentor
from tests.support.short_days import NEW_YORK, UTC, daily_sweeps

KIRITIMATI = load_zone("Pacific/Kiritimati")  # UTC+14
PAGO_PAGO = load_zone("Pacific/Pago_Pago")  # UTC-11
RULE = AnniversaryRule(name="anniversary")  # grace_days = 1


def rules(*anniversary: AnniversaryRule) -> Rules:
    return Rules(daily_cap=5, anniversary=list(anniversary))


async def greeted(pool: asyncpg.Pool[Any], mentor: uuid.UUID) -> list[tuple[str, str]]:
    """(year number, the day celebrated) of every anniversary push of ``mentor``."""
    rows = await pool.fetch(
        "SELECT context FROM scenario_notification WHERE mentor_id = $1 AND scenario_type = 'anniversary' "
        "ORDER BY id",
        mentor,
    )
    out = []
    for r in rows:
        context = json.loads(r["context"]) if isinstance(r["context"], str) else r["context"]
        out.append((str(context["years"]), str(context["anniversary_on"])))
    return out


async def would_greet(engine: Engine, as_of: dt.datetime) -> set[uuid.UUID]:
    """The full sweep's answer at ``as_of`` (dry run: nothing written)."""
    swept = await engine.run_scheduled_evaluation(as_of, dry_run=True, collect=True)
    return {o.candidate.mentor_id for o in swept.outcomes if o.decision.allowed}


async def single(engine: Engine, mentor: uuid.UUID, as_of: dt.datetime) -> bool:
    outcomes = await engine.evaluate_mentor(mentor, as_of=as_of, dry_run=True)
    return any(o.decision.allowed and o.candidate.scenario_type == "anniversary" for o in outcomes)


async def test_a_new_york_mentor_who_joined_on_14_march_is_greeted_by_the_daily_sweep(pool: Any) -> None:
    joined = await add_mentor(
        pool, joined_at=dt.datetime(2026, 3, 14, 12, tzinfo=NEW_YORK), timezone="America/New_York"
    )
    # the 15th: its day contains the 15 March sweep, so it must not be mistaken for the 14th's
    next_day = await add_mentor(
        pool, joined_at=dt.datetime(2026, 3, 15, 12, tzinfo=NEW_YORK), timezone="America/New_York"
    )
    engine = Engine(pool, rules(RULE))
    async with pool.acquire() as conn:
        await engine.see_rules(conn, dt.datetime(2027, 3, 1, tzinfo=UTC))
    s13, s14, s15, s16 = daily_sweeps(dt.datetime(2027, 3, 13, 5, tzinfo=UTC), 4)

    # full sweep and single mentor agree at every instant, before anything is written
    assert await would_greet(engine, s14) == set()
    assert await would_greet(engine, s15) == {joined, next_day}
    assert await would_greet(engine, s16) == {next_day}  # 2 days late for the 14th: past the grace
    assert [await single(engine, joined, s) for s in (s14, s15, s16)] == [False, True, False]

    # the incremental chain the daemon runs: first full, then since the previous sweep
    await engine.run_scheduled_evaluation(s13)
    assert (await engine.run_scheduled_evaluation(s14, since=s13)).mentors == 0
    step = await engine.run_scheduled_evaluation(s15, since=s14)
    assert step.mentors == 2 and step.per_rule["anniversary"]["sent"] == 2
    assert await greeted(pool, joined) == [("1", "2027-03-14")]  # one (New York) day late
    assert await greeted(pool, next_day) == [("1", "2027-03-15")]
    later = await engine.run_scheduled_evaluation(s16, since=s15)  # (the cap window brings them back)
    assert later.per_rule.get("anniversary", Counter())["sent"] == 0
    assert await greeted(pool, joined) == [("1", "2027-03-14")]


async def test_without_the_grace_the_short_day_is_missed(pool: Any) -> None:
    """grace_days = 0 is the behaviour before the fix (and the test's proof that the day is
    really stepped over): nobody is greeted at any of the sweeps."""
    joined = await add_mentor(
        pool, joined_at=dt.datetime(2026, 3, 14, 12, tzinfo=NEW_YORK), timezone="America/New_York"
    )
    engine = Engine(pool, rules(AnniversaryRule(name="anniversary", grace_days=0)))
    async with pool.acquire() as conn:
        await engine.see_rules(conn, dt.datetime(2027, 3, 1, tzinfo=UTC))
    s13, s14, s15 = daily_sweeps(dt.datetime(2027, 3, 13, 5, tzinfo=UTC), 3)
    await engine.run_scheduled_evaluation(s13)
    await engine.run_scheduled_evaluation(s14, since=s13)
    await engine.run_scheduled_evaluation(s15, since=s14)
    assert await greeted(pool, joined) == []


async def test_plus_14_and_minus_11_with_a_two_day_interval(pool: Any) -> None:
    """Sweeps 48 hours apart, 14 June 09:00 UTC and 16 June 09:00 UTC.

    Kiritimati (+14): 15 June is [14 June 10:00, 15 June 10:00) UTC — wholly between the sweeps;
    the second sweep is 16 June 23:00 there, one day late: greeted. Pago Pago (−11): 15 June is
    [15 June 11:00, 16 June 11:00) UTC — the second sweep is on the day (15 June 22:00 there).
    Kiritimati's 14 June, [13 June 10:00, 14 June 10:00) UTC, contains the first sweep. With sweeps
    72 hours apart (to 17 June 09:00 UTC, 17 June 23:00 in Kiritimati) the 15th is two days late:
    past a one-day grace, greeted with grace_days = 2 (23 + 24·2 = 71 h ≥ the 2-day-ish gap)."""
    first, second, third = (dt.datetime(2027, 6, d, 9, tzinfo=UTC) for d in (14, 16, 17))
    kiri_15 = await add_mentor(
        pool, joined_at=dt.datetime(2025, 6, 15, 8, tzinfo=KIRITIMATI), timezone="Pacific/Kiritimati"
    )
    kiri_14 = await add_mentor(
        pool, joined_at=dt.datetime(2025, 6, 14, 8, tzinfo=KIRITIMATI), timezone="Pacific/Kiritimati"
    )
    pago_15 = await add_mentor(
        pool, joined_at=dt.datetime(2025, 6, 15, 8, tzinfo=PAGO_PAGO), timezone="Pacific/Pago_Pago"
    )
    assert dt.datetime(2027, 6, 15, tzinfo=KIRITIMATI) == dt.datetime(2027, 6, 14, 10, tzinfo=UTC)
    assert dt.datetime(2027, 6, 15, tzinfo=PAGO_PAGO) == dt.datetime(2027, 6, 15, 11, tzinfo=UTC)

    engine = Engine(pool, rules(RULE))
    async with pool.acquire() as conn:
        await engine.see_rules(conn, dt.datetime(2027, 6, 1, tzinfo=UTC))
    assert await would_greet(engine, first) == {kiri_14}
    assert await would_greet(engine, second) == {kiri_15, pago_15}
    assert await would_greet(engine, third) == {pago_15}  # Kiritimati's 15th: two days ago
    assert [await single(engine, kiri_15, at) for at in (first, second, third)] == [False, True, False]

    await engine.run_scheduled_evaluation(first)
    step = await engine.run_scheduled_evaluation(second, since=first)
    assert step.per_rule["anniversary"]["sent"] == 2
    assert await greeted(pool, kiri_15) == [("2", "2027-06-15")]
    assert await greeted(pool, pago_15) == [("2", "2027-06-15")]
    assert await greeted(pool, kiri_14) == [("2", "2027-06-14")]

    # a 72-hour interval needs grace_days = 2 for Kiritimati's 15th (a fresh rule name: its own ledger)
    wide = Engine(pool, rules(AnniversaryRule(name="wide", grace_days=2, backfill=True)))
    assert await single(wide, kiri_15, third)
    wide_step = await wide.run_scheduled_evaluation(third, since=first, dry_run=True, collect=True)
    assert kiri_15 in {o.candidate.mentor_id for o in wide_step.outcomes if o.decision.allowed}


async def test_the_first_sight_baseline_covers_the_grace(pool: Any) -> None:
    """A rule first seen the day after an anniversary records it as a baseline (no flood of
    yesterday's anniversaries)."""
    mentor = await add_mentor(pool, joined_at=dt.datetime(2025, 6, 15, 12, tzinfo=UTC))
    engine = Engine(pool, rules(RULE))
    result = await engine.run_scheduled_evaluation(dt.datetime(2026, 6, 16, 12, tzinfo=UTC))
    assert result.per_rule.get("anniversary", Counter())["sent"] == 0
    outcomes = await pool.fetch(
        "SELECT outcome FROM scenario_decision WHERE mentor_id = $1 AND scenario_type = 'anniversary'", mentor
    )
    assert [r["outcome"] for r in outcomes] == ["baseline"]
