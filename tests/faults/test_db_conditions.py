"""The "database condition" matrix (issue 16, items 1 and 2): conditions of a hosted Postgres
that are not outages and not bugs, each injected for real under the real daemon while a writer
inserts activity and certifications.

* read-only, as after a failover: ``ALTER DATABASE … SET default_transaction_read_only = on``
  and the daemon's sessions terminated so that they reconnect to a read-only server;
* a lock held for seconds by another session on a table the engine writes
  (``scenario_notification``, SHARE mode: reads go on, writes wait), under a role-level
  ``lock_timeout``, and again under a role-level ``statement_timeout``;
* a platform column renamed under the engine (``activity.occurred_at``), then renamed back;
* a full disk: ``scenario_notification`` moved to a tablespace on a tiny tmpfs, which is then
  filled, so that the server's next extension of the table fails with ``No space left on
  device`` (SQLSTATE 53100).

For each: the process stays up, /readyz answers 503 and names the condition, /status and the
metric ``scenario_database_condition`` show it, nothing is quarantined, no event is
dead-lettered or has an attempt counted against it; once the condition clears, /readyz is
200 again, everything is caught up and the ledger check passes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import random
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest

from scenario_engine.db.connect import _init_connection
from scenario_engine.scenarios.rules import Rules
from tests.support.daemon import DaemonProcess
from tests.support.faults import (
    FaultGateway,
    add_population,
    alive,
    assert_ledger,
    caught_up,
    eventually,
    now,
    read_ledger,
    record,
)
from tests.support.figures import Figures

pytestmark = [pytest.mark.faults, pytest.mark.acceptance]

DAEMON: dict[str, Any] = {
    "push_provider": "webhook",
    "push_concurrency": 4,
    "push_batch_size": 20,
    "push_rate_per_second": 10_000,
    "push_timeout_seconds": 1,
    "push_lease_seconds": 2,
    "push_backoff_base_seconds": 0.1,
    "push_backoff_max_seconds": 0.5,
    "poll_interval_seconds": 0.5,
    "dispatch_poll_interval_seconds": 0.2,
    "drain_batch_size": 25,
    "sweep_interval_seconds": 2,
    "sweep_batch_size": 100,
    "full_sweep_interval_hours": 0,
    "sweep_lease_seconds": 5,
    "leader_retry_seconds": 0.5,
}
MENTORS = 150
HOLD_SECONDS = 4.0  # how long each condition is kept once the daemon has named it
ENGINE = "application_name LIKE 'scenario-engine%'"
# The test's own sessions (writer, checks) are the platform's: not read-only, no timeouts.
TEST_SESSION = {"default_transaction_read_only": "off", "lock_timeout": "0", "statement_timeout": "0"}
DAY = dt.timedelta(days=1)


async def platform_pool(db_url: str) -> Any:
    """The test's pool: the engine's codecs, the platform's session settings."""
    return await asyncpg.create_pool(
        db_url,
        min_size=1,
        max_size=4,
        init=_init_connection,
        server_settings={"application_name": "fault-test", **TEST_SESSION},
    )


@dataclass
class Injected:
    """What was done to the database, for the figures: a description and how many times."""

    kind: str
    faults: int = 1


async def terminate_engine(pool: Any) -> int:
    n: int = await pool.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        f"WHERE datname = current_database() AND {ENGINE}"
    )
    return n


# The name under which the platform writes activity.occurred_at: a platform migration that
# renames it changes its own code too, and only the engine is left behind.
PLATFORM = {"occurred_at": "occurred_at"}


async def platform_writer(pool: Any, mentors: list[uuid.UUID], stop: anyio.Event, counter: list[int]) -> None:
    """The platform at work: activity (sessions: milestones) and certifications (expiry
    reminders), in separate transactions. Survives any error."""
    rng = random.Random(16)
    while not stop.is_set():
        at = now() - dt.timedelta(hours=1)
        picked = rng.sample(mentors, 8)
        column = PLATFORM["occurred_at"]
        for sql, rows in (
            (
                f"INSERT INTO public.activity (mentor_id, kind, {column}) VALUES ($1, 'session', $2)",
                [(m, at) for m in picked[:6] for _ in range(2)],
            ),
            (
                "INSERT INTO public.certification (mentor_id, type, issued_at, expires_at) "
                "VALUES ($1, 'first_aid', $2, $3)",
                [(m, at - 360 * DAY, at + 5 * DAY) for m in picked[6:]],
            ),
        ):
            try:
                async with pool.acquire() as conn, conn.transaction():
                    await conn.executemany(sql, rows)
                counter[0] += 1
            except Exception:
                if stop.is_set():
                    return
        with anyio.move_on_after(0.2):
            await stop.wait()


