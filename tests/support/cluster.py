"""A private PostgreSQL cluster a test may stop, restart or kill (``own_cluster``, served by
tests/conftest.py to every layer), never the session-wide server other tests share: the
restart and outage tests of tests/process/ and tests/faults/ use it."""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator

import anyio
import pytest

from scenario_engine.db.connect import connect
from scenario_engine.db.migrations import migrate
from scenario_engine.dev.embedded import FAST_TEST_SETTINGS, LocalCluster, start_private_cluster
from tests.support.pg import allow_unqualified_test_sql


def pg_ctl(cluster: LocalCluster, *args: str) -> None:
    """pg_ctl on the test's own cluster (as its OS user when we are root)."""
    cmd = [str(cluster.bin_dir / "pg_ctl"), "-D", str(cluster.data_dir), *args]
    if cluster.user is not None:
        cmd = ["runuser", "-u", cluster.user, "--", *cmd]
    subprocess.run(cmd, check=True, capture_output=True, cwd="/", timeout=60)


@pytest.fixture
async def own_cluster() -> AsyncIterator[LocalCluster]:
    """A private, migrated server that this test may restart (never the session-wide one)."""
    # synchronous_commit on: an immediate stop is a crash, and with it off the last commits the
    # test saw acknowledged would be lost by Postgres itself, not by the engine.
    settings = {**FAST_TEST_SETTINGS, "synchronous_commit": "on"}
    cluster = await anyio.to_thread.run_sync(
        lambda: start_private_cluster(settings=settings, owner_pid=os.getpid())
    )
    try:
        conn = await connect(cluster.dsn)
        try:
            await migrate(conn)
            await allow_unqualified_test_sql(conn)
        finally:
            await conn.close()
        yield cluster
    finally:
        await anyio.to_thread.run_sync(cluster.close)
