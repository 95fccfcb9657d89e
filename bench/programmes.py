"""Per-organisation programmes: the steady full sweep with 200 organisations and a dozen
overrides against the single programme, on the same data in the same run (issue 20).

    .venv/bin/python -m bench.programmes --mentors 200000

One private cluster; the sweep benchmark's population (``bench.harness.population``) with the
mentors spread over 200 organisations; two clones, one swept with ``benchmark_rules()`` (one
programme), the other with the same rules plus 200 ``[organizations."<id>"]`` tables (a name
and a locale each) of which 12 override rule fields or policy keys. Each clone gets a first
full sweep (lots to send) and then steady full sweeps at the same instant (nothing new),
alternated between the two so that both see the same machine; the figure is the ratio of the
median steady sweeps (bar: ≤ 1.2). Writes ``bench/results/programmes-<mentors>.json``, which
``python -m bench.docs`` puts into docs/BENCHMARKS.md (``--programmes-mentors``; 1M by default).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import statistics
import time
from pathlib import Path
from typing import Any

from bench.harness import statements
from bench.harness.cluster import (
    BENCH_PG_SETTINGS,
    LocalCluster,
    admin,
    clone_database,
    connect,
    create_pool,
    drop_database,
    prewarm,
    private_cluster,
)
from bench.harness.engine import Engine, Rules, benchmark_rules
from bench.harness.population import DEFAULT_AS_OF, POP_DB, Shape, populate
from bench.harness.report import Timings, log

RESULTS_DIR = Path(__file__).resolve().parent / "results"
ORGANISATIONS = 200
ONE, MANY = "bench_one_programme", "bench_programmes"


def organisation(i: int) -> str:
    """The id the population update gives organisation ``i`` (md5 of a fixed text)."""
    import hashlib
    import uuid

    return str(uuid.UUID(hashlib.md5(f"bench-org-{i}".encode()).hexdigest()))


def programme_rules() -> Rules:
    """The benchmark rules with 200 organisations listed; 12 of them override something."""
    base = benchmark_rules()
    overrides: list[dict[str, Any]] = [
        {"rules": {"inactive_21d": {"threshold_days": 14, "cooldown_days": 10}}},
        {"rules": {"inactive_21d": {"threshold_days": 30}}},
        {"rules": {"inactive_21d": {"max_reminders": 1}}},
        {"rules": {"inactive_21d": {"enabled": False}}},
        {"rules": {"certification_expiry": {"tiers_days": [60, 14]}}},
        {"rules": {"certification_expiry": {"tiers_days": [90, 30, 7]}}},
        {"rules": {"certification_expiry": {"certification_types": ["first_aid"]}}},
        {"rules": {"sessions_year": {"thresholds": [5, 20, 40]}}},
        {"rules": {"sessions_year": {"enabled": False}}},
        {"daily_cap": 1},
        {"daily_cap": 2, "quiet_hours": "21:00-08:00"},
        {"global_holdout_percent": 10},
    ]
    orgs: dict[str, Any] = {}
    for i in range(ORGANISATIONS):
        table: dict[str, Any] = {"name": f"Organisation {i}", "locale": ("en", "nb", "nn")[i % 3]}
        if i < len(overrides):
            table |= overrides[i]
        orgs[organisation(i)] = table
    return Rules.model_validate({**base.model_dump(exclude={"organizations"}), "organizations": orgs})


async def spread_over_organisations(cluster: LocalCluster) -> None:
    conn = await connect(cluster.url(POP_DB), application_name="bench programmes")
    try:
        await conn.execute("SET session_replication_role = replica")  # no capture triggers
        await conn.execute(
            "UPDATE peer_mentor SET organization_id = "
            f"md5('bench-org-' || (abs(hashtext(id::text)) % {ORGANISATIONS}))::uuid"
        )
        await conn.execute("VACUUM (ANALYZE) peer_mentor")
    finally:
        await conn.close()


async def sweep(cluster: LocalCluster, db: str, rules: Rules, as_of: dt.datetime) -> dict[str, Any]:
    """One full sweep of ``db``: wall seconds, the client's CPU seconds, and where the database
    time went per named query (pg_stat_statements, reset just before)."""
    pool = await create_pool(cluster.url(db), min_size=1, max_size=2, application_name="bench programmes")
    stats_conn = await admin(cluster)
    try:
        async with pool.acquire() as conn:
            await prewarm(conn)
            # The engine's own tables too (the ledger, and the organisation each mentor was last
            # seen in): on a live system they are as warm as the platform's.
            await conn.execute(
                "SELECT pg_prewarm(c.oid) FROM pg_class c "
                "WHERE c.relnamespace = 'scenario_engine'::regnamespace AND c.relkind IN ('r', 'i')"
            )
        await statements.stats_reset(stats_conn)
        started, cpu = time.perf_counter(), time.process_time()
        result = await Engine(pool, rules).run_scheduled_evaluation(as_of)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        by_query = await statements.stats(stats_conn, db)
    finally:
        await stats_conn.close()
        await pool.close()
    sent = sum(c.get("sent", 0) for c in result.per_rule.values())
    return {
        "seconds": round(seconds, 2),
        "client_cpu_seconds": round(cpu, 2),
        "sent": sent,
        "per_rule": result.per_rule,
        "statements": by_query,
    }


async def run(cluster: LocalCluster, args: argparse.Namespace, result: dict[str, Any]) -> None:
    timings = Timings()
    result["timings"] = timings.steps
    conn = await admin(cluster)
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")  # stats per sweep
        shape = Shape(args.mentors, 10.0, args.mentors, DEFAULT_AS_OF)
        result["data"] = await populate(conn, cluster, shape, 30.0, timings)
        with timings.step(f"spread mentors over {ORGANISATIONS} organisations"):
            await spread_over_organisations(cluster)
        for name in (ONE, MANY):
            await clone_database(conn, name, POP_DB)
        programmes = {ONE: benchmark_rules(), MANY: programme_rules()}
        runs: dict[str, list[dict[str, Any]]] = {ONE: [], MANY: []}
        for name in (ONE, MANY):  # the first sweep: lots to send
            runs[name].append(await sweep(cluster, name, programmes[name], DEFAULT_AS_OF))
            log(f"{name} first sweep: {runs[name][-1]['seconds']} s, {runs[name][-1]['sent']} sent")
        for i in range(args.repeats):  # steady sweeps, alternated (and the order flipped)
            for name in (ONE, MANY) if i % 2 == 0 else (MANY, ONE):
                runs[name].append(await sweep(cluster, name, programmes[name], DEFAULT_AS_OF))
                log(f"{name} steady sweep: {runs[name][-1]['seconds']} s")
        steady = {name: statistics.median(r["seconds"] for r in runs[name][1:]) for name in runs}
        result["runs"] = runs
        result["steady_median_seconds"] = steady
        result["ratio"] = round(steady[MANY] / steady[ONE], 3)
        result["bar"] = 1.2
        result["verdict"] = "ok" if result["ratio"] <= 1.2 else "over the bar"
        result["steady_median_client_cpu_seconds"] = {
            name: statistics.median(r["client_cpu_seconds"] for r in runs[name][1:]) for name in runs
        }
        for name in (ONE, MANY, POP_DB):
            await drop_database(conn, name)
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mentors", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=4, help="steady sweeps of each programme set")
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=RESULTS_DIR,
        help="where programmes-<mentors>.json goes (bench.docs)",
    )
    args = parser.parse_args(argv)
    result: dict[str, Any] = {
        "benchmark": "programmes",
        "started_at": dt.datetime.now(dt.UTC).isoformat(),
        "mentors": args.mentors,
        "organisations": ORGANISATIONS,
        "params": {"mentors": args.mentors, "repeats": args.repeats},
    }
    with private_cluster(BENCH_PG_SETTINGS) as cluster:
        asyncio.run(run(cluster, args, result))
    args.results_dir.mkdir(parents=True, exist_ok=True)
    out = args.results_dir / f"programmes-{args.mentors}.json"
    out.write_text(json.dumps(result, indent=2, default=str) + "\n", "utf-8")
    log(
        f"steady full sweep: one programme {result['steady_median_seconds'][ONE]} s, "
        f"{ORGANISATIONS} organisations {result['steady_median_seconds'][MANY]} s, "
        f"ratio {result['ratio']} (bar 1.2): {result['verdict']} — {out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
