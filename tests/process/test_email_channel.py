"""The email channel (issue 21): an undeliverable push falls back to email, once, through the
one dispatcher — against real local SMTP servers (aiosmtpd), a real FCM stand-in (no token,
token unregistered) and a real Postgres."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest

from scenario_engine.cli.output.report import format_table
from scenario_engine.config import Settings
from scenario_engine.engine import Engine
from scenario_engine.outcomes.report import ChannelCounts, build_report
from scenario_engine.push.base import PushProvider
from scenario_engine.push.fcm import FcmProvider
from scenario_engine.push.smtp import SmtpProvider, message_id
from scenario_engine.runtime.dispatcher import Dispatcher, DispatchStats
from scenario_engine.runtime.metrics import Metrics
from scenario_engine.scenarios.inactivity import InactivityRule
from scenario_engine.scenarios.rules import Rules
from tests.db import test_push_fcm as fcm
from tests.db.test_push_fcm import FakeGoogle, add_token, fcm_error, token_row
from tests.support.factories import add_mentor
from tests.support.gateway import Gateway
from tests.support.smtp import SENDER, Mailbox, SmtpServer

# The FCM stand-in's fixtures (a real OAuth2 endpoint and FCM v1 endpoint, tests/db/test_push_fcm.py).
private_key = fcm.private_key
google = fcm.google
credentials_file = fcm.credentials_file
provider = fcm.provider

DAY = dt.timedelta(days=1)
UNSUBSCRIBE = "https://platform.example/unsubscribe?mentor={mentor_id}&kind={scenario_type}"


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def settings(**extra: Any) -> Settings:
    base: dict[str, Any] = {
        "push_backoff_base_seconds": 0.05,
        "push_backoff_max_seconds": 0.2,
        "push_max_attempts": 30,
        "push_rate_per_second": 10_000,
        "push_timeout_seconds": 2,
        "email_timeout_seconds": 3,
    }
    return Settings(**(base | extra))


def rules(*fallback: str) -> Rules:
    return Rules(
        daily_cap=3,
        fallback=fallback,
        inactivity=[InactivityRule(name="inactive_21d", threshold_days=21, cooldown_days=7, max_reminders=2)],
    )


@pytest.fixture
async def mail_columns(pool: asyncpg.Pool[Any]) -> None:
    """The platform's optional columns: the engine works with and without them."""
    await pool.execute("ALTER TABLE peer_mentor ADD COLUMN email text, ADD COLUMN locale text")


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    yield server
    server.stop()


def smtp_provider(port: int) -> SmtpProvider:
    return SmtpProvider(
        "127.0.0.1", port, security="none", sender=SENDER, unsubscribe_url=UNSUBSCRIBE, timeout=3
    )


async def mentor(
    pool: asyncpg.Pool[Any], *, email: str | None = None, locale: str | None = None, name: str = "Kari"
) -> uuid.UUID:
    mentor_id = await add_mentor(pool, joined_at=now() - 30 * DAY, name=name)
    if email is not None or locale is not None:
        await pool.execute(
            "UPDATE peer_mentor SET email = $2, locale = $3 WHERE id = $1", mentor_id, email, locale
        )
    return mentor_id


async def sweep(pool: asyncpg.Pool[Any], *fallback: str) -> None:
    await Engine(pool, rules(*fallback)).run_scheduled_evaluation()


async def drain(
    pool: asyncpg.Pool[Any],
    providers: dict[str, PushProvider],
    s: Settings | None = None,
    timeout: float = 30,
) -> DispatchStats:
    s = s or settings()
    total = DispatchStats()
    async with Dispatcher(pool, providers, s, Metrics()) as d:
        with anyio.fail_after(timeout):
            while await pool.fetchval(
                "SELECT count(*) FROM push_notification WHERE status IN ('pending', 'sending')"
            ):
                stats = await d.dispatch_once()
                for k, v in vars(stats).items():
                    setattr(total, k, getattr(total, k) + v)
                if not stats.claimed:
                    await anyio.sleep(0.02)
    return total


async def dispatch_until(
    pool: asyncpg.Pool[Any], providers: dict[str, PushProvider], done: Callable[[DispatchStats], bool]
) -> None:
    """Dispatch batch after batch until ``done`` says so of one."""
    async with Dispatcher(pool, providers, settings(), Metrics()) as d:
        with anyio.fail_after(20):
            while not done(await d.dispatch_once()):
                await anyio.sleep(0.02)


