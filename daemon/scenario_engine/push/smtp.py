"""The ``smtp`` provider: the email channel (docs/CHANNELS.md).

One message per outbox row, sent with aiosmtplib (STARTTLS, implicit TLS, or plain for a
local relay), multipart plain text and HTML rendered by Jinja2 from the row's already
rendered title and body (the rule's message template, templates.py) — the HTML part
autoescaped, so a display name can never inject markup. Templates are looked up per locale
first (``email/<locale>/notification.html``, then ``email/<language>/…``, then
``email/notification.html``), so per-locale wording slots in without a code change.

``Message-ID`` is derived from the idempotency key: a message sent again after a crash
carries the same id, so receiving systems (and the mentor's mail client) can see the repeat.
``List-Unsubscribe`` with ``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` (RFC 8058)
points at the platform's unsubscribe URL when one is configured.

The answer is classified like an HTTP gateway's: a 4xx reply or a connection that never
got to DATA is a retry with nothing delivered; a 5xx reply is a permanent failure that keeps
the server's reply — but a 5xx to RCPT TO (the recipient refused: "550 user unknown") is
dead-lettered with that reply, so that an operator sees it among the dead letters and can
requeue it once the address is fixed (a 4xx to RCPT TO is retried like any 4xx); a connection
lost or a timeout once DATA has begun may have delivered the message (``maybe_delivered``)
and is retried with the same Message-ID.
"""

from __future__ import annotations

import hashlib
import ssl
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, parseaddr

import aiohttp
import aiosmtplib

from scenario_engine.push.base import PushMessage, SendResult
from scenario_engine.push.templating import localised


def render_parts(message: PushMessage, unsubscribe_url: str | None) -> tuple[str, str]:
    """The plain text and the HTML of one message, in the mentor's locale when a template has it."""
    values = {
        "title": message.title,
        "body": message.body,
        "locale": message.locale,
        "unsubscribe_url": unsubscribe_url,
        "scenario_type": message.scenario_type,
    }
    text = localised("email", "notification.txt", message.locale).render(values)
    html = localised("email", "notification.html", message.locale).render(values)
    return text, html


def message_id(idempotency_key: str, sender: str) -> str:
    """A Message-ID that is a function of the idempotency key alone (and the sender's domain)."""
    domain = parseaddr(sender)[1].rpartition("@")[2] or "scenario-engine.invalid"
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:40]
    return f"<{digest}@{domain}>"


def unsubscribe_link(template: str | None, message: PushMessage) -> str | None:
    if not template:
        return None
    notification_id = message.data.get("notification_id", "")
    return template.format(
        mentor_id=message.mentor_id, scenario_type=message.scenario_type, notification_id=notification_id
    )


def build_email(message: PushMessage, sender: str, unsubscribe_template: str | None) -> EmailMessage:
    assert message.recipient is not None
    link = unsubscribe_link(unsubscribe_template, message)
    text, html = render_parts(message, link)
    mail = EmailMessage()
    mail["From"] = sender
    name, addr = parseaddr(message.recipient)
    mail["To"] = str(Address(display_name=name, addr_spec=addr)) if name else addr
    mail["Subject"] = message.title
    mail["Date"] = formatdate(localtime=False, usegmt=True)
    mail["Message-ID"] = message_id(message.idempotency_key, sender)
    mail["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to a nudge
    if link:
        mail["List-Unsubscribe"] = f"<{link}>"
        mail["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    mail.set_content(text)
    mail.add_alternative(html, subtype="html")
    if message.locale:  # after the content: set_content drops every Content-* header
        mail["Content-Language"] = message.locale
    return mail


def _reply(exc: aiosmtplib.SMTPResponseException) -> str:
    return f"SMTP {exc.code}: {exc.message}"[:500]


class SmtpProvider:
    name = "smtp"

    def __init__(
        self,
        host: str,
        port: int,
        *,
        security: str = "starttls",
        username: str | None = None,
        password: str | None = None,
        sender: str,
        unsubscribe_url: str | None = None,
        timeout: float = 30.0,
        tls_context: ssl.SSLContext | None = None,
    ):
        self.host = host
        self.port = port
        self.security = security
        self.username = username
        self.password = password
        self.sender = sender
        self.unsubscribe_url = unsubscribe_url
        self.timeout = timeout
        self.tls_context = tls_context

    async def send(self, message: PushMessage, session: aiohttp.ClientSession) -> SendResult:
        if not message.recipient:
            return SendResult.failed("no email address", unreachable=True)
        mail = build_email(message, self.sender, self.unsubscribe_url)
        envelope_from = parseaddr(self.sender)[1]
        recipient = parseaddr(message.recipient)[1]
        client = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            use_tls=self.security == "tls",
            start_tls=self.security == "starttls",
            timeout=self.timeout,
            tls_context=self.tls_context,
        )
        in_data = False  # from here on, a lost connection may have delivered the message
        try:
            await client.connect()
            if self.username:
                await client.login(self.username, self.password or "")
            await client.mail(envelope_from)
            await client.rcpt(recipient)
            in_data = True
            response = await client.data(mail.as_bytes())
            return SendResult.delivered(str(mail["Message-ID"]) + (f" {response.message}"[:200]))
        except aiosmtplib.SMTPRecipientRefused as exc:  # RCPT TO refused: nothing delivered
            if 400 <= exc.code < 500:  # temporary (greylisting, mailbox busy): retried with backoff
                return SendResult.retry(_reply(exc))
            return SendResult.dead(f"recipient refused: {_reply(exc)}")
        except aiosmtplib.SMTPResponseException as exc:  # the server answered: trust its code
            if in_data and not 400 <= exc.code < 600:
                return SendResult.retry(_reply(exc), maybe_delivered=True)
            if 400 <= exc.code < 500:
                return SendResult.retry(_reply(exc))
            return SendResult.failed(_reply(exc))
        except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPConnectTimeoutError) as exc:
            return SendResult.retry(f"smtp connect: {exc}")
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            return SendResult.retry(f"smtp: {exc!r}"[:500], maybe_delivered=in_data)
        finally:
            if client.is_connected:
                try:
                    await client.quit()
                except (aiosmtplib.SMTPException, OSError, TimeoutError):
                    client.close()

    async def close(self) -> None:
        return None
