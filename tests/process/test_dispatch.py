"""The push outbox worker against a real local HTTP gateway and a real Postgres."""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import hmac
import importlib.metadata
import itertools
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from scenario_engine.config import Settings
from scenario_engine.engine import Engine
from scenario_engine.push.factory import make_provider
from scenario_engine.runtime.dispatcher import Dispatcher, DispatchStats
from scenario_engine.runtime.metrics import Metrics
from tests.support.cli import run_cli
from tests.support.factories import add_activity, add_certification, add_mentor, opt_out
from tests.support.gateway import Gateway

DAY = dt.timedelta(days=1)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def settings(gateway: Gateway | None = None, **extra: Any) -> Settings:
    base: dict[str, Any] = {
        "push_backoff_base_seconds": 0.05,
        "push_backoff_max_seconds": 0.2,
        "push_max_attempts": 30,
        "push_rate_per_second": 10_000,
        "push_timeout_seconds": 2,
    }
    if gateway is not None:
        base |= {"push_provider": "webhook", "push_webhook_url": gateway.url}
    return Settings(**(base | extra))


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    gw = await Gateway().start()
    yield gw
    await gw.stop()


async def _enqueue(engine: Engine, pool: Any, n: int, *, days_inactive: int = 30) -> list[Any]:
    """n inactive mentors, swept: n pending inactivity pushes."""
    mentors = [await add_mentor(pool, joined_at=now() - days_inactive * DAY) for _ in range(n)]
    await engine.run_scheduled_evaluation()
    assert await pool.fetchval("SELECT count(*) FROM push_notification WHERE status = 'pending'") == n
    return mentors


async def _drain(dispatcher: Dispatcher, pool: Any, timeout: float = 30) -> DispatchStats:
    total = DispatchStats()
    with anyio.fail_after(timeout):
        while await pool.fetchval(
            "SELECT count(*) FROM push_notification WHERE status IN ('pending', 'sending')"
        ):
            stats = await dispatcher.dispatch_once()
            for k, v in vars(stats).items():
                setattr(total, k, getattr(total, k) + v)
            if not stats.claimed:
                await anyio.sleep(0.02)
    return total


async def test_webhook_request_format_signature_and_idempotency_key(
    engine: Engine, pool: Any, gateway: Gateway
) -> None:
    [mentor] = await _enqueue(engine, pool, 1)
    s = settings(gateway, push_webhook_token="tok-123", push_webhook_hmac_secret="s3cret")
    async with Dispatcher(pool, make_provider(s, pool), s, Metrics()) as d:
        stats = await _drain(d, pool)
    assert stats.sent == 1
    [req] = gateway.received
    push = await pool.fetchrow("SELECT * FROM push_notification")
    assert req.headers["Authorization"] == "Bearer tok-123"
    assert req.headers["Content-Type"] == "application/json"
    assert req.headers["User-Agent"] == f"scenario-engine/{importlib.metadata.version('scenario-engine')}"
    assert req.key == push["idempotency_key"]
    expected = hmac.new(
        b"s3cret", req.headers["X-Scenario-Timestamp"].encode() + b"." + req.body, hashlib.sha256
    )
    assert req.headers["X-Scenario-Signature"] == "sha256=" + expected.hexdigest()
    body = req.json
    assert body["mentor_id"] == str(mentor)
    assert body["scenario_type"] == "inactivity"
    assert body["title"] == push["title"]
    assert body["idempotency_key"] == push["idempotency_key"]
    assert body["data"]["context"]["threshold_days"] == 21
    assert push["status"] == "sent"
    assert push["provider"] == "webhook"
    assert push["provider_message_id"] == "msg-0"


async def test_log_provider_delivers(engine: Engine, pool: Any) -> None:
    await _enqueue(engine, pool, 3)
    s = settings()
    async with Dispatcher(pool, make_provider(s, pool), s, Metrics()) as d:
        assert (await _drain(d, pool)).sent == 3
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM push_notification WHERE status = 'sent' AND provider = 'log'"
        )
        == 3
    )


async def test_gateway_down_then_back_delivers_each_push_once(engine: Engine, pool: Any) -> None:
    await _enqueue(engine, pool, 20)
    gw = Gateway()  # not started: connection refused
    s = settings(gw)
    async with Dispatcher(pool, make_provider(s, pool), s, Metrics()) as d:
        first = await d.dispatch_once()
        assert first.retried == 20
        await anyio.sleep(0.3)
        await d.dispatch_once()  # still down
        await gw.start()
        try:
            await _drain(d, pool)
        finally:
            await gw.stop()
    keys = [r.key for r in gw.delivered()]
    assert len(keys) == 20
    assert len(set(keys)) == 20
    assert await pool.fetchval("SELECT count(*) FROM push_notification WHERE status = 'sent'") == 20
    assert await pool.fetchval("SELECT min(attempts) FROM push_notification") >= 3