async def the_push(pool: asyncpg.Pool[Any]) -> Any:
    row = await pool.fetchrow("SELECT * FROM push_notification")
    assert row is not None
    return row


def parts(mail: EmailMessage) -> dict[str, str]:
    return {part.get_content_type(): part.get_content() for part in mail.iter_parts()}


async def test_mentor_without_token_gets_exactly_one_email_in_their_locale(
    pool: asyncpg.Pool[Any], mail_columns: None, provider: FcmProvider, smtp: SmtpServer
) -> None:
    who = await mentor(pool, email="kari@example.no", locale="nb-NO", name="Kari <b>Nordmann</b>")
    await sweep(pool, "email")
    stats = await drain(pool, {"push": provider, "email": smtp_provider(smtp.port)})
    assert stats.fell_back == 1 and stats.sent == 1
    [mail] = smtp.mailbox.messages
    assert smtp.mailbox.recipients == ["kari@example.no"]
    push = await the_push(pool)
    assert push["status"] == "sent"
    assert (push["channel"], push["recipient"], push["provider"]) == ("email", "kari@example.no", "smtp")
    assert push["fell_back_from"] == "push" and "no active device token" in push["fallback_reason"]
    assert mail["Subject"] == push["title"]
    assert mail["Message-ID"] == message_id(push["idempotency_key"], SENDER)
    assert mail["Message-ID"].endswith("@mentors.example>")
    link = f"https://platform.example/unsubscribe?mentor={who}&kind=inactivity"
    assert mail["List-Unsubscribe"] == f"<{link}>"
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mail["Content-Language"] == "nb-NO"
    body = parts(mail)
    assert set(body) == {"text/plain", "text/html"}
    assert "Meld deg av" in body["text/plain"] and push["body"] in body["text/plain"]
    assert "Meld deg av" in body["text/html"] and 'lang="nb-NO"' in body["text/html"]
    assert "<b>Nordmann" not in body["text/html"]  # autoescaped: a name is never markup
    assert push["provider_message_id"].startswith(mail["Message-ID"])


async def test_unregistered_token_falls_back_once(
    pool: asyncpg.Pool[Any], mail_columns: None, provider: FcmProvider, google: FakeGoogle, smtp: SmtpServer
) -> None:
    who = await mentor(pool, email="ola@example.org")
    await add_token(pool, who, "tok-gone")
    google.script("tok-gone", (404, fcm_error(404, "NOT_FOUND", "UNREGISTERED"), {}))
    await sweep(pool, "email")
    stats = await drain(pool, {"push": provider, "email": smtp_provider(smtp.port)})
    assert (stats.fell_back, stats.sent) == (1, 1)
    assert len(smtp.mailbox.messages) == 1
    assert not (await token_row(pool, "tok-gone"))["active"]
    push = await the_push(pool)
    assert (push["status"], push["channel"]) == ("sent", "email")
    assert "UNREGISTERED" in push["fallback_reason"]
    # The report: delivery by channel, and the share only email reached.
    report = await build_report(pool, since=now() - DAY, until=now() + DAY, as_of=now())
    assert report.channels == (ChannelCounts("email", sent=1, fell_back=1, sent_after_fallback=1),)
    assert report.only_email_share == 1.0
    assert "Only email reached 100.0 % of the delivered notifications." in format_table(report)
    # A row falls back at most once: the switch is fenced on channel = 'push'.
    assert await pool.fetchval(
        "UPDATE scenario_engine.push_notification SET status = 'sending' WHERE id = $1 RETURNING id",
        push["id"],
    )
    assert (
        await pool.fetchval(
            "UPDATE scenario_engine.push_notification SET channel = 'email' "
            "WHERE id = $1 AND channel = 'push' RETURNING id",
            push["id"],
        )
        is None
    )


async def test_fallback_is_off_by_default(
    pool: asyncpg.Pool[Any], mail_columns: None, provider: FcmProvider, smtp: SmtpServer
) -> None:
    await mentor(pool, email="kari@example.no")
    await sweep(pool)
    stats = await drain(pool, {"push": provider, "email": smtp_provider(smtp.port)})
    assert (stats.failed, stats.fell_back) == (1, 0)
    assert smtp.mailbox.messages == []
    assert await pool.fetchval("SELECT channel FROM push_notification") == "push"


