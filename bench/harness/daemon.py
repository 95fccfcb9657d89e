"""The real ``scenario-engine run`` in a subprocess: start, /readyz, status, metrics, RSS, CPU.

The runtime benchmarks (startup, events, dispatch) measure the product as deployed: the CLI
entry point, its ``SCENARIO_*`` environment and a rules file, not an engine object in this
process. The sweep period is set far into the future, so only the first sweep runs unless a
benchmark asks for more.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.harness.cluster import free_port
from bench.harness.procfs import proc_cpu_seconds, proc_status_kb

# One day per sweep period would let a UTC midnight start a sweep in the middle of a
# measurement. Periods are floor(epoch / interval); the longest the daemon accepts (31 days)
# means "the first sweep only" for any run shorter than the distance to the next boundary.
NO_SWEEP_INTERVAL_S = 31 * 86_400

DEFAULT_RULES_TOML = """\
# The design's example rules (scenario_engine.config.default_rules), spelled out.
daily_cap = 3

[[inactivity]]
name = "inactive_21d"
threshold_days = 21
cooldown_days = 7
max_reminders = 3

[[milestone]]
name = "sessions_year"
metric = "sessions"
period = "year"
thresholds = [10, 25, 50, 100]

[[certification_expiry]]
name = "certification_expiry"
tiers_days = [30, 7, 1]
"""


def _environment(db_url: str, port: int, rules: Path, name: str, settings: dict[str, str]) -> dict[str, str]:
    """This process's environment without its SCENARIO_* variables, plus the daemon's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCENARIO_")}
    env.update(
        {
            "SCENARIO_DATABASE_URL": db_url,
            "SCENARIO_STATUS_PORT": str(port),
            "SCENARIO_LOG_LEVEL": "warning",
            "SCENARIO_LOG_FORMAT": "json",
            "SCENARIO_RULES_FILE": str(rules),
            "SCENARIO_INSTANCE_ID": f"{name}-{port}",
            "SCENARIO_SWEEP_INTERVAL_SECONDS": str(NO_SWEEP_INTERVAL_S),
        }
    )
    env.update(settings)
    return env


