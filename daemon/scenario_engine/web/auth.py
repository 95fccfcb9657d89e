"""Bearer-token protection of the status server's informative pages.

`/status`, `/` and `/programme` show instance names, backlogs and per-organisation counts; on
127.0.0.1 (the default) only local users see them. When the server is bound elsewhere (the Docker
image binds 0.0.0.0), ``SCENARIO_STATUS_TOKEN`` makes those require ``Authorization: Bearer <token>``.
`/healthz`, `/readyz` and `/metrics` stay open, as probes and scrapers conventionally expect
(metrics carry no per-mentor labels).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

PROTECTED_PATHS = frozenset({"/", "/status", "/programme"})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def bearer_middleware(token: str | None) -> Middleware:
    expected = f"Bearer {token}".encode() if token else None

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if expected is None or request.path not in PROTECTED_PATHS:
            return await handler(request)
        given = request.headers.get("Authorization", "").encode()
        if hmac.compare_digest(given, expected):  # constant time: no token oracle
            return await handler(request)
        return web.json_response(
            {"error": "this page needs Authorization: Bearer <SCENARIO_STATUS_TOKEN>"},
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="scenario-engine"'},
        )

    return check


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the status server on this machine."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
