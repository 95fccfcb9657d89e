"""The suite's layers and its PostgreSQL.

Layers, by directory (markers set here, registered in pyproject.toml):

- ``tests/unit/``: pure code, no database, no process — ``pytest -m "not db"`` (``make test-unit``)
  runs exactly this layer in seconds and never starts a server;
- ``tests/db/``: a real PostgreSQL (marker ``db``);
- ``tests/process/``: the real ``scenario-engine`` process or other programs (``db``, ``acceptance``);
- ``tests/faults/``: the fault suite (``db``, ``faults``);
- ``tests/support/``: the helpers they share (no tests).

The server is session-scoped and lazy: started the first time a test asks for a database (once
per run, or once per xdist worker), with a template database migrated once and a fresh clone of it
per test (``CREATE DATABASE … TEMPLATE``, ~10–40 ms)."""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from scenario_engine.db.connect import SEARCH_PATH, connect, create_pool
from scenario_engine.db.migrations import migrate
from scenario_engine.engine import Engine
from scenario_engine.scenarios.certification import CertificationExpiryRule
from scenario_engine.scenarios.inactivity import InactivityRule
from scenario_engine.scenarios.milestone import MilestoneRule
from scenario_engine.scenarios.rules import Rules
from tests.support.cluster import own_cluster
from tests.support.daemon import DaemonProcess
from tests.support.pg import TestServer, test_server

__all__ = ["own_cluster"]  # a fixture: a private cluster a test may restart (tests/support/cluster.py)

TESTS = Path(__file__).resolve().parent
LAYER_MARKS = {
    "unit": (),
    "db": ("db",),
    "process": ("db", "acceptance"),
    "faults": ("db", "faults"),
}
# Fixtures that mean a database server: a test asking for one does not belong in tests/unit/.
SERVER_FIXTURES = {"pg_server", "own_cluster"}

TEMPLATE = f"scenario_template_{os.getpid()}"
_counter = itertools.count()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test by its layer's directory; a test outside the four layers, or a unit test
    that asks for a database server, is an error rather than a silently mislabelled test."""
    for item in items:
        parts = item.path.resolve().relative_to(TESTS).parts
        layer = parts[0] if len(parts) > 1 else ""
        if layer not in LAYER_MARKS:
            raise pytest.UsageError(f"{item.nodeid}: tests live in tests/{{unit,db,process,faults}}/")
        if layer == "unit" and SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            raise pytest.UsageError(f"{item.nodeid} needs a database server: move it to tests/db/")
        for mark in LAYER_MARKS[layer]:
            item.add_marker(mark)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[TestServer]:
    with test_server() as server:
        yield server


@pytest.fixture(scope="session")
async def template_db(pg_server: TestServer) -> AsyncIterator[str]:
    admin = await asyncpg.connect(pg_server.admin_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}"')
        await admin.execute(f'CREATE DATABASE "{TEMPLATE}"')
        conn = await connect(pg_server.url(TEMPLATE))
        try:
            await migrate(conn)
        finally:
            await conn.close()
        yield TEMPLATE
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}" WITH (FORCE)')
        await admin.close()


async def _clone(pg_server: TestServer, template: str) -> str:
    name = f"scenario_test_{os.getpid()}_{next(_counter)}"
    admin = await asyncpg.connect(pg_server.admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        # For the tests' own ad-hoc SQL only: the engine's queries are schema-qualified and
        # never rely on it (tests/unit/test_sql_qualified.py).
        await admin.execute(f'ALTER DATABASE "{name}" SET search_path = {SEARCH_PATH}')
    finally:
        await admin.close()
    return name


async def _drop(pg_server: TestServer, name: str) -> None:
    admin = await asyncpg.connect(pg_server.admin_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def empty_db_url(pg_server: TestServer) -> AsyncIterator[str]:
    """A database with nothing in it (for migration tests)."""
    name = await _clone(pg_server, "template0")
    yield pg_server.url(name)
    await _drop(pg_server, name)


@pytest.fixture
async def db_url(pg_server: TestServer, template_db: str) -> AsyncIterator[str]:
    """A migrated database of this test's own."""
    name = await _clone(pg_server, template_db)
    yield pg_server.url(name)
    await _drop(pg_server, name)


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[asyncpg.Pool[Any]]:
    p = await create_pool(db_url, min_size=1, max_size=8)
    yield p
    await p.close()


@pytest.fixture
async def conn(db_url: str) -> AsyncIterator[asyncpg.Connection[Any]]:
    c = await connect(db_url)
    yield c
    await c.close()


@pytest.fixture
def rules() -> Rules:
    """Rules used by the scenario tests unless a test builds its own."""
    return Rules(
        daily_cap=3,
        inactivity=[InactivityRule(name="inactive_21d", threshold_days=21, cooldown_days=7, max_reminders=2)],
        milestone=[MilestoneRule(name="sessions_year", metric="sessions", thresholds=[2, 3, 5])],
        certification_expiry=[CertificationExpiryRule(name="cert_expiry", tiers_days=[30, 7, 1])],
    )


@pytest.fixture
async def engine(pool: asyncpg.Pool[Any], rules: Rules) -> Engine:
    return Engine(pool, rules)


@pytest.fixture
def daemons(db_url: str, tmp_path: Any) -> Iterator[Callable[..., DaemonProcess]]:
    """Start real daemons on this test's database; all are killed at the end."""
    started: list[DaemonProcess] = []

    def start(name: str = "daemon", env: dict[str, str] | None = None, **settings: Any) -> DaemonProcess:
        d = DaemonProcess(db_url, tmp_path, name, env, **settings).start()
        started.append(d)
        return d

    yield start
    for d in started:
        d.kill()
