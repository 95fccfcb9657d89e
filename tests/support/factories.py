"""Small helpers that write platform rows the way the platform would (plain SQL)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg

ORG = uuid.UUID("00000000-0000-0000-0000-0000000000aa")


async def add_mentor(
    conn: asyncpg.Connection[Any] | asyncpg.Pool[Any],
    *,
    joined_at: dt.datetime | None = None,
    status: str = "active",
    timezone: str = "UTC",
    name: str | None = None,
) -> uuid.UUID:
    mentor_id: uuid.UUID = await conn.fetchval(
        "INSERT INTO peer_mentor (organization_id, display_name, status, timezone, joined_at) "
        "VALUES ($1, $2, $3, $4, coalesce($5, now())) RETURNING id",
        ORG,
        name,
        status,
        timezone,
        joined_at,
    )
    return mentor_id


async def add_activity(
    conn: asyncpg.Connection[Any] | asyncpg.Pool[Any],
    mentor_id: uuid.UUID,
    occurred_at: dt.datetime,
    *,
    kind: str = "session",
    duration_minutes: int = 60,
    contacts: int = 1,
) -> int:
    activity_id: int = await conn.fetchval(
        "INSERT INTO activity (mentor_id, kind, occurred_at, duration_minutes, contacts) "
        "VALUES ($1, $2, $3, $4, $5) RETURNING id",
        mentor_id,
        kind,
        occurred_at,
        duration_minutes,
        contacts,
    )
    return activity_id


async def add_certification(
    conn: asyncpg.Connection[Any] | asyncpg.Pool[Any],
    mentor_id: uuid.UUID,
    *,
    expires_at: dt.datetime,
    issued_at: dt.datetime | None = None,
    type_: str = "first_aid",
    revoked_at: dt.datetime | None = None,
) -> int:
    cert_id: int = await conn.fetchval(
        "INSERT INTO certification (mentor_id, type, issued_at, expires_at, revoked_at) "
        "VALUES ($1, $2, $3, $4, $5) RETURNING id",
        mentor_id,
        type_,
        issued_at or expires_at - dt.timedelta(days=365),
        expires_at,
        revoked_at,
    )
    return cert_id


async def opt_out(
    conn: asyncpg.Connection[Any] | asyncpg.Pool[Any], mentor_id: uuid.UUID, scope: str = "all"
) -> None:
    await conn.execute(
        "INSERT INTO notification_preference (mentor_id, scenario_type, opted_out) VALUES ($1, $2, true) "
        "ON CONFLICT (mentor_id, scenario_type) DO UPDATE SET opted_out = true, updated_at = now()",
        mentor_id,
        scope,
    )
