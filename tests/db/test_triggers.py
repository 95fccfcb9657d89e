"""The change-capture triggers: one event row per changed row and, in notify mode, an empty
NOTIFY (a wake-up that names nothing) per writing transaction. Poll mode — the default of a new
installation since sql/0025 — writes the event row only."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any, cast

import asyncpg
import pytest

from scenario_engine.db.connect import mark_engine_write
from scenario_engine.db.migrations import discover, migrate
from tests.support.factories import add_activity, add_certification, add_mentor

NOW = dt.datetime(2026, 6, 1, 12, tzinfo=dt.UTC)


class Listener:
    def __init__(self) -> None:
        self.payloads: list[str] = []

    def __call__(self, _conn: Any, _pid: int, _channel: str, payload: object) -> None:
        self.payloads.append(cast(str, payload))  # a NOTIFY payload is text

    async def settle(self) -> list[str]:
        await asyncio.sleep(0.2)
        return list(self.payloads)


@pytest.fixture
async def listener(db_url: str) -> Any:
    """A LISTENing connection, with the triggers in notify mode (what the NOTIFY tests test)."""
    conn = await asyncpg.connect(db_url)
    await conn.execute(
        "UPDATE scenario_engine.scenario_engine_setting SET value = 'notify' WHERE key = 'notify_mode'"
    )
    lst = Listener()
    await conn.add_listener("scenario_events", lst)
    yield lst
    await conn.close()


async def _events(conn: asyncpg.Connection[Any]) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM scenario_event ORDER BY id")


@pytest.mark.parametrize("table", ["activity", "certification", "achievement", "notification_preference"])
async def test_each_operation_writes_one_event_and_one_notification(
    conn: asyncpg.Connection[Any], listener: Listener, table: str
) -> None:
    mentor = await add_mentor(conn)
    if table == "activity":
        await add_activity(conn, mentor, NOW)
        await conn.execute("UPDATE activity SET duration_minutes = 90")
        await conn.execute("DELETE FROM activity")
    elif table == "certification":
        await add_certification(conn, mentor, expires_at=NOW)
        await conn.execute("UPDATE certification SET revoked_at = issued_at")
        await conn.execute("DELETE FROM certification")
    elif table == "achievement":
        await conn.execute(
            "INSERT INTO achievement (mentor_id, milestone, threshold, period) VALUES ($1, 'm', 10, '2026')",
            mentor,
        )
        await conn.execute("UPDATE achievement SET threshold = 25")
        await conn.execute("DELETE FROM achievement")
    else:
        await conn.execute(
            "INSERT INTO notification_preference (mentor_id, scenario_type) VALUES ($1, 'milestone')", mentor
        )
        await conn.execute("UPDATE notification_preference SET opted_out = false")
        await conn.execute("DELETE FROM notification_preference")

    events = await _events(conn)
    assert [(e["table_name"], e["operation"]) for e in events] == [
        (table, "INSERT"),
        (table, "UPDATE"),
        (table, "DELETE"),
    ]
    assert all(e["mentor_id"] == mentor for e in events)
    # one wake-up per writing transaction, naming nothing: no table, mentor, operation or id
    assert await listener.settle() == ["", "", ""]


async def test_multi_row_statement_writes_one_event_per_row_and_wakes_once(
    conn: asyncpg.Connection[Any], listener: Listener
) -> None:
    mentor = await add_mentor(conn)
    await conn.execute(
        "INSERT INTO activity (mentor_id, kind, occurred_at) "
        "SELECT $1, 'session', $2::timestamptz - g * interval '1 day' FROM generate_series(1, 50) g",
        mentor,
        NOW,
    )
    assert len(await _events(conn)) == 50
    assert await listener.settle() == [""]  # identical payloads of one transaction are merged


async def test_rolled_back_platform_transaction_leaves_no_event(
    conn: asyncpg.Connection[Any], listener: Listener
) -> None:
    mentor = await add_mentor(conn)
    tx = conn.transaction()
    await tx.start()
    await add_activity(conn, mentor, NOW)
    await tx.rollback()
    assert await _events(conn) == []
    assert await listener.settle() == []


async def test_engine_own_writes_produce_no_event(conn: asyncpg.Connection[Any], listener: Listener) -> None:
    mentor = await add_mentor(conn)
    async with conn.transaction():
        await mark_engine_write(conn)
        await conn.execute(
            "INSERT INTO achievement (mentor_id, milestone, threshold, period, awarded_by) "
            "VALUES ($1, 'm', 10, '2026', 'engine')",
            mentor,
        )
    # The marker is transaction-local: the next platform write is captured again.
    await add_activity(conn, mentor, NOW)
    events = await _events(conn)
    assert [e["table_name"] for e in events] == ["activity"]
    assert len(await listener.settle()) == 1


async def test_poll_only_mode_writes_event_without_notify(
    conn: asyncpg.Connection[Any], listener: Listener
) -> None:
    mentor = await add_mentor(conn)
    await conn.execute("UPDATE scenario_engine_setting SET value = 'poll' WHERE key = 'notify_mode'")
    await add_activity(conn, mentor, NOW)
    assert len(await _events(conn)) == 1
    assert await listener.settle() == []
    await conn.execute("UPDATE scenario_engine_setting SET value = 'notify' WHERE key = 'notify_mode'")
    await add_activity(conn, mentor, NOW)
    assert len(await listener.settle()) == 1


async def test_notify_mode_rejects_unknown_values(conn: asyncpg.Connection[Any]) -> None:
    with pytest.raises(asyncpg.CheckViolationError):
        await conn.execute("UPDATE scenario_engine_setting SET value = 'loud' WHERE key = 'notify_mode'")


async def test_missing_setting_row_defaults_to_poll(
    conn: asyncpg.Connection[Any], listener: Listener
) -> None:
    """Since sql/0025 a missing row means poll: the platform's commits take no NOTIFY lock."""
    mentor = await add_mentor(conn)
    await conn.execute("DELETE FROM scenario_engine_setting")
    await add_activity(conn, mentor, NOW)
    assert len(await _events(conn)) == 1
    assert await listener.settle() == []


