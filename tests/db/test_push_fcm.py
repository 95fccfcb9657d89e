"""The FCM provider against a local stand-in for Google: a real OAuth2 token endpoint that
verifies the service account's signed JWT assertion, and an FCM v1 endpoint that records
requests and answers as scripted. Real HTTP, real google-auth, real Postgres."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from scenario_engine.push.base import PushMessage
from scenario_engine.push.fcm import FcmProvider
from tests.support.factories import add_mentor
from tests.support.push_fcm import PROJECT

CLIENT_EMAIL = "engine@mentor-app-test.iam.gserviceaccount.com"
KEY_ID = "key-0123456789abcdef"
SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
# google-auth signs the assertion for Google's token endpoint whatever token_uri says.
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"

Response = tuple[int, dict[str, Any] | None, dict[str, str]]


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def fcm_error(http: int, status: str, error_code: str | None = None, **extra: Any) -> dict[str, Any]:
    details: list[dict[str, Any]] = []
    if error_code:
        details.append(
            {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": error_code}
        )
    if extra.get("field_violations"):
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": f, "description": "bad"} for f in extra["field_violations"]],
            }
        )
    return {"error": {"code": http, "message": status.lower(), "status": status, "details": details}}


@dataclass
class FcmRequest:
    path: str
    project: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class FakeGoogle:
    public_key: rsa.RSAPublicKey
    base_url: str = ""
    expires_in: int = 3600
    token_endpoint_status: int = 200
    token_requests: list[dict[str, Any]] = field(default_factory=list)  # decoded JWT payloads
    auth_problems: list[str] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)
    revoked: set[str] = field(default_factory=set)
    fcm_requests: list[FcmRequest] = field(default_factory=list)
    scripted: dict[str, list[Response]] = field(default_factory=dict)  # device token → answers
    fcm_delay: float = 0.0

    @property
    def token_uri(self) -> str:
        return f"{self.base_url}/token"

    def script(self, device_token: str, *responses: Response) -> None:
        self.scripted.setdefault(device_token, []).extend(responses)

    def _verify_assertion(self, assertion: str) -> dict[str, Any]:
        header_b64, payload_b64, signature_b64 = assertion.split(".")
        header = json.loads(_b64decode(header_b64))
        payload: dict[str, Any] = json.loads(_b64decode(payload_b64))
        if header.get("alg") != "RS256" or header.get("kid") != KEY_ID:
            self.auth_problems.append(f"bad JWT header {header}")
        try:
            self.public_key.verify(
                _b64decode(signature_b64),
                f"{header_b64}.{payload_b64}".encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except InvalidSignature:
            self.auth_problems.append("JWT signature does not verify")
        if payload.get("scope") != SCOPE:
            self.auth_problems.append(f"scope {payload.get('scope')!r}")
        if payload.get("aud") != GOOGLE_TOKEN_AUDIENCE:
            self.auth_problems.append(f"aud {payload.get('aud')!r}")
        if payload.get("iss") != CLIENT_EMAIL:
            self.auth_problems.append(f"iss {payload.get('iss')!r}")
        if payload.get("exp", 0) - payload.get("iat", 0) != 3600:
            self.auth_problems.append(f"lifetime {payload.get('exp')} - {payload.get('iat')}")
        return payload

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if request.content_type != "application/x-www-form-urlencoded":
            self.auth_problems.append(f"content type {request.content_type}")
        if form.get("grant_type") != JWT_BEARER:
            self.auth_problems.append(f"grant_type {form.get('grant_type')!r}")
        assertion = form.get("assertion")
        if not isinstance(assertion, str):
            self.auth_problems.append("no assertion")
            return web.json_response({"error": "invalid_request"}, status=400)
        self.token_requests.append(self._verify_assertion(assertion))
        if self.token_endpoint_status != 200:
            return web.json_response(
                {"error": "invalid_grant", "error_description": "Invalid JWT Signature."},
                status=self.token_endpoint_status,
            )
        access_token = f"ya29.test-{len(self.issued) + 1}-{uuid.uuid4().hex[:8]}"
        self.issued.append(access_token)
        return web.json_response(
            {"access_token": access_token, "expires_in": self.expires_in, "token_type": "Bearer"}
        )

    async def send(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.fcm_requests.append(
            FcmRequest(request.path, request.match_info["project"], dict(request.headers), body)
        )
        if self.fcm_delay:
            await asyncio.sleep(self.fcm_delay)
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ")
        if not auth.startswith("Bearer ") or token not in self.issued or token in self.revoked:
            return web.json_response(fcm_error(401, "UNAUTHENTICATED"), status=401)
        queue = self.scripted.get(body["message"]["token"])
        if queue:
            status, payload, headers = queue.pop(0)
            return web.json_response(payload, status=status, headers=headers)
        return web.json_response({"name": f"projects/{PROJECT}/messages/0:{len(self.fcm_requests)}"})


@pytest.fixture(scope="session")
def private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
async def google(private_key: rsa.RSAPrivateKey) -> AsyncIterator[FakeGoogle]:
    fake = FakeGoogle(public_key=private_key.public_key())
    app = web.Application()
    app.router.add_post("/token", fake.token)
    app.router.add_post("/v1/projects/{project}/messages:send", fake.send)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    fake.base_url = str(server.make_url("")).rstrip("/")
    yield fake
    await server.close()
    assert fake.auth_problems == []


@pytest.fixture
def credentials_file(tmp_path: Path, private_key: rsa.RSAPrivateKey, google: FakeGoogle) -> Path:
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    path = tmp_path / "service-account.json"
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": PROJECT,
                "private_key_id": KEY_ID,
                "private_key": pem,
                "client_email": CLIENT_EMAIL,
                "client_id": "1234567890",
                "auth_uri": "https://accounts.google.com/o/oauth2/auth",
                "token_uri": google.token_uri,
            }
        )
    )
    return path


@pytest.fixture
async def provider(
    credentials_file: Path, pool: asyncpg.Pool[Any], google: FakeGoogle
) -> AsyncIterator[FcmProvider]:
    p = FcmProvider(PROJECT, credentials_file, pool, base_url=google.base_url, timeout=5)
    yield p
    await p.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def add_token(
    pool: asyncpg.Pool[Any], mentor_id: uuid.UUID, token: str, *, active: bool = True
) -> None:
    await pool.execute(
        "INSERT INTO device_token (mentor_id, token, active) VALUES ($1, $2, $3)", mentor_id, token, active
    )


async def token_row(pool: asyncpg.Pool[Any], token: str) -> asyncpg.Record:
    row: asyncpg.Record | None = await pool.fetchrow(
        "SELECT active, deactivated_at, last_error FROM device_token WHERE token = $1", token
    )
    assert row is not None
    return row


def push(mentor_id: uuid.UUID, push_id: int = 42, **data: Any) -> PushMessage:
    return PushMessage(
        id=push_id,
        mentor_id=mentor_id,
        scenario_type="milestone",
        title="50 sessions!",
        body="You reached 50 sessions this year.",
        data=data or {"threshold": 50},
        idempotency_key=f"milestone:{mentor_id}:sessions_year:50:{push_id}",
        attempts=0,
    )


async def mentor_with_tokens(pool: asyncpg.Pool[Any], *tokens: str) -> uuid.UUID:
    mentor_id = await add_mentor(pool)
    for t in tokens:
        await add_token(pool, mentor_id, t)
    return mentor_id


async def test_happy_path_sends_fcm_v1_message(
    provider: FcmProvider, google: FakeGoogle, pool: asyncpg.Pool[Any], session: aiohttp.ClientSession
) -> None:
    mentor_id = await mentor_with_tokens(pool, "device-A")
    message = push(
        mentor_id,
        threshold=50,
        metric="sessions",
        label="Gold",
        ok=True,
        ratio=0.5,
        nested={"b": [1, 2], "a": None},
    )

    result = await provider.send(message, session)

    assert result.kind == "delivered"
    assert result.provider_message_id == f"projects/{PROJECT}/messages/0:1"
    assert result.invalid_tokens == ()
    assert len(google.token_requests) == 1 and len(google.issued) == 1
    assert len(google.fcm_requests) == 1
    req = google.fcm_requests[0]
    assert req.path == f"/v1/projects/{PROJECT}/messages:send"
    assert req.project == PROJECT
    assert req.headers["Authorization"] == f"Bearer {google.issued[0]}"
    assert req.headers["Content-Type"].startswith("application/json")
    assert req.headers["Idempotency-Key"] == message.idempotency_key
    assert req.body == {
        "message": {
            "token": "device-A",
            "notification": {"title": "50 sessions!", "body": "You reached 50 sessions this year."},
            "data": {
                "threshold": "50",
                "metric": "sessions",
                "label": "Gold",
                "ok": "true",
                "ratio": "0.5",
                "nested": '{"a":null,"b":[1,2]}',
                "scenario_type": "milestone",
                "push_id": "42",
                "idempotency_key": message.idempotency_key,
            },
        }
    }
    assert all(isinstance(v, str) for v in req.body["message"]["data"].values())
    assert (await token_row(pool, "device-A"))["active"] is True


async def test_reserved_data_keys_are_not_sent(
    provider: FcmProvider, google: FakeGoogle, pool: asyncpg.Pool[Any], session: aiohttp.ClientSession
) -> None:
    """FCM answers INVALID_ARGUMENT for these keys, which would look like a bad token."""
    mentor_id = await mentor_with_tokens(pool, "device-A")
    reserved: dict[str, Any] = {"from": "x", "google.c.a": "y", "gcm.n": "z", "message_type": "m", "kept": 1}
    message = push(mentor_id, **reserved)

    assert (await provider.send(message, session)).kind == "delivered"
    data = google.fcm_requests[0].body["message"]["data"]
    assert set(data) == {"kept", "scenario_type", "push_id", "idempotency_key"}


async def test_one_request_per_active_token_and_ids_joined(
    provider: FcmProvider, google: FakeGoogle, pool: asyncpg.Pool[Any], session: aiohttp.ClientSession
) -> None:
    mentor_id = await mentor_with_tokens(pool, "device-A", "device-B")
    await add_token(pool, mentor_id, "device-old", active=False)
    other = await mentor_with_tokens(pool, "someone-else")
    assert other != mentor_id

    result = await provider.send(push(mentor_id), session)

    assert result.kind == "delivered"
    assert sorted(r.body["message"]["token"] for r in google.fcm_requests) == ["device-A", "device-B"]
    assert result.provider_message_id is not None
    assert sorted(result.provider_message_id.split(",")) == [
        f"projects/{PROJECT}/messages/0:1",
        f"projects/{PROJECT}/messages/0:2",
    ]


async def test_access_token_is_cached_across_sends(
    provider: FcmProvider, google: FakeGoogle, pool: asyncpg.Pool[Any], session: aiohttp.ClientSession
) -> None:
    mentor_id = await mentor_with_tokens(pool, "device-A")

    first = await provider.send(push(mentor_id, 1), session)
    second = await provider.send(push(mentor_id, 2), session)

    assert first.kind == second.kind == "delivered"
    assert len(google.token_requests) == 1
    assert [r.headers["Authorization"] for r in google.fcm_requests] == [f"Bearer {google.issued[0]}"] * 2


async def test_concurrent_sends_mint_one_token(
    provider: FcmProvider, google: FakeGoogle, pool: asyncpg.Pool[Any], session: aiohttp.ClientSession
) -> None:
    mentors = [await mentor_with_tokens(pool, f"device-{i}") for i in range(6)]

    results = await asyncio.gather(*(provider.send(push(m, i), session) for i, m in enumerate(mentors)))

    assert [r.kind for r in results] == ["delivered"] * 6
    assert len(google.token_requests) == 1
    assert len(google.fcm_requests) == 6


async def test_token_is_refreshed_shortly_before_expiry(
    provider: FcmProvider, google: FakeGoogle, pool: asyncpg.Pool[Any], session: aiohttp.ClientSession
) -> None:
    google.expires_in = 1  # kept for half its lifetime at most
    mentor_id = await mentor_with_tokens(pool, "device-A")

    await provider.send(push(mentor_id, 1), session)
    await asyncio.sleep(0.7)
    result = await provider.send(push(mentor_id, 2), session)

    assert result.kind == "delivered"
    assert len(google.token_requests) == 2
    assert [r.headers["Authorization"] for r in google.fcm_requests] == [f"Bearer {t}" for t in google.issued]


async def test_unregistered_only_token_is_deactivated_and_push_fails(
    provider: FcmProvider, google: FakeGoogle, pool: asyncpg.Pool[Any], session: aiohttp.ClientSession
) -> None:
    mentor_id = await mentor_with_tokens(pool, "device-gone")
    google.script("device-gone", (404, fcm_error(404, "NOT_FOUND", "UNREGISTERED"), {}))

    result = await provider.send(push(mentor_id), session)

    assert result.kind == "failed"
    assert result.invalid_tokens == ("device-gone",)
    assert result.error is not None and "all device tokens invalid" in result.error
    row = await token_row(pool, "device-gone")
    assert row["active"] is False
    assert row["deactivated_at"] is not None
    assert "UNREGISTERED" in row["last_error"]

    # The next push finds no active token and does not call FCM.
    again = await provider.send(push(mentor_id, 43), session)
    assert again.kind == "failed" and again.error == "no active device token"
    assert len(google.fcm_requests) == 1


async def test_good_and_invalid_token_delivers_and_deactivates_the_invalid_one(
    provider: FcmProvider, google: FakeGoogle, pool: asyncpg.Pool[Any], session: aiohttp.ClientSession
) -> None:
    mentor_id = await mentor_with_tokens(pool, "device-good", "device-bad")
    google.script("device-bad", (400, fcm_error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT"), {}))

    result = await provider.send(push(mentor_id), session)

    assert result.kind == "delivered"
    assert result.provider_message_id is not None and result.provider_message_id.startswith("projects/")
    assert "," not in result.provider_message_id
    assert result.invalid_tokens == ("device-bad",)
    assert (await token_row(pool, "device-good"))["active"] is True
    bad = await token_row(pool, "device-bad")
    assert bad["active"] is False and "INVALID_ARGUMENT" in bad["last_error"]


async def test_status_alone_identifies_unregistered(
    provider: FcmProvider, google: FakeGoogle, pool: asyncpg.Pool[Any], session: aiohttp.ClientSession
) -> None:
    """Either error.status or a details errorCode is enough."""
    mentor_id = await mentor_with_tokens(pool, "device-a", "device-b")
    google.script("device-a", (404, fcm_error(404, "UNREGISTERED"), {}))
    google.script("device-b", (400, fcm_error(400, "INVALID_ARGUMENT"), {}))

    result = await provider.send(push(mentor_id), session)

    assert result.kind == "failed"
    assert sorted(result.invalid_tokens) == ["device-a", "device-b"]


async def test_invalid_payload_fails_without_deactivating_the_token(
    provider: FcmProvider, google: FakeGoogle, pool: asyncpg.Pool[Any], session: aiohttp.ClientSession
) -> None:
    mentor_id = await mentor_with_tokens(pool, "device-A")
    google.script(
        "device-A",
        (400, fcm_error(400, "INVALID_ARGUMENT", field_violations=["message.data[0].value"]), {}),
    )

    result = await provider.send(push(mentor_id), session)

    assert result.kind == "failed"
    assert result.invalid_tokens == ()
    assert (await token_row(pool, "device-A"))["active"] is True


async def test_invalid_token_field_violation_deactivates(
    provider: FcmProvider, google: FakeGoogle, pool: asyncpg.Pool[Any], session: aiohttp.ClientSession
) -> None:
    mentor_id = await mentor_with_tokens(pool, "device-A")
    google.script(
        "device-A", (400, fcm_error(400, "INVALID_ARGUMENT", field_violations=["message.token"]), {})
    )

    result = await provider.send(push(mentor_id), session)

    assert result.kind == "failed" and result.invalid_tokens == ("device-A",)
    assert (await token_row(pool, "device-A"))["active"] is False


@pytest.mark.parametrize("status", [500, 503])
async def test_server_error_is_retried(
    status: int,
    provider: FcmProvider,
    google: FakeGoogle,
    pool: asyncpg.Pool[Any],
    session: aiohttp.ClientSession,
) -> None:
    mentor_id = await mentor_with_tokens(pool, "device-A")
    google.script("device-A", (status, fcm_error(status, "INTERNAL", "INTERNAL"), {}))

    result = await provider.send(push(mentor_id), session)

    assert result.kind == "retry"
    assert result.retry_after is None
    assert result.error is not None and f"HTTP {status}" in result.error
    assert (await token_row(pool, "device-A"))["active"] is True


async def test_rate_limited_honours_retry_after(
    provider: FcmProvider, google: FakeGoogle, pool: asyncpg.Pool[Any], session: aiohttp.ClientSession
) -> None:
    mentor_id = await mentor_with_tokens(pool, "device-A")
    google.script(
        "device-A", (429, fcm_error(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED"), {"Retry-After": "7"})
    )

    result = await provider.send(push(mentor_id), session)

    assert result.kind == "retry"
    assert result.retry_after == 7


async def test_retry_wins_over_invalid_when_nothing_delivered(
    provider: FcmProvider, google: FakeGoogle, pool: asyncpg.Pool[Any], session: aiohttp.ClientSession
) -> None:
    mentor_id = await mentor_with_tokens(pool, "device-busy", "device-gone")
    google.script("device-busy", (503, fcm_error(503, "UNAVAILABLE", "UNAVAILABLE"), {"Retry-After": "3"}))
    google.script("device-gone", (404, fcm_error(404, "NOT_FOUND", "UNREGISTERED"), {}))

    result = await provider.send(push(mentor_id), session)

    assert result.kind == "retry" and result.retry_after == 3
    assert result.invalid_tokens == ("device-gone",)
    assert (await token_row(pool, "device-gone"))["active"] is False


async def test_other_client_error_fails_and_keeps_token(
    provider: FcmProvider, google: FakeGoogle, pool: asyncpg.Pool[Any], session: aiohttp.ClientSession
) -> None:
    mentor_id = await mentor_with_tokens(pool, "device-A")
    google.script("device-A", (403, fcm_error(403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH"), {}))

    result = await provider.send(push(mentor_id), session)

    assert result.kind == "failed" and "HTTP 403" in (result.error or "")
    assert result.invalid_tokens == ()
    assert (await token_row(pool, "device-A"))["active"] is True


async def test_unauthorized_refreshes_token_once_and_succeeds(
    provider: FcmProvider, google: FakeGoogle, pool: asyncpg.Pool[Any], session: aiohttp.ClientSession
) -> None:
    mentor_id = await mentor_with_tokens(pool, "device-A")
    assert (await provider.send(push(mentor_id, 1), session)).kind == "delivered"
    google.revoked.add(google.issued[0])  # FCM stops accepting the cached token

    result = await provider.send(push(mentor_id, 2), session)

    assert result.kind == "delivered"
    assert len(google.token_requests) == 2
    assert [r.headers["Authorization"] for r in google.fcm_requests] == [
        f"Bearer {google.issued[0]}",
        f"Bearer {google.issued[0]}",
        f"Bearer {google.issued[1]}",
    ]
    # Both requests for push 2 carry the same message.
    assert google.fcm_requests[1].body == google.fcm_requests[2].body


async def test_concurrent_unauthorized_requests_refresh_once(
    provider: FcmProvider, google: FakeGoogle, pool: asyncpg.Pool[Any], session: aiohttp.ClientSession
) -> None:
    mentor_id = await mentor_with_tokens(pool, "device-A", "device-B", "device-C")
    assert (await provider.send(push(mentor_id, 1), session)).kind == "delivered"
    google.revoked.add(google.issued[0])

    result = await provider.send(push(mentor_id, 2), session)

    assert result.kind == "delivered"
    assert len(result.provider_message_id.split(",")) == 3  # type: ignore[union-attr]
    assert len(google.token_requests) == 2


async def test_persistent_unauthorized_refreshes_once_then_fails(
    provider: FcmProvider, google: FakeGoogle, pool: asyncpg.Pool[Any], session: aiohttp.ClientSession
) -> None:
    mentor_id = await mentor_with_tokens(pool, "device-A")
    unauthenticated: Response = (401, fcm_error(401, "UNAUTHENTICATED"), {})
    google.script("device-A", unauthenticated, unauthenticated, unauthenticated)

    result = await provider.send(push(mentor_id), session)

    assert result.kind == "failed" and "HTTP 401" in (result.error or "")
    assert len(google.fcm_requests) == 2
    assert len(google.token_requests) == 2
    assert (await token_row(pool, "device-A"))["active"] is True


async def test_no_active_tokens_fails_without_calling_google(
    provider: FcmProvider, google: FakeGoogle, pool: asyncpg.Pool[Any], session: aiohttp.ClientSession
) -> None:
    mentor_id = await add_mentor(pool)
    await add_token(pool, mentor_id, "device-retired", active=False)

    result = await provider.send(push(mentor_id), session)

    assert result.kind == "failed"
    assert result.error == "no active device token"
    assert google.token_requests == [] and google.fcm_requests == []


async def test_token_endpoint_rejection_is_retried(
    provider: FcmProvider, google: FakeGoogle, pool: asyncpg.Pool[Any], session: aiohttp.ClientSession
) -> None:
    mentor_id = await mentor_with_tokens(pool, "device-A")
    google.token_endpoint_status = 400

    result = await provider.send(push(mentor_id), session)

    assert result.kind == "retry"
    assert result.error is not None and "invalid_grant" in result.error
    assert google.fcm_requests == []

    google.token_endpoint_status = 200
    assert (await provider.send(push(mentor_id), session)).kind == "delivered"


async def test_timeout_is_retried(
    credentials_file: Path, google: FakeGoogle, pool: asyncpg.Pool[Any], session: aiohttp.ClientSession
) -> None:
    mentor_id = await mentor_with_tokens(pool, "device-A")
    google.fcm_delay = 2.0
    provider = FcmProvider(PROJECT, credentials_file, pool, base_url=google.base_url, timeout=0.5)
    try:
        result = await provider.send(push(mentor_id), session)
    finally:
        await provider.close()

    assert result.kind == "retry" and result.error == "timeout"


async def test_connection_error_is_retried(
    credentials_file: Path, pool: asyncpg.Pool[Any], session: aiohttp.ClientSession
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    mentor_id = await mentor_with_tokens(pool, "device-A")
    provider = FcmProvider(PROJECT, credentials_file, pool, base_url=f"http://127.0.0.1:{port}", timeout=2)
    try:
        result = await provider.send(push(mentor_id), session)
    finally:
        await provider.close()

    assert result.kind == "retry"
    assert result.error is not None and result.error.startswith("connection error")
