"""The ``fcm`` provider: Firebase Cloud Messaging HTTP v1, one request per device token.

Authentication is an OAuth2 access token minted from a service-account JSON by google-auth.
google-auth is synchronous (it uses ``requests``), so the refresh runs in a worker thread;
the token is cached until shortly before it expires and refreshed under a lock, so a burst
of concurrent sends mints one token. A 401 from FCM refreshes the token once and repeats
that one request once.

Outcomes per device token: 2xx delivered; ``UNREGISTERED`` (404) or a token-level
``INVALID_ARGUMENT`` (400) deactivates the token in ``device_token``; 429, 5xx, timeouts and
connection errors are retryable (``Retry-After`` honoured); other 4xx fail. A push is
delivered if at least one device got it, retried if none did but some failure was
transient, and failed otherwise.

FCM has no idempotency header: it does not deduplicate by key. The key travels in ``data``
(and, harmlessly, as an ``Idempotency-Key`` header) so the app can drop a repeat.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import aiohttp
import anyio
import anyio.to_thread
import asyncpg
import google.auth.exceptions
import google.auth.transport.requests
from google.oauth2 import service_account

from scenario_engine.db.queries import bind
from scenario_engine.logs import get_logger
from scenario_engine.push.base import PushMessage, SendResult, classify_http, read_bounded

log = get_logger("scenario_engine.push.fcm")

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"

# Refresh this long before the token's stated expiry (at most half its lifetime).
REFRESH_MARGIN_SECONDS = 300.0
# google-auth reports no expiry when the token endpoint sends no ``expires_in``.
DEFAULT_TOKEN_LIFETIME_SECONDS = 3600.0

# FCM rejects these data keys with INVALID_ARGUMENT — which would otherwise read as a bad
# device token and deactivate a perfectly good one.
RESERVED_DATA_KEYS = frozenset({"from", "notification", "message_type"})
RESERVED_DATA_PREFIXES = ("google", "gcm")


Outcome = Literal["delivered", "invalid", "retry", "failed"]


@dataclass(frozen=True)
class _TokenResult:
    outcome: Outcome
    message_id: str | None = None
    error: str | None = None
    retry_after: float | None = None
    maybe_delivered: bool = False  # see SendResult.maybe_delivered


class _TimeoutRequest(google.auth.transport.requests.Request):
    """google-auth's requests transport with our timeout instead of its default 120 s.

    The ``type: ignore[no-untyped-…]`` comments in this module are for google-auth
    functions that ship without annotations (it has py.typed, but not everywhere).
    """

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._timeout = timeout

    def __call__(  # type: ignore[no-untyped-def]
        self, url, method="GET", body=None, headers=None, timeout=None, **kwargs
    ):
        return super().__call__(  # type: ignore[no-untyped-call]
            url, method=method, body=body, headers=headers, timeout=timeout or self._timeout, **kwargs
        )


def fcm_data(message: PushMessage) -> dict[str, str]:
    """FCM's ``data`` is a string→string map: strings pass through, anything else is JSON."""
    data: dict[str, str] = {}
    for key, value in message.data.items():
        k = str(key)
        if k in RESERVED_DATA_KEYS or k.lower().startswith(RESERVED_DATA_PREFIXES):
            log.warning("fcm_data_key_dropped", key=k, push_id=message.id)
            continue
        data[k] = (
            value
            if isinstance(value, str)
            else json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)
        )
    data["scenario_type"] = message.scenario_type
    data["push_id"] = str(message.id)
    data["idempotency_key"] = message.idempotency_key
    return data


def fcm_message(message: PushMessage, device_token: str) -> dict[str, Any]:
    return {
        "message": {
            "token": device_token,
            "notification": {"title": message.title, "body": message.body},
            "data": fcm_data(message),
        }
    }


