"""Connections and pools with the settings every engine session needs."""

from __future__ import annotations

import json
from typing import Any, TypeAlias, Union

import asyncpg
from asyncpg.pool import PoolConnectionProxy

# A plain connection or one borrowed from a pool: everything here accepts either.
Conn: TypeAlias = Union["asyncpg.Connection[Any]", "PoolConnectionProxy[Any]"]

ENGINE_ORIGIN_SQL = "SELECT set_config('scenario_engine.origin', 'engine', true)"

# The engine's objects live in a schema of their own (sql/0008_engine_schema.sql); the platform's
# tables stay where the platform keeps them (``public``). Every engine session resolves names in
# that order — pg_catalog is always searched first — so no object a client role could create
# elsewhere is ever picked up, and a session never depends on the server's default search_path.
ENGINE_SCHEMA = "scenario_engine"
PLATFORM_SCHEMA = "public"
SEARCH_PATH = f"{ENGINE_SCHEMA}, {PLATFORM_SCHEMA}"


def _server_settings(application_name: str) -> dict[str, str]:
    return {"application_name": application_name, "search_path": SEARCH_PATH}


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


async def create_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    application_name: str = "scenario-engine",
) -> asyncpg.Pool[Any]:
    pool: asyncpg.Pool[Any] | None = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        server_settings=_server_settings(application_name),
    )
    assert pool is not None  # create_pool only returns None when not awaited
    return pool


async def mark_engine_write(conn: Conn) -> None:
    """Tag the current transaction as the engine's own so the triggers ignore it."""
    await conn.execute(ENGINE_ORIGIN_SQL)
