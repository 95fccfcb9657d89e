"""The ``webhook`` provider: POST JSON to a URL (e.g. the platform's own push function).

Authentication is a bearer token, an HMAC-SHA256 signature, or both. The signature covers
``"{timestamp}.{body}"`` so a captured request cannot be replayed later with a new time;
receivers verify ``X-Scenario-Signature: sha256=<hex>`` against ``X-Scenario-Timestamp``.
``Idempotency-Key`` is the notification's dedup key: a push retried after a crash carries
the same key, so the receiver can drop the repeat. ``User-Agent: scenario-engine/VERSION``
names the sender and its version.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import aiohttp

from scenario_engine.push.base import PushMessage, SendResult, classify_http, read_bounded
from scenario_engine.version import USER_AGENT


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def payload(message: PushMessage) -> dict[str, object]:
    return {
        "id": message.id,
        "mentor_id": str(message.mentor_id),
        "scenario_type": message.scenario_type,
        "title": message.title,
        "body": message.body,
        "data": message.data,
        "idempotency_key": message.idempotency_key,
    }


class WebhookProvider:
    name = "webhook"

    def __init__(
        self, url: str, *, token: str | None = None, hmac_secret: str | None = None, timeout: float = 10
    ):
        self.url = url
        self.token = token
        self.hmac_secret = hmac_secret
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    async def send(self, message: PushMessage, session: aiohttp.ClientSession) -> SendResult:
        body = json.dumps(payload(message), separators=(",", ":"), sort_keys=True).encode()
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": message.idempotency_key,
            "User-Agent": USER_AGENT,  # scenario-engine/VERSION: the receiver's logs say who called
        }
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if self.hmac_secret:
            ts = str(int(time.time()))
            headers["X-Scenario-Timestamp"] = ts
            headers["X-Scenario-Signature"] = sign(self.hmac_secret, ts, body)
        try:
            async with session.post(
                self.url, data=body, headers=headers, timeout=self.timeout, allow_redirects=False
            ) as resp:
                text = await read_bounded(resp)
                problem = classify_http(resp.status, text, resp.headers.get("Retry-After"))
                if problem is not None:
                    return problem
                message_id = resp.headers.get("X-Message-Id")
                if message_id is None:
                    try:
                        message_id = str(json.loads(text).get("id")) if text else None
                    except (ValueError, AttributeError):
                        message_id = None
                return SendResult.delivered(message_id)
        except TimeoutError:
            return SendResult.retry("timeout", maybe_delivered=True)
        except aiohttp.ClientConnectorError as exc:  # never connected: the gateway has nothing
            return SendResult.retry(f"connection error: {exc!r}")
        except aiohttp.ClientError as exc:
            return SendResult.retry(f"connection error: {exc!r}", maybe_delivered=True)

    async def close(self) -> None:
        return None
