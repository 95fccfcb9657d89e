"""The status server: / (HTML status page), /healthz, /readyz, /metrics, /status (aiohttp)."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

import anyio
import asyncpg
from aiohttp import web
from anyio.abc import TaskStatus
from prometheus_client import CONTENT_TYPE_LATEST

from scenario_engine.db.errors import DB_ERRORS
from scenario_engine.db.queries import fetch, query
from scenario_engine.logs import get_logger
from scenario_engine.runtime.state import RuntimeState
from scenario_engine.web.auth import bearer_middleware, is_loopback
from scenario_engine.web.guard import ConnectionGuard, connection_limit
from scenario_engine.web.programme_view import (
    BadOrganization,
    parse_organization,
    programme_page,
    render_programme,
)
from scenario_engine.web.status_chart import ChartUnavailable, chart_from_rows, chart_window
from scenario_engine.web.status_page import render_page
from scenario_engine.web.status_view import (
    StoredData,
    build_page,
    deliveries_from_rows,
    sweep_from_row,
)

log = get_logger("scenario_engine.status")
CHART_CACHE_SECONDS = 30.0  # the page refreshes every 10 s; the 30-day query need not run that often
CHART_TIMEOUT_SECONDS = 3.0  # a slow or unreachable database must not hold the page up
# No script, no external resource: the page is one self-contained document.
PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"


class StatusPageSource:
    """What the status page reads from the database: the 30-day decision chart, what became of
    the pushes queued in those days, and the last finished sweep. Through the daemon's pool,
    cached briefly and time-boxed; any failure makes all three unavailable, never the page."""

    def __init__(
        self,
        pool: asyncpg.Pool[Any] | None,
        *,
        cache_seconds: float = CHART_CACHE_SECONDS,
        timeout: float = CHART_TIMEOUT_SECONDS,
    ):
        self.pool = pool
        self.cache_seconds = cache_seconds
        self.timeout = timeout
        self._cached: tuple[float, StoredData] | None = None
        self._lock = anyio.Lock()

    async def get(self) -> StoredData:
        if self.pool is None:
            return StoredData(ChartUnavailable("This status server was started without a database pool."))
        async with self._lock:  # concurrent page loads share one round of queries
            if self._cached is not None and time.monotonic() - self._cached[0] < self.cache_seconds:
                return self._cached[1]
            days = chart_window(dt.datetime.now(dt.UTC).date())
            try:
                with anyio.fail_after(self.timeout):
                    async with self.pool.acquire() as conn:
                        # The builders read rows as mappings, which the stubs do not call asyncpg.Record.
                        decisions: list[Any] = await fetch(conn, "status_decisions_by_day", first_day=days[0])
                        pushes: list[Any] = await fetch(conn, "status_deliveries_since", first_day=days[0])
                        sweep = await conn.fetchrow(query("status_last_sweep"))
            except DB_ERRORS as exc:
                log.warning("status_page_chart_unavailable", error=repr(exc))
                reason = f"The database could not be queried ({type(exc).__name__})."
                return StoredData(ChartUnavailable(reason))
            stored = StoredData(
                chart_from_rows(decisions, days),
                deliveries_from_rows(pushes),
                sweep_from_row(sweep) if sweep is not None else None,
            )
            self._cached = (time.monotonic(), stored)
            return stored


class StatusServerError(Exception):
    """The status server cannot listen where it was told to: a configuration problem."""

    def __init__(self, host: str, port: int, cause: OSError):
        reason = cause.strerror or str(cause)
        super().__init__(
            f"cannot serve status on {host}:{port}: {reason} "
            "(set SCENARIO_STATUS_HOST / SCENARIO_STATUS_PORT to a free local address; port 0 picks any)"
        )


STATE_KEY = web.AppKey("state", RuntimeState)
CHART_KEY = web.AppKey("chart", StatusPageSource)
POOL_KEY: web.AppKey[asyncpg.Pool[Any] | None] = web.AppKey("pool")  # for /programme


async def healthz(request: web.Request) -> web.Response:
    """Alive *and working*: 503 naming the loops that stopped making progress, so that a
    supervisor restarts a process whose drain or dispatcher is blocked, not only a dead one."""
    stuck = request.app[STATE_KEY].stuck_loops()
    if stuck:
        return web.json_response({"status": "stuck", "stuck": stuck}, status=503)
    return web.json_response({"status": "alive"})


async def readyz(request: web.Request) -> web.Response:
    """200 when ready; 503 otherwise, with ``condition`` naming the database condition
    (db/errors.py) the daemon is backing off on, if that is why."""
    body = request.app[STATE_KEY].readiness()
    return web.json_response(body, status=200 if body["ready"] else 503)


async def metrics(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    return web.Response(body=state.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def status(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE_KEY].status())


async def index(request: web.Request) -> web.Response:
    """The status page for people: always 200 while the process answers, chart or not."""
    stored = await request.app[CHART_KEY].get()
    page = render_page(build_page(request.app[STATE_KEY], stored))
    return web.Response(
        text=page,
        content_type="text/html",
        charset="utf-8",
        headers={"Cache-Control": "no-store", "Content-Security-Policy": PAGE_CSP},
    )


async def programme(request: web.Request) -> web.Response:
    """The programme-health page for programme staff (programme_view): 400 for a bad
    organisation id, a "figures unavailable" page (200) when the database cannot answer."""
    try:
        organization_id = parse_organization(request.query.getall("organization", []))
    except BadOrganization as exc:
        return web.Response(text=f"{exc}\n", status=400, content_type="text/plain", charset="utf-8")
    page = await programme_page(
        request.app[POOL_KEY],
        dt.datetime.now(dt.UTC),
        organization_id,
        names=request.app[STATE_KEY].organization_names,
    )
    return web.Response(
        text=render_programme(page),
        content_type="text/html",
        charset="utf-8",
        headers={"Cache-Control": "no-store", "Content-Security-Policy": PAGE_CSP},
    )


async def _one_request_per_connection(_request: web.Request, response: web.StreamResponse) -> None:
    """``Connection: close`` on every answer: a connection serves one request, so an idle
    keep-alive connection never holds one of the server's few slots (status_guard)."""
    response.force_close()


