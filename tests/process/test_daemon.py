"""Acceptance tests: the real `scenario-engine run` process, driven with SQL and signals."""

from __future__ import annotations

import datetime as dt
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from scenario_engine.db.connect import connect, create_pool
from scenario_engine.db.migrations import migrate
from scenario_engine.dev.embedded import FAST_TEST_SETTINGS, LocalCluster, start_private_cluster
from tests.support.daemon import DaemonProcess
from tests.support.factories import add_activity, add_mentor
from tests.support.pg import allow_unqualified_test_sql

pytestmark = pytest.mark.acceptance

RULES = """
daily_cap = 100
[[milestone]]
name = "sessions_year"
metric = "sessions"
thresholds = [2]
"""


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout: float = 20, what: str = "condition"
) -> float:
    """Poll until check() is true; returns the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if await check():
            return time.monotonic() - start
        await anyio.sleep(0.02)
    raise AssertionError(f"{what} not reached within {timeout} s")


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(RULES)
    return path


async def _mentors(pool: Any, n: int) -> list[Any]:
    rows = await pool.fetch(
        "INSERT INTO peer_mentor (organization_id, joined_at) "
        "SELECT gen_random_uuid(), now() - interval '1 day' FROM generate_series(1, $1) RETURNING id",
        n,
    )
    return [r["id"] for r in rows]


async def _pending(pool: Any) -> int:
    n: int = await pool.fetchval(
        "SELECT count(*) FROM scenario_event WHERE processed_at IS NULL AND dead_at IS NULL"
    )
    return n


async def test_notify_wakes_the_daemon_within_a_second(daemons: Any, pool: Any, rules_file: Path) -> None:
    # notify mode (a new installation polls since sql/0025); the poll backs off to an hour
    await pool.execute("UPDATE scenario_engine_setting SET value = 'notify' WHERE key = 'notify_mode'")
    d = daemons(
        rules_file=rules_file,
        poll_interval_seconds=3600,
        poll_min_interval_seconds=60,  # no adaptive probe finds the events before the NOTIFY
        sweep_interval_seconds=86400,
    )
    await d.wait_ready()
    await eventually(
        lambda: pool.fetchval("SELECT count(*) = 1 FROM scenario_sweep WHERE finished_at IS NOT NULL")
    )
    mentor = await add_mentor(pool, joined_at=now() - dt.timedelta(days=1))
    await add_activity(pool, mentor, now() - dt.timedelta(minutes=5))
    await add_activity(pool, mentor, now() - dt.timedelta(minutes=1))
    took = await eventually(
        lambda: pool.fetchval(
            "SELECT count(*) = 1 FROM scenario_notification WHERE scenario_type = 'milestone'"
        ),
        timeout=1.0,
        what="milestone notification",
    )
    assert took < 1.0
    assert await d.metric("scenario_events_received_total") >= 2
    assert await pool.fetchval("SELECT count(*) FROM push_notification") == 1


async def test_changes_written_while_stopped_are_processed_once(
    daemons: Any, pool: Any, rules_file: Path
) -> None:
    d = daemons(rules_file=rules_file)
    await d.wait_ready()
    assert await d.stop() == 0
    mentors = await _mentors(pool, 100)
    await pool.execute(
        "INSERT INTO activity (mentor_id, kind, occurred_at) "
        "SELECT m, 'session', now() - g * interval '1 minute' "
        "FROM unnest($1::uuid[]) m, generate_series(1, 10) g",
        mentors,
    )
    assert await _pending(pool) == 1000
    d2 = daemons("second", rules_file=rules_file)
    await d2.wait_ready()
    await eventually(
        lambda: pool.fetchval("SELECT count(*) = 0 FROM scenario_event WHERE processed_at IS NULL"),
        what="backlog drained",
    )
    assert await pool.fetchval("SELECT count(*) FROM scenario_event WHERE dead_at IS NOT NULL") == 0
    assert (
        await pool.fetchval("SELECT count(*) FROM scenario_notification WHERE scenario_type='milestone'")
        == 100
    )
    assert await pool.fetchval(
        "SELECT count(DISTINCT idempotency_key) FROM push_notification"
    ) == await pool.fetchval("SELECT count(*) FROM push_notification")


async def test_kill_9_mid_batch_loses_nothing_and_sends_nothing_twice(
    daemons: Any, pool: Any, rules_file: Path
) -> None:
    mentors = await _mentors(pool, 2000)
    d = daemons(rules_file=rules_file, drain_batch_size=50)
    await d.wait_ready()
    await pool.execute(
        "INSERT INTO activity (mentor_id, kind, occurred_at) "
        "SELECT m, 'session', now() - g * interval '1 minute' "
        "FROM unnest($1::uuid[]) m, generate_series(1, 3) g",
        mentors,
    )
    # kill it while it is working through the backlog
    await eventually(
        lambda: pool.fetchval("SELECT count(*) > 200 FROM scenario_event WHERE processed_at IS NOT NULL")
    )
    d.kill()
    assert await _pending(pool) > 0, "the backlog finished before the kill; the test proves nothing"
    d2 = daemons("after-kill", rules_file=rules_file, drain_batch_size=50)
    await d2.wait_ready()
    await eventually(
        lambda: pool.fetchval("SELECT count(*) = 0 FROM scenario_event WHERE processed_at IS NULL"),
        timeout=60,
        what="backlog drained",
    )
    assert await pool.fetchval("SELECT count(*) FROM scenario_event WHERE dead_at IS NOT NULL") == 0
    per_mentor = await pool.fetch(
        "SELECT mentor_id, count(*) AS n FROM push_notification WHERE scenario_type = 'milestone' GROUP BY 1"
    )
    assert len(per_mentor) == 2000
    assert {r["n"] for r in per_mentor} == {1}


@pytest.fixture
async def own_cluster(tmp_path: Path) -> AsyncIterator[tuple[LocalCluster, str]]:
    """A private server of this test's own, so that it can be restarted."""
    cluster = await anyio.to_thread.run_sync(
        lambda: start_private_cluster(settings=FAST_TEST_SETTINGS, owner_pid=__import__("os").getpid())
    )
    try:
        conn = await connect(cluster.dsn)
        await migrate(conn)
        await allow_unqualified_test_sql(conn)
        await conn.close()
        yield cluster, cluster.dsn
    finally:
        await anyio.to_thread.run_sync(cluster.close)


