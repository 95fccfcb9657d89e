"""The status server's informative pages can require a bearer token; probes stay open."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

import anyio

from tests.daemon import DaemonProcess

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
