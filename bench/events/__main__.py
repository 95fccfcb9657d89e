"""Events benchmark (docs/ARCHITECTURE.md, "Bars"): activity insert → trigger → scenario_event → daemon drain.

    .venv/bin/python -m bench.events                       # everything (about 10 minutes)
    .venv/bin/python -m bench.events --parts latency       # one part: throughput, latency, inserts, health

Setup: a private cluster, a database with ``--mentors`` mentors (``bench.harness.population``: 10
activities and 1 certification per mentor on average, as of now), on which one daemon ran its
first sweep (the pushes it enqueued are cancelled so that the dispatcher is idle at the start).
That database is the template: every measurement runs on a fresh clone of it, against a fresh
``scenario-engine run`` process (the real CLI, ``SCENARIO_*`` environment, the default rules
from a rules file, log push provider, sweep period far in the future: only the event path works).

Parts:

* ``throughput`` — a writer (``--writers`` asyncpg connections, multi-row INSERTs of
  ``--rows-per-insert`` activities for random mentors) inserts at full speed for
  ``--seconds`` while the daemon drains. Reported: insert rate, the daemon's processed rate
  (per second, from ``scenario_event.processed_at``), the backlog over time, the time to drain
  it after the writer stopped, CPU of the daemon / the cluster / the writer. For each
  ``--batch-sizes`` in NOTIFY mode, and in poll-only mode (``--poll-intervals``).
* ``latency`` — a paced writer inserts single-row activities at ``--rate``/s; latency is
  ``processed_at − created_at`` of each event (both clock_timestamp() in the server), and the
  daemon's own ``scenario_event_drain_latency_seconds`` histogram. NOTIFY mode and poll mode.
* ``inserts`` — the raw cost of the triggers: pgbench single-row INSERTs into ``activity`` at
  ``--pgbench-clients`` clients, durable and with fsync off, with the triggers in notify mode
  (with a LISTENing connection, as in production), in poll mode, and with
  ``DISABLE TRIGGER USER`` (``bench.events.inserts``).
* ``health`` — the health loop's ``backlogs`` and ``outbox_stats`` queries over a retained
  history of processed events and sent pushes (``--health-sizes``, ``--health-push-rows``).

One module per part (``bench.events.throughput``, ``.latency``, ``.inserts``, ``.health``);
the template database and the event-table measurements they share are ``bench.events.db``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from bench.events.db import prepare_template
from bench.events.health import run_health
from bench.events.inserts import run_inserts
from bench.events.latency import run_latency
from bench.events.throughput import run_throughput
from bench.harness.cluster import (
    RUNTIME_PG_SETTINGS,
    LocalCluster,
    leftover_postgres,
    private_cluster,
    server_version,
)
from bench.harness.procfs import load_average
from bench.harness.report import RESULTS_DIR, log, machine_facts, run_header, scratch_dir, write_json

THROUGHPUT_BAR = 10_000.0
P50_BAR_MS = 10.0
P99_BAR_MS = 50.0
POLL_P99_BAR_MS = 250.0  # issue 18: the default (poll) mode at 1k events/s

# --- main -----------------------------------------------------------------------------------------


def throughput_runs(args: argparse.Namespace) -> list[tuple[str, str, dict[str, Any]]]:
    """(label, notify mode, keyword arguments of ``run_throughput``) of the throughput part:
    NOTIFY at each batch size, poll-only, a paced writer, several daemons."""
    batch = args.poll_batch_size
    runs: list[tuple[str, str, dict[str, Any]]] = [
        (f"notify-batch{size}", "notify", {"drain_batch_size": size}) for size in args.batch_sizes
    ]
    runs += [
        (f"poll{i:g}s-batch{batch}", "poll", {"drain_batch_size": batch, "poll_interval_seconds": i})
        for i in args.poll_intervals
    ]
    runs += [
        (f"notify-batch{batch}-writer{rate:g}", "notify", {"writer_rate": rate, "drain_batch_size": batch})
        for rate in args.writer_rates
    ]
    runs += [
        (f"notify-batch{batch}-{n}daemons", "notify", {"daemons": n, "drain_batch_size": batch})
        for n in args.extra_daemons
    ]
    runs += [
        (f"poll-batch{batch}-concurrency{n}", "poll", {"drain_batch_size": batch, "drain_concurrency": n})
        for n in args.concurrencies
    ]
    if args.before_code:  # each run also with the daemon of another checkout, just before it
        runs = [
            run
            for label, mode, kwargs in runs
            for run in (
                (f"{label}-before", mode, {**kwargs, "code": args.before_code}),
                (label, mode, kwargs),
            )
        ]
    # repeated rounds, interleaved, so that a change in the machine's load hits every run alike
    return [
        (label if args.throughput_rounds == 1 else f"{label}-r{r}", mode, kwargs)
        for r in range(args.throughput_rounds)
        for label, mode, kwargs in runs
    ]


async def run(cluster: LocalCluster, args: argparse.Namespace, result: dict[str, Any], workdir: Path) -> None:
    log(f"population: {args.mentors} mentors …")
    result["setup"] = await prepare_template(cluster, args, workdir)
    log(
        f"setup done: {result['setup']['timings']}; first sweep {result['setup']['first_sweep']['seconds']} s"
    )
    if "throughput" in args.parts:
        runs = result.setdefault("throughput", [])
        for label, mode, kwargs in throughput_runs(args):
            runs.append(await run_throughput(cluster, args, workdir, label, mode, **kwargs))
    if "latency" in args.parts:
        runs = result.setdefault("latency", [])
        runs.append(await run_latency(cluster, args, workdir, "notify", "notify"))
        for interval in args.poll_intervals:
            runs.append(
                await run_latency(
                    cluster, args, workdir, f"poll{interval:g}s", "poll", poll_interval_seconds=interval
                )
            )
    if "inserts" in args.parts:
        result["inserts"] = await run_inserts(cluster, args, workdir)
    if "health" in args.parts:
        result["health"] = await run_health(cluster, args)


def _throughput_line(r: dict[str, Any]) -> str:
    d, w = r["daemon"], r["writer"]
    kept_up = d["backlog_at_writer_stop"] <= max(w["rate_per_s"], 1)  # at most ~1 s behind
    # met: the drain processed ≥ 10k/s (mean of the steady seconds) while the writer ran, or it
    # kept up with a writer paced at ≥ 10k/s (2 % slack for the pacing of the writer)
    ok = (d["steady_rate_per_s_mean"] or 0) >= THROUGHPUT_BAR or (
        kept_up and w["rate_per_s"] >= 0.98 * THROUGHPUT_BAR
    )
    return (
        f"  throughput {r['label']:<30} writer {w['rate_per_s']:>7,}/s  daemon steady "
        f"{d['steady_rate_per_s_mean'] or 0:>7,}/s (mean; median "
        f"{d['steady_rate_per_s_median'] or 0:,})  end-to-end {d['end_to_end_rate_per_s'] or 0:>7,}/s  "
        f"backlog@stop {d['backlog_at_writer_stop']:>7,}  kept up: {'yes' if kept_up else 'no'}  "
        f"drain {d['drain_after_stop_s']:>6} s ({d['drain_only_rate_per_s'] or '-'}/s)  "
        f"bar ≥{THROUGHPUT_BAR:,.0f}/s: {'met' if ok else 'MISSED'}  load {r['load_during']}"
    )


def _latency_line(r: dict[str, Any]) -> str:
    lat = r["events_after_first_second"]["latency_ms"]
    if r["notify_mode"] == "poll":
        ok = (lat["p99"] or 1e9) <= POLL_P99_BAR_MS
        bar = f"p99≤{POLL_P99_BAR_MS:g} ms"
    else:
        ok = (lat["p50"] or 1e9) <= P50_BAR_MS and (lat["p99"] or 1e9) <= P99_BAR_MS
        bar = f"p50≤{P50_BAR_MS:g}/p99≤{P99_BAR_MS:g} ms"
    return (
        f"  latency {r['label']:<10} {r['writer']['achieved_rate_per_s']}/s  p50 {lat['p50']} ms  "
        f"p95 {lat['p95']}  p99 {lat['p99']}  max {lat['max']}  (daemon histogram "
        f"{r['daemon_histogram_quantiles_ms']})  bar {bar}: "
        f"{'met' if ok else 'MISSED'}  load {r['load_during']}"
    )


def _inserts_lines(ins: dict[str, Any]) -> list[str]:
    paired = ins["relative_to_disabled_median_of_rounds"]
    spread = ins.get("ratio_range_over_rounds", {})
    return [
        f"  pgbench {key:<22} {tps:>8,} tps (median of {ins['rounds']}); "
        f"{paired[key]:.2f} of triggers disabled (median over rounds of the paired ratio; "
        f"range {spread.get(key, '-')})"
        for key, tps in ins["median_tps"].items()
    ]


def _health_lines(health: dict[str, Any]) -> list[str]:
    lines = [
        f"  health query `backlogs` with {r['rows']:,} retained events ({r['table_size']}): "
        f"{r['backlogs_ms']} ms "
        + (
            f"(with a dead-letter index and ORDER BY id LIMIT 1: {r['proposed_backlogs_ms']} ms)"
            if "proposed_backlogs_ms" in r
            else f"(without the engine's dead-letter index: {r['without_dead_index_ms']} ms)"
        )
        for r in health["retained_events"]
    ]
    o = health["outbox"]
    lines.append(
        f"  health query `outbox_stats` with {o['rows']:,} pushes: {o['outbox_stats_ms']} ms "
        f"(split per partial index: {o['proposed_ms']} ms)"
    )
    return lines


def summarize(result: dict[str, Any]) -> str:
    lines = [
        f"events benchmark, {result['params']['mentors']:,} mentors; load at start {result['load_before']}"
    ]
    lines += [_throughput_line(r) for r in result.get("throughput", [])]
    lines += [_latency_line(r) for r in result.get("latency", [])]
    if "inserts" in result:
        lines += _inserts_lines(result["inserts"])
    if "health" in result:
        lines += _health_lines(result["health"])
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.events",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--parts", default="throughput,latency,inserts,health", type=lambda s: s.split(","))
    p.add_argument("--mentors", type=int, default=100_000)
    p.add_argument("--seconds", type=float, default=20.0, help="writer duration per run")
    p.add_argument("--writers", type=int, default=4)
    p.add_argument("--rows-per-insert", type=int, default=50)
    p.add_argument(
        "--batch-sizes", type=lambda s: [int(x) for x in s.split(",") if x], default=[500, 2000, 5000]
    )
    p.add_argument(
        "--poll-intervals", type=lambda s: [float(x) for x in s.split(",") if x], default=[0.05, 1.0]
    )
    p.add_argument(
        "--poll-batch-size", type=int, default=2000, help="drain batch of the poll, paced and fleet runs"
    )
    p.add_argument(
        "--writer-rates",
        type=lambda s: [float(x) for x in s.split(",") if x],
        default=[10_000.0, 15_000.0, 20_000.0],
        help="extra throughput runs with the writer paced at these rows/s (NOTIFY mode)",
    )
    p.add_argument(
        "--extra-daemons",
        type=lambda s: [int(x) for x in s.split(",") if x],
        default=[2],
        help="extra full-speed runs with this many daemon processes (what drain concurrency would give)",
    )
    p.add_argument(
        "--concurrencies",
        type=lambda s: [int(x) for x in s.split(",") if x],
        default=[1, 2, 3],
        help="extra full-speed runs in poll mode with SCENARIO_DRAIN_CONCURRENCY at these values",
    )
    p.add_argument(
        "--before-code",
        type=Path,
        default=None,
        help="a directory with another version of the scenario_engine package (e.g. `git archive` "
        "of an earlier commit's daemon/, with a sql/ beside it): every throughput run is also made "
        "with that daemon, just before the same run with this worktree's",
    )
    p.add_argument("--throughput-rounds", type=int, default=1, help="repeat the throughput runs, interleaved")
    p.add_argument("--drain-timeout", type=float, default=180.0)
    p.add_argument("--rate", type=float, default=1000.0, help="paced writer rate (latency part)")
    p.add_argument("--pgbench-seconds", type=int, default=10)
    p.add_argument("--pgbench-rounds", type=int, default=2)
    p.add_argument(
        "--insert-modes",
        type=lambda s: [x for x in s.split(",") if x],
        default=["disabled", "notify", "poll"],
        help="modes of the inserts part: disabled, notify, poll, and poll@NNNN (poll with the "
        "capture function of migration NNNN, e.g. poll@0025: a before/after in one run)",
    )
    p.add_argument(
        "--pgbench-clients", type=lambda s: [int(x) for x in s.split(",") if x], default=[1, 4, 16]
    )
    p.add_argument(
        "--health-sizes",
        type=lambda s: [int(x) for x in s.split(",") if x],
        default=[1_000_000, 4_000_000],
        help="retained processed events for the health part",
    )
    p.add_argument("--health-push-rows", type=int, default=1_000_000, help="sent pushes for the health part")
    p.add_argument("--profile", action="store_true", help="py-spy the daemon during each throughput writer")
    p.add_argument("--pgss", action="store_true", help="pg_stat_statements top queries per throughput run")
    p.add_argument("--output", type=Path, default=None)
    p.add_argument(
        "--merge",
        action="store_true",
        help="keep the other parts already in the output file (run parts apart)",
    )
    return p.parse_args(argv)


def merge_into(output: Path, result: dict[str, Any], parts: list[str]) -> dict[str, Any]:
    """``result`` merged into the results already in ``output`` (``--merge``: parts run apart)."""
    previous: dict[str, Any] = json.loads(output.read_text())
    runs = previous.setdefault("runs_by_part", {})
    for part in parts:
        runs[part] = {k: result[k] for k in ("started_at", "load_before", "load_after", "other_benchmarks")}
    for key in ("throughput", "latency", "inserts", "health"):
        if key in result and isinstance(result[key], list) and isinstance(previous.get(key), list):
            # runs are merged by label: a rerun replaces the earlier run of that label
            mine = {r["label"] for r in result[key]}
            previous[key] = [r for r in previous[key] if r["label"] not in mine] + result[key]
        elif key in result:
            previous[key] = result[key]
    return previous


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    output = args.output or RESULTS_DIR / "events.json"
    result = run_header("events", {k: v for k, v in vars(args).items() if k != "output"})
    workdir = scratch_dir("events")
    started = time.perf_counter()
    ok = False
    settings = dict(RUNTIME_PG_SETTINGS)
    if args.pgss:
        settings.update({"shared_preload_libraries": "pg_stat_statements", "pg_stat_statements.track": "top"})
    result["pg_settings"] = settings
    with private_cluster(settings) as cluster:
        result["machine"] = machine_facts(server_version(cluster.bin_dir))
        try:
            asyncio.run(run(cluster, args, result, workdir))
            ok = True
        finally:
            result["load_after"] = load_average()
            result["total_seconds"] = round(time.perf_counter() - started, 1)
    result["orphan_postgres_processes"] = leftover_postgres(cluster)
    this_run_s = result["total_seconds"]
    if args.merge and output.exists():
        result = merge_into(output, result, args.parts)
    else:
        keys = ("started_at", "load_before", "load_after", "other_benchmarks", "total_seconds")
        result["runs_by_part"] = {part: {k: result[k] for k in keys} for part in args.parts}
    write_json(output, result)
    if ok:
        with contextlib.suppress(OSError):
            shutil.rmtree(workdir)
    print()
    print(summarize(result))
    print(f"this run {this_run_s} s; written to {output}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
