"""A clean evaluation clears its mentors' open quarantine entries, and only theirs. The open
entries of the group's id range are looked up first (isolation.clear_quarantine; issue 18: a
sweep batch's 20k ids went to the server once more for an UPDATE that normally finds nothing).
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from scenario_engine.isolation import Quarantined, clear_quarantine, record_quarantine
from tests.support.factories import add_mentor


async def _open(conn: asyncpg.Connection[Any]) -> set[uuid.UUID]:
    rows = await conn.fetch(
        "SELECT mentor_id FROM scenario_engine.scenario_quarantine WHERE cleared_at IS NULL"
    )
    return {r["mentor_id"] for r in rows}


async def test_only_the_groups_open_entries_are_cleared(conn: asyncpg.Connection[Any]) -> None:
    mentors = sorted([await add_mentor(conn) for _ in range(7)])
    # Quarantined: the first and last (outside the group's range), one inside the range but not
    # in the group, and two of the group's own.
    group = [mentors[1], mentors[2], mentors[4], mentors[5]]
    quarantined = [mentors[0], mentors[2], mentors[3], mentors[5], mentors[6]]
    await record_quarantine(conn, [Quarantined(m, "bad row") for m in quarantined])
    assert await _open(conn) == set(quarantined)

    await clear_quarantine(conn, group)
    assert await _open(conn) == {mentors[0], mentors[3], mentors[6]}
    cleared = await conn.fetch(
        "SELECT mentor_id FROM scenario_engine.scenario_quarantine WHERE cleared_at IS NOT NULL"
    )
    assert {r["mentor_id"] for r in cleared} == {mentors[2], mentors[5]}


async def test_nothing_open_in_the_range_writes_nothing(conn: asyncpg.Connection[Any]) -> None:
    mentors = sorted([await add_mentor(conn) for _ in range(3)])
    await record_quarantine(conn, [Quarantined(mentors[0], "bad row")])
    await clear_quarantine(conn, mentors[1:])
    await clear_quarantine(conn, [])
    assert await _open(conn) == {mentors[0]}