async def test_postgres_restart_under_the_daemon(
    own_cluster: tuple[LocalCluster, str], tmp_path: Path
) -> None:
    cluster, dsn = own_cluster
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    d = DaemonProcess(dsn, tmp_path, "restart", rules_file=rules, poll_interval_seconds=1).start()
    try:
        await d.wait_ready()
        # the milestone rule has been seen (and baselined) before the outage
        check = await connect(dsn)
        try:
            assert await check.fetchval("SELECT count(*) FROM scenario_rule_state") == 1
        finally:
            await check.close()
        await anyio.to_thread.run_sync(cluster.stop)
        await d.wait_http("/readyz", 503, timeout=15)
        status = await d.status()
        assert status["ready"] is False
        await anyio.to_thread.run_sync(cluster.start)
        # written right after the restart, before the daemon has reconnected
        pool = await create_pool(dsn)
        try:
            [mentor] = await _mentors(pool, 1)
            await add_activity(pool, mentor, now() - dt.timedelta(minutes=2))
            await add_activity(pool, mentor, now() - dt.timedelta(minutes=1))
            await d.wait_ready(timeout=30)
            try:
                await eventually(
                    lambda: pool.fetchval("SELECT count(*) = 1 FROM scenario_notification"),
                    timeout=45,
                    what="notification after the restart",
                )
            except AssertionError:
                events = [dict(r) for r in await pool.fetch("SELECT * FROM scenario_event")]
                raise AssertionError(f"events: {events}\nlog:\n{d.logs()[-6000:]}") from None
            await add_activity(pool, mentor, now())
            await eventually(
                lambda: pool.fetchval("SELECT count(*) = 0 FROM scenario_event WHERE processed_at IS NULL"),
                what="events after the restart processed",
            )
        finally:
            await pool.close()
        assert await d.stop() == 0
    finally:
        d.kill()


async def test_three_daemons_one_leader_one_sweep_per_period_and_failover(
    daemons: Any, pool: Any, rules_file: Path
) -> None:
    await _mentors(pool, 50)
    procs = [daemons(f"d{i}", rules_file=rules_file, sweep_interval_seconds=1) for i in range(3)]
    for p in procs:
        await p.wait_ready()
    await anyio.sleep(3.5)
    roles = [(await p.status())["role"] for p in procs]
    assert roles.count("leader") == 1
    assert [await p.metric("scenario_leader") for p in procs].count(1.0) == 1
    completed = sum([await p.metric("scenario_sweeps_total") for p in procs])
    rows = await pool.fetchval("SELECT count(*) FROM scenario_sweep WHERE finished_at IS NOT NULL")
    assert completed == rows >= 3  # one sweep per period, each by one process

    leader = procs[roles.index("leader")]
    leader.kill()
    others = [p for p in procs if p is not leader]

    async def new_leader() -> bool:
        return [(await p.status())["role"] for p in others].count("leader") == 1

    took = await eventually(new_leader, timeout=10, what="a new leader")
    assert took < 5


