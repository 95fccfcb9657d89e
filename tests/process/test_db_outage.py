"""Losing the database is never fatal (issue 9, defect 2), and a stuck loop is not "healthy".

Real processes only: the daemon runs as ``scenario-engine run``; Postgres is a private
cluster of the test's own so that it can be restarted (immediate and fast) under the
daemon while pushes are in flight to a real gateway; connections are killed with
``pg_terminate_backend``; a stuck drain is made by holding a real table lock.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from scenario_engine.db.connect import connect, create_pool
from scenario_engine.dev.embedded import LocalCluster, free_port
from tests.support.cluster import pg_ctl
from tests.support.daemon import DaemonProcess
from tests.support.gateway import Gateway

pytestmark = pytest.mark.acceptance

RULES = """
daily_cap = 100
[[milestone]]
name = "sessions_year"
metric = "sessions"
thresholds = [2]
"""


async def eventually(
    check: Callable[[], Awaitable[bool] | bool], timeout: float = 60, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got if isinstance(got, bool) else await got:
            return
        await anyio.sleep(0.05)
    raise AssertionError(f"{what} not reached within {timeout} s")


def in_flight(gateway: Gateway) -> Callable[[], bool]:
    """True once at least 5 pushes have reached the gateway and wait for its answer.

    Counted at the gateway, not from ``status = 'sending'``: a claim makes its whole batch
    'sending' before any HTTP call starts (each push is marked in flight only right before
    its call), so a fault injected on the row count could hit between the claim and the
    calls, when nothing is in flight and no send will end while the server is down.
    """
    return lambda: gateway.unanswered >= 5


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    gw = await Gateway(delay=2.0).start()  # slow: the fault hits while sends are in flight
    yield gw
    await gw.stop()


def start_daemon(dsn: str, tmp_path: Path, name: str, gateway: Gateway, **settings: Any) -> DaemonProcess:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    return DaemonProcess(
        dsn,
        tmp_path,
        name,
        rules_file=rules,
        push_provider="webhook",
        push_webhook_url=gateway.url,
        push_lease_seconds=5,  # a push claimed but not sent before the outage is claimed again soon
        # A send whose outcome the outage kept from the ledger is taken up again when its
        # in-flight lease (2 x timeout + 5 s) ends: 13 s here, 25 s with the default timeout.
        push_timeout_seconds=4,  # the gateway answers in 2 s
        push_rate_per_second=1000,
        push_backoff_base_seconds=0.5,
        push_backoff_max_seconds=1,
        poll_interval_seconds=0.5,
        dispatch_poll_interval_seconds=0.5,
        **settings,
    ).start()


async def add_mentors_with_two_sessions(pool: Any, n: int) -> None:
    """n mentors crossing the 2-session milestone: n events' worth of work and n pushes."""
    ids = [
        r["id"]
        for r in await pool.fetch(
            "INSERT INTO peer_mentor (organization_id, joined_at) "
            "SELECT gen_random_uuid(), now() - interval '30 days' FROM generate_series(1, $1) RETURNING id",
            n,
        )
    ]
    at = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    await pool.executemany(
        "INSERT INTO activity (mentor_id, kind, occurred_at) VALUES ($1, 'session', $2)",
        [(m, at + dt.timedelta(minutes=k)) for m in ids for k in range(2)],
    )


async def assert_caught_up(pool: Any, gateway: Gateway, mentors: int, d: DaemonProcess) -> None:
    """Every event processed, one notification per mentor, every push delivered to the gateway."""

    async def done() -> bool:
        row = await pool.fetchrow(
            "SELECT (SELECT count(*) FROM scenario_event WHERE processed_at IS NULL) AS events, "
            "(SELECT count(*) FROM push_notification WHERE status = 'sent') AS sent"
        )
        return bool(row["events"] == 0 and row["sent"] == mentors)

    try:
        await eventually(done, timeout=90, what="events processed and pushes delivered")
    except AssertionError:
        statuses = await pool.fetch("SELECT status, count(*) FROM push_notification GROUP BY 1")
        raise AssertionError(f"{[dict(r) for r in statuses]}\nlog:\n{d.logs()[-5000:]}") from None
    assert await pool.fetchval("SELECT count(*) FROM scenario_event WHERE dead_at IS NOT NULL") == 0
    assert await pool.fetchval("SELECT count(DISTINCT mentor_id) FROM scenario_notification") == mentors
    assert await pool.fetchval("SELECT count(*) FROM scenario_notification") == mentors
    keys = {r["idempotency_key"] for r in await pool.fetch("SELECT idempotency_key FROM push_notification")}
    assert keys <= {r.key for r in gateway.received if r.status == 200}


