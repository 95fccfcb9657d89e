"""Helpers shared by the benchmarks: a tuned private cluster, timers, RSS and machine facts.

The benchmarks start their own PostgreSQL cluster the way the test suite does
(``scenario_engine.embedded.start_private_cluster``), with settings sized for a benchmark
machine instead of the test suite's small defaults. Nothing here is part of the engine.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scenario_engine.embedded import FAST_TEST_SETTINGS

RESULTS_DIR = Path(__file__).resolve().parent / "results"

# Sized for the reference machine (2 cores, 24 GiB RAM, SSD). Durability is off: a benchmark
# cluster is thrown away, and the bars are about the engine, not about fsync.
BENCH_PG_SETTINGS: dict[str, str] = {
    **FAST_TEST_SETTINGS,  # fsync, synchronous_commit, full_page_writes off; max_connections
    "shared_buffers": "2GB",
    "work_mem": "64MB",
    "maintenance_work_mem": "1GB",
    "max_wal_size": "10GB",
    "min_wal_size": "1GB",
    "checkpoint_timeout": "30min",
    "wal_buffers": "64MB",
    "effective_cache_size": "16GB",
    "random_page_cost": "1.1",  # SSD
    "effective_io_concurrency": "200",
    "max_parallel_workers_per_gather": "2",
    "max_parallel_maintenance_workers": "2",
    # Per-statement time of the engine's named queries (a breakdown of every sweep).
    "shared_preload_libraries": "pg_stat_statements",
    "pg_stat_statements.track": "top",
    "pg_stat_statements.track_planning": "on",
    "pg_stat_statements.max": "5000",
    "track_io_timing": "on",
}


def log(message: str) -> None:
    stamp = dt.datetime.now().strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", flush=True)


@dataclass
class Timings:
    """Named wall-clock timings, in the order they were taken."""

    steps: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        log(f"{name} …")
        started = time.perf_counter()
        try:
            yield
        finally:
            took = time.perf_counter() - started
            self.steps[name] = round(took, 3)
            log(f"{name}: {took:.2f} s")


# --- memory of this process -------------------------------------------------------------


def _status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_mb() -> float | None:
    kb = _status_kb("VmRSS")
    return None if kb is None else kb / 1024


def peak_rss_mb() -> float | None:
    """VmHWM: the high-water mark of resident memory since start (or the last reset)."""
    kb = _status_kb("VmHWM")
    if kb is not None:
        return kb / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # pragma: no cover (non-Linux)


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux: ``echo 5 > /proc/self/clear_refs``)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


# --- machine ----------------------------------------------------------------------------


def _cpu_times() -> tuple[int, int]:
    with open("/proc/stat", encoding="ascii") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields), idle


def busy_fraction(seconds: float = 2.0) -> float:
    """Share of all CPUs busy over ``seconds`` (while this process sleeps: other load)."""
    total0, idle0 = _cpu_times()
    time.sleep(seconds)
    total1, idle1 = _cpu_times()
    return 1.0 - (idle1 - idle0) / max(total1 - total0, 1)


def wait_for_quiet(max_busy: float, timeout: float) -> dict[str, float]:
    """The machine is shared: wait (up to ``timeout`` s) until other load is below ``max_busy``
    of all CPUs, so the measurement is not someone else's test run. Returns what was seen."""
    started = time.monotonic()
    busy = busy_fraction()
    while busy > max_busy and time.monotonic() - started < timeout:
        log(f"machine busy ({busy:.0%} of CPUs used by others); waiting for it to quieten")
        busy = busy_fraction(5.0)
    return {"busy_before": round(busy, 3), "waited_s": round(time.monotonic() - started, 1)}


def machine_facts(pg_version: str) -> dict[str, Any]:
    mem_kb = 0
    with contextlib.suppress(OSError), open("/proc/meminfo", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    cpu = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "mem_total_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "postgres": pg_version,
    }


def disk_free_gib(path: str = "/var/tmp") -> float:
    st = os.statvfs(path)
    return round(st.f_bavail * st.f_frsize / 1024**3, 1)


def postgres_processes() -> list[str]:
    out = subprocess.run(["pgrep", "-a", "postgres"], capture_output=True, text=True, check=False)
    return [line for line in out.stdout.splitlines() if line.strip()]


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
