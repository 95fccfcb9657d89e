"""A hostile or broken gateway cannot steer the dispatcher: no redirect is followed (the bearer
token would go with it), a huge answer is not read whole, an absurd Retry-After is capped."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from aiohttp import web

from scenario_engine.config import Settings
from scenario_engine.dev.embedded import free_port
from scenario_engine.engine import Engine
from scenario_engine.push.base import MAX_RETRY_AFTER_SECONDS, parse_retry_after
from scenario_engine.push.factory import make_provider
from scenario_engine.runtime.dispatcher import Dispatcher
from scenario_engine.runtime.metrics import Metrics
from tests.support.factories import add_mentor

TOKEN = "gateway-bearer-7d1e"


class Hostile:
    """/redirect answers 307 to /elsewhere; /huge answers 500 with 10 MB; /slowdown 429 with a
    Retry-After of 400 digits. /elsewhere records whatever reaches it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.elsewhere: list[dict[str, str]] = []
        self.runner: web.AppRunner | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def start(self) -> Hostile:
        async def redirect(request: web.Request) -> web.Response:
            raise web.HTTPTemporaryRedirect(self.url("/elsewhere"))

        async def elsewhere(request: web.Request) -> web.Response:
            self.elsewhere.append(dict(request.headers))
            return web.json_response({"id": "stolen"})

        async def huge(request: web.Request) -> web.Response:
            return web.Response(status=500, body=b"x" * (10 * 1024 * 1024))

        async def slowdown(request: web.Request) -> web.Response:
            return web.Response(status=429, headers={"Retry-After": "9" * 400})

        app = web.Application()
        app.router.add_post("/redirect", redirect)
        app.router.add_post("/elsewhere", elsewhere)
        app.router.add_post("/huge", huge)
        app.router.add_post("/slowdown", slowdown)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
async def hostile() -> AsyncIterator[Hostile]:
    h = await Hostile().start()
    yield h
    await h.stop()


async def _dispatch(pool: Any, url: str) -> dict[str, Any]:
    s = Settings(
        push_provider="webhook",
        push_webhook_url=url,
        push_webhook_token=TOKEN,
        push_rate_per_second=1000,
        push_backoff_base_seconds=1,
    )
    async with Dispatcher(pool, make_provider(s, pool), s, Metrics()) as d:
        with anyio.fail_after(30):
            await d.dispatch_once()
    row = await pool.fetchrow(
        "SELECT status, last_error, next_attempt_at FROM scenario_engine.push_notification "
        "ORDER BY id DESC LIMIT 1"
    )
    assert row is not None
    return dict(row)


async def _one_push(engine: Engine, pool: Any) -> None:
    await add_mentor(pool, joined_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=40))
    await engine.run_scheduled_evaluation()


async def test_a_redirect_is_not_followed(engine: Engine, pool: Any, hostile: Hostile) -> None:
    await _one_push(engine, pool)
    row = await _dispatch(pool, hostile.url("/redirect"))
    assert hostile.elsewhere == []  # neither the push nor the bearer token went anywhere else
    assert row["status"] == "failed" and "307" in row["last_error"]


async def test_a_huge_answer_is_not_read_whole(engine: Engine, pool: Any, hostile: Hostile) -> None:
    await _one_push(engine, pool)
    row = await _dispatch(pool, hostile.url("/huge"))
    assert row["status"] == "pending"  # a 500: retried later
    assert len(row["last_error"]) < 1000


async def test_an_absurd_retry_after_is_capped(engine: Engine, pool: Any, hostile: Hostile) -> None:
    await _one_push(engine, pool)
    row = await _dispatch(pool, hostile.url("/slowdown"))
    # a week past now at most: beyond the push's max age it is dead-lettered instead
    assert row["status"] in ("pending", "dead")
    assert row["next_attempt_at"] < dt.datetime.now(dt.UTC) + dt.timedelta(
        seconds=MAX_RETRY_AFTER_SECONDS + 60
    )
    assert parse_retry_after("9" * 400) == MAX_RETRY_AFTER_SECONDS
    assert parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT") == MAX_RETRY_AFTER_SECONDS