async def test_flaky_gateway_with_throttling(engine: Engine, pool: Any) -> None:
    await _enqueue(engine, pool, 60)
    gw = await Gateway(fail_ratio=0.5, throttle_ratio=0.1, retry_after=1).start()
    s = settings(gw, push_max_attempts=12)
    metrics = Metrics()
    try:
        async with Dispatcher(pool, make_provider(s, pool), s, metrics) as d:
            await _drain(d, pool, timeout=60)
    finally:
        await gw.stop()
    statuses = dict(await pool.fetch("SELECT status, count(*) FROM push_notification GROUP BY 1"))
    assert set(statuses) <= {"sent", "dead"}
    assert sum(statuses.values()) == 60
    delivered = collections.Counter(r.key for r in gw.delivered())
    assert all(n == 1 for n in delivered.values()), "an idempotency key was delivered twice"
    assert len(delivered) == statuses.get("sent", 0)
    # Retry-After: after a 429 the same push is not tried again for at least that long
    by_key: dict[str, list[Any]] = collections.defaultdict(list)
    for r in gw.received:
        by_key[r.key].append(r)
    throttled = 0
    for attempts in by_key.values():
        for prev, nxt in itertools.pairwise(attempts):
            if prev.status == 429:
                throttled += 1
                assert nxt.at - prev.at >= 0.95
    assert throttled > 0
    for row in await pool.fetch("SELECT last_error FROM push_notification WHERE status = 'dead'"):
        assert "gave up after" in row["last_error"]
    assert "scenario_push_outcomes_total" in metrics.render().decode()


async def test_client_error_fails_at_once(engine: Engine, pool: Any) -> None:
    await _enqueue(engine, pool, 1)
    gw = await Gateway(status=400).start()
    s = settings(gw)
    try:
        async with Dispatcher(pool, make_provider(s, pool), s, Metrics()) as d:
            stats = await d.dispatch_once()
    finally:
        await gw.stop()
    assert stats.failed == 1
    row = await pool.fetchrow("SELECT status, attempts, last_error FROM push_notification")
    assert (row["status"], row["attempts"]) == ("failed", 1)
    assert "HTTP 400" in row["last_error"]


async def test_renewal_and_opt_out_between_enqueue_and_send_cancel(engine: Engine, pool: Any) -> None:
    renewed = await add_mentor(pool, joined_at=now() - 2 * DAY)
    await add_activity(pool, renewed, now())
    await add_certification(pool, renewed, expires_at=now() + 5 * DAY, issued_at=now() - 360 * DAY)
    opted = await add_mentor(pool, joined_at=now() - 2 * DAY)
    await add_activity(pool, opted, now())
    await add_certification(pool, opted, expires_at=now() + 5 * DAY)
    back = await add_mentor(pool, joined_at=now() - 40 * DAY)
    await engine.run_scheduled_evaluation()
    assert await pool.fetchval("SELECT count(*) FROM push_notification") == 3
    # between enqueue and send: a renewal, an opt-out, and the inactive mentor is back
    await add_certification(pool, renewed, expires_at=now() + 400 * DAY, issued_at=now())
    await opt_out(pool, opted, "certification_expiry")
    await add_activity(pool, back, now())
    s = settings()
    async with Dispatcher(pool, make_provider(s, pool), s, Metrics()) as d:
        stats = await _drain(d, pool)
    assert stats.cancelled == 3
    reasons = {
        r["mentor_id"]: r["cancel_reason"] for r in await pool.fetch("SELECT * FROM push_notification")
    }
    assert reasons[renewed] == "certification renewed, revoked or expired"
    assert reasons[opted] == "mentor opted out"
    assert reasons[back] == "mentor active again"
    assert await pool.fetchval("SELECT count(*) FROM push_notification WHERE status = 'cancelled'") == 3


def _zone_where_it_is(hour: int, at: dt.datetime) -> str:
    """An Etc/GMT zone in which the local hour is ``hour`` at instant ``at``."""
    offset = (hour - at.hour) % 24
    if offset > 14:
        offset -= 24
    return "UTC" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"


