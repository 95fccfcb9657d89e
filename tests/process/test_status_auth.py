"""The status server's informative pages can require a bearer token; probes stay open."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

import anyio

from tests.support.daemon import DaemonProcess

TOKEN = "status-token-3f9c1a7e"


def fetch(port: int, path: str, token: str | None = None) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=3) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


async def test_status_and_page_need_the_token_probes_and_metrics_do_not(daemons: Any) -> None:
    d: DaemonProcess = daemons("guarded", status_host="0.0.0.0", status_token=TOKEN)
    await d.wait_ready()

    async def get(path: str, token: str | None = None) -> int:
        return await anyio.to_thread.run_sync(fetch, d.port, path, token)

    assert await get("/status") == 401
    assert await get("/") == 401
    assert await get("/status", "wrong-token") == 401
    assert await get("/status", TOKEN) == 200
    assert await get("/", TOKEN) == 200
    for open_path in ("/healthz", "/readyz", "/metrics"):
        assert await get(open_path) == 200, open_path
    assert TOKEN not in d.logs()


async def test_an_exposed_status_server_without_a_token_says_so(daemons: Any) -> None:
    d: DaemonProcess = daemons("exposed", status_host="0.0.0.0")
    await d.wait_ready()
    assert any(e.get("event") == "status_pages_unprotected" for e in d.log_events())
    assert await anyio.to_thread.run_sync(fetch, d.port, "/status") == 200


async def test_no_log_line_of_the_daemon_carries_a_secret(daemons: Any, db_url: str) -> None:
    """A webhook URL's key and the bearer token reach no log line — even when a gateway echoes
    the request (URL and headers) into the error the dispatcher logs."""
    import datetime as dt

    import asyncpg
    from aiohttp import web

    from scenario_engine.dev.embedded import free_port
    from tests.support.factories import add_mentor

    key, bearer = "apikey-5c2b9e41", "bearer-88f0a1d3"
    echoed: list[str] = []

    async def echo(request: web.Request) -> web.Response:
        text = f"bad request {request.url} {request.headers.get('Authorization')}"
        echoed.append(text)
        return web.Response(status=400, text=text)

    app = web.Application()
    app.router.add_post("/push", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    conn = await asyncpg.connect(db_url)
    try:
        await add_mentor(conn, joined_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=40))
        d: DaemonProcess = daemons(
            "secretive",
            push_provider="webhook",
            push_webhook_url=f"http://127.0.0.1:{port}/push?api_key={key}",
            push_webhook_token=bearer,
            dispatch_poll_interval_seconds=0.2,
        )
        await d.wait_ready()
        for _ in range(100):
            if any(e.get("event") == "push_failed" for e in d.log_events()):
                break
            await anyio.sleep(0.1)
        assert echoed and key in echoed[0] and bearer in echoed[0]  # the gateway did echo both
        assert any(e.get("event") == "push_failed" for e in d.log_events())
        logs = d.logs()
        assert key not in logs and bearer not in logs
        stored = await conn.fetchval("SELECT last_error FROM scenario_engine.push_notification")
        assert stored is not None and "400" in stored  # `explain` shows it: no secret there either
        assert key not in stored and bearer not in stored
    finally:
        await conn.close()
        await runner.cleanup()
