"""TRUNCATE of a watched platform table (issue 16, item 11).

Row triggers do not fire on TRUNCATE, so `TRUNCATE activity` used to reach the engine as
nothing: the mentors whose activity vanished were inactive for weeks by the data, yet the
incremental sweep (only mentors newly due) never looked at them until the next periodic full
sweep — up to a day later, or never with a long ``SCENARIO_FULL_SWEEP_INTERVAL_HOURS``. Now a
statement-level trigger records a full-sweep request and the daemon's next sweep is a full one.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest

from tests.support.cli import run_cli
from tests.support.daemon import DaemonProcess
from tests.support.factories import add_activity, add_certification, add_mentor, opt_out

pytestmark = pytest.mark.acceptance

RULES = """
daily_cap = 100
[[inactivity]]
name = "inactive_21d"
threshold_days = 21
max_reminders = 1
[[certification_expiry]]
name = "cert"
tiers_days = [30]
"""
WATCHED = ["activity", "certification", "achievement", "notification_preference"]


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await anyio.sleep(0.1)
    raise AssertionError(f"{what} not reached within {timeout} s")


async def test_each_watched_table_has_a_truncate_trigger_that_requests_a_full_sweep(pool: Any) -> None:
    for table in WATCHED:
        await pool.execute(f"TRUNCATE public.{table} CASCADE")
    rows = await pool.fetch("SELECT table_name, operation FROM scenario_engine.scenario_full_sweep_request")
    assert sorted((r["table_name"], r["operation"]) for r in rows) == sorted((t, "TRUNCATE") for t in WATCHED)
    # the engine's own truncations (origin = engine) are not requests, as for row changes
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT set_config('scenario_engine.origin', 'engine', true)")
        await conn.execute("TRUNCATE public.activity")
    assert await pool.fetchval("SELECT count(*) FROM scenario_engine.scenario_full_sweep_request") == 4


async def inactivity_sent(pool: asyncpg.Pool[Any]) -> set[Any]:
    rows = await pool.fetch(
        "SELECT mentor_id FROM scenario_engine.scenario_notification WHERE scenario_type = 'inactivity'"
    )
    return {r["mentor_id"] for r in rows}


async def test_truncate_then_reinsert_is_evaluated_as_a_full_sweep_would(
    daemons: Any, pool: Any, db_url: str, tmp_path: Path
) -> None:
    now = dt.datetime.now(dt.UTC)
    rules_file = tmp_path / "rules.toml"
    rules_file.write_text(RULES)
    mentors = [await add_mentor(pool, joined_at=now - dt.timedelta(days=100)) for _ in range(8)]
    for m in mentors:
        await add_activity(pool, m, now - dt.timedelta(days=1))  # everyone active yesterday
    opted = mentors[7]
    await opt_out(pool, opted, "inactivity")  # … and one opted out
    renewed = mentors[6]  # a certification expiring in 10 days, already renewed
    await add_certification(pool, renewed, expires_at=now + dt.timedelta(days=10), type_="first_aid")
    await add_certification(pool, renewed, expires_at=now + dt.timedelta(days=400), type_="first_aid")

    # sweeps every 2 s; after the first (full) one they are incremental for a day
    d: DaemonProcess = daemons(rules_file=rules_file, sweep_interval_seconds=2, poll_interval_seconds=0.2)
    await d.wait_ready()

    async def swept(mode: str, after: int = 0) -> bool:
        sweeps = [e for e in d.log_events() if e.get("event") == "sweep_finished"]
        started = [e for e in d.log_events() if e.get("event") == "sweep_started" and e.get("mode") == mode]
        return len(sweeps) > after and len(started) > 0

    await eventually(lambda: swept("full"), 20, "a first full sweep")
    await eventually(lambda: swept("incremental"), 20, "an incremental sweep")
    assert await inactivity_sent(pool) == set()

    # The platform truncates three tables and re-inserts only part of what they held:
    # activity for mentors 0–3 (4–7 are now 100 days inactive by the data), mentor 7's opt-out
    # is gone, and mentor 6's renewal is lost (the old certification is back alone).
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("TRUNCATE public.activity, public.notification_preference")
        await conn.execute("TRUNCATE public.certification")
        for m in mentors[:4]:
            await add_activity(conn, m, now - dt.timedelta(days=1))
        await add_certification(conn, renewed, expires_at=now + dt.timedelta(days=10), type_="first_aid")
    finished_before = len([e for e in d.log_events() if e.get("event") == "sweep_finished"])

    def requested_full() -> list[dict[str, Any]]:
        return [
            e
            for e in d.log_events()
            if e.get("event") == "sweep_started" and e.get("full_sweep_requested_by")
        ]

    async def answered() -> bool:
        done = len([e for e in d.log_events() if e.get("event") == "sweep_finished"]) > finished_before + 1
        left = await pool.fetchval("SELECT count(*) FROM scenario_engine.scenario_full_sweep_request")
        return bool(requested_full()) and done and left == 0

    await eventually(answered, 30, "a requested full sweep")
    [started] = requested_full()[:1]
    assert started["mode"] == "full"
    assert set(started["full_sweep_requested_by"]) == {
        "TRUNCATE activity",
        "TRUNCATE notification_preference",
        "TRUNCATE certification",
    }
    # what the daemon decided: mentors 4–7 (7 no longer opted out) reminded, 0–3 not
    assert await inactivity_sent(pool) == set(mentors[4:])
    cert = await pool.fetch(
        "SELECT mentor_id FROM scenario_engine.scenario_notification "
        "WHERE scenario_type = 'certification_expiry'"
    )
    assert [r["mentor_id"] for r in cert] == [renewed]
    # … is all a full sweep decides: a full dry run now finds nothing more to send
    env = {"SCENARIO_DATABASE_URL": db_url, "SCENARIO_RULES_FILE": str(rules_file)}
    dry = await run_cli("sweep", "--dry-run", "--output", "json", env=env)
    assert dry.returncode == 0, dry.stderr
    assert [x for x in json.loads(dry.stdout)["decisions"] if x["outcome"] == "sent"] == []

    # and the sweeps after it are incremental again (the request was answered once)
    async def incremental_again() -> bool:
        last: dict[str, Any] = [e for e in d.log_events() if e.get("event") == "sweep_started"][-1]
        return bool(last["mode"] == "incremental")

    await eventually(incremental_again, 20, "incremental sweeps again")
