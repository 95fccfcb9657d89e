"""Every rule of docs/SCENARIOS.md on a real Postgres, through the seed interfaces."""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg
import pytest

from scenario_engine.engine import Engine
from scenario_engine.scenarios.certification import CertificationExpiryRule
from scenario_engine.scenarios.inactivity import InactivityRule
from scenario_engine.scenarios.milestone import MilestoneRule
from scenario_engine.scenarios.rules import Rules
from tests.support.factories import add_activity, add_certification, add_mentor, opt_out

T0 = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


def sent(outcomes: list[Any]) -> list[Any]:
    return [o for o in outcomes if o.decision.allowed and not o.duplicate]


async def pushes(pool: asyncpg.Pool[Any], mentor: Any = None) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT * FROM push_notification WHERE $1::uuid IS NULL OR mentor_id = $1 ORDER BY id", mentor
    )


# --- inactivity ---------------------------------------------------------------------------


async def test_inactivity_fires_exactly_at_threshold_not_a_second_before(engine: Engine, pool: Any) -> None:
    mentor = await add_mentor(pool, joined_at=T0 - 100 * DAY)
    await add_activity(pool, mentor, T0)
    assert (
        await engine.evaluate_inactivity_scenario(mentor, 21, as_of=T0 + 21 * DAY - dt.timedelta(seconds=1))
        == []
    )
    [outcome] = await engine.evaluate_inactivity_scenario(mentor, 21, as_of=T0 + 21 * DAY)
    assert outcome.decision.outcome == "sent"
    assert outcome.candidate.inputs["days_inactive"] == 21
    [push] = await pushes(pool)
    assert push["status"] == "pending"
    assert "21 days" in push["body"]
    assert push["idempotency_key"] == outcome.candidate.dedup_key


async def test_inactivity_uses_join_date_without_activity(engine: Engine, pool: Any) -> None:
    mentor = await add_mentor(pool, joined_at=T0)
    assert await engine.evaluate_inactivity_scenario(mentor, as_of=T0 + 20 * DAY) == []
    [o] = await engine.evaluate_inactivity_scenario(mentor, as_of=T0 + 22 * DAY)
    assert o.candidate.inputs["since"] == "joined"


async def test_inactivity_reminders_respect_cooldown_and_max(engine: Engine, pool: Any) -> None:
    mentor = await add_mentor(pool, joined_at=T0 - 100 * DAY)
    await add_activity(pool, mentor, T0)
    first = T0 + 21 * DAY
    assert len(sent(await engine.evaluate_inactivity_scenario(mentor, as_of=first))) == 1
    # the same instant again: nothing new (idempotent), and within the cooldown: nothing
    assert sent(await engine.evaluate_inactivity_scenario(mentor, as_of=first)) == []
    assert sent(await engine.evaluate_inactivity_scenario(mentor, as_of=first + 6 * DAY)) == []
    [second] = sent(await engine.evaluate_inactivity_scenario(mentor, as_of=first + 7 * DAY))
    assert second.candidate.seq == 2
    # max_reminders = 2: the spell is done
    assert sent(await engine.evaluate_inactivity_scenario(mentor, as_of=first + 30 * DAY)) == []
    # new activity ends the spell; a new spell starts counting afresh
    await add_activity(pool, mentor, first + 31 * DAY)
    [third] = sent(await engine.evaluate_inactivity_scenario(mentor, as_of=first + 52 * DAY))
    assert third.candidate.seq == 1
    assert len(await pushes(pool)) == 3


async def test_paused_mentor_gets_no_inactivity_nudge(engine: Engine, pool: Any) -> None:
    mentor = await add_mentor(pool, joined_at=T0 - 100 * DAY, status="paused")
    assert await engine.evaluate_inactivity_scenario(mentor, as_of=T0) == []
    result = await engine.run_scheduled_evaluation(T0)
    assert result.sent == 0


async def test_future_activity_does_not_count_for_an_earlier_as_of(engine: Engine, pool: Any) -> None:
    mentor = await add_mentor(pool, joined_at=T0 - 100 * DAY)
    await add_activity(pool, mentor, T0 + 60 * DAY)
    [o] = await engine.evaluate_inactivity_scenario(mentor, as_of=T0, dry_run=True)
    assert o.candidate.inputs["since"] == "joined"


# --- milestone ----------------------------------------------------------------------------