async def test_postgres_restarts_under_load_are_survived(
    own_cluster: LocalCluster, gateway: Gateway, tmp_path: Path
) -> None:
    cluster = own_cluster
    d = start_daemon(cluster.dsn, tmp_path, "restarts", gateway)
    pool = None
    try:
        await d.wait_ready()
        pool = await create_pool(cluster.dsn, application_name="outage-test")
        total = 0
        for mode in ("immediate", "fast", "immediate"):
            sent_before = len(gateway.received)
            await add_mentors_with_two_sessions(pool, 40)
            total += 40
            # the fault hits while the dispatcher has pushes in flight to the gateway
            await eventually(in_flight(gateway), what="pushes in flight")
            await pool.close()
            pool = None
            await anyio.to_thread.run_sync(pg_ctl, cluster, "-m", mode, "-w", "stop")
            await d.wait_http("/readyz", 503, timeout=20)
            # the sends in flight end while the server is down: their outcomes cannot be recorded

            def sends_ended(r: int = sent_before) -> bool:
                return gateway.unanswered == 0 and len(gateway.received) >= r + 5

            await eventually(sends_ended, what="sends ended")
            await anyio.sleep(0.5)
            assert d.proc is not None and d.proc.poll() is None, d.logs()[-3000:]
            await anyio.to_thread.run_sync(cluster.start)
            # written as soon as the server is back, before the daemon has reconnected
            pool = await create_pool(cluster.dsn, application_name="outage-test")
            await add_mentors_with_two_sessions(pool, 10)
            total += 10
            await d.wait_ready(timeout=60)
            await assert_caught_up(pool, gateway, total, d)
        # and a restart in one go (pg_ctl restart), pushes in flight again
        await add_mentors_with_two_sessions(pool, 40)
        total += 40
        await eventually(in_flight(gateway), what="pushes in flight")
        await pool.close()
        pool = None
        await anyio.to_thread.run_sync(
            pg_ctl, cluster, "-m", "immediate", "-l", str(cluster.log_file), "-w", "restart"
        )
        pool = await create_pool(cluster.dsn, application_name="outage-test")
        await d.wait_ready(timeout=60)
        await assert_caught_up(pool, gateway, total, d)
        assert d.proc is not None and d.proc.poll() is None
        assert await d.stop() == 0, d.logs()[-3000:]
    finally:
        if pool is not None:
            await pool.close()
        d.kill()


# Holds every in-flight mark (the statement right before a push's HTTP call) for 3 s, so that
# the server can be stopped after a claim and before any of its pushes is sent.
SLOW_MARK = """
CREATE FUNCTION public.test_slow_mark() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.in_flight_at IS NOT NULL AND OLD.in_flight_at IS NULL THEN
        PERFORM pg_sleep(3);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER test_slow_mark BEFORE UPDATE ON scenario_engine.push_notification
FOR EACH ROW EXECUTE FUNCTION public.test_slow_mark();
"""


async def test_postgres_stopped_between_claim_and_send_sends_each_push_once(
    own_cluster: LocalCluster, tmp_path: Path
) -> None:
    """The window the restart test's old in-flight check fell into: a batch is claimed (its rows
    are 'sending') but none of its pushes is marked in flight, and the server goes down. Nothing
    may reach the gateway from that claim; once the server is back every push is sent once,
    after the claim lease, without being taken for a possibly delivered one."""
    gateway = await Gateway().start()
    d = start_daemon(own_cluster.dsn, tmp_path, "claimed", gateway)
    pool = None
    try:
        await d.wait_ready()
        pool = await create_pool(own_cluster.dsn, application_name="outage-test")
        await pool.execute(SLOW_MARK)
        await add_mentors_with_two_sessions(pool, 20)

        async def claimed(writer: Any = pool) -> bool:
            n = await writer.fetchval("SELECT count(*) FROM push_notification WHERE status = 'sending'")
            return bool(n >= 5)

        await eventually(claimed, what="pushes claimed")
        assert gateway.unanswered == 0 and gateway.received == []  # claimed is not in flight
        await pool.close()
        pool = None
        await anyio.to_thread.run_sync(pg_ctl, own_cluster, "-m", "immediate", "-w", "stop")
        await d.wait_http("/readyz", 503, timeout=20)
        await anyio.sleep(1)
        assert gateway.unanswered == 0 and gateway.received == []  # the claim sent nothing
        await anyio.to_thread.run_sync(own_cluster.start)
        pool = await create_pool(own_cluster.dsn, application_name="outage-test")
        await pool.execute("DROP TRIGGER test_slow_mark ON scenario_engine.push_notification")
        await d.wait_ready(timeout=60)
        await assert_caught_up(pool, gateway, 20, d)
        keys = [r.key for r in gateway.received]
        assert len(keys) == len(set(keys)) == 20, "each push sent once"
        assert await pool.fetchval("SELECT count(*) FROM push_notification WHERE delivery_uncertain") == 0
        assert d.proc is not None and d.proc.poll() is None
        assert await d.stop() == 0, d.logs()[-3000:]
    finally:
        if pool is not None:
            await pool.close()
        d.kill()
        await gateway.stop()


