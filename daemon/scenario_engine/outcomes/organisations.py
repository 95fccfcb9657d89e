"""Organisation names for the report and the programme page: one lookup, one label.

The platform may have a table ``public.organization (id uuid, name text)`` (the reference schema
has one; the demo fills it). It is optional, like the platform's optional columns: the engine
never needs it to decide anything, so without it — or without the right to read it, or with
another shape — every organisation is shown by its id, exactly as before.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import asyncpg

from scenario_engine.db.connect import Conn
from scenario_engine.db.queries import bind, query

Names = Mapping[uuid.UUID, str]


async def organisation_names(
    conn: Conn | asyncpg.Pool[Any], organization_ids: Iterable[uuid.UUID | None]
) -> dict[uuid.UUID, str]:
    """The names of these organisations that the platform records (blank names left out)."""
    wanted = sorted({i for i in organization_ids if i is not None}, key=str)
    if not wanted:
        return {}
    if not await conn.fetchval(query("organisation_names_readable")):
        return {}
    sql, args = bind("organisation_names", {"ids": wanted})
    names = {}
    for row in await conn.fetch(sql, *args):
        name = " ".join(str(row["name"] or "").split())  # one line, whatever the platform stored
        if name:
            names[row["id"]] = name
    return names


def organisation_label(organization_id: uuid.UUID | None, names: Names, *, unrecorded: str) -> str:
    """What a reader sees for an organisation: its name if known, else its id; ``unrecorded``
    for decisions taken before organisations were recorded."""
    if organization_id is None:
        return unrecorded
    return names.get(organization_id) or str(organization_id)