async def _notify_mode(url: str) -> str | None:
    conn = await asyncpg.connect(url)
    try:
        mode: str | None = await conn.fetchval(
            "SELECT value FROM scenario_engine.scenario_engine_setting WHERE key = 'notify_mode'"
        )
        return mode
    finally:
        await conn.close()


async def test_new_installation_defaults_to_poll(empty_db_url: str) -> None:
    conn = await asyncpg.connect(empty_db_url)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    assert await _notify_mode(empty_db_url) == "poll"


async def test_upgrade_keeps_the_mode_of_an_installation_that_captured_events(empty_db_url: str) -> None:
    """An installation migrated before 0025 that has captured events keeps 'notify' (0008's row
    cannot tell a choice from the old default); one that never captured an event is new."""
    before = [m for m in discover() if m.version < 25]
    conn = await asyncpg.connect(empty_db_url)
    try:
        await migrate(conn, before)
        mentor = await add_mentor(conn)
        await add_activity(conn, mentor, NOW)
        await conn.execute("DELETE FROM scenario_engine.scenario_event")  # pruned: still used
        await migrate(conn)
    finally:
        await conn.close()
    assert await _notify_mode(empty_db_url) == "notify"


async def test_oversized_row_never_fails_the_platform_write(
    conn: asyncpg.Connection[Any], listener: Listener
) -> None:
    mentor = await add_mentor(conn)
    huge = "x" * 1_000_000  # far above the 8000-byte NOTIFY limit
    await conn.execute(
        "INSERT INTO activity (mentor_id, kind, occurred_at, note) VALUES ($1, 'other', $2, $3)",
        mentor,
        NOW,
        huge,
    )
    await conn.execute(
        "INSERT INTO certification (mentor_id, type, issued_at, expires_at) VALUES ($1, $2, $3, $4)",
        mentor,
        "t" * 100_000,
        NOW,
        NOW + dt.timedelta(days=1),
    )
    assert await listener.settle() == ["", ""]


async def test_mentor_change_records_both_mentors(conn: asyncpg.Connection[Any]) -> None:
    a, b = await add_mentor(conn), await add_mentor(conn)
    await add_activity(conn, a, NOW)
    await conn.execute("UPDATE activity SET mentor_id = $1", b)
    last = (await _events(conn))[-1]
    assert (last["mentor_id"], last["old_mentor_id"]) == (b, a)


async def test_trigger_tolerates_a_platform_table_with_nullable_mentor(
    conn: asyncpg.Connection[Any],
) -> None:
    # Existing platform schemas may be laxer than the reference one: the trigger must
    # still let the write through and leave an event (with a null mentor) to dead-letter.
    await conn.execute("ALTER TABLE activity ALTER COLUMN mentor_id DROP NOT NULL")
    await conn.execute("INSERT INTO activity (mentor_id, kind, occurred_at) VALUES (NULL, 'session', now())")
    events = await _events(conn)
    assert len(events) == 1
    assert events[0]["mentor_id"] is None


@pytest.mark.parametrize(
    ("sql", "constraint"),
    [
        (
            "INSERT INTO activity (mentor_id, kind, occurred_at, duration_minutes) "
            "VALUES ($1, 'session', now(), -5)",
            "activity_duration_not_negative",
        ),
        (
            "INSERT INTO activity (mentor_id, kind, occurred_at) VALUES ($1, 'party', now())",
            "activity_kind_known",
        ),
        (
            "INSERT INTO certification (mentor_id, type, issued_at, expires_at) "
            "VALUES ($1, 'x', now(), now() - interval '1 day')",
            "certification_expires_after_issue",
        ),
        ("UPDATE peer_mentor SET status = 'sleeping' WHERE id = $1", "peer_mentor_status_known"),
        ("UPDATE peer_mentor SET timezone = 'Mars/Olympus' WHERE id = $1", "peer_mentor_timezone_valid"),
    ],
)
async def test_constraints_reject_nonsense(conn: asyncpg.Connection[Any], sql: str, constraint: str) -> None:
    mentor = await add_mentor(conn)
    with pytest.raises(asyncpg.CheckViolationError, match=constraint):
        await conn.execute(sql, mentor)
