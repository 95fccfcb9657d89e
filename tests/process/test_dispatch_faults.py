"""The push dispatcher under faults, for real: a gateway that rejects everything, a gateway
that hangs, and ``kill -9`` of the real daemon while pushes are in flight.

What an operator relies on: a rejecting gateway settles every push and leaves the daemon
working; a crash repeats at most the pushes that were in flight (same idempotency key); and
a push the gateway may already have is never recorded as "cancelled".
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from aiohttp import web

from scenario_engine.config import Settings
from scenario_engine.engine import Engine
from scenario_engine.push.factory import make_provider
from scenario_engine.runtime.dispatcher import MAYBE_DELIVERED, Dispatcher
from scenario_engine.runtime.metrics import Metrics
from tests.support.daemon import DaemonProcess
from tests.support.factories import add_activity, add_certification, add_mentor, opt_out
from tests.support.gateway import Gateway

DAY = dt.timedelta(days=1)
OPEN = "SELECT count(*) FROM push_notification WHERE status IN ('pending', 'sending')"


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class WatchingGateway(Gateway):
    """A gateway that also notes each request the moment it arrives, before answering.

    ``arrived`` is what "reached the gateway" means in these tests: a request counts even if
    its sender was killed before the answer came back.
    """

    arrived: list[dict[str, Any]] = field(default_factory=list)
    open_requests: set[str] = field(default_factory=set)

    async def _handle(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        key = request.headers.get("Idempotency-Key", "")
        self.arrived.append(body)
        self.open_requests.add(key)
        try:
            return await super()._handle(request)
        finally:
            self.open_requests.discard(key)


def dispatcher_settings(gateway: Gateway, **extra: Any) -> Settings:
    base: dict[str, Any] = {
        "push_provider": "webhook",
        "push_webhook_url": gateway.url,
        "push_backoff_base_seconds": 0.05,
        "push_backoff_max_seconds": 0.2,
        "push_rate_per_second": 10_000,
        "push_timeout_seconds": 2,
    }
    return Settings(**(base | extra))


@pytest.fixture
async def small_pool(db_url: str) -> AsyncIterator[Any]:
    """A pool smaller than any batch, as on a small instance (pool_size may be 2)."""
    from scenario_engine.db.connect import create_pool

    p = await create_pool(db_url, min_size=1, max_size=2)
    yield p
    await p.close()


async def _enqueue(engine: Engine, pool: Any, n: int) -> None:
    for _ in range(n):
        await add_mentor(pool, joined_at=now() - 30 * DAY)
    await engine.run_scheduled_evaluation()
    assert await pool.fetchval("SELECT count(*) FROM push_notification WHERE status = 'pending'") == n


async def _statuses(pool: Any) -> dict[str, int]:
    return dict(await pool.fetch("SELECT status, count(*) FROM push_notification GROUP BY 1"))


@pytest.mark.parametrize(
    ("status", "attempts", "outcome"),
    [(401, 8, "failed"), (400, 8, "failed"), (500, 1, "dead")],
)
async def test_rejecting_gateway_settles_a_batch_larger_than_the_pool(
    engine: Engine, pool: Any, small_pool: Any, status: int, attempts: int, outcome: str
) -> None:
    """Batch 500 on a pool of 2: every push reaches its terminal status in one batch."""
    await _enqueue(engine, pool, 150)
    gw = await Gateway(status=status).start()
    s = dispatcher_settings(gw, push_batch_size=500, push_concurrency=16, push_max_attempts=attempts)
    try:
        async with Dispatcher(small_pool, make_provider(s, small_pool), s, Metrics()) as d:
            with anyio.fail_after(60):  # a deadlock never returns; this only turns it into a failure
                stats = await d.dispatch_once()
    finally:
        await gw.stop()
    assert getattr(stats, outcome) == 150
    assert await _statuses(pool) == {outcome: 150}
    assert len(gw.received) == 150


@pytest.mark.acceptance
async def test_daemon_with_gateway_answering_401_settles_everything_and_keeps_draining(
    daemons: Callable[..., DaemonProcess], pool: Any
) -> None:
    """The reported case: ≥100 pushes, gateway 401, batch far above the pool. Every push ends
    'failed' with the gateway's answer, /readyz stays 200, and new events are still drained
    and dispatched afterwards."""
    for _ in range(120):
        await add_mentor(pool, joined_at=now() - 30 * DAY)
    gw = await Gateway(status=401).start()
    try:
        d = daemons(
            push_provider="webhook",
            push_webhook_url=gw.url,
            pool_size=2,
            push_batch_size=500,
            push_concurrency=16,
            push_rate_per_second=10_000,
        )
        await d.wait_ready()
        started = time.monotonic()
        with anyio.fail_after(60):
            while await pool.fetchval("SELECT count(*) FROM push_notification WHERE status = 'failed'") < 120:
                await anyio.sleep(0.05)
        settled_after = time.monotonic() - started
        print(f"\n401 gateway: 120 pushes terminal {settled_after:.2f} s after the daemon was ready")
        assert await _statuses(pool) == {"failed": 120}
        assert (
            await pool.fetchval(
                "SELECT count(*) FROM push_notification"
                " WHERE status = 'failed' AND last_error LIKE 'HTTP 401%'"
            )
            == 120
        )
        assert (await d.http("/readyz"))[0] == 200
        # the process still works: a new change is drained, evaluated and dispatched
        mentor = await add_mentor(pool, joined_at=now() - 2 * DAY)
        await add_activity(pool, mentor, now())
        await add_certification(pool, mentor, expires_at=now() + 3 * DAY)
        with anyio.fail_after(30):
            while not await pool.fetchval(
                "SELECT count(*) FROM push_notification WHERE mentor_id = $1 AND status = 'failed'", mentor
            ):
                await anyio.sleep(0.05)
        assert (await d.http("/readyz"))[0] == 200
        assert (
            await pool.fetchval(
                "SELECT count(*) FROM scenario_event WHERE processed_at IS NULL AND dead_at IS NULL"
            )
            == 0
        )
    finally:
        await gw.stop()


async def test_push_timed_out_then_opted_out_is_abandoned_not_cancelled(engine: Engine, pool: Any) -> None:
    """A call without an answer may have been delivered: the re-check must not say 'cancelled'."""
    await _enqueue(engine, pool, 1)
    gw = WatchingGateway(delay=3)
    await gw.start()
    s = dispatcher_settings(gw, push_timeout_seconds=0.3)
    metrics = Metrics()
    try:
        async with Dispatcher(pool, make_provider(s, pool), s, metrics) as d:
            first = await d.dispatch_once()
            assert first.retried == 1
            [push] = await pool.fetch("SELECT * FROM push_notification")
            await opt_out(pool, push["mentor_id"])
            with anyio.fail_after(30):
                while await pool.fetchval(OPEN):
                    await d.dispatch_once()
                    await anyio.sleep(0.05)
    finally:
        await gw.stop()
    row = await pool.fetchrow("SELECT status, cancel_reason FROM push_notification")
    assert len(gw.arrived) == 1  # it reached the gateway, and was not sent again
    assert row["status"] == "abandoned"
    assert MAYBE_DELIVERED in row["cancel_reason"] and "mentor opted out" in row["cancel_reason"]
    assert 'outcome="abandoned"' in metrics.render().decode()


async def test_push_refused_at_connect_then_opted_out_is_cancelled(engine: Engine, pool: Any) -> None:
    """A refused connection is a definite "not delivered": 'cancelled' stays the truth there
    (a guard against calling everything uncertain, not a regression test)."""
    await _enqueue(engine, pool, 1)
    gw = Gateway()  # never started: connection refused
    s = dispatcher_settings(gw)
    async with Dispatcher(pool, make_provider(s, pool), s, Metrics()) as d:
        assert (await d.dispatch_once()).retried == 1
        [push] = await pool.fetch("SELECT * FROM push_notification")
        await opt_out(pool, push["mentor_id"])
        with anyio.fail_after(30):
            while await pool.fetchval(OPEN):
                await d.dispatch_once()
                await anyio.sleep(0.05)
    assert await pool.fetchval("SELECT status FROM push_notification") == "cancelled"


KILL_CFG: dict[str, Any] = {
    "push_provider": "webhook",
    "push_concurrency": 4,
    "push_batch_size": 20,
    "push_rate_per_second": 10_000,
    "push_timeout_seconds": 1,  # in-flight lease: 2 × 1 s deadline + 5 s to record
    "push_lease_seconds": 2,  # claimed, never sent: claimable 2 s after the owner died
    "push_backoff_base_seconds": 0.1,
    "push_backoff_max_seconds": 0.5,
}


async def _wait_until_in_flight(gw: WatchingGateway, d: DaemonProcess, n: int) -> None:
    with anyio.fail_after(60):
        while len(gw.open_requests) < n:
            assert d.proc is not None and d.proc.poll() is None, d.logs()[-3000:]
            await anyio.sleep(0.005)


@pytest.mark.acceptance
async def test_opt_out_after_a_kill_mid_flight_is_abandoned_not_cancelled(
    daemons: Callable[..., DaemonProcess], pool: Any
) -> None:
    """Push in flight, daemon killed, the mentor opts out before the restart: the ledger says
    the push may have been delivered, and it is not sent again."""
    mentor = await add_mentor(pool, joined_at=now() - 30 * DAY)
    gw = WatchingGateway(delay=10)  # holds the request: it is in flight at the kill
    await gw.start()
    try:
        d = daemons("sender", push_webhook_url=gw.url, **KILL_CFG)
        await d.wait_ready()
        await _wait_until_in_flight(gw, d, 1)
        d.kill()
        await opt_out(pool, mentor)
        d2 = daemons("sender-2", push_webhook_url=gw.url, **KILL_CFG)
        await d2.wait_ready()
        with anyio.fail_after(60):
            while await pool.fetchval(OPEN):
                await anyio.sleep(0.1)
        row = await pool.fetchrow("SELECT status, cancel_reason, idempotency_key FROM push_notification")
        assert row["status"] == "abandoned"
        assert MAYBE_DELIVERED in row["cancel_reason"]
        assert [a["idempotency_key"] for a in gw.arrived] == [row["idempotency_key"]]
        assert (
            await d2.metric(
                'scenario_push_outcomes_total{outcome="abandoned",provider="webhook",scenario="inactivity"}'
            )
            == 1
        )
    finally:
        await gw.stop()


@pytest.mark.acceptance
async def test_kill_9_mid_send_repeats_at_most_the_pushes_in_flight(
    daemons: Callable[..., DaemonProcess], pool: Any
) -> None:
    """Three ``kill -9``s of the real daemon while requests are in flight; between kills a
    writer opts some mentors out (some whose push was in flight, some not yet sent).

    Every push ends sent, or cancelled/abandoned for an opted-out mentor; no push that reached
    the gateway is recorded 'cancelled'; repeats carry the same idempotency key and number at
    most ``push_concurrency`` per kill."""
    kills = 3
    concurrency = KILL_CFG["push_concurrency"]
    mentors = [await add_mentor(pool, joined_at=now() - 30 * DAY) for _ in range(100)]
    gw = WatchingGateway(delay=0.25)
    await gw.start()
    opted: set[uuid.UUID] = set()
    in_flight_at_kill: list[set[str]] = []  # per kill: newly reached the gateway, not recorded
    try:
        for k in range(kills):
            d = daemons(f"sender-{k}", push_webhook_url=gw.url, **KILL_CFG)
            await d.wait_ready()
            await _wait_until_in_flight(gw, d, concurrency)
            d.kill()
            in_flight = set(gw.open_requests)
            await anyio.sleep(0.1)  # a request already on the wire lands
            # reached the gateway, outcome not in the ledger: the only pushes that may repeat
            recorded = {
                r["idempotency_key"]
                for r in await pool.fetch(
                    "SELECT idempotency_key FROM push_notification WHERE status = 'sent'"
                )
            }
            unrecorded = {a["idempotency_key"] for a in gw.arrived} - recorded
            in_flight_at_kill.append(unrecorded - set().union(*in_flight_at_kill))
            # the writer: opt out the mentor of one in-flight push and of one untouched push
            by_key = {a["idempotency_key"]: uuid.UUID(a["mentor_id"]) for a in gw.arrived}
            reached = {uuid.UUID(a["mentor_id"]) for a in gw.arrived}
            for m in [by_key[sorted(in_flight)[0]], next(m for m in mentors if m not in reached)]:
                if m not in opted:
                    await opt_out(pool, m)
                    opted.add(m)
        d = daemons("sender-final", push_webhook_url=gw.url, **KILL_CFG)
        await d.wait_ready()
        with anyio.fail_after(120):
            while await pool.fetchval(OPEN):
                await anyio.sleep(0.1)
        await anyio.sleep(1)  # let the last answers of the killed senders' requests land
    finally:
        await gw.stop()

    rows = await pool.fetch("SELECT mentor_id, idempotency_key, status, cancel_reason FROM push_notification")
    assert len(rows) == len(mentors)
    status_of = {r["idempotency_key"]: r for r in rows}
    arrivals = collections.Counter(a["idempotency_key"] for a in gw.arrived)
    duplicates = sum(n - 1 for n in arrivals.values())
    print(
        f"\n{kills} kills: newly unrecorded at each kill {[len(s) for s in in_flight_at_kill]}, "
        f"duplicate deliveries {duplicates}, statuses "
        f"{dict(collections.Counter(r['status'] for r in rows))}"
    )
    # nothing lost: every push of a mentor still opted in was delivered (received with a 200)
    delivered = {r.key for r in gw.delivered()}
    for r in rows:
        if r["mentor_id"] in opted:
            assert r["status"] in {"sent", "cancelled", "abandoned"}
        else:
            assert r["status"] == "sent" and r["idempotency_key"] in delivered
    # never 'cancelled' once it reached the gateway; 'abandoned' says why
    for key in arrivals:
        assert status_of[key]["status"] != "cancelled", f"{key} reached the gateway, recorded cancelled"
    for r in rows:
        if r["status"] == "abandoned":
            assert MAYBE_DELIVERED in r["cancel_reason"]
    assert any(r["status"] == "abandoned" for r in rows)  # the in-flight opt-outs took that path
    # at-least-once, bounded: only pushes in flight at a kill are repeated, with the same key
    repeated = {key for key, n in arrivals.items() if n > 1}
    assert repeated <= set().union(*in_flight_at_kill)
    assert duplicates <= concurrency * kills
