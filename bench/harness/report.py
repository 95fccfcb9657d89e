"""Timers, this process's memory, machine facts and load, and the result files.

The reference machine is shared: every result records the load and other benchmark
processes seen, and the measured phases can wait for the CPUs to quieten first.
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

from bench.harness.procfs import busy_fraction, load_average

RESULTS_DIR = Path(__file__).resolve().parent.parent / "results"


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


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "MISS")


def ms(seconds: Any) -> float | None:
    """Seconds (a float, a Decimal or None from the database) as rounded milliseconds."""
    return None if seconds is None else round(float(seconds) * 1000, 2)


def wait_for_quiet(max_busy: float, timeout: float) -> dict[str, float]:
    """The machine is shared: wait (up to ``timeout`` s) until other load is below ``max_busy``
    of all CPUs, so the measurement is not someone else's test run. Returns what was seen."""
    started = time.monotonic()
    busy = busy_fraction()
    while busy > max_busy and time.monotonic() - started < timeout:
        log(f"machine busy ({busy:.0%} of CPUs used by others); waiting for it to quieten")
        busy = busy_fraction(5.0)
    return {"busy_before": round(busy, 3), "waited_s": round(time.monotonic() - started, 1)}


def other_benchmarks() -> list[str]:
    """Other benchmark processes on the machine (the reference machine is shared)."""
    out = subprocess.run(["pgrep", "-af", r"bench\."], capture_output=True, text=True, check=False)
    me = os.getpid()
    return [
        line
        for line in out.stdout.splitlines()
        if line.strip() and int(line.split()[0]) != me and "pgrep" not in line
    ]


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


# --- results ------------------------------------------------------------------------------


def run_header(benchmark: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """The first keys of every result file: what ran, when, and what else was running."""
    header: dict[str, Any] = {"benchmark": benchmark, "started_at": dt.datetime.now(dt.UTC).isoformat()}
    if params is not None:
        header["params"] = params
    header["load_before"] = load_average()
    header["other_benchmarks"] = other_benchmarks()
    return header


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")


def scratch_dir(benchmark: str) -> Path:
    """A working directory the daemon (perhaps another user, as root) can read."""
    workdir = Path("/var/tmp") / f"bench-{benchmark}-{os.getpid()}"
    workdir.mkdir(parents=True, exist_ok=True)
    workdir.chmod(0o755)
    return workdir
