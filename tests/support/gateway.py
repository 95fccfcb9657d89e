"""A real local HTTP server playing the push gateway, with switchable misbehaviour."""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from scenario_engine.dev.embedded import free_port


@dataclass
class Received:
    at: float
    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def key(self) -> str:
        return self.headers.get("Idempotency-Key", "")


@dataclass
class Gateway:
    """Modes: fail_ratio (500s), throttle_ratio (429 + Retry-After), delay (slow), and up/down.

    ``received`` lists answered requests; ``unanswered`` counts the requests that have arrived
    and not been answered yet: the sends truly in flight, which no database row can tell (a
    claimed push is 'sending' before its HTTP call starts).
    """

    port: int = field(default_factory=free_port)
    fail_ratio: float = 0.0
    throttle_ratio: float = 0.0
    retry_after: int = 1
    delay: float = 0.0
    status: int = 200
    seed: int = 7
    received: list[Received] = field(default_factory=list)
    unanswered: int = 0
    _runner: web.AppRunner | None = None

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/push"

    async def _handle(self, request: web.Request) -> web.Response:
        self.unanswered += 1
        try:
            return await self._answer(request)
        finally:
            self.unanswered -= 1

    async def _answer(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.delay:
            await asyncio.sleep(self.delay)
        roll = self._random.random()
        if self.status != 200:
            status, headers = self.status, {}
        elif roll < self.throttle_ratio:
            status, headers = 429, {"Retry-After": str(self.retry_after)}
        elif roll < self.throttle_ratio + self.fail_ratio:
            status, headers = 500, {}
        else:
            status, headers = 200, {"X-Message-Id": f"msg-{len(self.received)}"}
        self.received.append(Received(time.monotonic(), dict(request.headers), body, status))
        return web.Response(status=status, headers=headers, text=json.dumps({"ok": status == 200}))

    async def start(self) -> Gateway:
        app = web.Application()
        app.router.add_post("/push", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def delivered(self) -> list[Received]:
        return [r for r in self.received if r.status == 200]
