"""The drain's adaptive poll (issue 18, item 1): in the default poll mode no NOTIFY tells the
daemon that an event arrived, so it probes for pending events — often while they flow, rarely
when idle. The real ``scenario-engine run`` process, counted through its metrics."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.process.test_daemon import eventually, now
from tests.support.factories import add_activity, add_mentor

pytestmark = pytest.mark.acceptance

RULES = """
daily_cap = 100
[[milestone]]
name = "sessions_year"
metric = "sessions"
thresholds = [2]
"""


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(RULES)
    return path


async def test_default_mode_processes_an_event_without_any_notify(
    daemons: Any, pool: Any, db_url: str, rules_file: Path
) -> None:
    assert (
        await pool.fetchval("SELECT value FROM scenario_engine_setting WHERE key = 'notify_mode'") == "poll"
    )
    heard: list[str] = []
    spy = await asyncpg.connect(db_url)
    await spy.add_listener("scenario_events", lambda *args: heard.append(str(args[-1])))
    try:
        d = daemons(rules_file=rules_file, sweep_interval_seconds=86400)
        await d.wait_ready()

        async def started_up_sweep_done() -> bool:
            return bool(await d.metric('scenario_sweeps_total{result="completed"}') >= 1)

        # The start-up sweep is over, so the notification below can only come from the event
        # path (on a busy machine that sweep could otherwise read the new activity first).
        await eventually(started_up_sweep_done, what="the start-up sweep")
        mentor = await add_mentor(pool, joined_at=now() - dt.timedelta(days=1))
        await add_activity(pool, mentor, now() - dt.timedelta(minutes=5))
        await add_activity(pool, mentor, now() - dt.timedelta(minutes=1))
        await eventually(
            lambda: pool.fetchval(
                "SELECT count(*) = 1 FROM scenario_notification WHERE scenario_type = 'milestone'"
            ),
            what="milestone notification",
        )
        assert (
            await pool.fetchval(
                "SELECT count(*) FROM scenario_event WHERE processed_at IS NULL AND dead_at IS NULL"
            )
            == 0
        )
        assert heard == []  # no NOTIFY was sent on the channel …
        assert await d.metric("scenario_events_received_total") == 0  # … nor received
        assert await d.metric('scenario_drain_polls_total{result="pending"}') >= 1  # the probe found it
    finally:
        await spy.close()


async def test_an_idle_daemon_backs_off_its_poll(daemons: Any, pool: Any, rules_file: Path) -> None:
    """Idle, the probes thin out to one per SCENARIO_POLL_INTERVAL_SECONDS: counted, not timed.
    Polling at the fast interval all along would make about a hundred probes a second."""
    d = daemons(
        rules_file=rules_file,
        sweep_interval_seconds=86400,
        poll_min_interval_seconds=0.01,
        poll_interval_seconds=0.5,
    )
    await d.wait_ready()

    async def backed_off() -> bool:
        interval: float = await d.metric("scenario_drain_poll_interval_seconds")
        return interval == 0.5

    await eventually(backed_off, what="poll interval at its ceiling")
    before = await d.metric("scenario_drain_polls_total")
    window = await pool.fetchval("SELECT clock_timestamp()")
    await eventually(
        lambda: pool.fetchval("SELECT clock_timestamp() - $1::timestamptz >= interval '3 s'", window),
        what="an idle window",
    )
    idle_probes = await d.metric("scenario_drain_polls_total") - before
    assert 1 <= idle_probes <= 12, idle_probes  # ~6 at one per 0.5 s; ~300 at the fast interval
    assert await d.metric('scenario_drain_polls_total{result="pending"}') == 0

    # an event brings the fast poll back, and it is found without a NOTIFY
    mentor = await add_mentor(pool, joined_at=now() - dt.timedelta(days=1))
    await add_activity(pool, mentor, now() - dt.timedelta(minutes=1))
    await eventually(lambda: _processed(pool), what="the event processed")
    assert await d.metric('scenario_drain_polls_total{result="pending"}') >= 1


async def _processed(pool: Any) -> bool:
    done: bool = await pool.fetchval(
        "SELECT count(*) > 0 AND bool_and(processed_at IS NOT NULL) FROM scenario_event"
    )
    return done


async def test_a_backlog_is_drained_by_concurrent_loops_one_partition_of_mentors_each(
    daemons: Any, pool: Any, rules_file: Path
) -> None:
    """SCENARIO_DRAIN_CONCURRENCY=3 over a backlog written while the daemon was down: every event
    is processed once, and the helpers' batches each hold the mentors of one partition."""
    mentors = [
        r["id"]
        for r in await pool.fetch(
            "INSERT INTO peer_mentor (organization_id, joined_at) "
            "SELECT gen_random_uuid(), now() - interval '1 day' FROM generate_series(1, 300) RETURNING id"
        )
    ]
    await pool.execute(
        "INSERT INTO activity (mentor_id, kind, occurred_at) "
        "SELECT m, 'session', now() - g * interval '1 minute' "
        "FROM unnest($1::uuid[]) m, generate_series(1, 10) g",
        mentors,
    )
    d = daemons(
        rules_file=rules_file, sweep_interval_seconds=86400, drain_concurrency=3, drain_batch_size=100
    )
    await d.wait_ready()
    await eventually(
        lambda: pool.fetchval("SELECT count(*) = 0 FROM scenario_event WHERE processed_at IS NULL"),
        what="backlog drained",
    )
    assert await pool.fetchval("SELECT count(*) FROM scenario_event WHERE attempts <> 1") == 0
    # one drain transaction = one xmin; a batch claimed by partition holds one partition only
    partitions = await pool.fetch(
        "SELECT xmin::text AS tx, count(DISTINCT (hashtext(mentor_id::text) & 2147483647) % 3) AS n, "
        "min((hashtext(mentor_id::text) & 2147483647) % 3) AS p FROM scenario_event GROUP BY 1"
    )
    assert any(r["n"] == 1 and r["p"] > 0 for r in partitions), partitions  # helpers took part