async def test_milestone_first_crossing_only_with_highest_threshold(engine: Engine, pool: Any) -> None:
    mentor = await add_mentor(pool, joined_at=T0 - 100 * DAY)
    await engine.run_scheduled_evaluation(T0 - 50 * DAY)  # first sight of the rule: baseline of nothing
    for i in range(3):
        await add_activity(pool, mentor, T0 + i * dt.timedelta(hours=1))
    [o] = sent(await engine.evaluate_milestone_scenario(mentor, "sessions", as_of=T0 + DAY))
    assert o.candidate.inputs["threshold"] == 3  # 2 and 3 crossed at once: one push, for 3
    ach = await pool.fetch("SELECT threshold::float8 AS t, period FROM achievement ORDER BY threshold")
    assert [(r["t"], r["period"]) for r in ach] == [(2.0, "2026"), (3.0, "2026")]
    assert sent(await engine.evaluate_milestone_scenario(mentor, as_of=T0 + DAY)) == []


async def test_milestone_not_celebrated_twice_after_delete_and_readd(engine: Engine, pool: Any) -> None:
    mentor = await add_mentor(pool, joined_at=T0 - 100 * DAY)
    await engine.run_scheduled_evaluation(T0 - 50 * DAY)
    for i in range(2):
        await add_activity(pool, mentor, T0 + i * dt.timedelta(hours=1))
    assert len(sent(await engine.evaluate_milestone_scenario(mentor, as_of=T0 + DAY))) == 1
    await pool.execute("DELETE FROM activity")
    await pool.execute("DELETE FROM achievement")  # a coordinator removes it too
    for i in range(2):
        await add_activity(pool, mentor, T0 + 2 * DAY + i * dt.timedelta(hours=1))
    assert sent(await engine.evaluate_milestone_scenario(mentor, as_of=T0 + 3 * DAY)) == []
    assert [p["scenario_type"] for p in await pushes(pool)].count("milestone") == 1


async def test_milestone_year_boundary_in_mentor_timezone(engine: Engine, pool: Any) -> None:
    # 2026-12-31 23:30 in Auckland is already 2027 (UTC+13): counts restart there.
    mentor = await add_mentor(pool, joined_at=T0 - 400 * DAY, timezone="Pacific/Auckland")
    await engine.run_scheduled_evaluation(dt.datetime(2026, 1, 2, tzinfo=dt.UTC))
    new_year_utc = dt.datetime(2026, 12, 31, 11, tzinfo=dt.UTC)  # = 2027-01-01 00:00 NZDT
    await add_activity(pool, mentor, new_year_utc - dt.timedelta(hours=2))
    await add_activity(pool, mentor, new_year_utc - dt.timedelta(hours=1))
    await add_activity(pool, mentor, new_year_utc + dt.timedelta(hours=1))
    # before the local new year: 2 sessions in 2026 → threshold 2
    [o] = sent(await engine.evaluate_milestone_scenario(mentor, as_of=new_year_utc - dt.timedelta(minutes=1)))
    assert (o.candidate.inputs["period"], o.candidate.inputs["threshold"]) == ("2026", 2)
    # after it: only 1 session in local 2027, although it is still 2026 in UTC
    assert (
        sent(await engine.evaluate_milestone_scenario(mentor, as_of=new_year_utc + 2 * dt.timedelta(hours=1)))
        == []
    )
    await add_activity(pool, mentor, new_year_utc + dt.timedelta(hours=3))
    [o2] = sent(await engine.evaluate_milestone_scenario(mentor, as_of=new_year_utc + dt.timedelta(hours=4)))
    assert (o2.candidate.inputs["period"], o2.candidate.inputs["threshold"]) == ("2027", 2)


async def test_milestone_rule_enabled_on_live_population_does_not_flood(pool: Any) -> None:
    veteran = await add_mentor(pool, joined_at=T0 - 400 * DAY)
    for i in range(4):
        await add_activity(pool, veteran, T0 - 10 * DAY + i * dt.timedelta(hours=1))
    rule = MilestoneRule(name="sessions_new", metric="sessions", thresholds=[2, 3, 5])
    engine = Engine(pool, Rules(milestone=[rule]))
    result = await engine.run_scheduled_evaluation(T0)
    assert result.sent == 0
    assert await pool.fetchval("SELECT count(*) FROM achievement WHERE awarded_by = 'engine-baseline'") == 2
    # the next threshold is celebrated normally
    await add_activity(pool, veteran, T0 + DAY)
    assert (await engine.run_scheduled_evaluation(T0 + 2 * DAY)).sent == 1
    # with backfill asked for, the same population is celebrated
    other = Engine(pool, Rules(milestone=[rule.model_copy(update={"name": "sessions_bf", "backfill": True})]))
    assert (await other.run_scheduled_evaluation(T0 + 2 * DAY)).sent == 1