async def test_garbage_is_logged_counted_and_dead_lettered(daemons: Any, pool: Any, rules_file: Path) -> None:
    d = daemons(rules_file=rules_file, poll_interval_seconds=0.5)
    await d.wait_ready()
    await pool.execute("SELECT pg_notify('scenario_events', 'this is not json')")
    await pool.execute("""SELECT pg_notify('scenario_events', '{"event_id": -4, "table": 7}')""")
    await pool.execute(
        "INSERT INTO scenario_event (table_name, operation, mentor_id) VALUES ('activity', 'INSERT', NULL)"
    )
    await pool.execute(
        "INSERT INTO scenario_event (table_name, operation, mentor_id) "
        "VALUES ('payroll', 'INSERT', gen_random_uuid())"
    )
    await pool.execute(
        "INSERT INTO scenario_event (table_name, operation, mentor_id) "
        "VALUES ('activity', 'TRUNCATE', gen_random_uuid())"
    )
    await eventually(
        lambda: pool.fetchval("SELECT count(*) = 3 FROM scenario_event WHERE dead_at IS NOT NULL")
    )
    errors = sorted(r["last_error"] for r in await pool.fetch("SELECT last_error FROM scenario_event"))
    assert any("no mentor" in e for e in errors)
    assert any("unknown table 'payroll'" in e for e in errors)
    assert any("unknown operation" in e for e in errors)
    assert await d.metric("scenario_events_received_total") >= 2  # counted, never parsed
    assert "this is not json" not in d.logs()  # nor logged: a payload is anyone's to send
    assert await d.metric("scenario_events_dead_lettered_total") == 3
    # and it keeps going
    mentor = await add_mentor(pool, joined_at=now() - dt.timedelta(days=1))
    await add_activity(pool, mentor, now() - dt.timedelta(minutes=2))
    await add_activity(pool, mentor, now() - dt.timedelta(minutes=1))
    await eventually(lambda: pool.fetchval("SELECT count(*) = 1 FROM scenario_notification"))
    assert (await d.status())["ready"] is True


