"""Migrations: idempotent, serialised, refuse edited history, atomic, never drop data."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import replace
from typing import Any

import anyio
import asyncpg
import pytest

from scenario_engine.db.connect import connect
from scenario_engine.db.migrations import LEGACY_LAST_VERSION, Migration, MigrationError, discover, migrate


def current() -> list[Migration]:
    """What a fresh install applies: 0001–0007 only finish installations that began with them."""
    return [m for m in discover() if m.version > LEGACY_LAST_VERSION]


async def test_migrate_twice_is_a_no_op(empty_db_url: str) -> None:
    conn = await connect(empty_db_url)
    try:
        first = await migrate(conn)
        assert [m.version for m in first.applied] == [m.version for m in current()]
        tables_before = await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname='public'")
        second = await migrate(conn)
        assert second.applied == []
        assert len(second.already_applied) == len(first.applied)
        tables_after = await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname='public'")
        assert tables_after == tables_before
    finally:
        await conn.close()


async def test_concurrent_migrations_apply_each_file_once(empty_db_url: str) -> None:
    reports = []

    async def one() -> None:
        conn = await connect(empty_db_url)
        try:
            reports.append(await migrate(conn))
        finally:
            await conn.close()

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(one)
    applied = sorted(m.version for r in reports for m in r.applied)
    assert applied == [m.version for m in current()]
    conn = await connect(empty_db_url)
    try:
        rows = await conn.fetchval("SELECT count(*) FROM scenario_schema_migration")
        assert rows == len(current())
    finally:
        await conn.close()


async def test_edited_applied_migration_is_refused(empty_db_url: str) -> None:
    conn = await connect(empty_db_url)
    try:
        migrations = discover()
        await migrate(conn, migrations)
        edited = [*migrations[:-1], replace(migrations[-1], sql=migrations[-1].sql + "\n-- edited\n")]
        with pytest.raises(MigrationError, match=re.escape(migrations[-1].path) + ".*edited"):
            await migrate(conn, edited)
    finally:
        await conn.close()


async def test_failing_migration_leaves_database_as_it_was(empty_db_url: str) -> None:
    conn = await connect(empty_db_url)
    try:
        migrations = discover()
        broken = Migration(
            version=9999,
            name="broken",
            path="9999_broken.sql",
            sql="CREATE TABLE half_done (id int); SELECT no_such_function();",
        )
        with pytest.raises(MigrationError, match=r"9999_broken\.sql"):
            await migrate(conn, [*migrations, broken])
        assert await conn.fetchval("SELECT to_regclass('half_done')") is None
        versions = await conn.fetch("SELECT version FROM scenario_schema_migration ORDER BY 1")
        assert [r["version"] for r in versions] == [m.version for m in current()]
    finally:
        await conn.close()


async def test_migrate_keeps_platform_data(db_url: str) -> None:
    conn: asyncpg.Connection[Any] = await connect(db_url)
    try:
        await conn.execute("INSERT INTO peer_mentor (organization_id) VALUES (gen_random_uuid())")
        await conn.execute(
            "DELETE FROM scenario_schema_migration WHERE version = "
            "(SELECT max(version) FROM scenario_schema_migration)"
        )
        report = await migrate(conn)
        assert len(report.applied) == 1  # the re-run file is idempotent
        assert await conn.fetchval("SELECT count(*) FROM peer_mentor") == 1
    finally:
        await conn.close()


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scenario_engine", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


async def test_cli_migrate_then_refuse_edit(empty_db_url: str) -> None:
    first = await anyio.to_thread.run_sync(lambda: _cli("migrate", "--database-url", empty_db_url))
    assert first.returncode == 0, first.stderr
    assert "applied 0008_engine_schema.sql" in first.stdout
    second = await anyio.to_thread.run_sync(lambda: _cli("migrate", "--database-url", empty_db_url))
    assert second.returncode == 0
    assert "up to date" in second.stdout
    conn = await connect(empty_db_url)
    try:
        await conn.execute("UPDATE scenario_schema_migration SET checksum = 'x' WHERE version = 8")
    finally:
        await conn.close()
    third = await anyio.to_thread.run_sync(lambda: _cli("migrate", "--database-url", empty_db_url))
    assert third.returncode == 1
    assert "0008_engine_schema.sql" in third.stderr
    assert "edited" in third.stderr
