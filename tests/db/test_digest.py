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

from scenario_engine.cli.output.report import format_table
from scenario_engine.config import Settings
from scenario_engine.engine import Engine
from scenario_engine.outcomes.report import build_report
from scenario_engine.push.factory import make_provider
from scenario_engine.runtime.dispatcher import Dispatcher, DispatchStats
from scenario_engine.runtime.metrics import Metrics
from scenario_engine.scenarios.anniversary import AnniversaryRule
from scenario_engine.scenarios.certification import CertificationExpiryRule
from scenario_engine.scenarios.inactivity import InactivityRule
from scenario_engine.scenarios.rules import Rules
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


async def drain(pool: asyncpg.Pool[Any], gateway: Gateway, batch_size: int = 100) -> DispatchStats:
    s = Settings(
        push_provider="webhook",
        push_webhook_url=gateway.url,
        push_rate_per_second=10_000,
        push_batch_size=batch_size,
    )
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


async def year_old_mentors(pool: asyncpg.Pool[Any], certified: list[bool]) -> list[uuid.UUID]:
    """Mentors who joined a year ago today (UTC), inactive since: inactivity and anniversary
    fire for each, and a certification reminder (tier 30) for the certified ones."""
    now = await pool.fetchval("SELECT now()")
    out = []
    for cert in certified:
        mentor = await add_mentor(pool, joined_at=now.replace(year=now.year - 1), timezone="UTC")
        if cert:
            await add_certification(pool, mentor, expires_at=now + 20 * DAY)
        out.append(mentor)
    return out


@pytest.mark.parametrize("dispatchers", [1, 2], ids=["one-dispatcher", "two-dispatchers-at-once"])
async def test_a_claim_batch_boundary_never_splits_a_digest(
    pool: asyncpg.Pool[Any], gateway: Gateway, dispatchers: int
) -> None:
    """Claim batches of 2, fewer than the 5 mentors with 2 or 3 due pushes each: every mentor
    still gets exactly one message naming all of theirs, and every push keeps its own row. The
    pushes are claimed in id order, rule by rule, so a batch of 2 used to take the first rule's
    pushes of two mentors only and send the rest of their digests as further messages."""
    certified = [True, False, True, False, True]
    mentors = await year_old_mentors(pool, certified)
    await Engine(pool, rules()).run_scheduled_evaluation()
    assert await pool.fetchval("SELECT count(*) FROM push_notification WHERE digest") == 13
    await pool.execute("UPDATE push_notification SET next_attempt_at = now()")  # the windows end
    async with anyio.create_task_group() as tg:
        for _ in range(dispatchers):
            tg.start_soon(drain, pool, gateway, 2)
    by_mentor: dict[str, list[Any]] = {}
    for request in gateway.received:
        by_mentor.setdefault(request.json["mentor_id"], []).append(request.json)
    assert sorted(by_mentor) == sorted(str(m) for m in mentors)
    for mentor, cert in zip(mentors, certified, strict=True):
        [message] = by_mentor[str(mentor)]  # one message per mentor
        count = 3 if cert else 2
        assert message["title"].startswith(f"{count} updates: ")
        assert len(message["data"]["digest"]) == count
        rows = await pool.fetch(
            "SELECT p.status, p.digest_of, p.notification_id, n.id AS ledger FROM push_notification p "
            "JOIN scenario_notification n ON n.id = p.notification_id WHERE p.mentor_id = $1",
            mentor,
        )
        assert len(rows) == count and {r["status"] for r in rows} == {"sent"}
        assert len({r["digest_of"] for r in rows}) == 1  # one message carried them all
        assert {d["notification_id"] for d in message["data"]["digest"]} == {r["ledger"] for r in rows}


# The digest lock's class key in claim_pushes and lock_digest_windows ('dgst').
DIGEST_LOCK = 1684501364


async def test_a_concurrent_claim_never_takes_part_of_a_digest(
    pool: asyncpg.Pool[Any], gateway: Gateway
) -> None:
    """Another dispatcher's claim, caught between its two scans, holds what a claim holds there:
    the mentor's digest lock and the row lock of the first due push it found. A claim meanwhile
    skips the mentor's digest whole (it used to skip that row only, and send the other two as a
    digest of two, the first later alone); once the other is done, one message carries all."""
    [mentor] = await year_old_mentors(pool, [True])
    await Engine(pool, rules()).run_scheduled_evaluation()
    await pool.execute("UPDATE push_notification SET next_attempt_at = now()")
    first = await pool.fetchval("SELECT min(id) FROM push_notification")
    s = Settings(push_provider="webhook", push_webhook_url=gateway.url, push_rate_per_second=10_000)
    async with Dispatcher(pool, make_provider(s, pool), s, Metrics()) as d:
        async with pool.acquire() as other, other.transaction():
            await other.execute(
                "SELECT pg_advisory_xact_lock($1, hashtext($2::uuid::text))", DIGEST_LOCK, mentor
            )
            await other.execute("SELECT 1 FROM push_notification WHERE id = $1 FOR UPDATE", first)
            assert (await d.dispatch_once()).claimed == 0
        assert (await d.dispatch_once()).claimed == 3
    [message] = gateway.received
    assert message.json["title"].startswith("3 updates: ")


