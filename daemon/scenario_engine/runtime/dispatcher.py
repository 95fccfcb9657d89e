"""The push dispatcher: a durable outbox worker.

Claims due ``push_notification`` rows (SKIP LOCKED, with a lease), re-checks each against
what may have changed since enqueue, defers those inside quiet hours, and sends the rest
concurrently (bounded in flight, rate-limited per provider). Outcomes are written with
the claim's attempt number as a fence.

The delivery window is one push wide, not one batch wide. A claimed push is marked in
flight on its own, by one short statement, right before its HTTP call, and its outcome is
recorded by another as soon as the call returns, still inside its concurrency slot: at any
moment at most ``push_concurrency`` pushes of a process can have reached the gateway without
their outcome in the ledger, and only those can be sent twice after a crash (with the same
idempotency key). The claim on the rest of the batch is renewed while it waits, so a dead
process's unsent pushes are claimable again one lease after it died, and an in-flight push
once its send deadline has passed. A push that may have reached the gateway (interrupted
mid-call, or a call without an answer) is marked ``delivery_uncertain``; if the re-check
later finds it no longer wanted it is ``abandoned`` — "may have been delivered" — never
``cancelled``.

Every channel goes through this one mechanism (docs/CHANNELS.md): a row's ``channel`` picks
its provider (push: webhook / FCM / log; email: SMTP) and its rate limit; the claim, the
re-check, the in-flight fence, retries, dead letters and idempotency keys are the same. A push
that cannot reach the mentor at all (no device token, token unregistered) is switched, once, to
a channel its programme allows as fallback (``push_fall_back``), and is then sent like any row.
The digest pushes of one mentor and channel claimed together go as one message (push/digest.py),
each row marked in flight and recorded on its own fence.

No database connection is held across an HTTP call or while another is acquired: every
statement takes a connection from the pool and gives it back, so no batch size or pool
size can make the dispatcher starve its own pool.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import anyio
from aiolimiter import AsyncLimiter

from scenario_engine.config.settings import Settings
from scenario_engine.db.errors import is_condition
from scenario_engine.db.queries import bind, fetch
from scenario_engine.db.records import ClaimedPush, PushCheck, from_row
from scenario_engine.domain.quiet_hours import parse_quiet_hours
from scenario_engine.logs import get_logger
from scenario_engine.push.base import PushMessage, PushProvider, SendResult
from scenario_engine.push.digest import digest_message
from scenario_engine.redaction import collect_secrets, scrub
from scenario_engine.runtime.clock import ServerTime
from scenario_engine.runtime.metrics import Metrics
from scenario_engine.runtime.quiet import quiet_until
from scenario_engine.runtime.state import LoopHealth, Wakeup
from scenario_engine.runtime.worker import Worker
from scenario_engine.scenarios.registry import bind_recheck
from scenario_engine.scenarios.rules import Rules

log = get_logger("scenario_engine.dispatcher")

MAYBE_DELIVERED = "an earlier attempt may have been delivered"

# Time allowed, after the send deadline, to record the outcome. The in-flight lease is the
# send deadline plus this: another claim may take an in-flight push over only when its
# sender can no longer be talking to the gateway.
RECORD_GRACE_SECONDS = 5.0


def cancel_outcome(delivery_uncertain: bool, reason: str) -> tuple[str, str]:
    """The terminal status of a push the re-check no longer wants, and its reason.

    "cancelled" promises the mentor got nothing; after an attempt that may have reached the
    gateway only "abandoned" is true.
    """
    if delivery_uncertain:
        return "abandoned", f"{MAYBE_DELIVERED}; not sent again: {reason}"
    return "cancelled", reason


def with_uncertainty(reason: str, delivery_uncertain: bool) -> str:
    """A terminal error of a push that may have been delivered says so."""
    return f"{reason} ({MAYBE_DELIVERED})" if delivery_uncertain else reason


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    max_age: dt.timedelta
    base: float
    maximum: float

    def delay(self, attempts: int, retry_after: float | None) -> float:
        """Exponential backoff with jitter; a gateway's Retry-After wins when it asks for longer."""
        backoff = min(self.maximum, self.base * 2.0 ** max(0, attempts - 1)) * random.uniform(0.5, 1.0)
        return max(backoff, retry_after) if retry_after is not None else backoff

    def gives_up(self, attempts: int, created_at: dt.datetime, delay: float, now: dt.datetime) -> bool:
        return attempts >= self.max_attempts or now + dt.timedelta(seconds=delay) > created_at + self.max_age


