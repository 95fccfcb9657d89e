"""Connections and pools with the settings every engine session needs."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, TypeAlias, Union

import asyncpg
from asyncpg.pool import PoolAcquireContext, PoolConnectionProxy

from scenario_engine.db.queries import query

# A plain connection or one borrowed from a pool: everything here accepts either.
Conn: TypeAlias = Union["asyncpg.Connection[Any]", "PoolConnectionProxy[Any]"]

# The engine's objects live in a schema of their own (sql/0008_engine_schema.sql); the platform's
# tables stay where the platform keeps them (``public``). Every query names its tables with their
# schema (tests/unit/test_sql_qualified.py), so no session's search_path decides what a query touches —
# and none is sent at connect: poolers refuse or drop unknown startup parameters. Migrations,
# written unqualified before 0008, get SEARCH_PATH for their own transaction only.
ENGINE_SCHEMA = "scenario_engine"
PLATFORM_SCHEMA = "public"
SEARCH_PATH = f"{ENGINE_SCHEMA}, {PLATFORM_SCHEMA}"


def _server_settings(application_name: str) -> dict[str, str]:
    return {"application_name": application_name}


async def _init_connection(conn: asyncpg.Connection[Any]) -> None:
    # jsonb columns come back as Python objects, not strings.
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def connect(dsn: str, *, application_name: str = "scenario-engine") -> asyncpg.Connection[Any]:
    conn: asyncpg.Connection[Any] = await asyncpg.connect(
        dsn, server_settings=_server_settings(application_name)
    )
    await _init_connection(conn)
    return conn


if TYPE_CHECKING:
    _PoolBase = asyncpg.Pool[Any]
else:
    _PoolBase = asyncpg.Pool


class BoundedPool(_PoolBase):
    """A pool whose ``acquire()`` waits at most ``acquire_timeout`` seconds unless told
    otherwise: a starved pool (or a connect that hangs) surfaces as a ``TimeoutError``
    that the work loops retry and log, not as a task that waits forever."""

    def __init__(self, *args: Any, acquire_timeout: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.acquire_timeout = acquire_timeout

    def acquire(self, *, timeout: float | None = None) -> PoolAcquireContext[Any]:
        return super().acquire(timeout=self.acquire_timeout if timeout is None else timeout)


async def create_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    application_name: str = "scenario-engine",
    acquire_timeout: float | None = None,
) -> asyncpg.Pool[Any]:
    # asyncpg.create_pool() is this constructor with these defaults; it takes no pool class.
    pool = BoundedPool(
        dsn,
        acquire_timeout=acquire_timeout,
        min_size=min_size,
        max_size=max_size,
        max_queries=50_000,
        max_inactive_connection_lifetime=300.0,
        loop=None,
        connection_class=asyncpg.Connection,
        record_class=asyncpg.Record,
        init=_init_connection,
        server_settings=_server_settings(application_name),
    )
    await pool
    return pool


async def mark_engine_write(conn: Conn) -> None:
    """Tag the current transaction as the engine's own so the triggers ignore it."""
    await conn.execute(query("mark_engine_write"))
