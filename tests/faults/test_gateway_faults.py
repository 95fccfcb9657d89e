"""A push gateway that misbehaves, against the real daemon: it hangs (longer than the push
timeout), resets connections, answers 401, 429 with Retry-After, or 500.

One daemon with a pool of 2 and push batches of 50 (the shape that used to deadlock), a fresh
wave of pushes per fault. For each fault: the daemon stays up and ready, every push reaches a
terminal status or is retried as the policy says (401: failed at once; 500: dead after
``push_max_attempts``; 429: retried no sooner than Retry-After; hang and reset: retried as
"may have been delivered", sent once the gateway answers or dead-lettered saying so), and
events written meanwhile are still drained and notified: the misbehaving gateway starves nothing.
"""

from __future__ import annotations

import collections
import datetime as dt
import functools
import itertools
import uuid
from pathlib import Path
from typing import Any

import pytest

from scenario_engine.db.connect import create_pool
from tests.support.daemon import DaemonProcess
from tests.support.faults import FaultGateway, alive, eventually, now, read_ledger, record
from tests.support.figures import Figures

pytestmark = [pytest.mark.faults, pytest.mark.acceptance]

RULES = """
daily_cap = 100
[[certification_expiry]]
name = "cert_expiry"
tiers_days = [7]
"""
ATTEMPTS = 3
RETRY_AFTER = 1
WAVE = 30
DAEMON: dict[str, Any] = {
    "push_provider": "webhook",
    "pool_size": 2,
    "push_batch_size": 50,
    "push_concurrency": 8,
    "push_rate_per_second": 10_000,
    "push_timeout_seconds": 0.5,
    "push_max_attempts": ATTEMPTS,
    "push_backoff_base_seconds": 0.1,
    "push_backoff_max_seconds": 0.3,
    "push_lease_seconds": 2,
    "poll_interval_seconds": 0.2,
    "dispatch_poll_interval_seconds": 0.2,
    "sweep_interval_seconds": 3600,
}


async def wave(pool: Any, n: int) -> list[uuid.UUID]:
    """n new mentors, each with a certification expiring in 5 days: n events, n pushes."""
    rows = await pool.fetch(
        "INSERT INTO public.peer_mentor (organization_id) SELECT gen_random_uuid() "
        "FROM generate_series(1, $1) RETURNING id",
        n,
    )
    ids = [r["id"] for r in rows]
    at = now()
    await pool.executemany(
        "INSERT INTO public.certification (mentor_id, type, issued_at, expires_at) "
        "VALUES ($1, 'cpr', $2, $3)",
        [(m, at - dt.timedelta(days=300), at + dt.timedelta(days=5)) for m in ids],
    )
    return ids


async def pushes(pool: Any, mentors: list[uuid.UUID]) -> list[Any]:
    return list(
        await pool.fetch(
            "SELECT idempotency_key, status, attempts, last_error, delivery_uncertain "
            "FROM scenario_engine.push_notification WHERE mentor_id = ANY($1)",
            mentors,
        )
    )


def settled(pool: Any, mentors: list[uuid.UUID], status: str) -> Any:
    async def check() -> bool:
        rows = await pushes(pool, mentors)
        return len(rows) == len(mentors) and all(r["status"] == status for r in rows)

    return check


