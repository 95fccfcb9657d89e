"""A slowloris on the status port (issue 16, item 10).

Before the fix, 1,100 half-sent requests to a status server under the default 1,024-file limit
made /healthz unanswerable (an orchestrator restarts a working daemon) and printed 666k
tracebacks (268 MB of non-JSON output) in 95 s. Here the real daemon runs with
``RLIMIT_NOFILE`` = 1,024 while 1,100 loopback clients keep requests half-sent (a header line
every second, never the blank line that ends them), reconnecting a second after being closed:
/healthz and /readyz still answer 200 within a bound, and the daemon's output stays small and
JSON lines only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import anyio
import pytest
from aiohttp import web

from scenario_engine.runtime.state import RuntimeState
from scenario_engine.web.guard import ConnectionGuard, connection_limit
from scenario_engine.web.server import build_app
from tests.support.daemon import DaemonProcess
from tests.support.faults import alive
from tests.support.figures import Figures

pytestmark = [pytest.mark.faults, pytest.mark.acceptance]
ATTACKERS = 1_100
NOFILE = 1_024  # the daemon's file limit, as under a default `ulimit -n`
ATTACK_SECONDS = 20.0
PROBE_BOUND = 5.0  # a probe answered later than this counts as unanswered


class LimitedDaemon(DaemonProcess):
    """The real daemon, started with a low open-file limit."""

    def start(self) -> LimitedDaemon:
        log = self.log_path.open("ab")

        def limit() -> None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "scenario_engine", "run"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=limit,
        )
        log.close()
        return self


class Slowloris:
    """``n`` connections that each send a request line and then one header line a second,
    never ending the headers; a closed one is reopened after a short pause."""

    def __init__(self, port: int, n: int):
        self.port = port
        self.n = n
        self.stop = asyncio.Event()
        self.opened = 0
        self.closed_by_server = 0
        self.refused = 0

    async def run(self) -> None:
        await asyncio.gather(*(self._one(i) for i in range(self.n)))

    async def _one(self, i: int) -> None:
        await asyncio.sleep(i * 0.002)  # ramp up over ~2 s
        while not self.stop.is_set():
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                self.refused += 1
                await asyncio.sleep(0.5)
                continue
            self.opened += 1
            try:
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                n = 0
                while not self.stop.is_set():
                    await writer.drain()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(1.0):
                            if await reader.read(1024) == b"":
                                break  # the server closed us
                    writer.write(f"X-Slow-{n}: a\r\n".encode())
                    n += 1
                self.closed_by_server += not self.stop.is_set()
            except OSError:
                self.closed_by_server += 1
            finally:
                writer.transport.abort()
            await asyncio.sleep(1.0)


def _get(port: int, path: str) -> int:
    """One probe, as an orchestrator sends it, given up after PROBE_BOUND."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=PROBE_BOUND) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _own_file_limit_at_least(needed: int) -> bool:
    """Raise this test process's soft file limit (the attackers' sockets) if it is lower."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            return False
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    return True


@pytest.mark.skipif(not _own_file_limit_at_least(ATTACKERS + 500), reason="hard limit on open files too low")
async def test_a_slowloris_under_the_default_file_limit_leaves_the_probes_answering(
    db_url: str, tmp_path: Path, rules_path: Path, figures: Figures
) -> None:
    d = LimitedDaemon(db_url, tmp_path, "slowloris", rules_file=rules_path, status_host="127.0.0.1")
    d.start()
    try:
        await d.wait_ready()
        lines_before = len(d.logs().splitlines())
        attack = Slowloris(d.port, ATTACKERS)
        probes: list[tuple[str, int | None, float]] = []
        errors: list[str] = []

        async def probe() -> None:
            deadline = time.monotonic() + ATTACK_SECONDS
            while time.monotonic() < deadline:
                for path in ("/healthz", "/readyz"):
                    started = time.monotonic()
                    try:
                        code: int | None = await anyio.to_thread.run_sync(_get, d.port, path)
                    except OSError as exc:
                        code = None
                        errors.append(repr(exc))
                    probes.append((path, code, time.monotonic() - started))
                await anyio.sleep(0.5)
            attack.stop.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(attack.run)
            await anyio.sleep(3)  # every attacker connected (or turned away) first
            await probe()
        assert alive(d), d.logs()[-3000:]
        failed = [p for p in probes if p[1] != 200 or p[2] > PROBE_BOUND]
        assert not failed, (len(failed), len(probes), errors[:3])
        assert attack.closed_by_server > 0  # half-sent requests are not kept forever
        assert await d.metric("scenario_status_connections_dropped_total") > 0
        output = d.logs().splitlines()[lines_before:]
        size = sum(len(line) for line in output)
        assert len(output) < 200 and size < 200_000, (len(output), size, output[:5])
        assert all(json.loads(line) for line in output), [x for x in output if not x.startswith("{")][:5]
        figures.fault("half-sent request", attack.opened)
        figures.notes["slowloris_probes"] = len(probes)
        figures.notes["slowloris_slowest_probe_seconds"] = round(max(p[2] for p in probes), 2)
        figures.notes["slowloris_median_probe_seconds"] = round(statistics.median(p[2] for p in probes), 3)
        figures.notes["slowloris_closed_by_server"] = attack.closed_by_server
        figures.notes["slowloris_log_lines"] = len(output)
    finally:
        d.kill()


def test_library_errors_are_json_lines_once_per_interval_with_a_count() -> None:
    """The daemon's logging set-up (``library_logs``): 10,000 asyncio accept errors with their
    traceback, as a starved accept loop logs them, become one JSON line; the next one after
    the interval says how many were dropped, and a secret in an exception is masked."""
    script = """
