"""The mentor's usual hour (issue 21, item 4), hand-computed across time zones and both DST
changes, through the sweep and the event path, and its experiment arm (item 5).

As of 2026-03-28 22:30 UTC Oslo is still on CET (the clocks go forward at 02:00 the next
night), New York already on EDT, Tokyo has no DST. As of 2026-10-24 23:30 UTC Oslo is on
CEST and goes back at 03:00 that night; New York is still on EDT. The hold ends in the
zone's offset of the day it ends, which the expected instants below spell out."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from scenario_engine.cli.output.report import format_table
from scenario_engine.config import Settings
from scenario_engine.engine import Engine
from scenario_engine.explain import explain_mentor
from scenario_engine.outcomes.holdout import in_group
from scenario_engine.outcomes.report import build_report
from scenario_engine.push.log import LogProvider
from scenario_engine.runtime.dispatcher import Dispatcher
from scenario_engine.runtime.metrics import Metrics
from scenario_engine.scenarios.certification import CertificationExpiryRule
from scenario_engine.scenarios.inactivity import InactivityRule
from scenario_engine.scenarios.rules import Rules
from scenario_engine.timing import timing_arm
from scenario_engine.web.programme_view import load_programme_health, render_programme
from tests.support.factories import add_activity, add_certification, add_mentor

UTC = dt.UTC
SPRING = dt.datetime(2026, 3, 28, 22, 30, tzinfo=UTC)
AUTUMN = dt.datetime(2026, 10, 24, 23, 30, tzinfo=UTC)


def z(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def rules(*, timing_percent: float = 100.0, **rule: Any) -> Rules:
    return Rules(
        daily_cap=3,
        usual_hour=18,
        usual_hour_activities=5,
        usual_hour_min_history=3,
        timing_percent=timing_percent,
        inactivity=[
            InactivityRule(
                name="inactive_21d",
                threshold_days=21,
                cooldown_days=7,
                max_reminders=2,
                send_at="usual_hour",
                **rule,
            )
        ],
    )


async def population(pool: asyncpg.Pool[Any]) -> dict[str, uuid.UUID]:
    """Four inactive mentors whose activity histories are written in UTC from local times."""
    joined = z("2025-06-01T00:00:00")
    oslo = await add_mentor(pool, joined_at=joined, timezone="Europe/Oslo")
    # Three at 19:10 CET (18:10 UTC) and two at 08:00 CET among the last five; three older ones
    # at 08:00 fall outside the last five, so 08 (five in all) must not win.
    for day in (1, 2, 3):
        await add_activity(pool, oslo, z(f"2026-02-0{day}T18:10:00"))
    for day in (4, 5):
        await add_activity(pool, oslo, z(f"2026-02-0{day}T07:00:00"))
    for day in (10, 11, 12):
        await add_activity(pool, oslo, z(f"2026-01-{day}T07:00:00"))
    new_york = await add_mentor(pool, joined_at=joined, timezone="America/New_York")
    for day in (10, 11, 12):  # 07:15 EST
        await add_activity(pool, new_york, z(f"2026-02-{day}T12:15:00"))
    await add_activity(pool, new_york, z("2026-02-14T01:00:00"))  # 20:00 EST on the 13th
    tokyo = await add_mentor(pool, joined_at=joined, timezone="Asia/Tokyo")
    for day in (10, 11):  # two: fewer than the three the mentor's own hour needs
        await add_activity(pool, tokyo, z(f"2026-02-{day}T01:00:00"))
    late = await add_mentor(pool, joined_at=joined, timezone="Europe/Oslo")
    for day in (1, 2, 3):  # 22:30 CET
        await add_activity(pool, late, z(f"2026-02-0{day}T21:30:00"))
    return {"oslo": oslo, "new_york": new_york, "tokyo": tokyo, "late": late}


TOKYO = (
    "held until 18:00 Asia/Tokyo: the programme's usual hour: 2 activities, "
    "fewer than the 3 the mentor's own hour needs"
)
LATE = (
    "held until 20:30 Europe/Oslo, the rule's maximum delay of 20 h "
    "(usual hour 22:00: 3 of the last 3 activities were between 22:00 and 23:00)"
)
EXPECTED = {
    SPRING: {
        "oslo": (
            "2026-03-29T17:00:00",
            "held until 19:00 Europe/Oslo: 3 of the last 5 activities were between 19:00 and 20:00",
        ),
        "new_york": (
            "2026-03-29T11:00:00",
            "held until 07:00 America/New_York: 3 of the last 4 activities were between 07:00 and 08:00",
        ),
        "tokyo": (
            "2026-03-29T09:00:00",
            TOKYO,
        ),
        "late": (
            "2026-03-29T18:30:00",
            LATE,
        ),
    },
    AUTUMN: {
        "oslo": (
            "2026-10-25T18:00:00",
            "held until 19:00 Europe/Oslo: 3 of the last 5 activities were between 19:00 and 20:00",
        ),
        "new_york": (
            "2026-10-25T11:00:00",
            "held until 07:00 America/New_York: 3 of the last 4 activities were between 07:00 and 08:00",
        ),
        "tokyo": (
            "2026-10-25T09:00:00",
            TOKYO,
        ),
        "late": (
            "2026-10-25T19:30:00",
            LATE,
        ),
    },
}


@pytest.mark.parametrize("path", ["sweep", "event"])
@pytest.mark.parametrize("as_of", [SPRING, AUTUMN], ids=["spring-forward", "fall-back"])
async def test_held_until_the_usual_hour_hand_computed(
    pool: asyncpg.Pool[Any], path: str, as_of: dt.datetime
) -> None:
    mentors = await population(pool)
    engine = Engine(pool, rules())
    if path == "sweep":
        await engine.run_scheduled_evaluation(as_of)
    else:
        async with pool.acquire() as conn:
            await engine.evaluate_routed(conn, {"inactivity": set(mentors.values())}, as_of)
    rows = {
        r["mentor_id"]: r
        for r in await pool.fetch(
            "SELECT p.mentor_id, p.held_until, p.hold_reason, d.reason, o.timing_arm "
            "FROM push_notification p JOIN scenario_decision d ON d.notification_id = p.notification_id "
            "JOIN scenario_outcome o ON o.decision_id = d.id"
        )
    }
    for name, (until, reason) in EXPECTED[as_of].items():
        row = rows[mentors[name]]
        assert (row["held_until"], row["hold_reason"]) == (z(until), reason), name
        assert row["reason"].endswith("; " + reason)  # the decision log says it too
        assert row["timing_arm"] == "usual_hour"


async def test_explain_shows_the_hold(pool: asyncpg.Pool[Any]) -> None:
    mentors = await population(pool)
    explained = await explain_mentor(Engine(pool, rules()), mentors["oslo"], SPRING)
    [trace] = [t for t in explained.rules if t.rule == "inactive_21d"]
    assert trace.verdict == "would send"
    assert trace.reason.endswith(
        "held until 19:00 Europe/Oslo: 3 of the last 5 activities were between 19:00 and 20:00"
    )


async def test_a_held_push_is_not_sent_before_its_hour(pool: asyncpg.Pool[Any]) -> None:
    """Now, not in the past: the outbox row waits (next_attempt_at is the hold's end)."""
    now = await pool.fetchval("SELECT now()")
    mentor = await add_mentor(pool, joined_at=now - dt.timedelta(days=400), timezone="UTC")
    hour = (now + dt.timedelta(hours=3)).hour
    for days in (30, 31, 32):
        await add_activity(pool, mentor, (now - dt.timedelta(days=days)).replace(hour=hour, minute=5))
    await Engine(pool, rules()).run_scheduled_evaluation()
    push = await pool.fetchrow("SELECT * FROM push_notification")
    assert push is not None
    assert push["held_until"] is not None and push["next_attempt_at"] == push["held_until"]
    assert dt.timedelta(hours=2) <= push["held_until"] - now <= dt.timedelta(hours=3)
    s = Settings()
    async with Dispatcher(pool, LogProvider(), s, Metrics()) as d:
        assert (await d.dispatch_once()).claimed == 0


def _off_the_usual_hour(now: dt.datetime) -> dt.datetime:
    """An evaluation instant at or just before ``now`` that is not within an hour of the
    programme's usual hour (18:00 in Oslo, where these mentors live): in that hour a timed push
    goes out at once, so a test run then (17:00–18:00 UTC in winter) saw no hold."""
    oslo = now.astimezone(ZoneInfo("Europe/Oslo"))
    return now - dt.timedelta(hours=3) if oslo.hour in (17, 18) else now


async def test_last_tier_certification_reminder_is_never_held(pool: asyncpg.Pool[Any]) -> None:
    r = Rules(
        daily_cap=5,
        timing_percent=100,
        certification_expiry=[
            CertificationExpiryRule(name="cert_expiry", tiers_days=[30, 1], send_at="usual_hour")
        ],
    )
    now = await pool.fetchval("SELECT now()")
    urgent = await add_mentor(pool, timezone="Europe/Oslo")
    await add_certification(pool, urgent, expires_at=now + dt.timedelta(hours=12))
    early = await add_mentor(pool, timezone="Europe/Oslo")
    await add_certification(pool, early, expires_at=now + dt.timedelta(days=20))
    await Engine(pool, r).run_scheduled_evaluation(_off_the_usual_hour(now))
    rows = {
        r["mentor_id"]: r
        for r in await pool.fetch(
            "SELECT p.mentor_id, p.held_until, p.next_attempt_at, o.timing_arm FROM push_notification p "
            "JOIN scenario_outcome o ON o.mentor_id = p.mentor_id"
        )
    }
    assert rows[urgent]["held_until"] is None and rows[urgent]["timing_arm"] is None
    assert rows[urgent]["next_attempt_at"] <= await pool.fetchval("SELECT now()")
    assert rows[early]["timing_arm"] == "usual_hour"
    assert rows[early]["held_until"] is not None  # no history: the programme's 18:00 Oslo


async def test_timing_arms_follow_the_salted_hash(pool: asyncpg.Pool[Any]) -> None:
    r = rules(timing_percent=50)
    joined = z("2025-06-01T00:00:00")
    mentors = [await add_mentor(pool, joined_at=joined, timezone="Europe/Oslo") for _ in range(40)]
    await Engine(pool, r).run_scheduled_evaluation(SPRING)
    rows = await pool.fetch(
        "SELECT o.mentor_id, o.timing_arm, p.held_until FROM scenario_outcome o "
        "JOIN push_notification p ON p.mentor_id = o.mentor_id"
    )
    assert len(rows) == 40
    rule = r.inactivity[0]
    for row in rows:
        arm = timing_arm(rule, r, row["mentor_id"])
        assert arm == ("usual_hour" if in_group(50, f"timing:{rule.name}", row["mentor_id"]) else "immediate")
        assert row["timing_arm"] == arm
        assert (row["held_until"] is not None) == (arm == "usual_hour")
    assert {row["timing_arm"] for row in rows} == {"usual_hour", "immediate"}
    assert set(mentors) == {row["mentor_id"] for row in rows}


async def test_report_shows_the_timing_arms_difference_over_the_mature_cohort(
    pool: asyncpg.Pool[Any],
) -> None:
    r = rules(timing_percent=50)
    joined = z("2025-06-01T00:00:00")
    for _ in range(90):
        await add_mentor(pool, joined_at=joined, timezone="Europe/Oslo")
    await Engine(pool, r).run_scheduled_evaluation(SPRING)
    # Resolve by hand: in each arm, the first 60 % (usual hour) or 40 % (immediate) achieved.
    await pool.execute(
        "UPDATE scenario_outcome o SET window_ends_at = $1, status = CASE WHEN x.n <= x.total * "
        "CASE x.timing_arm WHEN 'usual_hour' THEN 0.6 ELSE 0.4 END THEN 'achieved' ELSE 'missed' END "
        "FROM (SELECT decision_id, timing_arm, "
        "row_number() OVER (PARTITION BY timing_arm ORDER BY decision_id) AS n, "
        "count(*) OVER (PARTITION BY timing_arm) AS total FROM scenario_outcome) x "
        "WHERE x.decision_id = o.decision_id",
        SPRING + dt.timedelta(days=14),
    )
    counts = dict(await pool.fetch("SELECT timing_arm, count(*) FROM scenario_outcome GROUP BY 1"))
    achieved = dict(
        await pool.fetch(
            "SELECT timing_arm, count(*) FROM scenario_outcome WHERE status = 'achieved' GROUP BY 1"
        )
    )
    assert min(counts.values()) >= 30
    day = dt.timedelta(days=1)
    report = await build_report(pool, since=SPRING - day, until=SPRING + 30 * day, as_of=SPRING + 30 * day)
    [arms] = report.arm_experiments
    assert (arms.rule_name, arms.experiment) == ("inactive_21d", "timing")
    assert (arms.new.achieved, arms.new.final) == (achieved["usual_hour"], counts["usual_hour"])
    assert (arms.old.achieved, arms.old.final) == (achieved["immediate"], counts["immediate"])
    points = 100 * (
        achieved["usual_hour"] / counts["usual_hour"] - achieved["immediate"] / counts["immediate"]
    )
    assert arms.lift.points == pytest.approx(points)
    assert arms.lift.low is not None and arms.lift.high is not None
    assert arms.lift.low < points < arms.lift.high
    line = (
        f"inactive_21d: sending at the usual hour: {points:+.1f} points, 95 % range {arms.lift.low:+.1f} to "
    )
    assert line in format_table(report)
    # The programme page shows the same comparison.
    async with pool.acquire() as conn:
        page = await load_programme_health(conn, SPRING + 30 * day)
    [shown] = page.delivery_experiments
    assert shown == arms
    html = render_programme(page)
    assert 'data-experiment="timing"' in html and f"{points:+.1f} points" in html


async def test_each_organisation_s_variant_decides_its_own_hold_in_a_batch(pool: asyncpg.Pool[Any]) -> None:
    """Two organisations' variants of one rule that differ only in fields the experiment key
    leaves out (here ``send_at``) share an experiment. The sweep decides a batch's candidates
    per experiment; each push must still be timed by its own organisation's variant, exactly as
    ``evaluate_mentor`` times it — the batch once wrote every candidate of the experiment with
    the first candidate's variant (the equivalence property found it with ``tiers_days``)."""
    now_org = uuid.UUID("00000000-0000-4000-8000-0000000000b1")
    r = Rules.model_validate(
        {
            "daily_cap": 5,
            "timing_percent": 100,
            "certification_expiry": [{"name": "cert_expiry", "tiers_days": [30, 1], "send_at": "usual_hour"}],
            "organizations": {str(now_org): {"rules": {"cert_expiry": {"send_at": "now"}}}},
        }
    )
    now = await pool.fetchval("SELECT now()")
    timed: list[uuid.UUID] = []
    at_once: list[uuid.UUID] = []
    for _ in range(3):  # both orders of the two organisations' mentors in the batch, whatever the ids
        for group, org in ((timed, None), (at_once, now_org)):
            mentor = await add_mentor(pool, timezone="Europe/Oslo")
            if org is not None:
                await pool.execute("UPDATE peer_mentor SET organization_id = $2 WHERE id = $1", mentor, org)
            await add_certification(pool, mentor, expires_at=now + dt.timedelta(days=20))
            group.append(mentor)
    await Engine(pool, r).run_scheduled_evaluation(_off_the_usual_hour(now))
    rows = {
        row["mentor_id"]: row
        for row in await pool.fetch(
            "SELECT p.mentor_id, p.held_until, p.hold_reason, o.timing_arm FROM push_notification p "
            "JOIN scenario_outcome o ON o.mentor_id = p.mentor_id"
        )
    }
    assert set(rows) == {*timed, *at_once}
    for mentor in timed:
        assert rows[mentor]["timing_arm"] == "usual_hour" and rows[mentor]["held_until"] is not None
    for mentor in at_once:
        assert rows[mentor]["timing_arm"] is None and rows[mentor]["hold_reason"] is None
