"""Startup benchmark (DESIGN.md §6: ready ≤ 2 s after start), and the helpers that the
runtime benchmarks (``bench.events``, ``bench.dispatch``) share: a private cluster, the real
``scenario-engine run`` process, its status port, its RSS and CPU.

    .venv/bin/python -m bench.startup            # 5 runs: process start → /readyz 200, RSS at ready

Each run starts the real daemon (``python -m scenario_engine run``) against a migrated, empty
database of a private cluster, polls ``/readyz`` every 5 ms from the instant of ``Popen`` and
reads ``VmRSS`` of the process once it is ready. Also timed, for comparison: the bare
interpreter with ``import scenario_engine.cli`` (the part of startup that is Python imports).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from bench.common import RESULTS_DIR, log, machine_facts, postgres_processes, write_json
from scenario_engine.db.migrations import migrate
from scenario_engine.embedded import (
    FAST_TEST_SETTINGS,
    LocalCluster,
    free_port,
    server_version,
    start_private_cluster,
)

READY_BAR_S = 2.0

# Benchmark cluster: durability off (a throwaway cluster), sized for a 2-core machine that
# may run another benchmark beside this one. No pg_stat_statements: it costs a little per
# statement, and these benchmarks measure statement rates.
RUNTIME_PG_SETTINGS: dict[str, str] = {
    **FAST_TEST_SETTINGS,
    "shared_buffers": "1GB",
    "work_mem": "32MB",
    "maintenance_work_mem": "512MB",
    "max_wal_size": "8GB",
    "min_wal_size": "1GB",
    "checkpoint_timeout": "30min",
    "wal_buffers": "64MB",
    "effective_cache_size": "8GB",
    "random_page_cost": "1.1",
}

# One day per sweep period would let a UTC midnight start a sweep in the middle of a
# measurement; a period of ~30 years means "the first sweep only".
NO_SWEEP_INTERVAL_S = 1e9

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


# --- machine ------------------------------------------------------------------------------


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def other_benchmarks() -> list[str]:
    """Other benchmark processes on the machine (the reference machine is shared)."""
    out = subprocess.run(["pgrep", "-af", r"bench\."], capture_output=True, text=True, check=False)
    me = os.getpid()
    return [
        line
        for line in out.stdout.splitlines()
        if line.strip() and int(line.split()[0]) != me and "pgrep" not in line
    ]


def proc_status_kb(pid: int, key: str = "VmRSS") -> int | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def proc_cpu_seconds(pid: int) -> float | None:
    """user + system CPU time of one process."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def cluster_cpu(cluster: LocalCluster) -> dict[int, float]:
    """CPU time per live process of the cluster (the postmaster and its children)."""
    out = subprocess.run(["pgrep", "-f", "postgres"], capture_output=True, text=True, check=False)
    pm = _postmaster_pid(cluster)
    found: dict[int, float] = {}
    for line in out.stdout.split():
        pid = int(line)
        if pid == pm or _ppid(pid) == pm:
            found[pid] = proc_cpu_seconds(pid) or 0.0
    return found


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU spent between two snapshots by the processes alive at the second one (a backend
    that exited in between is not counted, one started in between counts whole)."""
    return round(sum(max(0.0, cpu - before.get(pid, 0.0)) for pid, cpu in after.items()), 2)


def cluster_cpu_seconds(cluster: LocalCluster) -> float:
    return sum(cluster_cpu(cluster).values())


def _postmaster_pid(cluster: LocalCluster) -> int | None:
    try:
        return int((cluster.data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _ppid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


# --- cluster --------------------------------------------------------------------------------


@contextlib.contextmanager
def private_cluster(settings: dict[str, str] | None = None) -> Any:
    cluster = start_private_cluster(settings=settings or RUNTIME_PG_SETTINGS, owner_pid=os.getpid())
    try:
        yield cluster
    finally:
        cluster.close()


async def create_database(cluster: LocalCluster, name: str, template: str | None = None) -> str:
    admin = await asyncpg.connect(cluster.dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if template:
            await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY FILE_COPY')
        else:
            await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    if template is None:
        conn = await asyncpg.connect(cluster.url(name))
        try:
            await migrate(conn)
        finally:
            await conn.close()
    return cluster.url(name)


def leftover_postgres(cluster: LocalCluster) -> list[str]:
    return [p for p in postgres_processes() if str(cluster.data_dir) in p]


# --- the daemon process -------------------------------------------------------------------


class DaemonProc:
    """The real ``scenario-engine run`` in a subprocess, with its status port."""

    def __init__(self, db_url: str, workdir: Path, name: str = "daemon", **settings: Any):
        self.port = free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        rules = workdir / "rules.toml"
        if not rules.exists():
            rules.write_text(DEFAULT_RULES_TOML, encoding="utf-8")
        self.log_path = workdir / f"{name}-{self.port}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCENARIO_")}
        env.update(
            {
                "SCENARIO_DATABASE_URL": db_url,
                "SCENARIO_STATUS_PORT": str(self.port),
                "SCENARIO_LOG_LEVEL": "warning",
                "SCENARIO_LOG_FORMAT": "json",
                "SCENARIO_RULES_FILE": str(rules),
                "SCENARIO_INSTANCE_ID": f"{name}-{self.port}",
                "SCENARIO_SWEEP_INTERVAL_SECONDS": str(NO_SWEEP_INTERVAL_S),
            }
        )
        env.update({f"SCENARIO_{k.upper()}": str(v) for k, v in settings.items()})
        self.env = env
        self.settings = {f"SCENARIO_{k.upper()}": str(v) for k, v in settings.items()}
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
        assert self.proc is not None
        return self.proc.pid

    async def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        return self._session

    async def get(self, path: str) -> tuple[int, str]:
        session = await self._http()
        async with session.get(f"http://127.0.0.1:{self.port}{path}") as resp:
            return resp.status, await resp.text()

    async def wait_ready(self, limit_s: float = 30, every: float = 0.005) -> float:
        """Seconds from Popen to the first /readyz 200."""
        deadline = time.perf_counter() + limit_s
        while time.perf_counter() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}: {self.tail()}")
            with contextlib.suppress(OSError, aiohttp.ClientError, asyncio.TimeoutError):
                code, _ = await self.get("/readyz")
                if code == 200:
                    return time.perf_counter() - self.started_at
            await asyncio.sleep(every)
        raise RuntimeError(f"daemon not ready within {limit_s} s: {self.tail()}")

    async def status(self) -> dict[str, Any]:
        import json

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


@contextlib.asynccontextmanager
async def running_daemon(db_url: str, workdir: Path, **settings: Any) -> AsyncIterator[DaemonProc]:
    daemon = DaemonProc(db_url, workdir, **settings).start()
    try:
        await daemon.wait_ready()
        yield daemon
    finally:
        await daemon.stop()


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


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    idx = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[idx]


# --- the startup benchmark ------------------------------------------------------------------


def time_imports(runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import scenario_engine.cli"], check=True)
        out.append(round(time.perf_counter() - started, 3))
    return out


async def run(cluster: LocalCluster, runs: int, workdir: Path) -> dict[str, Any]:
    url = await create_database(cluster, "bench_startup")
    samples = []
    for i in range(runs):
        load = load_average()
        daemon = DaemonProc(url, workdir, name=f"startup{i}").start()
        try:
            ready = await daemon.wait_ready()
            rss = daemon.rss_mb()
            await asyncio.sleep(2.0)
            rss_2s = daemon.rss_mb()
        finally:
            code = await daemon.stop()
        sample = {
            "ready_s": round(ready, 3),
            "rss_at_ready_mb": rss,
            "rss_2s_later_mb": rss_2s,
            "exit_code": code,
            "load": load,
        }
        log(f"run {i + 1}: ready in {ready:.3f} s, RSS {rss} MB (2 s later {rss_2s} MB), load {load}")
        samples.append(sample)
    imports = time_imports(runs)
    readies = [s["ready_s"] for s in samples]
    median = statistics.median(readies)
    return {
        "runs": samples,
        "ready_median_s": round(median, 3),
        "ready_min_s": min(readies),
        "ready_max_s": max(readies),
        "rss_at_ready_median_mb": statistics.median(s["rss_at_ready_mb"] for s in samples),
        "import_scenario_engine_cli_s": imports,
        "import_median_s": round(statistics.median(imports), 3),
        "bar_ready_s": READY_BAR_S,
        "bar_met": median <= READY_BAR_S,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "startup.json")
    args = parser.parse_args(argv)
    result: dict[str, Any] = {
        "benchmark": "startup",
        "started_at": dt.datetime.now(dt.UTC).isoformat(),
        "load_before": load_average(),
        "other_benchmarks": other_benchmarks(),
    }
    workdir = Path("/var/tmp") / f"bench-startup-{os.getpid()}"
    with private_cluster() as cluster:
        result["machine"] = machine_facts(server_version(cluster.bin_dir))
        result.update(asyncio.run(run(cluster, args.runs, workdir)))
    result["load_after"] = load_average()
    result["orphan_postgres_processes"] = leftover_postgres(cluster)
    write_json(args.output, result)
    shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(
        f"startup: ready median {result['ready_median_s']} s (min {result['ready_min_s']}, "
        f"max {result['ready_max_s']}) over {args.runs} runs — bar ≤ {READY_BAR_S} s: "
        f"{'met' if result['bar_met'] else 'MISSED'}"
    )
    print(
        f"RSS at ready (median) {result['rss_at_ready_median_mb']} MB; "
        f"`import scenario_engine.cli` alone {result['import_median_s']} s"
    )
    print(f"load {result['load_before']} → {result['load_after']}; written to {args.output}")
    return 0 if result["bar_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