def _error_codes(text: str) -> tuple[set[str], list[str] | None]:
    """The FCM error's status and errorCodes, and the BadRequest field violations (if any)."""
    try:
        error = json.loads(text).get("error")
    except (ValueError, AttributeError):
        return set(), None
    if not isinstance(error, dict):
        return set(), None
    codes: set[str] = set()
    if isinstance(error.get("status"), str):
        codes.add(error["status"])
    fields: list[str] | None = None
    details = error.get("details")
    for detail in details if isinstance(details, list) else []:
        if not isinstance(detail, dict):
            continue
        if isinstance(detail.get("errorCode"), str):
            codes.add(detail["errorCode"])
        if detail.get("@type") == BAD_REQUEST_TYPE and isinstance(detail.get("fieldViolations"), list):
            fields = (fields or []) + [
                str(v.get("field", "")) for v in detail["fieldViolations"] if isinstance(v, dict)
            ]
    return codes, fields


def classify_fcm(status: int, text: str, retry_after: str | None) -> _TokenResult:
    if 200 <= status < 300:
        try:
            name = json.loads(text).get("name")
        except (ValueError, AttributeError):
            name = None
        return _TokenResult("delivered", message_id=str(name) if name is not None else None)
    codes, fields = _error_codes(text)
    if status in (400, 404) and "UNREGISTERED" in codes:
        return _TokenResult("invalid", error=f"HTTP {status} UNREGISTERED")
    # A BadRequest that names fields other than the token means our payload was wrong,
    # not the device token: fail the push, keep the token.
    token_at_fault = fields is None or any(f.startswith("message.token") for f in fields)
    if status == 400 and "INVALID_ARGUMENT" in codes and token_at_fault:
        return _TokenResult("invalid", error=f"HTTP {status} INVALID_ARGUMENT")
    problem = classify_http(status, text, retry_after)
    assert problem is not None  # not 2xx
    outcome: Outcome = "retry" if problem.kind == "retry" else "failed"
    return _TokenResult(outcome, error=problem.error, retry_after=problem.retry_after)