async def test_misbehaving_gateway_settles_every_push_and_starves_nothing(
    db_url: str, tmp_path: Path, figures: Figures
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    gw = FaultGateway(hang_seconds=2.0)
    await gw.start()
    pool = await create_pool(db_url, min_size=1, max_size=4, application_name="fault-test")
    d = DaemonProcess(db_url, tmp_path, "gateway", rules_file=rules, push_webhook_url=gw.url, **DAEMON)
    d.start()
    try:
        await d.wait_ready(timeout=30)
        for fault in ("401", "500", "429", "hang", "reset"):
            gw.mode, gw.status, gw.throttle_ratio = "ok", 200, 0.0
            if fault in ("401", "500"):
                gw.status = int(fault)
            elif fault == "429":
                gw.throttle_ratio, gw.retry_after = 1.0, RETRY_AFTER
            else:
                gw.mode = "hang" if fault == "hang" else "reset"
            figures.fault(f"gateway {fault}")
            first = await wave(pool, WAVE)
            await eventually(
                functools.partial(_all_tried, pool, gw, first, 1), 60, f"{fault}: every push tried", d
            )
            # Meanwhile the platform goes on: new events are drained and evaluated at once.
            second = await wave(pool, 10)
            await eventually(functools.partial(_notified, pool, second), 30, f"{fault}: drain not starved", d)
            assert (await d.http("/readyz"))[0] == 200 and (await d.http("/healthz"))[0] == 200
            everyone = first + second
            if fault == "401":  # a rejection is final: failed on the first attempt, with the answer
                await eventually(settled(pool, everyone, "failed"), 60, "401: all failed", d)
                rows = await pushes(pool, everyone)
                assert all(r["attempts"] == 1 and r["last_error"].startswith("HTTP 401") for r in rows)
            elif fault == "500":  # retried with backoff, then dead-lettered with the reason
                await eventually(settled(pool, everyone, "dead"), 60, "500: all dead", d)
                rows = await pushes(pool, everyone)
                assert all(r["attempts"] == ATTEMPTS and "HTTP 500" in r["last_error"] for r in rows)
            elif fault == "429":  # retried, no sooner than asked; delivered once the gateway recovers
                await eventually(functools.partial(_all_tried, pool, gw, everyone, 2), 60, "429: retried", d)
                gw.throttle_ratio = 0.0
                await eventually(settled(pool, everyone, "sent"), 60, "429: all sent", d)
                rows = await pushes(pool, everyone)
                for key in {r["idempotency_key"] for r in rows}:
                    times = [t for k, t in gw.arrivals if k == key]
                    gaps = [b - a for a, b in itertools.pairwise(times)]
                    assert gaps and min(gaps) >= RETRY_AFTER - 0.05, (key, gaps)
            else:  # no answer: retried as "may have been delivered" until it works or the attempts run out
                await eventually(
                    functools.partial(_all_tried, pool, gw, everyone, 2), 60, f"{fault}: retried", d
                )
                gw.mode = "ok"
                await eventually(
                    functools.partial(_terminal, pool, everyone), 60, f"{fault}: all terminal", d
                )
                rows = await pushes(pool, everyone)
                assert {r["status"] for r in rows} <= {"sent", "dead"}
                assert all(r["delivery_uncertain"] for r in rows)  # the same key, and the ledger says so
                dead = [r for r in rows if r["status"] == "dead"]
                assert all("may have been delivered" in r["last_error"] for r in dead)
                assert all(r["attempts"] == ATTEMPTS for r in dead)
            counts = gw.arrival_counts()
            keys = [r["idempotency_key"] for r in rows]
            expected = {"401": 1, "500": ATTEMPTS}.get(fault)
            if expected is not None:
                assert {counts[k] for k in keys} == {expected}
            assert alive(d), d.logs()[-3000:]
        assert await d.stop() == 0, d.logs()[-3000:]
        ledger = await read_ledger(pool, None, None)
    finally:
        d.kill()
        await pool.close()
        await gw.stop()
    record(figures, ledger)
    # Repeats here are the retries the policy asks for; a duplicate is a push answered 200 twice.
    delivered = collections.Counter(r.key for r in gw.received if r.status == 200)
    figures.duplicate_deliveries = sum(n - 1 for n in delivered.values())
    figures.notes = {"gateway_requests": len(gw.arrivals), "pool_size": 2, "push_batch_size": 50}
    print(f"\ngateway faults: {ledger}; {len(gw.arrivals)} requests")
    assert ledger.events_pending == 0 and ledger.events_dead == 0
    assert ledger.not_terminal == 0 and ledger.terminal_without_reason == 0
    assert ledger.notifications == ledger.dedup_keys == ledger.pushes == 5 * (WAVE + 10)
    assert figures.duplicate_deliveries == 0


async def _all_tried(pool: Any, gw: FaultGateway, mentors: list[uuid.UUID], times: int) -> bool:
    rows = await pushes(pool, mentors)
    counts = gw.arrival_counts()
    return len(rows) == len(mentors) and all(counts[r["idempotency_key"]] >= times for r in rows)


async def _terminal(pool: Any, mentors: list[uuid.UUID]) -> bool:
    rows = await pushes(pool, mentors)
    return len(rows) == len(mentors) and all(r["status"] in ("sent", "dead") for r in rows)


async def _notified(pool: Any, mentors: list[uuid.UUID]) -> bool:
    n = await pool.fetchval(
        "SELECT count(DISTINCT mentor_id) FROM scenario_engine.scenario_notification "
        "WHERE mentor_id = ANY($1)",
        mentors,
    )
    return bool(n == len(mentors))