async def test_push_due_at_23_local_is_deferred_to_08_local(engine: Engine, pool: Any) -> None:
    # No need to keep clear of the hour's end: should the local hour turn from 23 to 00 during
    # the test, the push is still inside the window and waits for the same 08:00.
    t = now()
    zone = _zone_where_it_is(23, t)
    mentor = await add_mentor(pool, joined_at=t - 30 * DAY, timezone=zone)
    await engine.run_scheduled_evaluation()
    s = settings(quiet_hours="21:00-08:00")
    async with Dispatcher(pool, make_provider(s, pool), s, Metrics()) as d:
        stats = await d.dispatch_once()
    assert stats.deferred == 1
    row = await pool.fetchrow("SELECT * FROM push_notification WHERE mentor_id = $1", mentor)
    assert row["status"] == "pending"
    assert row["attempts"] == 0
    from zoneinfo import ZoneInfo

    local = row["next_attempt_at"].astimezone(ZoneInfo(zone))
    assert (local.hour, local.minute) == (8, 0)
    assert dt.timedelta(hours=8) < row["next_attempt_at"] - t <= dt.timedelta(hours=9)


async def test_retry_dead_requeues(engine: Engine, pool: Any, db_url: str) -> None:
    await _enqueue(engine, pool, 2)
    await pool.execute("UPDATE push_notification SET status = 'dead', attempts = 8, last_error = 'HTTP 503'")
    out = await run_cli("dispatch", "--retry-dead", env={"SCENARIO_DATABASE_URL": db_url})
    assert out.returncode == 0, out.stderr
    assert "re-queued 2" in out.stdout
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM push_notification WHERE status = 'pending' AND attempts = 0"
        )
        == 2
    )
    out = await run_cli("dispatch", "--once", env={"SCENARIO_DATABASE_URL": db_url})
    assert out.returncode == 0, out.stderr
    assert "sent=2" in out.stdout
    assert await pool.fetchval("SELECT count(*) FROM push_notification WHERE status = 'sent'") == 2


async def test_two_dispatchers_share_the_work_without_sending_twice(
    engine: Engine, pool: Any, gateway: Gateway
) -> None:
    await _enqueue(engine, pool, 200)
    gateway.delay = 0.01
    s = settings(gateway, push_batch_size=20)
    async with (
        Dispatcher(pool, make_provider(s, pool), s, Metrics()) as a,
        Dispatcher(pool, make_provider(s, pool), s, Metrics()) as b,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(_drain, a, pool)
        tg.start_soon(_drain, b, pool)
    keys = [r.key for r in gateway.received]
    assert len(keys) == 200
    assert len(set(keys)) == 200


@pytest.mark.acceptance
async def test_kill_9_mid_send_loses_nothing(daemons: Any, pool: Any) -> None:
    mentors = [await add_mentor(pool, joined_at=now() - 30 * DAY) for _ in range(30)]
    gw = await Gateway(delay=0.5).start()
    cfg = {
        "push_provider": "webhook",
        "push_webhook_url": gw.url,
        "push_lease_seconds": 2,
        "push_timeout_seconds": 2,  # an in-flight push is taken up again 2 × 2 + 5 s after the kill
        "push_concurrency": 4,
        "push_batch_size": 8,
    }
    try:
        d = daemons("sender", **cfg)
        await d.wait_ready()
        with anyio.fail_after(20):
            while len(gw.received) < 6:
                await anyio.sleep(0.02)
        d.kill()  # requests in flight, some pushes claimed but unrecorded
        assert await pool.fetchval("SELECT count(*) FROM push_notification WHERE status = 'sent'") < 30
        d2 = daemons("sender-2", **cfg)
        await d2.wait_ready()
        with anyio.fail_after(60):
            while await pool.fetchval("SELECT count(*) FROM push_notification WHERE status = 'sent'") < 30:
                await anyio.sleep(0.1)
    finally:
        await gw.stop()
    keys = {r["idempotency_key"] for r in await pool.fetch("SELECT idempotency_key FROM push_notification")}
    assert len(keys) == len(mentors)
    delivered = collections.Counter(r.key for r in gw.delivered())
    assert set(delivered) == keys  # nothing lost
    assert max(delivered.values()) <= 2  # a repeat, if any, carries the same key


@pytest.mark.acceptance
async def test_enqueue_wakes_the_dispatcher_by_notify(daemons: Any, pool: Any, gateway: Gateway) -> None:
    d = daemons(
        push_provider="webhook",
        push_webhook_url=gateway.url,
        dispatch_poll_interval_seconds=3600,
        poll_interval_seconds=3600,
    )
    await d.wait_ready()
    mentor = await add_mentor(pool, joined_at=now() - 2 * DAY)
    await add_activity(pool, mentor, now())
    await add_certification(pool, mentor, expires_at=now() + 3 * DAY)  # event → enqueue → NOTIFY → send
    with anyio.fail_after(2):
        while not gateway.delivered():
            await anyio.sleep(0.02)
    assert gateway.delivered()[0].json["scenario_type"] == "certification_expiry"
