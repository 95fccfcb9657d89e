"""Startup benchmark (docs/ARCHITECTURE.md, "Bars": ready ≤ 2 s after start).

    .venv/bin/python -m bench.startup            # 5 runs: process start → /readyz 200, RSS at ready

Each run starts the real daemon (``python -m scenario_engine run``) against a migrated, empty
database of a private cluster, polls ``/readyz`` every 5 ms from the instant of ``Popen`` and
reads ``VmRSS`` of the process once it is ready. Also timed, for comparison: the bare
interpreter with ``import scenario_engine.cli`` (the part of startup that is Python imports).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, TypedDict

from bench.harness.cluster import (
    LocalCluster,
    create_database,
    leftover_postgres,
    private_cluster,
    server_version,
)
from bench.harness.daemon import DaemonProc
from bench.harness.procfs import load_average
from bench.harness.report import RESULTS_DIR, log, machine_facts, run_header, scratch_dir, write_json

READY_BAR_S = 2.0


class Sample(TypedDict):
    ready_s: float
    rss_at_ready_mb: float | None
    rss_2s_later_mb: float | None
    exit_code: int | None
    load: list[float]


def time_imports(runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import scenario_engine.cli"], check=True)
        out.append(round(time.perf_counter() - started, 3))
    return out


async def one_start(url: str, workdir: Path, name: str) -> Sample:
    """Start the daemon, time /readyz, read its RSS then and 2 s later, stop it."""
    load = load_average()
    daemon = DaemonProc(url, workdir, name=name).start()
    try:
        ready = await daemon.wait_ready()
        rss = daemon.rss_mb()
        await asyncio.sleep(2.0)
        rss_2s = daemon.rss_mb()
    finally:
        code = await daemon.stop()
    return {
        "ready_s": round(ready, 3),
        "rss_at_ready_mb": rss,
        "rss_2s_later_mb": rss_2s,
        "exit_code": code,
        "load": load,
    }


async def run(cluster: LocalCluster, runs: int, workdir: Path) -> dict[str, Any]:
    url = await create_database(cluster, "bench_startup")
    samples: list[Sample] = []
    for i in range(runs):
        s = await one_start(url, workdir, f"startup{i}")
        log(
            f"run {i + 1}: ready in {s['ready_s']:.3f} s, RSS {s['rss_at_ready_mb']} MB "
            f"(2 s later {s['rss_2s_later_mb']} MB), load {s['load']}"
        )
        samples.append(s)
    imports = time_imports(runs)
    readies = [s["ready_s"] for s in samples]
    median = statistics.median(readies)
    return {
        "runs": samples,
        "ready_median_s": round(median, 3),
        "ready_min_s": min(readies),
        "ready_max_s": max(readies),
        "rss_at_ready_median_mb": statistics.median(
            s["rss_at_ready_mb"] for s in samples if s["rss_at_ready_mb"] is not None
        ),
        "import_scenario_engine_cli_s": imports,
        "import_median_s": round(statistics.median(imports), 3),
        "bar_ready_s": READY_BAR_S,
        "bar_met": median <= READY_BAR_S,
    }


def summarize(result: dict[str, Any], runs: int, output: Path) -> str:
    return "\n".join(
        [
            f"startup: ready median {result['ready_median_s']} s (min {result['ready_min_s']}, "
            f"max {result['ready_max_s']}) over {runs} runs — bar ≤ {READY_BAR_S} s: "
            f"{'met' if result['bar_met'] else 'MISSED'}",
            f"RSS at ready (median) {result['rss_at_ready_median_mb']} MB; "
            f"`import scenario_engine.cli` alone {result['import_median_s']} s",
            f"load {result['load_before']} → {result['load_after']}; written to {output}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "startup.json")
    args = parser.parse_args(argv)
    result = run_header("startup")
    workdir = scratch_dir("startup")
    with private_cluster() as cluster:
        result["machine"] = machine_facts(server_version(cluster.bin_dir))
        result.update(asyncio.run(run(cluster, args.runs, workdir)))
    result["load_after"] = load_average()
    result["orphan_postgres_processes"] = leftover_postgres(cluster)
    write_json(args.output, result)
    shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(summarize(result, args.runs, args.output))
    return 0 if result["bar_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
