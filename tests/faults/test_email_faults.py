"""The email channel under faults, against the real daemon: the mail server is down, slow
(longer than the email timeout) or resets the connection mid-DATA. Every push here is
undeliverable (the push gateway answers 410: token unregistered), so every notification falls
back to email; each fault ends with the ledger check every push fault ends with
(tests/support/faults.py), auditing the SMTP server's own record by Message-ID."""

from __future__ import annotations

import functools
import uuid
from pathlib import Path
from typing import Any

import pytest

from scenario_engine.db.connect import create_pool
from tests.faults.test_gateway_faults import wave
from tests.support.daemon import DaemonProcess
from tests.support.faults import alive, assert_ledger, eventually, read_ledger, record
from tests.support.figures import Figures
from tests.support.gateway import Gateway
from tests.support.smtp import SENDER, Mailbox, SmtpServer

pytestmark = [pytest.mark.faults, pytest.mark.acceptance]

RULES = """
daily_cap = 100
fallback = ["email"]
[[certification_expiry]]
name = "cert_expiry"
tiers_days = [7]
"""
WAVE = 20
DAEMON: dict[str, Any] = {
    "push_provider": "webhook",
    "pool_size": 2,
    "push_batch_size": 50,
    "push_concurrency": 8,
    "push_rate_per_second": 10_000,
    "push_timeout_seconds": 0.5,
    "push_max_attempts": 30,
    "push_backoff_base_seconds": 0.1,
    "push_backoff_max_seconds": 0.3,
    "push_lease_seconds": 2,
    "email_smtp_host": "127.0.0.1",
    "email_smtp_security": "none",
    "email_from": SENDER,
    "email_timeout_seconds": 1,
    "email_rate_per_second": 1000,
    "poll_interval_seconds": 0.2,
    "dispatch_poll_interval_seconds": 0.2,
    "sweep_interval_seconds": 3600,
}


async def emails(pool: Any, mentors: list[uuid.UUID]) -> list[Any]:
    return list(
        await pool.fetch(
            "SELECT channel, status, attempts, last_error, delivery_uncertain "
            "FROM scenario_engine.push_notification WHERE mentor_id = ANY($1)",
            mentors,
        )
    )


async def _all_retried(pool: Any, mentors: list[uuid.UUID], error: str) -> bool:
    rows = await emails(pool, mentors)
    return len(rows) == len(mentors) and all(
        r["channel"] == "email" and r["status"] == "pending" and error in (r["last_error"] or "")
        for r in rows
    )


async def _all_sent(pool: Any, mentors: list[uuid.UUID]) -> bool:
    rows = await emails(pool, mentors)
    return len(rows) == len(mentors) and all(r["status"] == "sent" for r in rows)


async def test_mail_server_down_slow_or_resetting_loses_nothing_and_repeats_only_uncertain(
    db_url: str, tmp_path: Path, figures: Figures
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    gateway = await Gateway(status=410).start()
    mailbox = Mailbox()
    server = SmtpServer(mailbox)
    pool = await create_pool(db_url, min_size=1, max_size=4, application_name="fault-test")
    await pool.execute("ALTER TABLE public.peer_mentor ADD COLUMN email text")
    d = DaemonProcess(
        db_url,
        tmp_path,
        "email",
        rules_file=rules,
        push_webhook_url=gateway.url,
        email_smtp_port=server.port,
        **DAEMON,
    )
    d.start()
    try:
        await d.wait_ready(timeout=30)
        for fault, error in (("down", "smtp connect"), ("slow", "no answer"), ("reset", "smtp")):
            figures.fault(f"smtp {fault}")
            if fault == "down":
                server.stop()
            else:
                mailbox.mode, mailbox.delay = ("slow", 2.0) if fault == "slow" else ("drop", 0.0)
                server.start()
            mentors = await wave(pool, WAVE)
            await pool.execute(
                "UPDATE public.peer_mentor SET email = id::text || '@example.org' WHERE id = ANY($1)", mentors
            )
            check = functools.partial(_all_retried, pool, mentors, error)
            await eventually(check, 60, f"{fault}: every email retried", d)
            rows = await emails(pool, mentors)
            assert all(r["delivery_uncertain"] == (fault != "down") for r in rows), rows
            if fault == "down":
                server.start()
            mailbox.mode = "accept"
            await eventually(functools.partial(_all_sent, pool, mentors), 60, f"{fault}: all sent", d)
            server.stop()
            assert alive(d), d.logs()[-3000:]
        assert await d.stop() == 0, d.logs()[-3000:]
        ledger = await read_ledger(pool, None, None, mailbox=mailbox, sender=SENDER)
    finally:
        d.kill()
        server.stop()
        await pool.close()
        await gateway.stop()
    record(figures, ledger)
    figures.notes = {"smtp_data_commands": mailbox.data_started, "emails_kept": len(mailbox.messages)}
    print(f"\nemail faults: {ledger}; {mailbox.data_started} DATA commands")
    assert_ledger(ledger)
    assert ledger.statuses == {"sent": 3 * WAVE}
    assert len(gateway.received) == 3 * WAVE  # each push tried once: a fallback is never undone
