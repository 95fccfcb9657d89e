"""The status server: /healthz, /readyz, /metrics, /status (aiohttp)."""

from __future__ import annotations

import anyio
from aiohttp import web
from anyio.abc import TaskStatus
from prometheus_client import CONTENT_TYPE_LATEST

from scenario_engine.logs import get_logger
from scenario_engine.runtime.state import RuntimeState

log = get_logger("scenario_engine.status")
STATE_KEY = web.AppKey("state", RuntimeState)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


async def readyz(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    body = {"ready": state.ready, "database": state.database_ok, "listener": state.listener_ok}
    return web.json_response(body, status=200 if state.ready else 503)


async def metrics(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    return web.Response(body=state.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def status(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE_KEY].status())


def build_app(state: RuntimeState) -> web.Application:
    app = web.Application()
    app[STATE_KEY] = state
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/status", status)
    return app


async def serve_status(
    state: RuntimeState, host: str, port: int, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    """Listen, report started (so work begins only once probes answer), serve until cancelled."""
    runner = web.AppRunner(build_app(state), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        state.status_port = sockets[0].getsockname()[1] if sockets else port
        log.info("status_server_listening", host=host, port=state.status_port)
        task_status.started()
        await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            await runner.cleanup()