async def test_terminating_every_daemon_connection_is_survived(
    db_url: str, gateway: Gateway, tmp_path: Path
) -> None:
    d = start_daemon(db_url, tmp_path, "terminate", gateway)
    pool = await create_pool(db_url, application_name="outage-test")
    try:
        await d.wait_ready()
        total = 0
        for _round in range(3):
            await add_mentors_with_two_sessions(pool, 40)
            total += 40
            await eventually(in_flight(gateway), what="pushes in flight")
            killed = await pool.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name LIKE 'scenario-engine%'"
            )
            assert killed >= 3  # pool connections, the listener and the leader's lock connection
            await add_mentors_with_two_sessions(pool, 10)  # written while the daemon reconnects
            total += 10
            await d.wait_ready(timeout=30)
            await assert_caught_up(pool, gateway, total, d)
            assert d.proc is not None and d.proc.poll() is None
        assert await d.stop() == 0, d.logs()[-3000:]
    finally:
        await pool.close()
        d.kill()


async def test_a_stuck_drain_makes_healthz_503_and_stops_the_watchdog(
    db_url: str, daemons: Any, tmp_path: Path
) -> None:
    sock_dir = Path(tempfile.mkdtemp(prefix="sdn-", dir="/tmp"))  # AF_UNIX paths must be short
    path = sock_dir / "notify"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.setblocking(False)

    def received() -> list[str]:
        out = []
        while True:
            try:
                out.append(server.recv(4096).decode())
            except BlockingIOError:
                return out

    lock = await connect(db_url)
    try:
        d = daemons(
            env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "400000"},
            worker_stuck_seconds=1,
            poll_interval_seconds=0.2,
        )
        await d.wait_ready()
        await eventually(lambda: "WATCHDOG=1" in received(), what="watchdog pings")
        code, _ = await d.http("/healthz")
        assert code == 200
        tx = lock.transaction()
        await tx.start()
        await lock.execute("LOCK TABLE scenario_event IN ACCESS EXCLUSIVE MODE")
        await d.wait_http("/healthz", 503, timeout=20)
        _, body = await d.http("/healthz")
        assert "drain" in json.loads(body)["stuck"]
        received()  # what was sent before the loop counted as stuck
        await anyio.sleep(1.5)  # well over the 0.2 s ping interval
        assert "WATCHDOG=1" not in received()
        await tx.rollback()
        await d.wait_http("/healthz", 200, timeout=20)
        await eventually(lambda: "WATCHDOG=1" in received(), what="watchdog pings again")
        assert await d.stop() == 0
    finally:
        await lock.close()
        server.close()
        path.unlink(missing_ok=True)
        sock_dir.rmdir()


@pytest.mark.parametrize("where", ["busy_port", "unresolvable_host"])
async def test_status_address_that_cannot_be_bound_is_one_line_and_exit_2(
    db_url: str, tmp_path: Path, where: str
) -> None:
    busy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    busy.bind(("127.0.0.1", free_port()))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        d = DaemonProcess(db_url, tmp_path, where)
        if where == "busy_port":
            d.env["SCENARIO_STATUS_PORT"] = str(port)
        else:
            d.env["SCENARIO_STATUS_HOST"] = "no-such-host.invalid"
        d.start()
        assert await d.wait(timeout=30) == 2
        output = d.logs()
        assert "Traceback" not in output
        if where == "busy_port":
            lines = [line for line in output.splitlines() if line.strip()]
            assert len(lines) == 1, lines
            assert "SCENARIO_STATUS_PORT" in lines[0] and str(port) in lines[0]
        else:  # check-config's validation may catch it first (one path for both): the key is named
            assert "SCENARIO_STATUS_HOST" in output and "no-such-host.invalid" in output
    finally:
        busy.close()


async def test_sigterm_during_an_outage_exits_0(own_cluster: LocalCluster, tmp_path: Path) -> None:
    """The stop path must not re-raise what the lost database left behind."""
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    d = DaemonProcess(own_cluster.dsn, tmp_path, "stop-in-outage", rules_file=rules).start()
    try:
        await d.wait_ready()
        await anyio.to_thread.run_sync(pg_ctl, own_cluster, "-m", "immediate", "-w", "stop")
        await d.wait_http("/readyz", 503, timeout=20)
        d.signal(signal.SIGTERM)
        assert await d.wait(timeout=40) == 0, d.logs()[-3000:]
    finally:
        d.kill()


async def test_a_starved_pool_is_an_error_not_a_hang(db_url: str) -> None:
    """The daemon's pool bounds every acquire: with all connections held, a step fails with a
    TimeoutError (which the work loops log and retry) instead of waiting forever."""
    pool = await create_pool(db_url, min_size=0, max_size=1, acquire_timeout=0.3)
    try:
        async with pool.acquire() as held:
            assert await held.fetchval("SELECT 1") == 1
            with pytest.raises(TimeoutError):
                await pool.fetchval("SELECT 1")
        assert await pool.fetchval("SELECT 2") == 2  # usable again once a connection is free
    finally:
        await pool.close()
