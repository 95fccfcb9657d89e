"""Shared by tests/unit/test_programme_page.py and tests/process/test_programme_page.py."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import asyncpg
from aiohttp import ClientSession

from scenario_engine.dev.embedded import free_port
from scenario_engine.runtime.state import RuntimeState
from scenario_engine.web.server import serve_status

TOKEN = "programme-token-5b1e"
ORG_A = uuid.UUID("00000000-0000-0000-0000-00000000000a")


# --- the server ----------------------------------------------------------------------------------


@asynccontextmanager
async def status_server(pool: asyncpg.Pool[Any] | None) -> AsyncIterator[str]:
    state = RuntimeState(instance_id="programme-test")
    port = free_port()
    async with anyio.create_task_group() as tg:
        await tg.start(
            lambda task_status: serve_status(
                state, "127.0.0.1", port, pool=pool, token=TOKEN, task_status=task_status
            )
        )
        yield f"http://127.0.0.1:{port}"
        tg.cancel_scope.cancel()


async def get(url: str, token: str | None = TOKEN) -> tuple[int, str, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with ClientSession() as http, http.get(url, headers=headers) as resp:
        return resp.status, resp.content_type, await resp.text()
