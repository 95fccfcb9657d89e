"""Digests (issue 21, item 3): a mentor's pushes due within the programme's window go as one
message naming each; each push keeps its row, outcome and arm; a last-tier certification
reminder is never held back; the report counts what was merged and what the cap dropped.

The usual-hour case is hand-computed at a future instant across the EU spring-forward
(2027-03-28 01:00 UTC): as of 2027-03-27 22:30 UTC, Oslo (CET) has a usual hour of 19, which
the next day is 19:00 CEST = 17:00 UTC, and the digest window of 30 minutes ends at 17:30 UTC;
New York (already EDT) has 07, i.e. 11:00 UTC, window end 11:30 UTC."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
import asyncpg
import pytest

from scenario_engine.config import Settings
from scenario_engine.domain.rules import Rules
from scenario_engine.engine import Engine
from scenario_engine.outcomes.report import build_report, format_table
from scenario_engine.push.factory import make_provider
from scenario_engine.runtime.dispatcher import Dispatcher, DispatchStats
from scenario_engine.runtime.metrics import Metrics
from scenario_engine.scenarios.anniversary import AnniversaryRule
from scenario_engine.scenarios.certification import CertificationExpiryRule
from scenario_engine.scenarios.inactivity import InactivityRule
from tests.support.factories import add_activity, add_certification, add_mentor
from tests.support.gateway import Gateway

UTC = dt.UTC
DAY = dt.timedelta(days=1)


def rules(*, send_at: str = "now", digest_percent: float = 100.0, daily_cap: int = 5) -> Rules:
    return Rules(
        daily_cap=daily_cap,
        digest_minutes=30,
        digest_percent=digest_percent,
        timing_percent=100,
        usual_hour_activities=5,
        usual_hour_min_history=3,
        inactivity=[
            InactivityRule(
                name="inactive_21d", threshold_days=21, cooldown_days=7, max_reminders=2, send_at=send_at
            ),
        ],
        certification_expiry=[CertificationExpiryRule(name="cert_expiry", tiers_days=[30, 1])],
        anniversary=[AnniversaryRule(name="anniversary", years=[1], backfill=True, send_at=send_at)],
    )


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    gw = await Gateway().start()
    yield gw
    await gw.stop()


async def drain(pool: asyncpg.Pool[Any], gateway: Gateway) -> DispatchStats:
    s = Settings(push_provider="webhook", push_webhook_url=gateway.url, push_rate_per_second=10_000)
    total = DispatchStats()
    async with Dispatcher(pool, make_provider(s, pool), s, Metrics()) as d:
        with anyio.fail_after(30):
            while await pool.fetchval(
                "SELECT count(*) FROM push_notification WHERE status IN ('pending', 'sending') "
                "AND next_attempt_at <= now()"
            ):
                stats = await d.dispatch_once()
                for k, v in vars(stats).items():
                    setattr(total, k, getattr(total, k) + v)
    return total


async def test_three_pushes_in_the_window_go_as_one_message_naming_each(
    pool: asyncpg.Pool[Any], gateway: Gateway
) -> None:
    now = await pool.fetchval("SELECT now()")
    # Joined a year ago today (UTC): inactive since, its anniversary, and a certification.
    mentor = await add_mentor(pool, joined_at=now.replace(year=now.year - 1), timezone="UTC")
    await add_certification(pool, mentor, expires_at=now + 20 * DAY)  # tier 30: not the last
    await Engine(pool, rules()).run_scheduled_evaluation()
    pushes = await pool.fetch("SELECT * FROM push_notification ORDER BY id")
    assert len(pushes) == 3 and all(p["digest"] for p in pushes)
    # The first opened the window; the others joined it: one due time, 30 minutes on.
    [due] = {p["next_attempt_at"] for p in pushes}
    assert dt.timedelta(minutes=29) < due - now <= dt.timedelta(minutes=31)
    assert await drain(pool, gateway) == DispatchStats()  # nothing due before the window ends
    await pool.execute("UPDATE push_notification SET next_attempt_at = now()")  # the window ends
    stats = await drain(pool, gateway)
    assert (stats.sent, stats.digested) == (3, 2)
    [request] = gateway.received
    titles = [p["title"] for p in pushes]
    assert request.json["title"] == f"3 updates: {', '.join(titles)}"
    assert request.json["body"] == "\n".join(f"• {t}" for t in titles)
    assert [d["title"] for d in request.json["data"]["digest"]] == titles
    rows = await pool.fetch(
        "SELECT status, digest_of, provider_message_id FROM push_notification ORDER BY id"
    )
    assert {r["status"] for r in rows} == {"sent"}
    assert {r["digest_of"] for r in rows} == {pushes[0]["id"]}
    assert len({r["provider_message_id"] for r in rows}) == 1
    outcomes = await pool.fetch("SELECT rule_name, arm, digest_arm FROM scenario_outcome ORDER BY rule_name")
    assert [(o["rule_name"], o["arm"], o["digest_arm"]) for o in outcomes] == [
        ("anniversary", "treated", "digest"),
        ("cert_expiry", "treated", "digest"),
        ("inactive_21d", "treated", "digest"),
    ]
    report = await build_report(pool, since=now - DAY, until=now + DAY, as_of=now + DAY)
    merged = {rule: m for rule, m, _ in report.digests}
    assert sum(merged.values()) == 2 and pushes[0]["data"]["rule"] not in merged
    assert "merged" in format_table(report)


async def test_last_tier_certification_reminder_is_never_held_by_a_digest(
    pool: asyncpg.Pool[Any], gateway: Gateway
) -> None:
    now = await pool.fetchval("SELECT now()")
    mentor = await add_mentor(pool, joined_at=now - 60 * DAY)
    await add_certification(pool, mentor, expires_at=now + dt.timedelta(hours=12))  # tier 1
    await Engine(pool, rules()).run_scheduled_evaluation()
    cert = await pool.fetchrow("SELECT * FROM push_notification WHERE scenario_type = 'certification_expiry'")
    assert (
        cert is not None
        and not cert["digest"]
        and cert["next_attempt_at"] <= await pool.fetchval("SELECT now()")
    )
    stats = await drain(pool, gateway)
    assert stats.sent == 1 and gateway.received[0].json["title"] == cert["title"]
    arm = await pool.fetchval(
        "SELECT digest_arm FROM scenario_outcome WHERE scenario_type = 'certification_expiry'"
    )
    assert arm is None


async def test_the_separate_arm_gets_separate_pushes(pool: asyncpg.Pool[Any], gateway: Gateway) -> None:
    now = await pool.fetchval("SELECT now()")
    r = rules(digest_percent=0)
    mentor = await add_mentor(pool, joined_at=now - 60 * DAY)
    await Engine(pool, r).run_scheduled_evaluation()
    assert await pool.fetchval("SELECT bool_or(digest) FROM push_notification") is False
    assert (await drain(pool, gateway)).sent == 1 and len(gateway.received) == 1
    arms = await pool.fetch("SELECT digest_arm FROM scenario_outcome WHERE mentor_id = $1", mentor)
    assert {a["digest_arm"] for a in arms} == {"separate"}


AS_OF = dt.datetime(2027, 3, 27, 22, 30, tzinfo=UTC)


def z(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize("path", ["sweep", "event"])
async def test_usual_hour_and_digest_hand_computed_across_spring_forward(
    pool: asyncpg.Pool[Any], path: str
) -> None:
    joined = z("2026-06-01T00:00:00")
    oslo = await add_mentor(pool, joined_at=joined, timezone="Europe/Oslo")
    for day in (1, 2, 3):  # 19:10 CET
        await add_activity(pool, oslo, z(f"2027-02-0{day}T18:10:00"))
    new_york = await add_mentor(pool, joined_at=joined, timezone="America/New_York")
    for day in (1, 2, 3):  # 07:15 EST
        await add_activity(pool, new_york, z(f"2027-02-0{day}T12:15:00"))
    engine = Engine(pool, rules(send_at="usual_hour"))
    if path == "sweep":
        await engine.run_scheduled_evaluation(AS_OF)
    else:
        async with pool.acquire() as conn:
            await engine.evaluate_routed(conn, {"inactivity": {oslo, new_york}}, AS_OF)
    rows = await pool.fetch("SELECT mentor_id, held_until, next_attempt_at, digest FROM push_notification")
    expected: dict[uuid.UUID, tuple[str, str]] = {
        oslo: ("2027-03-28T17:00:00", "2027-03-28T17:30:00"),
        new_york: ("2027-03-28T11:00:00", "2027-03-28T11:30:00"),
    }
    assert len(rows) == 2
    for row in rows:
        held, due = expected[row["mentor_id"]]
        assert (row["held_until"], row["next_attempt_at"], row["digest"]) == (z(held), z(due), True)


@pytest.mark.parametrize("digest_percent", [100.0, 0.0], ids=["digest", "separate"])
async def test_a_digest_counts_once_against_the_daily_cap(
    pool: asyncpg.Pool[Any], digest_percent: float
) -> None:
    """Cap 2, three messages due: with digests the three go as one and none is dropped; without,
    the cap drops the third (anniversary, the last rule in order) and the report says so."""
    now = await pool.fetchval("SELECT now()")
    mentor = await add_mentor(pool, joined_at=now.replace(year=now.year - 1), timezone="UTC")
    await add_certification(pool, mentor, expires_at=now + 20 * DAY)
    await Engine(pool, rules(digest_percent=digest_percent, daily_cap=2)).run_scheduled_evaluation()
    pushes = await pool.fetchval("SELECT count(*) FROM push_notification")
    capped = await pool.fetch("SELECT rule_name FROM scenario_decision WHERE outcome = 'daily_cap'")
    report = await build_report(pool, since=now - DAY, until=now + DAY, as_of=now + DAY)
    if digest_percent:
        assert (pushes, capped) == (3, [])
        assert await pool.fetchval("SELECT count(DISTINCT digest_window) FROM push_notification") == 1
    else:
        assert (pushes, [c["rule_name"] for c in capped]) == (2, ["anniversary"])
        assert ("anniversary", 0, 1) in report.digests
        assert "anniversary: 0 merged, 1 dropped by the cap" in format_table(report)