def one_rule(name: str) -> Rules:
    """A programme of one rule with digests for everyone: two of them enqueue for the same
    mentors without meeting on a dedup key."""
    if name == "inactivity":
        return Rules(
            digest_minutes=30,
            digest_percent=100.0,
            inactivity=[InactivityRule(name="inactive_21d", threshold_days=21, cooldown_days=7)],
        )
    return Rules(
        digest_minutes=30,
        digest_percent=100.0,
        anniversary=[AnniversaryRule(name="anniversary", years=[1], backfill=True)],
    )


async def windows_per_mentor(pool: asyncpg.Pool[Any], mentors: list[uuid.UUID]) -> list[tuple[int, int]]:
    """(pushes, distinct digest windows) of each mentor."""
    rows = await pool.fetch(
        "SELECT count(p.id) AS pushes, count(DISTINCT p.digest_window) AS windows "
        "FROM unnest($1::uuid[]) AS m(id) LEFT JOIN push_notification p ON p.mentor_id = m.id "
        "GROUP BY m.id",
        mentors,
    )
    return [(r["pushes"], r["windows"]) for r in rows]


async def test_an_enqueue_that_finds_another_opening_the_window_waits_and_joins_it(
    pool: asyncpg.Pool[Any],
) -> None:
    """Two connections enqueue for the same mentors at once (the event path, two programmes'
    rules): the second starts while the first's transaction, which opened the windows, has not
    committed. It waits for the mentors' digest lock, then joins those windows."""
    mentors = await year_old_mentors(pool, [False, False, False])
    first, second = Engine(pool, one_rule("inactivity")), Engine(pool, one_rule("anniversary"))
    async with pool.acquire() as one, pool.acquire() as two:
        pid = two.get_server_pid()
        tx = one.transaction()
        await tx.start()
        await first.evaluate_routed(one, {"inactivity": set(mentors)})
        done = anyio.Event()
        waited = False

        async def enqueue_second() -> None:
            async with two.transaction():
                await second.evaluate_routed(two, {"anniversary": set(mentors)})
            done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(enqueue_second)
            with anyio.fail_after(10):  # blocked on the lock, or (the code before) done
                while not done.is_set():
                    waited = await pool.fetchval(
                        "SELECT wait_event_type = 'Lock' AND wait_event = 'advisory' "
                        "FROM pg_stat_activity WHERE pid = $1",
                        pid,
                    )
                    if waited:
                        break
                    await anyio.sleep(0.01)
            await tx.commit()
    assert waited
    assert await windows_per_mentor(pool, mentors) == [(2, 1)] * 3


async def test_concurrent_enqueues_open_one_window_per_mentor_however_they_race(
    pool: asyncpg.Pool[Any],
) -> None:
    """The free race, repeated: two connections enqueue for the same fresh mentors, released at
    the same instant. Without the lock most rounds left a mentor with two windows."""
    first, second = Engine(pool, one_rule("inactivity")), Engine(pool, one_rule("anniversary"))
    split = 0
    for _ in range(ROUNDS):
        mentors = await year_old_mentors(pool, [False] * 4)
        go = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(enqueue_when, go, pool, first, {"inactivity": set(mentors)})
            tg.start_soon(enqueue_when, go, pool, second, {"anniversary": set(mentors)})
            await anyio.sleep(0.05)  # both hold a connection and wait for the start
            go.set()
        counts = await windows_per_mentor(pool, mentors)
        assert all(pushes == 2 for pushes, _ in counts)
        split += sum(windows > 1 for _, windows in counts)
    assert split == 0


ROUNDS = 20


async def enqueue_when(
    go: anyio.Event, pool: asyncpg.Pool[Any], engine: Engine, routed: dict[str, set[uuid.UUID]]
) -> None:
    """One enqueue (the event path) in a transaction of its own, started when ``go`` is set."""
    async with pool.acquire() as conn:
        await go.wait()
        async with conn.transaction():
            await engine.evaluate_routed(conn, routed)
