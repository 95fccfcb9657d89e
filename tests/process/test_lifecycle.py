"""systemd notify protocol and the status endpoints, against the real process."""

from __future__ import annotations

import signal
import socket
import tempfile
from pathlib import Path
from typing import Any

import anyio
import pytest

pytestmark = pytest.mark.acceptance


async def test_sd_notify_ready_watchdog_reload_stopping(daemons: Any, tmp_path: Path) -> None:
    sock_dir = Path(tempfile.mkdtemp(prefix="sdn-", dir="/tmp"))  # AF_UNIX paths must be short
    path = sock_dir / "notify"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.setblocking(False)
    messages: list[str] = []

    async def collect(until: str, timeout: float = 15) -> None:
        with anyio.fail_after(timeout):
            while until not in messages:
                try:
                    messages.append(server.recv(4096).decode())
                except BlockingIOError:
                    await anyio.sleep(0.02)

    try:
        d = daemons(env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "400000"})
        await collect("READY=1")
        await collect("WATCHDOG=1")
        d.signal(signal.SIGHUP)
        await collect("RELOADING=1")
        assert await d.stop() == 0
        await collect("STOPPING=1")
        assert messages.index("READY=1") < messages.index("STOPPING=1")
    finally:
        server.close()
        path.unlink(missing_ok=True)
        sock_dir.rmdir()


async def test_status_endpoints(daemons: Any) -> None:
    d = daemons()
    await d.wait_ready()
    code, body = await d.http("/healthz")
    assert code == 200
    code, _ = await d.http("/readyz")
    assert code == 200
    code, body = await d.http("/metrics")
    text = body.decode()
    for name in (
        "scenario_events_received_total",
        "scenario_events_processed_total",
        "scenario_events_dead_lettered_total",
        "scenario_event_drain_latency_seconds_bucket",
        "scenario_sweep_duration_seconds_bucket",
        "scenario_leader",
        "scenario_event_backlog",
        "scenario_push_backlog",
    ):
        assert name in text, name
    status = await d.status()
    assert status["role"] in ("leader", "follower")
    assert set(status["backlogs"]) >= {"events_pending", "pushes_pending"}


async def test_second_signal_exits_at_once(daemons: Any, pool: Any) -> None:
    d = daemons(shutdown_grace_seconds=60)
    await d.wait_ready()
    d.signal(signal.SIGTERM)
    d.signal(signal.SIGTERM)
    code = await d.wait(timeout=5)
    assert code in (0, 1)


async def test_bad_configuration_exits_2_naming_the_key(daemons: Any) -> None:
    d = daemons(sweep_interval_seconds=-5)
    assert await d.wait(timeout=20) == 2
    assert "SCENARIO_SWEEP_INTERVAL_SECONDS" in d.logs()
