"""Two demos on one data directory (issue 9, defect 10), with real processes.

The first demo holds the directory's lock; a second one (even with --fresh) reports it and
leaves it running; a busy status port is one line, not a traceback; after a kill -9 the
lock is free again, and the next demo starts whether the dead demo's watchdog is still
cleaning up or was killed too (an orphaned server, which the next demo stops).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest

from scenario_engine.dev.embedded import free_port
from tests.support.cli import cli_env

pytestmark = pytest.mark.acceptance

MENTORS = "200"
START_TIMEOUT = 90.0


class Demo:
    """A ``scenario-engine demo`` process whose output is collected by a reader thread."""

    def __init__(self, data_dir: Path, *extra: str, status_port: int | None = None):
        self.port = free_port() if status_port is None else status_port
        self.url = f"http://127.0.0.1:{self.port}/"
        cmd = [
            sys.executable,
            "-m",
            "scenario_engine",
            "demo",
            "--data-dir",
            str(data_dir),
            "--status-port",
            str(self.port),
            "--mentors",
            MENTORS,
            *extra,
        ]
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env(), text=True
        )
        self.lines: list[str] = []
        self.errors: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.lines), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.errors), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: IO[str] | None, into: list[str]) -> None:
        assert stream is not None
        for line in stream:
            into.append(line.rstrip("\n"))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return "\n".join(self.lines + self.errors)

    def wait_ready(self) -> str:
        """Wait until the demo's daemon is ready (its status page says so); the page's URL."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"demo exited {self.proc.returncode}:\n{self.output()}"
            with contextlib.suppress(OSError):
                if _get(self.url + "readyz") == 200:
                    return self.url
            time.sleep(0.2)
        raise AssertionError(f"demo not ready:\n{self.output()}")

    def finish(self, timeout: float = 60) -> int:
        code = self.proc.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.finish()


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _pgrep(pattern: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True, check=False)
    return [int(p) for p in out.stdout.split()]


def _postgres_pids(data_dir: Path) -> list[int]:
    return _pgrep(f"postgres -D {data_dir} ")


def _watchdog_pids(owner: int) -> list[int]:
    return _pgrep(f"scenario_engine.dev.embedded --watch {owner} ")


def _wait_until(what: str, condition: Callable[[], object], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Under /var/tmp, open to the cluster user when the suite runs as root (pytest's are 0700).
    base = Path(tempfile.mkdtemp(prefix="scenario-demo-lock-", dir="/var/tmp"))
    base.chmod(0o755)
    try:
        yield base / "pg"
    finally:
        for pid in _postgres_pids(base / "pg"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        subprocess.run(["rm", "-rf", str(base)], check=False)


@pytest.fixture
def spawn() -> Iterator[Callable[..., Demo]]:
    """Start demos; whatever a failing test leaves running is stopped."""
    started: list[Demo] = []

    def start(data_dir: Path, *extra: str, status_port: int | None = None) -> Demo:
        demo = Demo(data_dir, *extra, status_port=status_port)
        started.append(demo)
        return demo

    yield start
    for demo in started:
        demo.stop()


def test_second_demo_reports_the_running_one_and_leaves_it_alone(
    data_dir: Path, spawn: Callable[..., Demo]
) -> None:
    first = spawn(data_dir)
    url = first.wait_ready()
    server = _postgres_pids(data_dir)
    assert server

    # Plain, and with --fresh (which must not remove the directory under the server).
    for extra in ([], ["--fresh"]):
        second = spawn(data_dir, *extra)
        assert second.finish(timeout=30) == 1, second.output()
        assert second.lines == [], second.output()
        [message] = second.errors
        assert "already running" in message
        assert f"pid {first.pid}" in message
        assert url in message
        assert "--data-dir" in message

    assert first.proc.poll() is None, first.output()
    assert _get(url + "readyz") == 200  # its daemon still reaches its database
    assert _postgres_pids(data_dir) == server
    assert (data_dir / "PG_VERSION").exists()

    # Its own directory but the first one's status port: one line, nothing started.
    third = spawn(data_dir.with_name("other"), status_port=first.port)
    assert third.finish(timeout=30) == 1, third.output()
    [message] = third.errors
    assert f":{first.port} is already in use" in message
    assert "--status-port" in message
    assert not data_dir.with_name("other").exists()
    assert _get(url + "readyz") == 200
    assert f"status page: {url}" in first.lines

    first.stop()
    assert first.proc.returncode == 0, first.output()
    assert "Traceback" not in first.output()
    _wait_until("postgres left behind", lambda: not _postgres_pids(data_dir))


def test_a_killed_demo_frees_its_directory(data_dir: Path, spawn: Callable[..., Demo]) -> None:
    first = spawn(data_dir)
    first.wait_ready()
    assert _watchdog_pids(first.pid)

    # kill -9, and start again at once: the watchdog may still be stopping the old
    # server; the new demo waits for it or stops the orphan itself, never fails.
    first.proc.kill()
    first.finish()
    second = spawn(data_dir)
    url = second.wait_ready()
    _wait_until("the dead demo's watchdog did not exit", lambda: not _watchdog_pids(first.pid))
    assert second.proc.poll() is None, second.output()
    assert _get(url + "readyz") == 200, "the old watchdog stopped the new demo's server"

    # kill -9 of the demo and its watchdog: the server is an orphan nobody will stop.
    [watchdog] = _watchdog_pids(second.pid)
    orphan = _postgres_pids(data_dir)
    os.kill(watchdog, signal.SIGKILL)
    second.proc.kill()
    second.finish()
    assert _postgres_pids(data_dir) == orphan, "expected the orphaned server to survive"
    third = spawn(data_dir)
    url = third.wait_ready()
    assert _get(url + "readyz") == 200
    assert orphan[0] not in _postgres_pids(data_dir), "the orphaned server should have been stopped"
    third.stop()
    assert third.proc.returncode == 0, third.output()
    assert "Traceback" not in third.output()
    _wait_until("postgres left behind", lambda: not _postgres_pids(data_dir))
