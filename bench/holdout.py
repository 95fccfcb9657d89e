"""Holdout overhead (issue 12): the same sweep with and without holdout groups, same run.

    .venv/bin/python -m bench.holdout                      # 200k mentors, 3 rounds
    .venv/bin/python -m bench.holdout --mentors 20000 --rounds 2

One populated database (bench.harness.population, the benchmark rules first seen 30 days
before ``as_of``), then per round two fresh clones of it, swept in alternating order: the
benchmark rules as they are, and the same rules with a 10 % holdout on every rule plus a 5 %
global holdout. Each is a *first* sweep at ``as_of`` (the one with most to decide and write),
timed around ``Engine.run_scheduled_evaluation``. Reported: the median of each variant, the
overhead in per cent (bar: ≤ 5 %), and the share held out (about 14.5 % of the candidates
policy allowed: 5 % globally plus 10 % of the rest).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import time
from typing import Any

from bench.harness.cluster import (
    BENCH_PG_SETTINGS,
    admin,
    clone_database,
    drop_database,
    prewarm,
    private_cluster,
)
from bench.harness.engine import Engine, Rules, benchmark_rules
from bench.harness.population import DEFAULT_AS_OF, POP_DB, Shape, populate
from bench.harness.report import RESULTS_DIR, Timings, log, machine_facts, run_header, write_json
from scenario_engine.db.connect import create_pool
from scenario_engine.dev.embedded import LocalCluster, server_version

BAR_PERCENT = 5.0


def with_holdouts(rules: Rules) -> Rules:
    """The same rules, every one with a 10 % holdout, and a 5 % global holdout."""
    data = rules.model_dump()
    for scenario_type in ("inactivity", "milestone", "certification_expiry"):
        for rule in data.get(scenario_type, []):
            rule["holdout_percent"] = 10.0
    return Rules.model_validate({**data, "global_holdout_percent": 5.0})


async def one_sweep(cluster: LocalCluster, name: str, rules: Rules, as_of: dt.datetime) -> dict[str, Any]:
    conn = await admin(cluster)
    try:
        await clone_database(conn, name, POP_DB)
    finally:
        await conn.close()
    pool = await create_pool(cluster.url(name), min_size=1, max_size=2)
    try:
        async with pool.acquire() as c:
            await prewarm(c)
        started = time.perf_counter()
        result = await Engine(pool, rules).run_scheduled_evaluation(as_of)
        seconds = time.perf_counter() - started
    finally:
        await pool.close()
    conn = await admin(cluster)
    try:
        await drop_database(conn, name)
    finally:
        await conn.close()
    counts = {k: sum(c[k] for c in result.per_rule.values()) for k in ("sent", "holdout")}
    return {"seconds": round(seconds, 3), "mentors": result.mentors, **counts}


async def run(cluster: LocalCluster, args: argparse.Namespace, out: dict[str, Any]) -> None:
    shape = Shape(args.mentors, 10.0, args.mentors, DEFAULT_AS_OF)
    timings = Timings()
    conn = await admin(cluster)
    try:
        out["data"] = await populate(conn, cluster, shape, 30.0, timings)
    finally:
        await conn.close()
    variants = {"without": benchmark_rules(), "with": with_holdouts(benchmark_rules())}
    runs: dict[str, list[dict[str, Any]]] = {"without": [], "with": []}
    for n in range(args.rounds):
        order = ["without", "with"] if n % 2 == 0 else ["with", "without"]
        for variant in order:
            got = await one_sweep(cluster, f"bench_holdout_{variant}", variants[variant], DEFAULT_AS_OF)
            log(f"round {n + 1} {variant} holdouts: {got}")
            runs[variant].append(got)
    median = {v: statistics.median(r["seconds"] for r in runs[v]) for v in runs}
    allowed = runs["with"][0]["sent"] + runs["with"][0]["holdout"]
    out.update(
        runs=runs,
        median_seconds=median,
        overhead_percent=round(100 * (median["with"] / median["without"] - 1), 2),
        held_out_share_percent=round(100 * runs["with"][0]["holdout"] / max(allowed, 1), 2),
        bar_percent=BAR_PERCENT,
        timings=timings.steps,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mentors", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    out: dict[str, Any] = run_header("holdout", {"mentors": args.mentors, "rounds": args.rounds})
    with private_cluster(BENCH_PG_SETTINGS) as cluster:
        out["machine"] = machine_facts(server_version(cluster.bin_dir))
        asyncio.run(run(cluster, args, out))
    path = RESULTS_DIR / f"holdout-{args.mentors}.json"
    write_json(path, out)
    verdict = "within" if out["overhead_percent"] <= BAR_PERCENT else "OVER"
    print(
        f"first sweep, median of {args.rounds}: without {out['median_seconds']['without']} s, "
        f"with holdouts {out['median_seconds']['with']} s → {out['overhead_percent']} % "
        f"({verdict} the {BAR_PERCENT} % bar); held out {out['held_out_share_percent']} % of allowed"
    )
    log(f"results written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
