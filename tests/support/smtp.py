"""Real local SMTP servers (aiosmtpd) for the email channel's tests: one that accepts and
keeps every message, one that refuses recipients (for good, or for now), one that drops the
connection mid-DATA, one that answers slowly — and, for "down", a port nobody listens on."""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

# The From of the tests' email channel; its domain names the Message-IDs.
SENDER = "Mentor programme <nudges@mentors.example>"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Mailbox:
    """What an aiosmtpd handler saw; ``mode`` says how it answers."""

    mode: str = "accept"  # accept | refuse | drop | slow
    delay: float = 0.0
    # The next this many RCPT TO are refused for now (450: mailbox busy), whatever the mode.
    temporary_refusals: int = 0
    rcpt_attempts: list[str] = field(default_factory=list)  # every RCPT TO, answered how it may
    messages: list[EmailMessage] = field(default_factory=list)
    recipients: list[str] = field(default_factory=list)
    data_started: int = 0
    message_ids: list[str] = field(default_factory=list)  # of every DATA, kept or dropped
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        with self.lock:
            self.rcpt_attempts.append(address)
            if self.temporary_refusals > 0:
                self.temporary_refusals -= 1
                return f"450 4.2.1 <{address}>: Recipient address rejected: Mailbox busy, try again later"
        if self.mode == "refuse":
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        with self.lock:
            self.data_started += 1
            self.message_ids.append(str(parsed["Message-ID"]))
        if self.mode == "drop":  # the whole message arrived, the answer never does
            server.transport.abort()
            return "250 never seen"
        if self.mode == "slow":
            await asyncio.sleep(self.delay)
        with self.lock:
            self.messages.append(parsed)
            self.recipients += list(envelope.rcpt_tos)
        return "250 2.0.0 Ok: queued"


class SmtpServer:
    """An aiosmtpd server on 127.0.0.1 in its own thread; ``stop`` takes it down."""

    def __init__(self, mailbox: Mailbox | None = None, port: int | None = None):
        self.mailbox = mailbox or Mailbox()
        self.port = port or free_port()
        self.controller: Controller | None = None

    def start(self) -> SmtpServer:
        self.controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None