class DaemonProc:
    """The real ``scenario-engine run`` in a subprocess, with its status port.

    ``settings`` are daemon settings by field name (``push_rate_per_second=500`` becomes
    ``SCENARIO_PUSH_RATE_PER_SECOND=500``); ``code``, a directory holding another version of
    the ``scenario_engine`` package, runs that version instead of this worktree's.
    """

    def __init__(
        self,
        db_url: str,
        workdir: Path,
        name: str = "daemon",
        **settings: object,
    ) -> None:
        code = settings.pop("code", None)
        assert code is None or isinstance(code, Path), code
        self.port = free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        rules = workdir / "rules.toml"
        if not rules.exists():
            rules.write_text(DEFAULT_RULES_TOML, encoding="utf-8")
        self.log_path = workdir / f"{name}-{self.port}.log"
        self.settings = {f"SCENARIO_{k.upper()}": str(v) for k, v in settings.items()}
        self.env = _environment(db_url, self.port, rules, name, self.settings)
        if code is not None:
            # another checkout's daemon/ (a before/after in one run): first on the path, ahead
            # of this venv's editable install of the worktree
            self.env["PYTHONPATH"] = str(code)
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self._session: aiohttp.ClientSession | None = None

    def start(self) -> DaemonProc:
        with self.log_path.open("ab") as out:
            self.started_at = time.perf_counter()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "scenario_engine", "run"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None, "start() first"
        return self.proc.pid

    async def get(self, path: str) -> tuple[int, str]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        async with self._session.get(f"http://127.0.0.1:{self.port}{path}") as resp:
            return resp.status, await resp.text()

    async def wait_ready(self, limit_s: float = 30, every: float = 0.005) -> float:
        """Seconds from Popen to the first /readyz 200."""
        assert self.proc is not None, "start() first"
        deadline = time.perf_counter() + limit_s
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}: {self.tail()}")
            with contextlib.suppress(OSError, aiohttp.ClientError, asyncio.TimeoutError):
                code, _ = await self.get("/readyz")
                if code == 200:
                    return time.perf_counter() - self.started_at
            await asyncio.sleep(every)
        raise RuntimeError(f"daemon not ready within {limit_s} s: {self.tail()}")

    async def status(self) -> dict[str, Any]:
        _, body = await self.get("/status")
        result: dict[str, Any] = json.loads(body)
        return result

    async def wait_first_sweep(self, limit_s: float = 600) -> dict[str, Any]:
        deadline = time.perf_counter() + limit_s
        while time.perf_counter() < deadline:
            status = await self.status()
            if status.get("last_sweep"):
                return dict(status["last_sweep"])
            await asyncio.sleep(0.5)
        raise RuntimeError("first sweep did not finish")

    async def metrics(self) -> str:
        _, body = await self.get("/metrics")
        return body

    def rss_mb(self) -> float | None:
        kb = proc_status_kb(self.pid)
        return None if kb is None else round(kb / 1024, 1)

    def cpu_seconds(self) -> float | None:
        return proc_cpu_seconds(self.pid)

    def tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def log_errors(self) -> list[str]:
        if not self.log_path.exists():
            return []
        return [
            line[:300]
            for line in self.log_path.read_text(errors="replace").splitlines()
            if '"level": "error"' in line or "Traceback" in line
        ][:20]

    async def stop(self, limit_s: float = 30) -> int | None:
        """SIGTERM (the daemon drains and exits), SIGKILL after ``limit_s``; the exit code."""
        if self._session is not None:
            await self._session.close()
            self._session = None
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return None if proc is None else proc.returncode
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, limit_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return proc.returncode


# --- the daemon's /metrics (Prometheus text format) -----------------------------------------


def metric_value(metrics_text: str, name: str) -> float:
    """The value of one unlabelled sample (0 if absent)."""
    for line in metrics_text.splitlines():
        if line.startswith(name + " "):
            return float(line.split(" ")[1])
    return 0.0


def metric_by_label(metrics_text: str, name: str, label: str) -> dict[str, float]:
    """Samples of one labelled metric summed per value of ``label``."""
    out: dict[str, float] = {}
    for line in metrics_text.splitlines():
        if line.startswith(name + "{") and f'{label}="' in line:
            value = line.split(f'{label}="', 1)[1].split('"', 1)[0]
            out[value] = out.get(value, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def histogram(metrics_text: str, name: str) -> dict[str, float]:
    """Cumulative buckets (le → count) plus _sum and _count of one unlabeled histogram."""
    out: dict[str, float] = {}
    for line in metrics_text.splitlines():
        if line.startswith(name + "_bucket{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            out[le] = float(line.rsplit(" ", 1)[1])
        elif line.startswith(name + "_sum ") or line.startswith(name + "_count "):
            key, value = line.split(" ")
            out[key.removeprefix(name)] = float(value)
    return out


def histogram_diff(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before.get(k, 0.0) for k in after}


def histogram_quantile(hist: dict[str, float], q: float) -> float | None:
    """Prometheus-style quantile from cumulative buckets (linear within a bucket)."""
    count = hist.get("_count", 0.0)
    if not count:
        return None
    bounds = sorted(((float(k), v) for k, v in hist.items() if not k.startswith("_")), key=lambda x: x[0])
    target = q * count
    prev_bound, prev_count = 0.0, 0.0
    for bound, cum in bounds:
        if cum >= target:
            if bound == float("inf"):
                return prev_bound
            span = cum - prev_count
            frac = (target - prev_count) / span if span else 1.0
            return prev_bound + (bound - prev_bound) * frac
        prev_bound, prev_count = bound, cum
    return prev_bound
