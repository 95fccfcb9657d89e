"""The capture trigger queries nothing per row (sql/0031): notify_mode is mirrored by a marker
view that a statement trigger on the settings table creates and drops, and a switch still
reaches every session at its next platform write, as the one-statement switch in
docs/OPERATIONS.md promises."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import asyncpg

from tests.support.factories import add_activity, add_mentor

NOW = dt.datetime(2026, 6, 1, 12, tzinfo=dt.UTC)
CAPTURE = ("scenario_capture_event_v1", "scenario_capture_mentor_event_v1")


async def _sources(conn: asyncpg.Connection[Any]) -> dict[str, str]:
    rows = await conn.fetch(
        "SELECT proname, prosrc FROM pg_proc "
        "WHERE pronamespace = 'scenario_engine'::regnamespace AND proname = ANY($1::text[])",
        list(CAPTURE),
    )
    return {r["proname"]: r["prosrc"] for r in rows}


async def _set_mode(conn: asyncpg.Connection[Any], mode: str) -> None:
    await conn.execute(
        "UPDATE scenario_engine.scenario_engine_setting SET value = $1 WHERE key = 'notify_mode'", mode
    )


MARKER = "SELECT to_regclass('scenario_engine.scenario_notify_on_v1') IS NOT NULL"


async def test_the_capture_functions_query_nothing_per_row(db_url: str) -> None:
    """Neither function reads the settings table; their bodies are the same in both modes, and
    the marker they test exists exactly in notify mode."""
    conn = await asyncpg.connect(db_url)
    try:
        bodies = {}
        for mode in ("poll", "notify"):
            await _set_mode(conn, mode)
            assert await conn.fetchval(MARKER) is (mode == "notify")
            bodies[mode] = await _sources(conn)
            assert set(bodies[mode]) == set(CAPTURE)
            assert not any("scenario_engine_setting" in source for source in bodies[mode].values())
        assert bodies["poll"] == bodies["notify"]
        await _set_mode(conn, "poll")
        tr = conn.transaction()
        await tr.start()
        await _set_mode(conn, "notify")
        assert await conn.fetchval(MARKER)
        await tr.rollback()  # a switch rolled back leaves the marker as the table says
        assert await conn.fetchval(MARKER) is False
    finally:
        await conn.close()


async def test_a_switch_reaches_a_session_that_already_wrote(db_url: str) -> None:
    """A platform session that already ran the poll-mode function notifies after a switch to
    notify at its next write, and stops after a switch back — by UPDATE, DELETE of the row,
    TRUNCATE of the table, or INSERT of the row (every way the table can say a mode)."""
    admin = await asyncpg.connect(db_url)
    platform = await asyncpg.connect(db_url)
    received: list[str] = []
    await admin.add_listener("scenario_events", lambda *args: received.append(args[-1]))

    async def notified_on_write() -> bool:
        received.clear()
        await add_activity(platform, mentor, NOW)
        await asyncio.sleep(0.3)
        return bool(received)

    try:
        await _set_mode(admin, "poll")
        mentor = await add_mentor(platform)
        assert not await notified_on_write()
        await _set_mode(admin, "notify")
        assert await notified_on_write()
        await admin.execute("DELETE FROM scenario_engine.scenario_engine_setting WHERE key = 'notify_mode'")
        assert not await notified_on_write()  # a missing row means poll
        await admin.execute(
            "INSERT INTO scenario_engine.scenario_engine_setting (key, value) "
            "VALUES ('notify_mode', 'notify')"
        )
        assert await notified_on_write()
        await admin.execute("TRUNCATE scenario_engine.scenario_engine_setting")
        assert not await notified_on_write()
        events = await admin.fetchval("SELECT count(*) FROM scenario_engine.scenario_event")
        assert events == 5  # every write captured in either mode
    finally:
        await platform.close()
        await admin.close()