@dataclass
class DispatchStats:
    claimed: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    dead: int = 0
    cancelled: int = 0
    abandoned: int = 0
    deferred: int = 0
    interrupted: int = 0  # claimed after an earlier attempt was cut off mid-call
    lost: int = 0  # claim taken over by another dispatcher before the send: not sent here
    fell_back: int = 0  # switched to a fallback channel (sent by it in a later attempt)
    digested: int = 0  # pushes carried by another's digest message (not counting the leaders)


# A claimed push and its send-time re-check: what one send (or one digest's member) works on.
Member = tuple[ClaimedPush, PushCheck]


class Dispatcher:
    def quiet_window(self, check: PushCheck | None) -> tuple[dt.time, dt.time] | None:
        """The quiet hours of the push's mentor: their organisation's programme's, else the
        environment's (the default programme's fallback)."""
        if self.rules is None or check is None:
            return self.quiet
        hours = self.rules().organization(check.organization_id).quiet_hours
        return parse_quiet_hours(hours) if hours else self.quiet

    def __init__(
        self,
        pool: Any,
        provider: PushProvider | Mapping[str, PushProvider],
        settings: Settings,
        metrics: Metrics,
        rules: Callable[[], Rules] | None = None,
    ):
        """``provider``: the push provider alone, or one provider per channel ('push', 'email')."""
        self.pool = pool
        self.providers: dict[str, PushProvider] = (
            dict(provider) if isinstance(provider, Mapping) else {"push": provider}
        )
        self.provider = self.providers["push"]
        self.settings = settings
        self.metrics = metrics
        self.retry = RetryPolicy(
            max_attempts=settings.push_max_attempts,
            max_age=dt.timedelta(hours=settings.push_max_age_hours),
            base=settings.push_backoff_base_seconds,
            maximum=settings.push_backoff_max_seconds,
        )
        self.quiet = settings.quiet_window
        # The programmes as reloaded (SIGHUP): an organisation's quiet hours, else the rules
        # file's top level, else SCENARIO_QUIET_HOURS (docs/PROGRAMMES.md).
        self.rules = rules
        self.secrets = collect_secrets(settings)  # never stored in last_error, never logged
        self.limiter = anyio.CapacityLimiter(settings.push_concurrency)
        # One rate limit per channel: a slow mail relay must not throttle pushes, nor the reverse.
        self.rates = {
            "push": AsyncLimiter(settings.push_rate_per_second, 1.0),
            "email": AsyncLimiter(settings.email_rate_per_second, 1.0),
        }
        self.rate = self.rates["push"]
        self.session: aiohttp.ClientSession | None = None
        # A provider may make two calls per push (FCM: a token refresh after a 401).
        self.send_deadline = 2 * settings.push_timeout_seconds
        self.in_flight_lease = self.send_deadline + RECORD_GRACE_SECONDS
        # Per channel: the whole SMTP conversation is bounded by the email timeout.
        self.send_deadlines = {"push": self.send_deadline, "email": settings.email_timeout_seconds}
        self.claim_lease = settings.push_lease_seconds

    async def __aenter__(self) -> Dispatcher:
        connector = aiohttp.TCPConnector(limit=self.settings.push_concurrency)
        self.session = aiohttp.ClientSession(connector=connector)
        return self

    async def __aexit__(self, *exc: object) -> None:
        with anyio.CancelScope(shield=True):
            if self.session is not None:
                await self.session.close()
            for provider in self.providers.values():
                await provider.close()

    async def run(self, stopping: anyio.Event, wakeup: Wakeup, health: LoopHealth | None = None) -> None:
        """Loop until stopped, waking on NOTIFY from enqueue or on the poll interval; a lost
        database is retried with backoff (runtime/worker.py), never fatal."""

        async def step() -> bool:
            stats = await self.dispatch_once()
            return stats.claimed >= self.settings.push_batch_size

        await Worker(
            "dispatcher",
            step,
            stopping=stopping,
            poll_interval=self.settings.dispatch_poll_interval_seconds,
            wakeup=wakeup,
            health=health,
        ).run()

    async def dispatch_once(self) -> DispatchStats:
        """Claim one batch of due pushes and see each to an outcome.

        A condition of the database (db/errors.py: lost, read-only, a lock or statement
        timeout …) while sending ends no other send: the push it concerned keeps its lease and
        is taken up again; the first such error is raised at the end, and the work loop backs
        off on it. So does one from the claim or the re-check.
        """
        stats = DispatchStats()
        async with self.pool.acquire() as conn:
            rows = [
                from_row(ClaimedPush, r)
                for r in await fetch(
                    conn,
                    "claim_pushes",
                    batch_size=self.settings.push_batch_size,
                    lease_secs=self.claim_lease,
                )
            ]
            if not rows:
                return stats
            recheck, args = bind_recheck(ids=[r.id for r in rows])
            checks = {c.id: c for c in (from_row(PushCheck, r) for r in await conn.fetch(recheck, *args))}
            server = await ServerTime.read(conn)  # quiet hours and give-ups by the server's clock
        stats.claimed = len(rows)
        for row in rows:
            if row.interrupted:
                self._count(row, "interrupted")
                stats.interrupted += 1
                log.warning("push_attempt_interrupted", push_id=row.id, attempts=row.attempts - 1)
        now = server.at
        to_send: list[Member] = []
        finished: list[tuple[ClaimedPush, str, str]] = []
        deferred: list[tuple[ClaimedPush, dt.datetime]] = []
        for row in rows:
            check = checks.get(row.id)
            reason = (check.cancel_reason or "") if check else "mentor no longer exists"
            if reason or check is None:
                status, text = cancel_outcome(row.delivery_uncertain, reason)
                finished.append((row, status, text))
                setattr(stats, status, getattr(stats, status) + 1)
                continue
            until = quiet_until(now, check.timezone, self.quiet_window(check))
            if until is not None:
                deferred.append((row, until))
                stats.deferred += 1
                continue
            if self._channel(row) not in self.providers:  # e.g. SMTP no longer configured
                reason = f"no provider configured for channel {self._channel(row)!r}"
                finished.append((row, "failed", with_uncertainty(reason, row.delivery_uncertain)))
                stats.failed += 1
                continue
            to_send.append((row, check))
        await self._finish_many(finished)  # one statement each, not one per push
        if deferred:
            await self._execute(
                "push_defer",
                ids=[r.id for r, _ in deferred],
                attempts=[r.attempts for r, _ in deferred],
                until=[until for _, until in deferred],
            )
            for row, _ in deferred:
                self._count(row, "deferred")
        waiting = {row.id: row.attempts for row, _ in to_send}
        errors: list[BaseException] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._renew_claims, waiting)
            async with anyio.create_task_group() as sends:
                for group in self._groups(to_send):
                    sends.start_soon(self._send_one, group, stats, waiting, errors, server)
            tg.cancel_scope.cancel()
        if errors:
            raise errors[0]
        return stats

    def _groups(self, to_send: list[Member]) -> list[list[Member]]:
        """One message per push, but one per mentor and channel for the digest pushes claimed
        together (claim_pushes claims a mentor's due digest pushes whole)."""
        groups: list[list[Member]] = []
        digests: dict[tuple[uuid.UUID, str], list[Member]] = {}
        for row, check in to_send:
            if not row.digest:
                groups.append([(row, check)])
                continue
            key = (row.mentor_id, self._channel(row))
            if key not in digests:
                digests[key] = []
                groups.append(digests[key])
            digests[key].append((row, check))
        return groups

    async def _renew_claims(self, waiting: dict[int, int]) -> None:
        """Keep the claim on the pushes still waiting for a slot, however long the batch takes."""
        while True:
            await anyio.sleep(self.claim_lease / 3)
            if not waiting:
                continue
            ids, attempts = list(waiting), list(waiting.values())
            try:
                await self._execute(
                    "push_renew_claims", ids=ids, attempts=attempts, lease_secs=self.claim_lease
                )
            except Exception as exc:  # a condition: the claim may lapse; the in-flight mark still fences
                if not is_condition(exc):
                    raise
                log.warning("push_claim_renewal_failed", error=repr(exc), pushes=len(ids))

    async def _send_one(
        self,
        members: list[Member],
        stats: DispatchStats,
        waiting: dict[int, int],
        errors: list[BaseException],
        server: ServerTime,
    ) -> None:
        """Send one message: one push, or the digest of several pushes (row, re-check) of one
        mentor and channel. Each row is marked in flight and recorded on its own fence; the
        message is the first marked row's (its id and idempotency key)."""
        channel = self._channel(members[0][0])
        provider = self.providers[channel]
        deadline = self.send_deadlines.get(channel, self.send_deadline)
        async with self.limiter:
            await self.rates.get(channel, self.rate).acquire()
            for row, _ in members:
                waiting.pop(row.id, None)
            marked: list[Member] = []
            for row, check in members:
                try:
                    ok = await self._fetchval(
                        "push_mark_in_flight",
                        id=row.id,
                        attempts=row.attempts,
                        lease_secs=deadline + RECORD_GRACE_SECONDS,
                    )
                except Exception as exc:  # not marked, so not sent: the claim lapses
                    if not is_condition(exc):
                        raise
                    errors.append(exc)
                    ok = None
                    if not marked:
                        return
                if ok is None:
                    stats.lost += 1
                    log.info("push_claim_lost", push_id=row.id, attempts=row.attempts)
                    continue
                marked.append((row, check))
            if not marked:
                return
            message = self._message(marked)
            if len(marked) > 1:
                try:
                    await self._execute(
                        "push_digest_group",
                        ids=[r.id for r, _ in marked],
                        attempts=[r.attempts for r, _ in marked],
                        leader=message.id,
                    )
                except Exception as exc:  # in flight, unsent: taken up again later
                    if not is_condition(exc):
                        raise
                    errors.append(exc)
                    return
                stats.digested += len(marked) - 1
            started = time.perf_counter()
            result = await self._call(provider, message, deadline)
            self.metrics.push_latency.labels(provider.name).observe(time.perf_counter() - started)
            # Recorded inside the slot: unrecorded outcomes never outnumber push_concurrency messages.
            for row, check in marked:
                try:
                    await self._record(row, result, stats, server.now(), check)
                except Exception as exc:  # stays in flight: taken up again as uncertain
                    if not is_condition(exc):
                        raise
                    log.warning(
                        "push_outcome_not_recorded", push_id=row.id, outcome=result.kind, error=repr(exc)
                    )
                    errors.append(exc)

    def _message(self, members: list[Member]) -> PushMessage:
        """The message of one push, or the digest naming each of several (push/digest.py)."""
        row, check = members[0]
        title, body, data = row.title, row.body, row.data or {}
        if len(members) > 1:
            title, body = digest_message([r.title for r, _ in members], check.locale)
            data = {
                "digest": [
                    {
                        "notification_id": r.data.get("notification_id") if r.data else None,
                        "scenario_type": r.scenario_type,
                        "title": r.title,
                    }
                    for r, _ in members
                ],
                "notification_id": data.get("notification_id"),
            }
        return PushMessage(
            id=row.id,
            mentor_id=row.mentor_id,
            scenario_type=row.scenario_type if len(members) == 1 else "digest",
            title=title,
            body=body,
            data=data,
            idempotency_key=row.idempotency_key,
            attempts=row.attempts,
            channel=self._channel(row),
            recipient=row.recipient,
            locale=check.locale,
        )

    async def _call(self, provider: PushProvider, message: PushMessage, deadline: float) -> SendResult:
        """One provider call, cut off at the send deadline that the in-flight lease counts on."""
        assert self.session is not None
        try:
            with anyio.fail_after(deadline):
                return await provider.send(message, self.session)
        except TimeoutError:
            return SendResult.retry(f"no answer within {deadline:g} s", maybe_delivered=True)
        except Exception as exc:  # a provider bug must not kill the worker: retry, then dead-letter
            log.exception("push_provider_error", push_id=message.id)
            return SendResult.retry(f"provider error: {exc!r}", maybe_delivered=True)

    async def _record(
        self,
        row: ClaimedPush,
        result: SendResult,
        stats: DispatchStats,
        now: dt.datetime,
        check: PushCheck | None = None,
    ) -> None:
        """``now``: the server's clock at the send's end, against which its age is judged;
        ``check``: the send-time re-check of the row (the mentor's email address, if known)."""
        if result.error and self.secrets:  # a gateway may echo our URL or token into its answer
            result = dataclasses.replace(result, error=scrub(result.error, self.secrets))
        name = self._provider_name(row)
        uncertain = bool(row.delivery_uncertain) or result.maybe_delivered
        if result.kind == "delivered":
            await self._execute(
                "push_sent",
                id=row.id,
                attempts=row.attempts,
                provider=name,
                provider_message_id=result.provider_message_id,
            )
            self._count(row, "sent")
            stats.sent += 1
            return
        if result.kind == "failed" and result.unreachable and self._channel(row) == "push":
            if await self._fall_back(row, result.error or "unreachable", check):
                stats.fell_back += 1
                return
            if "email" in (row.fallback or []):
                result = dataclasses.replace(result, error=f"{result.error}; {self._no_fallback(check)}")
        if result.kind == "dead":  # a permanent refusal (SMTP 5xx to RCPT TO): no retry
            await self._finish(row, "dead", with_uncertainty(result.error or "refused", uncertain))
            stats.dead += 1
            log.error("push_dead_lettered", push_id=row.id, attempts=row.attempts, error=result.error)
            return
        if result.kind == "failed":
            await self._finish(row, "failed", with_uncertainty(result.error or "failed", uncertain))
            stats.failed += 1
            log.warning("push_failed", push_id=row.id, error=result.error)
            return
        delay = self.retry.delay(row.attempts, result.retry_after)
        if self.retry.gives_up(row.attempts, row.created_at, delay, now):
            reason = f"gave up after {row.attempts} attempts: {result.error}"
            await self._finish(row, "dead", with_uncertainty(reason, uncertain))
            stats.dead += 1
            log.error("push_dead_lettered", push_id=row.id, attempts=row.attempts, error=result.error)
            return
        await self._execute(
            "push_retry",
            id=row.id,
            attempts=row.attempts,
            delay_secs=delay,
            provider=name,
            error=result.error,
            maybe_delivered=result.maybe_delivered,
        )
        self._count(row, "retried")
        stats.retried += 1

    async def _fall_back(self, row: ClaimedPush, error: str, check: PushCheck | None) -> bool:
        """Switch an undeliverable push to the email channel, when its programme allows it and
        the platform knows an address; True if switched. At most once per row (SQL fence)."""
        if "email" not in (row.fallback or []) or "email" not in self.providers:
            return False
        address = check.email if check is not None else None
        if not address:
            return False
        switched = await self._fetchval(
            "push_fall_back",
            id=row.id,
            attempts=row.attempts,
            channel="email",
            recipient=address,
            reason=error,
        )
        if switched is None:
            return False
        self._count(row, "fell_back")
        log.info("push_fell_back", push_id=row.id, channel="email", reason=error)
        return True

    def _no_fallback(self, check: PushCheck | None) -> str:
        if "email" not in self.providers:
            return "no email fallback: no SMTP server configured"
        return "no email fallback: the platform has no address for the mentor"

    @staticmethod
    def _channel(row: ClaimedPush) -> str:
        return row.channel or "push"

    def _provider_name(self, row: ClaimedPush) -> str:
        provider = self.providers.get(self._channel(row))
        return provider.name if provider is not None else self._channel(row)

    async def _finish(self, row: ClaimedPush, status: str, reason: str) -> None:
        await self._finish_many([(row, status, reason)])

    async def _finish_many(self, outcomes: list[tuple[ClaimedPush, str, str]]) -> None:
        """Record terminal outcomes (row, status, reason) in one statement."""
        if not outcomes:
            return
        by_provider: dict[str, list[tuple[ClaimedPush, str, str]]] = {}
        for outcome in outcomes:
            by_provider.setdefault(self._provider_name(outcome[0]), []).append(outcome)
        for name, group in by_provider.items():  # one statement per channel's provider
            await self._execute(
                "push_finish",
                ids=[row.id for row, _, _ in group],
                attempts=[row.attempts for row, _, _ in group],
                statuses=[status for _, status, _ in group],
                provider=name,
                reasons=[reason for _, _, reason in group],
            )
        for row, status, reason in outcomes:
            self._count(row, status)
            if status == "abandoned":
                log.warning("push_abandoned", push_id=row.id, reason=reason)

    async def _execute(self, name: str, **params: Any) -> None:
        """One named statement on a connection of its own, given back at once."""
        sql, args = bind(name, params)
        async with self.pool.acquire() as conn:
            await conn.execute(sql, *args)

    async def _fetchval(self, name: str, **params: Any) -> Any:
        sql, args = bind(name, params)
        async with self.pool.acquire() as conn:
            return await conn.fetchval(sql, *args)

    def _count(self, row: ClaimedPush, outcome: str) -> None:
        self.metrics.push_outcomes.labels(self._provider_name(row), row.scenario_type, outcome).inc()


async def requeue_dead(pool: Any, since: dt.datetime | None) -> int:
    async with pool.acquire() as conn:
        return len(await fetch(conn, "requeue_dead_pushes", since=since))
