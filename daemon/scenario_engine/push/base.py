"""The push provider protocol: one small interface, three implementations.

A provider turns one outbox row into one delivery attempt and says how it went; the
dispatcher owns retries, backoff, dead letters and rate limits, so providers stay thin.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import aiohttp

# "dead": a permanent refusal that an operator may want to act on and requeue (a mail server
# refusing the recipient, 5xx to RCPT TO): dead-lettered at once with the server's reply, never
# retried on its own.
Kind = Literal["delivered", "retry", "failed", "dead"]


@dataclass(frozen=True)
class PushMessage:
    id: int
    mentor_id: uuid.UUID
    scenario_type: str
    title: str
    body: str
    data: dict[str, Any]
    idempotency_key: str
    attempts: int
    # The channel this delivery goes by, and its recipient ('email': the address; 'push': None,
    # the provider finds the device tokens). locale: the mentor's, when the platform has one.
    channel: str = "push"
    recipient: str | None = None
    locale: str | None = None


@dataclass(frozen=True)
class SendResult:
    kind: Kind
    provider_message_id: str | None = None
    error: str | None = None
    retry_after: float | None = None  # seconds the gateway asked us to wait (429)
    invalid_tokens: tuple[str, ...] = field(default=())
    # A retry whose request may have reached the gateway (no answer: a timeout, a connection
    # lost mid-request). An HTTP error status or a refused connection is a definite "not
    # delivered". The dispatcher keeps this on the push, so that a later re-check can never
    # record as "cancelled" a push the receiver may already have.
    maybe_delivered: bool = False
    # A definite failure because the recipient cannot be reached by this channel at all (no
    # active device token, every token unregistered): the dispatcher may fall back to another
    # channel (docs/CHANNELS.md). Only meaningful with kind "failed".
    unreachable: bool = False

    @classmethod
    def delivered(cls, message_id: str | None) -> SendResult:
        return cls("delivered", provider_message_id=message_id)

    @classmethod
    def retry(
        cls, error: str, retry_after: float | None = None, *, maybe_delivered: bool = False
    ) -> SendResult:
        return cls("retry", error=error, retry_after=retry_after, maybe_delivered=maybe_delivered)

    @classmethod
    def failed(cls, error: str, *, unreachable: bool = False) -> SendResult:
        return cls("failed", error=error, unreachable=unreachable)

    @classmethod
    def dead(cls, error: str) -> SendResult:
        return cls("dead", error=error)


class PushProvider(Protocol):
    name: str

    async def send(self, message: PushMessage, session: aiohttp.ClientSession) -> SendResult: ...

    async def close(self) -> None: ...


# What a gateway's answer may cost us: its body is read up to this much (an error detail keeps
# 300 characters of it), and a Retry-After is believed up to a week — a hostile or broken
# gateway must not make the dispatcher hold a gigabyte or compute a date past year 9999.
MAX_RESPONSE_BYTES = 64 * 1024
MAX_RETRY_AFTER_SECONDS = 7 * 86400.0


async def read_bounded(resp: aiohttp.ClientResponse) -> str:
    """The first MAX_RESPONSE_BYTES of a response body, decoded leniently."""
    data = await resp.content.read(MAX_RESPONSE_BYTES)
    return data.decode(resp.get_encoding() if resp.charset else "utf-8", errors="replace")


def parse_retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Retry-After is either delta-seconds or an HTTP date (RFC 9110 §10.2.3); capped."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER_SECONDS)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    wait = (when - (now or dt.datetime.now(dt.UTC))).total_seconds()
    return min(max(0.0, wait), MAX_RETRY_AFTER_SECONDS)


def classify_http(status: int, body: str, retry_after: str | None) -> SendResult | None:
    """The shared retry policy for HTTP gateways; None means success."""
    if 200 <= status < 300:
        return None
    detail = f"HTTP {status}: {body[:300]}".strip()
    if status == 429:
        return SendResult.retry(detail, parse_retry_after(retry_after))
    if status >= 500 or status == 408:
        return SendResult.retry(detail, parse_retry_after(retry_after))
    # 410 Gone: the receiver has no device for this mentor (token unregistered); another
    # channel may still reach them.
    return SendResult.failed(detail, unreachable=status == 410)