async def test_no_address_known_fails_the_push_and_says_why(
    pool: asyncpg.Pool[Any], provider: FcmProvider, smtp: SmtpServer
) -> None:
    """No peer_mentor.email column at all: the engine works, the push fails as before."""
    await mentor(pool)
    await sweep(pool, "email")
    stats = await drain(pool, {"push": provider, "email": smtp_provider(smtp.port)})
    assert stats.failed == 1
    push = await the_push(pool)
    assert push["status"] == "failed" and push["channel"] == "push"
    assert "no address for the mentor" in push["last_error"]


async def test_refused_recipient_dead_letters_with_the_smtp_reply_and_is_not_retried(
    pool: asyncpg.Pool[Any], mail_columns: None, provider: FcmProvider
) -> None:
    """550 to RCPT TO: the delivery is dead-lettered at once with the server's code and text;
    nothing is retried, and the notification keeps its ledger row."""
    server = SmtpServer(Mailbox(mode="refuse")).start()
    try:
        who = await mentor(pool, email="nobody@example.org")
        await sweep(pool, "email")
        providers: dict[str, PushProvider] = {"push": provider, "email": smtp_provider(server.port)}
        stats = await drain(pool, providers)
        async with Dispatcher(pool, providers, settings(), Metrics()) as d:  # nothing left to retry
            for _ in range(3):
                assert (await d.dispatch_once()).claimed == 0
                await anyio.sleep(0.3)  # past the longest backoff of these settings
    finally:
        server.stop()
    assert (stats.fell_back, stats.dead, stats.failed, stats.retried, stats.sent) == (1, 1, 0, 0, 0)
    push = await the_push(pool)
    assert (push["status"], push["channel"], push["recipient"]) == ("dead", "email", "nobody@example.org")
    assert push["attempts"] == 2 and push["fell_back_from"] == "push"  # the push, then one email
    assert push["last_error"] == (
        "recipient refused: SMTP 550: 5.1.1 <nobody@example.org>: Recipient address rejected: User unknown"
    )
    assert server.mailbox.rcpt_attempts == ["nobody@example.org"]  # refused once, never asked again
    assert server.mailbox.data_started == 0
    ledger = await pool.fetch("SELECT id, mentor_id FROM scenario_notification")
    assert [(r["id"], r["mentor_id"]) for r in ledger] == [(push["notification_id"], who)]
    decision = await pool.fetchval(
        "SELECT outcome FROM scenario_decision WHERE notification_id = $1", push["notification_id"]
    )
    assert decision == "sent"


async def test_temporarily_refused_recipient_is_retried_with_backoff_then_delivered(
    pool: asyncpg.Pool[Any], mail_columns: None, provider: FcmProvider
) -> None:
    """450 to RCPT TO (mailbox busy, greylisting): a retry like any transient failure."""
    server = SmtpServer(Mailbox(temporary_refusals=2)).start()
    try:
        await mentor(pool, email="kari@example.no")
        await sweep(pool, "email")
        providers: dict[str, PushProvider] = {"push": provider, "email": smtp_provider(server.port)}
        await dispatch_until(pool, providers, lambda stats: stats.retried > 0)
        retry = await the_push(pool)
        assert retry["status"] == "pending" and retry["next_attempt_at"] > now()  # backed off
        assert retry["last_error"].startswith("SMTP 450: 4.2.1") and not retry["delivery_uncertain"]
        stats = await drain(pool, providers)
    finally:
        server.stop()
    assert (stats.sent, stats.retried, stats.dead, stats.failed) == (1, 1, 0, 0)
    push = await the_push(pool)
    assert (push["status"], push["channel"], push["attempts"]) == ("sent", "email", 4)
    assert server.mailbox.rcpt_attempts == ["kari@example.no"] * 3
    assert len(server.mailbox.messages) == 1