async def readiness(d: DaemonProcess) -> tuple[int, dict[str, Any]]:
    code, body = await d.http("/readyz")
    return code, json.loads(body)


async def quarantined(pool: Any) -> int:
    n: int = await pool.fetchval("SELECT count(*) FROM scenario_engine.scenario_quarantine")
    return n


async def burnt(pool: Any) -> int:
    """Events dead-lettered or with a failed attempt recorded against them."""
    n: int = await pool.fetchval(
        "SELECT count(*) FROM scenario_engine.scenario_event "
        "WHERE dead_at IS NOT NULL OR last_error IS NOT NULL OR attempts > 1"
    )
    return n


async def run_condition(
    db_url: str,
    tmp_path: Path,
    rules_path: Path,
    fault_rules: Rules,
    figures: Figures,
    *,
    expected: str,
    inject: Callable[[Any], Awaitable[Injected]],
    clear: Callable[[Any], Awaitable[None]],
    before_start: Callable[[Any], Awaitable[None]] | None = None,
    loops: tuple[str, ...] = ("drain",),
) -> None:
    """Run the daemon through one condition (see the module docstring); ``loops`` are the
    work loops that must have backed off on it (logged with the condition's name)."""
    pool = await platform_pool(db_url)
    gw = FaultGateway(delay=0.02)
    await gw.start()
    d = DaemonProcess(db_url, tmp_path, expected, rules_file=rules_path, push_webhook_url=gw.url, **DAEMON)
    stop = anyio.Event()
    writes = [0]
    seen: dict[str, Any] = {}
    try:
        mentors = await add_population(pool, MENTORS)
        if before_start is not None:
            await before_start(pool)
        d.start()
        await d.wait_ready(timeout=30)
        await eventually(lambda: caught_up(pool), 60, "the first sweep delivered", d)
        async with anyio.create_task_group() as tg:
            tg.start_soon(platform_writer, pool, mentors, stop, writes)
            await anyio.sleep(1)
            injected = await inject(pool)
            figures.fault(injected.kind, injected.faults)
            started = time.monotonic()

            async def named() -> bool:
                code, body = await readiness(d)
                names = {c["condition"] for c in body.get("conditions", {}).values()}
                if code == 503 and expected in names:
                    seen.update(body)
                    return True
                return False

            await eventually(named, 60, f"/readyz 503 naming {expected}", d)
            to_503 = time.monotonic() - started
            status = await d.status()
            assert expected in {c["condition"] for c in status["conditions"].values()}, status
            # The open probe names the condition only; the server's words are on /status (token).
            assert all("detail" not in c for c in seen["conditions"].values()), seen
            assert await d.metric("scenario_database_condition") >= 1
            # The condition lasts: the process stays up, unready, and blames no row.
            deadline = time.monotonic() + HOLD_SECONDS
            before = writes[0]
            while time.monotonic() < deadline:
                assert alive(d), d.logs()[-4000:]
                assert await quarantined(pool) == 0, d.logs()[-4000:]
                assert await burnt(pool) == 0, d.logs()[-4000:]
                assert (await readiness(d))[0] == 503
                await anyio.sleep(0.25)
            pending = await pool.fetchval(
                "SELECT count(*) FROM scenario_engine.scenario_event WHERE processed_at IS NULL"
            )
            await clear(pool)
            cleared = time.monotonic()
            await d.wait_ready(timeout=60)
            to_ready = time.monotonic() - cleared
            await anyio.sleep(1)  # the writer goes on after the condition
            stop.set()
        assert writes[0] > before, "the writer wrote during the condition"
        await eventually(lambda: caught_up(pool), 90, f"caught up after {expected}", d)
        assert alive(d)
        assert await d.stop() == 0, d.logs()[-4000:]
        ledger = await read_ledger(pool, gw, fault_rules)
        n_quarantined = await quarantined(pool)
        n_burnt = await burnt(pool)
    finally:
        stop.set()
        d.kill()
        await gw.stop()
        await pool.close()
    record(figures, ledger)
    figures.quarantined = n_quarantined
    failed_steps = [e for e in d.log_events() if e.get("event") == "worker_database_error"]
    figures.notes = {
        "condition": expected,
        "readyz": seen,
        "seconds_to_503": round(to_503, 2),
        "held_seconds": HOLD_SECONDS,
        "events_pending_at_clear": pending,
        "seconds_to_ready_after_clear": round(to_ready, 2),
        "backed_off_steps": len(failed_steps),
        "writer_transactions": writes[0],
    }
    print(f"\n{expected}: {figures.notes} {ledger}")
    assert n_quarantined == 0
    assert n_burnt == 0
    assert pending > 0, "events waited for the condition to clear"
    assert_ledger(ledger)
    assert not [e for e in d.log_events() if e.get("event") in ("mentor_quarantined", "event_failed")]
    backed_off = {e.get("worker") for e in failed_steps if e.get("condition") == expected}
    assert set(loops) <= backed_off, (loops, backed_off)


