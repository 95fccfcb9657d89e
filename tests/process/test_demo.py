"""`scenario-engine demo` end to end: private Postgres, seed, daemon, feed, clean stop."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from scenario_engine.db.connect import connect
from tests.support.cli import cli_env

pytestmark = pytest.mark.acceptance


def _postgres_pids(data_dir: Path) -> list[int]:
    """postgres processes serving this data directory (by their command line)."""
    out = subprocess.run(
        ["pgrep", "-f", f"postgres -D {data_dir}"], capture_output=True, text=True, check=False
    )
    return [int(p) for p in out.stdout.split()]


FEED_LINE = re.compile(r"^\d\d:\d\d:\d\d  (SENT|held: \S+)\s+(\S+)\s+([0-9a-f]{8})  ")


def _read_until(proc: subprocess.Popen[str], marker: str, timeout: float, lines: list[str]) -> str:
    """Lines of the demo's output up to the first one containing ``marker`` (returned)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    for line in proc.stdout:
        lines.append(line.rstrip())
        if marker in line:
            return line
        assert time.monotonic() < deadline, "\n".join(lines[-50:])
    raise AssertionError(f"the demo ended before {marker!r}:\n" + "\n".join(lines[-50:]))


def _url(line: str) -> str:
    return line.rsplit(" ", 1)[1].strip()


def _run_printed(line: str, **fill: str) -> subprocess.CompletedProcess[str]:
    """Run a command exactly as the demo printed it (after its label), placeholders filled."""
    command = line.split(":", 1)[1]
    args = [fill.get(a, a) for a in shlex.split(command)]
    return subprocess.run(args, capture_output=True, text=True, env=cli_env(), timeout=120, check=False)


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
    started_demos: list[subprocess.Popen[str]] = []
    try:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=cli_env(), text=True
        )
        started_demos.append(proc)
        url = None
        lines: list[str] = []
        printed: dict[str, str] = {}
        deadline = time.monotonic() + 180
        assert proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), False)
        seen: dict[str, str] = {}  # scenario type -> the short id of a mentor it was sent to
        started = None
        while time.monotonic() < deadline:
            chunk = proc.stdout.readline()
            if not chunk:
                if proc.poll() is not None:
                    break
                time.sleep(0.05)
            else:
                lines.append(chunk.rstrip())
                for what in ("explain", "report", "sweep --dry-run"):
                    if f" {what} " in chunk and "--database-url" in chunk:
                        printed[what] = chunk.strip()
                if "--database-url" in chunk and url is None:
                    url = _url(chunk)
                    started = time.monotonic()
                if chunk.startswith("programme page"):
                    printed["programme"] = chunk.rsplit(" ", 1)[1].strip()
                match = FEED_LINE.match(chunk)
                if match and match.group(1) == "SENT":
                    seen.setdefault(match.group(2), match.group(3))
            if started and time.monotonic() - started > 20 and len(seen) >= 3:
                break
        text = "\n".join(lines)
        assert {"inactivity", "milestone", "certification_expiry"} <= set(seen), text[-3000:]
        assert url is not None
        assert "12 weeks of history through the engine" in text
        conn = await connect(url)
        try:
            for table in (
                "public.peer_mentor",
                "public.activity",
                "public.certification",
                "public.organization",
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
            # History: twelve weeks of decisions in both arms.
            assert (
                await conn.fetchval(
                    "SELECT count(DISTINCT date_trunc('week', as_of)) FROM scenario_engine.scenario_decision"
                )
                >= 12
            )
            assert (
                await conn.fetchval(
                    "SELECT count(*) FROM scenario_engine.scenario_decision WHERE outcome = 'holdout'"
                )
                > 0
            )
        finally:
            await conn.close()

        # The printed commands work as printed: explain with a short id from the feed, report.
        short = seen["inactivity"]
        explained = _run_printed(printed["explain"], MENTOR_ID=short)
        assert explained.returncode == 0, explained.stderr
        assert f"mentor {short}" in explained.stdout and "[inactive_21d]" in explained.stdout
        reported = _run_printed(printed["report"])
        assert reported.returncode == 0, reported.stderr
        assert "Northside Peer Support" in reported.stdout and "renewed in time" in reported.stdout
        dry = _run_printed(printed["sweep --dry-run"])
        assert dry.returncode == 0, dry.stderr
        assert "dry run, nothing was written" in dry.stdout
        with urllib.request.urlopen(printed["programme"], timeout=30) as response:
            page = response.read().decode()
        assert "Northside Peer Support" in page and "Lakeside Village Helpers" in page

        assert _postgres_pids(data_dir), "the demo's postgres should be running"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        os.set_blocking(proc.stdout.fileno(), True)
        rest = proc.stdout.read() or ""
        proc.stdout.close()
        assert "demo stopped" in rest or "demo stopped" in text
        time.sleep(0.5)
        assert _postgres_pids(data_dir) == [], "postgres left behind after Ctrl-C"

        # a second run after a kill -9 still works: no orphan server, no stale lock; the same URL
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=cli_env(), text=True
        )
        started_demos.append(proc)
        assert proc.stdout is not None
        second: list[str] = []
        _read_until(proc, "reusing demo data", 60, second)
        assert _url(_read_until(proc, "--database-url", 60, second)) == url
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
        started_demos.append(again)
        assert again.stdout is not None
        third: list[str] = []
        _read_until(again, "daemon starting", 60, third)
        assert _url(_read_until(again, "--database-url", 30, third)) == url
        # The feed shows only this run's decisions: never more lines than decisions taken since
        # this run started (a replay would print the earlier runs' and the history's).
        conn = await connect(url)
        try:
            since = await conn.fetchval("SELECT now()")
            os.set_blocking(again.stdout.fileno(), False)
            feed: list[str] = []
            until = time.monotonic() + 8
            while time.monotonic() < until:
                chunk = again.stdout.readline()
                if chunk and FEED_LINE.match(chunk):
                    feed.append(chunk)
                elif not chunk:
                    time.sleep(0.05)
            new = await conn.fetchval(
                "SELECT count(*) FROM scenario_engine.scenario_decision WHERE created_at >= $1::timestamptz"
                " - interval '60 seconds'",
                since,
            )
            assert len(feed) <= new, (len(feed), new, feed[:5])
        finally:
            await conn.close()
        again.send_signal(signal.SIGINT)
        assert again.wait(timeout=60) == 0
        again.stdout.close()
    finally:
        for demo in started_demos:  # a failed assertion leaves none of them running
            if demo.poll() is None:
                demo.kill()
                demo.wait()
        for pid in _postgres_pids(data_dir):
            os.kill(pid, signal.SIGKILL)
        subprocess.run(["rm", "-rf", str(base)], check=False)