class FcmProvider:
    name = "fcm"

    def __init__(
        self,
        project_id: str,
        credentials_file: Path,
        pool: asyncpg.Pool[Any],
        *,
        base_url: str = "https://fcm.googleapis.com",
        timeout: float = 10,
    ) -> None:
        self.project_id = project_id
        self.pool = pool
        self.url = f"{base_url.rstrip('/')}/v1/projects/{project_id}/messages:send"
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        # Reads and parses the key now: a missing or malformed file fails at startup.
        self._credentials = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
            str(credentials_file), scopes=[SCOPE]
        )
        self._request = _TimeoutRequest(timeout)
        self._lock = anyio.Lock()
        self._token: str | None = None
        self._token_deadline = 0.0  # time.monotonic() after which the token is refreshed

    # --- access token -------------------------------------------------------------------

    def _refresh_blocking(self) -> tuple[str, float]:
        """Mint a token (in a worker thread); returns it and how long to keep using it."""
        self._credentials.refresh(self._request)
        token = self._credentials.token
        if not isinstance(token, str) or not token:
            raise google.auth.exceptions.RefreshError(  # type: ignore[no-untyped-call]
                "token endpoint returned no access token"
            )
        expiry: dt.datetime | None = self._credentials.expiry  # naive UTC, as google-auth keeps it
        if expiry is None:
            lifetime = DEFAULT_TOKEN_LIFETIME_SECONDS
        else:
            now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
            lifetime = max(0.0, (expiry - now).total_seconds())
        return token, lifetime - min(REFRESH_MARGIN_SECONDS, lifetime / 2)

    async def _access_token(self, *, rejected: str | None = None) -> str:
        """The cached token, refreshed if it is near expiry or is the one FCM just rejected."""
        async with self._lock:
            if (
                self._token is not None
                and self._token != rejected
                and time.monotonic() < self._token_deadline
            ):
                return self._token
            started = time.monotonic()
            token, keep_for = await anyio.to_thread.run_sync(self._refresh_blocking)
            self._token, self._token_deadline = token, started + keep_for
            log.debug("fcm_token_refreshed", valid_for_seconds=round(keep_for))
            return token

    # --- sending --------------------------------------------------------------------------

    async def _post(
        self, session: aiohttp.ClientSession, body: bytes, message: PushMessage, access_token: str
    ) -> tuple[int, str, str | None] | _TokenResult:
        headers = {
            "Authorization": f"Bearer {access_token}",
            "Content-Type": "application/json; charset=UTF-8",
            "Idempotency-Key": message.idempotency_key,
        }
        try:
            async with session.post(
                self.url, data=body, headers=headers, timeout=self.timeout, allow_redirects=False
            ) as resp:
                return resp.status, await read_bounded(resp), resp.headers.get("Retry-After")
        except TimeoutError:
            return _TokenResult("retry", error="timeout", maybe_delivered=True)
        except aiohttp.ClientConnectorError as exc:  # never connected: FCM has nothing
            return _TokenResult("retry", error=f"connection error: {exc!r}")
        except aiohttp.ClientError as exc:
            return _TokenResult("retry", error=f"connection error: {exc!r}", maybe_delivered=True)

    async def _send_one(
        self, session: aiohttp.ClientSession, message: PushMessage, device_token: str, access_token: str
    ) -> _TokenResult:
        body = json.dumps(fcm_message(message, device_token), separators=(",", ":")).encode()
        response = await self._post(session, body, message, access_token)
        if isinstance(response, tuple) and response[0] == 401:
            try:
                access_token = await self._access_token(rejected=access_token)
            except google.auth.exceptions.GoogleAuthError as exc:
                return _TokenResult("retry", error=f"fcm auth: {exc}")
            response = await self._post(session, body, message, access_token)
        if isinstance(response, _TokenResult):
            return response
        return classify_fcm(*response)

    async def send(self, message: PushMessage, session: aiohttp.ClientSession) -> SendResult:
        sql, args = bind("fcm_device_tokens", {"mentor_id": message.mentor_id})
        tokens: list[str] = [r["token"] for r in await self.pool.fetch(sql, *args)]
        if not tokens:
            return SendResult.failed("no active device token", unreachable=True)
        try:
            access_token = await self._access_token()
        except google.auth.exceptions.GoogleAuthError as exc:
            # A credentials problem is the provider's, not the message's: keep the push.
            log.warning("fcm_auth_failed", error=str(exc), push_id=message.id)
            return SendResult.retry(f"fcm auth: {exc}")
        results = await asyncio.gather(
            *(self._send_one(session, message, token, access_token) for token in tokens)
        )
        invalid = [(t, r) for t, r in zip(tokens, results, strict=True) if r.outcome == "invalid"]
        if invalid:
            await self._deactivate(message, invalid)
        return _combine(results, tuple(t for t, _ in invalid))

    async def _deactivate(self, message: PushMessage, invalid: list[tuple[str, _TokenResult]]) -> None:
        try:
            bound = [bind("fcm_deactivate_token", {"token": t, "error": r.error}) for t, r in invalid]
            await self.pool.executemany(bound[0][0], [args for _, args in bound])
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            # The send already happened; report it truthfully. The token is found invalid
            # again on the next push and deactivated then.
            log.warning("fcm_token_deactivation_failed", error=repr(exc), push_id=message.id)
            return
        log.info(
            "fcm_tokens_deactivated",
            push_id=message.id,
            mentor_id=str(message.mentor_id),
            count=len(invalid),
            reasons=sorted({r.error or "" for _, r in invalid}),
        )

    async def close(self) -> None:
        self._request.session.close()


def _combine(results: list[_TokenResult], invalid_tokens: tuple[str, ...]) -> SendResult:
    delivered = [r for r in results if r.outcome == "delivered"]
    if delivered:
        ids = ",".join(r.message_id for r in delivered if r.message_id) or None
        return SendResult("delivered", provider_message_id=ids, invalid_tokens=invalid_tokens)
    retry = [r for r in results if r.outcome == "retry"]
    errors = "; ".join(sorted({r.error or r.outcome for r in results}))[:500]
    if retry:
        waits = [r.retry_after for r in retry if r.retry_after is not None]
        return SendResult(
            "retry",
            error=errors,
            retry_after=max(waits) if waits else None,
            invalid_tokens=invalid_tokens,
            maybe_delivered=any(r.maybe_delivered for r in retry),
        )
    if len(invalid_tokens) == len(results):
        errors = f"all device tokens invalid ({errors})"
        return SendResult("failed", error=errors, invalid_tokens=invalid_tokens, unreachable=True)
    return SendResult("failed", error=errors, invalid_tokens=invalid_tokens)