async def test_milestone_hours_and_contacts(pool: Any) -> None:
    rules = Rules(
        milestone=[
            MilestoneRule(name="hours", metric="hours", period="all_time", thresholds=[1.5]),
            MilestoneRule(name="contacts", metric="contacts", period="all_time", thresholds=[5]),
        ]
    )
    engine = Engine(pool, rules)
    mentor = await add_mentor(pool, joined_at=T0 - 400 * DAY)
    await engine.run_scheduled_evaluation(T0 - 300 * DAY)
    await add_activity(pool, mentor, T0 - 200 * DAY, kind="contact", duration_minutes=60, contacts=2)
    await add_activity(pool, mentor, T0, kind="training", duration_minutes=30, contacts=3)
    outcomes = sent(await engine.evaluate_milestone_scenario(mentor, as_of=T0 + DAY))
    assert sorted(o.candidate.rule_name for o in outcomes) == ["contacts", "hours"]


async def test_coordinator_achievement_is_respected(engine: Engine, pool: Any) -> None:
    mentor = await add_mentor(pool, joined_at=T0 - 100 * DAY)
    await engine.run_scheduled_evaluation(T0 - 50 * DAY)
    await pool.execute(
        "INSERT INTO achievement (mentor_id, milestone, threshold, period) "
        "VALUES ($1, 'sessions_year', 2, '2026')",
        mentor,
    )
    for i in range(2):
        await add_activity(pool, mentor, T0 + i * dt.timedelta(hours=1))
    assert sent(await engine.evaluate_milestone_scenario(mentor, as_of=T0 + DAY)) == []


# --- certification ------------------------------------------------------------------------


async def test_certification_tiers_fire_once_each(engine: Engine, pool: Any) -> None:
    mentor = await add_mentor(pool, joined_at=T0 - 400 * DAY)
    expires = T0 + 40 * DAY
    await add_certification(pool, mentor, expires_at=expires)
    assert (
        await engine.evaluate_certification_expiry_scenario(
            mentor, as_of=expires - 30 * DAY - dt.timedelta(seconds=1)
        )
        == []
    )
    tiers = []
    for days_before in (30, 20, 7, 3, 1):
        tiers += [
            o.candidate.seq
            for o in sent(
                await engine.evaluate_certification_expiry_scenario(mentor, as_of=expires - days_before * DAY)
            )
        ]
    assert tiers == [30, 7, 1]
    # expired certifications never fire
    assert await engine.evaluate_certification_expiry_scenario(mentor, as_of=expires) == []


async def test_certification_first_seen_late_gets_only_the_nearest_tier(engine: Engine, pool: Any) -> None:
    mentor = await add_mentor(pool, joined_at=T0 - 400 * DAY)
    await add_certification(pool, mentor, expires_at=T0 + 5 * DAY)
    [o] = sent(await engine.evaluate_certification_expiry_scenario(mentor, as_of=T0))
    assert o.candidate.seq == 7
    assert o.candidate.inputs["days_left"] == 5


async def test_revoked_superseded_and_expired_never_fire(engine: Engine, pool: Any) -> None:
    mentor = await add_mentor(pool, joined_at=T0 - 400 * DAY)
    await add_certification(pool, mentor, expires_at=T0 + 5 * DAY, type_="revoked", revoked_at=T0 - DAY)
    await add_certification(pool, mentor, expires_at=T0 - DAY, type_="expired")
    await add_certification(pool, mentor, expires_at=T0 + 5 * DAY, type_="renewed", issued_at=T0 - 300 * DAY)
    await add_certification(pool, mentor, expires_at=T0 + 400 * DAY, type_="renewed", issued_at=T0 - DAY)
    assert await engine.evaluate_certification_expiry_scenario(mentor, as_of=T0) == []
    assert (await engine.run_scheduled_evaluation(T0)).per_rule.get("cert_expiry") is None