def build_app(
    state: RuntimeState, pool: asyncpg.Pool[Any] | None = None, *, token: str | None = None
) -> web.Application:
    app = web.Application(middlewares=[bearer_middleware(token)])
    app.on_response_prepare.append(_one_request_per_connection)
    app[STATE_KEY] = state
    app[CHART_KEY] = StatusPageSource(pool)
    app[POOL_KEY] = pool
    app.router.add_get("/", index)
    app.router.add_get("/programme", programme)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/status", status)
    return app


async def serve_status(
    state: RuntimeState,
    host: str,
    port: int,
    *,
    pool: asyncpg.Pool[Any] | None = None,
    token: str | None = None,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Listen, report started (so work begins only once probes answer), serve until cancelled.

    ``pool`` feeds the status page's 30-day chart; without it the page says the chart is unavailable.
    Connections go through a ``ConnectionGuard`` (bounded count, header and request deadlines)
    so that slow or numerous clients cannot starve /healthz and /readyz (web/guard.py).
    """
    runner = web.AppRunner(build_app(state, pool, token=token), access_log=None, handle_signals=False)
    await runner.setup()
    assert runner.server is not None  # set by setup()
    dropped = state.metrics.status_connections_dropped
    guard = ConnectionGuard(
        runner.server, limit=connection_limit(), on_drop=lambda reason: dropped.labels(reason).inc()
    )
    server: asyncio.Server | None = None
    try:
        try:
            server = await asyncio.get_running_loop().create_server(guard, host, port, backlog=guard.backlog)
        except OSError as exc:  # gaierror (unresolvable host) is an OSError too
            raise StatusServerError(host, port, exc) from exc
        sockets = list(server.sockets)
        state.status_port = sockets[0].getsockname()[1] if sockets else port
        log.info(
            "status_server_listening",
            host=host,
            port=state.status_port,
            token_required=token is not None,
            max_connections=guard.limit,
        )
        if token is None and not is_loopback(host):
            log.warning(
                "status_pages_unprotected",
                host=host,
                hint="set SCENARIO_STATUS_TOKEN so that /status and / require a bearer token",
            )
        task_status.started()
        await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            if server is not None:
                server.close()
            await runner.cleanup()