async def test_read_only_after_a_failover(
    db_url: str, tmp_path: Path, rules_path: Path, fault_rules: Rules, figures: Figures
) -> None:
    database = db_url.rsplit("/", 1)[1].split("?")[0]

    async def inject(pool: Any) -> Injected:
        await pool.execute(f'ALTER DATABASE "{database}" SET default_transaction_read_only = on')
        n = await terminate_engine(pool)
        return Injected("default_transaction_read_only = on, engine sessions terminated", n)

    async def clear(pool: Any) -> None:
        await pool.execute(f'ALTER DATABASE "{database}" RESET default_transaction_read_only')
        await terminate_engine(pool)  # a failover back: the sessions reconnect read-write

    await run_condition(
        db_url, tmp_path, rules_path, fault_rules, figures,
        expected="database_read_only", inject=inject, clear=clear, loops=("health", "drain"),
    )  # fmt: skip


@contextlib.asynccontextmanager
async def held_lock(db_url: str, table: str) -> AsyncIterator[Callable[[], Awaitable[None]]]:
    """Another session holding a SHARE lock on ``table``: reads go on, writes wait."""
    conn = await asyncpg.connect(db_url, server_settings={"application_name": "fault-lock", **TEST_SESSION})
    tx = conn.transaction()
    released = False

    async def release() -> None:
        nonlocal released
        if not released:
            released = True
            await tx.rollback()

    try:
        await tx.start()
        await conn.execute(f"LOCK TABLE {table} IN SHARE MODE")
        yield release
    finally:
        await release()
        await conn.close()


@pytest.mark.parametrize(
    ("setting", "table", "expected", "loops"),
    [
        # the evaluation's writes (drain and sweep)
        ("lock_timeout", "scenario_notification", "lock_timeout", ("drain",)),
        ("statement_timeout", "scenario_notification", "query_cancelled", ("drain",)),
        # the dispatcher's claim (and the evaluation's enqueue)
        ("lock_timeout", "push_notification", "lock_timeout", ("drain", "dispatcher")),
    ],
    ids=["lock_timeout", "statement_timeout", "lock_timeout-outbox"],
)
async def test_a_held_lock_under_a_role_timeout(
    db_url: str,
    tmp_path: Path,
    rules_path: Path,
    fault_rules: Rules,
    figures: Figures,
    setting: str,
    table: str,
    expected: str,
    loops: tuple[str, ...],
) -> None:
    database = db_url.rsplit("/", 1)[1].split("?")[0]
    stack = contextlib.AsyncExitStack()
    releases: list[Callable[[], Awaitable[None]]] = []

    async def before_start(pool: Any) -> None:
        # As OPERATIONS.md suggests for statement_timeout: set for the engine's role, here in
        # this database only (the test's own sessions override it).
        await pool.execute(f"ALTER ROLE CURRENT_USER IN DATABASE \"{database}\" SET {setting} = '300ms'")

    async def inject(pool: Any) -> Injected:
        lock = held_lock(db_url, f"scenario_engine.{table}")
        releases.append(await stack.enter_async_context(lock))
        return Injected(f"SHARE lock on {table} held, role {setting} = 300ms")

    async def clear(pool: Any) -> None:
        await releases[0]()

    try:
        await run_condition(
            db_url, tmp_path, rules_path, fault_rules, figures,
            expected=expected, inject=inject, clear=clear, before_start=before_start, loops=loops,
        )  # fmt: skip
    finally:
        await stack.aclose()
        admin = await asyncpg.connect(db_url, server_settings=TEST_SESSION)
        try:
            await admin.execute(f'ALTER ROLE CURRENT_USER IN DATABASE "{database}" RESET {setting}')
        finally:
            await admin.close()


