"""A scheduled sweep does not decide again an inactivity reminder whose mentor has opted out and
whose opted-out decision is on record (issue 18): deciding it again would log nothing and change
nothing, and every steady full sweep re-decided every opted-out inactive mentor (9,116 at 1M, a
fifth of the sweep). What must hold:

* the first time, the reminder is decided and logged as opted out, as before;
* while the mentor stays opted out, later scheduled sweeps (full, lanes, incremental) write and
  report nothing for it — the decision log keeps its one row;
* a sweep whose decisions are listed (`scenario-engine sweep --output json`) still lists it;
* an opt-out of another scenario type does not count; opting back in, the reminder is sent;
* a new reminder (another spell) of an opted-out mentor is decided and logged once."""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg

from scenario_engine.engine import Engine
from scenario_engine.scenarios.inactivity import InactivityRule
from scenario_engine.scenarios.rules import Rules
from tests.support.factories import add_activity, add_mentor, opt_out

T0 = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
RULES = Rules(inactivity=[InactivityRule(name="inactive_21d", threshold_days=21, cooldown_days=7)])


async def decisions(pool: asyncpg.Pool[Any], mentor: Any) -> list[tuple[str, str]]:
    rows = await pool.fetch(
        "SELECT outcome, dedup_key FROM scenario_decision "
        "WHERE mentor_id = $1 AND rule_name = 'inactive_21d' ORDER BY id",
        mentor,
    )
    return [(r["outcome"], r["dedup_key"]) for r in rows]


async def test_a_logged_opt_out_is_not_decided_again_by_a_scheduled_sweep(pool: asyncpg.Pool[Any]) -> None:
    everyone = await add_mentor(pool, joined_at=T0 - 100 * DAY)
    await add_activity(pool, everyone, T0 - 30 * DAY)
    await opt_out(pool, everyone, "all")
    own = await add_mentor(pool, joined_at=T0 - 100 * DAY)
    await add_activity(pool, own, T0 - 40 * DAY)
    await opt_out(pool, own, "inactivity")
    other = await add_mentor(pool, joined_at=T0 - 100 * DAY)  # opted out of something else only
    await add_activity(pool, other, T0 - 50 * DAY)
    await opt_out(pool, other, "milestone")
    engine = Engine(pool, RULES, sweep_batch=2)  # several batches, in two lanes

    first = await engine.run_scheduled_evaluation(T0)
    assert first.per_rule["inactive_21d"] == {"opted_out": 2, "sent": 1}
    logged = {m: await decisions(pool, m) for m in (everyone, own)}
    assert all(len(rows) == 1 and rows[0][0] == "opted_out" for rows in logged.values()), logged

    for later in (
        await engine.run_scheduled_evaluation(T0),
        await engine.run_scheduled_evaluation(T0 + DAY, since=T0),
        await engine.run_scheduled_evaluation(T0 + 2 * DAY),
    ):
        assert "opted_out" not in later.per_rule.get("inactive_21d", {}), later.per_rule
    assert {m: await decisions(pool, m) for m in (everyone, own)} == logged

    listed = await engine.run_scheduled_evaluation(T0 + 2 * DAY, collect=True)
    assert {(o.candidate.mentor_id, o.decision.outcome) for o in listed.outcomes} == {
        (everyone, "opted_out"),
        (own, "opted_out"),
    }
    assert {m: await decisions(pool, m) for m in (everyone, own)} == logged  # and wrote nothing

    await pool.execute("UPDATE notification_preference SET opted_out = false WHERE mentor_id = $1", own)
    back = await engine.run_scheduled_evaluation(T0 + 3 * DAY)
    assert back.per_rule["inactive_21d"] == {"sent": 1}
    assert [o for o, _ in await decisions(pool, own)] == ["opted_out", "sent"]


async def test_a_new_spell_of_an_opted_out_mentor_is_logged_once(pool: asyncpg.Pool[Any]) -> None:
    mentor = await add_mentor(pool, joined_at=T0 - 100 * DAY)
    await add_activity(pool, mentor, T0 - 30 * DAY)
    await opt_out(pool, mentor)
    engine = Engine(pool, RULES)
    await engine.run_scheduled_evaluation(T0)
    await add_activity(pool, mentor, T0 + DAY)  # a new spell starts
    for day in (23, 24):
        await engine.run_scheduled_evaluation(T0 + day * DAY)
    keys = await decisions(pool, mentor)
    assert [o for o, _ in keys] == ["opted_out", "opted_out"]
    assert keys[0][1] != keys[1][1]  # one per spell
