"""The benchmarks' private PostgreSQL cluster and its databases.

The benchmarks start their own cluster the way the test suite does
(``scenario_engine.dev.embedded.start_private_cluster``), with settings sized for a benchmark
machine instead of the test suite's small defaults, and copy populated databases with
``CREATE DATABASE … TEMPLATE`` instead of generating them again.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg

from bench.harness.procfs import parent_pid, proc_cpu_seconds
from scenario_engine.db.connect import Conn, connect, create_pool
from scenario_engine.db.migrations import migrate
from scenario_engine.dev.embedded import (
    FAST_TEST_SETTINGS,
    LocalCluster,
    free_port,
    server_version,
    start_private_cluster,
)

__all__ = [
    "BENCH_PG_SETTINGS",
    "RUNTIME_PG_SETTINGS",
    "Conn",
    "LocalCluster",
    "admin",
    "clone_database",
    "cluster_cpu",
    "connect",
    "cpu_delta",
    "create_database",
    "create_pool",
    "database_exists",
    "drop_database",
    "free_port",
    "leftover_postgres",
    "migrate",
    "prewarm",
    "private_cluster",
    "server_version",
]

# Sweep benchmarks, sized for the reference machine (2 cores, 24 GiB RAM, SSD). Durability is
# off: a benchmark cluster is thrown away, and the bars are about the engine, not about fsync.
BENCH_PG_SETTINGS: dict[str, str] = {
    **FAST_TEST_SETTINGS,  # fsync, synchronous_commit, full_page_writes off; max_connections
    "shared_buffers": "2GB",
    "work_mem": "64MB",
    "maintenance_work_mem": "1GB",
    "max_wal_size": "10GB",
    "min_wal_size": "1GB",
    "checkpoint_timeout": "30min",
    "wal_buffers": "64MB",
    "effective_cache_size": "16GB",
    "random_page_cost": "1.1",  # SSD
    "effective_io_concurrency": "200",
    "max_parallel_workers_per_gather": "2",
    "max_parallel_maintenance_workers": "2",
    # Per-statement time of the engine's named queries (a breakdown of every sweep).
    "shared_preload_libraries": "pg_stat_statements",
    "pg_stat_statements.track": "top",
    "pg_stat_statements.track_planning": "on",
    "pg_stat_statements.max": "5000",
    "track_io_timing": "on",
}

# Runtime benchmarks (a daemon process beside the cluster): durability off, sized for a
# 2-core machine that may run another benchmark beside this one. No pg_stat_statements: it
# costs a little per statement, and these benchmarks measure statement rates.
RUNTIME_PG_SETTINGS: dict[str, str] = {
    **FAST_TEST_SETTINGS,
    "shared_buffers": "1GB",
    "work_mem": "32MB",
    "maintenance_work_mem": "512MB",
    "max_wal_size": "8GB",
    "min_wal_size": "1GB",
    "checkpoint_timeout": "30min",
    "wal_buffers": "64MB",
    "effective_cache_size": "8GB",
    "random_page_cost": "1.1",
}


@contextlib.contextmanager
def private_cluster(
    settings: dict[str, str] | None = None,
    *,
    data_dir: Path | None = None,
    bin_dir: str | None = None,
) -> Iterator[LocalCluster]:
    """A cluster owned by this process (its watchdog stops it if we die); throwaway unless
    ``data_dir`` keeps it for a later run."""
    cluster = start_private_cluster(
        data_dir=data_dir,
        bin_dir=bin_dir,
        settings=settings or RUNTIME_PG_SETTINGS,
        owner_pid=os.getpid(),
    )
    try:
        yield cluster
    finally:
        cluster.close()


async def admin(cluster: LocalCluster) -> asyncpg.Connection[Any]:
    """A superuser connection to the maintenance database (CREATE/DROP DATABASE, stats)."""
    return await asyncpg.connect(cluster.dsn)


async def database_exists(conn: asyncpg.Connection[Any], name: str) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))


async def drop_database(conn: asyncpg.Connection[Any], name: str) -> None:
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def clone_database(conn: asyncpg.Connection[Any], name: str, template: str) -> None:
    """``name`` as a fresh copy of ``template`` (which must have no other sessions)."""
    await drop_database(conn, name)
    # FILE_COPY: a file-level copy (plus a checkpoint) is much faster than WAL_LOG for GBs.
    await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY FILE_COPY')


async def create_database(cluster: LocalCluster, name: str, template: str | None = None) -> str:
    """A migrated empty database, or a copy of ``template``; returns its URL."""
    conn = await admin(cluster)
    try:
        if template:
            await clone_database(conn, name, template)
        else:
            await drop_database(conn, name)
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    if template is None:
        db = await asyncpg.connect(cluster.url(name))
        try:
            await migrate(db)
        finally:
            await db.close()
    return cluster.url(name)


async def prewarm(conn: Conn) -> int:
    """Load the database's relations into shared buffers, largest first (smaller hot ones
    win), as they would be on a live system; returns the blocks read."""
    blocks: int = await conn.fetchval(
        """
        SELECT coalesce(sum(pg_prewarm(oid)), 0) FROM (
            SELECT c.oid FROM pg_class c
            WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'i')
            ORDER BY pg_relation_size(c.oid) DESC) s
        """
    )
    return blocks


def _postmaster_pid(cluster: LocalCluster) -> int | None:
    try:
        return int((cluster.data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def cluster_cpu(cluster: LocalCluster) -> dict[int, float]:
    """CPU time per live process of the cluster (the postmaster and its children)."""
    out = subprocess.run(["pgrep", "-f", "postgres"], capture_output=True, text=True, check=False)
    pm = _postmaster_pid(cluster)
    found: dict[int, float] = {}
    for line in out.stdout.split():
        pid = int(line)
        if pid == pm or parent_pid(pid) == pm:
            found[pid] = proc_cpu_seconds(pid) or 0.0
    return found


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU spent between two snapshots by the processes alive at the second one (a backend
    that exited in between is not counted, one started in between counts whole)."""
    return round(sum(max(0.0, cpu - before.get(pid, 0.0)) for pid, cpu in after.items()), 2)


def leftover_postgres(cluster: LocalCluster) -> list[str]:
    """Processes of this cluster still alive after it was closed (should be none)."""
    out = subprocess.run(["pgrep", "-a", "postgres"], capture_output=True, text=True, check=False)
    return [p for p in out.stdout.splitlines() if p.strip() and str(cluster.data_dir) in p]
