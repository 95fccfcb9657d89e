"""A platform session cannot steer the engine's erasure with a setting (issue 16, item 11).

Before 0022 the deferred late pass of a peer_mentor DELETE read its high-water mark from the
custom setting ``scenario_engine.erase_events_after``, which any session may preset: 'garbage'
made the platform's own DELETE fail at COMMIT, a huge number left the scenario_event rows that
the cascaded deletes wrote — naming the erased mentor — in place. Each case below runs as a
platform role with no grant on the engine's schema, in one transaction, and checks that the
DELETE commits and that no event row names the mentor afterwards.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from scenario_engine.db.connect import connect
from tests.support import pg
from tests.support.catalog import PLATFORM_TABLES
from tests.support.factories import add_activity, add_certification, add_mentor, opt_out
from tests.support.roles import create_role, drop_roles, unique_roles, url_as

NOW = dt.datetime.now(dt.UTC)
FORGED = ["garbage", "9223372036854775807", "99999999999999999999999", "-5", "", "1e3"]


@pytest.fixture
async def platform_role(pg_server: pg.TestServer) -> AsyncIterator[str]:
    roles = unique_roles()
    yield roles.name("platform")
    admin = await asyncpg.connect(pg_server.admin_dsn)
    try:
        await drop_roles(admin, [roles.name("platform")])
    finally:
        await admin.close()


async def events_naming(conn: asyncpg.Connection[Any], mentor: uuid.UUID) -> int:
    count: int = await conn.fetchval(
        "SELECT count(*) FROM scenario_engine.scenario_event WHERE mentor_id = $1 OR old_mentor_id = $1",
        mentor,
    )
    return count


@pytest.mark.parametrize("how", ["session", "transaction"])
async def test_a_preset_erase_setting_neither_fails_the_delete_nor_keeps_events(
    platform_role: str, db_url: str, how: str
) -> None:
    admin = await connect(db_url)
    try:
        await create_role(admin, platform_role)
        for table in PLATFORM_TABLES:
            await admin.execute(f'ALTER TABLE public.{table} OWNER TO "{platform_role}"')
        mentors = {}
        for value in FORGED:
            mentor = await add_mentor(admin, joined_at=NOW - dt.timedelta(days=100))
            await add_activity(admin, mentor, NOW - dt.timedelta(days=1))
            await add_certification(admin, mentor, expires_at=NOW + dt.timedelta(days=10))
            await opt_out(admin, mentor, "inactivity")
            mentors[value] = mentor
        # a newer event (of someone else) than any of theirs: the old 'huge number' hides above it
        await add_activity(admin, await add_mentor(admin), NOW)

        platform = await connect(url_as(db_url, platform_role))
        try:
            for value, mentor in mentors.items():
                assert await events_naming(admin, mentor) > 0  # the inserts wrote events
                if how == "session":
                    await platform.execute(
                        "SELECT set_config('scenario_engine.erase_events_after', $1, false)", value
                    )
                    async with platform.transaction():
                        await platform.execute("DELETE FROM public.peer_mentor WHERE id = $1", mentor)
                else:
                    async with platform.transaction():
                        await platform.execute(
                            "SELECT set_config('scenario_engine.erase_events_after', $1, true)", value
                        )
                        await platform.execute("DELETE FROM public.peer_mentor WHERE id = $1", mentor)
                # committed: the mentor is gone, and so is every event that named them (the
                # cascaded activity, certification and preference deletes wrote some)
                assert (
                    await admin.fetchval("SELECT count(*) FROM public.peer_mentor WHERE id = $1", mentor) == 0
                )
                assert await events_naming(admin, mentor) == 0, value
        finally:
            await platform.close()
    finally:
        await admin.close()


async def test_two_deletes_in_one_transaction_and_a_savepoint_rolled_back(db_url: str) -> None:
    """The mark is per top-level transaction: a second DELETE keeps the first one's mark, and a
    DELETE rolled back to a savepoint leaves nothing that a later DELETE could misread."""
    conn = await connect(db_url)
    try:
        first, second, kept = [
            await add_mentor(conn, joined_at=NOW - dt.timedelta(days=50)) for _ in range(3)
        ]
        for m in (first, second, kept):
            await add_activity(conn, m, NOW - dt.timedelta(days=2))
        async with conn.transaction():
            await conn.execute("DELETE FROM public.peer_mentor WHERE id = $1", first)
            await add_activity(conn, second, NOW - dt.timedelta(days=1))  # an event after the mark
            try:
                async with conn.transaction():
                    await conn.execute("DELETE FROM public.peer_mentor WHERE id = $1", kept)
                    raise RuntimeError("roll back to the savepoint")
            except RuntimeError:
                pass
            await conn.execute("DELETE FROM public.peer_mentor WHERE id = $1", second)
        for gone in (first, second):
            assert await events_naming(conn, gone) == 0
        assert await conn.fetchval("SELECT count(*) FROM public.peer_mentor WHERE id = $1", kept) == 1
        assert await events_naming(conn, kept) > 0
        # marks of finished transactions are cleared by the next erasing statement
        async with conn.transaction():
            await conn.execute("DELETE FROM public.peer_mentor WHERE id = $1", kept)
        marks = await conn.fetchval("SELECT count(*) FROM scenario_engine.scenario_erasure_mark")
        assert marks <= 1
    finally:
        await conn.close()


async def test_a_forged_origin_does_not_stop_the_erasure(db_url: str) -> None:
    """scenario_engine.origin = 'engine' hides a session's own changes from the event path
    (accepted, docs/SECURITY.md) — but not its deletes of mentors from the erasure."""
    conn = await connect(db_url)
    try:
        mentor = await add_mentor(conn, joined_at=NOW - dt.timedelta(days=50))
        await add_activity(conn, mentor, NOW - dt.timedelta(days=2))
        await opt_out(conn, mentor, "all")
        before = await events_naming(conn, mentor)
        assert before == 2
        async with conn.transaction():
            await conn.execute("SELECT set_config('scenario_engine.origin', 'engine', true)")
            await conn.execute("DELETE FROM public.peer_mentor WHERE id = $1", mentor)
        assert await events_naming(conn, mentor) == 0
    finally:
        await conn.close()