# --- policy -------------------------------------------------------------------------------


async def test_opt_out_suppresses_and_is_logged_with_reason(engine: Engine, pool: Any) -> None:
    mentor = await add_mentor(pool, joined_at=T0 - 100 * DAY)
    await opt_out(pool, mentor, "inactivity")
    [o] = await engine.evaluate_inactivity_scenario(mentor, as_of=T0)
    assert o.decision.outcome == "opted_out"
    assert await pushes(pool) == []
    row = await pool.fetchrow("SELECT outcome, reason, inputs FROM scenario_decision")
    assert row["outcome"] == "opted_out"
    assert "inactivity" in row["reason"]
    assert row["inputs"]["threshold_days"] == 21
    # repeated sweeps do not repeat the log row
    await engine.run_scheduled_evaluation(T0)
    assert await pool.fetchval("SELECT count(*) FROM scenario_decision") == 1
    # an opt-out of one scenario does not silence the others
    await add_certification(pool, mentor, expires_at=T0 + 3 * DAY)
    assert len(sent(await engine.evaluate_certification_expiry_scenario(mentor, as_of=T0))) == 1
    await opt_out(pool, mentor, "all")
    decision = await engine.should_notify(mentor, "milestone", as_of=T0)
    assert (decision.outcome, decision.allowed) == ("opted_out", False)


async def test_daily_cap_across_scenarios(pool: Any) -> None:
    rules = Rules(
        daily_cap=2,
        inactivity=[InactivityRule(name="inactive_21d", threshold_days=21)],
        certification_expiry=[CertificationExpiryRule(name="cert_expiry", tiers_days=[30])],
    )
    engine = Engine(pool, rules)
    mentor = await add_mentor(pool, joined_at=T0 - 100 * DAY)
    for t in ("a", "b"):
        await add_certification(pool, mentor, expires_at=T0 + 3 * DAY, type_=t)
    result = await engine.run_scheduled_evaluation(T0)
    assert result.per_rule["inactive_21d"]["sent"] == 1
    assert result.per_rule["cert_expiry"]["sent"] == 1
    assert result.per_rule["cert_expiry"]["daily_cap"] == 1
    # 24 h later the cap has room again: the capped certification goes out then
    later = await engine.run_scheduled_evaluation(T0 + DAY + dt.timedelta(seconds=1))
    assert later.per_rule["cert_expiry"]["sent"] == 1


async def test_cooldown_between_rules_of_one_type(pool: Any) -> None:
    rules = Rules(
        inactivity=[
            InactivityRule(name="inactive_21d", threshold_days=21, cooldown_days=7, max_reminders=2),
            InactivityRule(name="inactive_25d", threshold_days=25, cooldown_days=7),
        ]
    )
    engine = Engine(pool, rules)
    mentor = await add_mentor(pool, joined_at=T0 - 100 * DAY)
    await add_activity(pool, mentor, T0)
    await engine.run_scheduled_evaluation(T0 + 21 * DAY)
    r = await engine.run_scheduled_evaluation(T0 + 25 * DAY)
    assert r.per_rule["inactive_25d"]["cooldown"] == 1
    # rules run in order: the 21d rule's second reminder takes the slot again
    r = await engine.run_scheduled_evaluation(T0 + 28 * DAY)
    assert (r.per_rule["inactive_21d"]["sent"], r.per_rule["inactive_25d"]["cooldown"]) == (1, 1)
    # once the 21d rule has used its reminders, the escalation goes out after the cooldown
    r = await engine.run_scheduled_evaluation(T0 + 35 * DAY)
    assert r.per_rule["inactive_25d"]["sent"] == 1


async def test_enqueue_is_idempotent_and_records_cooldown(engine: Engine, pool: Any) -> None:
    mentor = await add_mentor(pool, joined_at=T0 - 100 * DAY)
    ctx = {"rule_name": "inactive_21d", "dedup_key": "manual-1", "days_inactive": 30}
    first = await engine.enqueue_notification(mentor, "inactivity", ctx, as_of=T0)
    again = await engine.enqueue_notification(mentor, "inactivity", ctx, as_of=T0)
    assert first.created
    assert not again.created
    assert first.notification_id == again.notification_id
    assert len(await pushes(pool)) == 1
    cd = await pool.fetchrow("SELECT * FROM scenario_cooldown")
    assert cd["last_triggered_at"] == T0
    decision = await engine.should_notify(mentor, "inactivity", as_of=T0 + DAY)
    assert decision.outcome == "cooldown"
    await engine.record_last_triggered(mentor, "inactivity", as_of=T0 - 30 * DAY)  # never moves back
    assert await pool.fetchval("SELECT last_triggered_at FROM scenario_cooldown") == T0


