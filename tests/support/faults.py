"""Shared pieces of the fault suite: a gateway that misbehaves on demand and notes every
arrival, a writer that keeps the platform busy, and the ledger check every test ends with."""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
from aiohttp import web

from scenario_engine.engine import Engine
from scenario_engine.scenarios.rules import Rules
from tests.support.daemon import DaemonProcess
from tests.support.figures import Figures
from tests.support.gateway import Gateway
from tests.support.smtp import Mailbox

TERMINAL = ("sent", "failed", "dead", "cancelled", "abandoned")
RULES_TOML = """
daily_cap = 100
[[inactivity]]
name = "inactive_21d"
threshold_days = 21
cooldown_days = 7
max_reminders = 2
[[milestone]]
name = "sessions_year"
metric = "sessions"
thresholds = [2, 3, 5]
[[certification_expiry]]
name = "cert_expiry"
tiers_days = [30, 7, 1]
"""


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout: float, what: str, d: DaemonProcess | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await anyio.sleep(0.02)
    tail = f"\nlog:\n{d.logs()[-4000:]}" if d is not None else ""
    raise AssertionError(f"{what} not reached within {timeout} s{tail}")


def when(predicate: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    """An ``eventually`` check from a plain predicate on test-side state."""

    async def check() -> bool:
        return predicate()

    return check


def alive(d: DaemonProcess) -> bool:
    return d.proc is not None and d.proc.poll() is None


GatewayMode = Literal["ok", "hang", "reset"]


@dataclass
class FaultGateway(Gateway):
    """The test gateway, plus: ``mode`` "hang" (answer only after ``hang_seconds``, longer
    than the daemon's push timeout) or "reset" (drop the connection without an answer), and
    ``arrivals``: every request noted the moment it arrives, before any answer, so that a
    request whose sender was killed mid-call still counts as having reached the gateway."""

    mode: GatewayMode = "ok"
    hang_seconds: float = 3.0
    arrivals: list[tuple[str, float]] = field(default_factory=list)
    open_requests: set[str] = field(default_factory=set)

    async def _handle(self, request: web.Request) -> web.Response:
        key = request.headers.get("Idempotency-Key", "")
        self.arrivals.append((key, time.monotonic()))
        self.open_requests.add(key)
        try:
            if self.mode == "reset":
                await request.read()
                assert request.transport is not None
                request.transport.abort()
                raise asyncio.CancelledError  # nothing is answered on an aborted connection
            if self.mode == "hang":
                await request.read()
                await asyncio.sleep(self.hang_seconds)
                raise asyncio.CancelledError  # the sender gave up long ago
            return await super()._handle(request)
        finally:
            self.open_requests.discard(key)

    def arrival_counts(self) -> collections.Counter[str]:
        return collections.Counter(key for key, _ in self.arrivals)

    def duplicates(self) -> int:
        return sum(n - 1 for n in self.arrival_counts().values())


async def add_population(pool: Any, n: int, *, days_ago: int = 30) -> list[uuid.UUID]:
    """n active mentors who joined ``days_ago`` days ago and never logged anything: each is
    due one inactivity reminder."""
    rows = await pool.fetch(
        "INSERT INTO public.peer_mentor (organization_id, joined_at) "
        "SELECT gen_random_uuid(), now() - make_interval(days => $2) FROM generate_series(1, $1) "
        "RETURNING id",
        n,
        days_ago,
    )
    await pool.execute("ANALYZE public.peer_mentor")
    return [r["id"] for r in rows]


async def write_burst(pool: Any, rng: random.Random, mentors: list[uuid.UUID], size: int) -> None:
    """One platform transaction: sessions (milestones), and certifications expiring soon."""
    at = now() - dt.timedelta(hours=1)
    picked = rng.sample(mentors, size)
    async with pool.acquire() as conn, conn.transaction():
        await conn.executemany(
            "INSERT INTO public.activity (mentor_id, kind, occurred_at) VALUES ($1, 'session', $2)",
            [(m, at) for m in picked[: size * 3 // 4] for _ in range(2)],
        )
        await conn.executemany(
            "INSERT INTO public.certification (mentor_id, type, issued_at, expires_at) "
            "VALUES ($1, 'first_aid', $2, $3)",
            [(m, at - dt.timedelta(days=360), at + dt.timedelta(days=5)) for m in picked[size * 3 // 4 :]],
        )


async def writer(
    pool: Any,
    mentors: list[uuid.UUID],
    stop: anyio.Event,
    *,
    seed: int,
    burst: int = 20,
    pause: float = 0.25,
    counter: list[int] | None = None,
) -> None:
    """The platform at work during the faults; survives the database going away."""
    rng = random.Random(seed)
    while not stop.is_set():
        try:
            await write_burst(pool, rng, mentors, burst)
            if counter is not None:
                counter[0] += 1
        except Exception:  # the server is away (restart, terminated connection): try again
            if stop.is_set():
                return
        with anyio.move_on_after(pause):
            await stop.wait()


@dataclass
class Ledger:
    events: int
    events_pending: int
    events_dead: int
    events_dead_without_reason: int
    notifications: int
    dedup_keys: int
    notifications_without_push: int
    pushes: int
    pushes_per_notification_max: int
    statuses: dict[str, int]
    not_terminal: int
    terminal_without_reason: int
    sent_not_received: int
    duplicates: int
    duplicates_on_certain_pushes: int
    cancelled_but_arrived: int
    would_still_send: int

    @property
    def lost(self) -> int:
        return (
            self.events_pending
            + self.notifications_without_push
            + self.not_terminal
            + self.sent_not_received
            + self.would_still_send
        )


async def read_ledger(
    pool: Any,
    gateway: FaultGateway | None,
    rules: Rules | None,
    *,
    mailbox: Mailbox | None = None,
    sender: str | None = None,
) -> Ledger:
    """The ledger as a user would audit it, read from the database (schema-qualified).

    With a ``mailbox`` (the email channel's SMTP server, tests/support/smtp.py) and the daemon's
    ``sender``, email deliveries are audited like pushes: a Message-ID is the email's
    Idempotency-Key (push/smtp.py derives it from the key)."""
    ev = await pool.fetchrow(
        "SELECT count(*) AS n, "
        "count(*) FILTER (WHERE processed_at IS NULL AND dead_at IS NULL) AS pending, "
        "count(*) FILTER (WHERE dead_at IS NOT NULL) AS dead, "
        "count(*) FILTER (WHERE dead_at IS NOT NULL AND coalesce(last_error, '') = '') AS dead_silent "
        "FROM scenario_engine.scenario_event"
    )
    nt = await pool.fetchrow(
        "SELECT count(*) AS n, count(DISTINCT dedup_key) AS keys, "
        "count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM scenario_engine.push_notification p "
        "  WHERE p.notification_id = n.id)) AS without_push "
        "FROM scenario_engine.scenario_notification n"
    )
    per = await pool.fetchval(
        "SELECT coalesce(max(c), 0) FROM (SELECT count(*) AS c FROM scenario_engine.push_notification "
        "GROUP BY notification_id) x"
    )
    statuses = dict(
        await pool.fetch("SELECT status, count(*) FROM scenario_engine.push_notification GROUP BY 1")
    )
    silent = await pool.fetchval(
        "SELECT count(*) FROM scenario_engine.push_notification WHERE status IN "
        "('failed', 'dead', 'cancelled', 'abandoned') AND coalesce(last_error, cancel_reason, '') = ''"
    )
    sent_not_received = duplicates = certain_dups = cancelled_arrived = 0
    if gateway is not None:
        sent = {
            r["idempotency_key"]
            for r in await pool.fetch(
                "SELECT idempotency_key FROM scenario_engine.push_notification WHERE status = 'sent'"
            )
        }
        received = {r.key for r in gateway.received if r.status == 200}
        sent_not_received = len(sent - received)
        counts = gateway.arrival_counts()
        duplicates = gateway.duplicates()
        repeated = [k for k, n in counts.items() if n > 1]
        certain = {
            r["idempotency_key"]
            for r in await pool.fetch(
                "SELECT idempotency_key FROM scenario_engine.push_notification "
                "WHERE idempotency_key = ANY($1) AND NOT delivery_uncertain",
                repeated,
            )
        }
        certain_dups = sum(counts[k] - 1 for k in certain)
        cancelled_arrived = await pool.fetchval(
            "SELECT count(*) FROM scenario_engine.push_notification "
            "WHERE status = 'cancelled' AND idempotency_key = ANY($1)",
            list(counts),
        )
    if mailbox is not None:
        assert sender is not None
        from scenario_engine.push.smtp import message_id

        rows = await pool.fetch(
            "SELECT idempotency_key, status, delivery_uncertain FROM scenario_engine.push_notification "
            "WHERE channel = 'email'"
        )
        by_id = {message_id(r["idempotency_key"], sender): r for r in rows}
        kept = collections.Counter(str(m["Message-ID"]) for m in mailbox.messages)
        arrived = set(mailbox.message_ids)
        sent_not_received += sum(1 for i, r in by_id.items() if r["status"] == "sent" and kept[i] == 0)
        duplicates += sum(n - 1 for n in kept.values() if n > 1)
        certain_dups += sum(
            n - 1 for i, n in kept.items() if n > 1 and i in by_id and not by_id[i]["delivery_uncertain"]
        )
        cancelled_arrived += sum(1 for i, r in by_id.items() if r["status"] == "cancelled" and i in arrived)
    would = 0
    if rules is not None:
        dry = await Engine(pool, rules).run_scheduled_evaluation(dry_run=True)
        would = dry.sent
    return Ledger(
        events=ev["n"],
        events_pending=ev["pending"],
        events_dead=ev["dead"],
        events_dead_without_reason=ev["dead_silent"],
        notifications=nt["n"],
        dedup_keys=nt["keys"],
        notifications_without_push=nt["without_push"],
        pushes=sum(statuses.values()),
        pushes_per_notification_max=per,
        statuses=statuses,
        not_terminal=statuses.get("pending", 0) + statuses.get("sending", 0),
        terminal_without_reason=silent,
        sent_not_received=sent_not_received,
        duplicates=duplicates,
        duplicates_on_certain_pushes=certain_dups,
        cancelled_but_arrived=cancelled_arrived,
        would_still_send=would,
    )


def assert_ledger(ledger: Ledger, *, allow_dead_events: bool = False) -> None:
    """What a user relies on after any fault: nothing lost, nothing twice, every end explained."""
    assert ledger.events_pending == 0, ledger
    if not allow_dead_events:
        assert ledger.events_dead == 0, ledger
    assert ledger.events_dead_without_reason == 0, ledger
    assert ledger.notifications == ledger.dedup_keys, ledger  # every dedup key once
    assert ledger.notifications_without_push == 0, ledger
    assert ledger.pushes_per_notification_max <= 1, ledger
    assert ledger.not_terminal == 0, ledger
    assert ledger.terminal_without_reason == 0, ledger
    assert ledger.sent_not_received == 0, ledger
    assert ledger.duplicates_on_certain_pushes == 0, ledger  # a repeat is always flagged uncertain
    assert ledger.cancelled_but_arrived == 0, ledger  # "cancelled" promises nothing was sent
    assert ledger.would_still_send == 0, ledger  # nothing due was left unsent


def record(fig: Figures, ledger: Ledger) -> None:
    fig.events = ledger.events
    fig.events_dead_lettered = ledger.events_dead
    fig.notifications = ledger.notifications
    fig.pushes = ledger.pushes
    fig.push_statuses = dict(sorted(ledger.statuses.items()))
    fig.lost = ledger.lost
    fig.duplicate_deliveries = ledger.duplicates


async def caught_up(pool: Any) -> bool:
    row = await pool.fetchrow(
        "SELECT (SELECT count(*) FROM scenario_engine.scenario_event "
        "        WHERE processed_at IS NULL AND dead_at IS NULL) AS events, "
        "(SELECT count(*) FROM scenario_engine.push_notification "
        "        WHERE status IN ('pending', 'sending')) AS pushes"
    )
    return bool(row["events"] == 0 and row["pushes"] == 0)
