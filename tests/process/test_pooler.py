"""A transaction pooler in the database URL is refused at start with exit 2 and a message that
says what to connect to (issue 9, defect 8). A real PgBouncer (Debian's package; `make test`
installs it when missing) runs as an unprivileged user on a free port in front of the
session-wide test server."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pytest

from scenario_engine.db.pooler import TransactionPoolerError, check_session_pooling
from scenario_engine.dev.embedded import CLUSTER_USER, ensure_cluster_user, free_port, is_root
from tests.support import pg
from tests.support.cli import run_cli
from tests.support.daemon import DaemonProcess

pytestmark = pytest.mark.acceptance


def _pgbouncer() -> str:
    found = shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None
    )
    assert found, "pgbouncer is not installed (make test installs it as root: scripts/test-tools)"
    return found


@pytest.fixture
def pgbouncer(pg_server: pg.TestServer) -> Iterator[Callable[..., str]]:
    """start(mode, database, ignore=…) -> a URL through a fresh PgBouncer in that pool_mode;
    ``ignore`` is its ignore_startup_parameters (any other startup parameter is refused)."""
    upstream = urllib.parse.urlsplit(pg_server.admin_dsn)
    started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(mode: str, database: str, ignore: str = "extra_float_digits,search_path") -> str:
        workdir = Path(tempfile.mkdtemp(prefix="pgbouncer-", dir="/var/tmp"))
        workdir.chmod(0o755)
        port = free_port()
        (workdir / "pgbouncer.ini").write_text(
            f"""[databases]
* = host={upstream.hostname} port={upstream.port} user={upstream.username}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = any
pool_mode = {mode}
; SCENARIO_POOL_SIZE (8) + 2 sessions: what docs/DEPLOY.md says a daemon needs
default_pool_size = 10
max_client_conn = 50
ignore_startup_parameters = {ignore}
logfile = {workdir}/pgbouncer.log
"""
        )
        kwargs: dict[str, object] = {}
        if is_root():  # pgbouncer refuses to run as root
            account = pwd.getpwnam(ensure_cluster_user().pw_name)
            os.chown(workdir, account.pw_uid, account.pw_gid)
            kwargs = {"user": CLUSTER_USER, "group": account.pw_gid, "extra_groups": []}
        proc = subprocess.Popen(
            [_pgbouncer(), str(workdir / "pgbouncer.ini")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            cwd=str(workdir),
            **kwargs,  # type: ignore[call-overload]  # user/group/extra_groups are Popen keywords
        )
        started.append((proc, workdir))
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log = (
                        (workdir / "pgbouncer.log").read_text(errors="replace")
                        if (workdir / "pgbouncer.log").exists()
                        else ""
                    )
                    raise AssertionError(f"pgbouncer did not start: {log}") from None
                time.sleep(0.05)
        return f"postgresql://{upstream.username}@127.0.0.1:{port}/{database}"

    yield start
    for proc, workdir in started:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def _database(url: str) -> str:
    return urllib.parse.urlsplit(url).path.lstrip("/")


async def test_migrate_and_run_through_a_transaction_pooler_exit_2_naming_the_fix(
    db_url: str, pgbouncer: Callable[[str, str], str], tmp_path: Path
) -> None:
    url = pgbouncer("transaction", _database(db_url))
    for attempt in range(2):  # the second run is the one that used to collide on prepared statements
        result = await run_cli("migrate", env={"SCENARIO_DATABASE_URL": url})
        assert result.returncode == 2, (attempt, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
        assert "transaction pooler" in result.stderr and "session" in result.stderr
        assert "5432" in result.stderr  # Supabase: the session pooler / direct port, not 6543
    d = DaemonProcess(url, tmp_path, "pooled").start()
    try:
        assert await d.wait(timeout=30) == 2
        out = d.logs()
        assert "Traceback" not in out
        assert "transaction pooler" in out and "SCENARIO_DATABASE_URL" in out
    finally:
        d.kill()


async def test_the_session_check_accepts_a_session_pooler_and_a_direct_connection(
    db_url: str, pgbouncer: Callable[[str, str], str]
) -> None:
    await check_session_pooling(db_url)
    await check_session_pooling(pgbouncer("session", _database(db_url)))
    with pytest.raises(TransactionPoolerError):
        await check_session_pooling(pgbouncer("transaction", _database(db_url)))


async def test_the_daemon_works_through_a_strict_session_pooler(
    db_url: str, pgbouncer: Callable[..., str], tmp_path: Path
) -> None:
    """PgBouncer refuses startup parameters it does not know (here: all but application_name):
    the engine sends none it needs, and its queries do not rely on search_path."""
    import datetime as dt

    from scenario_engine.db.connect import connect
    from tests.support.factories import add_mentor

    url = pgbouncer("session", _database(db_url), ignore="extra_float_digits")
    migrate = await run_cli("migrate", env={"SCENARIO_DATABASE_URL": url})
    assert migrate.returncode == 0, migrate.stderr
    d = DaemonProcess(url, tmp_path, "session-pooled", poll_interval_seconds=0.2).start()
    conn = await connect(db_url)
    try:
        await d.wait_ready()
        mentor = await add_mentor(conn, joined_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=40))
        await conn.execute("UPDATE public.peer_mentor SET status = 'paused' WHERE id = $1", mentor)
        await conn.execute("UPDATE public.peer_mentor SET status = 'active' WHERE id = $1", mentor)
        for _ in range(100):  # the status change is an event: drained and evaluated via the pooler
            if await conn.fetchval(
                "SELECT count(*) FROM scenario_engine.scenario_notification WHERE mentor_id = $1", mentor
            ):
                break
            await anyio.sleep(0.1)
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM scenario_engine.scenario_notification WHERE mentor_id = $1", mentor
            )
            == 1
        )
        assert "unsupported startup parameter" not in d.logs()
    finally:
        await conn.close()
        d.kill()
