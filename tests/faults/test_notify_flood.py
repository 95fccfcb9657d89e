"""A hostile neighbour on the event channels (issue 16, item 3).

Postgres has no privilege for LISTEN or NOTIFY: any role that may connect to the database, even
one granted nothing, can listen to ``scenario_events`` / ``scenario_push`` and send on them. These
tests log in as such a role and (a) listen while the platform writes and the daemon enqueues:
it must learn nothing (no table, operation, mentor id or count); (b) flood both channels with
200,000 notifications while the real daemon runs: the log stays small and JSON, /readyz stays
200 throughout, and a real platform write made during the flood is decided promptly.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest

from scenario_engine.runtime.listener import Coalesced
from tests.support import pg
from tests.support.factories import add_activity, add_mentor
from tests.support.faults import alive, eventually, now
from tests.support.figures import Figures
from tests.support.roles import create_role, drop_roles, unique_roles, url_as

pytestmark = pytest.mark.faults
CHANNELS = ("scenario_events", "scenario_push")
FLOOD = 200_000  # notifications, half on each channel
FLOOD_BATCH = 5_000  # per transaction (distinct payloads: Postgres merges only identical ones)
FLOOD_PACE = 0.25  # seconds between batches: 200,000 in ~10 s, a flood that lasts


@pytest.fixture
async def stranger(pg_server: pg.TestServer, db_url: str) -> AsyncIterator[str]:
    """The URL of a login role with no grant at all (only PUBLIC's CONNECT on the database)."""
    name = unique_roles().name("stranger")
    admin = await asyncpg.connect(pg_server.admin_dsn)
    try:
        await create_role(admin, name)
        yield url_as(db_url, name)
    finally:
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", name)
        await drop_roles(admin, [name])
        await admin.close()


@pytest.fixture(autouse=True)
async def notify_mode(pool: asyncpg.Pool[Any]) -> None:
    """The triggers in notify mode (a new installation polls since sql/0025): these tests are
    about what the NOTIFY wake-ups carry and cost."""
    await pool.execute(
        "UPDATE scenario_engine.scenario_engine_setting SET value = 'notify' WHERE key = 'notify_mode'"
    )


async def _milestone_writes(pool: asyncpg.Pool[Any]) -> uuid.UUID:
    """A mentor reaching the 2-session milestone: one decision and one push for the daemon."""
    mentor = await add_mentor(pool, joined_at=now() - dt.timedelta(days=1))
    await add_activity(pool, mentor, now() - dt.timedelta(minutes=2))
    await add_activity(pool, mentor, now() - dt.timedelta(minutes=1))
    return mentor


@pytest.mark.acceptance
async def test_a_role_granted_nothing_hears_only_empty_wakeups(
    daemons: Any, pool: asyncpg.Pool[Any], rules_path: Path, stranger: str
) -> None:
    heard: list[tuple[str, str]] = []
    spy = await asyncpg.connect(stranger)
    try:
        # the role really has nothing: no engine table, no platform table
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await spy.fetch("SELECT * FROM scenario_engine.scenario_event")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await spy.fetch("SELECT * FROM public.notification_preference")
        for channel in CHANNELS:
            await spy.add_listener(channel, lambda _c, _p, ch, payload: heard.append((ch, str(payload))))

        d = daemons(rules_file=rules_path, poll_interval_seconds=30)
        await d.wait_ready()
        mentor = await _milestone_writes(pool)
        await pool.execute(
            "INSERT INTO public.notification_preference (mentor_id, scenario_type, opted_out) "
            "VALUES ($1, 'inactivity', true)",
            mentor,
        )
        pushes = "SELECT count(*) = 1 FROM scenario_engine.push_notification"
        await eventually(lambda: pool.fetchval(pushes), 30, "a push", d)
        await eventually(lambda: _heard_both(heard), 10, "a wake-up on each channel", d)
    finally:
        await spy.close()
    # Before issue 16: {"event_id": …, "table": "notification_preference", "op": "INSERT",
    # "mentor_id": "…"} on scenario_events, and the number of pushes on scenario_push.
    assert {payload for _, payload in heard} == {""}, heard
    assert all(str(mentor) not in payload for _, payload in heard)


async def _heard_both(heard: list[tuple[str, str]]) -> bool:
    return {channel for channel, _ in heard} == set(CHANNELS)


@pytest.mark.acceptance
async def test_a_notify_flood_costs_only_wakeups(
    daemons: Any, pool: asyncpg.Pool[Any], rules_path: Path, stranger: str, figures: Figures
) -> None:
    # The drain's poll is long: only a wake-up can decide the real write within the bound below.
    # The listener's ping timeout as in production (the suite's default is 1 s).
    d = daemons(
        rules_file=rules_path,
        poll_interval_seconds=60,
        poll_min_interval_seconds=60,  # a fixed poll: no adaptive probe decides the write first
        dispatch_poll_interval_seconds=60,
        listen_ping_timeout_seconds=5,
    )
    await d.wait_ready()
    lines_before = len(d.logs().splitlines())
    flooding = anyio.Event()
    flood_done = anyio.Event()
    readyz: list[int] = []

    async def flood() -> None:
        conn = await asyncpg.connect(stranger)
        try:
            for start in range(0, FLOOD // 2, FLOOD_BATCH):
                # one transaction per batch, on both channels: ~2 × 5,000 notifications per commit
                await conn.execute(
                    "SELECT pg_notify(c, 'flood ' || g) FROM generate_series($1::int, $2::int) g, "
                    "unnest($3::text[]) c",
                    start,
                    start + FLOOD_BATCH - 1,
                    list(CHANNELS),
                )
                flooding.set()
                await anyio.sleep(FLOOD_PACE)
        finally:
            await conn.close()
            flood_done.set()

    async def probe() -> None:
        while not flood_done.is_set():
            readyz.append((await d.http("/readyz"))[0])
            await anyio.sleep(0.1)

    async with anyio.create_task_group() as tg:
        tg.start_soon(flood)
        tg.start_soon(probe)
        await flooding.wait()
        started = time.monotonic()
        await _milestone_writes(pool)  # a real change, made while the channel is flooded
        await eventually(
            lambda: pool.fetchval("SELECT count(*) = 1 FROM scenario_engine.scenario_notification"),
            20,
            "the real change decided during the flood",
            d,
        )
        decided_after = time.monotonic() - started
        await flood_done.wait()
    flood_seconds = time.monotonic() - started

    received = FLOOD // 2 + 2  # the flood on scenario_events plus the two real inserts' wake-ups
    await eventually(
        lambda: _at_least(d, "scenario_events_received_total", received), 60, "every NOTIFY counted", d
    )
    assert alive(d) and (await d.http("/readyz"))[0] == 200
    assert readyz and set(readyz) == {200}, readyz
    lines = d.logs().splitlines()[lines_before:]
    # Before issue 16: one warning line per malformed payload (175k lines, 36 MB for 200k).
    assert len(lines) < 100, lines[:20]
    assert all(json.loads(line) for line in lines)
    assert "flood" not in "\n".join(lines)
    figures.fault("NOTIFY from a role granted nothing", FLOOD)
    figures.notes["flood_log_lines"] = len(lines)
    figures.notes["flood_readyz_probes"] = len(readyz)
    figures.notes["flood_seconds"] = round(flood_seconds, 1)
    figures.notes["real_change_decided_after_seconds"] = round(decided_after, 2)


async def _at_least(d: Any, name: str, value: float) -> bool:
    return bool(await d.metric(name) >= value)


async def test_a_burst_of_notifications_is_one_wakeup_now_and_one_at_the_end_of_the_gap() -> None:
    pokes: list[float] = []
    wake = Coalesced(lambda: pokes.append(time.monotonic()), gap=0.2)
    first = time.monotonic()
    for _ in range(100_000):
        wake()
    assert len(pokes) == 1 and pokes[0] - first < 0.2  # the first at once
    await anyio.sleep(0.5)
    assert len(pokes) == 2  # the rest of the burst: one more, never dropped
    await anyio.sleep(0.3)
    wake()  # after a quiet gap: at once again
    assert len(pokes) == 3
