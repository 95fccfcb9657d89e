"""A hook dropped while the daemon runs is reported, not silently endured (issue 16, item 11).

Before: the installation (platform hooks among it) was checked once at start; a trigger dropped
afterwards left the daemon ready and quiet while that table's changes were lost to the event
path. Now runtime/hooks.py re-checks on an interval (here 0.5 s): an error log naming the
trigger, the ``scenario_installation_problems`` gauge, /status, and /readyz 503 — until
``scenario-engine migrate`` puts it back, which requests a full sweep.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import asyncpg
import pytest

from scenario_engine.db.connect import connect
from scenario_engine.db.units import Unit, is_present
from tests.support.cli import run_cli
from tests.support.daemon import DaemonProcess

pytestmark = pytest.mark.acceptance
TRIGGER = "activity_scenario_event_v1"


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if await check():
            return time.monotonic() - start
        await anyio.sleep(0.05)
    raise AssertionError(f"{what} not reached within {timeout} s")


async def test_a_dropped_trigger_is_reported_within_the_interval_and_cleared_by_migrate(
    daemons: Any, pool: Any, db_url: str
) -> None:
    d: DaemonProcess = daemons(installation_check_interval_seconds=0.5)
    await d.wait_ready()
    assert (await d.status())["installation_problems"] == []
    assert await d.metric("scenario_installation_problems") == 0

    await pool.execute(f"DROP TRIGGER {TRIGGER} ON public.activity")

    async def unready() -> bool:
        code, body = await d.http("/readyz")
        return code == 503 and TRIGGER in body.decode()

    took = await eventually(unready, 10, "/readyz naming the dropped trigger")
    print(f"reported {took:.2f} s after the DROP (interval 0.5 s)")
    [problem] = (await d.status())["installation_problems"]
    assert TRIGGER in problem and "scenario-engine migrate" in problem
    assert await d.metric("scenario_installation_problems") == 1
    code, body = await d.http("/readyz")
    assert code == 503 and json.loads(body)["ready"] is False and json.loads(body)["database"] is True
    logged = [e for e in d.log_events() if e.get("event") == "installation_problem"]
    assert len(logged) == 1 and TRIGGER in logged[0]["problem"] and logged[0]["level"] == "error"

    # still one error line, however many checks see it again
    await anyio.sleep(1.5)
    assert len([e for e in d.log_events() if e.get("event") == "installation_problem"]) == 1

    migrated = await run_cli("migrate", env={"SCENARIO_DATABASE_URL": db_url})
    assert migrated.returncode == 0, migrated.stderr
    await d.wait_http("/readyz", 200, timeout=10)
    assert (await d.status())["installation_problems"] == []
    assert await d.metric("scenario_installation_problems") == 0
    assert any(e.get("event") == "installation_problem_resolved" for e in d.log_events())
    # what changed while the trigger was missing was lost to the event path: a full sweep is due
    requests = await pool.fetch(
        "SELECT table_name, operation FROM scenario_engine.scenario_full_sweep_request"
    )
    assert [(r["table_name"], r["operation"]) for r in requests] == [("(installation)", "REPAIRED")]


async def test_a_newer_engine_migrating_meanwhile_is_a_warning_not_unready(daemons: Any, pool: Any) -> None:
    """A rolling upgrade: the new version migrated the database while this one runs. That
    refuses a *start* (exit 2), but the running daemon stays ready and says so once."""
    d: DaemonProcess = daemons(installation_check_interval_seconds=0.3)
    await d.wait_ready()
    await pool.execute(
        "INSERT INTO scenario_engine.scenario_schema_migration (version, name, checksum) "
        "VALUES (9999, 'from_the_future', 'x')"
    )

    async def warned() -> bool:
        return any(e.get("event") == "installation_newer" for e in d.log_events())

    await eventually(warned, 10, "a warning about the newer engine")
    await anyio.sleep(1)
    code, _ = await d.http("/readyz")
    assert code == 200
    assert (await d.status())["installation_problems"] == []
    assert len([e for e in d.log_events() if e.get("event") == "installation_newer"]) == 1
    assert not any(e.get("event") == "installation_problem" for e in d.log_events())


async def test_only_a_missing_object_reads_as_a_missing_hook(db_url: str) -> None:
    """A present query that fails because what it names is not there says "missing"; one that
    was cancelled (statement_timeout) says nothing about the hook and must not read as missing —
    else a slow catalogue would make the watch report a dropped trigger."""
    conn = await connect(db_url)
    try:
        missing = Unit("t", "t", "SELECT has_schema_privilege('no_such_role_xyz', 'public', 'USAGE')", "")
        assert await is_present(conn, missing) is False
        await conn.execute("SET statement_timeout = '50ms'")
        slow = Unit("t", "t", "SELECT pg_sleep(1) IS NOT NULL", "")
        with pytest.raises(asyncpg.QueryCanceledError):
            await is_present(conn, slow)
    finally:
        await conn.close()