async def test_engine_writes_do_not_produce_events(engine: Engine, pool: Any) -> None:
    mentor = await add_mentor(pool, joined_at=T0 - 100 * DAY)
    await engine.run_scheduled_evaluation(T0 - 99 * DAY)
    for i in range(3):
        await add_activity(pool, mentor, T0 + i * dt.timedelta(hours=1))
    before = await pool.fetchval("SELECT count(*) FROM scenario_event")
    assert (await engine.run_scheduled_evaluation(T0 + DAY)).sent == 1
    assert await pool.fetchval("SELECT count(*) FROM achievement") == 2
    assert await pool.fetchval("SELECT count(*) FROM scenario_event") == before


# --- sweep --------------------------------------------------------------------------------


async def test_sweep_twice_sends_nothing_the_second_time(engine: Engine, pool: Any) -> None:
    for _ in range(5):
        await add_mentor(pool, joined_at=T0 - 100 * DAY)
    first = await engine.run_scheduled_evaluation(T0)
    second = await engine.run_scheduled_evaluation(T0)
    assert first.sent == 5
    assert second.sent == 0
    assert len(await pushes(pool)) == 5


async def test_concurrent_sweeps_send_nothing_twice(pool: Any, rules: Rules) -> None:
    import anyio

    for i in range(200):
        m = await add_mentor(pool, joined_at=T0 - 100 * DAY)
        await add_certification(pool, m, expires_at=T0 + (i % 40) * DAY + DAY)
    engines = [Engine(pool, rules, sweep_batch=37) for _ in range(3)]
    async with anyio.create_task_group() as tg:
        for e in engines:
            tg.start_soon(e.run_scheduled_evaluation, T0)
    keys = await pool.fetch(
        "SELECT idempotency_key, count(*) FROM push_notification GROUP BY 1 HAVING count(*) > 1"
    )
    assert keys == []
    assert await pool.fetchval("SELECT count(*) FROM push_notification") == await pool.fetchval(
        "SELECT count(*) FROM scenario_notification"
    )


async def test_dry_run_writes_nothing_and_matches_real_run(engine: Engine, pool: Any) -> None:
    for i in range(30):
        m = await add_mentor(pool, joined_at=T0 - (10 + i) * DAY)
        await add_certification(pool, m, expires_at=T0 + i * DAY + dt.timedelta(hours=1))
        if i % 4 == 0:
            await opt_out(pool, m)
    tables = [
        "scenario_notification",
        "push_notification",
        "scenario_decision",
        "achievement",
        "scenario_rule_state",
    ]
    before = {t: await pool.fetchval(f"SELECT count(*) FROM {t}") for t in tables}
    dry = await engine.run_scheduled_evaluation(T0, dry_run=True)
    assert {t: await pool.fetchval(f"SELECT count(*) FROM {t}") for t in tables} == before
    real = await engine.run_scheduled_evaluation(T0)
    assert dry.per_rule == real.per_rule
    assert real.sent > 0


async def test_handle_database_event_routes_to_evaluators(engine: Engine, pool: Any) -> None:
    from scenario_engine.events import EventError, ScenarioEvent

    mentor = await add_mentor(pool, joined_at=T0 - 100 * DAY)
    await engine.run_scheduled_evaluation(T0 - 99 * DAY)
    await add_certification(pool, mentor, expires_at=T0 + 3 * DAY)
    row = await pool.fetchrow("SELECT * FROM scenario_event WHERE table_name = 'certification'")
    [o] = await engine.handle_database_event(ScenarioEvent.from_row(row), as_of=T0)
    assert o.candidate.scenario_type == "certification_expiry"
    with pytest.raises(EventError, match="unknown table"):
        await engine.handle_database_event(
            ScenarioEvent(id=1, table_name="payroll", operation="INSERT", mentor_id=mentor)
        )
    with pytest.raises(EventError, match="no mentor"):
        await engine.handle_database_event(ScenarioEvent(id=2, table_name="activity", operation="INSERT"))
