"""Start and drive the real ``scenario-engine run`` process in acceptance tests."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import anyio

from scenario_engine.dev.embedded import free_port
from tests.support.cli import cli_env


class DaemonProcess:
    def __init__(
        self,
        db_url: str,
        log_dir: Path,
        name: str = "daemon",
        env: dict[str, str] | None = None,
        **settings: Any,
    ):
        self.port = free_port()
        self.log_path = log_dir / f"{name}-{self.port}.log"
        self.env = cli_env(
            {
                "SCENARIO_DATABASE_URL": db_url,
                "SCENARIO_STATUS_PORT": str(self.port),
                "SCENARIO_LOG_FORMAT": "json",
                "SCENARIO_INSTANCE_ID": f"{name}-{self.port}",
                "SCENARIO_LISTEN_PING_INTERVAL_SECONDS": "0.5",
                "SCENARIO_LISTEN_PING_TIMEOUT_SECONDS": "1",
                "SCENARIO_LEADER_RETRY_SECONDS": "0.5",
                **{f"SCENARIO_{k.upper()}": str(v) for k, v in settings.items()},
                **(env or {}),
            }
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> DaemonProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "scenario_engine", "run"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    async def http(self, path: str) -> tuple[int, bytes]:
        return await anyio.to_thread.run_sync(self.get, path)

    async def status(self) -> dict[str, Any]:
        code, body = await self.http("/status")
        assert code == 200
        result: dict[str, Any] = json.loads(body)
        return result

    async def metric(self, name: str) -> float:
        _, body = await self.http("/metrics")
        total = 0.0
        for line in body.decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    async def wait_ready(self, timeout: float = 20) -> None:
        await self.wait_http("/readyz", 200, timeout)

    async def wait_http(self, path: str, code: int, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.logs()[-3000:]}")
            try:
                got, _ = await self.http(path)
                if got == code:
                    return
            except OSError:
                pass
            await anyio.sleep(0.05)
        raise AssertionError(f"{path} never returned {code}; log:\n{self.logs()[-3000:]}")

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    async def stop(self, timeout: float = 30) -> int:
        self.signal(signal.SIGTERM)
        return await self.wait(timeout)

    async def wait(self, timeout: float = 30) -> int:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"daemon did not exit within {timeout} s")
            await anyio.sleep(0.05)
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.logs().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out
