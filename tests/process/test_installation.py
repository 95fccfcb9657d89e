"""`run`'s start-up check names what is missing instead of crash-looping on it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from scenario_engine.db.connect import connect
from scenario_engine.db.installation import check_installation
from tests.support import pg
from tests.support.roles import Roles, create_role, drop_roles, unique_roles, url_as


@pytest.fixture
async def roles(pg_server: pg.TestServer) -> AsyncIterator[Roles]:
    r = unique_roles()
    yield r
    admin = await asyncpg.connect(pg_server.admin_dsn)
    try:
        await drop_roles(admin, [r.name("member"), r.name("stranger")])
    finally:
        await admin.close()


async def test_unmigrated_database_says_run_migrate(empty_db_url: str) -> None:
    conn = await connect(empty_db_url)
    try:
        report = await check_installation(conn)
    finally:
        await conn.close()
    assert not report.ok
    assert "scenario-engine migrate" in report.problems[0]


async def test_missing_trigger_is_fatal_missing_index_a_warning(db_url: str) -> None:
    conn = await connect(db_url)
    try:
        assert (await check_installation(conn)).ok
        await conn.execute("DROP INDEX public.activity_occurred_idx")
        report = await check_installation(conn)
        assert report.ok and any("activity_occurred_idx" in w for w in report.warnings)
        await conn.execute("DROP TRIGGER activity_scenario_event_v1 ON public.activity")
        report = await check_installation(conn)
        assert not report.ok
        assert any("activity_scenario_event_v1" in p for p in report.problems)
    finally:
        await conn.close()


async def test_role_without_runtime_grants_is_told_how_to_get_them(roles: Roles, db_url: str) -> None:
    admin = await connect(db_url)
    try:
        stranger, member = roles.name("stranger"), roles.name("member")
        await create_role(admin, stranger)
        await create_role(admin, member)
        await admin.execute(f'GRANT scenario_engine_runtime TO "{member}"')
        as_stranger = await connect(url_as(db_url, stranger))
        try:
            report = await check_installation(as_stranger)
        finally:
            await as_stranger.close()
        assert not report.ok
        assert f"--grant-runtime {stranger}" in report.problems[0]
        as_member = await connect(url_as(db_url, member))
        try:
            assert (await check_installation(as_member)).ok
        finally:
            await as_member.close()
    finally:
        await admin.close()


async def test_run_against_an_unmigrated_database_is_one_line_and_exit_2(empty_db_url: str) -> None:
    from tests.support.cli import run_cli

    result = await run_cli(
        "run", env={"SCENARIO_DATABASE_URL": empty_db_url, "SCENARIO_STATUS_PORT": "0"}, timeout=60
    )
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("run:")]
    assert len(lines) == 1 and "scenario-engine migrate" in lines[0]
    assert "Traceback" not in result.stderr