async def test_sigterm_during_sweep_exits_0_and_next_leader_completes_period(
    daemons: Any, pool: Any, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text('[[inactivity]]\nname = "inactive_21d"\nthreshold_days = 21\n')
    await pool.execute(
        "INSERT INTO peer_mentor (organization_id, joined_at) "
        "SELECT gen_random_uuid(), now() - interval '60 days' FROM generate_series(1, 6000)"
    )
    a = daemons("a", rules_file=rules, sweep_batch_size=50, shutdown_grace_seconds=10)
    await a.wait_ready()
    await eventually(
        lambda: pool.fetchval("SELECT count(*) > 0 FROM scenario_notification"), what="sweep started"
    )
    started = time.monotonic()
    assert await a.stop(timeout=15) == 0
    assert time.monotonic() - started < 10
    unfinished = await pool.fetchrow("SELECT * FROM scenario_sweep")
    assert unfinished["finished_at"] is None
    assert await pool.fetchval("SELECT count(*) FROM scenario_notification") < 6000
    b = daemons("b", rules_file=rules, sweep_batch_size=500)
    await b.wait_ready()
    await eventually(
        lambda: pool.fetchval("SELECT finished_at IS NOT NULL FROM scenario_sweep"),
        timeout=60,
        what="period completed",
    )
    assert await pool.fetchval("SELECT count(*) FROM scenario_sweep") == 1
    assert await pool.fetchval("SELECT count(*) FROM push_notification") == 6000
    assert await pool.fetchval("SELECT count(DISTINCT mentor_id) FROM push_notification") == 6000


async def test_sighup_with_broken_rules_keeps_the_old_rules(
    daemons: Any, pool: Any, rules_file: Path
) -> None:
    d = daemons(rules_file=rules_file, poll_interval_seconds=0.5)
    await d.wait_ready()
    rules_file.write_text("[[milestone]]\nname = 'sessions_year'\nmetric = 'smiles'\n")
    d.signal(signal.SIGHUP)
    await eventually(lambda: _async(any(e["event"] == "rules_reload_rejected" for e in d.log_events())))
    rejected = next(e for e in d.log_events() if e["event"] == "rules_reload_rejected")
    assert any("milestone[0].metric" in err for err in rejected["errors"])
    mentor = await add_mentor(pool, joined_at=now() - dt.timedelta(days=1))
    await add_activity(pool, mentor, now() - dt.timedelta(minutes=2))
    await add_activity(pool, mentor, now() - dt.timedelta(minutes=1))
    await eventually(
        lambda: pool.fetchval("SELECT count(*) = 1 FROM scenario_notification"),
        what="old rules still applied",
    )
    assert (await d.status())["ready"] is True
    # a valid file is applied
    rules_file.write_text(RULES.replace("thresholds = [2]", "thresholds = [2, 3]"))
    d.signal(signal.SIGHUP)
    await eventually(lambda: _async(any(e["event"] == "rules_reloaded" for e in d.log_events())))
    assert await d.stop() == 0


async def _async(value: bool) -> bool:
    return value


async def test_processed_events_are_pruned_after_retention(daemons: Any, pool: Any, rules_file: Path) -> None:
    d = daemons(rules_file=rules_file, event_retention_hours=0, prune_interval_seconds=0.3)
    await d.wait_ready()
    [mentor] = await _mentors(pool, 1)
    await add_activity(pool, mentor, now())
    await pool.execute(
        "INSERT INTO scenario_event (table_name, operation, mentor_id) VALUES ('x', 'INSERT', NULL)"
    )
    # dead letters are kept for the operator; only processed rows are pruned
    await eventually(
        lambda: pool.fetchval("SELECT count(*) = 1 AND bool_and(dead_at IS NOT NULL) FROM scenario_event"),
        what="processed events pruned, dead letter kept",
    )


async def test_one_catch_up_sweep_after_downtime_not_one_per_missed_period(
    daemons: Any, pool: Any, rules_file: Path
) -> None:
    from scenario_engine.config import Settings
    from scenario_engine.runtime.scheduler import current_period

    settings = Settings(sweep_interval_seconds=3600)
    old_key, old_start, _ = current_period(settings, now() - dt.timedelta(hours=5))
    await pool.execute(
        "INSERT INTO scenario_sweep (sweep_key, as_of, instance_id, finished_at) VALUES ($1, $2, 'old', $2)",
        old_key,
        old_start,
    )
    d = daemons(rules_file=rules_file, sweep_interval_seconds=3600)
    await d.wait_ready()
    await eventually(
        lambda: pool.fetchval("SELECT count(*) = 2 FROM scenario_sweep WHERE finished_at IS NOT NULL")
    )
    await anyio.sleep(1.0)
    keys = [
        r["sweep_key"] for r in await pool.fetch("SELECT sweep_key FROM scenario_sweep ORDER BY started_at")
    ]
    assert keys == [old_key, current_period(settings, now())[0]]


async def test_sweeps_between_full_sweeps_are_incremental(daemons: Any, pool: Any, tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text('[[inactivity]]\nname = "inactive_21d"\nthreshold_days = 21\n')
    # joined almost 21 days ago: becomes due between two sweeps, with no data change at all
    await pool.execute(
        "INSERT INTO peer_mentor (organization_id, joined_at) "
        "SELECT gen_random_uuid(), now() - interval '21 days' + interval '3 seconds' "
        "FROM generate_series(1, 5)"
    )
    await pool.execute(
        "INSERT INTO peer_mentor (organization_id, joined_at) "
        "SELECT gen_random_uuid(), now() - interval '2 days' FROM generate_series(1, 20)"
    )
    d = daemons(rules_file=rules, sweep_interval_seconds=1)
    await d.wait_ready()
    await eventually(
        lambda: pool.fetchval("SELECT count(*) = 5 FROM push_notification"),
        timeout=30,
        what="mentors that became due between sweeps notified",
    )
    modes = [
        r["mode"]
        for r in await pool.fetch(
            "SELECT stats->>'mode' AS mode FROM scenario_sweep WHERE finished_at IS NOT NULL ORDER BY as_of"
        )
    ]
    assert modes[0] == "full"
    assert set(modes[1:]) == {"incremental"}
    assert await d.metric('scenario_sweeps_completed_by_mode_total{mode="incremental"}') >= 1