async def test_a_renamed_platform_column(
    db_url: str, tmp_path: Path, rules_path: Path, fault_rules: Rules, figures: Figures
) -> None:
    async def inject(pool: Any) -> Injected:
        await pool.execute("ALTER TABLE public.activity RENAME COLUMN occurred_at TO occurred_at_renamed")
        PLATFORM["occurred_at"] = "occurred_at_renamed"
        return Injected("activity.occurred_at renamed")

    async def clear(pool: Any) -> None:
        await pool.execute("ALTER TABLE public.activity RENAME COLUMN occurred_at_renamed TO occurred_at")
        PLATFORM["occurred_at"] = "occurred_at"

    try:
        await run_condition(
            db_url, tmp_path, rules_path, fault_rules, figures,
            expected="schema_mismatch", inject=inject, clear=clear, loops=("drain", "dispatcher"),
        )  # fmt: skip
    finally:
        PLATFORM["occurred_at"] = "occurred_at"


def _mount_tmpfs(path: Path, size: str) -> str | None:
    """Mount a tmpfs at ``path``; the reason when this machine does not allow it."""
    if os.geteuid() != 0:
        return "not root"
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    return None if result.returncode == 0 else (result.stderr.strip() or "mount failed")


def _fill(path: Path) -> int:
    """Fill the file system at ``path`` to the last byte; returns the bytes written."""
    written = 0
    chunk = b"\0" * 65536
    with (path / "filler").open("wb", buffering=0) as f:
        with contextlib.suppress(OSError):  # ENOSPC: full
            while True:
                written += f.write(chunk)
        for size in (4096, 512, 1):  # the last partial chunks
            with contextlib.suppress(OSError):
                while True:
                    written += f.write(chunk[:size])
    return written


async def test_a_full_disk(
    db_url: str, tmp_path: Path, rules_path: Path, fault_rules: Rules, figures: Figures
) -> None:
    admin = await asyncpg.connect(db_url, server_settings=TEST_SESSION)
    try:
        data_dir = await admin.fetchval("SHOW data_directory")
    except asyncpg.InsufficientPrivilegeError:
        data_dir = None
    if data_dir is None or not os.path.isdir(data_dir):
        await admin.close()
        pytest.skip("the test server's data directory is not on this machine (no tablespace to fill)")
    owner = os.stat(data_dir)
    # Not under pytest's 0700 temp dirs: the server's OS user must reach the tablespace.
    mount_point = Path(tempfile.mkdtemp(prefix="scenario-tiny-ts-", dir="/var/tmp"))
    os.chmod(mount_point, 0o755)
    problem = _mount_tmpfs(mount_point, "4m")
    if problem is not None:
        await admin.close()
        mount_point.rmdir()
        pytest.skip(f"cannot mount a tmpfs here ({problem}): a full disk cannot be made for real")
    space = f"tiny_{uuid.uuid4().hex[:8]}"
    location = mount_point / "pg"
    location.mkdir()
    os.chown(location, owner.st_uid, owner.st_gid)
    os.chmod(mount_point, 0o755)
    try:
        await admin.execute(f"CREATE TABLESPACE {space} LOCATION '{location}'")

        async def inject(pool: Any) -> Injected:
            await pool.execute(f"ALTER TABLE scenario_engine.scenario_notification SET TABLESPACE {space}")
            filled = await anyio.to_thread.run_sync(_fill, mount_point)
            return Injected(f"tablespace on a 4 MB tmpfs, filled ({filled} bytes of filler)")

        async def clear(pool: Any) -> None:
            (mount_point / "filler").unlink()

        await run_condition(
            db_url, tmp_path, rules_path, fault_rules, figures,
            expected="disk_full", inject=inject, clear=clear,
        )  # fmt: skip
    finally:
        with contextlib.suppress(FileNotFoundError):
            (mount_point / "filler").unlink()
        with contextlib.suppress(asyncpg.PostgresError):
            await admin.execute("ALTER TABLE scenario_engine.scenario_notification SET TABLESPACE pg_default")
        with contextlib.suppress(asyncpg.PostgresError):
            await admin.execute(f"DROP TABLESPACE {space}")
        await admin.close()
        subprocess.run(["umount", str(mount_point)], check=False)
        with contextlib.suppress(OSError):
            mount_point.rmdir()