import logging
from scenario_engine import logs
logs.configure_logging("json", "info", secrets=["s3cret-value"], library_logs=True)
log = logging.getLogger("asyncio")
for _ in range(10_000):
    try:
        raise OSError(24, "Too many open files s3cret-value")
    except OSError:
        log.error("socket.accept() out of system resource\\nsocket: <fd=6>", exc_info=True)
logging.getLogger("aiohttp.server").error("Error handling request from %s", "127.0.0.1")
limiter = next(h for h in logging.getLogger().handlers if h.get_name() == logs.LIBRARY_HANDLER).filters[0]
limiter.interval = 0
log.error("socket.accept() out of system resource\\nsocket: <fd=7>")
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert done.stderr == ""
    assert [(x["logger"], x["level"], x.get("suppressed")) for x in lines] == [
        ("asyncio", "error", None),
        ("aiohttp.server", "error", None),
        ("asyncio", "error", 9_999),
    ]
    assert "OSError: [Errno 24]" in lines[0]["exception"] and "s3cret" not in done.stdout


async def _half_sent(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: 1\r\n")
    await writer.drain()
    return reader, writer


async def _closed(reader: asyncio.StreamReader, within: float) -> bool:
    """True when the server closes the connection (EOF or reset) within ``within`` seconds."""
    try:
        async with asyncio.timeout(within):
            return await reader.read() == b""
    except TimeoutError:
        return False
    except ConnectionError:
        return True


async def test_the_guard_closes_slow_headers_evicts_the_oldest_half_sent_and_serves_a_probe() -> None:
    """The status app behind a guard of 4 connections and a 1 s header deadline, in-process."""
    runner = web.AppRunner(build_app(RuntimeState("guard-test")), access_log=None, handle_signals=False)
    await runner.setup()
    assert runner.server is not None
    guard = ConnectionGuard(runner.server, limit=4, header_seconds=1.0)
    server = await asyncio.get_running_loop().create_server(guard, "127.0.0.1", 0, backlog=guard.backlog)
    port = server.sockets[0].getsockname()[1]
    try:
        # headers never finished: closed after the deadline, without an answer
        reader, writer = await _half_sent(port)
        assert await _closed(reader, 10)
        writer.close()
        assert guard.timed_out == 1

        # four half-sent requests fill the server; a probe still gets its answer (the oldest
        # half-sent one makes room) and says Connection: close (one request per connection)
        guard.header_seconds = 60  # from here on, eviction alone closes them
        held = [await _half_sent(port) for _ in range(4)]
        async with asyncio.timeout(10):
            while len(guard.open) < 4:
                await asyncio.sleep(0.01)
        code, headers = await anyio.to_thread.run_sync(_get_with_headers, port, "/healthz")
        assert code == 200 and headers.get("Connection") == "close"
        assert guard.evicted == 1
        assert await _closed(held[0][0], 5)  # the oldest went first
        for _, w in held:
            w.close()
    finally:
        server.close()
        await runner.cleanup()


def _get_with_headers(port: int, path: str) -> tuple[int, dict[str, str]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=PROBE_BOUND) as resp:
        return int(resp.status), dict(resp.headers)


def test_connection_limit_leaves_half_the_file_limit_as_headroom() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, hard))
        assert connection_limit() == 512
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        assert connection_limit() == 128
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
