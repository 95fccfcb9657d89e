"""The daemon's clock is not trusted (issue 16, item 9): the real daemon, its host clock shifted.

The daemon runs under libfaketime (Debian package ``faketime``) when it is installed: every
wall-clock read of the process is shifted, as on a host whose clock is wrong. Without it,
``SCENARIO_TEST_CLOCK_OFFSET_SECONDS`` shifts the daemon's own local clock (runtime/clock.py's
``local_now``, its only reader of the host's wall clock) instead. Before the fix, with the host
a day ahead, mentors 20.5 days inactive by the database's clock got a 21-day "we miss you";
with the host 2 h behind, a mentor who had just logged activity got a reminder (cooldown and
ledger row written) and a milestone was missed on the event path. Decisions now take ``as_of``
from the database; the skew is measured and reported (log, metric, /status).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from scenario_engine.runtime.clock import TEST_OFFSET_ENV
from tests.support.daemon import DaemonProcess

pytestmark = pytest.mark.acceptance

RULES = """
daily_cap = 100
[[inactivity]]
name = "inactive_21d"
threshold_days = 21
cooldown_days = 7
[[milestone]]
name = "sessions_year"
metric = "sessions"
thresholds = [2]
"""
DAY = 86400.0
# Debian puts it under the architecture's directory; scripts/test-tools installs it.
LIBFAKETIME = next(Path("/usr/lib").glob("*/faketime/libfaketimeMT.so.1"), Path("/nonexistent"))


@pytest.fixture(params=["libfaketime", "offset"])
def clock_shift(request: pytest.FixtureRequest) -> Callable[[float], dict[str, str]]:
    """How the daemon's host clock is put ``offset`` seconds off the database's: the environment
    for libfaketime (skipped where the package is not installed), or for the test offset."""

    def libfaketime(offset: float) -> dict[str, str]:
        # The monotonic clock stays true: timeouts and backoffs are not what is under test.
        return {
            "LD_PRELOAD": str(LIBFAKETIME),
            "FAKETIME": f"{offset:+.0f}",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        }

    def offset_env(offset: float) -> dict[str, str]:
        return {TEST_OFFSET_ENV: str(offset)}

    if request.param == "offset":
        return offset_env
    if not LIBFAKETIME.exists():
        pytest.skip("libfaketime is not installed (apt-get install faketime)")
    return libfaketime


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout: float = 30, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await anyio.sleep(0.1)
    raise AssertionError(f"{what} not reached within {timeout} s")


def start(daemons: Any, tmp_path: Path, env: dict[str, str]) -> DaemonProcess:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    d: DaemonProcess = daemons(
        "skewed",
        env=env,
        rules_file=rules,
        poll_interval_seconds=0.5,
        sweep_interval_seconds=DAY,
    )
    return d


async def mentors_inactive_for(pool: Any, n: int, days: float) -> list[Any]:
    """n mentors whose last session was ``days`` ago by the database's clock."""
    rows = await pool.fetch(
        "WITH m AS (INSERT INTO peer_mentor (organization_id, joined_at) "
        "  SELECT gen_random_uuid(), now() - interval '90 days' FROM generate_series(1, $1) RETURNING id) "
        "INSERT INTO activity (mentor_id, kind, occurred_at, duration_minutes) "
        "SELECT id, 'session', now() - make_interval(secs => $2 * 86400), 60 FROM m RETURNING mentor_id",
        n,
        days,
    )
    return [r["mentor_id"] for r in rows]


async def reminded(pool: Any, mentors: list[Any]) -> int:
    n: int = await pool.fetchval(
        "SELECT count(*) FROM scenario_notification WHERE rule_name = 'inactive_21d' AND mentor_id = ANY($1)",
        mentors,
    )
    return n


async def check_skew_reported(d: DaemonProcess, expected: float) -> None:
    async def measured() -> bool:
        return (await d.status())["clock"]["skew_seconds"] is not None

    await eventually(measured, what="skew measured")
    clock = (await d.status())["clock"]
    assert abs(clock["skew_seconds"] - expected) < 5, clock
    assert clock["skewed"] is True
    assert abs(await d.metric("scenario_clock_skew_seconds") - expected) < 5
    warnings = [e for e in d.log_events() if e.get("event") == "clock_skew"]
    assert len(warnings) == 1 and warnings[0]["level"] == "warning", "once, not at every probe"


async def test_a_host_a_day_ahead_sweeps_by_the_database_clock(
    daemons: Any, pool: Any, tmp_path: Path, clock_shift: Callable[[float], dict[str, str]]
) -> None:
    not_yet = await mentors_inactive_for(pool, 10, 20.5)
    overdue = await mentors_inactive_for(pool, 5, 21.5)  # the sweep did run: these are due
    d = start(daemons, tmp_path, clock_shift(DAY))
    await d.wait_ready()
    await eventually(
        lambda: pool.fetchval("SELECT count(*) = 1 FROM scenario_sweep WHERE finished_at IS NOT NULL"),
        what="the start-up sweep",
    )
    await eventually(
        lambda: pool.fetchval("SELECT count(*) = 0 FROM scenario_event WHERE processed_at IS NULL")
    )
    assert await reminded(pool, overdue) == 5
    assert await reminded(pool, not_yet) == 0, "20.5 days by the database's clock is not 21"
    sweep_as_of = await pool.fetchval("SELECT as_of FROM scenario_sweep")
    assert abs((await pool.fetchval("SELECT now()") - sweep_as_of).total_seconds()) < 60
    await check_skew_reported(d, -DAY)


async def test_a_host_two_hours_behind_sees_activity_that_just_happened(
    daemons: Any, pool: Any, tmp_path: Path, clock_shift: Callable[[float], dict[str, str]]
) -> None:
    d = start(daemons, tmp_path, clock_shift(-2 * 3600))
    await d.wait_ready()
    await eventually(
        lambda: pool.fetchval("SELECT count(*) = 1 FROM scenario_sweep WHERE finished_at IS NOT NULL"),
        what="the start-up sweep",
    )
    async with pool.acquire() as conn, conn.transaction():
        # Joined 90 days ago, first activity just now: active, and 2 sessions (the milestone).
        mentor = await conn.fetchval(
            "INSERT INTO peer_mentor (organization_id, joined_at) "
            "VALUES (gen_random_uuid(), now() - interval '90 days') RETURNING id"
        )
        await conn.execute(
            "INSERT INTO activity (mentor_id, kind, occurred_at, duration_minutes) "
            "SELECT $1, 'session', now() - make_interval(secs => s), 30 FROM unnest(ARRAY[60, 1]) s",
            mentor,
        )
    await eventually(
        lambda: pool.fetchval("SELECT count(*) = 0 FROM scenario_event WHERE processed_at IS NULL")
    )
    assert await reminded(pool, [mentor]) == 0
    assert (
        await pool.fetchval("SELECT count(*) FROM scenario_cooldown WHERE scenario_type = 'inactivity'") == 0
    )
    ledger = "SELECT count(*) FROM scenario_decision WHERE mentor_id = $1 AND rule_name = 'inactive_21d'"
    assert await pool.fetchval(ledger, mentor) == 0
    milestone = (
        "SELECT count(*) FROM scenario_notification WHERE mentor_id = $1 AND rule_name = 'sessions_year'"
    )
    assert await pool.fetchval(milestone, mentor) == 1, "the milestone reached just now is celebrated"
    await check_skew_reported(d, 2 * 3600)