async def test_connection_dropped_mid_data_is_retried_with_the_same_message_id(
    pool: asyncpg.Pool[Any], mail_columns: None, provider: FcmProvider
) -> None:
    mailbox = Mailbox(mode="drop")
    server = SmtpServer(mailbox).start()
    try:
        await mentor(pool, email="kari@example.no")
        await sweep(pool, "email")
        providers: dict[str, PushProvider] = {"push": provider, "email": smtp_provider(server.port)}
        await dispatch_until(pool, providers, lambda _: mailbox.data_started >= 1)
        retry = await the_push(pool)
        assert retry["status"] == "pending" and retry["delivery_uncertain"]  # may have been delivered
        mailbox.mode = "accept"
        stats = await drain(pool, providers)
    finally:
        server.stop()
    assert stats.sent == 1
    assert len(mailbox.messages) == 1
    assert len(set(mailbox.message_ids)) == 1 and len(mailbox.message_ids) >= 2


async def test_smtp_down_is_retried_with_backoff_then_delivered_once(
    pool: asyncpg.Pool[Any], mail_columns: None, provider: FcmProvider
) -> None:
    server = SmtpServer()  # not started: connection refused
    await mentor(pool, email="kari@example.no")
    await sweep(pool, "email")
    providers: dict[str, PushProvider] = {"push": provider, "email": smtp_provider(server.port)}
    await dispatch_until(pool, providers, lambda stats: stats.retried > 0)  # the push falls back first
    push = await the_push(pool)
    assert push["status"] == "pending" and not push["delivery_uncertain"]  # refused: nothing delivered
    assert "smtp connect" in push["last_error"] and push["next_attempt_at"] > now()
    server.start()
    try:
        assert (await drain(pool, providers)).sent == 1
    finally:
        server.stop()
    assert len(server.mailbox.messages) == 1


RULES_WITH_FALLBACK = """
daily_cap = 3
fallback = ["email"]

[[inactivity]]
name = "inactive_21d"
threshold_days = 21
cooldown_days = 7
max_reminders = 2
"""


async def test_kill9_mid_email_then_restart_sends_at_most_once_more_with_the_same_message_id(
    pool: asyncpg.Pool[Any], mail_columns: None, daemons: Any, tmp_path: Path
) -> None:
    """The real daemon: the push gateway answers 410 (unregistered), the mail server holds DATA;
    kill -9 while it does, restart — the mentor gets the email at most twice, one Message-ID."""
    rules_file = tmp_path / "rules.toml"
    rules_file.write_text(RULES_WITH_FALLBACK)
    gateway = await Gateway(status=410).start()
    mailbox = Mailbox(mode="slow", delay=3.0)
    server = SmtpServer(mailbox).start()
    config: dict[str, Any] = {
        "rules_file": rules_file,
        "push_provider": "webhook",
        "push_webhook_url": gateway.url,
        "email_smtp_host": "127.0.0.1",
        "email_smtp_port": server.port,
        "email_smtp_security": "none",
        "email_from": SENDER,
        "email_timeout_seconds": 2,
        "push_lease_seconds": 1,
        "push_backoff_base_seconds": 0.1,
        "push_backoff_max_seconds": 0.3,
        "dispatch_poll_interval_seconds": 0.2,
        "sweep_interval_seconds": 1,
    }
    try:
        await mentor(pool, email="kari@example.no")
        first = daemons("first", **config)
        with anyio.fail_after(30):
            while mailbox.data_started < 1:
                await anyio.sleep(0.02)
        first.kill()  # SIGKILL while the server holds the message's DATA
        assert await pool.fetchval("SELECT in_flight_at IS NOT NULL FROM push_notification")
        mailbox.mode = "accept"
        daemons("second", **config)
        with anyio.fail_after(40):
            while await pool.fetchval("SELECT status FROM push_notification") != "sent":
                await anyio.sleep(0.1)
        await anyio.sleep(0.5)  # anything sent late would have arrived by now
    finally:
        server.stop()
        await gateway.stop()
    push = await the_push(pool)
    assert (push["channel"], push["delivery_uncertain"]) == ("email", True)
    assert 1 <= len(mailbox.messages) <= 2  # the first DATA may have been kept: at most once more
    assert set(mailbox.message_ids) == {message_id(push["idempotency_key"], SENDER)}
    assert mailbox.data_started == 2
    assert len(gateway.received) == 1  # the push was tried once, the fallback never repeated it
