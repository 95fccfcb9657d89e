"""`scenario-engine demo` end to end: private Postgres, seed, daemon, feed, clean stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from scenario_engine.db.connect import connect
from tests.cli import cli_env

pytestmark = pytest.mark.acceptance


def _postgres_pids(data_dir: Path) -> list[int]:
    """postgres processes serving this data directory (by their command line)."""
    out = subprocess.run(
        ["pgrep", "-f", f"postgres -D {data_dir}"], capture_output=True, text=True, check=False
    )
    return [int(p) for p in out.stdout.split()]


async def test_demo_runs_shows_all_scenarios_and_stops_cleanly() -> None:
    base = Path(tempfile.mkdtemp(prefix="scenario-demo-", dir="/var/tmp"))
    base.chmod(0o755)
    data_dir = base / "pg"
    cmd = [
        sys.executable,
        "-m",
        "scenario_engine",
        "demo",
        "--data-dir",
        str(data_dir),
        "--status-port",
        "0",
        "--mentors",
        "600",
    ]
    try:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=cli_env(), text=True
        )
        url = None
        lines: list[str] = []
        deadline = time.monotonic() + 120
        assert proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), False)
        seen: set[str] = set()
        started = None
        while time.monotonic() < deadline:
            chunk = proc.stdout.readline()
            if not chunk:
                if proc.poll() is not None:
                    break
                time.sleep(0.05)
            else:
                lines.append(chunk.rstrip())
                if "--database-url" in chunk:
                    url = chunk.rsplit(" ", 1)[1].strip()
                    started = time.monotonic()
                for scenario in ("inactivity", "milestone", "certification_expiry"):
                    if " SENT " in chunk and f" {scenario} " in chunk:
                        seen.add(scenario)
            if started and time.monotonic() - started > 20 and len(seen) == 3:
                break
        text = "\n".join(lines)
        assert seen == {"inactivity", "milestone", "certification_expiry"}, text[-3000:]
        assert url is not None
        conn = await connect(url)
        try:
            for table in (
                "public.peer_mentor",
                "public.activity",
                "public.certification",
                "scenario_engine.scenario_notification",
                "scenario_engine.push_notification",
            ):
                assert await conn.fetchval(f"SELECT count(*) FROM {table}") > 0, table
            assert (
                await conn.fetchval(
                    "SELECT count(*) FROM scenario_engine.push_notification WHERE status = 'sent'"
                )
                > 0
            )
        finally:
            await conn.close()
        assert _postgres_pids(data_dir), "the demo's postgres should be running"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        os.set_blocking(proc.stdout.fileno(), True)
        rest = proc.stdout.read() or ""
        proc.stdout.close()
        assert "demo stopped" in rest or "demo stopped" in text
        time.sleep(0.5)
        assert _postgres_pids(data_dir) == [], "postgres left behind after Ctrl-C"

        # a second run after a kill -9 still works: no orphan server, no stale lock
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=cli_env(), text=True
        )
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        for line in proc.stdout:
            if "reusing demo data" in line:
                break
            assert time.monotonic() < deadline
        proc.kill()
        proc.wait()
        proc.stdout.close()
        deadline = time.monotonic() + 15
        while _postgres_pids(data_dir) and time.monotonic() < deadline:
            time.sleep(0.2)  # the watchdog stops the orphaned server
        assert _postgres_pids(data_dir) == []
        again = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=cli_env(), text=True
        )
        assert again.stdout is not None
        for line in again.stdout:
            if "daemon starting" in line:
                break
        again.send_signal(signal.SIGINT)
        assert again.wait(timeout=60) == 0
        again.stdout.close()
    finally:
        for pid in _postgres_pids(data_dir):
            os.kill(pid, signal.SIGKILL)
        subprocess.run(["rm", "-rf", str(base)], check=False)
